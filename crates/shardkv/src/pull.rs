//! The pull step as the other group sees it: the answers to `Pull` (old owner) and
//! `Installed` (new owner), served as linearizable reads.

use crate::chunk::{Cursor, ShardChunk};
use crate::command::ShardOutput;
use crate::machine::ShardKv;
use crate::shard::ShardState;
use shardkv_rsm::Sessions;
use shardkv_types::{ConfigNum, ShardId};
use std::cmp::Ordering;

/// The most bytes one pull answer is built with, whatever the asker asked for (the answer is
/// built on the node's thread).
pub const PULL_BYTES_MAX: u64 = 4 << 20;

impl ShardKv {
    /// The old owner's answer to "give me `shard` for config `num`, from `from` on": a
    /// chunk of the frozen shard and then of the session table, once this group applied
    /// `num`; `NotYet` before.
    pub(crate) fn answer_pull(
        &self,
        num: ConfigNum,
        shard: ShardId,
        from: &Cursor,
        bytes_max: u64,
        sessions: &Sessions<ShardOutput>,
    ) -> ShardOutput {
        match self.config.num.cmp(&num) {
            Ordering::Less => ShardOutput::NotYet {
                have: self.config.num,
            },
            Ordering::Equal => match self.shards.get(&shard) {
                Some(s) if s.state == ShardState::BePulled => {
                    let bytes_max = bytes_max.min(PULL_BYTES_MAX);
                    ShardOutput::Chunk(Box::new(ShardChunk::read(
                        &s.store, sessions, from, bytes_max,
                    )))
                }
                _ => ShardOutput::Gone,
            },
            // Past `num`, every shard given away in `num` was confirmed and deleted.
            Ordering::Greater => ShardOutput::Gone,
        }
    }

    /// The new owner's answer to "did you install `shard` of config `num`?". Past `num`
    /// it surely did: a group moves on only with nothing left to pull.
    pub(crate) fn answer_installed(&self, num: ConfigNum, shard: ShardId) -> ShardOutput {
        match self.config.num.cmp(&num) {
            Ordering::Less => ShardOutput::NotYet {
                have: self.config.num,
            },
            Ordering::Equal => ShardOutput::Installed(
                self.config.owner(shard) == Some(self.gid)
                    && self.shard_state(shard) == Some(ShardState::Serving),
            ),
            Ordering::Greater => ShardOutput::Installed(true),
        }
    }
}
