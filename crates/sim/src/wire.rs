//! [`Envelope`]: a Raft message as it crosses the simulated wire, stamped with the cluster
//! and the group it belongs to, as the production transport's batches are (DESIGN §4).

use serde::{Deserialize, Serialize};
use shardkv_raft::Message;
use shardkv_types::Gid;

/// A Raft message and its identity. A node steps it only if both the cluster and the group
/// are its own; anything else is dropped and counted (`NetStats::misdirected`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub cluster: u64,
    pub gid: Gid,
    pub msg: Message,
}
