//! Single-server membership changes (Raft thesis ch. 4): one test per rule of the crate docs'
//! "Membership" section. Small clusters run in memory here; message loss, crashes and
//! partitions at scale are the simulator's (crates/sim/tests/raft_membership.rs).

use shardkv_raft::{Body, Config, ProposeError, RawNode, Restored, Role, Snapshot};
use shardkv_types::{
    ConfChange, ConfEntry, ConfError, Entry, HardState, LogIndex, Membership, NodeId, SnapshotMeta,
    Term,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod common;

use common::{append, msg};

fn ids(v: &[u64]) -> Vec<NodeId> {
    v.iter().map(|&i| NodeId(i)).collect()
}

fn conf(voters: &[u64], learners: &[u64]) -> Membership {
    Membership::new(&ids(voters), &ids(learners)).unwrap()
}

fn conf_entry(term: Term, index: LogIndex, change: ConfChange, next: Membership) -> Entry {
    Entry::conf_change(term, index, &ConfEntry { change, next })
}

/// A few nodes wired together in memory: every message is delivered unless its receiver is
/// down; snapshots are handed back as received.
struct Net {
    nodes: BTreeMap<u64, RawNode>,
    down: BTreeSet<u64>,
    /// Per node, the indexes it applied.
    applied: BTreeMap<u64, Vec<LogIndex>>,
}

impl Net {
    fn new(voters: &[u64]) -> Net {
        let mut net = Net {
            nodes: BTreeMap::new(),
            down: BTreeSet::new(),
            applied: BTreeMap::new(),
        };
        for &id in voters {
            net.start(id, voters, &[]);
        }
        net
    }

    /// Starts node `id` with an empty log and the bootstrap membership given.
    fn start(&mut self, id: u64, voters: &[u64], learners: &[u64]) {
        let mut cfg = Config::new(NodeId(id), ids(voters));
        cfg.learners = ids(learners);
        cfg.promote_lag_max = 5;
        self.nodes
            .insert(id, RawNode::new(cfg, Restored::default(), id));
    }

    fn node(&mut self, id: u64) -> &mut RawNode {
        self.nodes.get_mut(&id).expect("node")
    }

    /// Delivers messages until none are left (bounded).
    fn pump(&mut self) {
        for _ in 0..1_000 {
            let mut sent = Vec::new();
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                if self.down.contains(&id) {
                    continue;
                }
                let n = self.nodes.get_mut(&id).expect("node");
                while n.has_ready() {
                    let rd = n.ready();
                    sent.extend(rd.messages.iter().cloned());
                    self.applied
                        .entry(id)
                        .or_default()
                        .extend(rd.committed_entries.iter().map(|e| e.index));
                    n.advance(rd);
                }
            }
            if sent.is_empty() {
                return;
            }
            for m in sent {
                if !self.down.contains(&m.to.0)
                    && let Some(n) = self.nodes.get_mut(&m.to.0)
                {
                    n.step(m);
                }
            }
        }
        panic!("messages never stopped");
    }

    /// Ticks every live node `n` times, pumping after each tick.
    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            for (id, node) in self.nodes.iter_mut() {
                if !self.down.contains(id) {
                    node.tick();
                }
            }
            self.pump();
        }
    }

    /// Ticks only `id` until it leads (others answer).
    fn elect(&mut self, id: u64) {
        for _ in 0..1_000 {
            if self.node(id).is_leader() {
                self.pump();
                return;
            }
            self.node(id).tick();
            self.pump();
        }
        panic!("n{id} never won");
    }

    fn leaders(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(id, n)| !self.down.contains(id) && n.is_leader())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The leader proposes `cc`; the cluster settles.
    fn change(&mut self, leader: u64, cc: ConfChange) -> LogIndex {
        let index = self.node(leader).propose_conf_change(cc).expect("accepted");
        self.pump();
        index
    }
}

