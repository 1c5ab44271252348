//! Disk-full scenarios on the KV service: a member whose simulated disk fills runs the
//! production host loop's NoSpace stall (writes NoSpace, reads Unavailable, no progress, no
//! panic) and catches up once space frees, while the rest of the group keeps serving.
//! Virtual time throughout; histories are checked for linearizability.

use shardkv_client::KvOp;
use shardkv_host::HostEvent;
use shardkv_kv::{KvCommand, KvOutput, KvQuery, KvResponse};
use shardkv_rsm::{Error, Request};
use shardkv_sim::{ClientEvent, ClusterConfig, KvCluster, Workload};
use shardkv_types::{ClientId, LogIndex, NodeId, Seq};

/// A client address no clerk uses: requests sent straight to one member.
const PROBE: u64 = 900;

fn put(k: &str, v: &str) -> KvOp {
    KvOp::Write(KvCommand::Put {
        key: k.into(),
        value: v.into(),
    })
}

fn get(k: &str) -> KvOp {
    KvOp::Read(KvQuery::Get { key: k.into() })
}

/// Sends one request straight to `to` (not through a clerk) and waits up to 500 ms of
/// virtual time for its answer. Clerks must be idle: their events are not delivered here.
fn probe(k: &mut KvCluster, to: NodeId, n: u64, r: KvOp) -> Option<KvResponse> {
    let req = match r {
        KvOp::Read(q) => Request::Read(q),
        KvOp::Write(cmd) => Request::Write {
            client: ClientId(PROBE),
            seq: Seq(n),
            retry: false,
            cmd,
        },
    };
    k.sim.client_send(PROBE, n, to, &req);
    let until = k.sim.now + 500_000;
    loop {
        let events = k.sim.next_client_events(until);
        if events.is_empty() {
            return None;
        }
        for ev in events {
            if let ClientEvent::Response {
                client: PROBE,
                client_req,
                response,
                ..
            } = ev
                && client_req == n
            {
                return Some(response);
            }
        }
    }
}

/// Runs `op` until it completes: a write refused with NoSpace by a stalled member fails
/// (surely not applied), and a read then moves the clerk on to another member.
fn until_done(k: &mut KvCluster, c: usize, op: KvOp) -> KvOutput {
    for _ in 0..20 {
        if let Some(out) = k.op(c, op.clone(), 3_000) {
            return out;
        }
        k.op(c, get("probe"), 3_000);
    }
    panic!("{op:?} never completed (seed {})", k.sim.cfg.seed);
}

/// The last index in `id`'s write-ahead log.
fn wal_last(k: &KvCluster, id: NodeId) -> LogIndex {
    k.sim.nodes[&id].host().expect("up").store().last_index()
}

fn value_at(k: &KvCluster, id: NodeId, key: &str) -> Option<Vec<u8>> {
    let app = k.sim.nodes[&id].app.as_ref().expect("started");
    app.state_machine().get(key.as_bytes()).cloned()
}

fn stalls(k: &KvCluster, id: NodeId) -> (usize, usize) {
    let events = &k.sim.nodes[&id].events;
    let stalled = events
        .iter()
        .filter(|e| matches!(e, HostEvent::Stalled { .. }))
        .count();
    let resumed = events.iter().filter(|e| **e == HostEvent::Resumed).count();
    (stalled, resumed)
}

/// Fills `id`'s simulated disk: the next write beyond what it holds fails with ENOSPC.
fn fill_disk(k: &KvCluster, id: NodeId) {
    let disk = &k.sim.nodes[&id].store.disk;
    disk.set_capacity_bytes(Some(disk.used_bytes()));
}

fn free_disk(k: &KvCluster, id: NodeId) {
    k.sim.nodes[&id].store.disk.set_capacity_bytes(None);
}

/// A 3-member group named after the test, one scripted clerk, and `key` written once;
/// returns the group, the clerk and the leader.
fn group_with_one_write(name: &str, seed: u64, key: &str) -> (KvCluster, usize, NodeId) {
    let mut k = KvCluster::new(ClusterConfig::scenario(3, "disk_full", name, seed));
    let c = k.add_clerk(Workload::Script(Default::default()));
    until_done(&mut k, c, put(key, "0"));
    let leader = k.sim.leader().expect("a leader");
    (k, c, leader)
}

