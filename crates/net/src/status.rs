//! `NodeStatus`: one member's view of its group, as the Status RPC reports it.

use shardkv_raft::Role;
use shardkv_types::{LogIndex, NodeId, Term};

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
