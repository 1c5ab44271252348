//! Helpers shared by the suite: temp dirs, entry builders and state checks.

use shardkv_storage::{Disk, Recovered};
use shardkv_types::{Entry, LogIndex, SnapshotMeta, Term};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under cargo's per-target temp dir (on the build disk), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("storage-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Entries `lo..=hi` of `term`, each carrying data derived from its index and term.
pub fn entries(term: u64, lo: u64, hi: u64) -> Vec<Entry> {
    (lo..=hi)
        .map(|i| Entry::normal(Term(term), LogIndex(i), payload(term, i)))
        .collect()
}

pub fn payload(term: u64, index: u64) -> Vec<u8> {
    format!("t{term}-i{index}-{}", "x".repeat((index % 7) as usize)).into_bytes()
}

pub fn meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta::at(LogIndex(index), Term(term))
}

/// Asserts the structural validity of a recovered state: entries contiguous and starting
/// right after the snapshot.
pub fn assert_valid(r: &Recovered) {
    let snap = r
        .snapshot
        .as_ref()
        .map(|(m, _)| m.index)
        .unwrap_or_default();
    for (k, e) in r.entries.iter().enumerate() {
        assert_eq!(
            e.index,
            LogIndex(snap.0 + 1 + k as u64),
            "entries not contiguous after {snap}"
        );
    }
}

/// Flips one bit of a file through the `Disk` seam (cut at `offset`, rewrite the tail), so
/// corruption tests run on any disk.
pub fn flip_bit<D: Disk>(disk: &mut D, path: &Path, offset: u64, bit: u8) {
    let data = disk.read(path).expect("read file to corrupt");
    let mut tail = data[offset as usize..].to_vec();
    tail[0] ^= 1 << bit;
    disk.truncate(path, offset).expect("truncate");
    disk.append(path, &tail).expect("rewrite");
    disk.sync(path).expect("sync");
}

/// The names in `dir` that start with `prefix`.
pub fn files<D: Disk>(disk: &mut D, dir: &Path, prefix: &str) -> Vec<PathBuf> {
    disk.list_dir(dir)
        .expect("list dir")
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(|n| dir.join(n))
        .collect()
}
