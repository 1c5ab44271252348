//! The KV service as separate processes under faults, through the client library:
//! operations end to end, restarts of every member (graceful and kill -9) keep acknowledged
//! data, a killed or frozen leader is replaced while writes go on, and bad input gets an
//! error while the servers keep serving.

mod common;

use common::cluster::{Cluster, wait_until};
use shardkv_client::{CasResult, Client, ClientOptions, Error, Outcome};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What one writer did: the tokens it appended and how each ended.
struct Writer {
    key: String,
    outcomes: Vec<(String, Outcome)>,
}

/// Goal: every operation works through the library and survives restarts of every member,
/// graceful or not. Method: write, SIGTERM and restart all, read; write more, SIGKILL all
/// and restart, read. A small max-raft-state makes snapshots part of the restarts.
#[test]
fn operations_survive_restarting_every_member_gracefully_and_by_kill_9() {
    let mut c = Cluster::start(3, &["--max-raft-state", "1KiB"]);
    c.leader();
    let mut client = c.client();
    c.block_on(async {
        client.put("a", "1").await.expect("put");
        client.append("a", "2").await.expect("append");
        assert_eq!(client.get("a").await.expect("get"), Some(b"12".to_vec()));
        let cas = client
            .cas("a", Some(b"12".to_vec()), "3")
            .await
            .expect("cas");
        assert_eq!(
            cas,
            CasResult {
                swapped: true,
                current: Some(b"12".to_vec())
            }
        );
        let cas = client.cas("a", None, "4").await.expect("cas");
        assert!(!cas.swapped, "cas expecting absence fails on a present key");
        client.put("gone", "x").await.expect("put");
        assert_eq!(client.delete("gone").await.expect("delete"), Some(true));
        assert_eq!(client.delete("gone").await.expect("delete"), Some(false));
        assert_eq!(client.get("gone").await.expect("get"), None);
        for i in 0..100 {
            client.append("log", format!("{i},")).await.expect("append");
        }
    });
    for id in 1..=3 {
        assert!(c.terminate(id), "n{id} exits cleanly on SIGTERM");
    }
    for id in 1..=3 {
        c.restart(id);
    }
    c.leader();
    let expected_log: String = (0..100).map(|i| format!("{i},")).collect();
    let mut client = c.client();
    c.block_on(async {
        assert_eq!(client.get("a").await.expect("get"), Some(b"3".to_vec()));
        assert_eq!(
            client.get("log").await.expect("get"),
            Some(expected_log.clone().into_bytes())
        );
        client.put("after", "graceful").await.expect("put");
    });
    let snapshots = (1..=3)
        .filter_map(|id| c.status(id))
        .filter(|s| s.snapshot_index.0 > 0)
        .count();
    assert!(snapshots > 0, "1KiB of raft state forces snapshots");
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.restart(id);
    }
    c.leader();
    let mut client = c.client();
    c.block_on(async {
        assert_eq!(
            client.get("after").await.expect("get"),
            Some(b"graceful".to_vec())
        );
        assert_eq!(
            client.get("log").await.expect("get"),
            Some(expected_log.into_bytes())
        );
    });
}

/// Appends `count` tokens to the writer's own key, recording each outcome.
async fn write_tokens(mut client: Client, w: usize, count: usize) -> Writer {
    let key = format!("w{w}");
    let mut outcomes = Vec::new();
    for i in 0..count {
        let token = format!("<{w}.{i}>");
        let outcome = match client.append(key.clone(), token.clone()).await {
            Ok(()) => Outcome::Ok,
            Err(e) => e.outcome(),
        };
        outcomes.push((token, outcome));
    }
    Writer { key, outcomes }
}

/// Checks a writer's key: each acknowledged token exactly once, no failed token, unknown
/// ones at most once, all in the order they were written.
fn check_writer(w: &Writer, value: &str) {
    let mut at = 0;
    for (token, outcome) in &w.outcomes {
        let found = value.matches(token.as_str()).count();
        match outcome {
            Outcome::Ok => assert_eq!(found, 1, "{token} acknowledged; {} holds {value}", w.key),
            Outcome::Failed => assert_eq!(found, 0, "{token} failed yet applied: {value}"),
            Outcome::Unknown => assert!(found <= 1, "{token} applied twice: {value}"),
        }
        if let Some(pos) = value.find(token.as_str()) {
            assert!(pos >= at, "{token} out of order in {value}");
            at = pos;
        }
    }
}

/// Runs `writers` concurrent writers of `count` tokens while `fault` runs, then checks.
fn writes_under_fault(
    c: &mut Cluster,
    writers: usize,
    count: usize,
    fault: impl FnOnce(&mut Cluster),
) {
    let clients: Vec<Client> = (0..writers).map(|_| c.client()).collect();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, client)| c.spawn_task(write_tokens(client, w, count)))
        .collect();
    fault(c);
    let done: Vec<Writer> = handles
        .into_iter()
        .map(|h| c.block_on(h).expect("writer task"))
        .collect();
    let mut reader = c.client();
    let acked: usize = done
        .iter()
        .map(|w| w.outcomes.iter().filter(|(_, o)| *o == Outcome::Ok).count())
        .sum();
    assert!(
        acked > writers * count / 2,
        "most writes succeed: {acked} of {}",
        writers * count
    );
    for w in &done {
        let value = c.block_on(reader.get(w.key.clone())).expect("read back");
        check_writer(
            w,
            &String::from_utf8(value.unwrap_or_default()).expect("utf8"),
        );
    }
}

