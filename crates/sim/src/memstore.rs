//! An in-memory Raft store with exactly the semantics of the durable one: what was handed to
//! it survives a crash, nothing else exists.

use shardkv_raft::{Restored, Snapshot};
use shardkv_types::{Entry, HardState, SnapshotMeta};
use std::sync::Arc;

/// The persisted state of one simulated node.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    hard_state: HardState,
    snapshot: Option<(SnapshotMeta, Arc<Vec<u8>>)>,
    entries: Vec<Entry>,
}

impl MemStore {
    /// Appends, first dropping any stored entry at or after `entries[0].index`.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let base = self.snapshot.as_ref().map_or(0, |(m, _)| m.index.0);
        let keep = first.index.0.saturating_sub(base + 1) as usize;
        assert!(keep <= self.entries.len(), "gap in appended entries");
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Stores a snapshot and drops the log prefix it covers (or the whole log if the log
    /// does not contain the snapshot's last entry).
    pub fn save_snapshot(&mut self, meta: SnapshotMeta, data: Arc<Vec<u8>>) {
        let base = self.snapshot.as_ref().map_or(0, |(m, _)| m.index.0);
        let pos = meta.index.0.checked_sub(base + 1).map(|p| p as usize);
        match pos.and_then(|p| self.entries.get(p).map(|e| (p, e.term))) {
            Some((p, term)) if term == meta.term => {
                self.entries.drain(..=p);
            }
            _ => self.entries.clear(),
        }
        self.snapshot = Some((meta, data));
    }

    /// What a restarting node recovers.
    pub fn recover(&self) -> Restored {
        Restored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|(meta, data)| Snapshot {
                meta: *meta,
                data: data.clone(),
            }),
            entries: self.entries.clone(),
        }
    }

    /// Encoded size of the hard state plus the log: the "persisted Raft state" the lab
    /// testers bound.
    pub fn raft_state_bytes(&self) -> usize {
        let hs = postcard::to_allocvec(&self.hard_state).map_or(0, |v| v.len());
        hs + self
            .entries
            .iter()
            .map(|e| postcard::to_allocvec(e).map_or(0, |v| v.len()))
            .sum::<usize>()
    }

    pub fn snapshot_bytes(&self) -> usize {
        self.snapshot.as_ref().map_or(0, |(_, d)| d.len())
    }
}
