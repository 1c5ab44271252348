//! One shard as a group holds it: its migration state and its data.

use serde::{Deserialize, Serialize};
use shardkv_kv::KvStore;

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
}

/// A shard held by the group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub state: ShardState,
    pub store: KvStore,
    /// While `Pulling`: the last key installed so far (`None`: nothing yet). Chunks are
    /// pulled and installed in key order.
    pub pulled_to: Option<Vec<u8>>,
}

impl Shard {
    pub fn new(state: ShardState) -> Shard {
        Shard {
            state,
            store: KvStore::default(),
            pulled_to: None,
        }
    }

    /// True when the shard is moving (pulled or to be pulled): the group waits for it
    /// before taking the next config.
    pub fn in_migration(&self) -> bool {
        self.state != ShardState::Serving
    }
}
