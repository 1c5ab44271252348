//! The install step: a pulled shard enters the new owner through its log and serves at
//! once, whatever the other shards of the same config are doing.

use crate::command::{ShardChunk, ShardOutput};
use crate::machine::ShardKv;
use crate::shard::ShardState;
use shardkv_rsm::Sessions;
use shardkv_types::{ConfigNum, ShardId};

impl ShardKv {
    /// Installs `chunk` of `shard` if the group is in config `num`, still pulling it, and
    /// the chunk starts right after what is installed (`after`): idempotent by config
    /// number, shard and position. The last chunk merges the sessions that came with it
    /// (keeping the newer per client) and the shard serves from then on.
    pub(crate) fn install(
        &mut self,
        num: ConfigNum,
        shard: ShardId,
        after: Option<&[u8]>,
        chunk: &ShardChunk,
        sessions: &mut Sessions<ShardOutput>,
    ) {
        if self.config.num != num {
            return;
        }
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        if s.state != ShardState::Pulling || s.pulled_to.as_deref() != after {
            return;
        }
        for (k, v) in &chunk.entries {
            assert!(
                s.pulled_to.as_ref().is_none_or(|p| p < k),
                "chunks arrive in key order"
            );
            s.store.insert(k.clone(), v.clone());
            s.pulled_to = Some(k.clone());
        }
        if let Some(theirs) = &chunk.sessions {
            sessions.merge(theirs);
            s.state = ShardState::Serving;
            s.pulled_to = None;
        }
    }
}