/// Goal: killing the leader with SIGKILL loses nothing acknowledged and writes continue
/// under a new leader. Method: 3 writers append numbered tokens while the test kills the
/// leader after some writes, waits for a new leader, and restarts the old one; every token
/// is then checked against its outcome, and the restarted member catches up.
#[test]
fn killing_the_leader_keeps_writes_going_and_loses_nothing_acknowledged() {
    let mut c = Cluster::start(3, &["--max-raft-state", "16KiB"]);
    let first = c.leader();
    writes_under_fault(&mut c, 3, 80, |c| {
        c.wait_applied(first, 40);
        c.kill(first);
        let second = c.leader();
        assert_ne!(second, first, "a new leader replaces the killed one");
        c.wait_applied(second, 150);
        c.restart(first);
    });
    let commit = c.status(c.leader()).expect("leader status").commit.0;
    c.wait_applied(first, commit);
}

/// Goal: a leader frozen past an election timeout is replaced, and when it resumes it
/// follows the new leader without disturbing acknowledged writes. Method: SIGSTOP the
/// leader during writes, wait for another leader, SIGCONT, check every token.
#[test]
fn a_frozen_leader_is_replaced_and_rejoins_when_it_resumes() {
    let mut c = Cluster::start(3, &[]);
    let first = c.leader();
    writes_under_fault(&mut c, 2, 60, |c| {
        c.wait_applied(first, 20);
        c.stop(first);
        let second = c.leader();
        assert_ne!(second, first);
        c.wait_applied(second, 60);
        c.cont(first);
    });
    let leader = c.leader();
    let commit = c.status(leader).expect("leader status").commit.0;
    c.wait_applied(first, commit);
}

/// Goal: malformed and oversized input gets an error, never a crash. Method: raw garbage
/// and a truncated HTTP/2 preface on the gRPC port, undecodable Raft frames on the peer
/// service, values over the KV limit and over the frame limit; then every member still
/// answers and the group still serves.
#[test]
fn malformed_and_oversized_requests_get_errors_and_the_servers_keep_serving() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    for id in 1..=3 {
        let addr = c.member(id).addr.clone();
        for junk in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0xff; 4096][..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
        ] {
            let mut s = TcpStream::connect(&addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let _ = s.write_all(junk);
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
        }
    }
    c.block_on(async {
        let addr = format!("http://{}", c.member(leader).addr);
        let mut peer = shardkv_net::pb::raft_client::RaftClient::connect(addr)
            .await
            .expect("connect");
        // With this cluster's identity, so the frames reach the decoder.
        let garbage = shardkv_net::pb::RaftBatch {
            from: 2,
            messages: vec![vec![0xde, 0xad], vec![], vec![7; 100]],
            cluster_id: shardkv_net::cluster_id_from_token(shardkv_net::CLUSTER_TOKEN_DEFAULT),
            group_id: 1,
        };
        let sent = peer.send(tokio_stream_once(garbage)).await;
        assert!(
            sent.is_ok(),
            "garbage raft frames are dropped, the stream is answered: {sent:?}"
        );
    });
    let opts = ClientOptions {
        op_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let mut client = c.client_with(opts);
    c.block_on(async {
        let over_limit = vec![b'x'; shardkv_kv::VALUE_BYTES_MAX + 1];
        match client.put("big", over_limit).await {
            Err(Error::TooLarge { .. }) => {}
            other => panic!("a value over the limit is TooLarge, got {other:?}"),
        }
        let over_frame = vec![b'x'; shardkv_net::KV_FRAME_BYTES_MAX + 1];
        match client.put("bigger", over_frame).await {
            Err(e @ Error::TooLarge { .. }) => assert_eq!(e.outcome(), Outcome::Failed),
            other => panic!("a frame over the limit is TooLarge, got {other:?}"),
        }
        client
            .put("small", "fine")
            .await
            .expect("the group still serves");
        assert_eq!(
            client.get("small").await.expect("get"),
            Some(b"fine".to_vec())
        );
    });
    for id in 1..=3 {
        assert!(c.status(id).is_some(), "n{id} still answers");
    }
}

/// A stream of one item, for a client-streaming call.
fn tokio_stream_once<T: Send + 'static>(
    item: T,
) -> impl tokio_stream::Stream<Item = T> + Send + 'static {
    tokio_stream::iter(vec![item])
}

/// Goal: below the disk reserve, writes are refused with NoSpace (surely not applied) and
/// reads keep working. Method: members configured with a reserve no disk can meet.
#[test]
fn writes_are_refused_with_no_space_while_reads_keep_working() {
    let mut c = Cluster::start(3, &["--disk-reserve", "1000000TiB"]);
    c.leader();
    wait_until(
        "members to notice the reserve",
        Duration::from_secs(10),
        || (1..=3).all(|id| c.status(id).is_some_and(|s| s.no_space)),
    );
    let mut client = c.client();
    c.block_on(async {
        let e = client.put("k", "v").await.expect_err("writes are refused");
        assert_eq!(e, Error::NoSpace);
        assert_eq!(e.outcome(), Outcome::Failed);
        assert_eq!(client.get("k").await.expect("reads work"), None);
    });
    let mut seen = BTreeMap::new();
    for id in 1..=3 {
        seen.insert(id, c.is_running(id));
    }
    assert!(
        seen.values().all(|r| *r),
        "no member exits on a full disk: {seen:?}"
    );
}
