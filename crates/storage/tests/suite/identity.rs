//! The identity file: written on first start, matched on every later one, refused when the
//! cluster, group, node or voter set differs or the file is damaged; crash-safe replacement.
//! The shared cases run on `FsDisk` and `SimDisk`; crash cases run on `SimDisk`.

use crate::common::{TempDir, entries};
use shardkv_storage::identity::IDENTITY_FILE;
use shardkv_storage::{
    Disk, FsDisk, Identity, IdentityCheck, RaftStore, SimDisk, StorageError, check_identity,
    write_identity,
};
use shardkv_types::{Gid, NodeId};
use std::path::Path;

type Mk<'a, D> = &'a mut dyn FnMut() -> D;
type Case<D> = (&'static str, fn(Mk<'_, D>, &Path));

fn ident(voters: u64) -> Identity {
    Identity {
        cluster_id: 0xc1,
        cluster_token: "test".into(),
        group_id: Gid(1),
        node_id: NodeId(1),
        voters: (1..=voters)
            .map(|i| (NodeId(i), format!("127.0.0.1:{}", 7000 + i)))
            .collect(),
        service: "kv".into(),
        learners: Default::default(),
        initial_voters: (1..=voters).map(NodeId).collect(),
        initial_learners: Default::default(),
    }
}

fn run_all<D: Disk>(mk: Mk<'_, D>, root: &Path) {
    let cases: [Case<D>; 7] = [
        ("written_then_matched", written_then_matched),
        ("empty_dir_needs_bootstrap", empty_dir_needs_bootstrap),
        ("other_voters_refused", other_voters_refused),
        (
            "other_cluster_group_node_refused",
            other_cluster_group_node_refused,
        ),
        ("addresses_update_the_file", addresses_update_the_file),
        ("legacy_dir_is_adopted", legacy_dir_is_adopted),
        ("damaged_file_refused", damaged_file_refused),
    ];
    for (name, case) in cases {
        case(mk, &root.join(name));
    }
}

#[test]
fn identity_on_fs_disk() {
    // Goal: the identity rules hold on the real filesystem.
    let tmp = TempDir::new("identity");
    run_all(&mut FsDisk::new, tmp.path());
}

#[test]
fn identity_on_sim_disk() {
    // Goal: the same cases pass on the simulated disk.
    let disk = SimDisk::new(11);
    run_all(&mut || disk.clone(), Path::new("/sim"));
}

/// A member's first start: the identity file, then the store (which writes its first WAL
/// segment at once).
fn first_start<D: Disk>(mut disk: D, dir: &Path, id: &Identity) {
    let first = check_identity(&mut disk, dir, id, true).expect("first start");
    assert_eq!(first, IdentityCheck::Created);
    RaftStore::open(disk, dir, id.node_id).expect("store opens");
}

fn written_then_matched<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    let first = check_identity(&mut mk(), dir, &ident(3), true).expect("first start");
    assert_eq!(first, IdentityCheck::Created);
    // Stopped before the store first opened: no Raft state yet, so only `bootstrap` again
    // starts it.
    let err = check_identity(&mut mk(), dir, &ident(3), false).expect_err("no Raft state");
    assert!(
        matches!(
            err,
            StorageError::NotBootstrapped {
                identity_only: true,
                ..
            }
        ),
        "{err}"
    );
    let again = check_identity(&mut mk(), dir, &ident(3), true).expect("bootstrap again");
    assert_eq!(again, IdentityCheck::Matched);
    // The store opens beside it (the identity file is not one of its files).
    RaftStore::open(mk(), dir, NodeId(1)).expect("store opens");
    let after_store = check_identity(&mut mk(), dir, &ident(3), false).expect("restart");
    assert_eq!(after_store, IdentityCheck::Matched);
}

fn other_voters_refused<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    first_start(mk(), dir, &ident(3));
    for voters in [5, 2] {
        let err = check_identity(&mut mk(), dir, &ident(voters), false).expect_err("refused");
        let text = err.to_string();
        assert!(
            matches!(err, StorageError::IdentityMismatch { .. }),
            "{voters} voters: {text}"
        );
        assert!(
            text.contains("stored 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"),
            "names the stored voters: {text}"
        );
        assert!(text.contains("given 1=127.0.0.1:7001"), "{text}");
        assert!(
            text.contains("fresh data directory"),
            "says what to do: {text}"
        );
    }
    // Refusals change nothing: the original still matches.
    let again = check_identity(&mut mk(), dir, &ident(3), false).expect("original peers");
    assert_eq!(again, IdentityCheck::Matched);
}

fn other_cluster_group_node_refused<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    first_start(mk(), dir, &ident(3));
    let mut cluster = ident(3);
    cluster.cluster_id = 0xc2;
    cluster.cluster_token = "other".into();
    let text = check_identity(&mut mk(), dir, &cluster, false)
        .expect_err("other cluster")
        .to_string();
    assert!(
        text.contains("token \"test\"") && text.contains("token \"other\""),
        "{text}"
    );
    let mut group = ident(3);
    group.group_id = Gid(2);
    let text = check_identity(&mut mk(), dir, &group, false)
        .expect_err("other group")
        .to_string();
    assert!(text.contains("group: stored 1, given 2"), "{text}");
    let mut node = ident(3);
    node.node_id = NodeId(2);
    let err = check_identity(&mut mk(), dir, &node, false).expect_err("other node");
    assert!(matches!(err, StorageError::WrongNode { .. }), "{err}");
}