/// Runs until `id` is not stalled and applied as much as `other` (at most `ms`).
fn catch_up(k: &mut KvCluster, id: NodeId, other: NodeId, ms: u64) -> bool {
    k.sim.run_until(ms, |s| {
        let a = |n| s.nodes[&n].app.as_ref().map(|a| a.applied());
        !s.nodes[&id].is_stalled() && a(id) == a(other)
    })
}

/// Goal: a follower whose disk fills stalls — sends clients to the leader it knows, writes
/// nothing to its disk, does not crash — while the leader and the other follower keep
/// committing; once space frees it resumes and its disk catches up.
#[test]
fn disk_full_follower_stalls_then_catches_up_when_space_frees() {
    let name = "disk_full_follower_stalls_then_catches_up_when_space_frees";
    let (mut k, c, leader) = group_with_one_write(name, 21, "k");
    let f = a_follower(&k, leader);
    fill_disk(&k, f);
    for i in 1..=10 {
        until_done(&mut k, c, put("k", &i.to_string()));
    }
    k.run_for(500);
    assert!(k.sim.nodes[&f].is_stalled(), "{f} stalled on its full disk");
    assert!(k.sim.is_up(f), "a full disk is not a crash");
    let stalled_at = wal_last(&k, f);
    assert!(
        wal_last(&k, leader) > stalled_at,
        "the group went on without {f}"
    );

    let w = probe(&mut k, f, 1, put("x", "y"));
    assert_eq!(
        w,
        Some(Err(Error::NotLeader {
            leader: Some(leader)
        })),
        "a stalled follower sends writes to the leader"
    );
    let r = probe(&mut k, f, 2, get("k"));
    assert_eq!(
        r,
        Some(Err(Error::NotLeader {
            leader: Some(leader)
        })),
        "a stalled follower sends reads to the leader"
    );
    k.run_for(1_000);
    assert_eq!(
        wal_last(&k, f),
        stalled_at,
        "a stalled member writes nothing"
    );
    assert_eq!(stalls(&k, f), (1, 0), "the stall is reported once");

    free_disk(&k, f);
    assert!(
        catch_up(&mut k, f, leader, 3_000),
        "{f} caught up after space freed"
    );
    assert_eq!(stalls(&k, f), (1, 1), "resumed once");
    assert_eq!(value_at(&k, f, "k"), Some(b"10".to_vec()));
    let r = probe(&mut k, f, 3, get("k"));
    assert!(
        !matches!(r, Some(Err(Error::Unavailable { .. }))),
        "{f} serves again"
    );
    k.check_linearizable();
}

/// Goal: a leader whose disk fills stalls (it sent its last appends but cannot sync them);
/// the others elect a new leader and keep serving; the old leader, given space, rejoins as
/// a follower with the group's state. Nothing acknowledged is lost.
#[test]
fn disk_full_leader_stalls_while_the_group_elects_another_and_keeps_serving() {
    let name = "disk_full_leader_stalls_while_the_group_elects_another_and_keeps_serving";
    let (mut k, c, old) = group_with_one_write(name, 33, "a");
    fill_disk(&k, old);
    // The next write reaches the old leader, which sends its append, then stalls.
    k.begin(c, put("a", "1"));
    k.run_for(3_000);
    assert!(k.sim.nodes[&old].is_stalled(), "the old leader stalled");
    let new = k.sim.leader().expect("a new leader");
    assert_ne!(new, old, "the group elected another leader");
    for i in 2..=10 {
        until_done(&mut k, c, put("a", &i.to_string()));
    }
    assert_eq!(
        until_done(&mut k, c, get("a")),
        KvOutput::Value(Some(b"10".to_vec()))
    );
    assert_eq!(stalls(&k, old).0, 1);

    free_disk(&k, old);
    assert!(
        catch_up(&mut k, old, new, 5_000),
        "the old leader rejoined and caught up"
    );
    assert_eq!(k.sim.state(old).map(|s| s.1), Some(false), "as a follower");
    assert_eq!(value_at(&k, old, "a"), Some(b"10".to_vec()));
    k.check_linearizable();
}

/// Clerks enough that some start at each member (each picks its first server at random).
const CLERKS: usize = 6;

