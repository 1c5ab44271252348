//! `NodeStatus`: one member's view of its group, as the Status RPC reports it.

use shardkv_raft::Role;
use shardkv_types::{ConfigNum, Gid, LogIndex, NodeId, ShardId, Term};

/// One member's view of its group.
///
/// Invariant: `applied <= commit <= last_index` (as the member saw them at one instant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit: LogIndex,
    pub applied: LogIndex,
    pub last_index: LogIndex,
    pub snapshot_index: LogIndex,
    pub raft_state_bytes: u64,
    /// Writes are refused because the disk is (nearly) full.
    pub no_space: bool,
    /// The group that answered.
    pub group: Gid,
    /// A shard group's view of its shards; `None` for other groups.
    pub shards: Option<ShardsHeld>,
    /// The group's members as this member's log has them (empty from servers that do not
    /// report them).
    pub members: Vec<MemberInfo>,
    /// Every group the answering server hosts (empty from servers that do not say).
    pub hosted: Vec<Gid>,
    /// The answering server's Redis (RESP) address, `HOST:PORT` as its clients reach it;
    /// `None` when it serves none (or does not say).
    pub redis_addr: Option<String>,
}

/// One member of a group, as a member's status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    /// Its peer address; empty when the reporting member does not know it.
    pub addr: String,
    pub learner: bool,
    /// The leader's view of how far the member's log matches; `None` from a non-leader.
    pub matched: Option<LogIndex>,
}

/// What a shard group member holds: the config it applied and each shard it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardsHeld {
    pub config: ConfigNum,
    /// Ascending by shard.
    pub shards: Vec<(ShardId, ShardPhase)>,
    /// The keys in the shards it serves (`Serving`), as this member has applied them.
    pub keys: u64,
}

impl ShardsHeld {
    /// The shards not `Serving`: in migration.
    pub fn moving(&self) -> impl Iterator<Item = &(ShardId, ShardPhase)> {
        self.shards.iter().filter(|s| s.1 != ShardPhase::Serving)
    }
}

/// Where a held shard stands (the shard group's per-shard state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardPhase {
    /// Owned and installed: served.
    Serving,
    /// Owned, its data still at the previous owner.
    Pulling,
    /// Given away: frozen until the new owner confirms, then deleted.
    BePulled,
    /// Owned by nobody (every group left): kept here, frozen, until a group takes it.
    Parked,
}

impl ShardPhase {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            ShardPhase::Serving => "serving",
            ShardPhase::Pulling => "pulling",
            ShardPhase::BePulled => "be-pulled",
            ShardPhase::Parked => "parked",
        }
    }

    /// The phase of a wire name; unknown names read as `None`.
    pub fn from_name(name: &str) -> Option<ShardPhase> {
        match name {
            "serving" => Some(ShardPhase::Serving),
            "pulling" => Some(ShardPhase::Pulling),
            "be-pulled" => Some(ShardPhase::BePulled),
            "parked" => Some(ShardPhase::Parked),
            _ => None,
        }
    }
}

/// The wire name of a role.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// The role of a wire name; unknown names read as follower.
pub fn role_from_name(name: &str) -> Role {
    match name {
        "leader" => Role::Leader,
        "candidate" => Role::Candidate,
        "pre-candidate" => Role::PreCandidate,
        _ => Role::Follower,
    }
}