fn addresses_update_the_file<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    first_start(mk(), dir, &ident(3));
    let mut moved = ident(3);
    moved.voters.insert(NodeId(3), "10.0.0.3:7003".into());
    let r = check_identity(&mut mk(), dir, &moved, false).expect("addresses may change");
    assert_eq!(
        r,
        IdentityCheck::AddressesUpdated {
            stored: ident(3).voters
        }
    );
    assert_eq!(
        check_identity(&mut mk(), dir, &moved, false).expect("restart"),
        IdentityCheck::Matched
    );
}

fn empty_dir_needs_bootstrap<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    // An empty directory is a member that lost its data unless this start bootstraps it.
    let err = check_identity(&mut mk(), dir, &ident(3), false).expect_err("not bootstrapped");
    assert!(matches!(err, StorageError::NotBootstrapped { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("--bootstrap") && text.contains("votes and log"),
        "{text}"
    );
    let names = mk().list_dir(dir).expect("list");
    assert!(!names.iter().any(|n| n == IDENTITY_FILE), "nothing written");
    first_start(mk(), dir, &ident(3));
    // Bootstrapping an existing member changes nothing.
    let again = check_identity(&mut mk(), dir, &ident(3), true).expect("restart");
    assert_eq!(again, IdentityCheck::Matched);
    // The WAL (and any snapshot) lost but the identity file (and a lock file) kept: as
    // forgetful as an empty directory, refused too. It used to start empty.
    let names = mk().list_dir(dir).expect("list");
    for name in names
        .iter()
        .filter(|n| n.starts_with("wal-") || n.starts_with("snap-"))
    {
        mk().remove(&dir.join(name)).expect("remove");
    }
    let lock = dir.join("LOCK");
    mk().create(&lock).expect("lock file");
    let err = check_identity(&mut mk(), dir, &ident(3), false).expect_err("log lost");
    assert!(
        matches!(
            err,
            StorageError::NotBootstrapped {
                identity_only: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--bootstrap"), "{err}");
    // Wiped: the same directory emptied is refused again.
    for name in mk().list_dir(dir).expect("list") {
        mk().remove(&dir.join(name)).expect("remove");
    }
    let err = check_identity(&mut mk(), dir, &ident(3), false).expect_err("wiped");
    assert!(matches!(err, StorageError::NotBootstrapped { .. }), "{err}");
}

fn legacy_dir_is_adopted<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    // A directory written before identity files: a store with data, no identity file.
    let (mut store, _) = RaftStore::open(mk(), dir, NodeId(1)).expect("open");
    store.append(&entries(1, 1, 3)).expect("append");
    store.sync().expect("sync");
    drop(store);
    assert_eq!(
        check_identity(&mut mk(), dir, &ident(3), false).expect("adopted"),
        IdentityCheck::Adopted
    );
    assert!(
        check_identity(&mut mk(), dir, &ident(5), false).is_err(),
        "once adopted, the voter set is held"
    );
    let (_store, rec) = RaftStore::open(mk(), dir, NodeId(1)).expect("data kept");
    assert_eq!(rec.entries.len(), 3);
}

fn damaged_file_refused<D: Disk>(mk: Mk<'_, D>, dir: &Path) {
    first_start(mk(), dir, &ident(3));
    let path = dir.join(IDENTITY_FILE);
    let mut disk = mk();
    let len = disk.file_len(&path).expect("len");
    // Torn: a file cut short.
    disk.truncate(&path, len - 3).expect("truncate");
    disk.sync(&path).expect("sync");
    let err = check_identity(&mut mk(), dir, &ident(3), false).expect_err("torn file refused");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(IDENTITY_FILE),
        "names the file: {err}"
    );
    // Garbage of the same length: still refused, never rewritten.
    disk.truncate(&path, 0).expect("truncate");
    disk.append(&path, &vec![0x5a; len as usize])
        .expect("write");
    disk.sync(&path).expect("sync");
    let err = check_identity(&mut mk(), dir, &ident(3), false).expect_err("corrupt file refused");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert_eq!(disk.read(&path).expect("read"), vec![0x5a; len as usize]);
}

#[test]
fn a_crash_before_the_rename_keeps_the_old_identity() {
    // Goal: replacing the identity file is atomic. Method: on SimDisk, stop the world after
    // each disk step of a replacement, crash, and check the file holds the old or the new
    // identity (the new one only once the replacement completed), never anything else.
    let old = ident(3);
    let mut new = ident(3);
    new.voters.insert(NodeId(2), "10.0.0.2:7002".into());
    let dir = Path::new("/n1");
    let mut completed = false;
    let mut saw_new = false;
    for halt_after in 0..16u64 {
        let disk = SimDisk::new(100 + halt_after);
        first_start(disk.clone(), dir, &old);
        disk.halt_after_ops(halt_after);
        let done = write_identity(&mut disk.clone(), dir, &new).is_ok();
        disk.crash();
        match check_identity(&mut disk.clone(), dir, &old, false).expect("old or new identity") {
            IdentityCheck::Matched => assert!(!done, "a completed write survives the crash"),
            IdentityCheck::AddressesUpdated { stored } => {
                assert_eq!(stored, new.voters, "after step {halt_after}");
                saw_new = true;
            }
            other => panic!("after step {halt_after}: {other:?}"),
        }
        assert!(
            !disk
                .clone()
                .list_dir(dir)
                .expect("list")
                .iter()
                .any(|n| n.ends_with(".tmp")),
            "the temp file is cleaned up"
        );
        if done {
            completed = true;
            break;
        }
    }
    assert!(
        completed && saw_new,
        "the replacement completed within the loop"
    );
}
