//! The leader's view of one follower's log.

use shardkv_types::{LogIndex, SnapshotMeta};
use std::collections::VecDeque;
use std::sync::Arc;

/// How the leader is currently feeding a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches; it sends one append at a
    /// time and waits for the answer (or the next heartbeat).
    Probe,
    /// The follower's log is known to match; appends are pipelined up to the in-flight limit.
    Replicate,
    /// The follower needs entries the leader has compacted; a snapshot is being streamed.
    Snapshot,
}

/// An InstallSnapshot transfer in progress: one chunk in flight at a time.
#[derive(Clone, Debug)]
pub struct SnapshotTransfer {
    pub meta: SnapshotMeta,
    pub data: Arc<Vec<u8>>,
    /// Bytes the follower has acknowledged.
    pub acked: u64,
    /// The tick the last chunk was sent; an unanswered chunk is resent after a while.
    pub sent_tick: u64,
}

/// Replication progress of one peer, kept by the leader.
///
/// Invariant: `match_index < next_index`.
#[derive(Clone, Debug)]
pub struct Progress {
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// In `Probe`, an append was sent and no answer or heartbeat came back since.
    pub probe_sent: bool,
    /// The last index and send tick of each append in flight (`Replicate` only), oldest
    /// first.
    pub inflight: VecDeque<(LogIndex, u64)>,
    /// Set in `Snapshot` state.
    pub snapshot: Option<SnapshotTransfer>,
    /// The leader's tick count when this peer last answered anything.
    pub last_active_tick: u64,
}

impl Progress {
    /// The state a new leader starts every follower in.
    pub fn new(next_index: LogIndex, now_tick: u64) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            snapshot: None,
            last_active_tick: now_tick,
        }
    }

    /// True when the leader must not send another append now.
    pub fn is_paused(&self, inflight_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= inflight_max,
            ProgressState::Snapshot => true,
        }
    }

    pub fn become_probe(&mut self) {
        // After a snapshot, resume right after it.
        if let Some(t) = self.snapshot.take() {
            self.next_index = self.next_index.max(t.meta.index.next());
        }
        self.state = ProgressState::Probe;
        self.next_index = self.next_index.max(self.match_index.next());
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.inflight.clear();
        self.snapshot = None;
    }

    pub fn become_snapshot(&mut self, meta: SnapshotMeta, data: Arc<Vec<u8>>, now: u64) {
        self.state = ProgressState::Snapshot;
        self.inflight.clear();
        self.snapshot = Some(SnapshotTransfer {
            meta,
            data,
            acked: 0,
            sent_tick: now,
        });
    }

    /// Records that an append ending at `last` was sent at tick `now`.
    pub fn sent_append(&mut self, last: LogIndex, entries: usize, now: u64) {
        match self.state {
            ProgressState::Replicate => {
                if entries > 0 {
                    self.next_index = last.next();
                    self.inflight.push_back((last, now));
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => unreachable!("no appends while streaming a snapshot"),
        }
    }

    /// A follower acknowledged its log matches up to `index`. Returns true if this is news.
    pub fn maybe_update(&mut self, index: LogIndex) -> bool {
        let news = index > self.match_index;
        if news {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index.next());
        while self.inflight.front().is_some_and(|&(i, _)| i <= index) {
            self.inflight.pop_front();
        }

        news
    }

    /// A follower rejected an append whose `prev_log_index` was `rejected`; the leader moves
    /// `next_index` back to `hint_next`. Returns false if the rejection is stale.
    pub fn maybe_decr_to(&mut self, rejected: LogIndex, hint_next: LogIndex) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.match_index {
                return false;
            }
        } else if rejected.next() != self.next_index {
            // In Probe only the answer to the one outstanding probe counts.
            return false;
        }
        self.next_index = hint_next.min(rejected).max(self.match_index.next());
        self.probe_sent = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_pipelines_until_window_full_then_frees_on_ack() {
        let mut p = Progress::new(LogIndex(1), 0);
        p.maybe_update(LogIndex(0));
        p.become_replicate();
        for i in 1..=3 {
            assert!(!p.is_paused(3));
            p.sent_append(LogIndex(i), 1, 0);
        }
        assert!(p.is_paused(3));
        assert_eq!(p.next_index, LogIndex(4));
        assert!(p.maybe_update(LogIndex(2)));
        assert_eq!(p.inflight.len(), 1);
        assert!(!p.is_paused(3));
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut p = Progress::new(LogIndex(10), 0);
        p.sent_append(LogIndex(12), 2, 0);
        assert!(p.probe_sent);
        assert!(
            !p.maybe_decr_to(LogIndex(5), LogIndex(3)),
            "not the outstanding probe"
        );
        assert!(p.maybe_decr_to(LogIndex(9), LogIndex(4)));
        assert_eq!(p.next_index, LogIndex(4));
        assert!(!p.probe_sent);
    }
}
