//! The state machine the Raft scenarios replicate: it remembers a digest of every command
//! applied at every index, checks that entries arrive contiguously, and snapshots itself.

use serde::{Deserialize, Serialize};
use shardkv_types::{Entry, EntryKind, LogIndex};
use std::collections::BTreeMap;

/// FNV-1a, for short digests of command bytes.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The applied history of one node: index -> digest of the command (no-ops included, with
/// digest 0, so indexes stay contiguous).
///
/// Invariant: `applied` is the largest key, and keys are contiguous from the first one.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TestStateMachine {
    pub applied: LogIndex,
    pub values: BTreeMap<LogIndex, u64>,
}

impl TestStateMachine {
    /// Applies one committed entry; returns an error if it is out of order.
    pub fn apply(&mut self, e: &Entry) -> Result<(), String> {
        if e.index != self.applied.next() {
            return Err(format!(
                "apply out of order: expected index {}, got {}",
                self.applied.next(),
                e.index
            ));
        }
        let d = match e.kind {
            EntryKind::Normal => digest(&e.data),
            EntryKind::Noop => 0,
            // Told apart from a command with the same bytes.
            EntryKind::ConfChange => digest(&e.data).rotate_left(1),
        };
        self.values.insert(e.index, d);
        self.applied = e.index;
        Ok(())
    }

    /// The snapshot of everything applied so far.
    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding to memory cannot fail")
    }

    /// Replaces the state by a snapshot taken at `index`.
    pub fn restore(data: &[u8], index: LogIndex) -> Result<TestStateMachine, String> {
        let sm: TestStateMachine =
            postcard::from_bytes(data).map_err(|e| format!("bad snapshot: {e}"))?;
        if sm.applied != index {
            return Err(format!(
                "snapshot holds index {} but claims {}",
                sm.applied, index
            ));
        }
        Ok(sm)
    }
}
