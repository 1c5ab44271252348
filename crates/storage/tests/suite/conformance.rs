//! The conformance suite: what every `Disk` implementation must give `RaftStore`, run on
//! the real filesystem and on the simulated disk. Each case reopens the store (a clean
//! restart) and compares the recovered state with what was written.

use crate::common::{TempDir, assert_valid, entries, files, flip_bit, meta};
use shardkv_storage::{Disk, FsDisk, RaftStore, SimDisk, StorageError, StoreOptions};
use shardkv_types::{HardState, LogIndex, NodeId, Term};
use std::path::Path;

type Mk<'a, D> = &'a mut dyn FnMut() -> D;
/// One conformance case: a name and the function that runs it in a fresh directory.
type Case<D> = (&'static str, fn(Mk<'_, D>, &Path));

const ID: NodeId = NodeId(1);

fn small_segments() -> StoreOptions {
    StoreOptions {
        segment_bytes_max: 300,
    }
}

fn run_all<D: Disk>(mk: Mk<'_, D>, root: &Path) {
    let cases: [Case<D>; 10] = [
        ("append_sync_reopen", append_sync_reopen),
        (
            "truncate_suffix_then_reappend",
            truncate_suffix_then_reappend,
        ),
        ("hard_state_last_wins", hard_state_last_wins),
        ("snapshot_drops_prefix", snapshot_drops_prefix),
        (
            "snapshot_install_replaces_divergent_log",
            snapshot_install_replaces_divergent_log,
        ),
        ("rotation_and_compaction", rotation_and_compaction),
        ("wrong_node_refused", wrong_node_refused),
        (
            "corrupt_middle_record_refused",
            corrupt_middle_record_refused,
        ),
        ("corrupt_snapshot_falls_back", corrupt_snapshot_falls_back),
        ("torn_tail_cut", torn_tail_cut),
    ];
    for (name, case) in cases {
        case(mk, &root.join(name));
    }
}

#[test]
fn conformance_on_fs_disk() {
    // Goal: the store keeps its contract on the real filesystem (temp dir on the build disk).
    let tmp = TempDir::new("conformance");
    run_all(&mut FsDisk::new, tmp.path());
}

#[test]
fn conformance_on_sim_disk() {
    // Goal: the same cases pass on one shared simulated disk.
    let disk = SimDisk::new(1);
    run_all(&mut || disk.clone(), Path::new("/sim"));
}

fn append_sync_reopen<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, r) = RaftStore::open(mk(), dir, ID).unwrap();
    assert_eq!(r.entries.len(), 0);
    assert_eq!(r.hard_state, HardState::default());
    s.append(&entries(1, 1, 3)).unwrap();
    s.append(&entries(1, 4, 5)).unwrap();
    s.sync().unwrap();
    assert_eq!(s.last_index(), LogIndex(5));
    assert_eq!(
        s.entries(LogIndex(2), LogIndex(5)).unwrap(),
        entries(1, 2, 4)
    );
    drop(s);
    let (s, r) = RaftStore::open(mk(), dir, ID).unwrap();
    assert_eq!(r.entries, entries(1, 1, 5));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(s.term(LogIndex(5)), Some(Term(1)));
}

fn truncate_suffix_then_reappend<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, _) = RaftStore::open(mk(), dir, ID).unwrap();
    s.append(&entries(1, 1, 10)).unwrap();
    s.append(&entries(2, 6, 8)).unwrap();
    assert_eq!(s.last_index(), LogIndex(8));
    s.sync().unwrap();
    assert!(matches!(
        s.append(&entries(2, 10, 10)),
        Err(StorageError::BadAppend { .. })
    ));
    drop(s);
    let (mut s, r) = RaftStore::open(mk(), dir, ID).unwrap();
    let mut want = entries(1, 1, 5);
    want.extend(entries(2, 6, 8));
    assert_eq!(r.entries, want);
    // Truncate again, across the earlier truncation, then extend.
    s.append(&entries(3, 4, 4)).unwrap();
    s.append(&entries(3, 5, 9)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, r) = RaftStore::open(mk(), dir, ID).unwrap();
    let mut want = entries(1, 1, 3);
    want.extend(entries(3, 4, 9));
    assert_eq!(r.entries, want);
}

