//! Errors the core returns to the application. They are operating conditions, never bugs.

use shardkv_types::NodeId;
use std::fmt;

/// Why a proposal or a read was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This node is not the leader; `leader` is its best guess of who is.
    NotLeader { leader: Option<NodeId> },
    /// A leadership transfer is in progress; retry shortly.
    TransferInProgress,
    /// Too many uncommitted entries or pending reads; retry later.
    Busy,
    /// The command exceeds `Config::proposal_bytes_max`.
    TooLarge { bytes: usize, max: usize },
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader { leader: Some(l) } => write!(f, "not the leader (try {l})"),
            ProposeError::NotLeader { leader: None } => {
                write!(f, "not the leader (leader unknown)")
            }
            ProposeError::TransferInProgress => write!(f, "leadership transfer in progress"),
            ProposeError::Busy => write!(f, "too many requests pending; retry later"),
            ProposeError::TooLarge { bytes, max } => {
                write!(
                    f,
                    "command of {bytes} bytes exceeds the limit of {max} bytes"
                )
            }
        }
    }
}

impl std::error::Error for ProposeError {}
