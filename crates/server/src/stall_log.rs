//! `StallLog`: the disk-full stall's log lines, rate limited. A stalled node retries its
//! Ready on every drive (about a hundred times a second), and a node at the edge of its
//! disk can stall and resume as often; logging each would flood the log. The log gets one
//! line when a stall starts, at most one per [`STALL_LOG_EVERY`] while it lasts or keeps
//! coming back (with a count), and one when it ends; a snapshot not saved for lack of space
//! likewise at most once per [`STALL_LOG_EVERY`], with a count.
//!
//! Time is passed in, so the policy is tested without a clock.

use std::path::Path;
use std::time::{Duration, Instant};

/// The least time between two lines of one kind.
pub const STALL_LOG_EVERY: Duration = Duration::from_secs(10);

/// One line to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StallLine {
    /// Persisting failed for lack of space: the node stalls (the first stall in a while).
    Started,
    /// Still stalled, or stalling again and again: `stalls` more stalls began since the
    /// last line; the first began `for_secs` ago.
    Continuing { stalls: u64, for_secs: u64 },
    /// Persisting works again, `for_secs` after the first stall of this run of stalls;
    /// `stalls` more stalls began (and ended) since the last line.
    Ended { for_secs: u64, stalls: u64 },
    /// `times` snapshots were not saved for lack of space since the last such line.
    SnapshotNotSaved { times: u64 },
}

impl StallLine {
    /// Writes the line to the log (`path`: the file that could not be written, if known;
    /// `why`: the cause of a stall that starts).
    pub fn log(&self, path: Option<&Path>, why: &str) {
        let path = path.map(|p| p.display().to_string()).unwrap_or_default();
        match self {
            StallLine::Started => tracing::warn!(
                path,
                why,
                "cannot persist raft state: stalled, retrying until it can \
                 (writes refused; see why= for what this member still does)"
            ),
            StallLine::Continuing { stalls, for_secs } => tracing::warn!(
                stalls,
                for_secs,
                "still stalled, or stalled again since the last line"
            ),
            StallLine::Ended { for_secs, stalls } => tracing::info!(
                for_secs,
                stalls,
                "raft state persisted again: no longer stalled"
            ),
            StallLine::SnapshotNotSaved { times } => {
                tracing::warn!(times, "snapshot not saved (the log is kept)")
            }
        }
    }
}

/// A run of stalls: from the first until one resume not followed by another stall within
/// [`STALL_LOG_EVERY`].
#[derive(Debug)]
struct Run {
    since: Instant,
    stalled: bool,
    /// When the run's last line was logged.
    last_line: Instant,
    /// Stalls that began since the last line.
    stalls_unlogged: u64,
    resumed_at: Option<Instant>,
}

/// Decides which stall events become log lines.
#[derive(Debug, Default)]
pub struct StallLog {
    run: Option<Run>,
    snapshot_misses: u64,
    last_snapshot_line: Option<Instant>,
}

fn every_passed(since: Instant, now: Instant) -> bool {
    now.saturating_duration_since(since) >= STALL_LOG_EVERY
}

impl StallLog {
    /// Persisting a Ready failed for lack of space at `now` (a new stall).
    pub fn on_stalled(&mut self, now: Instant) -> Option<StallLine> {
        let over = |r: &Run| !r.stalled && r.resumed_at.is_some_and(|t| every_passed(t, now));
        match self.run.as_mut() {
            Some(r) if !over(r) => {
                r.stalled = true;
                r.stalls_unlogged += 1;
                self.continuing(now)
            }
            _ => {
                self.run = Some(Run {
                    since: now,
                    stalled: true,
                    last_line: now,
                    stalls_unlogged: 0,
                    resumed_at: None,
                });
                Some(StallLine::Started)
            }
        }
    }

    /// The stalled Ready was persisted at `now`.
    pub fn on_resumed(&mut self, now: Instant) -> Option<StallLine> {
        let r = self.run.as_mut()?;
        let first_resume = r.resumed_at.is_none();
        r.stalled = false;
        r.resumed_at = Some(now);
        if first_resume || every_passed(r.last_line, now) {
            r.last_line = now;
            let for_secs = now.saturating_duration_since(r.since).as_secs();
            let stalls = std::mem::take(&mut r.stalls_unlogged);
            return Some(StallLine::Ended { for_secs, stalls });
        }
        None
    }

