//! How a replica answers a write it proposed when leadership moves before the outcome is
//! known: "may have applied", never "surely not applied".

mod common;

use common::{deliver, elect_first, pump};
use shardkv_rsm::Error;
use shardkv_rsm::testing::{CounterCommand, CounterQuery, Counters};
use shardkv_types::{ClientId, Gid, Seq};

#[test]
fn write_proposed_then_leadership_lost_is_reported_as_maybe_applied() {
    let mut g = common::group(3, Counters::owning(Gid(1), &[0].into()));
    elect_first(&mut g);
    // Propose; the append reaches the followers but every answer is lost, so the leader
    // cannot know the write committed.
    g[0].propose(
        7,
        ClientId(1),
        Seq(1),
        false,
        CounterCommand::Add { slot: 0, n: 1 },
    );
    let msgs = pump(&mut g);
    deliver(&mut g, msgs);
    let _lost_answers = pump(&mut g);
    // CheckQuorum: with no answers the leader steps down within an election timeout.
    for _ in 0..200 {
        g[0].tick();
        pump(&mut g);
        if !g[0].raft().is_leader() {
            break;
        }
    }
    assert!(!g[0].raft().is_leader());
    let replies = g[0].take_replies();
    assert_eq!(replies.len(), 1);
    assert!(
        matches!(replies[0], (7, Err(Error::LostLeadership { .. }))),
        "a proposed write must be 'may have applied', got {:?}",
        replies[0]
    );
    // Reads, which never change state, still fail definitely.
    g[0].read(8, CounterQuery::Get { slot: 0 });
    assert!(matches!(
        g[0].take_replies()[0],
        (8, Err(Error::NotLeader { .. }))
    ));
}
