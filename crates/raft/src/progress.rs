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
    /// Its `seq`: only an answer echoing it answers this append.
    pub seq: u64,
    /// `match_index` when it was sent: the follower's answer describes its log after the
    /// acknowledgement that set this value, and possibly before any later one.
    pub match_at_send: LogIndex,
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
    /// In `Probe`, the `seq` of the latest probe: only its answer moves `next_index`.
    pub probe_seq: u64,
    /// The `seq` of the last append sent to this peer in this term.
    pub last_seq: u64,
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
            probe_seq: 0,
            last_seq: 0,
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

    /// Records that an append after `prev` ending at `last` is sent at tick `now`; returns
    /// the `seq` to send it with.
    pub fn sent_append(&mut self, prev: LogIndex, last: LogIndex, entries: usize, now: u64) -> u64 {
        self.sent_max = self.sent_max.max(last);
        self.last_seq += 1;
        let seq = self.last_seq;
        match self.state {
            ProgressState::Replicate => {
                if entries > 0 {
                    self.next_index = last.next();
                    self.inflight.push_back(Inflight {
                        prev,
                        last,
                        sent_tick: now,
                        seq,
                        match_at_send: self.match_index,
                    });
                }
            }
            ProgressState::Probe => {
                self.probe_sent = true;
                self.probe_seq = seq;
            }
            ProgressState::Snapshot => unreachable!("no appends while streaming a snapshot"),
        }
        seq
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
    /// Only the answer to an append still outstanding counts (the latest probe, or an
    /// append in flight), matched by the `seq` it echoes; anything else (reordered,
    /// duplicated) is stale. The follower wrote the answer after the acknowledgement that
    /// set `match_index` as it was when that append was sent (`match_at_send`), but maybe
    /// before later ones: only a rejection at or below `match_at_send`, or a log ending at
    /// or below it, proves the follower lost entries it had acknowledged. Then nothing is
    /// known to match any more: `match_index` goes back to 0 and the log is probed again
    /// from the hint. Any other fresh rejection backs `next_index` off, never below
    /// `match_index + 1`.
    ///
    /// # Panics
    /// If `rejected` is beyond `sent_max`: the caller refuses such a rejection first.
    pub fn on_reject(
        &mut self,
        rejected: LogIndex,
        hint_next: LogIndex,
        short: bool,
        seq: u64,
    ) -> Rejection {
        assert!(
            rejected <= self.sent_max,
            "rejected {rejected} was never sent"
        );
        let match_at_send = match self.state {
            ProgressState::Replicate => self
                .inflight
                .iter()
                .find(|f| f.seq == seq && f.prev == rejected)
                .map(|f| f.match_at_send),
            // `match_index` does not move in `Probe` without leaving it.
            ProgressState::Probe => (self.probe_seq == seq && rejected.next() == self.next_index)
                .then_some(self.match_index),
            ProgressState::Snapshot => None,
        };
        let Some(match_at_send) = match_at_send else {
            return Rejection::Stale;
        };
        let next = hint_next.min(rejected).max(LogIndex(1));
        let lost = rejected <= match_at_send || (short && next <= match_at_send);
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
        let seq = p.sent_append(LogIndex(9), LogIndex(12), 2, 0);
        assert!(p.probe_sent);
        assert_eq!(
            p.on_reject(LogIndex(5), LogIndex(3), true, seq),
            Rejection::Stale,
            "not the outstanding probe"
        );
        assert_eq!(
            p.on_reject(LogIndex(9), LogIndex(4), true, seq + 1),
            Rejection::Stale,
            "not the answer to this probe"
        );
        assert_eq!(
            p.on_reject(LogIndex(9), LogIndex(4), true, seq),
            Rejection::Backed
        );
        assert_eq!(p.next_index, LogIndex(4));
        assert!(!p.probe_sent);
        assert_eq!(
            p.on_reject(LogIndex(9), LogIndex(4), true, seq),
            Rejection::Stale,
            "a duplicate of the answer already taken"
        );
    }

    /// A follower that acknowledged up to 8 and then rejects an append sent after that
    /// acknowledgement, after 8, lost its log: the leader forgets the match and starts
    /// over from the follower's end.
    #[test]
    fn rejection_below_the_match_resets_it() {
        let mut p = Progress::new(LogIndex(1), 0);
        p.sent_append(LogIndex(0), LogIndex(8), 8, 0);
        p.maybe_update(LogIndex(8));
        p.become_replicate();
        let seq = p.sent_append(LogIndex(8), LogIndex(9), 1, 1);
        assert_eq!(
            p.on_reject(LogIndex(8), LogIndex(1), true, seq),
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
        let seq = p.sent_append(LogIndex(0), LogIndex(8), 8, 0);
        p.maybe_update(LogIndex(8));
        p.become_replicate();
        assert_eq!(
            p.on_reject(LogIndex(4), LogIndex(1), true, seq),
            Rejection::Stale
        );
        assert_eq!(p.match_index, LogIndex(8));
    }

    /// Appends after 1 and after 2 pipelined while the match was 1; the acknowledgement of
    /// 2 arrives, then the rejection of the second append (written before that
    /// acknowledgement): it says nothing about entries past 1, so the match stands.
    #[test]
    fn rejection_older_than_the_match_only_backs_off() {
        let mut p = Progress::new(LogIndex(2), 0);
        p.sent_append(LogIndex(0), LogIndex(1), 1, 0);
        p.maybe_update(LogIndex(1));
        p.become_replicate();
        p.sent_append(LogIndex(1), LogIndex(2), 1, 0);
        let second = p.sent_append(LogIndex(2), LogIndex(3), 1, 0);
        p.maybe_update(LogIndex(2));
        assert_eq!(
            p.on_reject(LogIndex(2), LogIndex(2), true, second),
            Rejection::Backed
        );
        assert_eq!((p.match_index, p.next_index), (LogIndex(2), LogIndex(3)));
    }
}
