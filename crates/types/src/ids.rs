//! Newtypes for every identifier and counter in the system.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! newtype_u64 {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                $name(v)
            }
        }
    };
}

newtype_u64!(
    /// A Raft peer, unique within one Raft group. Never 0.
    NodeId,
    "n"
);
newtype_u64!(
    /// A Raft term (election epoch). Term 0 precedes every election.
    Term,
    "t"
);
newtype_u64!(
    /// A position in the replicated log. Index 0 is the empty prefix; entries start at 1.
    LogIndex,
    "i"
);
newtype_u64!(
    /// A replica group id in the sharded deployment.
    Gid,
    "g"
);
newtype_u64!(
    /// A shard number, `0..n_shards`.
    ShardId,
    "s"
);
newtype_u64!(
    /// A shard-controller configuration number; configs are applied in order.
    ConfigNum,
    "c"
);
newtype_u64!(
    /// A client session id, chosen at random by each clerk.
    ClientId,
    "cl"
);
newtype_u64!(
    /// A client's request number: one stream per client id, valid across every group, so a
    /// session table can tell a retry (same number) from a new request (a higher one).
    Seq,
    "#"
);

impl LogIndex {
    /// The index right after this one.
    ///
    /// # Panics
    /// At `u64::MAX`: an index never gets there by appending (2^64 entries), and every index a
    /// peer sends is checked against the local log before any arithmetic on it, so reaching
    /// it is a bug, not bad input.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0.checked_add(1).expect("log index space exhausted"))
    }

    /// The index right before this one, saturating at 0.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// The index `n` entries after this one, or `None` past `u64::MAX`.
    pub fn checked_add(self, n: u64) -> Option<LogIndex> {
        self.0.checked_add(n).map(LogIndex)
    }
}

impl Seq {
    /// The number after this one.
    ///
    /// # Panics
    /// At `u64::MAX` (a clerk would need 2^64 requests to get there).
    pub fn next(self) -> Seq {
        Seq(self
            .0
            .checked_add(1)
            .expect("request number space exhausted"))
    }
}

impl Term {
    /// The term after this one, or `None` at `u64::MAX`: no term follows the last one, and
    /// a node there can no longer campaign (a Raft core refuses messages whose term runs far
    /// ahead of its own, so honest terms never get near it).
    pub fn checked_next(self) -> Option<Term> {
        self.0.checked_add(1).map(Term)
    }

    /// The term after this one.
    ///
    /// # Panics
    /// At `u64::MAX`; use [`Term::checked_next`] where the term may come from a peer.
    pub fn next(self) -> Term {
        self.checked_next().expect("term space exhausted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_arithmetic_saturates_at_zero() {
        assert_eq!(LogIndex(0).prev(), LogIndex(0));
        assert_eq!(LogIndex(5).next(), LogIndex(6));
        assert_eq!(format!("{}", Term(3)), "t3");
    }

    #[test]
    fn term_and_index_never_wrap() {
        assert_eq!(Term(u64::MAX).checked_next(), None);
        assert_eq!(Term(7).checked_next(), Some(Term(8)));
        assert_eq!(LogIndex(u64::MAX - 1).checked_add(2), None);
        assert_eq!(LogIndex(3).checked_add(2), Some(LogIndex(5)));
        let wrapped = std::panic::catch_unwind(|| Term(u64::MAX).next());
        assert!(
            wrapped.is_err(),
            "Term::next at the limit panics, never wraps to 0"
        );
        let wrapped = std::panic::catch_unwind(|| LogIndex(u64::MAX).next());
        assert!(wrapped.is_err(), "LogIndex::next at the limit panics");
    }
}
