//! World scenarios: several groups of different kinds (a controller group, two KV groups, a
//! bare Raft group whose members poll the controller) in one seeded world over one faulty
//! network. Each test runs in virtual time under a fixed seed (override with SHARDKV_SEED)
//! and names the behaviour it checks.

use shardkv_raft::{Body, Message};
use shardkv_sim::{
    ClusterConfig, Envelope, GroupKind, GroupSpec, NetConfig, SIM_CLUSTER_ID, Workload, World,
    four_groups, join,
};
use shardkv_types::{Gid, LogIndex, NodeId, Rng, Term};

fn world(groups: Vec<GroupSpec>, name: &str, default_seed: u64) -> World {
    let seed = shardkv_sim::seed_or(default_seed);
    let mut cfg = ClusterConfig::world(groups, seed);
    cfg.replay =
        format!("SHARDKV_SEED={seed} cargo test -p shardkv-sim --test world -- {name} --exact");
    World::new(cfg)
}

fn term_of(w: &World, id: NodeId) -> Term {
    w.sim.state(id).expect("up").0
}

/// A forged append from group 1's leader to a member of group 2.
fn forged_append(from: NodeId, to: NodeId, cluster: u64, gid: Gid) -> Envelope {
    Envelope {
        cluster,
        gid,
        msg: Message {
            from,
            to,
            term: Term(1_000_000),
            body: Body::AppendEntries {
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                entries: Vec::new(),
                leader_commit: LogIndex(0),
                seq: 0,
            },
        },
    }
}

/// Goal: identity — a Raft message stamped with another group (or another cluster) is
/// dropped and counted at the receiver, never stepped. Method: two bare Raft groups elect
/// leaders; a forged append with a huge term, stamped as group 1's, is sent to a member of
/// group 2, then one stamped with a foreign cluster id; both are counted and the target's
/// term does not move. A control message stamped with the target's own group does move it.
#[test]
fn misaddressed_raft_message_is_dropped_and_counted_never_stepped() {
    let groups = vec![
        GroupSpec::new(Gid(1), GroupKind::Raft, 1..=3),
        GroupSpec::new(Gid(2), GroupKind::Raft, 4..=6),
    ];
    let mut w = world(
        groups,
        "misaddressed_raft_message_is_dropped_and_counted_never_stepped",
        3,
    );
    w.sim.run_for(3_000);
    let (a, b) = (NodeId(1), NodeId(4));
    let before = term_of(&w, b);
    assert_eq!(
        w.sim.stats.misdirected, 0,
        "no message crossed groups by itself"
    );

    w.sim
        .send_envelope(forged_append(a, b, SIM_CLUSTER_ID, Gid(1)));
    w.sim
        .send_envelope(forged_append(a, b, SIM_CLUSTER_ID ^ 1, Gid(2)));
    w.sim.run_for(100);
    assert_eq!(
        w.sim.stats.misdirected, 2,
        "both forged messages are counted"
    );
    assert_eq!(
        term_of(&w, b),
        before,
        "{b}'s term moved on a message of another group"
    );

    // Control: the same message in the target's own group and cluster is stepped.
    w.sim
        .send_envelope(forged_append(NodeId(5), b, SIM_CLUSTER_ID, Gid(2)));
    w.sim.run_for(100);
    assert_eq!(
        term_of(&w, b),
        Term(1_000_000),
        "the well-addressed append was stepped"
    );
    assert_eq!(w.sim.stats.misdirected, 2);
}

/// Goal: a node can ask another group over the simulated network (the outbound hook) and
/// partitions apply to that traffic. Method: a bare Raft group whose members poll the
/// controller; a Join makes config 1 and every poller learns it; then the Raft group is cut
/// off from the controller group, a second Join makes config 2 and no poller learns it;
/// after healing every poller does.
#[test]
fn config_pollers_in_another_group_learn_configs_only_while_they_reach_the_controller() {
    let mut raft = GroupSpec::new(Gid(200), GroupKind::Raft, 31..=33);
    raft.polls = Some(Gid(1));
    let groups = vec![GroupSpec::new(Gid(1), GroupKind::Ctrl, 1..=3), raft];
    let name = "config_pollers_in_another_group_learn_configs_only_while_they_reach_the_controller";
    let mut w = world(groups, name, 5);
    w.add_ctrl_clerks(1);
    let latest = |w: &World| -> Vec<u64> {
        (31..=33)
            .map(|i| {
                let app = w.sim.nodes[&NodeId(i)].app.as_ref().expect("started");
                let p = app.poller.as_ref().expect("a poller");
                p.latest.as_ref().map_or(0, |c| c.num.0)
            })
            .collect()
    };
    let changed = |w: &mut World, gid: u64| {
        let ctrl = &mut w.clients.ctrl[0];
        ctrl.queue(&mut w.sim, 0, [join(&[(gid, &["a"])])]);
        assert!(w.run_until_idle(10_000), "the join completed");
    };
    changed(&mut w, 7);
    w.sim.run_for(2_000);
    assert_eq!(latest(&w), vec![1, 1, 1], "every poller learned config 1");

    let ctrl: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let polling: Vec<NodeId> = (31..=33).map(NodeId).collect();
    w.sim.partition(&[&ctrl, &polling]);
    let outbound = w.sim.stats.outbound;
    changed(&mut w, 8);
    w.sim.run_for(3_000);
    assert_eq!(
        latest(&w),
        vec![1, 1, 1],
        "no poller reached the controller across the cut"
    );
    assert!(w.sim.stats.outbound > outbound, "the pollers kept trying");

    w.sim.connect_all();
    w.sim.run_for(3_000);
    assert_eq!(
        latest(&w),
        vec![2, 2, 2],
        "after healing every poller learned config 2"
    );
    w.check(10_000);
}

