//! Raft scenarios for membership changes (one server at a time): a learner added under load
//! and message loss catches up by snapshot and log and is promoted; a leader removes itself;
//! a follower is removed while partitioned away; a change is interrupted by the leader's
//! crash. The checker runs throughout (one leader per term across memberships, log
//! matching, state machine safety, every node's membership the one its log implies).

use shardkv_raft::{ProposeError, Role};
use shardkv_sim::{Cluster, ClusterConfig, NetConfig};
use shardkv_types::{ConfChange, ConfError, Membership, NodeId};

fn cfg(name: &str, n: usize, seed: u64) -> ClusterConfig {
    let mut cfg = ClusterConfig::scenario(n, "raft_membership", name, seed);
    cfg.snapshot_every = Some(10);
    cfg.raft = |r| {
        r.snapshot_chunk_bytes_max = 512;
        r.promote_lag_max = 20;
    };
    cfg
}

fn conf(voters: &[u64], learners: &[u64]) -> Membership {
    let ids = |v: &[u64]| v.iter().map(|&i| NodeId(i)).collect::<Vec<_>>();
    Membership::new(&ids(voters), &ids(learners)).unwrap()
}

/// Proposes `count` distinct commands and waits until `expected` nodes applied the last.
fn load(c: &mut Cluster, count: usize, expected: usize) {
    for _ in 0..count {
        let v = c.rng.next_u64();
        c.one(&Cluster::cmd(v), expected, true);
    }
}

/// Every live node in `ids` uses `want`.
fn assert_confs(c: &Cluster, ids: &[u64], want: Membership) {
    for &id in ids {
        assert_eq!(c.conf_of(NodeId(id)), want, "n{id}");
    }
}

#[test]
fn a_learner_added_under_load_and_loss_catches_up_by_snapshot_and_is_promoted() {
    let mut cf = cfg(
        "a_learner_added_under_load_and_loss_catches_up_by_snapshot_and_is_promoted",
        3,
        1,
    );
    cf.net = NetConfig::unreliable();
    let mut c = Cluster::new(cf);
    load(&mut c, 40, 2); // the log is compacted: the learner needs a snapshot
    let gid = c.gid();
    c.join(gid, NodeId(4));
    c.change_membership(&ConfChange::add_learner(NodeId(4), ""))
        .unwrap();
    // Load continues while it catches up.
    load(&mut c, 20, 2);
    let caught_up = c.run_until(20_000, |c| {
        let last = c.checker().max_applied();
        c.app(NodeId(4)).raft.log().applied() >= last
    });
    assert!(caught_up, "the learner caught up");
    let learner = &c.app(NodeId(4)).raft;
    assert!(
        learner.log().snapshot_meta().index.0 > 0,
        "it got a snapshot"
    );
    assert_eq!(learner.role(), Role::Follower, "a learner never campaigns");
    // Promote it (retried while it is behind) and keep going with four voters.
    c.change_membership(&ConfChange::promote(NodeId(4)))
        .unwrap();
    c.run_for(1_000);
    assert_confs(&c, &[1, 2, 3, 4], conf(&[1, 2, 3, 4], &[]));
    load(&mut c, 10, 4);
    // Four voters: two of the old ones down leaves no quorum; the new one makes one.
    let l = c.check_one_leader();
    let others: Vec<NodeId> = [1, 2, 3]
        .into_iter()
        .map(NodeId)
        .filter(|&n| n != l)
        .collect();
    c.disconnect(others[0]);
    load(&mut c, 5, 3);
    // Everyone restarts from disk (snapshots included): the membership comes back from
    // the snapshot files and the log, not from the nodes' configured voters.
    c.connect_all();
    for id in 1..=4 {
        c.restart(NodeId(id));
    }
    c.check_one_leader();
    assert_confs(&c, &[1, 2, 3, 4], conf(&[1, 2, 3, 4], &[]));
    assert!(c.app(NodeId(4)).raft.log().snapshot_meta().index.0 > 0);
    load(&mut c, 5, 4);
}

