//! [`ClusterConfig`]: how to build a simulated world — its groups, the network, the clock,
//! the seed.

use crate::group::{GroupKind, GroupSpec};
use crate::net::NetConfig;
use crate::queue::Micros;
use crate::raft_tweak::RaftTweak;
use shardkv_raft::Config;
use shardkv_rsm::SessionLimits;
use shardkv_types::{Gid, NodeId};
use std::collections::BTreeSet;

/// The cluster id of every simulated world (any nonzero value: the production transport
/// reserves 0).
pub const SIM_CLUSTER_ID: u64 = 0x5eed;

/// How to build a simulated world: one or more Raft groups under one seed.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The groups, each with its own voters. Invariant: gids and node ids are unique.
    pub groups: Vec<GroupSpec>,
    /// Stamped on every Raft message; a message of another cluster is dropped.
    pub cluster_id: u64,
    pub seed: u64,
    pub net: NetConfig,
    /// Bare Raft ([`RaftApp`](crate::RaftApp)): each node snapshots every this many applied
    /// entries.
    pub snapshot_every: Option<u64>,
    /// Services: snapshot when the persisted Raft state exceeds this many bytes.
    pub max_raft_state: Option<u64>,
    /// Services: how many client sessions each group keeps, and for how long (small in
    /// some fuzz seeds, so that sessions expire and are evicted while clients retry).
    pub sessions: SessionLimits,
    /// The cluster's shard count (a power of two, at most 16384), fixed at creation.
    pub shards: u32,
    /// Every group's leaders hand leadership to the group's preferred member
    /// (`shardkv_host::leader_preference`, ranked by gid), as the server does by default.
    pub leader_preference: bool,
    /// Services: the log may also grow by the last snapshot's size before it counts towards
    /// `max_raft_state` (`HostOptions::log_grows_with_state_up_to`, uncapped; the server's
    /// default, capped).
    pub log_grows_with_state: bool,
    /// Virtual time per Raft tick.
    pub tick_us: Micros,
    /// Adjusts every node's Raft configuration (then the group's own `GroupSpec::raft`).
    pub raft: fn(&mut Config),
    /// Applied last: the fuzzers' per-seed (swarm) overrides.
    pub tweak: RaftTweak,
    /// Printed on failure: the command that replays this run.
    pub replay: String,
}

/// The session limits a fuzz seed runs with, from their own random stream (so the seed's
/// other picks stay as they were): the defaults in half the seeds; else a table of 1 to 4
/// sessions (fewer than the clerks: sessions are evicted all the time), or sessions that
/// expire after 20 to 200 idle log entries.
pub fn fuzz_session_limits(seed: u64) -> SessionLimits {
    let mut pick = shardkv_types::Rng::new(seed ^ 0x5e55_1075);
    let default = SessionLimits::default();
    match pick.index(4) {
        0 => SessionLimits {
            sessions_max: pick.range(1, 5) as usize,
            ..default
        },
        1 => SessionLimits {
            idle_entries_max: pick.range(20, 201),
            ..default
        },
        _ => default,
    }
}

/// The host options a fuzz seed runs with, from their own random stream (so the seed's
/// other picks stay as they were): preferred leaders in half the seeds, a log that grows
/// with the state in half (independently), as the server runs by default.
pub fn fuzz_host_options(cfg: &mut ClusterConfig) {
    let mut pick = shardkv_types::Rng::new(cfg.seed ^ 0x1ead_e125);
    cfg.leader_preference = pick.chance(500);
    cfg.log_grows_with_state = pick.chance(500);
}

impl ClusterConfig {
    /// One group (gid 1) of `nodes` bare-Raft nodes numbered 1..=nodes; the service
    /// harnesses set the kind they run.
    pub fn new(nodes: usize, seed: u64) -> ClusterConfig {
        let group = GroupSpec::new(Gid(1), GroupKind::Raft, 1..=nodes as u64);
        ClusterConfig::world(vec![group], seed)
    }

    /// A world of `groups`.
    ///
    /// # Panics
    /// If two groups share a gid or a node id.
    pub fn world(groups: Vec<GroupSpec>, seed: u64) -> ClusterConfig {
        let cfg = ClusterConfig {
            groups,
            cluster_id: SIM_CLUSTER_ID,
            seed,
            net: NetConfig::reliable(),
            snapshot_every: None,
            max_raft_state: None,
            sessions: SessionLimits::default(),
            shards: shardkv_types::SHARDS_DEFAULT,
            leader_preference: false,
            log_grows_with_state: false,
            tick_us: 10_000,
            raft: |_| {},
            tweak: RaftTweak::default(),
            replay: format!("SHARDKV_SEED={seed} cargo test -p shardkv-sim"),
        };
        cfg.check();
        cfg
    }

    /// The configuration of a named scenario test: seed from `SHARDKV_SEED` or
    /// `default_seed`, and a replay command that reruns exactly this test.
    pub fn scenario(nodes: usize, test_file: &str, name: &str, default_seed: u64) -> ClusterConfig {
        let seed = crate::seed_or(default_seed);
        let mut cfg = ClusterConfig::new(nodes, seed);
        cfg.replay = format!(
            "SHARDKV_SEED={seed} cargo test -p shardkv-sim --test {test_file} -- {name} --exact"
        );
        cfg
    }

    /// Makes every group run `kind` (a single-app simulator's groups).
    pub fn with_kind(mut self, kind: GroupKind) -> ClusterConfig {
        for g in &mut self.groups {
            g.kind = kind;
        }
        self
    }

    /// Asserts the identity invariants: gids and node ids unique, no empty group.
    pub fn check(&self) {
        let mut gids = BTreeSet::new();
        let mut ids: BTreeSet<NodeId> = BTreeSet::new();
        for g in &self.groups {
            assert!(gids.insert(g.gid), "gid {} appears twice", g.gid);
            assert!(!g.members.is_empty(), "group {} has no members", g.gid);
            for &id in &g.members {
                assert!(ids.insert(id), "node {id} is in two groups");
            }
        }
        assert!(!self.groups.is_empty(), "a world has at least one group");
        assert_ne!(self.cluster_id, 0, "cluster id 0 is reserved");
    }

    /// The world's controller group: the first group of kind `Ctrl`, if any. Shard groups
    /// take their configs from it.
    pub fn controller(&self) -> Option<Gid> {
        let mut ctrl = self.groups.iter().filter(|g| g.kind == GroupKind::Ctrl);
        ctrl.next().map(|g| g.gid)
    }

    /// The group `gid`.
    ///
    /// # Panics
    /// If there is none.
    pub fn group(&self, gid: Gid) -> &GroupSpec {
        self.groups
            .iter()
            .find(|g| g.gid == gid)
            .unwrap_or_else(|| panic!("no group {gid}"))
    }
}
