//! [`GroupSpec`]: one Raft group of a simulated world — its id, what it runs and its voters.

use shardkv_raft::Config;
use shardkv_types::{Gid, NodeId};

/// What a group's members run. A world's app ([`GroupApp`](crate::GroupApp)) starts the
/// matching variant; a single-app simulator (`Sim<KvNode>`, ...) checks that its app runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupKind {
    /// Bare Raft with the test state machine ([`RaftApp`](crate::RaftApp)).
    Raft,
    /// The KV service ([`KvNode`](crate::KvNode)).
    Kv,
    /// The shard controller ([`CtrlNode`](crate::CtrlNode)).
    Ctrl,
    /// A shard group of the sharded store (`ShardGroup`: the replica of `ShardKv` and its
    /// leader's duties), served by the world's controller group.
    Shard,
}

/// One group of a simulated world.
///
/// Invariant (checked by `ClusterConfig::check`): node ids are unique across the world, so a
/// node id names one member of one group.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub gid: Gid,
    pub kind: GroupKind,
    /// The voters, each a node of this group only. Not empty.
    pub members: Vec<NodeId>,
    /// Adjusts this group's Raft configuration, after the world-wide `ClusterConfig::raft`
    /// (and before the fuzzers' tweak).
    pub raft: fn(&mut Config),
    /// In a world ([`GroupApp`](crate::GroupApp)): every member polls this controller
    /// group for the latest config over the simulated network (a [`ConfigPoller`](crate::ConfigPoller)).
    pub polls: Option<Gid>,
}

impl GroupSpec {
    /// Group `gid` of `kind` with voters `members`.
    ///
    /// # Panics
    /// If `members` is empty.
    pub fn new(gid: Gid, kind: GroupKind, members: impl IntoIterator<Item = u64>) -> GroupSpec {
        let members: Vec<NodeId> = members.into_iter().map(NodeId).collect();
        assert!(!members.is_empty(), "group {gid} has no members");
        GroupSpec {
            gid,
            kind,
            members,
            raft: |_| {},
            polls: None,
        }
    }
}
