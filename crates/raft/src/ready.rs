//! The output batch of the core: what the application must persist, send and apply.

use crate::Message;
use shardkv_types::{Entry, HardState, LogIndex, NodeId, SnapshotMeta};
use std::sync::Arc;

/// A node's role in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Volatile state worth reporting: who leads, and what this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub leader: Option<NodeId>,
    pub role: Role,
}

/// A state-machine snapshot: the metadata of the log prefix it replaces and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Arc<Vec<u8>>,
}

/// The answer to a ReadIndex request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The id the application gave `read_index`.
    pub ctx: u64,
    /// `Some(index)`: once the application has applied `index`, a read of its state is
    /// linearizable. `None`: this node lost leadership before confirming; retry elsewhere.
    pub index: Option<LogIndex>,
}

/// One batch of work for the application, handed out by `RawNode::ready` and acknowledged
/// with `RawNode::advance`.
///
/// The application must, in this order:
/// 1. persist `snapshot` (if any; it replaces the whole persisted log unless that log holds
///    the snapshot's last entry with the same term, in which case only the covered prefix
///    goes), then `entries` (the first of them replaces any persisted entry at the same or a
///    higher index), then `hard_state` (if any), durably;
/// 2. send `messages` (they may depend on what step 1 persisted);
/// 3. install `snapshot` into the state machine, then apply `committed_entries` in order;
/// 4. answer `read_states` once the state machine has applied each one's index;
/// 5. call `advance` with this Ready.
///
/// An application that cannot do step 1 (its disk is full) need not stop the node: it may
/// clear `entries` and `hard_state` — the core then hands them out again in the next Ready,
/// since `advance` marks as stable only the entries it is given and remembers only the hard
/// state it is given — send only the messages for which [`Message::waits_for_persist`] is
/// false, and none at all if `hard_state` changes the term or the vote (they may not leave
/// before that is durable), then do steps 3–5. Committed entries are durable on a quorum,
/// so applying them does not depend on this node's disk; but the application must not
/// snapshot (`RawNode::compact`) past the entries it persisted. Not for a Ready that carries a
/// `snapshot`: the core has already replaced its log with it, so that one must be persisted
/// (or retried) before anything else.
#[derive(Debug, Default)]
pub struct Ready {
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
}

impl Ready {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
    }

    /// True when step 1 has something to persist.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }
}
