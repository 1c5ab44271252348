//! The Redis front end's operations (Set with a condition, GetDel, AppendLen, IncrBy,
//! StrLen, DeleteMany, PutMany, GetMany, Exists, and pipelines of them) through a
//! replicated KV group in the simulator: under partitions, crashes and snapshots they stay
//! linearizable, and an IncrBy or a pipeline retried across a leader change, or across a
//! snapshot and a restart of every server, applies exactly once. Virtual time throughout.

use shardkv_client::KvOp;
use shardkv_kv::{KvCommand, KvOutput, KvQuery};
use shardkv_sim::{ClusterConfig, KvCluster, NetConfig, Workload};
use shardkv_types::NodeId;
use std::collections::VecDeque;

fn incr(key: &str, by: i64) -> KvOp {
    KvOp::Write(KvCommand::IncrBy {
        key: key.into(),
        by,
    })
}

fn get(key: &str) -> KvOp {
    KvOp::Read(KvQuery::Get { key: key.into() })
}

fn value(out: Option<KvOutput>) -> Option<Vec<u8>> {
    match out {
        Some(KvOutput::Value(v)) => v,
        other => panic!("expected a value, got {other:?}"),
    }
}

/// Goal: every Redis-era op, single- and multi-key, is linearizable through leader
/// changes, partitions, crashes and snapshots, with writes of unknown outcome in the
/// history. Method: 5 servers, lossy network, max raft state 2000; five clerks run the
/// RedisKeys workload on 9 keys (3 hash tags) with a 1.5 s deadline; 16 times a random
/// partition for 800 ms, and every fourth time a crash and restart of the leader; heal; finish; lincheck decides
/// (an undecided history fails).
#[test]
fn redis_ops_under_partitions_crashes_and_snapshots_are_linearizable() {
    let name = "redis_ops_under_partitions_crashes_and_snapshots_are_linearizable";
    let mut cfg = ClusterConfig::scenario(5, "kv_redis", name, 1401);
    cfg.net = NetConfig::unreliable();
    cfg.max_raft_state = Some(2_000);
    let mut k = KvCluster::new(cfg);
    k.op_deadline_ms = Some(1_500);
    k.ops_per_clerk_max = Some(150);
    for _ in 0..5 {
        k.add_clerk(Workload::RedisKeys { keys: 9 });
    }
    k.start_clients();
    for round in 0..16 {
        let (a, b): (Vec<NodeId>, Vec<NodeId>) =
            k.sim.ids().into_iter().partition(|_| k.sim.rng.chance(500));
        k.sim.partition(&[&a, &b]);
        k.run_for(800);
        k.sim.connect_all();
        if round % 4 == 3 {
            let leader = k.sim.check_one_leader();
            k.sim.crash(leader);
            k.run_for(500);
            k.sim.restart(leader);
        }
        k.run_for(300);
    }
    k.sim.net.config = NetConfig::reliable();
    k.stop_clients();
    assert!(
        k.run_until_idle(30_000),
        "clerks did not finish after healing"
    );
    let ops = k.history.len();
    let multi = k
        .history
        .iter()
        .filter(|o| o.op.keys().nth(1).is_some())
        .count();
    let pipelines = k
        .history
        .iter()
        .filter(|o| matches!(o.op, shardkv_lincheck::Op::Pipeline { .. }))
        .count();
    let unknown = k
        .history
        .iter()
        .filter(|o| o.result == shardkv_lincheck::OpResult::Unknown)
        .count();
    assert!(ops > 200, "too little progress: {ops} operations");
    assert!(multi > 20, "too few multi-key operations: {multi}");
    assert!(pipelines > 10, "too few pipelines: {pipelines}");
    println!(
        "{ops} operations, {multi} on several keys, {pipelines} pipelines, {unknown} of unknown outcome"
    );
    k.check_linearizable();
}

