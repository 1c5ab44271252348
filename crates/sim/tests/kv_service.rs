//! The replicated KV service (rsm + kv + clerks) in the simulator: the lab's GenericTest
//! matrix and the targeted scenarios. Virtual time throughout; histories are checked for
//! linearizability and per-client keys exactly.

use shardkv_client::KvOp;
use shardkv_kv::{KvCommand, KvOutput};
use shardkv_sim::{ClusterConfig, KvCluster, NetConfig, Workload};
use shardkv_types::NodeId;
use std::collections::VecDeque;

const ROUNDS: usize = 3;
const ROUND_MS: u64 = 5_000;

fn put(k: &str, v: &str) -> KvOp {
    KvOp::Write(KvCommand::Put {
        key: k.into(),
        value: v.into(),
    })
}

fn append(k: &str, v: &[u8]) -> KvOp {
    KvOp::Write(KvCommand::Append {
        key: k.into(),
        value: v.to_vec(),
    })
}

fn get(k: &str) -> KvOp {
    KvOp::Read(shardkv_kv::KvQuery::Get { key: k.into() })
}

fn value(out: Option<KvOutput>) -> Vec<u8> {
    match out {
        Some(KvOutput::Value(v)) => v.unwrap_or_default(),
        other => panic!("expected a value, got {other:?}"),
    }
}

/// One row of the GenericTest matrix.
#[derive(Clone, Copy)]
struct Generic {
    clients: usize,
    servers: usize,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    max_raft_state: Option<u64>,
    random_keys: bool,
}

/// The lab's GenericTest: 3 rounds of clients running for 5 s (with random partitions every
/// ~1 s if asked), then heal, optionally restart every server, check every client's key
/// exactly and the Raft state size; at the end check the whole history is linearizable.
fn generic(name: &str, seed: u64, g: Generic) {
    let mut cfg = ClusterConfig::scenario(g.servers, "kv_service", name, seed);
    if g.unreliable {
        cfg.net = NetConfig::unreliable();
    }
    cfg.max_raft_state = g.max_raft_state;
    let mut k = KvCluster::new(cfg);
    let checker = k.add_clerk(Workload::Script(VecDeque::new()));
    let workers: Vec<usize> = (0..g.clients)
        .map(|_| {
            k.add_clerk(if g.random_keys {
                Workload::RandomKeys {
                    keys: g.clients as u64,
                }
            } else {
                Workload::OwnKey
            })
        })
        .collect();
    for _round in 0..ROUNDS {
        k.start_clients();
        if g.partitions {
            k.run_for(1_000);
            let end = k.sim.now + ROUND_MS * 1000;
            while k.sim.now < end {
                let (a, b): (Vec<NodeId>, Vec<NodeId>) =
                    k.sim.ids().into_iter().partition(|_| k.sim.rng.chance(500));
                k.sim.partition(&[&a, &b]);
                let ms = 1_000 + k.sim.rng.range(0, 200);
                k.run_for(ms);
            }
        } else {
            k.run_for(ROUND_MS);
        }
        k.stop_clients();
        if g.partitions {
            k.sim.connect_all();
            k.run_for(1_000);
        }
        if g.crash {
            for id in k.sim.ids() {
                k.sim.crash(id);
            }
            k.run_for(1_000);
            for id in k.sim.ids() {
                k.sim.restart(id);
            }
        }
        if !k.run_until_idle(30_000) {
            k.sim
                .fail("clients did not finish their last operation within 30 s after healing");
        }
        for &w in &workers {
            let key = if g.random_keys {
                w as u64 % g.clients as u64
            } else {
                k.clerks[w].index
            };
            let v = value(k.op(checker, get(&key.to_string()), 30_000));
            if !g.random_keys {
                k.check_appends(k.clerks[w].index, &v, k.clerks[w].appends);
            }
        }
        let (raft_bytes, snapshot_bytes) = k.sizes();
        match g.max_raft_state {
            Some(max) => assert!(
                raft_bytes as u64 <= 8 * max,
                "logs were not trimmed ({raft_bytes} > 8*{max})"
            ),
            None => assert_eq!(
                snapshot_bytes, 0,
                "a snapshot exists though max_raft_state is unset"
            ),
        }
    }
    if g.random_keys {
        let swapped = k
            .clerks
            .iter()
            .flat_map(|c| &c.results)
            .filter(|(_, o)| matches!(o, KvOutput::Cas { swapped: true, .. }))
            .count();
        let deletes = k
            .clerks
            .iter()
            .flat_map(|c| &c.results)
            .filter(|(op, _)| matches!(op, KvOp::Write(KvCommand::Delete { .. })))
            .count();
        assert!(
            swapped > 0 && deletes > 0,
            "the workload must exercise CAS ({swapped} swapped) and Delete ({deletes})"
        );
    }
    k.check_linearizable();
    let ops = k.history.len();
    println!("{name}: {ops} operations, linearizable");
    assert!(ops > 10 * g.clients, "too few operations completed: {ops}");
}

