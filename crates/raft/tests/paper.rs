//! One test per claim of the Raft paper (and thesis) that a single node's inputs and
//! outputs can show: feed exact events, assert the exact messages and Ready contents.

use shardkv_raft::{Body, Config, ConflictHint, RawNode, Ready, Role};
use shardkv_types::{HardState, LogIndex, NodeId, Term};

mod common;

use common::*;

/// §9.6: an election timeout starts a pre-vote for term+1 without changing the term.
#[test]
fn election_timeout_sends_prevote_without_bumping_term() {
    let mut n = node(1, 3);
    let mut ticks = 0;
    while n.role() == Role::Follower {
        n.tick();
        ticks += 1;
    }
    assert!(
        (50..100).contains(&ticks),
        "timeout {ticks} outside [election_ticks, 2x)"
    );
    assert_eq!(n.role(), Role::PreCandidate);
    assert_eq!(n.term(), Term(0));
    let rd = drain(&mut n);
    let want = |to| {
        let body = Body::RequestVote {
            pre_vote: true,
            force: false,
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
        };
        msg(1, to, 1, body)
    };
    assert_eq!(rd.messages, vec![want(2), want(3)]);
    assert_eq!(rd.hard_state, None, "a pre-vote persists nothing");
}

/// §5.2: vote requests leave in the same Ready that persists the new term and self-vote
/// (the contract persists before sending).
#[test]
fn candidate_persists_term_and_vote_in_the_ready_that_sends_requests() {
    let mut n = node(1, 3);
    while n.role() == Role::Follower {
        n.tick();
    }
    drain(&mut n);
    n.step(msg(
        2,
        1,
        1,
        Body::RequestVoteResponse {
            pre_vote: true,
            granted: true,
        },
    ));
    let rd = drain(&mut n);
    assert_eq!(n.role(), Role::Candidate);
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: Term(1),
            vote: Some(NodeId(1)),
            commit: LogIndex(0)
        })
    );
    assert_eq!(rd.messages.len(), 2);
    assert!(rd.messages.iter().all(|m| matches!(
        m.body,
        Body::RequestVote {
            pre_vote: false,
            ..
        }
    ) && m.term == Term(1)));
}

/// §5.4.1: a vote is refused to a candidate whose log is less up to date.
#[test]
fn vote_refused_to_candidate_with_stale_log() {
    let mut n = RawNode::new(Config::new(NodeId(1), ids(3)), restored_at(2, &[1, 2]), 1);
    n.step(vote_req(2, 3, false, (5, 1)));
    let rd = drain(&mut n);
    assert_eq!(
        rd.messages,
        vec![msg(
            1,
            2,
            3,
            Body::RequestVoteResponse {
                pre_vote: false,
                granted: false
            }
        )]
    );
    assert_eq!(
        n.term(),
        Term(3),
        "the higher term is adopted even when the vote is refused"
    );
}

/// §5.2: at most one vote per term, persisted with the reply.
#[test]
fn one_vote_per_term() {
    let mut n = node(1, 3);
    n.step(vote_req(2, 1, false, (0, 0)));
    let rd = drain(&mut n);
    assert_eq!(rd.hard_state.unwrap().vote, Some(NodeId(2)));
    assert_eq!(
        rd.messages,
        vec![msg(
            1,
            2,
            1,
            Body::RequestVoteResponse {
                pre_vote: false,
                granted: true
            }
        )]
    );
    n.step(vote_req(3, 1, false, (0, 0)));
    let rd = drain(&mut n);
    assert_eq!(
        rd.messages,
        vec![msg(
            1,
            3,
            1,
            Body::RequestVoteResponse {
                pre_vote: false,
                granted: false
            }
        )]
    );
}

/// §5.4.2, and "send as soon as a command is proposed": a new leader appends a no-op at
/// once; proposals go out in the very next Ready, batched, not at the next heartbeat.
#[test]
fn leader_sends_noop_then_proposals_without_waiting_for_a_tick() {
    let mut n = leader_of_three();
    let rd = drain(&mut n);
    assert_eq!(rd.entries.len(), 1, "the no-op");
    assert!(
        rd.messages
            .iter()
            .all(|m| matches!(&m.body, Body::AppendEntries { entries, .. } if entries.len() == 1))
    );
    ack(&mut n, 2, 1);
    ack(&mut n, 3, 1);
    drain(&mut n);
    let i1 = n.propose(b"a".to_vec()).unwrap();
    let i2 = n.propose(b"b".to_vec()).unwrap();
    assert_eq!((i1, i2), (LogIndex(2), LogIndex(3)));
    let rd = drain(&mut n);
    assert_eq!(
        rd.messages.len(),
        2,
        "one append per follower carries both proposals"
    );
    for m in &rd.messages {
        let Body::AppendEntries {
            prev_log_index,
            entries,
            leader_commit,
            ..
        } = &m.body
        else {
            panic!("{m:?}")
        };
        assert_eq!(
            (*prev_log_index, entries.len(), *leader_commit),
            (LogIndex(1), 2, LogIndex(1))
        );
    }
}

