//! Message dispatch by term and role, and leader election with PreVote and CheckQuorum.

use crate::anomaly::{Anomaly, TERM_JUMP_MAX};
use crate::{Body, Message, RawNode, Role};
use shardkv_types::{NodeId, Term};

impl RawNode {
    /// Processes one message from a peer.
    ///
    /// # Panics
    /// If called between `ready` and `advance` (the log handed out for persistence could
    /// change underneath the application).
    pub fn step(&mut self, m: Message) {
        assert!(!self.ready_outstanding, "step between ready and advance");
        if m.to != self.cfg.id || m.from == self.cfg.id {
            return; // misrouted
        }
        if let Body::RequestVote {
            last_log_index,
            last_log_term,
            ..
        } = m.body
            && !self.log.conf().contains(m.from)
            && !self.log.is_up_to_date(last_log_index, last_log_term)
        {
            // Not a member as far as this log knows, and behind it: a removed node that did
            // not learn of its removal (its log lacks the committed removal every member
            // holds) must not disrupt the group with its terms. A non-member whose log is
            // ahead is answered as usual: this log may lag behind the change that added it,
            // and its vote may be the one the group needs. Leader messages are taken from
            // anyone (term rules apply), for the same reason.
            return;
        }
        if m.term.0 > self.term.0.saturating_add(TERM_JUMP_MAX) {
            // No honest peer gets that far ahead (see TERM_JUMP_MAX); taking the term would
            // leave no term this group can ever reach again.
            let (term, kind) = (m.term, m.kind());
            self.note(
                Anomaly::TermTooFarAhead,
                m.from,
                format_args!("{kind} in {term} (bound: {TERM_JUMP_MAX} terms ahead)"),
            );
            return;
        }
        if m.term > self.term {
            if !self.step_higher_term(&m) {
                return;
            }
        } else if m.term < self.term {
            self.step_lower_term(&m);
            return;
        }
        match &m.body {
            Body::RequestVote { .. } => self.handle_vote_request(&m),
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m),
                Role::Follower => self.step_follower(m),
            },
        }
    }

    /// A message from a newer term. Returns false if it must be ignored.
    fn step_higher_term(&mut self, m: &Message) -> bool {
        match &m.body {
            Body::RequestVote {
                force, pre_vote, ..
            } => {
                // The lease (CheckQuorum, and PreVote per thesis §9.6): a node that heard
                // from a live leader within the minimum election timeout does not help
                // depose it.
                let heard_leader = self.leader.is_some()
                    && (self.role == Role::Leader
                        || self.election_elapsed < self.cfg.election_ticks);
                let lease_applies = self.cfg.check_quorum || (*pre_vote && self.cfg.pre_vote);
                if heard_leader && lease_applies && !force {
                    return false;
                }
                if !pre_vote {
                    self.become_follower(m.term, None);
                }
            }
            // A granted pre-vote carries the term the candidate will use; it is no news.
            Body::RequestVoteResponse {
                pre_vote: true,
                granted: true,
            } => {}
            Body::AppendEntries { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                self.become_follower(m.term, Some(m.from));
            }
            _ => self.become_follower(m.term, None),
        }
        true
    }

    /// A message from an older term: tell a stale leader or pre-candidate about the newer
    /// term (Raft Figure 2: reply false with the current term), ignore the rest.
    fn step_lower_term(&mut self, m: &Message) {
        match &m.body {
            Body::AppendEntries { .. } | Body::Heartbeat { .. } => {
                self.send(
                    m.from,
                    self.term,
                    Body::AppendEntriesResponse {
                        success: false,
                        index: Default::default(),
                        hint: None,
                        seq: 0,
                    },
                );
            }
            Body::RequestVote { pre_vote: true, .. } => {
                self.send(
                    m.from,
                    self.term,
                    Body::RequestVoteResponse {
                        pre_vote: true,
                        granted: false,
                    },
                );
            }
            _ => {}
        }
    }

    fn handle_vote_request(&mut self, m: &Message) {
        let Body::RequestVote {
            pre_vote,
            last_log_index,
            last_log_term,
            ..
        } = m.body
        else {
            unreachable!()
        };
        // A real vote goes to at most one candidate per term; a pre-vote is granted to any
        // candidate for a newer term whose log is up to date.
        let can_vote = self.vote == Some(m.from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && m.term > self.term);
        let granted = can_vote && self.log.is_up_to_date(last_log_index, last_log_term);
        let term = if granted { m.term } else { self.term };
        self.send(
            m.from,
            term,
            Body::RequestVoteResponse { pre_vote, granted },
        );
        if granted && !pre_vote {
            self.vote = Some(m.from);
            self.election_elapsed = 0;
        }
    }

    fn step_follower(&mut self, m: Message) {
        match m.body {
            Body::AppendEntries { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_leader_message(m);
            }
            Body::TimeoutNow
                if self.is_voter() && !self.storage_full && !self.declines_transfers =>
            {
                // Leadership transfer: campaign at once, skipping the pre-vote.
                self.campaign(false, true);
            }
            _ => {} // stale responses to a role this node no longer has
        }
    }

    fn step_candidate(&mut self, m: Message) {
        match m.body {
            Body::AppendEntries { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                // Someone won this term.
                self.become_follower(m.term, Some(m.from));
                self.handle_leader_message(m);
            }
            Body::RequestVoteResponse { pre_vote, granted } => {
                let phase_matches = pre_vote == (self.role == Role::PreCandidate);
                let term_matches = if pre_vote {
                    Some(m.term) == self.term.checked_next() || !granted
                } else {
                    m.term == self.term
                };
                if phase_matches && term_matches {
                    self.votes.insert(m.from, granted);
                    self.tally_votes();
                }
            }
            _ => {}
        }
    }

    /// Counts the answers of the voters in force; any other node's answer counts for
    /// nothing (a learner may answer: it does not know whether it was promoted).
    fn tally_votes(&mut self) {
        let conf = self.log.conf();
        let voters = || self.votes.iter().filter(|(id, _)| conf.is_voter(**id));
        let granted = voters().filter(|(_, g)| **g).count();
        let rejected = voters().count() - granted;
        if granted >= self.quorum() {
            if self.role == Role::PreCandidate {
                self.campaign(false, false);
            } else {
                self.become_leader();
            }
        } else if rejected >= self.quorum() {
            self.become_follower(self.term, None);
        }
    }

    /// Starts an election: a pre-vote round if `pre_vote`, else a real one. `force` marks a
    /// leadership transfer, which voters honour even inside a leader's lease.
    pub(crate) fn campaign(&mut self, pre_vote: bool, force: bool) {
        if !self.is_voter() {
            return; // learners and removed nodes never campaign
        }
        let Some(next) = self.term.checked_next() else {
            let (id, term) = (self.cfg.id, self.term);
            self.note(
                Anomaly::TermExhausted,
                id,
                format_args!("no term follows {term}"),
            );
            return;
        };
        let term: Term = if pre_vote {
            self.become_pre_candidate();
            next
        } else {
            self.become_candidate();
            self.term
        };
        self.votes.insert(self.cfg.id, true);
        if self.quorum() == 1 {
            self.tally_votes();
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let peers: Vec<NodeId> = self.voter_peers();
        for p in peers {
            self.send(
                p,
                term,
                Body::RequestVote {
                    pre_vote,
                    force,
                    last_log_index,
                    last_log_term,
                },
            );
        }
    }
}
