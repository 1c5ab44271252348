//! Raft scenarios: leader election, PreVote and CheckQuorum. Each test runs in virtual
//! time under a fixed seed (override with SHARDKV_SEED) and names the behaviour it checks.

use shardkv_sim::{Cluster, ClusterConfig};
use shardkv_types::{NodeId, Term};

fn cluster(n: usize, name: &str, default_seed: u64) -> Cluster {
    Cluster::new(ClusterConfig::scenario(
        n,
        "raft_election",
        name,
        default_seed,
    ))
}

/// Goal: one leader within 5 s, agreed term ≥ 1, and no term change over 2 s of quiet.
#[test]
fn initial_election_elects_one_leader_and_term_stays_put() {
    let mut c = cluster(
        3,
        "initial_election_elects_one_leader_and_term_stays_put",
        1,
    );
    c.check_one_leader();
    let elected_ms = c.elections[0].0 / 1000;
    assert!(elected_ms <= 5_000, "first leader after {elected_ms} ms");
    c.run_for(50);
    let t1 = c.check_terms();
    assert!(t1 >= Term(1), "term is {t1}, but should be at least 1");
    c.run_for(2_000);
    let t2 = c.check_terms();
    assert_eq!(t1, t2, "term changed with no failures");
    c.check_one_leader();
    println!("initial election: leader after {elected_ms} ms (virtual), term {t1}");
}

/// Goal: an isolated leader is replaced; it rejoins as a follower; no leader without a
/// majority; a leader again once a majority returns.
#[test]
fn re_election_after_leader_isolation_and_quorum_loss() {
    let mut c = cluster(3, "re_election_after_leader_isolation_and_quorum_loss", 2);
    let l1 = c.check_one_leader();
    c.disconnect(l1);
    let l2 = c.check_one_leader();
    assert_ne!(l1, l2);
    c.connect(l1);
    let l3 = c.check_one_leader();
    assert_eq!(l3, l2, "the old leader must rejoin as a follower");
    c.run_for(1_000);
    assert_eq!(
        c.state(l1),
        Some((c.state(l2).unwrap().0, false)),
        "old leader is a follower of the new term"
    );
    // No quorum: no leader.
    let other = c.ids().into_iter().find(|&i| i != l2 && i != l1).unwrap();
    c.disconnect(l2);
    c.disconnect(other);
    c.run_for(2_000);
    c.check_no_leader();
    c.connect(other);
    c.check_one_leader();
    c.connect(l2);
    c.check_one_leader();
}

/// Goal: 7 nodes, 9 rounds of isolating 3 random nodes; a leader among the rest each round.
#[test]
fn many_elections_with_three_of_seven_isolated() {
    let mut c = cluster(7, "many_elections_with_three_of_seven_isolated", 3);
    c.check_one_leader();
    for _ in 0..9 {
        let picks: Vec<NodeId> = (0..3).map(|_| NodeId(c.rng.range(1, 8))).collect();
        for &p in &picks {
            c.disconnect(p);
        }
        c.check_one_leader();
        for &p in &picks {
            c.connect(p);
        }
    }
    c.check_one_leader();
}

/// Goal (PreVote): a node that was isolated long enough to time out many times rejoins
/// without deposing the healthy leader or bumping the term.
#[test]
fn prevote_rejoining_node_does_not_depose_healthy_leader() {
    let mut c = cluster(
        3,
        "prevote_rejoining_node_does_not_depose_healthy_leader",
        4,
    );
    let leader = c.check_one_leader();
    let term = c.check_terms();
    let follower = c.ids().into_iter().find(|&i| i != leader).unwrap();
    c.disconnect(follower);
    c.run_for(10_000);
    assert_eq!(
        c.state(follower).unwrap().0,
        term,
        "pre-vote keeps an isolated node's term"
    );
    c.connect(follower);
    c.run_for(3_000);
    assert_eq!(c.leader(), Some(leader), "the healthy leader stays");
    assert_eq!(c.check_terms(), term, "no term was bumped");
}

/// Goal (CheckQuorum): a leader cut off from its majority steps down within one election
/// timeout, so clients stop talking to it.
#[test]
fn check_quorum_isolated_leader_steps_down_within_one_election_timeout() {
    let mut c = cluster(
        5,
        "check_quorum_isolated_leader_steps_down_within_one_election_timeout",
        5,
    );
    let leader = c.check_one_leader();
    let election_timeout_ms = 50 * c.cfg.tick_us / 1000;
    c.disconnect(leader);
    let cut_at = c.now;
    let stepped_down = c.run_until(election_timeout_ms, |c| {
        c.state(leader).is_some_and(|(_, l)| !l)
    });
    assert!(
        stepped_down,
        "leader still leads {} ms after losing its quorum",
        (c.now - cut_at) / 1000
    );
    println!(
        "isolated leader stepped down after {} ms (election timeout {election_timeout_ms} ms)",
        (c.now - cut_at) / 1000
    );
}

/// Goal (PreVote + CheckQuorum): a one-way partition where a follower cannot hear the leader
/// makes it campaign, but the others, hearing the leader, refuse; the leader stays.
#[test]
fn one_way_partition_follower_cannot_disrupt_leader() {
    let mut c = cluster(3, "one_way_partition_follower_cannot_disrupt_leader", 6);
    let leader = c.check_one_leader();
    let term = c.check_terms();
    let f = c.ids().into_iter().find(|&i| i != leader).unwrap();
    c.cut_one_way(leader, f);
    c.run_for(5_000);
    assert_eq!(c.leader(), Some(leader));
    assert_eq!(c.state(leader).unwrap().0, term);
}

/// Goal: the same seed gives the same run, event for event.
#[test]
fn same_seed_same_trace() {
    let run = || {
        let mut c = cluster(5, "same_seed_same_trace", 77);
        c.net.config = shardkv_sim::NetConfig::unreliable();
        c.check_one_leader();
        for i in 0..20 {
            let l = c.leader().unwrap_or(NodeId(1));
            c.start(l, &Cluster::cmd(i));
            c.run_for(37);
        }
        (c.trace, c.stats.clone(), c.now)
    };
    assert_eq!(run(), run());
}
