//! Regression tests from the review of the core: inputs a faulty, misrouted or delayed peer
//! can send must not crash a node or corrupt its log, and liveness must survive lost
//! messages.

mod common;

use common::*;
use shardkv_raft::{Body, Config, RawNode};
use shardkv_types::{LogIndex, NodeId, SnapshotMeta, Term};

/// A message addressed to another node is dropped, not a panic.
#[test]
fn misrouted_message_is_dropped() {
    let mut n = node(1, 3);
    n.step(msg(2, 7, 1, Body::TimeoutNow));
    assert!(drain(&mut n).messages.is_empty());
}

/// A leader asking to overwrite a committed entry is refused, not a panic.
#[test]
fn append_conflicting_at_committed_index_is_refused() {
    let mut n = RawNode::new(Config::new(NodeId(2), ids(3)), restored_at(2, &[1, 2]), 2);
    n.step(append(1, 2, 2, (2, 2), vec![], 2));
    drain(&mut n);
    assert_eq!(n.status().commit, LogIndex(2));
    n.step(append(3, 2, 3, (1, 1), vec![entry(3, 2)], 0));
    let rd = drain(&mut n);
    assert!(matches!(
        rd.messages[0].body,
        Body::AppendEntriesResponse { success: false, .. }
    ));
    assert_eq!(
        n.log().term(LogIndex(2)),
        Some(Term(2)),
        "the committed entry stays"
    );
}

/// Entries that are not contiguous after prev (or whose terms go backwards or exceed the
/// message's term) are dropped whole.
#[test]
fn malformed_append_is_dropped() {
    let mut n = RawNode::new(Config::new(NodeId(2), ids(3)), restored_at(2, &[1]), 2);
    n.step(append(1, 2, 2, (1, 1), vec![entry(2, 5)], 0));
    n.step(append(1, 2, 2, (1, 1), vec![entry(9, 2)], 0));
    assert!(drain(&mut n).messages.is_empty());
    assert_eq!(n.log().last_index(), LogIndex(1));
}

/// Stepping between `ready` and `advance` is a contract violation caught at once, since it
/// could acknowledge an entry storage never received.
#[test]
#[should_panic(expected = "step between ready and advance")]
fn step_between_ready_and_advance_is_refused() {
    let mut n = RawNode::new(Config::new(NodeId(2), ids(3)), restored_at(2, &[1, 1]), 2);
    n.step(append(1, 2, 2, (2, 1), vec![entry(2, 3)], 0));
    let _rd = n.ready();
    n.step(append(3, 2, 3, (2, 1), vec![entry(3, 3)], 0));
}

/// Thesis §9.6: a node that heard from a leader within the election timeout refuses
/// pre-votes even with CheckQuorum off.
#[test]
fn prevote_refused_inside_leader_contact_without_check_quorum() {
    let mut cfg = Config::new(NodeId(2), ids(3));
    cfg.check_quorum = false;
    let mut n = RawNode::new(cfg, restored_at(2, &[1]), 2);
    n.step(msg(
        1,
        2,
        2,
        Body::Heartbeat {
            commit: LogIndex(0),
            read_seq: 0,
        },
    ));
    drain(&mut n);
    let body = Body::RequestVote {
        pre_vote: true,
        force: false,
        last_log_index: LogIndex(1),
        last_log_term: Term(1),
    };
    n.step(msg(3, 2, 3, body));
    assert!(drain(&mut n).messages.is_empty());
}

/// Figure 2: an append from an older term is answered with the current term even with
/// PreVote and CheckQuorum off.
#[test]
fn lower_term_append_answered_without_prevote_or_check_quorum() {
    let mut cfg = Config::new(NodeId(2), ids(3));
    cfg.check_quorum = false;
    cfg.pre_vote = false;
    let mut n = RawNode::new(cfg, restored_at(5, &[]), 2);
    n.step(append(1, 2, 4, (0, 0), vec![], 0));
    let rd = drain(&mut n);
    assert_eq!(rd.messages.len(), 1);
    assert_eq!(rd.messages[0].term, Term(5));
}

fn chunk(index: u64, offset: u64, len: usize, done: bool) -> shardkv_raft::Message {
    let meta = SnapshotMeta::at(LogIndex(index), Term(2));
    msg(
        1,
        2,
        2,
        Body::InstallSnapshot {
            meta,
            offset,
            data: vec![7u8; len],
            done,
        },
    )
}

/// A delayed duplicate of an older snapshot, or of the first chunk, does not throw away the
/// transfer in progress.
#[test]
fn stale_chunks_keep_the_transfer_in_progress() {
    let mut n = RawNode::new(Config::new(NodeId(2), ids(3)), restored_at(2, &[]), 2);
    n.step(chunk(100, 0, 10, true));
    drain(&mut n);
    n.step(chunk(200, 0, 10, false));
    n.step(chunk(200, 10, 10, false));
    drain(&mut n);
    n.step(chunk(100, 0, 10, true));
    n.step(chunk(200, 0, 10, false));
    drain(&mut n);
    n.step(chunk(200, 20, 10, true));
    let rd = drain(&mut n);
    assert!(
        rd.snapshot
            .is_some_and(|s| s.meta.index == LogIndex(200) && s.data.len() == 30)
    );
}

/// A lost TimeoutNow is sent again on the next heartbeat answer, so the transfer completes.
#[test]
fn lost_timeout_now_is_resent() {
    let mut n = leader_of_three();
    drain(&mut n);
    ack(&mut n, 2, 1);
    ack(&mut n, 3, 1);
    drain(&mut n);
    n.transfer_leader(NodeId(2)).unwrap();
    let rd = drain(&mut n);
    assert!(
        rd.messages.iter().any(|m| m.body == Body::TimeoutNow),
        "sent, then lost"
    );
    n.step(msg(2, 1, 1, Body::HeartbeatResponse { read_seq: 0 }));
    let rd = drain(&mut n);
    assert!(
        rd.messages
            .iter()
            .any(|m| m.body == Body::TimeoutNow && m.to == NodeId(2))
    );
}

/// A member that declines transfers ignores a leader's TimeoutNow; once it no longer
/// declines, the same message makes it campaign at once.
#[test]
fn a_member_declining_transfers_ignores_timeout_now() {
    let mut n = node(2, 3);
    n.set_declines_transfers(true);
    n.step(msg(1, 2, 1, Body::TimeoutNow));
    assert!(drain(&mut n).messages.is_empty(), "no campaign");
    assert_eq!(n.term(), Term(1));
    n.set_declines_transfers(false);
    n.step(msg(1, 2, 1, Body::TimeoutNow));
    let rd = drain(&mut n);
    assert!(n.term() > Term(1), "campaigned");
    assert!(!rd.messages.is_empty(), "vote requests sent");
}
