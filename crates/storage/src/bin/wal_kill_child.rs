//! Test helper for the SIGKILL test (`tests/suite/real_fs.rs`); not a tool.
//!
//! Usage: `wal-kill-child <dir>`. Opens the store of node 1 in `dir` on the real filesystem
//! and appends forever (bounded) in small synced batches, every so often replacing its last
//! two entries under a new term (a truncation) and saving a snapshot. After each sync it
//! prints `durable <index>`: every entry up to `index` and the hard state with
//! `commit = index` are on disk. The parent kills it with SIGKILL at some point.

use shardkv_storage::{FsDisk, RaftStore, StoreOptions};
use shardkv_types::{Entry, HardState, LogIndex, NodeId, SnapshotMeta, Term};
use std::io::Write;
use std::path::PathBuf;

/// The data of entry `index`: what the parent expects to find after a restart.
fn payload(index: u64) -> Vec<u8> {
    let mut data = format!("entry-{index}-").into_bytes();
    data.resize(100, b'.');
    data
}

/// Entries the child writes before it stops on its own (the parent kills it long before).
const ENTRIES_MAX: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: wal-kill-child <dir>")?,
    );
    let opts = StoreOptions {
        segment_bytes_max: 8 << 10,
    };
    let (mut store, recovered) = RaftStore::open_with(FsDisk::new(), &dir, NodeId(1), opts)?;
    let mut term = recovered.hard_state.term.0.max(1);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", store.last_index().0)?;
    out.flush()?;
    let mut batches = 0u64;
    while store.last_index().0 < ENTRIES_MAX {
        batches += 1;
        let last = store.last_index().0;
        // Every 7th batch first rewrites the last two entries under a new term.
        let from = if batches.is_multiple_of(7) && last > store.first_index().0 {
            term += 1;
            last - 1
        } else {
            last + 1
        };
        let to = last + 1 + batches % 4;
        let batch: Vec<Entry> = (from..=to)
            .map(|i| Entry::normal(Term(term), LogIndex(i), payload(i)))
            .collect();
        store.append(&batch)?;
        store.set_hard_state(HardState {
            term: Term(term),
            vote: Some(NodeId(1)),
            commit: LogIndex(to),
        })?;
        store.sync()?;
        writeln!(out, "durable {to}")?;
        out.flush()?;
        if batches.is_multiple_of(9) && to > 10 {
            let index = LogIndex(to - 5);
            let meta = SnapshotMeta::at(index, store.term(index).ok_or("term of a live entry")?);
            store.save_snapshot(meta, format!("snapshot@{}", index.0).as_bytes())?;
        }
    }
    Ok(())
}
