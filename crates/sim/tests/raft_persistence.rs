//! Raft scenarios: crashes and restarts keep every committed entry (persistence, Figure 8,
//! churn). Only persisted state survives a crash in the simulator.

use shardkv_sim::{Cluster, ClusterConfig, NetConfig, digest};
use shardkv_types::{LogIndex, NodeId};
use std::collections::BTreeSet;

fn cluster(n: usize, name: &str, default_seed: u64) -> Cluster {
    Cluster::new(ClusterConfig::scenario(
        n,
        "raft_persistence",
        name,
        default_seed,
    ))
}

/// Goal: restarting all nodes, the leader, or a follower keeps every committed entry.
#[test]
fn restart_all_leader_or_followers_keeps_committed_entries() {
    let mut c = cluster(
        3,
        "restart_all_leader_or_followers_keeps_committed_entries",
        21,
    );
    c.one(&Cluster::cmd(11), 3, true);
    for id in c.ids() {
        c.restart(id);
    }
    c.one(&Cluster::cmd(12), 3, true);
    let l1 = c.check_one_leader();
    c.restart(l1);
    c.one(&Cluster::cmd(13), 3, true);
    let l2 = c.check_one_leader();
    c.disconnect(l2);
    let i14 = c.one(&Cluster::cmd(14), 2, true);
    c.restart(l2);
    c.connect(l2);
    c.wait(i14, 3, None);
    let l3 = c.check_one_leader();
    let f = c.ids().into_iter().find(|&i| i != l3).unwrap();
    c.disconnect(f);
    c.one(&Cluster::cmd(15), 2, true);
    c.restart(f);
    c.connect(f);
    c.one(&Cluster::cmd(16), 3, true);
}

/// Goal: on 5 nodes, only the one node holding the newest committed entry can be elected
/// once it returns; the election restriction and persisted logs keep that entry.
#[test]
fn restarted_minorities_cannot_lose_committed_entries() {
    let mut c = cluster(5, "restarted_minorities_cannot_lose_committed_entries", 22);
    let mut index = 1;
    for _ in 0..5 {
        c.one(&Cluster::cmd(10 + index), 5, true);
        index += 1;
        let l = c.check_one_leader().0;
        let n = |k: u64| NodeId((l - 1 + k) % 5 + 1);
        c.disconnect(n(1));
        c.disconnect(n(2));
        c.one(&Cluster::cmd(10 + index), 3, true);
        index += 1;
        c.disconnect(n(0));
        c.disconnect(n(3));
        c.disconnect(n(4));
        c.restart(n(1));
        c.restart(n(2));
        c.connect(n(1));
        c.connect(n(2));
        c.run_for(1_000);
        c.restart(n(3));
        c.connect(n(3));
        c.one(&Cluster::cmd(10 + index), 3, true);
        index += 1;
        c.connect(n(4));
        c.connect(n(0));
    }
    c.one(&Cluster::cmd(1000), 5, true);
}

/// Figure 8 of the Raft paper, 1000 rounds: propose everywhere, crash whoever accepted,
/// keep at least 3 of 5 up; at the end everything restarts and agrees within 10 s.
fn figure8(name: &str, seed: u64, unreliable: bool) {
    let mut cfg = ClusterConfig::scenario(5, "raft_persistence", name, seed);
    if unreliable {
        cfg.net = NetConfig::unreliable();
    }
    let mut c = Cluster::new(cfg);
    let v = c.rng.range(0, 10_000);
    c.one(&Cluster::cmd(v), 1, true);
    let mut up = 5;
    for iter in 0..1000u64 {
        if unreliable && iter == 200 {
            c.net.config.long_reordering = true;
        }
        let mut leader = None;
        for id in c.ids() {
            let v = c.rng.range(0, 10_000);
            if c.start(id, &Cluster::cmd(v)).is_some() && c.connected.contains(&id) {
                leader = Some(id);
            }
        }
        let ms = if c.rng.chance(100) {
            c.rng.range(0, 500)
        } else {
            c.rng.range(0, 13)
        };
        c.run_for(ms);
        if unreliable {
            if let Some(l) = leader.filter(|_| c.rng.chance(500)) {
                c.disconnect(l);
            }
            if c.connected.len() < 3 {
                let down: Vec<NodeId> = c
                    .ids()
                    .into_iter()
                    .filter(|i| !c.connected.contains(i))
                    .collect();
                let pick = down[c.rng.index(down.len())];
                c.connect(pick);
            }
        } else {
            if let Some(l) = leader {
                c.crash(l);
                up -= 1;
            }
            if up < 3 {
                let down: Vec<NodeId> = c.ids().into_iter().filter(|&i| !c.is_up(i)).collect();
                let pick = down[c.rng.index(down.len())];
                c.restart(pick);
                up += 1;
            }
        }
    }
    for id in c.ids() {
        if !c.is_up(id) {
            c.restart(id);
        }
        c.connect(id);
    }
    let v = c.rng.range(0, 10_000);
    c.one(&Cluster::cmd(v), 5, true);
}