macro_rules! generic_tests {
    ($($name:ident: $seed:expr, $g:expr;)*) => {
        $(
            #[test]
            fn $name() {
                generic(stringify!($name), $seed, $g);
            }
        )*
    };
}

const fn g(clients: usize, unreliable: bool, crash: bool, partitions: bool, snap: bool) -> Generic {
    Generic {
        clients,
        servers: 5,
        unreliable,
        crash,
        partitions,
        max_raft_state: if snap { Some(1000) } else { None },
        random_keys: false,
    }
}

// {1, 5 clients} x {reliable, lossy} x {steady, restarts} x {connected, partitions} x {nosnap, snap}
generic_tests! {
    c1_reliable_steady_connected_nosnap: 101, g(1, false, false, false, false);
    c1_reliable_steady_connected_snap: 102, g(1, false, false, false, true);
    c1_reliable_steady_partitions_nosnap: 103, g(1, false, false, true, false);
    c1_reliable_steady_partitions_snap: 104, g(1, false, false, true, true);
    c1_reliable_restarts_connected_nosnap: 105, g(1, false, true, false, false);
    c1_reliable_restarts_connected_snap: 106, g(1, false, true, false, true);
    c1_reliable_restarts_partitions_nosnap: 107, g(1, false, true, true, false);
    c1_reliable_restarts_partitions_snap: 108, g(1, false, true, true, true);
    c1_lossy_steady_connected_nosnap: 109, g(1, true, false, false, false);
    c1_lossy_steady_connected_snap: 110, g(1, true, false, false, true);
    c1_lossy_steady_partitions_nosnap: 111, g(1, true, false, true, false);
    c1_lossy_steady_partitions_snap: 112, g(1, true, false, true, true);
    c1_lossy_restarts_connected_nosnap: 113, g(1, true, true, false, false);
    c1_lossy_restarts_connected_snap: 114, g(1, true, true, false, true);
    c1_lossy_restarts_partitions_nosnap: 115, g(1, true, true, true, false);
    c1_lossy_restarts_partitions_snap: 116, g(1, true, true, true, true);
    c5_reliable_steady_connected_nosnap: 117, g(5, false, false, false, false);
    c5_reliable_steady_connected_snap: 118, g(5, false, false, false, true);
    c5_reliable_steady_partitions_nosnap: 119, g(5, false, false, true, false);
    c5_reliable_steady_partitions_snap: 120, g(5, false, false, true, true);
    c5_reliable_restarts_connected_nosnap: 121, g(5, false, true, false, false);
    c5_reliable_restarts_connected_snap: 122, g(5, false, true, false, true);
    c5_reliable_restarts_partitions_nosnap: 123, g(5, false, true, true, false);
    c5_reliable_restarts_partitions_snap: 124, g(5, false, true, true, true);
    c5_lossy_steady_connected_nosnap: 125, g(5, true, false, false, false);
    c5_lossy_steady_connected_snap: 126, g(5, true, false, false, true);
    c5_lossy_steady_partitions_nosnap: 127, g(5, true, false, true, false);
    c5_lossy_steady_partitions_snap: 128, g(5, true, false, true, true);
    c5_lossy_restarts_connected_nosnap: 129, g(5, true, true, false, false);
    c5_lossy_restarts_connected_snap: 130, g(5, true, true, false, true);
    c5_lossy_restarts_partitions_nosnap: 131, g(5, true, true, true, false);
    c5_lossy_restarts_partitions_snap: 132, g(5, true, true, true, true);
    c15_s7_random_keys_everything_nosnap: 133, Generic { clients: 15, servers: 7, unreliable: true, crash: true, partitions: true, max_raft_state: None, random_keys: true };
    c15_s7_random_keys_everything_snap: 134, Generic { clients: 15, servers: 7, unreliable: true, crash: true, partitions: true, max_raft_state: Some(1000), random_keys: true };
}

