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

/// One append in flight to a follower (`Replicate` only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inflight {
    /// The append's `prev_log_index`: a rejection names it.
    pub prev: LogIndex,
    /// Its last entry's index: an acknowledgement of it or beyond frees the slot.
    pub last: LogIndex,
    /// The leader's tick when it was sent.
    pub sent_tick: u64,
}

/// What a rejection did to a follower's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A stale or reordered answer: nothing changed.
    Stale,
    /// `next_index` moved back; `match_index` stands.
    Backed,
    /// The follower no longer holds entries it acknowledged (its data was lost):
    /// `match_index` went back to 0 and the log is sent again from `next_index`.
    LogLost,
}

/// Replication progress of one peer, kept by the leader.
///
/// Invariants: `match_index < next_index`; `match_index <= sent_max`.
#[derive(Clone, Debug)]
pub struct Progress {
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// In `Probe`, an append was sent and no answer or heartbeat came back since.
    pub probe_sent: bool,
    /// The appends in flight (`Replicate` only), oldest first.
    pub inflight: VecDeque<Inflight>,
    /// The highest index sent to this peer in this term, in an append or as a snapshot's
    /// point: an honest follower acknowledges nothing beyond it.
    pub sent_max: LogIndex,
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
            sent_max: LogIndex(0),
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
        self.sent_max = self.sent_max.max(meta.index);
        self.snapshot = Some(SnapshotTransfer {
            meta,
            data,
            acked: 0,
            sent_tick: now,
        });
    }

    /// Records that an append after `prev` ending at `last` was sent at tick `now`.
    pub fn sent_append(&mut self, prev: LogIndex, last: LogIndex, entries: usize, now: u64) {
        self.sent_max = self.sent_max.max(last);
        match self.state {
            ProgressState::Replicate => {
                if entries > 0 {
                    self.next_index = last.next();
                    self.inflight.push_back(Inflight {
                        prev,
                        last,
                        sent_tick: now,
                    });
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => unreachable!("no appends while streaming a snapshot"),
        }
    }

    /// A follower acknowledged its log matches up to `index`. Returns true if this is news.
    ///
    /// # Panics
    /// If `index` is beyond `sent_max`: the caller refuses such an acknowledgement first.
    pub fn maybe_update(&mut self, index: LogIndex) -> bool {
        assert!(
            index <= self.sent_max,
            "acknowledged {index} beyond the {} sent",
            self.sent_max
        );
        let news = index > self.match_index;
        if news {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index.next());
        while self.inflight.front().is_some_and(|f| f.last <= index) {
            self.inflight.pop_front();
        }

        news
    }

    /// A follower rejected an append whose `prev_log_index` was `rejected`; its hint puts
    /// the next index to try at `hint_next`, and `short` says the follower's log ends before
    /// `rejected` (its last index is `hint_next - 1`).
    ///
    /// Only the answer to an append still outstanding counts (the probe, or an append in
    /// flight); anything else is stale. A fresh rejection at or below `match_index`, or a
    /// follower whose log ends at or below it, means the follower lost entries it had
    /// acknowledged: nothing is known to match any more, so `match_index` goes back to 0 and
    /// the log is probed again from the hint.
    ///
    /// # Panics
    /// If `rejected` is beyond `sent_max`: the caller refuses such a rejection first.
    pub fn on_reject(&mut self, rejected: LogIndex, hint_next: LogIndex, short: bool) -> Rejection {
        assert!(
            rejected <= self.sent_max,
            "rejected {rejected} was never sent"
        );
        let fresh = match self.state {
            ProgressState::Replicate => self.inflight.iter().any(|f| f.prev == rejected),
            ProgressState::Probe => rejected.next() == self.next_index,
            ProgressState::Snapshot => false,
        };
        if !fresh {
            return Rejection::Stale;
        }
        let next = hint_next.min(rejected).max(LogIndex(1));
        let lost = rejected <= self.match_index || (short && next <= self.match_index);
        if lost {
            self.match_index = LogIndex(0);
            self.next_index = next;
            self.become_probe();
            return Rejection::LogLost;
        }
        self.next_index = next.max(self.match_index.next());
        self.become_probe();
        Rejection::Backed
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
            p.sent_append(LogIndex(i - 1), LogIndex(i), 1, 0);
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
        p.sent_append(LogIndex(9), LogIndex(12), 2, 0);
        assert!(p.probe_sent);
        assert_eq!(
            p.on_reject(LogIndex(5), LogIndex(3), true),
            Rejection::Stale,
            "not the outstanding probe"
        );
        assert_eq!(
            p.on_reject(LogIndex(9), LogIndex(4), true),
            Rejection::Backed
        );
        assert_eq!(p.next_index, LogIndex(4));
        assert!(!p.probe_sent);
        assert_eq!(
            p.on_reject(LogIndex(9), LogIndex(4), true),
            Rejection::Stale,
            "a duplicate of the answer already taken"
        );
    }

    /// A follower that acknowledged up to 8 and now rejects the append after 8 lost its
    /// log: the leader forgets the match and starts over from the follower's end.
    #[test]
    fn rejection_below_the_match_resets_it() {
        let mut p = Progress::new(LogIndex(1), 0);
        p.sent_append(LogIndex(0), LogIndex(8), 8, 0);
        p.maybe_update(LogIndex(8));
        p.become_replicate();
        p.sent_append(LogIndex(8), LogIndex(9), 1, 1);
        assert_eq!(
            p.on_reject(LogIndex(8), LogIndex(1), true),
            Rejection::LogLost
        );
        assert_eq!((p.match_index, p.next_index), (LogIndex(0), LogIndex(1)));
        assert_eq!(p.state, ProgressState::Probe);
        assert!(p.inflight.is_empty());
    }

    /// A rejection whose append is no longer in flight is stale even when it names an
    /// index at or below the match: a reordered answer, not a lost log.
    #[test]
    fn reordered_rejection_keeps_the_match() {
        let mut p = Progress::new(LogIndex(1), 0);
        p.sent_append(LogIndex(0), LogIndex(8), 8, 0);
        p.maybe_update(LogIndex(8));
        p.become_replicate();
        assert_eq!(
            p.on_reject(LogIndex(4), LogIndex(1), true),
            Rejection::Stale
        );
        assert_eq!(p.match_index, LogIndex(8));
    }
}