/// §5.4.2: entries of an earlier term do not commit by counting replicas; they commit with
/// the first entry of the current term.
#[test]
fn only_current_term_entries_commit_by_counting() {
    let mut n = RawNode::new(Config::new(NodeId(1), ids(3)), restored_at(1, &[1, 1]), 1);
    elect(&mut n);
    assert_eq!(n.term(), Term(2));
    drain(&mut n);
    ack(&mut n, 2, 2);
    drain(&mut n);
    assert_eq!(
        n.status().commit,
        LogIndex(0),
        "old-term entries are not committed by count"
    );
    ack(&mut n, 2, 3);
    let rd = drain(&mut n);
    assert_eq!(n.status().commit, LogIndex(3));
    assert_eq!(
        rd.committed_entries
            .iter()
            .map(|e| e.index.0)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

/// §5.3 fast backup: a follower whose entry at prev_log_index has another term answers with
/// that term and the first index it holds of it; a short log answers with its length.
#[test]
fn conflicting_follower_answers_with_term_and_its_first_index() {
    let mut n = RawNode::new(
        Config::new(NodeId(2), ids(3)),
        restored_at(3, &[1, 2, 2, 2]),
        2,
    );
    let append = |prev: u64| {
        let body = Body::AppendEntries {
            prev_log_index: LogIndex(prev),
            prev_log_term: Term(3),
            entries: vec![],
            leader_commit: LogIndex(0),
            seq: 0,
        };
        msg(1, 2, 3, body)
    };
    n.step(append(4));
    let rd = drain(&mut n);
    let hint = ConflictHint {
        conflict_term: Some(Term(2)),
        conflict_index: LogIndex(2),
    };
    let want = Body::AppendEntriesResponse {
        success: false,
        index: LogIndex(4),
        hint: Some(hint),
        seq: 0,
    };
    assert_eq!(rd.messages, vec![msg(2, 1, 3, want)]);
    n.step(append(9));
    let rd = drain(&mut n);
    let hint = ConflictHint {
        conflict_term: None,
        conflict_index: LogIndex(5),
    };
    assert_eq!(
        rd.messages[0].body,
        Body::AppendEntriesResponse {
            success: false,
            index: LogIndex(9),
            hint: Some(hint),
            seq: 0,
        }
    );
}

/// Heartbeats carry min(commit, follower's match): a follower never commits past what it
/// is known to share with the leader.
#[test]
fn heartbeat_commit_is_capped_by_follower_match() {
    let mut n = leader_of_three();
    drain(&mut n);
    ack(&mut n, 2, 1);
    drain(&mut n);
    assert_eq!(n.status().commit, LogIndex(1));
    for _ in 0..10 {
        n.tick();
    }
    let rd = drain(&mut n);
    let hb: Vec<_> = rd
        .messages
        .iter()
        .filter(|m| matches!(m.body, Body::Heartbeat { .. }))
        .collect();
    assert_eq!(hb.len(), 2);
    for m in hb {
        let want = if m.to == NodeId(2) {
            LogIndex(1)
        } else {
            LogIndex(0)
        };
        assert_eq!(
            m.body,
            Body::Heartbeat {
                commit: want,
                read_seq: 0
            }
        );
    }
}

/// With CheckQuorum, an append from an older term is answered with the current term so the
/// stale leader steps down.
#[test]
fn stale_leader_is_told_the_newer_term() {
    let mut n = RawNode::new(Config::new(NodeId(2), ids(3)), restored_at(5, &[]), 2);
    n.step(msg(
        1,
        2,
        4,
        Body::Heartbeat {
            commit: LogIndex(0),
            read_seq: 0,
        },
    ));
    let rd = drain(&mut n);
    let want = Body::AppendEntriesResponse {
        success: false,
        index: LogIndex(0),
        hint: None,
        seq: 0,
    };
    assert_eq!(rd.messages, vec![msg(2, 1, 5, want)]);
}

/// CheckQuorum lease: a follower that heard from its leader within the election timeout
/// ignores a vote request for a higher term; a transfer's forced request is honoured.
#[test]
fn follower_in_lease_ignores_vote_requests_unless_forced() {
    let mut n = node(1, 3);
    n.step(msg(
        2,
        1,
        1,
        Body::Heartbeat {
            commit: LogIndex(0),
            read_seq: 0,
        },
    ));
    drain(&mut n);
    n.step(vote_req(3, 2, false, (9, 9)));
    let rd = drain(&mut n);
    assert!(rd.messages.is_empty());
    assert_eq!(n.term(), Term(1));
    n.step(vote_req(3, 2, true, (9, 9)));
    let rd = drain(&mut n);
    assert_eq!(
        rd.messages,
        vec![msg(
            1,
            3,
            2,
            Body::RequestVoteResponse {
                pre_vote: false,
                granted: true
            }
        )]
    );
}

/// §6.4 ReadIndex: a read is confirmed only after the leader committed in its term and a
/// quorum acknowledged a heartbeat round started after the read arrived.
#[test]
fn read_index_needs_own_term_commit_and_a_fresh_quorum_round() {
    let mut n = leader_of_three();
    drain(&mut n);
    n.read_index(42).unwrap();
    let rd = drain(&mut n);
    assert!(rd.read_states.is_empty());
    let rounds = |rd: &Ready| -> Vec<u64> {
        rd.messages
            .iter()
            .filter_map(|m| match m.body {
                Body::Heartbeat { read_seq, .. } if read_seq > 0 => Some(read_seq),
                _ => None,
            })
            .collect()
    };
    assert!(
        rounds(&rd).is_empty(),
        "no round before the read has an index"
    );
    ack(&mut n, 2, 1);
    let rd = drain(&mut n);
    assert_eq!(rounds(&rd), vec![1, 1]);
    assert!(rd.read_states.is_empty());
    n.step(msg(3, 1, 1, Body::HeartbeatResponse { read_seq: 1 }));
    let rd = drain(&mut n);
    assert_eq!(rd.read_states.len(), 1);
    assert_eq!(
        (rd.read_states[0].ctx, rd.read_states[0].index),
        (42, Some(LogIndex(1)))
    );
}