/// Goal: a write sent to a follower whose disk is below the reserve is redirected to the
/// leader (NotLeader with the hint, not a definite NoSpace) and succeeds there; only the
/// leader's own disk decides. Method: both followers below the reserve; a write probed at
/// one gets NotLeader naming the leader; clerks starting anywhere all complete their writes.
#[test]
fn a_write_at_a_follower_below_the_reserve_is_redirected_and_succeeds_at_the_leader() {
    let name = "a_write_at_a_follower_below_the_reserve_is_redirected_and_succeeds_at_the_leader";
    let (mut k, _, leader) = group_with_one_write(name, 41, "k");
    let followers: Vec<NodeId> = k.sim.ids().into_iter().filter(|&i| i != leader).collect();
    for &f in &followers {
        k.sim.nodes.get_mut(&f).expect("node").set_disk_low(true);
    }
    let w = probe(&mut k, followers[0], 1, put("x", "y"));
    assert_eq!(
        w,
        Some(Err(Error::NotLeader {
            leader: Some(leader)
        })),
        "a follower below the reserve sends writes to the leader"
    );
    for i in 0..CLERKS {
        let c = k.add_clerk(Workload::Script(Default::default()));
        let done = k.op(c, put(&format!("c{i}"), "v"), 3_000);
        assert_eq!(done, Some(KvOutput::Done), "clerk {i}'s write");
    }
    for &f in &followers {
        assert!(!k.sim.nodes[&f].is_stalled(), "{f} has space for the log");
    }
    k.check_linearizable();
}

/// Goal: a write sent to a follower stalled on a full disk is redirected and succeeds at
/// the healthy leader: no clerk ends it as a definite failure, none is pinned to the
/// follower. Method: a follower's disk fills and it stalls; clerks starting anywhere each
/// complete a write and a read within one try.
#[test]
fn writes_through_a_stalled_follower_complete_at_the_leader() {
    let name = "writes_through_a_stalled_follower_complete_at_the_leader";
    let (mut k, c, leader) = group_with_one_write(name, 43, "k");
    let f = a_follower(&k, leader);
    fill_disk(&k, f);
    assert_eq!(k.op(c, put("k", "1"), 3_000), Some(KvOutput::Done));
    k.run_for(500);
    assert!(k.sim.nodes[&f].is_stalled(), "{f} stalled on its full disk");
    for i in 0..CLERKS {
        let c = k.add_clerk(Workload::Script(Default::default()));
        let done = k.op(c, put(&format!("c{i}"), "v"), 3_000);
        assert_eq!(done, Some(KvOutput::Done), "clerk {i}'s write");
        let read = k.op(c, get(&format!("c{i}")), 3_000);
        assert_eq!(read, Some(KvOutput::Value(Some(b"v".to_vec()))));
    }
    k.check_linearizable();
}

/// A member other than `leader`.
fn a_follower(k: &KvCluster, leader: NodeId) -> NodeId {
    k.sim
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower")
}

/// Reads `key` through clerk `c` a few times: each must succeed with `want`.
fn reads_succeed(k: &mut KvCluster, c: usize, key: &str, want: &str) {
    for i in 0..5 {
        let out = k.op(c, get(key), 3_000);
        assert_eq!(
            out,
            Some(KvOutput::Value(Some(want.as_bytes().to_vec()))),
            "read {i} of {key} (seed {})",
            k.sim.cfg.seed
        );
    }
}

/// What clerk `c`'s operations ended with, in order.
fn outputs(k: &KvCluster, c: usize) -> Vec<KvOutput> {
    k.kv.clerks[c]
        .results
        .iter()
        .map(|(_, o)| o.clone())
        .collect()
}