/// A clerk that knows the leader sends `op` reaching only the leader; once the leader has
/// the entry the clerk is cut off (the reply is lost); `between` runs (the first attempt
/// applied by then); the clerk then reaches every server and retries until answered.
/// Returns the cluster and the clerk, whose `results` hold the read and `op`'s answer.
fn lose_the_reply_then_retry(
    mut k: KvCluster,
    op: KvOp,
    between: impl FnOnce(&mut KvCluster, NodeId),
) -> (KvCluster, usize) {
    let c = k.add_clerk(Workload::Script(VecDeque::new()));
    let addr = k.clerks[c].addr;
    let leader = k.sim.check_one_leader();
    // A read first, so the clerk knows the leader and sends `op` there at once.
    assert_eq!(value(k.op(c, get("n"), 10_000)), None);
    k.sim.client_reach(addr, &[leader]);
    let last_index = |k: &KvCluster| {
        let app = k.sim.nodes[&leader].app.as_ref().expect("the leader is up");
        app.raft().log().last_index()
    };
    let before = last_index(&k);
    k.begin(c, op);
    // Once the leader has the entry (it replies only once it commits), cut the clerk off,
    // so the reply is lost.
    for _ in 0..1_000 {
        if last_index(&k) > before {
            break;
        }
        k.sim.run_for(1);
    }
    assert!(last_index(&k) > before, "the leader got the operation");
    k.sim.client_reach(addr, &[]);
    k.run_for(1_000);
    assert!(!k.clerks[c].is_idle(), "the reply was lost");
    between(&mut k, leader);
    let ids = k.sim.ids();
    k.sim.client_reach(addr, &ids);
    assert!(k.run_until_idle(30_000), "the retry completed");
    assert_eq!(k.clerks[c].results.len(), 2);
    (k, c)
}

/// Goal: an IncrBy whose reply was lost, retried (same client, same sequence number) to a
/// new leader after the old one crashed, is answered from its session record and applied
/// exactly once. Method: [`lose_the_reply_then_retry`]; another clerk reads 1 (applied);
/// the leader crashes; the clerk retries to the others and is answered 1; the key still
/// holds 1; a next IncrBy answers 2; lincheck agrees.
#[test]
fn an_incrby_retried_across_a_leader_change_applies_exactly_once() {
    let name = "an_incrby_retried_across_a_leader_change_applies_exactly_once";
    let mut k = KvCluster::new(ClusterConfig::scenario(3, "kv_redis", name, 1402));
    let reader = k.add_clerk(Workload::Script(VecDeque::new()));
    let mut old_leader = None;
    let (mut k, c) = lose_the_reply_then_retry(k, incr("n", 1), |k, leader| {
        assert_eq!(
            value(k.op(reader, get("n"), 10_000)),
            Some(b"1".to_vec()),
            "the first attempt applied"
        );
        k.sim.crash(leader);
        old_leader = Some(leader);
    });
    let leader = old_leader.expect("crashed");
    assert_eq!(
        k.clerks[c].results[1].1,
        KvOutput::Int(1),
        "the retry is answered from the session, not applied again"
    );
    assert_ne!(k.sim.check_one_leader(), leader, "the leader changed");
    assert_eq!(value(k.op(reader, get("n"), 10_000)), Some(b"1".to_vec()));
    assert_eq!(k.op(c, incr("n", 1), 10_000), Some(KvOutput::Int(2)));
    k.sim.restart(leader);
    k.check_linearizable();
}

/// A write pipeline over two keys of one tag: IncrBy n, AppendLen n, IncrBy {n}m.
fn pipeline() -> KvOp {
    KvOp::Write(KvCommand::Pipeline {
        cmds: vec![
            KvCommand::IncrBy {
                key: "n".into(),
                by: 1,
            },
            KvCommand::AppendLen {
                key: "n".into(),
                value: "0".into(),
            },
            KvCommand::IncrBy {
                key: "{n}m".into(),
                by: 5,
            },
        ],
    })
}

fn pipeline_answer() -> KvOutput {
    KvOutput::Outputs(vec![KvOutput::Int(1), KvOutput::Int(2), KvOutput::Int(5)])
}

/// Goal: a pipeline is one write for exactly-once: retried across a leader change, it is
/// answered from its session record (every command's answer) and applied once. Method:
/// [`lose_the_reply_then_retry`] with a pipeline of three writes on two keys; another
/// clerk reads "10" (applied); the leader crashes; the retry is answered as the first
/// attempt was; the keys hold "10" and "5"; lincheck agrees.
#[test]
fn a_pipeline_retried_across_a_leader_change_applies_exactly_once() {
    let name = "a_pipeline_retried_across_a_leader_change_applies_exactly_once";
    let mut k = KvCluster::new(ClusterConfig::scenario(3, "kv_redis", name, 1404));
    let reader = k.add_clerk(Workload::Script(VecDeque::new()));
    let mut old_leader = None;
    let (mut k, c) = lose_the_reply_then_retry(k, pipeline(), |k, leader| {
        assert_eq!(value(k.op(reader, get("n"), 10_000)), Some(b"10".to_vec()));
        k.sim.crash(leader);
        old_leader = Some(leader);
    });
    assert_eq!(k.clerks[c].results[1].1, pipeline_answer());
    assert_eq!(value(k.op(reader, get("n"), 10_000)), Some(b"10".to_vec()));
    assert_eq!(
        value(k.op(reader, get("{n}m"), 10_000)),
        Some(b"5".to_vec())
    );
    k.sim.restart(old_leader.expect("crashed"));
    k.check_linearizable();
}

