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
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index right before this one, saturating at 0.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl Seq {
    /// The number after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl Term {
    /// The term after this one.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
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
}
