//! What a client is told.

use serde::{Deserialize, Serialize};
use shardkv_types::NodeId;
use std::fmt;

/// An identifier the shell gives each request so it can route the reply back.
pub type ReqId = u64;

/// Why a request did not produce an output. `NotLeader`, `Busy` and `TooLarge` mean the
/// request surely did not apply; `LostLeadership` and `Stale` mean it may have. The client
/// may always retry with the same sequence number: the session table answers a retry of an
/// applied write with its stored reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RsmError {
    /// Not the leader (or lost leadership before the request committed; it may still
    /// commit under the new leader, so retry with the same sequence number).
    NotLeader { leader: Option<NodeId> },
    /// The write was proposed here, but this node lost leadership (or its entry was replaced,
    /// or covered by a newer leader's snapshot) before it learned the outcome: it may still
    /// apply under the new leader. Retry with the same sequence number.
    LostLeadership { leader: Option<NodeId> },
    /// Too many requests in flight; retry later.
    Busy,
    /// The request exceeds a size limit.
    TooLarge { bytes: usize, max: usize },
    /// A request older than the client's latest; the client already has its answer.
    Stale,
}

impl fmt::Display for RsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RsmError::NotLeader { leader: Some(l) } => write!(f, "not the leader; try {l}"),
            RsmError::NotLeader { leader: None } => write!(f, "not the leader; leader unknown"),
            RsmError::LostLeadership { .. } => {
                write!(
                    f,
                    "leadership lost after the write was proposed; it may still apply"
                )
            }
            RsmError::Busy => write!(f, "server busy; retry later"),
            RsmError::TooLarge { bytes, max } => {
                write!(f, "request of {bytes} bytes exceeds the limit of {max}")
            }
            RsmError::Stale => write!(f, "request older than the client's latest"),
        }
    }
}

impl std::error::Error for RsmError {}

/// The answer to one request.
pub type Reply<O> = Result<O, RsmError>;