/// Goal: one key appended 10 times by each of 5 clients over a lossy network holds all 50
/// appends exactly once, each client's in order (duplicate detection under lost replies).
#[test]
fn lossy_one_key_five_clients_ten_appends_each_exactly_once() {
    let mut cfg = ClusterConfig::scenario(
        3,
        "kv_service",
        "lossy_one_key_five_clients_ten_appends_each_exactly_once",
        140,
    );
    cfg.net = NetConfig::unreliable();
    let mut k = KvCluster::new(cfg);
    let c0 = k.add_clerk(Workload::Script(VecDeque::new()));
    k.op(c0, put("k", ""), 10_000).expect("initial put");
    let clerks: Vec<usize> = (0..5)
        .map(|i| {
            let ops = (0..10)
                .map(|n| append("k", &shardkv_sim::append_value(i + 1, n)))
                .collect();
            k.add_clerk(Workload::Script(ops))
        })
        .collect();
    k.start_clients();
    assert!(k.run_until_idle(60_000), "appends did not finish");
    let v = value(k.op(c0, get("k"), 10_000));
    for &c in &clerks {
        k.check_appends(k.clerks[c].index, &v, 10);
    }
    assert_eq!(
        v.len(),
        (0..5u64)
            .flat_map(|i| (0..10).map(move |n| shardkv_sim::append_value(i + 1, n).len()))
            .sum::<usize>()
    );
    k.check_linearizable();
}

/// Goal: after 800 operations on one key with max_raft_state = 1000, the snapshot holds only
/// the map and the sessions (≤ 500 bytes) and the Raft state is trimmed (≤ 8000 bytes).
#[test]
fn snapshot_after_800_ops_on_one_key_is_at_most_500_bytes() {
    let mut cfg = ClusterConfig::scenario(
        3,
        "kv_service",
        "snapshot_after_800_ops_on_one_key_is_at_most_500_bytes",
        141,
    );
    cfg.max_raft_state = Some(1000);
    let mut k = KvCluster::new(cfg);
    let c = k.add_clerk(Workload::Script(VecDeque::new()));
    for _ in 0..200 {
        k.op(c, put("x", "0"), 10_000).expect("put");
        assert_eq!(value(k.op(c, get("x"), 10_000)), b"0");
        k.op(c, put("x", "1"), 10_000).expect("put");
        assert_eq!(value(k.op(c, get("x"), 10_000)), b"1");
    }
    let (raft, snap) = k.sizes();
    assert!(raft <= 8000, "logs were not trimmed ({raft} > 8000)");
    assert!(snap > 0 && snap <= 500, "snapshot too large ({snap} > 500)");
    println!("800 ops on one key: raft state {raft} bytes, snapshot {snap} bytes");
}

