//! [`ConnectLog`]: what the peer transport says about a peer it cannot connect to. A peer
//! that is down, or whose name does not resolve (yet: a pod not scheduled, a DNS record
//! not published), is retried with backoff for as long as it is a member; an operator
//! needs to see that, but a retry every second must not write a line every second.

use std::time::{Duration, Instant};

/// How often a peer that stays unreachable is logged again.
pub const UNREACHABLE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// One peer's connection failures since it was last reachable, and when they were last
/// logged. Invariant: `reported <= failing`.
#[derive(Debug, Default)]
pub(crate) struct ConnectLog {
    /// Failed attempts in a row.
    failing: u64,
    /// `failing` when the last warning was logged, and when.
    reported: u64,
    logged_at: Option<Instant>,
}

/// What to log after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Say {
    Nothing,
    /// A warning: the peer is unreachable; `failures` attempts failed since the last one
    /// (the first failure, or [`UNREACHABLE_LOG_INTERVAL`] later).
    Unreachable {
        failures: u64,
    },
    /// The peer is reachable again after `failures` failed attempts that were logged.
    Reachable {
        failures: u64,
    },
}

impl ConnectLog {
    /// An attempt failed at `now`.
    pub(crate) fn failed(&mut self, now: Instant) -> Say {
        self.failing += 1;
        let due = self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= UNREACHABLE_LOG_INTERVAL);
        if !due {
            return Say::Nothing;
        }
        let failures = self.failing - self.reported;
        (self.reported, self.logged_at) = (self.failing, Some(now));
        Say::Unreachable { failures }
    }

    /// An attempt succeeded.
    pub(crate) fn connected(&mut self) -> Say {
        let was = std::mem::take(self);
        match was.logged_at {
            Some(_) => Say::Reachable {
                failures: was.failing,
            },
            None => Say::Nothing,
        }
    }
}

/// `e` and the errors under it, `: `-separated (a transport error's own text is only
/// "transport error"; the cause, such as a failed name lookup, is below it).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let below = s.to_string();
        if !text.ends_with(&below) {
            text = format!("{text}: {below}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_peer_is_logged_at_once_then_once_per_interval() {
        // Goal: a peer retried every few ms makes one line per interval, with the count,
        // and one line when it comes back. Method: feed failures at chosen instants.
        let t0 = Instant::now();
        let mut log = ConnectLog::default();
        assert_eq!(log.connected(), Say::Nothing, "nothing to report");
        assert_eq!(log.failed(t0), Say::Unreachable { failures: 1 });
        for i in 1..100 {
            assert_eq!(log.failed(t0 + Duration::from_millis(i * 10)), Say::Nothing);
        }
        let later = t0 + UNREACHABLE_LOG_INTERVAL;
        assert_eq!(log.failed(later), Say::Unreachable { failures: 100 });
        assert_eq!(log.failed(later), Say::Nothing);
        assert_eq!(log.connected(), Say::Reachable { failures: 102 });
        assert_eq!(
            log.failed(later),
            Say::Unreachable { failures: 1 },
            "a new outage is logged at once"
        );
    }
}
