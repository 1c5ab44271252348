//! ReadIndex (Raft thesis §6.4): linearizable reads without writing to the log.
//!
//! The leader records its commit index when a read arrives, then confirms it is still the
//! leader with one heartbeat round. Once a quorum answered a round started after the read
//! arrived, the read may be served as soon as the state machine applied the recorded index.

use shardkv_types::{LogIndex, NodeId};
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
    /// by a quorum (`quorum` counts the leader itself).
    pub fn ack(&mut self, peer: NodeId, seq: u64, quorum: usize) -> Vec<(u64, LogIndex)> {
        if seq == 0 {
            return Vec::new();
        }
        match self.acks.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, s)) => *s = (*s).max(seq),
            None => self.acks.push((peer, seq)),
        }
        self.release(quorum)
    }

    /// Releases every read whose round a quorum acknowledged (for a single-node group, every
    /// read with an index).
    pub fn release(&mut self, quorum: usize) -> Vec<(u64, LogIndex)> {
        let mut out = Vec::new();
        while let Some(front) = self.pending.front() {
            if front.seq == 0 {
                if quorum > 1 || front.index.is_none() {
                    break;
                }
            } else {
                let confirmed = 1 + self.acks.iter().filter(|(_, s)| *s >= front.seq).count();
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

    #[test]
    fn read_released_only_after_quorum_acks_a_round_started_after_it() {
        let mut q = ReadQueue::default();
        q.push(7, Some(LogIndex(5)));
        let seq = q.start_round();
        assert!(
            q.ack(NodeId(2), seq - 1, 2).is_empty(),
            "an older round does not confirm"
        );
        assert_eq!(q.ack(NodeId(2), seq, 2), vec![(7, LogIndex(5))]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn reads_before_own_term_commit_wait_for_an_index() {
        let mut q = ReadQueue::default();
        q.push(1, None);
        assert!(!q.needs_round());
        assert!(q.release(1).is_empty());
        q.set_unknown_indexes(LogIndex(9));
        assert_eq!(q.release(1), vec![(1, LogIndex(9))]);
    }
}
