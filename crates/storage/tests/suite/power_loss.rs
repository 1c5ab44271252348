//! Power loss with out-of-order write-back (`CrashMode::Pages`): the store writes
//! commit-only hard states and appends without a sync, so a power cut can leave a hole in
//! the unsynced tail with valid records after it. Recovery must cut that tail and keep
//! everything synced, and still refuse damage to synced data and a WAL of the old format.

use crate::common::{entries, files};
use shardkv_storage::{CrashMode, Disk, RaftStore, Recovered, SimDisk, StorageError};
use shardkv_types::{HardState, LogIndex, NodeId, Term};
use std::path::Path;

const DIR: &str = "/n1";

fn open(disk: &SimDisk) -> Result<(RaftStore<SimDisk>, Recovered), StorageError> {
    RaftStore::open(disk.clone(), Path::new(DIR), NodeId(1))
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: Some(NodeId(1)),
        commit: LogIndex(commit),
    }
}

/// A store with entries 1..=20 and term 3 synced, then unsynced commit-only hard states
/// and entries 21..=60 (several pages).
fn synced_then_unsynced(seed: u64) -> SimDisk {
    let disk = SimDisk::new(seed);
    let (mut s, _) = open(&disk).unwrap();
    s.append(&entries(3, 1, 20)).unwrap();
    s.set_hard_state(hs(3, 5)).unwrap();
    s.sync().unwrap();
    for i in 21..=60 {
        s.append(&entries(3, i, i)).unwrap();
        s.set_hard_state(hs(3, i - 10)).unwrap();
    }
    disk
}

#[test]
fn a_power_cut_that_leaves_unsynced_holes_recovers_everything_synced() {
    // Goal: the out-of-order crash never makes recovery refuse and never loses a synced
    // write. Method: 200 crash seeds over the same history; count the crashes that really
    // left a hole before valid records (the case the old recovery refused).
    let mut holes = 0;
    for seed in 0..200 {
        let disk = synced_then_unsynced(seed);
        disk.crash_with(CrashMode::Pages { page_bytes: 512 });
        let (_, r) = open(&disk).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(r.entries.len() >= 20, "seed {seed}: lost synced entries");
        assert_eq!(r.entries[..20], entries(3, 1, 20)[..], "seed {seed}");
        assert_eq!(r.hard_state.term, Term(3), "seed {seed}");
        assert!(r.hard_state.commit >= LogIndex(5), "seed {seed}");
        if r.warnings.iter().any(|w| w.contains("out of order")) {
            holes += 1;
        }
    }
    assert!(
        holes > 10,
        "only {holes} crashes left a hole before valid records"
    );
}

#[test]
fn damage_to_synced_records_is_refused_even_when_it_looks_like_a_hole() {
    // Goal: the synced-offset marker of a later record proves the damaged bytes were
    // synced, so a zeroed sector there is corruption, not an unsynced tail.
    let disk = SimDisk::new(1);
    let (mut s, _) = open(&disk).unwrap();
    s.append(&entries(1, 1, 40)).unwrap();
    s.sync().unwrap();
    s.set_hard_state(hs(1, 2)).unwrap(); // carries the marker; it need not be synced
    drop(s);
    let mut d = disk.clone();
    let seg = files(&mut d, Path::new(DIR), "wal-").pop().unwrap();
    let bytes = d.read(&seg).unwrap();
    assert!(bytes.len() > 1024);
    let mut damaged = bytes[..512].to_vec();
    damaged.resize(1024, 0);
    damaged.extend_from_slice(&bytes[1024..]);
    d.truncate(&seg, 0).unwrap();
    d.append(&seg, &damaged).unwrap();
    d.sync(&seg).unwrap();
    match open(&disk) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("synced data is damaged"), "{msg}");
            assert!(msg.contains(&seg.display().to_string()), "{msg}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_wal_of_the_previous_format_is_refused_with_a_clear_error() {
    // Goal: a data dir written before the format change gives an error that says so (no
    // panic, no silent cut). Method: a segment made of a format-1 record (the node-id
    // marker file holds one, in the unchanged record framing).
    let disk = SimDisk::new(2);
    drop(open(&disk).unwrap());
    let mut d = disk.clone();
    let seg = files(&mut d, Path::new(DIR), "wal-").pop().unwrap();
    let old = d.read(&Path::new(DIR).join("node-id")).unwrap();
    d.truncate(&seg, 0).unwrap();
    d.append(&seg, &old).unwrap();
    d.sync(&seg).unwrap();
    match open(&disk) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("format 1") && msg.contains("no upgrade path"),
                "{msg}"
            );
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}
