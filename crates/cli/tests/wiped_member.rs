//! A member whose data directory was emptied (issue 10, item 2), with real processes: it
//! refuses to start without `--bootstrap` and says why, and the other two keep serving
//! every acknowledged write.

mod common;

use common::cluster::{Cluster, run_cli};
use std::fs;

/// Goal: a wiped member restarted as before (no `--bootstrap`) exits non-zero with a clear
/// message instead of rejoining with its votes and log forgotten; the group keeps serving
/// and loses nothing. Method: write, SIGKILL a follower, empty its data directory, start it
/// again with its usual flags and check the exit and the message; then write and read
/// everything back through the remaining two.
#[test]
fn a_wiped_member_refuses_to_start_and_the_group_keeps_every_write() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let mut client = c.client();
    c.block_on(async {
        for i in 0..20 {
            client
                .put(format!("k{i}"), format!("v{i}"))
                .await
                .expect("put");
        }
    });
    let wiped = (1..=3).find(|&id| id != leader).expect("a follower");
    c.kill(wiped);
    let m = c.member(wiped);
    fs::remove_dir_all(&m.data_dir).expect("wipe");
    fs::create_dir_all(&m.data_dir).expect("empty data dir");
    let peers: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("{}={}", m.id, m.addr))
        .collect();
    let id = wiped.to_string();
    let peers = peers.join(",");
    let dir = m.data_dir.to_str().expect("utf-8 path");
    let args = [
        "server",
        "--id",
        &id,
        "--peers",
        &peers,
        "--data-dir",
        dir,
        "--disk-reserve",
        "0",
    ];
    let out = run_cli(&args, &[], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a wiped member must refuse: {stderr}"
    );
    for want in [
        "is empty",
        "votes and log are gone",
        "--bootstrap",
        "NEW id with --join",
        "docs/membership.md",
    ] {
        assert!(stderr.contains(want), "{want:?} not in: {stderr}");
    }
    let names: Vec<_> = fs::read_dir(&m.data_dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let identity_written = fs::read_dir(m.data_dir.join("g1"))
        .map(|d| d.count() > 0)
        .unwrap_or(false);
    assert!(!identity_written, "nothing written on refusal: {names:?}");
    c.block_on(async {
        for i in 20..30 {
            client
                .put(format!("k{i}"), format!("v{i}"))
                .await
                .expect("put");
        }
        for i in 0..30 {
            let got = client.get(format!("k{i}")).await.expect("get");
            assert_eq!(got, Some(format!("v{i}").into_bytes()), "k{i}");
        }
    });
}
