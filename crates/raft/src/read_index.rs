//! ReadIndex (Raft thesis §6.4): linearizable reads without writing to the log.
//!
//! The leader records its commit index when a read arrives, then confirms it is still the
//! leader with one heartbeat round. Once a quorum answered a round started after the read
//! arrived, the read may be served as soon as the state machine applied the recorded index.

use shardkv_types::{LogIndex, Membership, NodeId};
use std::collections::VecDeque;

/// One pending read.
#[derive(Debug)]
struct PendingRead {
    ctx: u64,
    /// `None` until the leader has committed an entry of its own term: before that, its
    /// commit index may be behind what an earlier leader committed.
    index: Option<LogIndex>,
    /// The heartbeat round that confirms this read; 0 until a round was started for it.
    seq: u64,
}

/// The reads a leader is confirming.
///
/// Invariant: `pending` is ordered by arrival, and `seq` is non-decreasing along it.
#[derive(Debug, Default)]
pub struct ReadQueue {
    pending: VecDeque<PendingRead>,
    /// The last heartbeat round started.
    last_seq: u64,
    /// Which peers acknowledged which round: peer -> highest round acknowledged.
    acks: Vec<(NodeId, u64)>,
}

impl ReadQueue {
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Queues a read; `index` is the commit index if the leader may serve reads yet.
    pub fn push(&mut self, ctx: u64, index: Option<LogIndex>) {
        self.pending.push_back(PendingRead { ctx, index, seq: 0 });
    }

    /// Fills in the index of reads that arrived before the leader could serve reads.
    pub fn set_unknown_indexes(&mut self, committed: LogIndex) {
        for r in self.pending.iter_mut().filter(|r| r.index.is_none()) {
            r.index = Some(committed);
        }
    }

    /// True if some read has an index and waits for a heartbeat round to be started.
    pub fn needs_round(&self) -> bool {
        self.pending.iter().any(|r| r.seq == 0 && r.index.is_some())
    }

    /// Starts a new heartbeat round covering every read that has an index; returns its seq.
    pub fn start_round(&mut self) -> u64 {
        self.last_seq += 1;
        let seq = self.last_seq;
        for r in self
            .pending
            .iter_mut()
            .filter(|r| r.seq == 0 && r.index.is_some())
        {
            r.seq = seq;
        }
        seq
    }

    /// The round the next heartbeat should carry (the latest started), 0 if none pending.
    pub fn current_seq(&self) -> u64 {
        if self.pending.iter().any(|r| r.seq != 0) {
            self.last_seq
        } else {
            0
        }
    }

    /// Records `peer`'s acknowledgement of round `seq` and returns the reads now confirmed
    /// by a quorum of `conf`'s voters (`leader` counts if it is one of them).
    pub fn ack(
        &mut self,
        peer: NodeId,
        seq: u64,
        conf: &Membership,
        leader: NodeId,
    ) -> Vec<(u64, LogIndex)> {
        if seq == 0 {
            return Vec::new();
        }
        match self.acks.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, s)) => *s = (*s).max(seq),
            None => self.acks.push((peer, seq)),
        }
        self.release(conf, leader)
    }

    /// Releases every read whose round a quorum of `conf`'s voters acknowledged (when the
    /// leader is the only voter, every read with an index). Acknowledgements of members that
    /// are not voters (learners, removed members) count for nothing.
    pub fn release(&mut self, conf: &Membership, leader: NodeId) -> Vec<(u64, LogIndex)> {
        let quorum = conf.quorum();
        let own = usize::from(conf.is_voter(leader));
        let mut out = Vec::new();
        while let Some(front) = self.pending.front() {
            if front.seq == 0 {
                if own < quorum || front.index.is_none() {
                    break;
                }
            } else {
                let confirmed = own
                    + self
                        .acks
                        .iter()
                        .filter(|(p, s)| conf.is_voter(*p) && *s >= front.seq)
                        .count();
                if confirmed < quorum {
                    break;
                }
            }
            let r = self.pending.pop_front().expect("front exists");
            out.push((r.ctx, r.index.expect("confirmed reads have an index")));
        }
        out
    }

    /// Drops every pending read (leadership lost); returns their contexts.
    pub fn clear(&mut self) -> Vec<u64> {
        self.acks.clear();
        self.pending.drain(..).map(|r| r.ctx).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[u64], learners: &[u64]) -> Membership {
        let ids = |v: &[u64]| v.iter().map(|&i| NodeId(i)).collect::<Vec<_>>();
        Membership::new(&ids(voters), &ids(learners)).unwrap()
    }

    #[test]
    fn read_released_only_after_quorum_acks_a_round_started_after_it() {
        let c = conf(&[1, 2, 3], &[]);
        let mut q = ReadQueue::default();
        q.push(7, Some(LogIndex(5)));
        let seq = q.start_round();
        assert!(
            q.ack(NodeId(2), seq - 1, &c, NodeId(1)).is_empty(),
            "an older round does not confirm"
        );
        assert_eq!(q.ack(NodeId(2), seq, &c, NodeId(1)), vec![(7, LogIndex(5))]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn reads_before_own_term_commit_wait_for_an_index() {
        let c = conf(&[1], &[]);
        let mut q = ReadQueue::default();
        q.push(1, None);
        assert!(!q.needs_round());
        assert!(q.release(&c, NodeId(1)).is_empty());
        q.set_unknown_indexes(LogIndex(9));
        assert_eq!(q.release(&c, NodeId(1)), vec![(1, LogIndex(9))]);
    }

    /// A learner's acknowledgement confirms nothing, and a leader that is no longer a voter
    /// (it is removing itself) does not count itself.
    #[test]
    fn only_voters_confirm_a_read() {
        let c = conf(&[1, 2, 3], &[4]);
        let mut q = ReadQueue::default();
        q.push(7, Some(LogIndex(5)));
        let seq = q.start_round();
        assert!(q.ack(NodeId(4), seq, &c, NodeId(1)).is_empty(), "a learner");
        assert_eq!(q.ack(NodeId(3), seq, &c, NodeId(1)), vec![(7, LogIndex(5))]);
        let without_leader = conf(&[2, 3], &[]);
        q.push(8, Some(LogIndex(6)));
        let seq = q.start_round();
        assert!(q.ack(NodeId(2), seq, &without_leader, NodeId(1)).is_empty());
        assert_eq!(
            q.ack(NodeId(3), seq, &without_leader, NodeId(1)),
            vec![(8, LogIndex(6))]
        );
        let sole = conf(&[2], &[]);
        q.push(9, Some(LogIndex(7)));
        assert!(
            q.release(&sole, NodeId(1)).is_empty(),
            "a non-voter leader needs a round"
        );
    }
}
