//! WAL throughput with fsync, next to the raw fdatasync rate of the same disk.
//!
//! `cargo bench -p shardkv-storage --bench wal` (a benchmark, never a test). Writes in a temp
//! dir under the cargo target dir, so it measures the disk the build runs on. Each
//! measurement runs for `RUN_SECS` or `RECORDS_MAX` records, whichever comes first.

use shardkv_storage::{FsDisk, RaftStore};
use shardkv_types::{Entry, LogIndex, NodeId, Term};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RECORD_BYTES: usize = 256;
const RUN_SECS: u64 = 3;
const RECORDS_MAX: u64 = 2_000_000;
const BATCHES: [u64; 3] = [1, 16, 256];

struct Rate {
    records: u64,
    syncs: u64,
    elapsed: Duration,
}

impl Rate {
    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("wal-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create bench dir");
    dir
}

/// The disk's own rate: write 256 bytes, fdatasync, repeat.
fn raw_fdatasync(dir: &Path) -> Rate {
    let path = dir.join("raw");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open");
    let buf = [0xabu8; RECORD_BYTES];
    let start = Instant::now();
    let mut n = 0;
    while n < RECORDS_MAX && start.elapsed() < Duration::from_secs(RUN_SECS) {
        file.write_all(&buf).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    Rate {
        records: n,
        syncs: n,
        elapsed: start.elapsed(),
    }
}

/// The store: `batch` entries of 256 bytes per append, one sync per batch.
fn wal(dir: &Path, batch: u64) -> Rate {
    let (mut store, _) = RaftStore::open(FsDisk::new(), dir, NodeId(1)).expect("open store");
    let start = Instant::now();
    let (mut next, mut syncs) = (1u64, 0u64);
    while next <= RECORDS_MAX && start.elapsed() < Duration::from_secs(RUN_SECS) {
        let entries: Vec<Entry> = (next..next + batch)
            .map(|i| Entry::normal(Term(1), LogIndex(i), vec![(i % 251) as u8; RECORD_BYTES]))
            .collect();
        store.append(&entries).expect("append");
        store.sync().expect("sync");
        next += batch;
        syncs += 1;
    }
    Rate {
        records: next - 1,
        syncs,
        elapsed: start.elapsed(),
    }
}

fn main() {
    let dir = scratch("raw");
    println!(
        "shardkv-storage WAL benchmark: {RECORD_BYTES}-byte records, fdatasync per batch, dir {}",
        dir.display()
    );
    let raw = raw_fdatasync(&dir);
    println!(
        "{:<28} {:>10.0} records/s {:>8.2} MB/s {:>8.0} fsync/s",
        "raw write+fdatasync",
        raw.per_sec(raw.records),
        raw.per_sec(raw.records) * RECORD_BYTES as f64 / 1e6,
        raw.per_sec(raw.syncs)
    );
    let _ = std::fs::remove_dir_all(&dir);
    for batch in BATCHES {
        let dir = scratch(&format!("batch{batch}"));
        let r = wal(&dir, batch);
        println!(
            "{:<28} {:>10.0} records/s {:>8.2} MB/s {:>8.0} fsync/s",
            format!("wal batch {batch}"),
            r.per_sec(r.records),
            r.per_sec(r.records) * RECORD_BYTES as f64 / 1e6,
            r.per_sec(r.syncs)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
