//! Errors the core returns to the application. They are operating conditions, never bugs.

use shardkv_types::{ConfError, LogIndex, NodeId};
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
    /// A membership change is refused while the previous one (at `index`) is not committed:
    /// one server at a time.
    ConfChangePending { index: LogIndex },
    /// A membership change is refused until this leader has committed an entry of its own
    /// term (its no-op): before that an uncommitted change of an earlier leader could still
    /// be in flight (thesis §4.1, the fix to the single-server change bug). Retry shortly.
    LeaderNotReady,
    /// The membership change does not apply to the current membership.
    ConfChange(ConfError),
    /// The learner to promote is too far behind the leader's log (`Config::promote_lag_max`);
    /// retry once it caught up.
    LearnerBehind {
        node: NodeId,
        matched: LogIndex,
        last: LogIndex,
    },
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
            ProposeError::ConfChangePending { index } => write!(
                f,
                "the membership change at {index} is not committed yet; one change at a time"
            ),
            ProposeError::LeaderNotReady => write!(
                f,
                "the new leader has not committed an entry of its term yet; retry shortly"
            ),
            ProposeError::ConfChange(e) => write!(f, "membership change refused: {e}"),
            ProposeError::LearnerBehind {
                node,
                matched,
                last,
            } => write!(
                f,
                "learner {node} is behind (it holds the log up to {matched}, the leader's ends \
                 at {last}); promote it once it caught up"
            ),
        }
    }
}

impl std::error::Error for ProposeError {}
