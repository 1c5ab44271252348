//! A node whose disk is full goes on without persisting (issue 10, item 7): a Ready
//! advanced without its entries and hard state hands them out again, the messages that
//! promise something about the disk are marked, and a leader that cannot write hands off
//! only to a quorum of others that wrote what it could not.

mod common;

use common::*;
use shardkv_raft::{Body, RawNode, Ready};
use shardkv_types::{LogIndex, NodeId};

/// Advances `n`'s next Ready as a host whose disk is full does: without its entries and
/// hard state. Returns a copy of what was handed out.
fn advance_unwritten(n: &mut RawNode) -> Ready {
    let mut rd = n.ready();
    assert!(rd.snapshot.is_none());
    let out = Ready {
        soft_state: rd.soft_state,
        hard_state: rd.hard_state,
        snapshot: None,
        entries: rd.entries.clone(),
        messages: rd.messages.clone(),
        committed_entries: rd.committed_entries.clone(),
        read_states: rd.read_states.clone(),
    };
    rd.entries.clear();
    rd.hard_state = None;
    n.advance(rd);
    out
}

/// A follower (node 1 of 3) that heard from leader 2 in term 1.
fn follower() -> RawNode {
    let mut n = node(1, 3);
    n.step(append(2, 1, 1, (0, 0), vec![], 0));
    drain(&mut n);
    n
}

#[test]
fn entries_and_hard_state_not_written_are_handed_out_again() {
    let mut n = follower();
    n.step(append(2, 1, 1, (0, 0), vec![entry(1, 1), entry(1, 2)], 0));
    let first = advance_unwritten(&mut n);
    assert_eq!(first.entries.len(), 2);
    let ack = first
        .messages
        .iter()
        .find(|m| m.to == NodeId(2))
        .expect("an answer");
    assert!(
        matches!(ack.body, Body::AppendEntriesResponse { success: true, .. }),
        "{ack:?}"
    );
    assert!(
        ack.waits_for_persist(),
        "an acknowledgement waits for the disk"
    );
    assert_eq!(n.log().stable(), LogIndex(0), "nothing marked persisted");

    // A heartbeat meanwhile: its answer promises nothing about the disk.
    n.step(msg(
        2,
        1,
        1,
        Body::Heartbeat {
            commit: LogIndex(0),
            read_seq: 7,
        },
    ));
    let again = drain(&mut n);
    assert_eq!(again.entries, first.entries, "the same entries, again");
    assert_eq!(
        again.hard_state, first.hard_state,
        "the same hard state, again"
    );
    let hb = again
        .messages
        .iter()
        .find(|m| matches!(m.body, Body::HeartbeatResponse { read_seq: 7 }))
        .expect("the heartbeat is answered");
    assert!(!hb.waits_for_persist());
    assert_eq!(n.log().stable(), LogIndex(2), "persisted at last");
}

#[test]
fn votes_wait_for_the_disk_and_pre_votes_do_not() {
    let mut n = node(1, 3);
    n.step(vote_req(2, 1, false, (0, 0)));
    let rd = advance_unwritten(&mut n);
    let grant = rd
        .messages
        .iter()
        .find(|m| m.to == NodeId(2))
        .expect("an answer");
    assert!(matches!(
        grant.body,
        Body::RequestVoteResponse { granted: true, .. }
    ));
    assert!(grant.waits_for_persist());
    let pre = msg(
        1,
        2,
        1,
        Body::RequestVoteResponse {
            pre_vote: true,
            granted: true,
        },
    );
    assert!(!pre.waits_for_persist());
}

#[test]
fn a_leader_that_cannot_write_hands_off_only_to_a_quorum_that_wrote_what_it_could_not() {
    let mut n = leader_of_three();
    drain(&mut n);
    ack(&mut n, 2, 1);
    ack(&mut n, 3, 1);
    drain(&mut n);
    assert_eq!(n.log().committed(), LogIndex(1));

    // All written: a no-op gives the followers something to prove they can write.
    assert_eq!(n.hand_off_unwritten(), None);
    assert_eq!(n.log().last_index(), LogIndex(2), "a no-op appended");
    assert_eq!(n.hand_off_unwritten(), None, "one no-op, not one per call");
    let rd = advance_unwritten(&mut n);
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(
        n.log().stable(),
        LogIndex(1),
        "the leader could not write it"
    );

    ack(&mut n, 2, 2);
    assert_eq!(
        n.log().committed(),
        LogIndex(1),
        "the leader's own unwritten copy counts for no quorum"
    );
    assert_eq!(
        n.hand_off_unwritten(),
        None,
        "one follower is no quorum of others"
    );
    ack(&mut n, 3, 2);
    assert_eq!(
        n.log().committed(),
        LogIndex(2),
        "the followers' quorum commits it"
    );
    let to = n.hand_off_unwritten().expect("both others wrote it");
    let rd = advance_unwritten(&mut n);
    assert!(
        rd.messages
            .iter()
            .any(|m| m.to == to && m.body == Body::TimeoutNow),
        "the transfer starts at once: {:?}",
        rd.messages
    );
}

#[test]
#[should_panic(expected = "beyond the persisted log")]
fn no_snapshot_covers_entries_not_written() {
    let mut n = follower();
    n.step(append(2, 1, 1, (0, 0), vec![entry(1, 1), entry(1, 2)], 2));
    let rd = advance_unwritten(&mut n);
    assert_eq!(
        rd.committed_entries.len(),
        2,
        "committed entries are applied"
    );
    n.compact(LogIndex(2), vec![]);
}
