//! One shard as a group holds it: its migration state and its data.

use crate::chunk::Cursor;
use serde::{Deserialize, Serialize};
use shardkv_kv::KvStore;
use shardkv_types::Gid;

/// Where a shard this group holds stands in the current config. A shard the group holds
/// nothing of (not owned, nothing to give away) has no entry at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardState {
    /// Owned in the current config and installed: reads and writes are served.
    Serving,
    /// Owned in the current config, but its data is still at the previous owner: waiting
    /// for the pull and the install. Nothing is served.
    Pulling,
    /// Owned in the previous config, not in the current one: frozen (nothing served), kept
    /// until the new owner confirms it installed it, then deleted.
    BePulled,
    /// Owned by nobody now (every group left), last owned here: frozen and kept, without
    /// holding up configs, until a config gives it to a group, which takes it from here.
    Parked,
}

/// Where a shard being pulled comes from: its last owner and that owner's servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub gid: Gid,
    pub servers: Vec<String>,
}

/// A shard held by the group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub state: ShardState,
    pub store: KvStore,
    /// While `Pulling`: how far the install got. Chunks are pulled and installed in order.
    pub pulled_to: Cursor,
    /// While `Pulling`: the group to pull from.
    pub source: Option<Source>,
}

impl Shard {
    pub fn new(state: ShardState) -> Shard {
        Shard {
            state,
            store: KvStore::default(),
            pulled_to: Cursor::Start,
            source: None,
        }
    }

    /// A shard to pull from `source`.
    pub fn pulling(source: Source) -> Shard {
        Shard {
            source: Some(source),
            ..Shard::new(ShardState::Pulling)
        }
    }

    /// True when the shard is moving (pulled or to be pulled): the group waits for it
    /// before taking the next config.
    pub fn in_migration(&self) -> bool {
        matches!(self.state, ShardState::Pulling | ShardState::BePulled)
    }
}
