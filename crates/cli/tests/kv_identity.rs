//! Real processes: cluster and group identity. Raft traffic stamped with another group or
//! another cluster is dropped (the member logs the drop with the expected and received ids
//! and its count) and never stepped, and the group keeps serving; a member restarted with
//! another peer list, group id or cluster token refuses to start, naming what is stored
//! and what was given, and the original settings still work with the data intact.
//!
//! Outcomes only: every wait is a bounded poll, nothing depends on speed.

mod common;

use common::cluster::{BIN, Cluster, LEADER_WAIT, free_ports, run_cli, wait_until};
use shardkv_net::pb::RaftBatch;
use shardkv_net::pb::raft_client::RaftClient;
use shardkv_net::{
    Body, CLUSTER_TOKEN_DEFAULT, Message, cluster_hex, cluster_id_from_token, convert,
};
use shardkv_types::{NodeId, Term};
use std::fs;
use std::time::Duration;

/// A term no member reaches on its own in a test: a member that stepped one of the foreign
/// messages would jump to it.
const FOREIGN_TERM: u64 = 1_000_000;

/// Goal: a Raft batch for another group and one for another cluster are dropped, counted
/// and never stepped, and the group keeps serving writes. Method: send both to the leader
/// on its peer service, each holding a message whose term would depose the leader if it
/// were stepped; wait (bounded) for the leader's drop warnings, which carry the counts;
/// check no member's term moved to the foreign term and a write and a read still succeed.
#[test]
fn raft_batches_of_another_group_or_cluster_are_dropped_counted_and_never_stepped() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    let mut client = c.client();
    c.block_on(async {
        client.put("k", "before").await.expect("put before");
    });
    let from = if leader == 1 { 2 } else { 1 };
    let ours = cluster_id_from_token(CLUSTER_TOKEN_DEFAULT);
    let theirs = cluster_id_from_token("another-cluster");
    let frame = convert::encode_message(&Message {
        from: NodeId(from),
        to: NodeId(leader),
        term: Term(FOREIGN_TERM),
        body: Body::HeartbeatResponse { read_seq: 0 },
    });
    c.block_on(async {
        let addr = format!("http://{}", c.member(leader).addr);
        let mut peer = RaftClient::connect(addr).await.expect("connect");
        let batches = vec![
            RaftBatch {
                from,
                messages: vec![frame.clone()],
                cluster_id: ours,
                group_id: 7,
            },
            RaftBatch {
                from,
                messages: vec![frame.clone()],
                cluster_id: theirs,
                group_id: 1,
            },
        ];
        peer.send(tokio_stream::iter(batches))
            .await
            .expect("the stream is answered");
    });
    let log = &c.member(leader).log;
    let group_line = format!("received group 7 from node {from}");
    let cluster_line = format!(
        "expected cluster {}, received cluster {}",
        cluster_hex(ours),
        cluster_hex(theirs)
    );
    wait_until("the leader to log both drops", LEADER_WAIT, || {
        let text = fs::read_to_string(log).unwrap_or_default();
        text.lines()
            .any(|l| l.contains(&group_line) && l.contains("dropped_total=1"))
            && text
                .lines()
                .any(|l| l.contains(&cluster_line) && l.contains("dropped_total=1"))
    });
    for id in 1..=3 {
        if let Some(s) = c.status(id) {
            assert!(
                s.term.0 < FOREIGN_TERM,
                "n{id} stepped a foreign message: {s:?}"
            );
        }
    }
    c.block_on(async {
        client
            .put("k", "after")
            .await
            .expect("the group keeps serving writes");
        assert_eq!(client.get("k").await.expect("get"), Some(b"after".to_vec()));
    });
}

/// Goal: a member restarted with another peer list (or group id, or cluster token) refuses
/// to start and says what is stored and what was given; with the original settings the
/// whole group restarts with its data. Method: write, stop every member, start n3 with a
/// fourth peer, with two peers, with another group id and with another cluster token (each
/// must exit non-zero with the expected message on stderr), then restart all three as they
/// were and read the write back.
#[test]
fn a_member_restarted_with_another_peer_list_is_refused_and_the_original_list_keeps_the_data() {
    let mut c = Cluster::start(3, &[]);
    c.leader();
    let mut client = c.client();
    c.block_on(async {
        client.put("kept", "yes").await.expect("put");
    });
    for id in 1..=3 {
        assert!(c.terminate(id), "n{id} stops cleanly");
    }
    let m3 = c.member(3);
    let original: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("{}={}", m.id, m.addr))
        .collect();
    let extra = format!("4=127.0.0.1:{}", free_ports(1)[0]);
    let five = format!("{},{extra}", original.join(","));
    let two = original[1..].join(",");
    let data_dir = m3.data_dir.to_str().expect("utf-8 path").to_string();
    let base = [
        "server",
        "--id",
        "3",
        "--data-dir",
        &data_dir,
        "--disk-reserve",
        "0",
    ];
    let cases: [(&[&str], Vec<String>); 4] = [
        (
            &["--peers", &five],
            vec![
                format!("stored {}", original.join(",")),
                format!("given {five}"),
            ],
        ),
        (
            &["--peers", &two],
            vec![
                format!("stored {}", original.join(",")),
                format!("given {two}"),
            ],
        ),
        // Group 2's directory holds group 1's data (a directory copied or renamed by hand).
        (
            &["--peers", &original.join(","), "--group-id", "2"],
            vec!["group: stored 1, given 2".into()],
        ),
        (
            &["--peers", &original.join(","), "--cluster-token", "other"],
            vec![format!(
                "token {CLUSTER_TOKEN_DEFAULT:?}), given {} (token \"other\")",
                cluster_hex(cluster_id_from_token("other"))
            )],
        ),
    ];
    // Each group lives in its own g<gid>/: plant group 1's directory as group 2's.
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(m3.data_dir.join("g1"))
        .arg(m3.data_dir.join("g2"))
        .status()
        .expect("cp");
    assert!(copied.success());
    for (args, expected) in cases {
        let mut all = base.to_vec();
        all.extend_from_slice(args);
        let out = run_cli(&all, &[], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{BIN} {all:?} must refuse: {stderr}");
        for want in &expected {
            assert!(
                stderr.contains(want.as_str()),
                "{all:?}: {want:?} not in: {stderr}"
            );
        }
        assert!(
            stderr.contains("refusing to start") && stderr.contains("fresh data directory"),
            "says what to do: {stderr}"
        );
    }
    for id in 1..=3 {
        c.restart(id);
    }
    c.leader();
    let mut client = c.client();
    c.block_on(async {
        let got = client.get("kept").await.expect("get after restart");
        assert_eq!(got, Some(b"yes".to_vec()), "the data survived");
    });
    wait_until("n3 to serve again", Duration::from_secs(20), || {
        c.status(3).is_some_and(|s| s.leader.is_some())
    });
}