#[test]
fn the_leader_removes_itself_and_the_rest_go_on() {
    let mut c = Cluster::new(cfg("the_leader_removes_itself_and_the_rest_go_on", 3, 2));
    load(&mut c, 5, 3);
    let old = c.check_one_leader();
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&n| n != old.0).collect();
    c.change_membership(&ConfChange::remove(old)).unwrap();
    let moved = c.run_until(5_000, |c| c.leader().is_some_and(|l| l != old));
    assert!(moved, "a remaining member leads");
    let removed_at = c.now;
    load(&mut c, 10, 2);
    c.run_for(5_000);
    assert_confs(&c, &rest, conf(&rest, &[]));
    assert!(!c.app(old).raft.is_voter());
    assert!(
        !c.elections
            .iter()
            .any(|&(t, n, _)| n == old && t > removed_at),
        "the removed leader never won again"
    );
    // It cannot be removed twice.
    assert_eq!(
        c.change_membership(&ConfChange::remove(old)),
        Err(ProposeError::ConfChange(ConfError::NotAMember(old)))
    );
}

#[test]
fn a_partitioned_follower_is_removed_and_cannot_disturb_the_group() {
    let mut c = Cluster::new(cfg(
        "a_partitioned_follower_is_removed_and_cannot_disturb_the_group",
        5,
        3,
    ));
    load(&mut c, 5, 5);
    let l = c.check_one_leader();
    let f = NodeId(l.0 % 5 + 1);
    c.disconnect(f);
    c.change_membership(&ConfChange::remove(f)).unwrap();
    load(&mut c, 10, 4);
    let rest: Vec<u64> = (1..=5).filter(|&n| n != f.0).collect();
    assert_confs(&c, &rest, conf(&rest, &[]));
    assert_eq!(
        c.conf_of(f),
        conf(&[1, 2, 3, 4, 5], &[]),
        "it never heard of its removal"
    );
    // Back on the network it campaigns, but no member answers it: the leader stays.
    let leader = c.check_one_leader();
    let wins = c.elections.len();
    c.connect(f);
    c.run_for(10_000);
    assert_eq!(c.check_one_leader(), leader, "no disruption");
    assert_eq!(c.elections.len(), wins);
    // Four voters, quorum three: one more member down is fine.
    let other = NodeId(rest.iter().copied().find(|&n| n != leader.0).unwrap());
    c.disconnect(other);
    load(&mut c, 5, 3);
}

#[test]
fn a_change_interrupted_by_the_leaders_crash_settles_one_way_everywhere() {
    for seed in 4..10 {
        let name = "a_change_interrupted_by_the_leaders_crash_settles_one_way_everywhere";
        let mut c = Cluster::new(cfg(name, 3, seed));
        load(&mut c, 5, 3);
        let gid = c.gid();
        c.join(gid, NodeId(4));
        let l = c.check_one_leader();
        let app = c.nodes.get_mut(&l).unwrap().live().unwrap();
        app.raft
            .propose_conf_change(ConfChange::add_learner(NodeId(4), ""))
            .unwrap();
        // The change may or may not leave before the crash.
        let crash_after_ms = c.rng.range(0, 15);
        c.run_for(crash_after_ms);
        c.crash(l);
        let new_leader = c.run_until(10_000, |c| c.leader().is_some_and(|n| n != l));
        assert!(new_leader, "seed {seed}: a new leader");
        // Whichever way it went, a retry settles it: done now, or done already.
        match c.change_membership(&ConfChange::add_learner(NodeId(4), "")) {
            Ok(_) | Err(ProposeError::ConfChange(ConfError::AlreadyMember(_))) => {}
            Err(e) => panic!("seed {seed}: {e}"),
        }
        c.restart(l);
        load(&mut c, 5, 4);
        c.run_for(2_000);
        assert_confs(&c, &[1, 2, 3, 4], conf(&[1, 2, 3], &[4]));
    }
}
