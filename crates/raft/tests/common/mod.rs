//! Helpers shared by the single-node Raft tests: build nodes, drain Ready batches, forge
//! messages.
#![allow(dead_code)]

use shardkv_raft::{Body, Config, Message, RawNode, Ready, Restored, Role};
use shardkv_types::{Entry, HardState, LogIndex, NodeId, Term};

pub fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

pub fn node_with(id: u64, n: u64, restored: Restored) -> RawNode {
    RawNode::new(Config::new(NodeId(id), ids(n)), restored, id)
}

pub fn node(id: u64, n: u64) -> RawNode {
    node_with(id, n, Restored::default())
}

/// Takes one Ready, acknowledges it, and returns a copy of it.
pub fn drain(n: &mut RawNode) -> Ready {
    let rd = n.ready();
    let out = Ready {
        soft_state: rd.soft_state,
        hard_state: rd.hard_state,
        snapshot: rd.snapshot.clone(),
        entries: rd.entries.clone(),
        messages: rd.messages.clone(),
        committed_entries: rd.committed_entries.clone(),
        read_states: rd.read_states.clone(),
    };
    n.advance(rd);
    out
}

pub fn msg(from: u64, to: u64, term: u64, body: Body) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

pub fn entries(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry::normal(Term(t), LogIndex(i as u64 + 1), vec![i as u8]))
        .collect()
}

pub fn vote_req(from: u64, term: u64, force: bool, last: (u64, u64)) -> Message {
    let body = Body::RequestVote {
        pre_vote: false,
        force,
        last_log_index: LogIndex(last.0),
        last_log_term: Term(last.1),
    };
    msg(from, 1, term, body)
}

pub fn restored_at(term: u64, log_terms: &[u64]) -> Restored {
    Restored {
        hard_state: HardState {
            term: Term(term),
            ..Default::default()
        },
        entries: entries(log_terms),
        snapshot: None,
    }
}

/// Elects `n` (node 1) by handing it granted pre-votes and votes in its next term.
pub fn elect(n: &mut RawNode) {
    while n.role() == Role::Follower {
        n.tick();
    }
    drain(n);
    let term = n.term().0 + 1;
    n.step(msg(
        2,
        1,
        term,
        Body::RequestVoteResponse {
            pre_vote: true,
            granted: true,
        },
    ));
    drain(n);
    n.step(msg(
        2,
        1,
        term,
        Body::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        },
    ));
    assert!(n.is_leader());
}

pub fn leader_of_three() -> RawNode {
    let mut n = node(1, 3);
    elect(&mut n);
    n
}

pub fn ack(n: &mut RawNode, from: u64, index: u64) {
    let term = n.term().0;
    n.step(msg(
        from,
        1,
        term,
        Body::AppendEntriesResponse {
            success: true,
            index: LogIndex(index),
            hint: None,
            seq: 0,
        },
    ));
}

pub fn entry(term: u64, index: u64) -> Entry {
    Entry::normal(Term(term), LogIndex(index), vec![index as u8])
}

/// An AppendEntries from `from` to `to` in `term` after (prev index, prev term).
pub fn append(
    from: u64,
    to: u64,
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
) -> Message {
    let body = Body::AppendEntries {
        prev_log_index: LogIndex(prev.0),
        prev_log_term: Term(prev.1),
        entries,
        leader_commit: LogIndex(commit),
        seq: 0,
    };
    msg(from, to, term, body)
}
