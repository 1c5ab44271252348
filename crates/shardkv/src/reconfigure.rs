//! The config change step: the group moves from config N to N+1, one at a time, in order.

use crate::machine::ShardKv;
use crate::shard::{Shard, ShardState, Source};
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
    /// nothing), shard by shard, at this log position:
    /// - gained: from another group → `Pulling` from it; from nobody → taken from the group
    ///   that parked it (`Pulling`, or `Serving` if that is this group), or `Serving` empty
    ///   if it never had an owner;
    /// - lost to another group → `BePulled` (frozen until the new owner confirms);
    /// - lost to nobody → `Parked` (frozen and kept, configs go on);
    /// - parked here and given to another group → `BePulled`.
    pub(crate) fn reconfigure(&mut self, next: &Config) {
        if !self.accepts(next) {
            return;
        }
        let me = self.gid;
        let owners = std::mem::take(&mut self.config.shards);
        for (i, (&was, &now)) in owners.iter().zip(&next.shards).enumerate() {
            if was == now {
                continue;
            }
            let shard = ShardId(i as u64);
            let source = if was == GID_NONE {
                self.parked.remove(&shard)
            } else {
                let servers = self.config.groups.get(&was).cloned().unwrap_or_default();
                Some(Source { gid: was, servers })
            };
            if now == GID_NONE {
                let keeper = source.clone().expect("a shard parked by nobody was owned");
                self.parked.insert(shard, keeper);
            }
            if now == me {
                self.gain(shard, source);
            } else if source.as_ref().is_some_and(|s| s.gid == me) {
                let s = self.shards.get_mut(&shard).expect("a kept shard is held");
                let from = if was == me {
                    ShardState::Serving
                } else {
                    ShardState::Parked
                };
                assert_eq!(s.state, from, "{me} gives away {shard} from a stable state");
                s.state = if now == GID_NONE {
                    ShardState::Parked
                } else {
                    ShardState::BePulled
                };
            }
        }
        self.config.shards = owners;
        self.prev = std::mem::replace(&mut self.config, next.clone());
    }

    fn gain(&mut self, shard: ShardId, source: Option<Source>) {
        let me = self.gid;
        match source {
            // Parked here: it serves again as it was.
            Some(src) if src.gid == me => {
                let s = self.shards.get_mut(&shard).expect("a parked shard is held");
                assert_eq!(
                    s.state,
                    ShardState::Parked,
                    "{me} regains {shard} it parked"
                );
                s.state = ShardState::Serving;
            }
            Some(src) => {
                let prior = self.shards.insert(shard, Shard::pulling(src));
                assert!(prior.is_none(), "{me} gained {shard} it still held");
            }
            None => {
                let prior = self.shards.insert(shard, Shard::new(ShardState::Serving));
                assert!(prior.is_none(), "{me} gained {shard} it still held");
            }
        }
    }
}
