//! Raft scenarios: log replication, commit rules, fast backup and message economy. Virtual
//! time throughout; message counts are requests (replies not counted), as the labs count.

use shardkv_sim::{Cluster, ClusterConfig, NetConfig};
use shardkv_types::{LogIndex, NodeId};

fn cluster(n: usize, name: &str, default_seed: u64) -> Cluster {
    Cluster::new(ClusterConfig::scenario(
        n,
        "raft_agreement",
        name,
        default_seed,
    ))
}

fn others(c: &Cluster, not: &[NodeId]) -> Vec<NodeId> {
    c.ids().into_iter().filter(|i| !not.contains(i)).collect()
}

/// Goal: three commands commit at indexes 1..3 (after the leader's no-op, the first
/// command's index is the one `one` reports) and nothing is applied before it is proposed.
#[test]
fn basic_agreement_commits_in_order() {
    let mut c = cluster(3, "basic_agreement_commits_in_order", 11);
    c.check_one_leader();
    let mut last = LogIndex(0);
    for v in 1..=3u64 {
        let next = last.next().next();
        assert_eq!(c.n_committed(next).0, 0, "some have committed before start");
        let i = c.one(&Cluster::cmd(v * 100), 3, false);
        assert!(i > last, "index went back");
        last = i;
    }
}

/// Goal: with one follower disconnected the other two commit; after it rejoins it catches up.
#[test]
fn agreement_with_one_follower_disconnected() {
    let mut c = cluster(3, "agreement_with_one_follower_disconnected", 12);
    c.one(&Cluster::cmd(101), 3, false);
    let leader = c.check_one_leader();
    let f = others(&c, &[leader])[0];
    c.disconnect(f);
    for v in 102..=105 {
        c.one(&Cluster::cmd(v), 2, false);
        c.run_for(1000);
    }
    c.connect(f);
    c.one(&Cluster::cmd(106), 3, true);
    c.run_for(1000);
    c.one(&Cluster::cmd(107), 3, true);
}

/// Goal: without a majority nothing commits: the index is not committed 2 s later; after
/// healing, a new command commits on all five.
#[test]
fn no_commit_without_majority() {
    let mut c = cluster(5, "no_commit_without_majority", 13);
    c.one(&Cluster::cmd(10), 5, false);
    let leader = c.check_one_leader();
    let fs = others(&c, &[leader]);
    for f in &fs[..3] {
        c.disconnect(*f);
    }
    let (index, _) = c.start(leader, &Cluster::cmd(20)).expect("leader accepts");
    c.run_for(2_000);
    assert_eq!(
        c.n_committed(index).0,
        0,
        "{index} committed but no majority"
    );
    for f in &fs[..3] {
        c.connect(*f);
    }
    c.one(&Cluster::cmd(1000), 5, true);
}

/// Goal: a leader that loses both followers accepts a proposal but never commits it.
#[test]
fn follower_failures_block_commit_but_not_acceptance() {
    let mut c = cluster(3, "follower_failures_block_commit_but_not_acceptance", 14);
    c.one(&Cluster::cmd(101), 3, false);
    let leader = c.check_one_leader();
    let fs = others(&c, &[leader]);
    c.disconnect(fs[0]);
    c.one(&Cluster::cmd(102), 2, false);
    c.run_for(1_000);
    c.one(&Cluster::cmd(103), 2, false);
    c.disconnect(fs[1]);
    let leader2 = c.leader().expect("still leader within its lease");
    let (index, _) = c.start(leader2, &Cluster::cmd(104)).expect("accepted");
    c.run_for(2_000);
    assert_eq!(
        c.n_committed(index).0,
        0,
        "{index} committed but no majority"
    );
}

/// Goal: many proposals in one batch all commit.
#[test]
fn concurrent_proposals_all_commit() {
    let mut c = cluster(3, "concurrent_proposals_all_commit", 15);
    let leader = c.check_one_leader();
    let mut idx = Vec::new();
    for v in 0..5u64 {
        idx.push(c.start(leader, &Cluster::cmd(100 + v)).expect("leader").0);
    }
    for (v, i) in idx.iter().enumerate() {
        assert_eq!(
            c.wait(*i, 3, None),
            Some(shardkv_sim::digest(&Cluster::cmd(100 + v as u64)))
        );
    }
}

/// Goal: a deposed leader's divergent entries are overwritten when it rejoins.
#[test]
fn rejoined_leader_divergent_entries_overwritten() {
    let mut c = cluster(3, "rejoined_leader_divergent_entries_overwritten", 16);
    c.one(&Cluster::cmd(101), 3, true);
    let l1 = c.check_one_leader();
    c.disconnect(l1);
    for v in [102, 103, 104] {
        c.start(l1, &Cluster::cmd(v));
    }
    c.one(&Cluster::cmd(103), 2, true);
    let l2 = c.check_one_leader();
    c.disconnect(l2);
    c.connect(l1);
    c.one(&Cluster::cmd(104), 2, true);
    c.connect(l2);
    c.one(&Cluster::cmd(105), 3, true);
}