fn hard_state_last_wins<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, _) = RaftStore::open(mk(), dir, ID).unwrap();
    for t in 1..=3 {
        s.set_hard_state(HardState {
            term: Term(t),
            vote: Some(NodeId(t)),
            commit: LogIndex(0),
        })
        .unwrap();
    }
    s.sync().unwrap();
    drop(s);
    let (_, r) = RaftStore::open(mk(), dir, ID).unwrap();
    assert_eq!(r.hard_state.term, Term(3));
    assert_eq!(r.hard_state.vote, Some(NodeId(3)));
}

fn snapshot_drops_prefix<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, _) = RaftStore::open(mk(), dir, ID).unwrap();
    s.append(&entries(1, 1, 20)).unwrap();
    s.sync().unwrap();
    let before = s.raft_state_bytes();
    assert!(matches!(
        s.save_snapshot(meta(0, 0), b""),
        Err(StorageError::StaleSnapshot { .. })
    ));
    s.save_snapshot(meta(10, 1), b"state@10").unwrap();
    assert!(s.raft_state_bytes() < before);
    assert_eq!(s.first_index(), LogIndex(11));
    assert_eq!(s.term(LogIndex(10)), Some(Term(1)));
    assert_eq!(
        s.load_snapshot().unwrap(),
        Some((meta(10, 1), b"state@10".to_vec()))
    );
    drop(s);
    let (s, r) = RaftStore::open(mk(), dir, ID).unwrap();
    assert_eq!(r.snapshot, Some((meta(10, 1), b"state@10".to_vec())));
    assert_eq!(r.entries, entries(1, 11, 20));
    assert_eq!(s.first_index(), LogIndex(11));
}

fn snapshot_install_replaces_divergent_log<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, _) = RaftStore::open(mk(), dir, ID).unwrap();
    s.append(&entries(1, 1, 20)).unwrap();
    s.sync().unwrap();
    // The leader's snapshot at 15 has term 3: our entry 15 (term 1) diverges.
    s.save_snapshot(meta(15, 3), b"leader@15").unwrap();
    assert_eq!(s.last_index(), LogIndex(15));
    s.append(&entries(3, 16, 17)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (mut s, r) = RaftStore::open(mk(), dir, ID).unwrap();
    assert_eq!(r.entries, entries(3, 16, 17));
    // A snapshot ahead of the log replaces it too.
    s.save_snapshot(meta(30, 4), b"leader@30").unwrap();
    s.append(&entries(4, 31, 31)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, r) = RaftStore::open(mk(), dir, ID).unwrap();
    assert_eq!(r.snapshot.as_ref().map(|x| x.0), Some(meta(30, 4)));
    assert_eq!(r.entries, entries(4, 31, 31));
}

fn rotation_and_compaction<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, _) = RaftStore::open_with(mk(), dir, ID, small_segments()).unwrap();
    for i in 1..=60 {
        s.append(&entries(1, i, i)).unwrap();
        s.set_hard_state(HardState {
            term: Term(1),
            vote: None,
            commit: LogIndex(i - 1),
        })
        .unwrap();
        s.sync().unwrap();
    }
    let segments = s.segment_count();
    assert!(segments > 5, "only {segments} segments");
    let disk_bytes = s.disk_bytes();
    s.save_snapshot(meta(30, 1), b"a").unwrap();
    // One snapshot: nothing deleted yet (the log before it backs a fallback to "none").
    assert_eq!(s.segment_count(), segments);
    s.save_snapshot(meta(50, 1), b"b").unwrap();
    assert!(s.segment_count() < segments);
    assert!(s.disk_bytes() < disk_bytes);
    s.save_snapshot(meta(55, 1), b"c").unwrap();
    assert_eq!(files(&mut mk(), dir, "snap-").len(), 2);
    drop(s);
    let (_, r) = RaftStore::open_with(mk(), dir, ID, small_segments()).unwrap();
    assert_eq!(r.entries, entries(1, 56, 60));
    assert_eq!(r.hard_state.commit, LogIndex(59));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

