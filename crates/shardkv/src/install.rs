//! The install step: a pulled shard enters the new owner through its log and serves at
//! once, whatever the other shards of the same config are doing.

use crate::chunk::{Cursor, ShardChunk};
use crate::command::ShardOutput;
use crate::machine::ShardKv;
use crate::shard::ShardState;
use shardkv_rsm::Applying;
use shardkv_types::{ConfigNum, ShardId, shard_of_key};

impl ShardKv {
    /// Installs `chunk` of `shard` if the group is in config `num`, still pulling it, and
    /// the chunk starts where the installed part ends (`from`): idempotent by config
    /// number, shard and position. Its sessions are merged (keeping the newer per client:
    /// each records a request that did apply; each counts as active at this entry, and the
    /// table's bound applies), and so are the mark that the old owner's table dropped
    /// sessions and the drops it remembers ([`shardkv_rsm::Sessions::merge_part`]: after
    /// dropped sessions are involved, older sessions no longer vouch for a retry). After the last chunk the shard serves.
    /// A chunk that is not in order, or holds a key of another shard, is ignored: it
    /// cannot come from a correct peer.
    pub(crate) fn install(
        &mut self,
        num: ConfigNum,
        shard: ShardId,
        from: &Cursor,
        chunk: &ShardChunk,
        ctx: &mut Applying<'_, ShardOutput>,
    ) {
        if self.config.num != num || !fits(chunk, from, shard, self.config.shard_count()) {
            return;
        }
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        if s.state != ShardState::Pulling || s.pulled_to != *from {
            return;
        }
        for (k, v) in &chunk.entries {
            s.store.insert(k.clone(), v.clone());
        }
        ctx.sessions.merge_part(
            chunk.sessions_dropped,
            chunk.dropped.iter().copied(),
            chunk.sessions.iter().map(|(c, s)| (*c, s)),
            ctx.index,
            &ctx.limits,
        );
        match &chunk.next {
            Some(next) => s.pulled_to = next.clone(),
            None => {
                s.state = ShardState::Serving;
                s.pulled_to = Cursor::Start;
                s.source = None;
            }
        }
    }
}

/// True if `chunk` continues a pull at `from` in order: entries after the cursor's key in
/// ascending order, all of `shard`; sessions in ascending client order after its client.
fn fits(chunk: &ShardChunk, from: &Cursor, shard: ShardId, shards: u32) -> bool {
    let (mut key, mut client) = match from {
        Cursor::Start => (None, None),
        Cursor::Key(k) => (Some(k.as_slice()), None),
        Cursor::Client(c) => {
            if !chunk.entries.is_empty() {
                return false;
            }
            (None, Some(*c))
        }
    };
    for (k, _) in &chunk.entries {
        if key.is_some_and(|p| p >= k.as_slice()) || shard_of_key(k, shards) != shard {
            return false;
        }
        key = Some(k);
    }
    for (c, _) in &chunk.sessions {
        if client.is_some_and(|p| p >= *c) {
            return false;
        }
        client = Some(*c);
    }
    true
}
