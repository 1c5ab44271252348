//! What the controller is asked (commands through the log, queries by ReadIndex) and what it
//! answers.

use crate::config::Config;
use serde::{Deserialize, Serialize};
use shardkv_types::{ConfigNum, Gid, ShardId};
use std::collections::BTreeMap;
use std::fmt;

/// A change to the configuration, carried in the controller's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtrlCommand {
    /// Add groups (gid → server addresses), then rebalance.
    Join { groups: BTreeMap<Gid, Vec<String>> },
    /// Remove groups, then rebalance their shards over the rest.
    Leave { gids: Vec<Gid> },
    /// Assign one shard to one member, exactly; no rebalance.
    Move { shard: ShardId, gid: Gid },
    /// Replace the server list of a joined group (after its membership changed: `shardkv
    /// member`); shards stay where they are.
    Servers { gid: Gid, servers: Vec<String> },
}

/// A read of one configuration: `None`, or a number past the latest, means the latest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtrlQuery {
    pub num: Option<ConfigNum>,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtrlReply {
    /// A command made this config. Small, because it is kept in client sessions.
    Applied { num: ConfigNum },
    /// A query's config.
    Config(Config),
}

/// Why a command was refused. A refused command changes nothing (no new config), and is an
/// output, so every replica records the same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtrlError {
    /// A Join with no groups.
    JoinEmpty,
    /// A Join of `GID_NONE`, which stands for "unassigned".
    ReservedGid,
    /// A Join of a gid that is already a member.
    AlreadyMember(Gid),
    /// A Join of a group with no servers.
    NoServers(Gid),
    /// A Leave with no gids.
    LeaveEmpty,
    /// A Leave naming a gid more than once.
    DuplicateGid(Gid),
    /// A Leave or Move naming a gid that is not a member.
    NotMember(Gid),
    /// A Move of a shard past the shard count.
    ShardOutOfRange { shard: ShardId, shards: u32 },
}

impl fmt::Display for CtrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtrlError::JoinEmpty => write!(f, "join names no groups"),
            CtrlError::ReservedGid => write!(
                f,
                "{} is reserved for unassigned shards and cannot join",
                Gid(0)
            ),
            CtrlError::AlreadyMember(g) => write!(f, "group {g} is already a member"),
            CtrlError::NoServers(g) => write!(f, "group {g} has no servers"),
            CtrlError::LeaveEmpty => write!(f, "leave names no groups"),
            CtrlError::DuplicateGid(g) => write!(f, "group {g} is named more than once"),
            CtrlError::NotMember(g) => write!(f, "group {g} is not a member"),
            CtrlError::ShardOutOfRange { shard, shards } => {
                write!(
                    f,
                    "shard {shard} is out of range: there are {shards} shards"
                )
            }
        }
    }
}

impl std::error::Error for CtrlError {}

/// Every answer: a command's or a query's.
pub type CtrlOutput = Result<CtrlReply, CtrlError>;