/// Goal: one world of four groups of three kinds stays safe and live under faults that cut
/// across groups. Method: a controller group, two KV groups and a polling bare Raft group
/// on a lossy network; KV clerks (random keys), controller clerks (random Join / Leave /
/// Move / Query) and a Raft proposer run concurrently for 20 rounds of 500 ms, each round
/// partitioning all twelve nodes at random into two sides (cutting groups and the
/// inter-group traffic alike) and crashing or restarting a node; then faults stop and
/// every check of `World::check` runs: per-group Raft checkers clean, each KV history
/// linearizable, controller replicas byte-identical and consistent with their history, the
/// Raft group converged, config polls never going back.
#[test]
fn four_groups_of_three_kinds_under_cross_group_partitions_crashes_and_loss() {
    let name = "four_groups_of_three_kinds_under_cross_group_partitions_crashes_and_loss";
    let mut w = world(four_groups(), name, 11);
    w.sim.net.config = NetConfig::unreliable();
    for k in &mut w.clients.kv {
        k.ops_per_clerk_max = Some(300);
    }
    w.start_kv_clerks(2, Workload::RandomKeys { keys: 3 });
    w.add_ctrl_clerks(2);
    let mut rng = Rng::new(w.sim.cfg.seed ^ 0xfa17);
    let ids = w.sim.ids();
    let mut split_groups = 0;
    let mut down: Option<NodeId> = None;
    for _ in 0..20 {
        let (a, b): (Vec<NodeId>, Vec<NodeId>) = ids.iter().partition(|_| rng.chance(500));
        let split = w
            .sim
            .gids()
            .into_iter()
            .filter(|g| {
                let m = w.sim.members(*g);
                m.iter().any(|x| a.contains(x)) && m.iter().any(|x| b.contains(x))
            })
            .count();
        // Half the rounds partitioned, half healed, so groups make progress in between.
        if rng.chance(500) {
            split_groups += split;
            w.sim.partition(&[&a, &b]);
        } else {
            w.sim.connect_all();
        }
        // One node down at a time: the one crashed last round comes back.
        if let Some(d) = down.take() {
            w.sim.restart(d);
        }
        if rng.chance(700) {
            let victim = ids[rng.index(ids.len())];
            w.sim.crash(victim);
            down = Some(victim);
        }
        w.run_for(500, true, &mut rng);
    }
    w.sim.net.config = NetConfig::reliable();
    w.sim.connect_all();
    for id in ids {
        if !w.sim.is_up(id) {
            w.sim.restart(id);
        }
    }
    assert!(
        w.finish(30_000),
        "every clerk finished after the faults stopped"
    );
    w.check(20_000);
    let kv_ops: usize = w.clients.kv.iter().map(|k| k.history.len()).sum();
    let ctrl_ops: usize = w.clients.ctrl.iter().map(|c| c.completed.len()).sum();
    assert!(split_groups > 5, "partitions cut groups: {split_groups}");
    assert!(
        kv_ops > 60 && ctrl_ops > 20,
        "kv {kv_ops} ops, ctrl {ctrl_ops} ops"
    );
    assert!(w.raft_proposals > 10, "raft proposals {}", w.raft_proposals);
    assert!(
        w.sim.stats.outbound > 50,
        "polls sent {}",
        w.sim.stats.outbound
    );
    println!(
        "world: {kv_ops} kv ops, {ctrl_ops} ctrl ops, {} raft proposals, {} polls, {split_groups} groups split, {} ms",
        w.raft_proposals,
        w.sim.stats.outbound,
        w.sim.now / 1000
    );
}

/// Goal: the same seed gives the same world run, event for event. Method: run a short
/// four-group world with clerks on a lossy network twice and compare trace digests.
#[test]
fn same_seed_same_world_trace() {
    let run = || {
        let mut w = world(four_groups(), "same_seed_same_world_trace", 21);
        w.sim.net.config = NetConfig::unreliable();
        w.start_kv_clerks(2, Workload::RandomKeys { keys: 3 });
        w.add_ctrl_clerks(1);
        let mut rng = Rng::new(1);
        w.run_for(2_000, true, &mut rng);
        (w.sim.trace, w.sim.stats.clone(), w.sim.now)
    };
    assert_eq!(run(), run());
}