/// Goal: with the WAL full on both followers (a majority), the leader still confirms read
/// indexes — the stalled followers keep answering heartbeats — so linearizable reads
/// succeed, while no write is acknowledged (no quorum can persist it). Once space frees,
/// the write commits, and it survives a power cut of the whole group.
#[test]
fn reads_keep_working_with_a_majority_of_wals_full_and_no_write_is_acknowledged() {
    let name = "reads_keep_working_with_a_majority_of_wals_full_and_no_write_is_acknowledged";
    let (mut k, _, leader) = group_with_one_write(name, 51, "k");
    let followers: Vec<NodeId> = k.sim.ids().into_iter().filter(|&i| i != leader).collect();
    for &f in &followers {
        fill_disk(&k, f);
    }
    let commit_before = k.sim.nodes[&leader]
        .app
        .as_ref()
        .expect("up")
        .raft()
        .log()
        .committed();
    let w = k.add_clerk(Workload::Script(Default::default()));
    k.begin(w, put("k", "2"));
    k.run_for(2_000);
    for &f in &followers {
        assert!(k.sim.nodes[&f].is_stalled(), "{f} stalled on its full disk");
    }
    assert_eq!(
        outputs(&k, w),
        vec![],
        "the write is not acknowledged while no quorum can persist it"
    );
    let r = k.add_clerk(Workload::Script(Default::default()));
    reads_succeed(&mut k, r, "k", "0");
    assert_eq!(k.sim.leader(), Some(leader), "the leader kept its place");
    let commit = k.sim.nodes[&leader]
        .app
        .as_ref()
        .expect("up")
        .raft()
        .log()
        .committed();
    assert_eq!(
        commit, commit_before,
        "nothing committed without a quorum's disks"
    );

    for &f in &followers {
        free_disk(&k, f);
    }
    k.run_for(3_000);
    assert_eq!(
        outputs(&k, w),
        vec![KvOutput::Done],
        "the write completed once space freed"
    );
    for id in k.sim.ids() {
        k.sim.crash(id);
    }
    for id in k.sim.ids() {
        k.sim.restart(id);
    }
    reads_succeed(&mut k, r, "k", "2");
    k.check_linearizable();
}

/// Goal: with the WAL full on the leader and one follower (a majority), the leader keeps
/// its place — the one follower with space is no quorum to elect another — and serves
/// linearizable reads; writes are refused, never acknowledged. Once space frees, writes
/// work again and nothing acknowledged is lost.
#[test]
fn a_full_leader_without_a_writable_quorum_keeps_leading_and_serves_reads() {
    let name = "a_full_leader_without_a_writable_quorum_keeps_leading_and_serves_reads";
    let (mut k, _, leader) = group_with_one_write(name, 53, "k");
    let f = a_follower(&k, leader);
    fill_disk(&k, leader);
    fill_disk(&k, f);
    let w = k.add_clerk(Workload::Script(Default::default()));
    let out = k.op(w, put("k", "2"), 3_000);
    assert_ne!(out, Some(KvOutput::Done), "no write is acknowledged");
    k.run_for(2_000);
    assert!(k.sim.nodes[&leader].is_stalled(), "the leader stalled");
    assert_eq!(k.sim.leader(), Some(leader), "and kept its place");
    let r = k.add_clerk(Workload::Script(Default::default()));
    reads_succeed(&mut k, r, "k", "0");

    free_disk(&k, leader);
    free_disk(&k, f);
    until_done(&mut k, r, put("k", "3"));
    reads_succeed(&mut k, r, "k", "3");
    k.check_linearizable();
}

/// Goal: a leader whose disk alone is full hands leadership to a follower once both
/// followers wrote what it could not, so writes resume without waiting for space. The write
/// that found the disk full is acknowledged through the followers' quorum alone.
#[test]
fn a_full_leader_hands_off_when_the_others_can_write() {
    let name = "a_full_leader_hands_off_when_the_others_can_write";
    let (mut k, c, old) = group_with_one_write(name, 55, "k");
    fill_disk(&k, old);
    assert_eq!(
        k.op(c, put("k", "2"), 3_000),
        Some(KvOutput::Done),
        "committed by the two followers that wrote it"
    );
    k.run_for(2_000);
    let new = k.sim.leader().expect("a leader");
    assert_ne!(new, old, "the full leader handed off");
    let host = k.sim.nodes[&old].host().expect("up");
    assert!(
        host.counters().unwritten_handoffs >= 1,
        "through the disk-full hand-off"
    );
    assert!(host.is_stalled(), "{old} is still full");
    until_done(&mut k, c, put("k", "3"));
    reads_succeed(&mut k, c, "k", "3");
    free_disk(&k, old);
    assert!(
        catch_up(&mut k, old, new, 5_000),
        "the old leader caught up"
    );
    assert_eq!(value_at(&k, old, "k"), Some(b"3".to_vec()));
    k.check_linearizable();
}