/// A learner receives the log and applies it, but its acknowledgement never makes a quorum.
#[test]
fn a_learner_gets_the_log_but_does_not_count_toward_commit() {
    let mut net = Net::new(&[1, 2, 3]);
    net.elect(1);
    net.start(4, &[1, 2, 3], &[4]);
    net.change(1, ConfChange::add_learner(NodeId(4), ""));
    assert_eq!(net.node(1).conf(), conf(&[1, 2, 3], &[4]));
    let i = net.node(1).propose(b"x".to_vec()).unwrap();
    net.tick(12); // the next heartbeat carries the commit
    assert!(net.applied[&4].contains(&i), "the learner applied it");
    net.down.extend([2, 3]);
    let j = net.node(1).propose(b"y".to_vec()).unwrap();
    net.pump();
    assert_eq!(net.node(4).log().last_index(), j, "the learner holds it");
    assert!(
        net.node(1).log().committed() < j,
        "leader + learner are no quorum of three voters"
    );
}

/// A learner never campaigns, however long it hears nothing; it does once promoted.
#[test]
fn a_learner_never_campaigns_until_promoted() {
    let mut net = Net::new(&[1]);
    net.elect(1);
    net.start(2, &[1], &[2]);
    net.change(1, ConfChange::add_learner(NodeId(2), ""));
    net.down.insert(1);
    net.tick(500);
    assert_eq!(net.node(2).role(), Role::Follower);
    assert_eq!(net.node(2).term(), net.node(1).term(), "no election at all");
    net.down.clear();
    net.change(1, ConfChange::promote(NodeId(2)));
    assert_eq!(net.node(2).conf(), conf(&[1, 2], &[]));
    net.down.insert(1);
    net.tick(500);
    assert_eq!(
        net.leaders(),
        Vec::<u64>::new(),
        "two voters, one down: no quorum"
    );
    assert_ne!(net.node(2).role(), Role::Follower, "but it campaigns now");
}

/// One change at a time: a second one is refused while the first is uncommitted.
#[test]
fn a_second_change_is_refused_while_one_is_uncommitted() {
    let mut net = Net::new(&[1, 2, 3]);
    net.elect(1);
    net.down.extend([2, 3]);
    let first = net
        .node(1)
        .propose_conf_change(ConfChange::add_learner(NodeId(4), ""))
        .unwrap();
    assert_eq!(
        net.node(1)
            .propose_conf_change(ConfChange::add_learner(NodeId(5), "")),
        Err(ProposeError::ConfChangePending { index: first })
    );
    net.down.clear();
    net.tick(30);
    assert!(net.node(1).log().committed() >= first);
    assert!(
        net.node(1)
            .propose_conf_change(ConfChange::add_learner(NodeId(5), ""))
            .is_ok()
    );
}

/// A new leader refuses a change until its no-op committed (the fix to the single-server
/// change bug: an uncommitted change of an earlier term may still be in flight).
#[test]
fn a_new_leader_refuses_a_change_before_committing_in_its_term() {
    let mut n = common::leader_of_three();
    assert_eq!(
        n.propose_conf_change(ConfChange::remove(NodeId(3))),
        Err(ProposeError::LeaderNotReady)
    );
    common::drain(&mut n);
    let noop = n.log().last_index().0;
    common::ack(&mut n, 2, noop);
    assert!(n.propose_conf_change(ConfChange::remove(NodeId(3))).is_ok());
}

/// A change that does not apply is refused with the reason, and nothing is appended.
#[test]
fn an_invalid_change_is_refused_with_the_reason() {
    let mut net = Net::new(&[1]);
    net.elect(1);
    let last = net.node(1).log().last_index();
    let refuse = |net: &mut Net, cc| net.node(1).propose_conf_change(cc).unwrap_err();
    assert_eq!(
        refuse(&mut net, ConfChange::promote(NodeId(1))),
        ProposeError::ConfChange(ConfError::NotALearner(NodeId(1)))
    );
    assert_eq!(
        refuse(&mut net, ConfChange::remove(NodeId(1))),
        ProposeError::ConfChange(ConfError::LastVoter(NodeId(1)))
    );
    assert_eq!(
        refuse(&mut net, ConfChange::add_learner(NodeId(1), "")),
        ProposeError::ConfChange(ConfError::AlreadyMember(NodeId(1)))
    );
    let long = "x".repeat(shardkv_types::ADDR_BYTES_MAX + 1);
    assert_eq!(
        refuse(&mut net, ConfChange::add_learner(NodeId(2), long)),
        ProposeError::ConfChange(ConfError::Malformed)
    );
    assert_eq!(
        refuse(&mut net, ConfChange::add_learner(NodeId(0), "")),
        ProposeError::ConfChange(ConfError::ReservedId)
    );
    assert_eq!(net.node(1).log().last_index(), last);
}