    /// Called on every drive: a line every [`STALL_LOG_EVERY`] while still stalled.
    pub fn on_drive(&mut self, now: Instant) -> Option<StallLine> {
        match &self.run {
            Some(r) if r.stalled => self.continuing(now),
            _ => None,
        }
    }

    /// A snapshot was not saved for lack of space at `now`.
    pub fn on_snapshot_not_saved(&mut self, now: Instant) -> Option<StallLine> {
        self.snapshot_misses += 1;
        if self
            .last_snapshot_line
            .is_some_and(|t| !every_passed(t, now))
        {
            return None;
        }
        self.last_snapshot_line = Some(now);
        let times = std::mem::take(&mut self.snapshot_misses);
        Some(StallLine::SnapshotNotSaved { times })
    }

    fn continuing(&mut self, now: Instant) -> Option<StallLine> {
        let r = self.run.as_mut()?;
        if !every_passed(r.last_line, now) {
            return None;
        }
        r.last_line = now;
        Some(StallLine::Continuing {
            stalls: std::mem::take(&mut r.stalls_unlogged),
            for_secs: now.saturating_duration_since(r.since).as_secs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIVE: Duration = Duration::from_millis(10);

    /// Goal: one long stall, driven a hundred times a second for a minute, logs one line
    /// when it starts, one every 10 s while it lasts, one when it ends.
    #[test]
    fn a_long_stall_logs_its_start_a_line_every_ten_seconds_and_its_end() {
        let mut log = StallLog::default();
        let t0 = Instant::now();
        let mut lines = vec![log.on_stalled(t0)];
        for i in 1..6000 {
            lines.push(log.on_drive(t0 + DRIVE * i));
        }
        lines.push(log.on_resumed(t0 + Duration::from_secs(60)));
        let lines: Vec<StallLine> = lines.into_iter().flatten().collect();
        assert_eq!(lines.first(), Some(&StallLine::Started));
        let end = StallLine::Ended {
            for_secs: 60,
            stalls: 0,
        };
        assert_eq!(lines.last(), Some(&end));
        let continuing = lines.len() - 2;
        assert!((4..=6).contains(&continuing), "{lines:?}");
    }

    /// Goal: a node stalling and resuming a hundred times a second (at the edge of its
    /// disk) logs a bounded number of lines, with the counts of what it left out.
    #[test]
    fn stalls_that_keep_coming_back_are_counted_not_logged_each() {
        let mut log = StallLog::default();
        let t0 = Instant::now();
        let mut lines = Vec::new();
        for i in 0..3000u32 {
            let t = t0 + DRIVE * (2 * i);
            lines.push(log.on_stalled(t));
            lines.push(log.on_resumed(t + DRIVE));
        }
        let lines: Vec<StallLine> = lines.into_iter().flatten().collect();
        assert!(lines.len() <= 2 + 2 * 6, "60 s of flapping: {lines:?}");
        let counted: u64 = lines
            .iter()
            .map(|l| match l {
                StallLine::Continuing { stalls, .. } | StallLine::Ended { stalls, .. } => *stalls,
                _ => 0,
            })
            .sum();
        assert!(
            counted >= 2400,
            "the stalls left out are counted: {counted}"
        );
        // Quiet for longer than the interval: the next stall is a new run, logged at once.
        let later = t0 + Duration::from_secs(200);
        assert_eq!(log.on_stalled(later), Some(StallLine::Started));
    }

    #[test]
    fn snapshots_not_saved_are_logged_at_most_every_ten_seconds_with_a_count() {
        let mut log = StallLog::default();
        let t0 = Instant::now();
        let lines: Vec<StallLine> = (0..2000u32)
            .filter_map(|i| log.on_snapshot_not_saved(t0 + DRIVE * i))
            .collect();
        assert_eq!(
            lines,
            vec![
                StallLine::SnapshotNotSaved { times: 1 },
                StallLine::SnapshotNotSaved { times: 1000 },
            ]
        );
    }
}
