//! The records Raft persists: log entries, the hard state, and snapshot metadata.

use crate::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// An application command; `data` is opaque to Raft.
    Normal,
    /// The empty entry a new leader appends at once so that it can commit an entry of its
    /// own term (Raft §5.4.2, §8). `data` is empty.
    Noop,
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub kind: EntryKind,
    pub data: Vec<u8>,
}

impl Entry {
    /// An application entry.
    pub fn normal(term: Term, index: LogIndex, data: Vec<u8>) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data,
        }
    }

    /// A leader's no-op entry.
    pub fn noop(term: Term, index: LogIndex) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Noop,
            data: Vec::new(),
        }
    }

    /// The approximate number of bytes this entry costs on the wire and on disk; used to
    /// bound batches.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + 24
    }
}

/// The state Raft must persist before it answers any message that depends on it.
///
/// Invariant: `term` never decreases; `vote` is for `term`; `commit` never decreases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: LogIndex,
}

/// Which prefix of the log a snapshot replaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last log index the snapshot covers (inclusive).
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
}
