//! Membership changes through a replica: proposed like a command, in force at once, and
//! reported to the shell on every member once applied.

mod common;

use common::{deliver, elect_first, pump};
use shardkv_rsm::testing::Counters;
use shardkv_types::{ConfChange, Gid, Membership, NodeId};

#[test]
fn a_change_proposed_on_the_leader_is_reported_applied_on_every_member() {
    let mut g = common::group(3, Counters::owning(Gid(1), &[0].into()));
    elect_first(&mut g);
    let index = g[0]
        .propose_conf_change(ConfChange::remove(NodeId(3)))
        .expect("the leader accepts it");
    let want = Membership::new(&[NodeId(1), NodeId(2)], &[]).unwrap();
    assert_eq!(g[0].conf(), want, "in force on the leader at once");
    // Node 3 may never hear that its removal committed: wait for the two that remain.
    for _ in 0..1000 {
        if g.iter().take(2).all(|r| r.applied() >= index) {
            break;
        }
        g[0].tick();
        let msgs = pump(&mut g);
        deliver(&mut g, msgs);
    }
    for r in g.iter_mut().take(2) {
        let applied = r.take_applied_conf_changes();
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].0, index);
        assert_eq!(applied[0].1.change, ConfChange::remove(NodeId(3)));
        assert_eq!(applied[0].1.next, want);
        assert!(r.take_applied_conf_changes().is_empty(), "taken once");
    }
    // A second change is refused only while the first is uncommitted: now it is accepted.
    assert!(
        g[0].propose_conf_change(ConfChange::add_learner(NodeId(4), "127.0.0.1:1"))
            .is_ok()
    );
}
