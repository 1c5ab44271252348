//! The install step: a pulled shard enters the new owner through its log and serves at
//! once, whatever the other shards of the same config are doing.

use crate::command::{ShardExport, ShardOutput};
use crate::machine::ShardKv;
use crate::shard::ShardState;
use shardkv_rsm::Sessions;
use shardkv_types::{ConfigNum, ShardId};

impl ShardKv {
    /// Installs `export` as `shard` if the group is in config `num` and still pulling it
    /// (idempotent by config number and shard); the sessions that came with it are merged,
    /// keeping the newer per client.
    pub(crate) fn install(
        &mut self,
        num: ConfigNum,
        shard: ShardId,
        export: &ShardExport,
        sessions: &mut Sessions<ShardOutput>,
    ) {
        if self.config.num != num {
            return;
        }
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        if s.state != ShardState::Pulling {
            return;
        }
        assert!(s.store.is_empty(), "a pulling shard holds no data");
        s.store = export.store.clone();
        s.state = ShardState::Serving;
        sessions.merge(&export.sessions);
    }
}
