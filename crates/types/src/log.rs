//! The records Raft persists: log entries, the hard state, and snapshot metadata.

use crate::{ConfEntry, LogIndex, Membership, NodeId, Term};
use serde::{Deserialize, Serialize};

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// An application command; `data` is opaque to Raft.
    Normal,
    /// The empty entry a new leader appends at once so that it can commit an entry of its
    /// own term (Raft §5.4.2, §8). `data` is empty.
    Noop,
    /// A single-server membership change (Raft thesis §4.1): `data` is a
    /// [`ConfEntry::encode`]. It takes effect on every node as soon as it is in the log,
    /// committed or not.
    ConfChange,
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub kind: EntryKind,
    /// Encoded as a byte string: the same bytes as a sequence of u8 in postcard, without a
    /// call per byte (the WAL and peers read what older builds wrote).
    #[serde(with = "serde_bytes")]
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

    /// A membership change entry.
    pub fn conf_change(term: Term, index: LogIndex, conf: &ConfEntry) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::ConfChange,
            data: conf.encode(),
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
    /// The group's membership as of `index` (the latest change at or before it). Empty in
    /// snapshots written before membership changes existed: the node's configured voters
    /// then stand.
    pub conf: Membership,
}

impl SnapshotMeta {
    /// The point `index`/`term` with an unknown (empty) membership.
    pub fn at(index: LogIndex, term: Term) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term,
            conf: Membership::default(),
        }
    }
}
