//! Messages no honest, intact peer sends, and events an operator must hear about: each is
//! counted and logged (warn), at most once per kind per election timeout so that a peer
//! sending a flood of them cannot flood the log; the suppressed count goes with the next
//! line.
//!
//! The core has no clock: "per election timeout" is counted in ticks, which keeps it
//! deterministic.

use std::collections::BTreeMap;
use std::fmt;

/// How far ahead of the local term a single message's term may be. Terms grow by one per
/// election; with PreVote (the default) only elections a majority agreed could succeed
/// raise them, so even a member partitioned away for years stays far below this. A message
/// further ahead would move the term at once past anything the group can reach: refused.
///
/// Limitation: the bound is relative, so two members whose terms drift more than 2^20
/// apart never talk again, and the term is persisted, so a restart does not help. That
/// happens to a member that runs without PreVote while isolated (it raises its own term
/// every election timeout, passing the bound after about six days at 500 ms), and to a
/// member that was down while the rest of the group went through more than 2^20 elections
/// (it refuses every leader). Each side logs [`Anomaly::TermTooFarAhead`] (rate-limited);
/// the remedy is to remove the member from the group and add it back with a new data dir.
/// Accepting far-ahead terms from leader messages would fix the second case but let one
/// forged heartbeat push the whole group's term to any value, which is what this bound
/// exists to refuse when peer traffic is not authenticated (no TLS).
pub const TERM_JUMP_MAX: u64 = 1 << 20;

/// The highest log index a peer may name in an entry or a snapshot. No log gets near 2^63
/// entries; a larger index would only bring `u64` overflow within reach.
pub const INDEX_MAX: u64 = u64::MAX >> 1;

/// What the core refused or noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anomaly {
    /// A message whose term is more than [`TERM_JUMP_MAX`] ahead of the local one: dropped,
    /// the local term does not move.
    TermTooFarAhead,
    /// An append (or snapshot) acknowledgement for an index beyond anything the leader sent
    /// that peer in this term: dropped, nothing is committed on it.
    AckBeyondSent,
    /// A rejection of an index the leader never sent, or whose conflict hint points past
    /// the rejected index: dropped.
    ImpossibleReject,
    /// A heartbeat asking to commit past this follower's last index (the leader believes
    /// this log is longer than it is): the commit part is ignored.
    CommitBeyondLog,
    /// An append whose entries are not contiguous after its `prev_log_index`, whose terms go
    /// backwards or past the message's term, or whose indexes pass [`INDEX_MAX`]: dropped
    /// whole. Also an append this follower refuses after a `prev_log_index` inside its
    /// snapshot: it contradicts committed entries, which no honest leader does: unanswered.
    MalformedAppend,
    /// A snapshot chunk whose index passes [`INDEX_MAX`] or whose term is newer than the
    /// sender's: dropped.
    MalformedSnapshot,
    /// This node's term is `u64::MAX` (only reachable before the term bound existed): it
    /// cannot campaign any more.
    TermExhausted,
    /// Not a refusal: a follower reported a log shorter than what it had acknowledged (its
    /// data was lost); the leader forgets its match index and sends the log again.
    FollowerLogLost,
}

impl Anomaly {
    /// Every kind.
    pub const ALL: [Anomaly; 8] = [
        Anomaly::TermTooFarAhead,
        Anomaly::AckBeyondSent,
        Anomaly::ImpossibleReject,
        Anomaly::CommitBeyondLog,
        Anomaly::MalformedAppend,
        Anomaly::MalformedSnapshot,
        Anomaly::TermExhausted,
        Anomaly::FollowerLogLost,
    ];
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Anomaly::TermTooFarAhead => "refused a message whose term is far beyond ours",
            Anomaly::AckBeyondSent => {
                "ignored an acknowledgement of entries this leader never sent that peer"
            }
            Anomaly::ImpossibleReject => "ignored an impossible append rejection",
            Anomaly::CommitBeyondLog => "ignored a commit index beyond this follower's log",
            Anomaly::MalformedAppend => "refused a malformed append",
            Anomaly::MalformedSnapshot => "refused a malformed snapshot chunk",
            Anomaly::TermExhausted => "the term is at its maximum: this node cannot campaign",
            Anomaly::FollowerLogLost => {
                "a follower lost entries it had acknowledged (data dir wiped?): resending its log"
            }
        })
    }
}

/// Per-kind counts and the rate limit of the log lines.
#[derive(Debug, Default)]
pub(crate) struct Anomalies {
    counts: BTreeMap<Anomaly, u64>,
    /// Per kind: the tick of the last line logged and the occurrences since.
    logged: BTreeMap<Anomaly, (u64, u64)>,
}

impl Anomalies {
    /// Counts one occurrence. Returns the number of occurrences suppressed since the last
    /// line if this one is to be logged: the first of its kind, or the first after `window`
    /// ticks without a line of its kind.
    pub(crate) fn note(&mut self, kind: Anomaly, now: u64, window: u64) -> Option<u64> {
        *self.counts.entry(kind).or_default() += 1;
        match self.logged.get_mut(&kind) {
            Some((last, suppressed)) if now.saturating_sub(*last) < window => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                self.logged.insert(kind, (now, 0));
                Some(0)
            }
        }
    }

    pub(crate) fn count(&self, kind: Anomaly) -> u64 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_rate_limited_per_kind() {
        let mut a = Anomalies::default();
        assert_eq!(a.note(Anomaly::AckBeyondSent, 0, 50), Some(0));
        for t in 1..50 {
            assert_eq!(a.note(Anomaly::AckBeyondSent, t, 50), None);
        }
        assert_eq!(
            a.note(Anomaly::TermTooFarAhead, 10, 50),
            Some(0),
            "kinds are apart"
        );
        assert_eq!(a.note(Anomaly::AckBeyondSent, 50, 50), Some(49));
        assert_eq!(a.count(Anomaly::AckBeyondSent), 51);
    }
}
