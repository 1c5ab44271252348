//! A shard group member as a simulated node: the production [`ShardGroup`] (the replica of
//! `ShardKv` and its leader's duties), started from what the simulated disk recovered, with
//! its duties asking the world's controller group over the simulated network.

use crate::clerk::SIM_CLERK_POLICY;
use crate::config::ClusterConfig;
use crate::poller::POLL_EVERY_MS;
use shardkv_raft::{Config, Restored};
use shardkv_rsm::{Replica, ReplicaOptions};
use shardkv_shardkv::{Duties, DutyOptions, Naming, ShardGroup, ShardKv};
use shardkv_types::{Gid, NodeId, Rng};

/// The pause before a duty that made no progress is tried again, in ms of the node's clock.
pub const DUTY_RETRY_MS: u64 = 50;

/// The name a config gives simulated node `id` (node ids are global in a world, so the
/// shard groups' clerks and duties resolve names with [`Naming::NodeIds`]).
pub fn server_name(id: NodeId) -> String {
    format!("n{}", id.0)
}

/// Starts member `cfg.id` of shard group `gid`: its replica snapshots past the world's
/// `max_raft_state`, and its duties poll the world's controller group every
/// [`POLL_EVERY_MS`] with the simulated clerks' retry policy.
///
/// # Errors
/// If the world has no controller group, or the recovered snapshot does not decode.
pub fn start_shard_group(
    cfg: Config,
    restored: Restored,
    seed: u64,
    sim: &ClusterConfig,
    gid: Gid,
) -> Result<ShardGroup, String> {
    let ctrl = sim
        .controller()
        .ok_or_else(|| format!("shard group {gid} needs a controller group in the world"))?;
    let ctrl_names: Vec<String> = sim
        .group(ctrl)
        .members
        .iter()
        .map(|&id| server_name(id))
        .collect();
    let opts = ReplicaOptions {
        raft_state_bytes_max: sim.max_raft_state,
        sessions: sim.sessions,
        ..ReplicaOptions::default()
    };
    let replica = Replica::new(cfg, restored, seed, opts, ShardKv::new(gid, sim.shards))?;
    let duty_opts = DutyOptions {
        tick_ms: (sim.tick_us / 1000).max(1),
        poll_every_ms: POLL_EVERY_MS,
        retry_ms: DUTY_RETRY_MS,
        policy: SIM_CLERK_POLICY,
        // Small, so that simulated moves take several chunks and pages of sessions.
        chunk_bytes: 2048,
        pull_bytes_per_s: None,
    };
    let duties = Duties::new(
        ctrl,
        &ctrl_names,
        Naming::NodeIds,
        duty_opts,
        Rng::new(seed ^ 0xd071),
    );
    Ok(ShardGroup::new(replica, duties))
}
