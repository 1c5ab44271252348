//! The config change step: the group moves from config N to N+1, one at a time, in order.

use crate::machine::ShardKv;
use crate::shard::{Shard, ShardState};
use shardkv_ctrl::{Config, GID_NONE};
use shardkv_types::ShardId;

impl ShardKv {
    /// True if `next` is the config this group takes next: the one right after its own,
    /// with the same shard count, while no shard is in migration.
    pub fn accepts(&self, next: &Config) -> bool {
        next.num.0 == self.config.num.0 + 1
            && next.shard_count() == self.config.shard_count()
            && !self.in_migration()
    }

    /// Applies `next` if [`ShardKv::accepts`] it (a duplicate or early one changes
    /// nothing). A shard gained from nobody starts empty and serving; one gained from
    /// another group is `Pulling`; a lost one is frozen as `BePulled` at this log position.
    pub(crate) fn reconfigure(&mut self, next: &Config) {
        if !self.accepts(next) {
            return;
        }
        let me = self.gid;
        for (i, (&was, &now)) in self.config.shards.iter().zip(&next.shards).enumerate() {
            let shard = ShardId(i as u64);
            match (was == me, now == me) {
                (false, true) => {
                    let state = if was == GID_NONE {
                        ShardState::Serving
                    } else {
                        ShardState::Pulling
                    };
                    let prior = self.shards.insert(shard, Shard::new(state));
                    assert!(prior.is_none(), "{me} gained {shard} it still held");
                }
                (true, false) => {
                    let s = self.shards.get_mut(&shard).expect("an owned shard is held");
                    assert_eq!(s.state, ShardState::Serving, "only a stable group moves on");
                    s.state = ShardState::BePulled;
                }
                _ => {}
            }
        }
        self.prev = std::mem::replace(&mut self.config, next.clone());
    }
}
