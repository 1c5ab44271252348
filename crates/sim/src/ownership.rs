//! [`OwnershipCheck`]: the sharded store's safety invariant, sampled over time — for every
//! config number, at most one group has a shard `Serving`, and a group serves a shard only
//! if its own config assigns the shard to it. Every live shard group member's state
//! machine is sampled; a violation fails the run with the seed.

use crate::world::WorldSim;
use shardkv_shardkv::ShardState;
use shardkv_types::{ConfigNum, Gid, ShardId};
use std::collections::BTreeMap;

/// Who was seen serving each shard at each config number.
#[derive(Debug, Default)]
pub struct OwnershipCheck {
    serving: BTreeMap<(ConfigNum, ShardId), Gid>,
    /// Samples taken so far.
    pub samples: u64,
}

impl OwnershipCheck {
    /// Looks at every live shard group member now; fails the run on a violation.
    pub fn sample(&mut self, sim: &WorldSim) {
        self.samples += 1;
        for (id, n) in &sim.nodes {
            let Some(g) = n.app.as_ref().and_then(|a| a.shard_group()) else {
                continue;
            };
            if !n.is_up() {
                continue;
            }
            let sm = g.state_machine();
            let (gid, num) = (sm.gid(), sm.config().num);
            for (&shard, s) in sm.shards() {
                if s.state != ShardState::Serving {
                    continue;
                }
                if sm.config().owner(shard) != Some(gid) {
                    sim.fail(&format!(
                        "{id} of group {gid} serves {shard} in config {num}, which gives it to \
                         {:?}",
                        sm.config().owner(shard)
                    ));
                }
                let first = *self.serving.entry((num, shard)).or_insert(gid);
                if first != gid {
                    sim.fail(&format!(
                        "{shard} is served in config {num} by group {first} and by group {gid} \
                         ({id})"
                    ));
                }
            }
        }
    }
}
