//! A seeded, single-threaded discrete-event simulator for shardkv.
//!
//! Whole worlds run in one thread under one seed: one or more Raft groups of different
//! kinds (bare Raft, the KV service, the shard controller — [`GroupSpec`], [`GroupApp`])
//! with node ids unique across the world, their clients, virtual time, a simulated network
//! (loss per direction, delay, long reordering of replies, duplication, symmetric and
//! one-way partitions — between groups as within them), crashes that keep only persisted
//! state, and restarts. Messages pass through the real wire encoding (postcard), so byte
//! counts are real; every Raft message travels in an [`Envelope`] stamped with the cluster
//! and the group, and one that reaches a node of another group or cluster is dropped and
//! counted ([`NetStats::misdirected`]), never stepped. A node may ask another group as a
//! client would ([`App::take_outbound`]; [`ConfigPoller`] polls the controller that way).
//! Nodes run the production host loop (`shardkv-host`: Ready loop, group commit, a
//! leader's early send, the NoSpace stall and refusal policy) and persist through the real
//! WAL and snapshot code (`shardkv-storage`) on a simulated disk that loses unsynced
//! writes, can tear the last one on a crash, can stop in the middle of a write and can fill
//! up. The same seed yields the same run, event for event (`Sim::trace` digests it).
//!
//! A group's membership can change while it runs: [`Sim::join`] starts a fresh node that a
//! leader then adds as a learner, and `Cluster::change_membership` drives a single-server
//! change through whichever node leads (the Raft fuzz target draws such changes among its
//! faults).
//!
//! Each group has its own invariant checker ([`Checker`]), watching every persisted and
//! applied entry, every election and every node's membership of that group. The service harnesses ([`KvClients`],
//! [`CtrlClients`]) run over one group of any simulator whose app carries the service
//! ([`ServiceApp`]): a lone group ([`KvCluster`], [`CtrlCluster`]) or a [`World`]. A
//! failure panics with the seed and the command that replays it.
//!
//! Nothing but tests and the fuzz binary depends on this crate.

mod app;
mod checker;
mod clerk;
mod clients;
mod cluster;
mod config;
mod ctrl;
pub mod ctrl_fuzz;
mod disk_store;
mod dsl;
mod event;
mod faults;
pub mod fuzz;
mod group;
mod group_app;
mod kv;
mod kv_clerk;
pub mod kv_fuzz;
mod membership;
mod net;
mod node;
mod ownership;
mod poller;
mod queue;
mod raft_dsl;
mod raft_tweak;
mod service_app;
mod service_node;
mod shard_clerk;
pub mod shard_fuzz;
mod shard_node;
mod shard_world;
mod state_machine;
mod stats;
mod wipe;
mod wire;
mod world;
pub mod world_fuzz;

pub use app::{App, Outbound, RaftApp};
pub use checker::Checker;
pub use clerk::{Ended, EndedOf, SIM_CLERK_POLICY, SimClerk};
pub use clients::{Clients, run_clients};
pub use cluster::{Cluster, Sim};
pub use config::{ClusterConfig, SIM_CLUSTER_ID};
pub use ctrl::{
    CtrlClient, CtrlClients, CtrlCluster, CtrlOp, CtrlRecord, CtrlSim, join, leave, move_to, query,
};
pub use disk_store::DiskStore;
pub use event::{ClientEvent, Origin};
pub use faults::{FaultSchedule, Swarm};
pub use group::{GroupKind, GroupSpec};
pub use group_app::{GroupApp, GroupRequest, GroupResponse, Member};
pub use kv::{
    KvClient, KvClients, KvCluster, KvSim, REDIS_KEYS_PER_TAG, Workload, append_value, redis_key,
    to_lin_op, to_lin_output,
};
pub use kv_clerk::{KvClerk, KvClerkIn};
pub use net::{Fate, NetConfig, Network};
pub use node::{Fault, SimNode};
pub use ownership::OwnershipCheck;
pub use poller::{ConfigPoller, CtrlRequest, POLL_EVERY_MS};
pub use queue::{EventQueue, Micros};
pub use raft_tweak::RaftTweak;
pub use service_app::{Carries, ServiceApp, live_replicas};
pub use service_node::{CtrlNode, KvNode, ServiceNode, SimMachine};
pub use shard_clerk::{CTRL_ADDR, REFRESH_EVERY_MS, ShardKvClerk};
pub use shard_node::{DUTY_RETRY_MS, server_name, start_shard_group};
pub use shard_world::{
    CTRL_GID, OP_MS_MAX, SAMPLE_EVERY_MS, ShardWorld, ShardWorldOptions, get, shard_world_groups,
};
pub use state_machine::{TestStateMachine, digest};
pub use stats::NetStats;
pub use wire::Envelope;
pub use world::{ShardClients, World, WorldClients, WorldSim, four_groups, raft_converged};

/// The seed range a fuzz test runs: `A..B` from the environment variable `var` if set,
/// else `default`.
///
/// # Panics
/// If the range is not `A..B` with numbers A and B.
pub fn seed_range(var: &str, default: &str) -> (u64, u64) {
    let range = std::env::var(var).unwrap_or_else(|_| default.into());
    let parsed = range
        .split_once("..")
        .and_then(|(lo, hi)| Some((lo.parse().ok()?, hi.parse().ok()?)));
    parsed.unwrap_or_else(|| panic!("{var}={range}: expected A..B"))
}

/// The seed a scenario runs with: `SHARDKV_SEED` if set, else `default`.
pub fn seed_or(default: u64) -> u64 {
    std::env::var("SHARDKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
