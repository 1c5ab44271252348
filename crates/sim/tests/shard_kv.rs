//! Sharded KV scenarios: the lab's shardkv tests (§7 of the lab catalogue) with the lab's
//! numbers, in one seeded world — a controller group and three shard groups of three
//! servers, started but not joined, and sharded clerks (the production sharded clerk core)
//! over the simulated network. Every test runs in virtual time under a fixed seed
//! (override with SHARDKV_SEED), samples the ownership invariant (per config number at
//! most one group serves a shard) throughout, and ends with the clerks' history checked
//! for linearizability (an undecided check fails).

use shardkv_kv::{KvCommand, KvOutput, KvQuery};
use shardkv_rsm::Error;
use shardkv_sim::{OP_MS_MAX, ShardWorld, ShardWorldOptions, Workload, get};
use shardkv_types::shard_of_key;
use shardkv_types::{LogIndex, NodeId};
use std::collections::VecDeque;

const FILE: &str = "shard_kv";

fn world(name: &str, seed: u64, opts: ShardWorldOptions) -> ShardWorld {
    ShardWorld::new(FILE, name, seed, &opts)
}

/// One scripted clerk (index 0).
fn scripted(w: &mut ShardWorld) -> usize {
    w.add_clerks(1, Workload::Script(VecDeque::new()))[0]
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Goal: static shards (TestStaticShards5A) — with one group dead, exactly the keys of its
/// shards are unavailable and every other key is served; restarted from its persisted Raft
/// log, it serves all again. Method: join groups 0 and 1; put keys "0".."9" (20-byte
/// values); shut down group 1; ten fresh clerks each Get one key concurrently and run until
/// 2 s pass with no new completion; exactly the keys whose shard group 1 owns are missing
/// and the others are exact; restart group 1 and every Get completes with the right value.
#[test]
fn static_shards_one_dead_group_blocks_exactly_its_keys() {
    let mut w = world(
        "static_shards_one_dead_group_blocks_exactly_its_keys",
        1,
        ShardWorldOptions::default(),
    );
    let c = scripted(&mut w);
    w.join(&[0, 1]);
    let ks = keys(10);
    let vals: Vec<String> = (0..10).map(|i| format!("{i:0>20}")).collect();
    for (k, v) in ks.iter().zip(&vals) {
        w.put(c, k, v);
    }
    for (k, v) in ks.iter().zip(&vals) {
        w.check(c, k, v);
    }
    let config = w.latest_config();
    let dead = w.gids[1];
    w.shutdown_group(1);
    let readers = w.add_clerks(10, Workload::Script(VecDeque::new()));
    for (&r, k) in readers.iter().zip(&ks) {
        let s = &mut w.world;
        let clients = s.clients.shard.as_mut().expect("shard clerks");
        clients.begin(&mut s.sim, r, get(k));
    }
    // Until 2 s pass with no new completion.
    let done = |w: &mut ShardWorld| {
        readers
            .iter()
            .filter(|&&r| w.clerks().clerks[r].is_idle())
            .count()
    };
    let mut completed = done(&mut w);
    loop {
        w.run_for(2_000);
        let now = done(&mut w);
        if now == completed {
            break;
        }
        completed = now;
    }
    let shards = config.shard_count();
    for (i, &r) in readers.iter().enumerate() {
        let on_dead = config.owner(shard_of_key(ks[i].as_bytes(), shards)) == Some(dead);
        let finished = w.clerks().clerks[r].is_idle();
        assert_eq!(
            finished, !on_dead,
            "key {i} (owned by the dead group: {on_dead}) finished: {finished}"
        );
        if finished {
            let got = &w.clerks().clerks[r].results[0].1;
            assert_eq!(
                *got,
                shardkv_kv::KvOutput::Value(Some(vals[i].clone().into_bytes()))
            );
        }
    }
    let expected_dead = ks
        .iter()
        .filter(|k| config.owner(shard_of_key(k.as_bytes(), shards)) == Some(dead))
        .count();
    assert_eq!(
        completed,
        10 - expected_dead,
        "exactly the live group's keys complete"
    );
    assert!(
        expected_dead > 0 && expected_dead < 10,
        "both groups own some of the keys"
    );
    w.start_group(1);
    assert!(
        w.run_until(30_000, |c| c.shard.as_ref().is_some_and(|s| s.idle())),
        "every Get completes once the group is back"
    );
    for (i, &r) in readers.iter().enumerate() {
        let got = &w.clerks().clerks[r].results[0].1;
        assert_eq!(
            *got,
            shardkv_kv::KvOutput::Value(Some(vals[i].clone().into_bytes()))
        );
    }
    w.check_history();
}

/// The ten lab appenders: clerks 0..10 each on its own key ("0".."9"), Put then appends
/// and Gets checked exactly as they go.
fn appenders(w: &mut ShardWorld) -> Vec<usize> {
    w.add_clerks(10, Workload::OwnKey)
}

/// Stops the appenders, waits for them, then reads every key through clerk `c` and checks it
/// holds each of its clerk's appends exactly once, in order.
fn check_appenders(w: &mut ShardWorld, appenders: &[usize], c: usize) {
    w.clerks().stop_clients();
    let idle = w.run_until(120_000, |k| {
        k.shard
            .as_ref()
            .is_some_and(|s| appenders.iter().all(|&a| s.clerks[a].is_idle()))
    });
    assert!(idle, "every appender finishes its operation");
    let total: u64 = appenders
        .iter()
        .map(|&a| w.clerks().clerks[a].appends)
        .sum();
    assert!(total > 0, "the appenders appended");
    for &a in appenders {
        let key = a.to_string();
        let value = match w.op(c, get(&key)) {
            shardkv_kv::KvOutput::Value(v) => v.unwrap_or_default(),
            other => panic!("Get answered {other:?}"),
        };
        let count = w.clerks().clerks[a].appends;
        let s = w.world.clients.shard.as_ref().expect("shard clerks");
        s.check_appends(&w.world.sim, a as u64, &value, count);
    }
    w.check_history();
}

/// Goal: rejection (TestRejection5A) — a group refuses keys its own config says it does not
/// own, whatever config the clerk holds. Method: join groups 0 and 1, put and check 10
/// keys; ten fresh clerks are handed config 1 (everything on group 0, as a second
/// controller that only joined gid 100 would say) and each Gets one key. Keys group 0 owns
/// complete without any config refresh; every other key was refused by group 0 (the clerk
/// had to fetch the real config) and still reads its exact value, never "".
#[test]
fn rejection_a_group_refuses_keys_its_config_does_not_give_it() {
    let mut w = world(
        "rejection_a_group_refuses_keys_its_config_does_not_give_it",
        2,
        ShardWorldOptions::default(),
    );
    let c = scripted(&mut w);
    w.join(&[0]);
    let forged = w.latest_config();
    w.join(&[1]);
    let ks = keys(10);
    for k in &ks {
        w.put(c, k, &format!("v{k}"));
        w.check(c, k, &format!("v{k}"));
    }
    let config = w.latest_config();
    let readers = w.add_clerks(10, Workload::Script(VecDeque::new()));
    for &r in &readers {
        w.clerks().clerks[r].clerk_mut().set_config(forged.clone());
    }
    let shards = config.shard_count();
    let mut refused = 0;
    for (i, &r) in readers.iter().enumerate() {
        let got = w.op(r, get(&ks[i]));
        assert_eq!(
            got,
            shardkv_kv::KvOutput::Value(Some(format!("v{i}").into_bytes()))
        );
        let owner = config.owner(shard_of_key(ks[i].as_bytes(), shards));
        let refreshes = w.clerks().clerks[r].clerk_mut().refreshes;
        if owner == Some(w.gids[0]) {
            assert_eq!(
                refreshes, 0,
                "key {i} of group 0 is served under the forged config"
            );
        } else {
            assert!(refreshes > 0, "group 0 served key {i} it does not own");
            refused += 1;
        }
    }
    assert!(refused > 0, "some keys belong to group 1");
    w.check_history();
}

/// Goal: join and leave (TestJoinLeave5B) — shards move with their data and duplicate
/// state. Method: join 0; put 10 keys (5-byte values); join 1; check and append each; leave
/// 0; check and append each; after 1 s no snapshot exists anywhere (none configured); shut
/// down group 0 and every value is still exact.
#[test]
fn join_leave_values_move_with_their_shards() {
    let mut w = world(
        "join_leave_values_move_with_their_shards",
        3,
        ShardWorldOptions::default(),
    );
    let c = scripted(&mut w);
    w.join(&[0]);
    let ks = keys(10);
    let mut va: Vec<String> = (0..10).map(|i| format!("{i:0>5}")).collect();
    for (k, v) in ks.iter().zip(&va) {
        w.put(c, k, v);
    }
    w.join(&[1]);
    for (k, v) in ks.iter().zip(va.iter_mut()) {
        w.check(c, k, v);
        w.append(c, k, "abcde");
        v.push_str("abcde");
    }
    w.leave(&[0]);
    for (k, v) in ks.iter().zip(va.iter_mut()) {
        w.check(c, k, v);
        w.append(c, k, "fghij");
        v.push_str("fghij");
    }
    w.run_for(1_000);
    let sim = &w.world.sim;
    for (id, n) in &sim.nodes {
        assert_eq!(
            n.store.snapshot_bytes(),
            0,
            "{id} snapshotted with snapshots off"
        );
    }
    w.shutdown_group(0);
    for (k, v) in ks.iter().zip(&va) {
        w.check(c, k, v);
    }
    w.check_history();
}

/// Join 0; put "k" = "a"; clerk `c` sends `op` to group 0's leader, and group 0 is cut off
/// from the clerk as soon as the leader has the entry (the group still commits and applies
/// it; the reply is lost, and no retry reaches group 0); group 1 joins and group 0 leaves,
/// so the shard moves (with its session table); the clerk retries until it reaches group 1.
fn retry_after_the_shard_moved(w: &mut ShardWorld, c: usize, op: shardkv_client::KvOp) {
    w.join(&[0]);
    w.put(c, "k", "a");
    let leader = w
        .members(0)
        .into_iter()
        .find(|id| {
            w.world.sim.nodes[id]
                .app
                .as_ref()
                .and_then(|a| a.shard_group())
                .is_some_and(|g| g.replica.raft().is_leader())
        })
        .expect("group 0 has a leader");
    let last = |w: &ShardWorld| {
        let n = &w.world.sim.nodes[&leader];
        n.app
            .as_ref()
            .and_then(|a| a.shard_group())
            .map_or(LogIndex(0), |g| g.replica.raft().log().last_index())
    };
    let before = last(w);
    {
        let sw = &mut w.world;
        let s = sw.clients.shard.as_mut().expect("shard clerks");
        s.begin(&mut sw.sim, c, op);
    }
    let addr = w.clerks().clerks[c].addr;
    assert!(
        w.world.sim.run_until(1_000, |s| {
            let n = &s.nodes[&leader];
            n.app
                .as_ref()
                .and_then(|a| a.shard_group())
                .is_some_and(|g| g.replica.raft().log().last_index() > before)
        }),
        "the operation reached group 0's leader"
    );
    let group0 = w.members(0);
    let others: Vec<NodeId> = w
        .world
        .sim
        .ids()
        .into_iter()
        .filter(|id| !group0.contains(id))
        .collect();
    w.world.sim.client_reach(addr, &others);
    w.join(&[1]);
    w.leave(&[0]);
    assert!(
        w.run_until(OP_MS_MAX, |k| k
            .shard
            .as_ref()
            .is_some_and(|s| s.clerks[c].is_idle())),
        "the operation completes at the new owner"
    );
    assert!(last(w) > before, "group 0 had the entry");
}

/// Goal: exactly once across a move — a write applied by the old owner whose reply was
/// lost is not applied again when the clerk retries it at the new owner (the session table
/// moves with the shard). Method: [`retry_after_the_shard_moved`] with an Append of "b";
/// "k" holds the append once.
#[test]
fn exactly_once_a_retry_after_the_shard_moved_is_not_applied_again() {
    let mut w = world(
        "exactly_once_a_retry_after_the_shard_moved_is_not_applied_again",
        15,
        ShardWorldOptions::default(),
    );
    let c = scripted(&mut w);
    let append = shardkv_client::Op::Write(KvCommand::Append {
        key: "k".into(),
        value: "b".into(),
    });
    retry_after_the_shard_moved(&mut w, c, append);
    w.check(c, "k", "ab");
    w.check_history();
}

/// Goal: a pipeline is one write for exactly-once across a move too: applied by the old
/// owner, its reply lost, its retry at the new owner is answered from the session record
/// that moved with the shard, every command's answer as the first attempt's, and applies
/// nothing again. Method: [`retry_after_the_shard_moved`] with a pipeline of an Append of
/// "b" to "k" and an AppendLen of "z" to "{k}2" (one hash tag, so one shard); the answer
/// is (done, 1); "k" holds "ab" and "{k}2" holds "z".
#[test]
fn exactly_once_a_pipeline_retried_after_its_shard_moved_is_not_applied_again() {
    let mut w = world(
        "exactly_once_a_pipeline_retried_after_its_shard_moved_is_not_applied_again",
        16,
        ShardWorldOptions::default(),
    );
    let c = scripted(&mut w);
    let pipeline = shardkv_client::Op::Write(KvCommand::Pipeline {
        cmds: vec![
            KvCommand::Append {
                key: "k".into(),
                value: "b".into(),
            },
            KvCommand::AppendLen {
                key: "{k}2".into(),
                value: "z".into(),
            },
        ],
    });
    retry_after_the_shard_moved(&mut w, c, pipeline);
    let answers = &w.clerks().clerks[c].results;
    assert_eq!(
        answers.last().map(|(_, out)| out.clone()),
        Some(KvOutput::Outputs(vec![KvOutput::Done, KvOutput::Int(1)]))
    );
    w.check(c, "k", "ab");
    w.check(c, "{k}2", "z");
    w.check_history();
}

/// Goal: a pipeline whose keys span shards is refused Invalid as a whole (atomicity holds
/// only within a shard) and changes nothing, read or write, even when one group serves
/// both shards. Method: join 0; put two keys of different shards; a write pipeline setting
/// both and a read pipeline of both each fail Invalid; both keys hold their values.
#[test]
fn a_pipeline_spanning_shards_is_refused_and_changes_nothing() {
    let mut w = world(
        "a_pipeline_spanning_shards_is_refused_and_changes_nothing",
        17,
        ShardWorldOptions::default(),
    );
    let c = scripted(&mut w);
    w.join(&[0]);
    let shards = w.latest_config().shard_count();
    let ks = keys(64);
    let a = ks[0].clone();
    let b = ks
        .iter()
        .find(|k| shard_of_key(k.as_bytes(), shards) != shard_of_key(a.as_bytes(), shards))
        .expect("two keys of different shards")
        .clone();
    w.put(c, &a, "1");
    w.put(c, &b, "2");
    let put = |k: &str| KvCommand::Put {
        key: k.into(),
        value: "new".into(),
    };
    let write = shardkv_client::Op::Write(KvCommand::Pipeline {
        cmds: vec![put(&a), put(&b)],
    });
    let read = shardkv_client::Op::Read(KvQuery::Pipeline {
        queries: vec![
            KvQuery::Get {
                key: a.clone().into(),
            },
            KvQuery::Get {
                key: b.clone().into(),
            },
        ],
    });
    for op in [write, read] {
        assert_eq!(
            w.try_op(c, op.clone(), OP_MS_MAX),
            None,
            "{op:?} has no answer"
        );
        let failures = &w.clerks().clerks[c].failures;
        assert!(
            matches!(failures.last(), Some((failed, Error::Invalid { .. })) if *failed == op),
            "{op:?} refused Invalid: {failures:?}"
        );
    }
    w.check(c, &a, "1");
    w.check(c, &b, "2");
    w.check_history();
}

/// Goal: snapshots (TestSnapshot5B) — shard data, config state and duplicate tables come
/// back from snapshots after every group restarts. Method: max raft state 1000; join 0; put
/// 30 keys (20-byte values); join 1, join 2, leave 0; check and append all; leave 1, join
/// 0; check and append all; run 1 s, check, run 1 s; every server's Raft state is within
/// 8 × 1000 bytes; shut down all three groups, restart them; all 30 values exact.
#[test]
fn snapshots_restore_everything_after_a_full_restart() {
    let opts = ShardWorldOptions {
        max_raft_state: Some(1000),
        ..ShardWorldOptions::default()
    };
    let mut w = world("snapshots_restore_everything_after_a_full_restart", 4, opts);
    let c = scripted(&mut w);
    w.join(&[0]);
    let ks = keys(30);
    let mut va: Vec<String> = (0..30).map(|i| format!("{i:0>20}")).collect();
    for (k, v) in ks.iter().zip(&va) {
        w.put(c, k, v);
    }
    w.join(&[1]);
    w.join(&[2]);
    w.leave(&[0]);
    for (k, v) in ks.iter().zip(va.iter_mut()) {
        w.check(c, k, v);
        w.append(c, k, "x");
        v.push('x');
    }
    w.leave(&[1]);
    w.join(&[0]);
    for (k, v) in ks.iter().zip(va.iter_mut()) {
        w.check(c, k, v);
        w.append(c, k, "y");
        v.push('y');
    }
    w.run_for(1_000);
    for (k, v) in ks.iter().zip(&va) {
        w.check(c, k, v);
    }
    w.run_for(1_000);
    let max = w.raft_state_bytes_max();
    assert!(
        max <= 8 * 1000,
        "persisted Raft state {max} > 8 × max raft state 1000"
    );
    for gi in 0..3 {
        w.shutdown_group(gi);
    }
    for gi in 0..3 {
        w.start_group(gi);
    }
    for (k, v) in ks.iter().zip(&va) {
        w.check(c, k, v);
    }
    w.check_history();
}

/// Goal: missed changes (TestMissChange5B) — a replica that was down through several
/// config changes catches up through each of them (log or snapshot). Method: max raft
/// state 1000; join 0; put 10 keys; join 1; shut down server 0 of every group; join 2,
/// leave 1, leave 0; check and append; join 1; check and append; restart those servers;
/// check and append; run 2 s; shut down server 1 of every group; join 0, leave 2; check
/// and append; restart them; check — every value exact throughout.
#[test]
fn missed_changes_a_restarted_replica_catches_up_through_each() {
    let opts = ShardWorldOptions {
        max_raft_state: Some(1000),
        ..ShardWorldOptions::default()
    };
    let mut w = world(
        "missed_changes_a_restarted_replica_catches_up_through_each",
        5,
        opts,
    );
    let c = scripted(&mut w);
    let ks = keys(10);
    let mut va: Vec<String> = (0..10).map(|i| format!("{i:0>20}")).collect();
    let round = |w: &mut ShardWorld, va: &mut Vec<String>, tag: &str| {
        for (k, v) in ks.iter().zip(va.iter_mut()) {
            w.check(c, k, v);
            w.append(c, k, tag);
            v.push_str(tag);
        }
    };
    w.join(&[0]);
    for (k, v) in ks.iter().zip(&va) {
        w.put(c, k, v);
    }
    w.join(&[1]);
    for gi in 0..3 {
        w.shutdown_server(gi, 0);
    }
    w.join(&[2]);
    w.leave(&[1]);
    w.leave(&[0]);
    round(&mut w, &mut va, "a");
    w.join(&[1]);
    round(&mut w, &mut va, "b");
    for gi in 0..3 {
        w.start_server(gi, 0);
    }
    round(&mut w, &mut va, "c");
    w.run_for(2_000);
    for gi in 0..3 {
        w.shutdown_server(gi, 1);
    }
    w.join(&[0]);
    w.leave(&[2]);
    round(&mut w, &mut va, "d");
    for gi in 0..3 {
        w.start_server(gi, 1);
    }
    for (k, v) in ks.iter().zip(&va) {
        w.check(c, k, v);
    }
    w.check_history();
}

/// Goal: concurrent 1 (TestConcurrent1_5B) — appends are applied exactly once, in order,
/// across migrations and full restarts of every group. Method: max raft state 100; join 0;
/// ten clerks append to their own keys (and read them back, checked exactly) while: +150
/// ms join 1, +500 ms join 2, +500 ms leave 0; groups 0, 1, 2 shut down 100 ms apart; leave
/// 2; +100 ms all restart; +100 ms join 0, leave 1; +500 ms join 1; +1 s stop. Every key
/// holds each of its clerk's appends exactly once, in order.
#[test]
fn concurrent_1_appends_exactly_once_across_moves_and_restarts() {
    let opts = ShardWorldOptions {
        max_raft_state: Some(100),
        ..ShardWorldOptions::default()
    };
    let mut w = world(
        "concurrent_1_appends_exactly_once_across_moves_and_restarts",
        6,
        opts,
    );
    let apps = appenders(&mut w);
    let c = scripted(&mut w);
    w.join(&[0]);
    w.start_clerks();
    w.run_for(150);
    w.join(&[1]);
    w.run_for(500);
    w.join(&[2]);
    w.run_for(500);
    w.leave(&[0]);
    for gi in 0..3 {
        w.shutdown_group(gi);
        w.run_for(100);
    }
    w.leave(&[2]);
    w.run_for(100);
    for gi in 0..3 {
        w.start_group(gi);
    }
    w.run_for(100);
    w.join(&[0]);
    w.leave(&[1]);
    w.run_for(500);
    w.join(&[1]);
    w.run_for(1_000);
    check_appenders(&mut w, &apps, c);
}

/// Goal: concurrent 2 (TestConcurrent2_5B) — a restarting group fetches shard contents from
/// whichever group has them. Method: join 1, 0, 2; ten appending clerks; leave 0 and 2; 3
/// s; join 0 and 2, leave 1; 3 s; join 1, leave 0 and 2; 3 s; shut down groups 1 and 2; 1
/// s; restart them; 2 s; stop. Every append exactly once, in order.
#[test]
fn concurrent_2_appends_exactly_once_while_groups_come_and_go() {
    let mut w = world(
        "concurrent_2_appends_exactly_once_while_groups_come_and_go",
        7,
        ShardWorldOptions::default(),
    );
    let apps = appenders(&mut w);
    let c = scripted(&mut w);
    w.join(&[1]);
    w.join(&[0]);
    w.join(&[2]);
    w.start_clerks();
    w.leave(&[0]);
    w.leave(&[2]);
    w.run_for(3_000);
    w.join(&[0]);
    w.join(&[2]);
    w.leave(&[1]);
    w.run_for(3_000);
    w.join(&[1]);
    w.leave(&[0]);
    w.leave(&[2]);
    w.run_for(3_000);
    w.shutdown_group(1);
    w.shutdown_group(2);
    w.run_for(1_000);
    w.start_group(1);
    w.start_group(2);
    w.run_for(2_000);
    check_appenders(&mut w, &apps, c);
}

/// Goal: concurrent 3 (TestConcurrent3_5B) — exactly-once appends under storms of joins,
/// leaves and full restarts. Method: max raft state 300; join 0; ten clerks append as fast
/// as they can; for 12 s of virtual time: join 2, join 1, pause 0–899 ms, shut down and
/// restart all three groups, pause 0–899 ms, leave 1, leave 2, pause 0–899 ms; then 2 s;
/// stop. Every append exactly once, in order.
#[test]
fn concurrent_3_appends_exactly_once_under_restart_storms() {
    let opts = ShardWorldOptions {
        max_raft_state: Some(300),
        ..ShardWorldOptions::default()
    };
    let name = "concurrent_3_appends_exactly_once_under_restart_storms";
    let mut w = world(name, 8, opts);
    let mut rng = shardkv_types::Rng::new(w.world.sim.cfg.seed ^ 0xc3);
    let apps = appenders(&mut w);
    let c = scripted(&mut w);
    w.join(&[0]);
    w.start_clerks();
    let end = w.world.sim.now + 12_000_000;
    while w.world.sim.now < end {
        w.join(&[2]);
        w.join(&[1]);
        w.run_for(rng.range(0, 900));
        for gi in 0..3 {
            w.shutdown_group(gi);
        }
        for gi in 0..3 {
            w.start_group(gi);
        }
        w.run_for(rng.range(0, 900));
        w.leave(&[1]);
        w.leave(&[2]);
        w.run_for(rng.range(0, 900));
    }
    w.run_for(2_000);
    check_appenders(&mut w, &apps, c);
}

fn unreliable() -> ShardWorldOptions {
    ShardWorldOptions {
        max_raft_state: Some(100),
        unreliable: true,
        ..ShardWorldOptions::default()
    }
}

/// Goal: unreliable 1 (TestUnreliable1_5B) — exact values over a lossy, slow network while
/// shards move. Method: unreliable network, max raft state 100; join 0; put 10 keys; join
/// 1, join 2, leave 0; 20 rounds of check + append round-robin over the keys; join 0,
/// leave 1; 20 checks.
#[test]
fn unreliable_1_exact_values_over_a_lossy_network() {
    let mut w = world(
        "unreliable_1_exact_values_over_a_lossy_network",
        9,
        unreliable(),
    );
    let c = scripted(&mut w);
    let ks = keys(10);
    let mut va: Vec<String> = (0..10).map(|i| format!("{i:0>5}")).collect();
    w.join(&[0]);
    for (k, v) in ks.iter().zip(&va) {
        w.put(c, k, v);
    }
    w.join(&[1]);
    w.join(&[2]);
    w.leave(&[0]);
    for i in 0..20 {
        let j = i % 10;
        w.check(c, &ks[j], &va[j]);
        w.append(c, &ks[j], "z");
        va[j].push('z');
    }
    w.join(&[0]);
    w.leave(&[1]);
    for i in 0..20 {
        let j = i % 10;
        w.check(c, &ks[j], &va[j]);
    }
    w.check_history();
}

/// Goal: unreliable 2 (TestUnreliable2_5B) — exactly-once appends over a lossy network
/// while shards move. Method: unreliable network, max raft state 100; join 0; ten
/// appending clerks; +150 ms join 1, +500 ms join 2, +500 ms leave 0, +500 ms leave 1, +500
/// ms join 1 and 0; 2 s; the network turns reliable; stop. Every append exactly once, in
/// order.
#[test]
fn unreliable_2_appends_exactly_once_over_a_lossy_network() {
    let name = "unreliable_2_appends_exactly_once_over_a_lossy_network";
    let mut w = world(name, 10, unreliable());
    let apps = appenders(&mut w);
    let c = scripted(&mut w);
    w.join(&[0]);
    w.start_clerks();
    churn(&mut w);
    w.world.sim.net.config = shardkv_sim::NetConfig::reliable();
    check_appenders(&mut w, &apps, c);
}

/// The unreliable tests' churn: +150 ms join 1, +500 join 2, +500 leave 0, +500 leave 1,
/// +500 join 1 and 0, then 2 s.
fn churn(w: &mut ShardWorld) {
    w.run_for(150);
    w.join(&[1]);
    w.run_for(500);
    w.join(&[2]);
    w.run_for(500);
    w.leave(&[0]);
    w.run_for(500);
    w.leave(&[1]);
    w.run_for(500);
    w.join(&[1, 0]);
    w.run_for(2_000);
}

/// Goal: unreliable 3 (TestUnreliable3_5B) — random operations on random keys over a lossy
/// network while shards move are linearizable. Method: unreliable network, max raft state
/// 100; join 0; ten clerks run random operations on ten keys (appends, puts, deletes,
/// CAS, gets); the unreliable-2 churn; the network turns reliable; stop; the history is
/// linearizable (an undecided check fails).
#[test]
fn unreliable_3_random_ops_are_linearizable() {
    let mut w = world("unreliable_3_random_ops_are_linearizable", 11, unreliable());
    w.add_clerks(10, Workload::RandomKeys { keys: 10 });
    w.join(&[0]);
    w.start_clerks();
    churn(&mut w);
    w.world.sim.net.config = shardkv_sim::NetConfig::reliable();
    w.clerks().stop_clients();
    assert!(
        w.run_until(120_000, |k| k.shard.as_ref().is_some_and(|s| s.idle())),
        "every clerk finishes"
    );
    for a in 0..10 {
        let addr = w.clerks().clerks[a].addr;
        let done = w
            .clerks()
            .history
            .iter()
            .filter(|o| o.client == addr)
            .count();
        assert!(done > 0, "clerk {a} completed operations");
    }

    w.check_history();
}

/// Goal: the Redis front end's operations, single- and multi-key (within one hash tag, so
/// one shard), stay linearizable and exactly-once while shards move under load. Method:
/// unreliable network, max raft state 100; join 0; eight clerks run the RedisKeys workload
/// on 12 keys (4 hash tags: Set, GetDel, AppendLen, IncrBy, StrLen, DeleteMany, PutMany,
/// GetMany, Exists, Get, Put, Delete, and pipelines of them); the unreliable-2 churn moves every shard several
/// times; the network turns reliable; leave 0, 1.5 s, join 0 and leave 2, 1.5 s; stop; the
/// history is linearizable (an undecided check fails).
#[test]
fn redis_ops_while_shards_move_are_linearizable() {
    let mut w = world(
        "redis_ops_while_shards_move_are_linearizable",
        14,
        unreliable(),
    );
    w.add_clerks(8, Workload::RedisKeys { keys: 12 });
    w.join(&[0]);
    w.start_clerks();
    churn(&mut w);
    w.world.sim.net.config = shardkv_sim::NetConfig::reliable();
    w.leave(&[0]);
    w.run_for(1_500);
    w.join(&[0]);
    w.leave(&[2]);
    w.run_for(1_500);
    w.clerks().stop_clients();
    assert!(
        w.run_until(120_000, |k| k.shard.as_ref().is_some_and(|s| s.idle())),
        "every clerk finishes"
    );
    let history = &w.clerks().history;
    let multi = history
        .iter()
        .filter(|o| o.op.keys().nth(1).is_some())
        .count();
    assert!(
        history.len() > 200,
        "too little progress: {}",
        history.len()
    );
    let pipelines = history
        .iter()
        .filter(|o| matches!(o.op, shardkv_lincheck::Op::Pipeline { .. }))
        .count();
    assert!(multi > 20, "too few multi-key operations: {multi}");
    assert!(pipelines > 20, "too few pipelines: {pipelines}");
    println!(
        "{} operations, {multi} on several keys, {pipelines} pipelines",
        history.len()
    );
    w.check_history();
}

/// Goal: challenge 1, deletion (TestChallenge1Delete) — moved shards are deleted at their
/// old owner and logs are trimmed, so stored bytes stay near the data's size. Method: a
/// snapshot after every entry (max raft state 1); join 0; put 30 keys of 1000 bytes; check
/// 3; twice {join 1, leave 0, join 2, 3 s, check 3, leave 1, join 0, leave 2, 3 s, check
/// 3}; join 1, join 2; three times {1 s, check 3}. The persisted Raft state plus snapshot
/// of all nine shard servers is at most the lab's 117,000 bytes
/// (3 × ((30 − 3) × 1000 + 2 × 3 × 1000 + 6000)); all 30 values exact.
#[test]
fn challenge_1_moved_shards_are_deleted_and_storage_stays_bounded() {
    let opts = ShardWorldOptions {
        max_raft_state: Some(1),
        ..ShardWorldOptions::default()
    };
    let name = "challenge_1_moved_shards_are_deleted_and_storage_stays_bounded";
    let mut w = world(name, 12, opts);
    let c = scripted(&mut w);
    let ks = keys(30);
    let va: Vec<String> = (0..30).map(|i| format!("{i:x<1000}")).collect();
    let check3 = |w: &mut ShardWorld| {
        for i in 0..3 {
            w.check(c, &ks[i], &va[i]);
        }
    };
    w.join(&[0]);
    for (k, v) in ks.iter().zip(&va) {
        w.put(c, k, v);
    }
    check3(&mut w);
    for _ in 0..2 {
        w.join(&[1]);
        w.leave(&[0]);
        w.join(&[2]);
        w.run_for(3_000);
        check3(&mut w);
        w.leave(&[1]);
        w.join(&[0]);
        w.leave(&[2]);
        w.run_for(3_000);
        check3(&mut w);
    }
    w.join(&[1]);
    w.join(&[2]);
    for _ in 0..3 {
        w.run_for(1_000);
        check3(&mut w);
    }
    let total = w.shard_storage_bytes();
    let bound = 3 * ((30 - 3) * 1000 + 2 * 3 * 1000 + 6000);
    println!(
        "challenge 1: {total} bytes of Raft state + snapshots over 9 shard servers \
         ({} shards; bound {bound})",
        w.world.sim.cfg.shards
    );
    assert!(
        total <= bound,
        "snapshot + persisted Raft state are too big: {total} > {bound}"
    );
    for (k, v) in ks.iter().zip(&va) {
        w.check(c, k, v);
    }
    w.check_history();
}

/// Goal: challenge 2, unaffected (TestChallenge2Unaffected) — a group stuck in a
/// reconfiguration keeps serving the shards it already had. Method: unreliable network,
/// max raft state 100; join 0; put 10 keys "100"; join 1; 1 s; put "101" to the keys group
/// 1 now owns; kill group 0; leave 0 (group 1 now owns everything but can never get group
/// 0's shards); 1 s; for every key group 1 owned before the leave: check, put +"-1", check.
#[test]
fn challenge_2_unaffected_shards_keep_serving_during_a_stuck_migration() {
    let name = "challenge_2_unaffected_shards_keep_serving_during_a_stuck_migration";
    let mut w = world(name, 13, unreliable());
    let c = scripted(&mut w);
    let ks = keys(10);
    w.join(&[0]);
    for k in &ks {
        w.put(c, k, "100");
    }
    w.join(&[1]);
    let config = w.latest_config();
    let shards = config.shard_count();
    let owned: Vec<bool> = ks
        .iter()
        .map(|k| config.owner(shard_of_key(k.as_bytes(), shards)) == Some(w.gids[1]))
        .collect();
    assert!(owned.iter().any(|&o| o), "group 1 owns some keys");
    w.run_for(1_000);
    for (k, _) in ks.iter().zip(&owned).filter(|(_, o)| **o) {
        w.put(c, k, "101");
    }
    w.shutdown_group(0);
    w.leave(&[0]);
    w.run_for(1_000);
    for (k, _) in ks.iter().zip(&owned).filter(|(_, o)| **o) {
        w.check(c, k, "101");
        w.put(c, k, "101-1");
        w.check(c, k, "101-1");
    }
    w.check_history();
}

/// Goal: challenge 2, partial (TestChallenge2Partial) — a shard serves as soon as it
/// arrives, without waiting for the whole migration. Method: unreliable network, max raft
/// state 100; join 0, 1, 2 in one Join; 1 s; put 10 keys "100"; note group 2's shards;
/// kill group 0; groups 0 and 2 leave in one Leave (group 1 gets everything, can pull group
/// 2's shards, never group 0's); 1 s; for the keys of group 2's shards: check, put +"-2",
/// check.
#[test]
fn challenge_2_partial_a_shard_serves_as_soon_as_it_arrives() {
    let name = "challenge_2_partial_a_shard_serves_as_soon_as_it_arrives";
    let mut w = world(name, 14, unreliable());
    let c = scripted(&mut w);
    let ks = keys(10);
    w.join(&[0, 1, 2]);
    w.run_for(1_000);
    for k in &ks {
        w.put(c, k, "100");
    }
    let config = w.latest_config();
    let shards = config.shard_count();
    let owned: Vec<bool> = ks
        .iter()
        .map(|k| config.owner(shard_of_key(k.as_bytes(), shards)) == Some(w.gids[2]))
        .collect();
    assert!(owned.iter().any(|&o| o), "group 2 owns some keys");
    w.shutdown_group(0);
    w.leave(&[0, 2]);
    w.run_for(1_000);
    for (k, _) in ks.iter().zip(&owned).filter(|(_, o)| **o) {
        w.check(c, k, "100");
        w.put(c, k, "100-2");
        w.check(c, k, "100-2");
    }
    w.check_history();
}