fn wrong_node_refused<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, _) = RaftStore::open(mk(), dir, ID).unwrap();
    s.append(&entries(1, 1, 1)).unwrap();
    s.sync().unwrap();
    drop(s);
    match RaftStore::open(mk(), dir, NodeId(2)) {
        Err(e @ StorageError::WrongNode { .. }) => {
            assert!(e.to_string().contains("belongs to node n1"), "{e}");
        }
        other => panic!("expected WrongNode, got {:?}", other.map(|_| ())),
    }
}

fn corrupt_middle_record_refused<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, _) = RaftStore::open(mk(), dir, ID).unwrap();
    s.append(&entries(1, 1, 10)).unwrap();
    s.sync().unwrap();
    drop(s);
    let mut disk = mk();
    let seg = files(&mut disk, dir, "wal-").pop().expect("a segment");
    let bytes = disk.read(&seg).unwrap();
    let offset = (bytes.len() / 2) as u64;
    flip_bit(&mut disk, &seg, offset, 3);
    match RaftStore::open(mk(), dir, ID) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let StorageError::Corrupt {
                file, offset: at, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(file, &seg);
            assert!(
                *at <= offset && offset - at < 64,
                "record offset {at}, flip at {offset}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&seg.display().to_string()) && msg.contains(&format!("offset {at}")),
                "{msg}"
            );
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

fn corrupt_snapshot_falls_back<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, _) = RaftStore::open(mk(), dir, ID).unwrap();
    s.append(&entries(1, 1, 30)).unwrap();
    s.sync().unwrap();
    s.save_snapshot(meta(10, 1), b"old").unwrap();
    s.save_snapshot(meta(20, 1), b"new").unwrap();
    drop(s);
    let mut disk = mk();
    let newest = files(&mut disk, dir, "snap-").pop().expect("snapshot");
    assert!(newest.to_string_lossy().contains("00000000000000000020"));
    flip_bit(&mut disk, &newest, 33, 0);
    let (_, r) = RaftStore::open(mk(), dir, ID).unwrap();
    assert_eq!(r.snapshot, Some((meta(10, 1), b"old".to_vec())));
    assert_eq!(r.entries, entries(1, 11, 30));
    assert!(
        r.warnings.iter().any(|w| w.contains("refused snapshot")),
        "{:?}",
        r.warnings
    );
}

fn torn_tail_cut<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let (mut s, _) = RaftStore::open(mk(), dir, ID).unwrap();
    s.append(&entries(1, 1, 4)).unwrap();
    s.sync().unwrap();
    drop(s);
    let mut disk = mk();
    let seg = files(&mut disk, dir, "wal-").pop().expect("a segment");
    // Half a record: a plausible header, then nothing.
    disk.append(&seg, &[40, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9])
        .unwrap();
    disk.sync(&seg).unwrap();
    let (mut s, r) = RaftStore::open(mk(), dir, ID).unwrap();
    assert_eq!(r.entries, entries(1, 1, 4));
    assert!(
        r.warnings.iter().any(|w| w.contains("unsynced tail")),
        "{:?}",
        r.warnings
    );
    assert_valid(&r);
    s.append(&entries(1, 5, 5)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, r) = RaftStore::open(mk(), dir, ID).unwrap();
    assert_eq!(r.entries, entries(1, 1, 5));
    assert!(r.warnings.is_empty());
}