/// Only a caught-up learner is promoted.
#[test]
fn a_learner_far_behind_is_not_promoted() {
    let mut net = Net::new(&[1]);
    net.elect(1);
    net.change(1, ConfChange::add_learner(NodeId(2), "")); // node 2 not started: no acks
    for i in 0..10u8 {
        net.node(1).propose(vec![i]).unwrap();
    }
    net.pump();
    let err = net
        .node(1)
        .propose_conf_change(ConfChange::promote(NodeId(2)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProposeError::LearnerBehind {
                node: NodeId(2),
                matched: LogIndex(0),
                ..
            }
        ),
        "{err:?}"
    );
    net.start(2, &[1], &[2]);
    net.tick(25);
    net.change(1, ConfChange::promote(NodeId(2)));
    assert_eq!(net.node(1).conf(), conf(&[1, 2], &[]));
}

/// A follower uses the newest membership in its log, committed or not, and reverts when
/// the entry is cut off by a new leader's log.
#[test]
fn an_uncommitted_change_counts_at_once_and_truncation_reverts_it() {
    let mut cfg = Config::new(NodeId(2), ids(&[1, 2, 3]));
    cfg.promote_lag_max = 5;
    let mut n = RawNode::new(cfg, Restored::default(), 2);
    let cc = conf_entry(
        Term(1),
        LogIndex(2),
        ConfChange::remove(NodeId(3)),
        conf(&[1, 2], &[]),
    );
    let noop = Entry::noop(Term(1), LogIndex(1));
    n.step(append(1, 2, 1, (0, 0), vec![noop, cc], 1));
    assert_eq!(n.conf(), conf(&[1, 2], &[]), "in force uncommitted");
    // Node 3 now leads term 2 without that entry: its append replaces index 2.
    let other = Entry::normal(Term(2), LogIndex(2), b"z".to_vec());
    n.step(append(3, 2, 2, (1, 1), vec![other], 1));
    assert_eq!(n.log().term(LogIndex(2)), Some(Term(2)));
    assert_eq!(n.conf(), conf(&[1, 2, 3], &[]), "reverted");
}

/// A removed leader keeps leading until its removal commits, then steps down and stops
/// campaigning; the others elect a leader among themselves.
#[test]
fn a_leader_removes_itself_steps_down_once_committed_and_stays_quiet() {
    let mut net = Net::new(&[1, 2, 3]);
    net.elect(1);
    net.down.extend([2, 3]);
    let index = net
        .node(1)
        .propose_conf_change(ConfChange::remove(NodeId(1)))
        .unwrap();
    net.pump();
    assert!(net.node(1).is_leader(), "not committed: still leads");
    assert!(!net.node(1).is_voter());
    net.down.clear();
    net.tick(40); // overdue appends are retried after a few heartbeats
    assert!(net.node(1).log().committed() >= index);
    assert!(!net.node(1).is_leader(), "stepped down after the commit");
    net.tick(400);
    assert_eq!(net.leaders().len(), 1);
    assert_ne!(net.leaders(), vec![1]);
    let leader_term = net.node(net.leaders()[0]).term();
    assert_eq!(net.node(1).role(), Role::Follower);
    assert!(net.node(1).term() <= leader_term);
    // The new leader's entries commit with two voters.
    let l = net.leaders()[0];
    let i = net.node(l).propose(b"after".to_vec()).unwrap();
    net.pump();
    assert!(net.node(l).log().committed() >= i);
}

