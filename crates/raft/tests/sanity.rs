//! Impossible fields from a forged or broken peer (issue 10, item 1): a term from far in the
//! future, acknowledgements of entries never sent, rejections of indexes never sent, commit
//! indexes past the log, indexes at the edge of `u64`. Each is refused, counted as an
//! [`Anomaly`], and leaves the node able to elect and commit. Also the leader's side of a
//! follower whose log was lost (item 2).

mod common;

use common::*;
use shardkv_raft::{Anomaly, Body, Config, ConflictHint, RawNode, Restored, TERM_JUMP_MAX};
use shardkv_types::{HardState, LogIndex, NodeId, SnapshotMeta, Term};

fn heartbeat(from: u64, to: u64, term: u64, commit: u64) -> shardkv_raft::Message {
    let body = Body::Heartbeat {
        commit: LogIndex(commit),
        read_seq: 0,
    };
    msg(from, to, term, body)
}

/// A rejection by a follower whose log ends before `rejected` (at `conflict_index - 1`),
/// answering the append numbered `seq`.
fn reject(
    from: u64,
    term: u64,
    rejected: u64,
    conflict_index: u64,
    seq: u64,
) -> shardkv_raft::Message {
    let body = Body::AppendEntriesResponse {
        success: false,
        index: LogIndex(rejected),
        hint: Some(ConflictHint {
            conflict_term: None,
            conflict_index: LogIndex(conflict_index),
        }),
        seq,
    };
    msg(from, 1, term, body)
}

