//! The errors an operation of the async client ends with, and what each says about whether
//! the operation applied.

use shardkv_types::NodeId;
use std::fmt;
use std::time::Duration;

/// How an operation ended, as a history checker needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It took effect; its output is known.
    Ok,
    /// It surely did not take effect.
    Failed,
    /// It may or may not have taken effect (and may still take effect later).
    Unknown,
}

/// Why an operation did not return an output.
///
/// Only [`Error::Timeout`] leaves open whether the operation applied; every other variant
/// means it surely did not ([`Error::outcome`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Gave up: the servers kept answering that they are not the leader (no leader elected
    /// in time). Surely not applied.
    WrongLeader { leader: Option<NodeId> },
    /// Gave up without knowing the outcome: some attempt reached a server that did not
    /// answer in time (or the connection broke mid-request). May have applied.
    Timeout { elapsed: Duration, last: String },
    /// A size limit was exceeded. Surely not applied.
    TooLarge { bytes: u64, max: u64 },
    /// The leader's disk is full; writes are refused until space frees. Surely not applied.
    NoSpace,
    /// No server could take the request (none reachable, all shutting down or overloaded),
    /// or the endpoints are invalid. Surely not applied.
    Unavailable { reason: String },
}

impl Error {
    /// Whether the operation applied, as far as the client can tell.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Timeout { .. } => Outcome::Unknown,
            _ => Outcome::Failed,
        }
    }

    /// True when the operation may have applied.
    pub fn may_have_applied(&self) -> bool {
        self.outcome() == Outcome::Unknown
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WrongLeader { leader: Some(l) } => {
                write!(
                    f,
                    "no leader accepted the request (last hint: {l}); not applied"
                )
            }
            Error::WrongLeader { leader: None } => {
                write!(
                    f,
                    "no leader accepted the request (none elected?); not applied"
                )
            }
            Error::Timeout { elapsed, last } => write!(
                f,
                "gave up after {elapsed:.1?} without a definite answer ({last}); \
                 the operation may have applied"
            ),
            Error::TooLarge { bytes, max } => write!(
                f,
                "request of {bytes} bytes exceeds the limit of {max} bytes; not applied"
            ),
            Error::NoSpace => write!(
                f,
                "the server's disk is full: writes are refused (reads still work); not applied"
            ),
            Error::Unavailable { reason } => write!(f, "unavailable: {reason}; not applied"),
        }
    }
}

impl std::error::Error for Error {}
