//! The delete step: the old owner drops a shard it gave away once the new owner confirmed
//! it installed it.

use crate::machine::ShardKv;
use crate::shard::ShardState;
use shardkv_types::{ConfigNum, ShardId};

impl ShardKv {
    /// Deletes `shard` if it is `BePulled` in config `num` (idempotent).
    pub(crate) fn delete(&mut self, num: ConfigNum, shard: ShardId) {
        if self.config.num != num {
            return;
        }
        if self.shard_state(shard) == Some(ShardState::BePulled) {
            self.shards.remove(&shard);
        }
    }
}
