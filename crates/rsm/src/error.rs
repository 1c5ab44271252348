//! [`Error`]: the one error type of shardkv's request path. The replica produces it, the
//! wire carries it unchanged, the clerk core decides on it, and the client library returns
//! it to the user. Every variant says whether the request may have applied
//! ([`Error::outcome`]).

use serde::{Deserialize, Serialize};
use shardkv_types::{Gid, NodeId};
use std::fmt;

/// How an operation ended, as far as its client can tell (what a history checker needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It took effect; its output is known.
    Ok,
    /// It surely did not take effect.
    Failed,
    /// It may or may not have taken effect (and may still take effect later).
    Unknown,
}

/// Why a request did not produce an output.
///
/// `LostLeadership`, `Stale`, `SessionExpired` and `Timeout` leave open whether the request applied; every
/// other variant means it surely did not. A client may always retry with the same sequence
/// number: the session table answers a retry of an applied write with its stored reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Error {
    /// Not the leader; retry at `leader` if known. Surely not applied.
    NotLeader { leader: Option<NodeId> },
    /// The write was proposed here, but this member lost leadership (or its entry was
    /// replaced, or covered by a newer leader's snapshot) before it learned the outcome: it
    /// may still apply under the new leader. Retry with the same sequence number.
    LostLeadership { leader: Option<NodeId> },
    /// This group does not serve the request's shard (now): the client's configuration is
    /// out of date. Surely not applied, and not recorded in the session table.
    WrongGroup { gid: Gid },
    /// Too many requests in flight; retry later. Surely not applied.
    Busy,
    /// A size limit was exceeded. Surely not applied.
    TooLarge { bytes: u64, max: u64 },
    /// The request is invalid for this state machine (e.g. a controller command naming an
    /// unknown group). Surely not applied.
    Invalid { reason: String },
    /// Older than the client's latest request: the client already moved on, so this one's
    /// fate is unknown to it.
    Stale,
    /// A retry of a write that may have applied, but the group no longer holds the
    /// client's session (it expired or was evicted: the table is bounded), so it cannot
    /// tell; the write is not applied again. It may have applied.
    SessionExpired,
    /// A retry of a compare-and-swap that already failed (did not swap): the value it
    /// found (`bytes` long) was too large to keep for retries. Surely not applied (a failed
    /// CAS changes nothing); read the key to see its value.
    CasFailed { bytes: u64 },
    /// The outcome was not learned in time (a server deadline passed, or the client gave
    /// up); the request may have applied. `detail` says what was waited for.
    Timeout { detail: String },
    /// The disk is (nearly) full: writes are refused, reads keep working. Surely not applied.
    NoSpace,
    /// No server could take the request (shutting down, unreachable, inbox full, invalid
    /// endpoints). Surely not applied.
    Unavailable { reason: String },
}

impl Error {
    /// Whether the request applied, as far as the client can tell.
    pub fn outcome(&self) -> Outcome {
        if self.may_have_applied() {
            Outcome::Unknown
        } else {
            Outcome::Failed
        }
    }

    /// True when the request may have applied (or may still apply).
    pub fn may_have_applied(&self) -> bool {
        matches!(
            self,
            Error::LostLeadership { .. }
                | Error::Stale
                | Error::SessionExpired
                | Error::Timeout { .. }
        )
    }

    /// The leader a `NotLeader` or `LostLeadership` answer names.
    pub fn leader_hint(&self) -> Option<NodeId> {
        match self {
            Error::NotLeader { leader } | Error::LostLeadership { leader } => *leader,
            _ => None,
        }
    }

    /// A short stable name, for reports and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotLeader { .. } => "not_leader",
            Error::LostLeadership { .. } => "lost_leadership",
            Error::WrongGroup { .. } => "wrong_group",
            Error::Busy => "busy",
            Error::TooLarge { .. } => "too_large",
            Error::Invalid { .. } => "invalid",
            Error::Stale => "stale",
            Error::SessionExpired => "session_expired",
            Error::CasFailed { .. } => "cas_failed",
            Error::Timeout { .. } => "timeout",
            Error::NoSpace => "no_space",
            Error::Unavailable { .. } => "unavailable",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotLeader { leader: Some(l) } => {
                write!(f, "not the leader (last hint: {l}); not applied")
            }
            Error::NotLeader { leader: None } => {
                write!(
                    f,
                    "not the leader, leader unknown (none elected?); not applied"
                )
            }
            Error::LostLeadership { .. } => write!(
                f,
                "leadership lost after the write was proposed; it may still apply"
            ),
            Error::WrongGroup { gid } => write!(
                f,
                "group {gid} does not serve this key's shard now; not applied"
            ),
            Error::Busy => write!(f, "server busy; retry later; not applied"),
            Error::TooLarge { bytes, max } => write!(
                f,
                "request of {bytes} bytes exceeds the limit of {max} bytes; not applied"
            ),
            Error::Invalid { reason } => write!(f, "invalid request: {reason}; not applied"),
            Error::Stale => write!(
                f,
                "request older than the client's latest; it may have applied"
            ),
            Error::SessionExpired => write!(
                f,
                "retried write whose client session expired on the server; it may have applied"
            ),
            Error::CasFailed { bytes } => write!(
                f,
                "compare-and-swap did not swap: the value it found ({bytes} bytes) is not \
                 kept for retries, read the key; not applied"
            ),
            Error::Timeout { detail } => {
                write!(f, "{detail}; the operation may have applied")
            }
            Error::NoSpace => write!(
                f,
                "the server's disk is full: writes are refused (reads still work); not applied"
            ),
            Error::Unavailable { reason } => write!(f, "unavailable: {reason}; not applied"),
        }
    }
}

impl std::error::Error for Error {}

/// The answer to one request.
pub type Reply<O> = Result<O, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lost_leadership_stale_expired_and_timeout_may_have_applied() {
        let unknown = [
            Error::LostLeadership { leader: None },
            Error::Stale,
            Error::SessionExpired,
            Error::Timeout {
                detail: "deadline".into(),
            },
        ];
        for e in unknown {
            assert_eq!(e.outcome(), Outcome::Unknown, "{e}");
        }
        let failed = [
            Error::NotLeader { leader: None },
            Error::WrongGroup { gid: Gid(1) },
            Error::Busy,
            Error::TooLarge { bytes: 2, max: 1 },
            Error::Invalid { reason: "x".into() },
            Error::NoSpace,
            Error::Unavailable { reason: "x".into() },
            Error::CasFailed { bytes: 9 },
        ];
        for e in failed {
            assert_eq!(e.outcome(), Outcome::Failed, "{e}");
            assert!(e.to_string().ends_with("not applied"), "{e}");
        }
    }
}
