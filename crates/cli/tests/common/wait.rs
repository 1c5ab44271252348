//! Bounded polling for the real-process tests (shared by the KV and MapReduce suites).

use std::time::{Duration, Instant};

/// How often `wait_until` checks its condition.
pub const WAIT_POLL: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds; panics naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(WAIT_POLL);
    }
}