/// Goal: an operation sent to a minority does not complete within 1 s; after the partition
/// heals it completes within 3 s, and it is ordered after the majority's later write.
#[test]
fn minority_operation_waits_and_completes_after_heal() {
    let mut k = KvCluster::new(ClusterConfig::scenario(
        5,
        "kv_service",
        "minority_operation_waits_and_completes_after_heal",
        142,
    ));
    let c0 = k.add_clerk(Workload::Script(VecDeque::new()));
    k.op(c0, put("1", "13"), 10_000).expect("put");
    let leader = k.sim.check_one_leader();
    let ids = k.sim.ids();
    let others: Vec<NodeId> = ids.iter().copied().filter(|&i| i != leader).collect();
    let (p1, p2) = (others[..3].to_vec(), vec![others[3], leader]);
    k.sim.partition(&[&p1, &p2]);
    let c1 = k.add_clerk(Workload::Script(VecDeque::new()));
    let (c2, c3) = (
        k.add_clerk(Workload::Script(VecDeque::new())),
        k.add_clerk(Workload::Script(VecDeque::new())),
    );
    for c in [c0, c1] {
        let addr = k.clerks[c].addr;
        k.sim.client_reach(addr, &p1);
    }
    for c in [c2, c3] {
        let addr = k.clerks[c].addr;
        k.sim.client_reach(addr, &p2);
    }
    k.op(c1, put("1", "14"), 10_000)
        .expect("progress in majority");
    assert_eq!(value(k.op(c1, get("1"), 10_000)), b"14");
    k.begin(c2, put("1", "15"));
    k.begin(c3, get("1"));
    k.run_for(1_000);
    assert!(k.clerks[c2].results.is_empty(), "put in minority completed");
    assert!(k.clerks[c3].results.is_empty(), "get in minority completed");
    k.op(c1, put("1", "16"), 10_000)
        .expect("majority still works");
    k.sim.connect_all();
    for c in [c0, c1, c2, c3] {
        let addr = k.clerks[c].addr;
        k.sim.client_reach(addr, &ids);
    }
    let healed_at = k.sim.now;
    let done = k.run_until_idle(3_000);
    assert!(
        done,
        "minority operations did not complete within 3 s of healing"
    );
    println!(
        "minority ops completed {} ms after healing",
        (k.sim.now - healed_at) / 1000
    );
    assert_eq!(
        value(k.op(c0, get("1"), 10_000)),
        b"15",
        "the minority put is applied after 16"
    );
    k.check_linearizable();
}

/// Goal: 1000 sequential appends by one client average under 33 ms of virtual time each:
/// commits do not wait for heartbeats.
fn speed(name: &str, seed: u64, max_raft_state: Option<u64>) {
    let mut cfg = ClusterConfig::scenario(3, "kv_service", name, seed);
    cfg.max_raft_state = max_raft_state;
    let mut k = KvCluster::new(cfg);
    let c = k.add_clerk(Workload::Script(VecDeque::new()));
    k.op(c, get("x"), 10_000).expect("a leader answers");
    let start = k.sim.now;
    for n in 0..1000 {
        k.op(c, append("x", &shardkv_sim::append_value(0, n)), 10_000)
            .expect("append");
    }
    let per_op_us = (k.sim.now - start) / 1000;
    let v = value(k.op(c, get("x"), 10_000));
    k.check_appends(0, &v, 1000);
    assert!(
        per_op_us < 33_333,
        "operations completed too slowly: {per_op_us} us/op"
    );
    println!("{name}: {per_op_us} us of virtual time per append");
}

#[test]
fn speed_1000_sequential_appends_nosnap() {
    speed("speed_1000_sequential_appends_nosnap", 143, None);
}

#[test]
fn speed_1000_sequential_appends_snap() {
    speed("speed_1000_sequential_appends_snap", 144, Some(1000));
}

