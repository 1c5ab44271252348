//! Sharded KV scenarios: the lab's shardkv tests (§7 of the lab catalogue) with the lab's
//! numbers, in one seeded world — a controller group and three shard groups of three
//! servers, started but not joined, and sharded clerks (the production sharded clerk core)
//! over the simulated network. Every test runs in virtual time under a fixed seed
//! (override with SHARDKV_SEED), samples the ownership invariant (per config number at
//! most one group serves a shard) throughout, and ends with the clerks' history checked
//! for linearizability (an undecided check fails).

use shardkv_sim::{ShardWorld, ShardWorldOptions, Workload, get};
use shardkv_types::shard_of_key;
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