#[test]
fn figure8_reliable_crash_the_acceptor_1000_rounds() {
    figure8("figure8_reliable_crash_the_acceptor_1000_rounds", 23, false);
}

#[test]
fn figure8_unreliable_with_long_reordering_1000_rounds() {
    figure8(
        "figure8_unreliable_with_long_reordering_1000_rounds",
        24,
        true,
    );
}

/// Churn: random crash / disconnect / restart every 700 ms while 3 clients propose; every
/// value a client saw committed is in the final log, which all 5 nodes hold.
fn churn(name: &str, seed: u64, unreliable: bool) {
    let mut cfg = ClusterConfig::scenario(5, "raft_persistence", name, seed);
    if unreliable {
        cfg.net = NetConfig::unreliable();
    }
    let mut c = Cluster::new(cfg);
    // Each client: (value, index, deadline) of its outstanding proposal.
    let mut pending: [Option<(u64, LogIndex, u64)>; 3] = [None; 3];
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let mut next_value = 1u64;
    for _round in 0..20 {
        let round_end = c.now + 700_000;
        while c.now < round_end {
            for p in pending.iter_mut() {
                match *p {
                    Some((v, i, deadline)) => {
                        if c.n_committed(i).1 == Some(digest(&Cluster::cmd(v))) {
                            seen.insert(v);
                            *p = None;
                        } else if c.now >= deadline {
                            *p = None;
                        }
                    }
                    None => {
                        let v = next_value;
                        next_value += 1;
                        let ids = c.ids();
                        for id in ids {
                            if let Some((i, _)) = c.start(id, &Cluster::cmd(v)) {
                                *p = Some((v, i, c.now + 380_000));
                                break;
                            }
                        }
                    }
                }
            }
            c.run_for(10);
        }
        let pick = NodeId(c.rng.range(1, 6));
        if c.rng.chance(200) {
            c.disconnect(pick);
        }
        let pick = NodeId(c.rng.range(1, 6));
        if c.rng.chance(500) {
            if !c.is_up(pick) {
                c.restart(pick);
            }
            c.connect(pick);
        }
        let pick = NodeId(c.rng.range(1, 6));
        if c.rng.chance(200) {
            c.crash(pick);
        }
    }
    c.run_for(1_000);
    c.net.config = NetConfig::reliable();
    for id in c.ids() {
        if !c.is_up(id) {
            c.restart(id);
        }
        c.connect(id);
    }
    c.run_for(1_000);
    let v = c.rng.range(1 << 40, 1 << 41);
    let last = c.one(&Cluster::cmd(v), 5, true);
    let mut in_log = BTreeSet::new();
    for i in 1..=last.0 {
        let d = c.wait(LogIndex(i), 5, None).expect("applied");
        in_log.insert(d);
    }
    for v in &seen {
        assert!(
            in_log.contains(&digest(&Cluster::cmd(*v))),
            "didn't find committed value {v} in the log"
        );
    }
    assert!(seen.len() > 20, "clients saw only {} commits", seen.len());
    println!(
        "{name}: {} values seen committed, final log {last}",
        seen.len()
    );
}

#[test]
fn churn_reliable_every_seen_commit_survives() {
    churn("churn_reliable_every_seen_commit_survives", 25, false);
}

#[test]
fn churn_unreliable_every_seen_commit_survives() {
    churn("churn_unreliable_every_seen_commit_survives", 26, true);
}