/// Goal: a server partitioned away while the others take 50 writes (and snapshot) catches
/// up by InstallSnapshot and serves correct values.
#[test]
fn lagging_server_catches_up_by_snapshot() {
    let mut cfg = ClusterConfig::scenario(
        3,
        "kv_service",
        "lagging_server_catches_up_by_snapshot",
        145,
    );
    cfg.max_raft_state = Some(1000);
    let mut k = KvCluster::new(cfg);
    let c = k.add_clerk(Workload::Script(VecDeque::new()));
    k.op(c, put("a", "A"), 10_000).expect("put");
    let (n1, n2, n3) = (NodeId(1), NodeId(2), NodeId(3));
    k.sim.partition(&[&[n1, n2], &[n3]]);
    for i in 0..50 {
        k.op(c, put(&i.to_string(), &i.to_string()), 10_000)
            .expect("put");
    }
    k.run_for(1_000);
    k.op(c, put("b", "B"), 10_000).expect("put");
    let (raft, _) = k.sizes();
    assert!(raft <= 8000, "logs were not trimmed ({raft} > 8000)");
    k.sim.partition(&[&[n1, n3], &[n2]]);
    k.op(c, put("c", "C"), 10_000)
        .expect("put after the laggard returned");
    k.op(c, put("d", "D"), 10_000).expect("put");
    for (key, want) in [("a", "A"), ("b", "B"), ("1", "1"), ("49", "49")] {
        assert_eq!(value(k.op(c, get(key), 10_000)), want.as_bytes());
    }
    k.sim.connect_all();
    k.op(c, put("e", "E"), 10_000).expect("put");
    for (key, want) in [("c", "C"), ("e", "E"), ("1", "1")] {
        assert_eq!(value(k.op(c, get(key), 10_000)), want.as_bytes());
    }
    assert!(
        k.sim.stats.by_kind.get("Snapshot").copied().unwrap_or(0) > 0,
        "no InstallSnapshot was needed"
    );
}

/// Preferred leaders (the server's default, `shardkv_host::leader_preference`): with clients
/// appending, leadership settles on the group's preferred member, moves when that member
/// crashes, and returns once it is back and caught up; nothing acknowledged is lost and the
/// history is linearizable.
#[test]
fn leadership_settles_on_the_preferred_member_and_returns_after_its_crash() {
    let name = "leadership_settles_on_the_preferred_member_and_returns_after_its_crash";
    let mut cfg = ClusterConfig::scenario(3, "kv_service", name, 131);
    cfg.leader_preference = true;
    let mut k = KvCluster::new(cfg);
    let gid = k.sim.gid();
    let preferred = shardkv_host::leader_preference::preferred_leader(gid.0, k.sim.ids())
        .expect("a group has voters");
    let checker = k.add_clerk(Workload::Script(VecDeque::new()));
    let workers: Vec<usize> = (0..3).map(|_| k.add_clerk(Workload::OwnKey)).collect();
    k.start_clients();
    let settled = |k: &KvCluster| k.sim.leader() == Some(preferred);
    if !run_clients_until(&mut k, 20_000, settled) {
        k.sim.fail(&format!(
            "leadership did not settle on {preferred} within 20 s"
        ));
    }
    k.sim.crash(preferred);
    if !run_clients_until(&mut k, 10_000, |k| {
        k.sim.leader().is_some_and(|l| l != preferred)
    }) {
        k.sim.fail("no other member took over within 10 s");
    }
    k.run_for(2_000);
    k.sim.restart(preferred);
    if !run_clients_until(&mut k, 30_000, settled) {
        k.sim.fail(&format!(
            "leadership did not return to {preferred} within 30 s"
        ));
    }
    k.run_for(1_000);
    k.stop_clients();
    if !k.run_until_idle(30_000) {
        k.sim
            .fail("clients did not finish their last operation within 30 s");
    }
    for &w in &workers {
        let index = k.clerks[w].index;
        let v = value(k.op(checker, get(&index.to_string()), 30_000));
        k.check_appends(index, &v, k.clerks[w].appends);
    }
    let transfers: u64 = k
        .sim
        .ids()
        .into_iter()
        .filter_map(|id| {
            k.sim.nodes[&id]
                .host()
                .map(|h| h.counters().preferred_transfers)
        })
        .sum();
    assert!(transfers >= 1, "leadership came back without a transfer");
    k.check_linearizable();
}

/// Runs the clerks in 50 ms slices of virtual time until `done` holds, for at most `ms`.
fn run_clients_until(k: &mut KvCluster, ms: u64, done: impl Fn(&KvCluster) -> bool) -> bool {
    for _ in 0..ms / 50 {
        if done(k) {
            return true;
        }
        k.run_for(50);
    }
    done(k)
}