/// Goal: fast backup past 50 conflicting uncommitted entries in each direction on 5 nodes;
/// every `one` commits within its 10 s budget.
#[test]
fn backup_past_fifty_conflicting_entries() {
    let mut c = cluster(5, "backup_past_fifty_conflicting_entries", 17);
    let mut v = 0u64;
    let mut next = || {
        v += 1;
        Cluster::cmd(v)
    };
    c.one(&next(), 5, true);
    let l1 = c.check_one_leader();
    let rest = others(&c, &[l1]);
    // Leader and one follower in a minority, 50 uncommitted entries there.
    c.disconnect(rest[1]);
    c.disconnect(rest[2]);
    c.disconnect(rest[3]);
    for _ in 0..50 {
        c.start(l1, &next());
    }
    c.run_for(500);
    c.disconnect(l1);
    c.disconnect(rest[0]);
    c.connect(rest[1]);
    c.connect(rest[2]);
    c.connect(rest[3]);
    for _ in 0..50 {
        c.one(&next(), 3, true);
    }
    let l2 = c.check_one_leader();
    let other = [rest[1], rest[2], rest[3]]
        .into_iter()
        .find(|&x| x != l2)
        .unwrap();
    c.disconnect(other);
    for _ in 0..50 {
        c.start(l2, &next());
    }
    c.run_for(500);
    for i in c.ids() {
        c.disconnect(i);
    }
    c.connect(l1);
    c.connect(rest[0]);
    c.connect(other);
    for _ in 0..50 {
        c.one(&next(), 3, true);
    }
    for i in c.ids() {
        c.connect(i);
    }
    c.one(&next(), 5, true);
}

/// Goal (economy): ≤ 30 requests to elect the first leader on 3 nodes; ≤ 42 requests to
/// commit 12 proposals; ≤ 60 requests per idle second.
#[test]
fn message_counts_for_election_commits_and_idle() {
    let mut c = cluster(3, "message_counts_for_election_commits_and_idle", 18);
    let leader = c.check_one_leader();
    let elect = c.stats.requests;
    assert!(
        (1..=30).contains(&elect),
        "too many or few requests ({elect}) to elect initial leader"
    );
    let mut commit = None;
    for _try in 0..5 {
        let before = c.stats.requests;
        let term = c.state(leader).unwrap().0;
        let Some((first, _)) = c.start(leader, &Cluster::cmd(1)) else {
            continue;
        };
        let mut last = first;
        for v in 2..=12u64 {
            last = c.start(leader, &Cluster::cmd(v)).expect("leader").0;
        }
        let done = c.run_until(2_000, |c| c.n_committed(last).0 == 3);
        if done && c.state(leader).unwrap().0 == term {
            commit = Some(c.stats.requests - before);
            break;
        }
    }
    let commit = commit.expect("term changed too often");
    assert!(commit <= 42, "too many requests ({commit}) for 12 entries");
    c.run_for(1_000);
    let before = c.stats.requests;
    c.run_for(1_000);
    let idle = c.stats.requests - before;
    assert!(
        idle <= 60,
        "too many requests ({idle}) for 1 second of idleness"
    );
    println!(
        "economy: elect {elect} requests, 12 commits {commit} requests, idle second {idle} requests"
    );
}

/// Goal (economy): ten 5,000-byte commands on 3 nodes cost ≤ 200,000 bytes on the wire:
/// each command goes to each follower about once.
#[test]
fn bytes_for_ten_large_commands() {
    let mut c = cluster(3, "bytes_for_ten_large_commands", 19);
    c.one(&Cluster::cmd(99), 3, false);
    let before = c.stats.bytes();
    for v in 0..10u64 {
        let mut cmd = vec![b'x'; 5000];
        cmd[..8].copy_from_slice(&v.to_le_bytes());
        c.one(&cmd, 3, false);
    }
    let used = c.stats.bytes() - before;
    assert!(used <= 200_000, "too many bytes: {used}");
    println!("economy: ten 5000-byte commands used {used} bytes");
}

/// Goal: agreement survives an unreliable network with many concurrent proposals.
#[test]
fn unreliable_agreement() {
    let mut cfg = ClusterConfig::scenario(5, "raft_agreement", "unreliable_agreement", 20);
    cfg.net = NetConfig::unreliable();
    let mut c = Cluster::new(cfg);
    for iters in 1..50u64 {
        for j in 0..4u64 {
            let ids = c.ids();
            for id in ids {
                if c.start(id, &Cluster::cmd(100 * iters + j)).is_some() {
                    break;
                }
            }
        }
        c.one(&Cluster::cmd(iters), 1, true);
    }
    c.net.config = NetConfig::reliable();
    c.one(&Cluster::cmd(100), 5, true);
}