/// A removed follower that learned of its removal never campaigns; one that did not is
/// ignored (its vote requests are dropped by members).
#[test]
fn a_removed_node_does_not_disturb_the_group() {
    let mut net = Net::new(&[1, 2, 3]);
    net.elect(1);
    net.change(1, ConfChange::remove(NodeId(3)));
    net.tick(12);
    assert_eq!(net.node(3).conf(), conf(&[1, 2], &[]));
    let term = net.node(1).term();
    net.down.insert(1);
    net.tick(300);
    assert_eq!(net.node(3).role(), Role::Follower, "never campaigns");
    // Node 2 alone cannot win (quorum of two) and node 3 does not vote for it... but its
    // vote request to 3 is answered; only 2's term moved.
    let before = net.node(2).term();
    assert!(before >= term);
    // A stranger's vote request (not a member) whose log is behind this one — a removed
    // node lacks the removal every member holds — is ignored outright.
    let restored = common::restored_at(2, &[1, 1, 2]);
    let mut n = RawNode::new(Config::new(NodeId(2), ids(&[1, 2])), restored, 2);
    let req = |index, term| Body::RequestVote {
        pre_vote: false,
        force: false,
        last_log_index: LogIndex(index),
        last_log_term: Term(term),
    };
    n.step(msg(3, 2, 5, req(2, 1)));
    assert_eq!(n.term(), Term(2), "the term did not move");
    assert!(n.ready().messages.is_empty(), "no answer");
}

/// A voter whose log lags behind the change that added a node still answers that node's
/// vote request when the node's log is ahead: it may be the vote the group needs (a lagging
/// voter ignoring every stranger could leave a majority of the voters unable to elect).
#[test]
fn a_stranger_ahead_of_this_log_gets_an_answer() {
    let restored = common::restored_at(2, &[1, 1, 2]);
    let mut n = RawNode::new(Config::new(NodeId(2), ids(&[1, 2, 3])), restored, 2);
    let req = Body::RequestVote {
        pre_vote: false,
        force: false,
        last_log_index: LogIndex(9),
        last_log_term: Term(3),
    };
    n.step(msg(4, 2, 5, req));
    assert_eq!(n.term(), Term(5), "the term moved");
    let rd = n.ready();
    assert!(
        rd.messages.iter().any(|m| m.to == NodeId(4)
            && matches!(m.body, Body::RequestVoteResponse { granted: true, .. })),
        "the vote is granted: {:?}",
        rd.messages
    );
}

/// A learner (or a node that does not know yet it was promoted) grants the leader lease
/// only for an election timeout: past it, it answers a candidate's pre-vote, which a group
/// that lost its leader may need.
#[test]
fn a_learners_leader_lease_ends() {
    let mut n = RawNode::new(
        Config {
            learners: ids(&[4]),
            ..Config::new(NodeId(4), ids(&[1, 2, 3]))
        },
        Restored::default(),
        4,
    );
    n.step(msg(
        1,
        4,
        1,
        Body::Heartbeat {
            commit: LogIndex(0),
            read_seq: 0,
        },
    ));
    assert_eq!(n.leader(), Some(NodeId(1)));
    let _ = n.ready();
    n.advance(Default::default());
    for _ in 0..2 * n.config().election_ticks {
        n.tick();
    }
    let pre = Body::RequestVote {
        pre_vote: true,
        force: false,
        last_log_index: LogIndex(0),
        last_log_term: Term(0),
    };
    n.step(msg(2, 4, 2, pre));
    let rd = n.ready();
    assert!(
        rd.messages.iter().any(|m| m.to == NodeId(2)
            && matches!(
                m.body,
                Body::RequestVoteResponse {
                    pre_vote: true,
                    granted: true
                }
            )),
        "the pre-vote is answered: {:?}",
        rd.messages
    );
}