/// Goal: a pipeline's session record survives a snapshot and a restart of every server:
/// the retry after them is answered from it and applies nothing again. Method: max raft
/// state 500; [`lose_the_reply_then_retry`] with the pipeline; meanwhile another clerk
/// puts 40 keys (the log is compacted into a snapshot past the pipeline's entry), then
/// every server crashes and restarts (from snapshot and log); the retry is answered as
/// the first attempt was; the keys hold "10" and "5"; lincheck agrees.
#[test]
fn a_pipeline_retried_across_a_snapshot_and_a_full_restart_applies_exactly_once() {
    let name = "a_pipeline_retried_across_a_snapshot_and_a_full_restart_applies_exactly_once";
    let mut cfg = ClusterConfig::scenario(3, "kv_redis", name, 1405);
    cfg.max_raft_state = Some(500);
    let mut k = KvCluster::new(cfg);
    let writer = k.add_clerk(Workload::Script(VecDeque::new()));
    let (mut k, c) = lose_the_reply_then_retry(k, pipeline(), |k, leader| {
        let entry = k.sim.nodes[&leader]
            .app
            .as_ref()
            .expect("up")
            .raft()
            .log()
            .last_index();
        for i in 0..40 {
            let put = KvOp::Write(KvCommand::Put {
                key: format!("w{i}").into_bytes(),
                value: vec![b'v'; 20],
            });
            assert_eq!(k.op(writer, put, 10_000), Some(KvOutput::Done));
        }
        for id in k.sim.ids() {
            let first = k.sim.nodes[&id]
                .app
                .as_ref()
                .expect("up")
                .raft()
                .log()
                .first_index();
            assert!(
                first > entry,
                "server {id:?} compacted past the pipeline's entry"
            );
        }
        for id in k.sim.ids() {
            k.sim.crash(id);
        }
        for id in k.sim.ids() {
            k.sim.restart(id);
        }
    });
    assert_eq!(k.clerks[c].results[1].1, pipeline_answer());
    assert_eq!(value(k.op(writer, get("n"), 10_000)), Some(b"10".to_vec()));
    assert_eq!(
        value(k.op(writer, get("{n}m"), 10_000)),
        Some(b"5".to_vec())
    );
    k.check_linearizable();
}

/// Goal: under leader crashes and lost messages, each acknowledged increment counted
/// once and each unknown one at most once. Method: 3 servers, lossy network; three clerks
/// each send 40 IncrBy 1 on one key with a 1 s deadline (unknown outcomes), while the
/// leader crashes and restarts every 700 ms; heal; read the key. The final integer lies
/// between the acknowledged count and that plus the unknown count, every acknowledged
/// answer is distinct, and lincheck (which must decide which unknown ones applied)
/// accepts the history.
#[test]
fn incrby_under_leader_crashes_counts_each_increment_at_most_once() {
    let name = "incrby_under_leader_crashes_counts_each_increment_at_most_once";
    let mut cfg = ClusterConfig::scenario(3, "kv_redis", name, 1403);
    cfg.net = NetConfig::unreliable();
    let mut k = KvCluster::new(cfg);
    k.op_deadline_ms = Some(1_000);
    let reader = k.add_clerk(Workload::Script(VecDeque::new()));
    for _ in 0..3 {
        k.add_clerk(Workload::Script((0..40).map(|_| incr("n", 1)).collect()));
    }
    k.start_clients();
    for _ in 0..8 {
        k.run_for(700);
        let leader = k.sim.check_one_leader();
        k.sim.crash(leader);
        k.run_for(300);
        k.sim.restart(leader);
    }
    k.sim.net.config = NetConfig::reliable();
    assert!(k.run_until_idle(60_000), "increments did not finish");
    let acked: Vec<i64> = k
        .clerks
        .iter()
        .flat_map(|c| &c.results)
        .filter_map(|(_, out)| match out {
            KvOutput::Int(n) => Some(*n),
            _ => None,
        })
        .collect();
    let unknown = k
        .history
        .iter()
        .filter(|o| o.result == shardkv_lincheck::OpResult::Unknown)
        .count();
    let mut distinct = acked.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), acked.len(), "two increments answered alike");
    let last = value(k.op(reader, get("n"), 10_000)).expect("the key exists");
    let last: usize = String::from_utf8(last).unwrap().parse().unwrap();
    assert!(
        (acked.len()..=acked.len() + unknown).contains(&last),
        "final {last}: {} acknowledged, {unknown} unknown",
        acked.len()
    );
    println!(
        "{} acknowledged, {unknown} unknown, final value {last}",
        acked.len()
    );
    k.check_linearizable();
}
