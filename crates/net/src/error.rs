//! `ReplyError`: why a server did not answer a request with an output.

use shardkv_rsm::RsmError;
use shardkv_types::NodeId;
use std::fmt;

/// A server's refusal, as it travels on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// Not the leader; retry at `leader` if known. Surely not applied here.
    NotLeader { leader: Option<NodeId> },
    /// The write was proposed but the server lost leadership before learning its outcome:
    /// it may still apply. Retry with the same sequence number.
    LostLeadership { leader: Option<NodeId> },
    /// Too many requests in flight; retry later. Surely not applied.
    Busy,
    /// A size limit was exceeded. Surely not applied.
    TooLarge { bytes: u64, max: u64 },
    /// Older than the client's latest request (a client bug or a very late duplicate).
    Stale,
    /// The server's deadline passed before the outcome was known: the request may have
    /// applied; retry with the same sequence number.
    Timeout,
    /// The disk is (nearly) full: writes are refused, reads keep working. Surely not applied.
    NoSpace,
    /// The server cannot take requests now (shutting down, inbox full). Surely not applied.
    Unavailable { reason: String },
}

impl ReplyError {
    /// True when the request surely did not apply (a retry with the same sequence number is
    /// still safe either way).
    pub fn surely_not_applied(&self) -> bool {
        !matches!(
            self,
            ReplyError::Timeout | ReplyError::Stale | ReplyError::LostLeadership { .. }
        )
    }
}

impl From<RsmError> for ReplyError {
    fn from(e: RsmError) -> Self {
        match e {
            RsmError::NotLeader { leader } => ReplyError::NotLeader { leader },
            RsmError::LostLeadership { leader } => ReplyError::LostLeadership { leader },
            RsmError::Busy => ReplyError::Busy,
            RsmError::TooLarge { bytes, max } => ReplyError::TooLarge {
                bytes: bytes as u64,
                max: max as u64,
            },
            RsmError::Stale => ReplyError::Stale,
        }
    }
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NotLeader { leader: Some(l) } => write!(f, "not the leader; try {l}"),
            ReplyError::NotLeader { leader: None } => write!(f, "not the leader; leader unknown"),
            ReplyError::LostLeadership { .. } => write!(
                f,
                "leadership lost after the write was proposed; it may still apply"
            ),
            ReplyError::Busy => write!(f, "server busy; retry later"),
            ReplyError::TooLarge { bytes, max } => {
                write!(
                    f,
                    "request of {bytes} bytes exceeds the limit of {max} bytes"
                )
            }
            ReplyError::Stale => write!(f, "request older than the client's latest"),
            ReplyError::Timeout => {
                write!(f, "server deadline passed; the request may have applied")
            }
            ReplyError::NoSpace => {
                write!(f, "no space left on the server's disk; writes are refused")
            }
            ReplyError::Unavailable { reason } => write!(f, "server unavailable: {reason}"),
        }
    }
}

impl std::error::Error for ReplyError {}
