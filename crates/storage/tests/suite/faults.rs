//! Fault policy on the simulated disk: fsync failure stops the store, a full disk rejects
//! writes cleanly and recovers, corruption and gaps are refused with a clear error.

use crate::common::{entries, files, meta};
use shardkv_storage::{Disk, RaftStore, SimDisk, StorageError, StoreOptions};
use shardkv_types::{HardState, LogIndex, NodeId, Term};
use std::path::Path;

const DIR: &str = "/n1";

fn open(disk: &SimDisk) -> (RaftStore<SimDisk>, shardkv_storage::Recovered) {
    let opts = StoreOptions {
        segment_bytes_max: 500,
    };
    RaftStore::open_with(disk.clone(), Path::new(DIR), NodeId(1), opts).expect("open")
}

#[test]
fn fsync_failure_is_sync_failed_and_poisons_every_later_write() {
    // Goal: an EIO from fsync is never retried past. Method: fail one sync, try every write.
    let disk = SimDisk::new(3);
    let (mut s, _) = open(&disk);
    s.append(&entries(1, 1, 3)).unwrap();
    s.sync().unwrap();
    s.append(&entries(1, 4, 5)).unwrap();
    disk.fail_next_sync();
    let err = s.sync().unwrap_err();
    assert!(
        matches!(err, StorageError::SyncFailed { .. }) && err.is_fatal(),
        "{err}"
    );
    assert!(err.to_string().contains("stop this process"), "{err}");
    assert!(matches!(s.sync(), Err(StorageError::Poisoned { .. })));
    assert!(matches!(
        s.append(&entries(1, 6, 6)),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(matches!(
        s.set_hard_state(HardState {
            term: Term(2),
            ..Default::default()
        }),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(matches!(
        s.save_snapshot(meta(3, 1), b"x"),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(s.poisoned().is_some());
    // Reads still work.
    assert_eq!(
        s.entries(LogIndex(1), LogIndex(4)).unwrap(),
        entries(1, 1, 3)
    );
    // After a restart what was synced is there.
    drop(s);
    disk.crash();
    let (_, r) = open(&disk);
    assert_eq!(r.entries[..3], entries(1, 1, 3)[..]);
}

#[test]
fn fsync_failure_of_a_snapshot_temp_file_changes_nothing_but_a_rotation_fsync_poisons() {
    // Goal: a failed fsync of a snapshot's temp file holds nothing acknowledged: the store
    // stays writable and a later snapshot succeeds; the fsync sealing a WAL segment still
    // poisons. Method: fail the snapshot's sync, check the store, snapshot again; restart;
    // fail the sealing sync.
    let disk = SimDisk::new(4);
    let (mut s, _) = open(&disk);
    s.append(&entries(1, 1, 5)).unwrap();
    s.sync().unwrap();
    disk.fail_next_sync();
    let err = s.save_snapshot(meta(3, 1), b"snap").unwrap_err();
    assert!(matches!(err, StorageError::SyncFailed { .. }), "{err}");
    assert!(
        s.poisoned().is_none(),
        "a snapshot temp file's fsync does not poison"
    );
    assert_eq!(s.snapshot_meta(), meta(0, 0));
    assert!(
        files(&mut disk.clone(), Path::new(DIR), "snap-").is_empty(),
        "the temp file is gone"
    );
    s.append(&entries(1, 6, 6)).unwrap();
    s.sync().unwrap();
    s.save_snapshot(meta(4, 1), b"snap4").unwrap();
    drop(s);
    disk.crash();
    let (_, r) = open(&disk);
    assert_eq!(r.snapshot, Some((meta(4, 1), b"snap4".to_vec())));
    assert_eq!(r.entries, entries(1, 5, 6));
    let disk = SimDisk::new(4);
    let (mut s, _) = open(&disk);
    s.append(&entries(1, 1, 5)).unwrap();
    s.sync().unwrap();
    drop(s);
    disk.crash();
    let (mut s, r) = open(&disk);
    assert_eq!(r.entries, entries(1, 1, 5));
    assert!(r.snapshot.is_none());
    let mut i = 6;
    let segments = s.segment_count();
    disk.fail_next_sync();
    // Append until the segment is sealed: the sealing fdatasync fails.
    let err = loop {
        assert!(i < 100, "never rotated");
        if let Err(e) = s.append(&entries(1, i, i)) {
            break e;
        }
        i += 1;
    };
    assert!(matches!(err, StorageError::SyncFailed { .. }), "{err}");
    assert_eq!(s.segment_count(), segments);
    assert!(s.poisoned().is_some());
}

/// A disk that refuses to create snapshot temp files while `refuse` is set, with EMFILE
/// (as a process at its descriptor limit sees it).
struct RefuseSnapshotFiles {
    inner: SimDisk,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Disk for RefuseSnapshotFiles {
    fn create_dir_all(&mut self, dir: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&mut self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn create(&mut self, path: &Path) -> std::io::Result<()> {
        let snapshot = path.to_string_lossy().ends_with(".snap.tmp");
        if snapshot && self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::from_raw_os_error(24)); // EMFILE
        }
        self.inner.create(path)
    }
    fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn read_at(&mut self, path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.inner.read_at(path, offset, len)
    }
    fn file_len(&mut self, path: &Path) -> std::io::Result<u64> {
        self.inner.file_len(path)
    }
    fn append(&mut self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        self.inner.append(path, data)
    }
    fn truncate(&mut self, path: &Path, len: u64) -> std::io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn sync(&mut self, path: &Path) -> std::io::Result<()> {
        self.inner.sync(path)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&mut self, path: &Path) -> std::io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&mut self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

#[test]
fn a_snapshot_file_that_cannot_be_created_changes_nothing_and_a_later_snapshot_succeeds() {
    // Goal: EMFILE (or EACCES) creating a snapshot file is not fatal: the error says what
    // failed, the store stays writable with its log, and the next snapshot is saved.
    // Method: refuse snapshot files, snapshot, write on; allow them, snapshot; restart.
    let disk = SimDisk::new(8);
    let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let faulty = RefuseSnapshotFiles {
        inner: disk.clone(),
        refuse: refuse.clone(),
    };
    let (mut s, _) = RaftStore::open(faulty, Path::new(DIR), NodeId(1)).expect("open");
    s.append(&entries(1, 1, 5)).unwrap();
    s.sync().unwrap();
    let err = s.save_snapshot(meta(3, 1), b"s3").unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    assert!(err.to_string().contains("create"), "{err}");
    assert!(s.poisoned().is_none());
    assert_eq!(s.first_index(), LogIndex(1), "the log is whole");
    s.append(&entries(1, 6, 8)).unwrap();
    s.sync().unwrap();
    refuse.store(false, std::sync::atomic::Ordering::Relaxed);
    s.save_snapshot(meta(7, 1), b"s7").unwrap();
    assert_eq!(s.first_index(), LogIndex(8));
    drop(s);
    disk.crash();
    let (_, r) = open(&disk);
    assert_eq!(r.snapshot, Some((meta(7, 1), b"s7".to_vec())));
    assert_eq!(r.entries, entries(1, 8, 8));
}

#[test]
fn full_disk_rejects_writes_without_partial_records_and_recovers_when_space_is_freed() {
    // Goal: ENOSPC is an operating condition. Method: cap the disk, write until NoSpace
    // (the simulated disk writes what fits first, like a short write), check nothing partial
    // is left, reads and restarts work, and writes resume once the cap is lifted.
    let disk = SimDisk::new(5);
    let (mut s, _) = open(&disk);
    s.append(&entries(1, 1, 3)).unwrap();
    s.sync().unwrap();
    disk.set_capacity_bytes(Some(disk.used_bytes() + 700));
    let mut last = 3;
    let err = loop {
        assert!(last < 200, "the disk never filled");
        let batch: Vec<_> = entries(1, last + 1, last + 4)
            .into_iter()
            .map(|mut e| {
                e.data = vec![7; 60];
                e
            })
            .collect();
        match s.append(&batch).and_then(|()| s.sync()) {
            Ok(()) => last += 4,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StorageError::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert!(!err.is_fatal() && s.poisoned().is_none());
    assert_eq!(s.last_index(), LogIndex(last));
    // Reads keep working, and so does a restart on the full disk (from a copy of it).
    assert_eq!(
        s.entries(LogIndex(1), LogIndex(2)).unwrap(),
        entries(1, 1, 1)
    );
    let copy = disk.fork();
    let (_, r) = open(&copy);
    assert_eq!(
        r.entries.len() as u64,
        last,
        "partial record visible: {:?}",
        r.warnings
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // A snapshot does not fit either, and leaves nothing behind.
    assert!(matches!(
        s.save_snapshot(meta(2, 1), &[1; 4000]),
        Err(StorageError::NoSpace { .. })
    ));
    assert_eq!(files(&mut disk.clone(), Path::new(DIR), "snap-").len(), 0);
    // Free space: writes resume.
    disk.set_capacity_bytes(None);
    s.append(&entries(1, last + 1, last + 2)).unwrap();
    s.save_snapshot(meta(2, 1), &[1; 4000]).unwrap();
    s.sync().unwrap();
    drop(s);
    disk.crash();
    let (_, r) = open(&disk);
    assert_eq!(r.entries.last().map(|e| e.index), Some(LogIndex(last + 2)));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn flipped_bit_in_a_sealed_segment_is_corruption_even_at_its_end() {
    // Goal: only the newest segment may have a torn tail. Method: damage the last record of
    // a sealed segment with SimDisk::flip_bit.
    let disk = SimDisk::new(6);
    let (mut s, _) = open(&disk);
    for i in 1..=40 {
        s.append(&entries(1, i, i)).unwrap();
    }
    s.sync().unwrap();
    assert!(s.segment_count() >= 2);
    drop(s);
    let mut d = disk.clone();
    let sealed = files(&mut d, Path::new(DIR), "wal-")[0].clone();
    let len = d.file_len(&sealed).unwrap();
    disk.flip_bit(&sealed, len - 1, 5);
    match RaftStore::open(disk.clone(), Path::new(DIR), NodeId(1)) {
        Err(StorageError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, sealed);
            assert!(offset < len);
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn gap_between_snapshot_and_log_is_a_clear_error() {
    // Goal: when the newest snapshot is corrupt and the older one cannot be continued by the
    // log (a divergent install discarded it), open refuses with Gap, naming both indexes.
    let disk = SimDisk::new(7);
    let (mut s, _) = open(&disk);
    s.append(&entries(1, 1, 20)).unwrap();
    s.sync().unwrap();
    s.save_snapshot(meta(10, 1), b"ten").unwrap();
    s.save_snapshot(meta(30, 2), b"thirty").unwrap(); // divergent: replaces the log
    s.append(&entries(2, 31, 32)).unwrap();
    s.sync().unwrap();
    drop(s);
    let mut d = disk.clone();
    let newest = files(&mut d, Path::new(DIR), "snap-").pop().unwrap();
    disk.flip_bit(&newest, 34, 1);
    match RaftStore::open(disk.clone(), Path::new(DIR), NodeId(1)) {
        Err(e @ StorageError::Gap { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("up to i10") && msg.contains("first log entry is i31"),
                "{msg}"
            );
            assert!(msg.contains("refused snapshot"), "{msg}");
        }
        other => panic!("expected Gap, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_snapshot_in_two_steps_compacts_only_when_finished_and_a_crash_before_keeps_the_full_log() {
    // Goal: the background path (start, run anywhere, finish) changes nothing before
    // `finish_snapshot`: a crash in between recovers the old state with the full log, the
    // file written meanwhile is used (it is complete) or ignored; finishing compacts; an
    // install that overtook the job wins and the job's file goes. Method: SimDisk, each
    // case from a fresh store.
    let disk = SimDisk::new(21);
    let (mut s, _) = open(&disk);
    s.append(&entries(1, 1, 6)).unwrap();
    s.sync().unwrap();
    let job = s
        .start_snapshot(meta(4, 1), std::sync::Arc::new(b"s4".to_vec()))
        .unwrap();
    assert_eq!(
        s.first_index(),
        LogIndex(1),
        "nothing changes before the job ends"
    );
    drop(s);
    disk.crash();
    let (mut s, r) = open(&disk);
    assert!(r.snapshot.is_none());
    assert_eq!(r.entries, entries(1, 1, 6));
    // Run it on another handle to the same files, then finish.
    let written = job.run(&mut disk.clone());
    assert_eq!(s.first_index(), LogIndex(1));
    s.finish_snapshot(written).unwrap();
    assert_eq!(s.first_index(), LogIndex(5));
    assert_eq!(s.snapshot_meta(), meta(4, 1));
    drop(s);
    disk.crash();
    let (mut s, r) = open(&disk);
    assert_eq!(r.snapshot, Some((meta(4, 1), b"s4".to_vec())));
    assert_eq!(r.entries, entries(1, 5, 6));
    // A leader's snapshot installed while a job runs: the job's outcome is dropped.
    let job = s
        .start_snapshot(meta(5, 1), std::sync::Arc::new(b"s5".to_vec()))
        .unwrap();
    let written = job.run(&mut disk.clone());
    s.save_snapshot(meta(9, 2), b"leader9").unwrap();
    s.finish_snapshot(written).unwrap();
    assert_eq!(s.snapshot_meta(), meta(9, 2));
    assert!(
        !files(&mut disk.clone(), Path::new(DIR), "snap-5-")
            .iter()
            .any(|_| true),
        "the overtaken snapshot's file is removed"
    );
    drop(s);
    disk.crash();
    let (_, r) = open(&disk);
    assert_eq!(r.snapshot, Some((meta(9, 2), b"leader9".to_vec())));
}