/// The `seq` of each append in `rd` addressed to `to`.
fn seqs_to(rd: &shardkv_raft::Ready, to: u64) -> Vec<u64> {
    rd.messages
        .iter()
        .filter(|m| m.to == NodeId(to))
        .filter_map(|m| match &m.body {
            Body::AppendEntries { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// The appends in `rd` addressed to `to`, as (prev_log_index, number of entries).
fn appends_to(rd: &shardkv_raft::Ready, to: u64) -> Vec<(LogIndex, usize)> {
    rd.messages
        .iter()
        .filter(|m| m.to == NodeId(to))
        .filter_map(|m| match &m.body {
            Body::AppendEntries {
                prev_log_index,
                entries,
                ..
            } => Some((*prev_log_index, entries.len())),
            _ => None,
        })
        .collect()
}

/// A heartbeat in term u64::MAX used to become the local term; the next election wrapped
/// `Term::next` to 0 and nothing could ever win again. It is refused now.
#[test]
fn heartbeat_with_max_term_does_not_wedge_elections() {
    let mut n = node(1, 3);
    n.step(heartbeat(2, 1, u64::MAX, 0));
    assert_eq!(n.term(), Term(0), "the term did not move");
    assert_eq!(n.leader(), None);
    assert_eq!(n.anomaly_count(Anomaly::TermTooFarAhead), 1);
    elect(&mut n);
    assert_eq!(n.term(), Term(1));
}

/// The bound is exactly `TERM_JUMP_MAX` terms ahead: one more is refused.
#[test]
fn term_bound_is_exact() {
    let mut n = node(2, 3);
    n.step(heartbeat(1, 2, TERM_JUMP_MAX + 1, 0));
    assert_eq!(n.term(), Term(0));
    n.step(heartbeat(1, 2, TERM_JUMP_MAX, 0));
    assert_eq!(n.term(), Term(TERM_JUMP_MAX));
    assert_eq!(n.leader(), Some(NodeId(1)));
}

/// A forged acknowledgement of index 10^9 used to count towards the quorum: the leader
/// committed an entry stored only on its own disk.
#[test]
fn forged_ack_beyond_what_was_sent_commits_nothing() {
    let mut n = leader_of_three();
    drain(&mut n);
    ack(&mut n, 2, 1);
    ack(&mut n, 3, 1);
    drain(&mut n);
    let index = n.propose(b"x".to_vec()).unwrap();
    drain(&mut n);
    ack(&mut n, 2, 1_000_000_000);
    drain(&mut n);
    assert!(n.status().commit < index, "committed on a forged ack");
    assert_eq!(n.anomaly_count(Anomaly::AckBeyondSent), 1);
    // The honest acknowledgement still commits.
    ack(&mut n, 2, index.0);
    drain(&mut n);
    assert_eq!(n.status().commit, index);
}

/// A rejection of an index never sent (here u64::MAX, which overflowed `LogIndex::next`) or
/// with a hint past the rejected index is ignored.
#[test]
fn impossible_rejections_are_ignored() {
    let mut n = leader_of_three();
    drain(&mut n);
    let term = n.term().0;
    n.step(reject(2, term, u64::MAX, 1, 1));
    n.step(reject(2, term, 0, 5, 1));
    assert_eq!(n.anomaly_count(Anomaly::ImpossibleReject), 2);
    ack(&mut n, 2, 1);
    ack(&mut n, 3, 1);
    drain(&mut n);
    assert_eq!(n.status().commit, LogIndex(1));
}

/// A heartbeat's commit index beyond the follower's log is not trusted: the follower's
/// own tail may not be the leader's.
#[test]
fn heartbeat_commit_beyond_the_log_is_ignored() {
    let mut n = RawNode::new(Config::new(NodeId(2), ids(3)), restored_at(1, &[1, 1]), 2);
    n.step(heartbeat(1, 2, 1, 5));
    let rd = drain(&mut n);
    assert_eq!(n.status().commit, LogIndex(0));
    assert_eq!(n.anomaly_count(Anomaly::CommitBeyondLog), 1);
    assert!(
        rd.messages
            .iter()
            .any(|m| matches!(m.body, Body::HeartbeatResponse { .. })),
        "the heartbeat itself is still answered"
    );
}

/// An append whose indexes run past u64::MAX is dropped, not a panic.
#[test]
fn append_overflowing_the_index_is_dropped() {
    let mut n = node(2, 3);
    n.step(append(
        1,
        2,
        1,
        (u64::MAX - 1, 1),
        vec![entry(1, u64::MAX), entry(1, 0)],
        0,
    ));
    assert!(drain(&mut n).messages.is_empty());
    assert_eq!(n.anomaly_count(Anomaly::MalformedAppend), 1);
}

/// A snapshot at index u64::MAX would make the follower's next `last_index + 1` overflow:
/// dropped, as is one whose term is newer than its sender's.
#[test]
fn snapshot_at_the_edge_of_the_index_space_is_dropped() {
    let mut n = node(2, 3);
    for (index, term) in [(u64::MAX, 1), (5, 9)] {
        let meta = SnapshotMeta::at(LogIndex(index), Term(term));
        let body = Body::InstallSnapshot {
            meta,
            offset: 0,
            data: vec![1],
            done: true,
        };
        n.step(msg(1, 2, 1, body));
    }
    let rd = drain(&mut n);
    assert!(rd.snapshot.is_none());
    assert_eq!(n.log().last_index(), LogIndex(0));
    assert_eq!(n.anomaly_count(Anomaly::MalformedSnapshot), 2);
    n.step(append(1, 2, 1, (0, 0), vec![entry(1, 1)], 0));
    assert_eq!(
        n.log().last_index(),
        LogIndex(1),
        "still takes honest appends"
    );
}

/// A node restored at term u64::MAX (written before the bound existed) cannot campaign: it
/// says so instead of wrapping to term 0.
#[test]
fn exhausted_term_does_not_wrap() {
    let restored = Restored {
        hard_state: HardState {
            term: Term(u64::MAX),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut n = node_with(1, 3, restored);
    for _ in 0..200 {
        n.tick();
        drain(&mut n);
    }
    assert_eq!(n.term(), Term(u64::MAX));
    assert!(n.anomaly_count(Anomaly::TermExhausted) >= 1);
}

/// A follower that acknowledged entries and then rejects the append after them lost its
/// log (its data directory was wiped): the leader moves `match_index` back and sends the
/// whole log again. It used to keep probing just past the old match forever.
#[test]
fn follower_that_lost_its_log_gets_it_resent() {
    let mut n = leader_of_three();
    drain(&mut n);
    ack(&mut n, 2, 1);
    ack(&mut n, 3, 1);
    drain(&mut n);
    for _ in 0..3 {
        n.propose(b"x".to_vec()).unwrap();
    }
    drain(&mut n);
    ack(&mut n, 2, 4);
    ack(&mut n, 3, 4);
    drain(&mut n);
    assert_eq!(n.status().commit, LogIndex(4));
    n.propose(b"y".to_vec()).unwrap();
    let rd = drain(&mut n);
    assert_eq!(appends_to(&rd, 2), vec![(LogIndex(4), 1)]);
    let seq = seqs_to(&rd, 2)[0];
    // Node 2 comes back empty and rejects prev 4: its log ends at 0.
    let term = n.term().0;
    n.step(reject(2, term, 4, 1, seq));
    let rd = drain(&mut n);
    assert_eq!(n.anomaly_count(Anomaly::FollowerLogLost), 1);
    assert_eq!(
        appends_to(&rd, 2),
        vec![(LogIndex(0), 5)],
        "the whole log again"
    );
    assert_eq!(n.status().commit, LogIndex(4), "the commit index stays");
}

/// A rejection reordered behind later acknowledgements is still ignored: `match_index`
/// only moves back on the answer to an append still outstanding.
#[test]
fn reordered_rejection_does_not_reset_the_match() {
    let mut n = leader_of_three();
    drain(&mut n);
    ack(&mut n, 2, 1);
    drain(&mut n);
    n.propose(b"x".to_vec()).unwrap();
    drain(&mut n);
    ack(&mut n, 2, 2);
    drain(&mut n);
    let term = n.term().0;
    n.step(reject(2, term, 1, 1, 1));
    let rd = drain(&mut n);
    assert!(appends_to(&rd, 2).is_empty());
    assert_eq!(n.anomaly_count(Anomaly::FollowerLogLost), 0);
}

/// Appends A0 (after 1) and A1 (after 2) reach follower 2 in reverse order, and so do its
/// answers: the leader sees the acknowledgement of 2 and then the rejection of A1 (the
/// follower's log ended at 1 when it answered A1). That rejection predates the
/// acknowledgement; it used to be taken as a lost log (`match_index` back to 0).
#[test]
fn reordered_pipeline_is_not_a_lost_log() {
    let mut n = leader_of_three();
    drain(&mut n);
    ack(&mut n, 2, 1);
    ack(&mut n, 3, 1);
    drain(&mut n);
    n.propose(b"x".to_vec()).unwrap();
    let rd = drain(&mut n);
    assert_eq!(appends_to(&rd, 2), vec![(LogIndex(1), 1)]);
    n.propose(b"y".to_vec()).unwrap();
    let rd = drain(&mut n);
    assert_eq!(appends_to(&rd, 2), vec![(LogIndex(2), 1)]);
    let a1 = seqs_to(&rd, 2)[0];
    let term = n.term().0;
    ack(&mut n, 2, 2);
    n.step(reject(2, term, 2, 2, a1));
    let rd = drain(&mut n);
    assert_eq!(n.anomaly_count(Anomaly::FollowerLogLost), 0);
    assert_eq!(
        appends_to(&rd, 2),
        vec![(LogIndex(2), 1)],
        "A1 again, after 2"
    );
}

/// A duplicated rejection of a new leader's first probe arrives while the catch-up appends
/// are in flight, one of them after the same index: it answers the probe, not that append,
/// and used to be taken as a lost log (the whole log sent again).
#[test]
fn duplicated_rejection_is_not_a_lost_log() {
    let mut cfg = Config::new(NodeId(1), ids(3));
    cfg.append_entries_max = 5;
    let mut n = RawNode::new(cfg, restored_at(1, &[1; 10]), 1);
    elect(&mut n);
    let rd = drain(&mut n);
    let probe = appends_to(&rd, 2);
    assert_eq!(probe.first().map(|a| a.0), Some(LogIndex(10)));
    let probe_seq = seqs_to(&rd, 2)[0];
    let term = n.term().0;
    let dup = reject(2, term, 10, 1, probe_seq);
    n.step(dup.clone());
    let rd = drain(&mut n);
    assert_eq!(appends_to(&rd, 2), vec![(LogIndex(0), 5)]);
    ack(&mut n, 2, 5);
    let mut sent = appends_to(&drain(&mut n), 2);
    sent.extend(appends_to(&drain(&mut n), 2));
    assert!(sent.iter().any(|a| a.0 == LogIndex(10)), "{sent:?}");
    n.step(dup);
    let rd = drain(&mut n);
    assert_eq!(n.anomaly_count(Anomaly::FollowerLogLost), 0);
    assert!(appends_to(&rd, 2).is_empty(), "nothing resent");
}

/// A follower with a snapshot at 3 and commit 5 gets an append after 1 that would replace
/// committed entry 4: refused, logged, unanswered. Computing the rejection hint for an
/// index inside the snapshot used to panic ("index must be held").
#[test]
fn append_contradicting_the_snapshot_is_refused() {
    let mut restored = restored_at(1, &[1, 1, 1, 1, 1]);
    restored.hard_state = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(5),
    };
    let mut n = RawNode::new(Config::new(NodeId(2), ids(3)), restored, 2);
    drain(&mut n);
    n.compact(LogIndex(3), vec![]);
    let forged = vec![entry(1, 2), entry(1, 3), entry(2, 4)];
    n.step(append(1, 2, 2, (1, 1), forged, 0));
    let rd = drain(&mut n);
    assert!(rd.messages.is_empty(), "{:?}", rd.messages);
    assert_eq!(n.anomaly_count(Anomaly::MalformedAppend), 1);
    assert_eq!(
        n.log().term(LogIndex(4)),
        Some(Term(1)),
        "the committed entry stays"
    );
}