/// A snapshot records the membership as of its index; installing it or restarting from it
/// restores that membership, and later changes in the log still apply on top.
#[test]
fn the_membership_rides_in_snapshots_and_restarts() {
    let mut net = Net::new(&[1]);
    net.elect(1);
    net.change(1, ConfChange::add_learner(NodeId(2), ""));
    let applied = net.node(1).log().applied();
    net.node(1).compact(applied, b"state".to_vec());
    let meta = net.node(1).log().snapshot_meta();
    assert_eq!(meta.conf, conf(&[1], &[2]));
    net.node(1).propose(b"after".to_vec()).unwrap();
    net.pump();
    // A learner that joins now gets the snapshot, with the membership.
    net.start(2, &[1], &[2]);
    net.tick(25);
    assert_eq!(net.node(2).log().snapshot_meta(), meta);
    assert_eq!(net.node(2).conf(), conf(&[1], &[2]));
    // A restart from that snapshot plus a later change in the log.
    let cc = conf_entry(
        Term(1),
        meta.index.next(),
        ConfChange::promote(NodeId(2)),
        conf(&[1, 2], &[]),
    );
    let restored = Restored {
        hard_state: HardState {
            term: Term(1),
            ..Default::default()
        },
        snapshot: Some(Snapshot {
            meta,
            data: Arc::new(b"state".to_vec()),
        }),
        entries: vec![cc],
    };
    // Its configured voters are stale ([1] only, it a learner): the log wins.
    let mut cfg = Config::new(NodeId(2), ids(&[1]));
    cfg.learners = ids(&[2]);
    let n = RawNode::new(cfg.clone(), restored.clone(), 2);
    assert_eq!(n.conf(), conf(&[1, 2], &[]));
    assert!(n.is_voter());
    // A snapshot of the first layout (no membership) falls back to the configured one.
    let old = Restored {
        snapshot: Some(Snapshot {
            meta: SnapshotMeta::at(meta.index, meta.term),
            data: Arc::new(Vec::new()),
        }),
        entries: Vec::new(),
        ..restored
    };
    assert_eq!(RawNode::new(cfg, old, 2).conf(), conf(&[1], &[2]));
}

/// Promoting a learner makes it count at once: the promotion entry itself needs it.
#[test]
fn a_promoted_learner_counts_toward_the_commit_of_its_promotion() {
    let mut net = Net::new(&[1]);
    net.elect(1);
    net.start(2, &[1], &[2]);
    net.change(1, ConfChange::add_learner(NodeId(2), ""));
    net.tick(3);
    net.down.insert(2);
    let index = net
        .node(1)
        .propose_conf_change(ConfChange::promote(NodeId(2)))
        .unwrap();
    net.pump();
    assert!(
        net.node(1).log().committed() < index,
        "two voters now, one acknowledged"
    );
    net.down.clear();
    net.tick(40);
    assert!(net.node(1).log().committed() >= index);
}

/// A learner's granted pre-vote and vote count for nothing: a candidate of {1, 2, 3} wins
/// only with a voter's.
#[test]
fn a_learners_vote_does_not_elect() {
    let mut cfg = Config::new(NodeId(1), ids(&[1, 2, 3]));
    cfg.learners = ids(&[4]);
    let mut n = RawNode::new(cfg, Restored::default(), 1);
    while n.role() == Role::Follower {
        n.tick();
    }
    common::drain(&mut n);
    let answer = |pre_vote: bool, from: u64, term: u64| {
        msg(
            from,
            1,
            term,
            Body::RequestVoteResponse {
                pre_vote,
                granted: true,
            },
        )
    };
    n.step(answer(true, 4, 1));
    assert_eq!(n.role(), Role::PreCandidate, "a learner's pre-vote");
    n.step(answer(true, 2, 1));
    assert_eq!(n.role(), Role::Candidate);
    let rd = common::drain(&mut n);
    let asked: BTreeSet<u64> = rd.messages.iter().map(|m| m.to.0).collect();
    assert_eq!(asked, BTreeSet::from([2, 3]), "only voters are asked");
    n.step(answer(false, 4, 1));
    assert!(!n.is_leader(), "a learner's vote");
    n.step(answer(false, 3, 1));
    assert!(n.is_leader());
}

/// CheckQuorum counts voters only: a leader that hears from its learner alone steps down.
#[test]
fn a_leader_heard_only_by_a_learner_steps_down() {
    let mut net = Net::new(&[1, 2, 3]);
    net.elect(1);
    net.start(4, &[1, 2, 3], &[4]);
    net.change(1, ConfChange::add_learner(NodeId(4), ""));
    net.down.extend([2, 3]);
    net.tick(120);
    assert!(
        !net.node(1).is_leader(),
        "no voter answered for two election timeouts"
    );
    assert_eq!(net.node(4).role(), Role::Follower);
}
