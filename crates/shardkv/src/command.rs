//! What travels to a shard group and what it puts in its log: client reads and writes of
//! keys, the queries other groups send while moving shards, and the group's own
//! reconfiguration steps.

use crate::chunk::{Cursor, ShardChunk};
use serde::{Deserialize, Serialize};
use shardkv_ctrl::Config;
use shardkv_kv::{KvCommand, KvOutput, KvQuery};
use shardkv_rsm::Request;
use shardkv_types::{ConfigNum, ShardId};

/// A read served by ReadIndex: a client's read of a key, or another group's question about
/// a shard in migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardQuery {
    /// A client's read of a key.
    Kv(KvQuery),
    /// The new owner of `shard` in config `num` asks the old owner (this group) for the
    /// next chunk of the shard, from `from` on, about `bytes_max` of it: the entries in key
    /// order, then the session table in client order. Answered once this group applied
    /// config `num` (the shard is then frozen here, so the chunks of one pull fit together).
    Pull {
        num: ConfigNum,
        shard: ShardId,
        from: Cursor,
        bytes_max: u64,
    },
    /// The old owner of `shard` in config `num` asks the new owner (this group) whether it
    /// installed the shard, so the old owner may delete its copy.
    Installed { num: ConfigNum, shard: ShardId },
}

/// A request to a shard group.
pub type ShardRequest = Request<KvCommand, ShardQuery>;

/// A client's KV request as a shard group's request (the same write; a read of the KV
/// state).
pub fn kv_request(req: Request<KvCommand, KvQuery>) -> ShardRequest {
    match req {
        Request::Read(q) => Request::Read(ShardQuery::Kv(q)),
        Request::Write {
            client,
            seq,
            retry,
            cmd,
        } => Request::Write {
            client,
            seq,
            retry,
            cmd,
        },
    }
}

/// The answer to any request of a shard group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardOutput {
    /// The answer to a client's read or write.
    Kv(KvOutput),
    /// The answer to `Pull`: a chunk of the shard, frozen at the config asked for.
    Chunk(Box<ShardChunk>),
    /// The answer to `Pull` or `Installed` from a group still at an older config: ask again
    /// later.
    NotYet { have: ConfigNum },
    /// The answer to `Pull` when the shard already left this group for that config (the
    /// asker installed it, or the question is about a config this group never gave it in).
    Gone,
    /// The answer to `Installed`.
    Installed(bool),
}

/// A step the group proposes itself. Each is idempotent: applied twice (or late), the second
/// one changes nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ShardInternal {
    /// Move to the next config (`num` = current + 1), once no shard is in migration.
    Reconfigure(Config),
    /// Install a pulled chunk of a shard, in the config it was pulled for, if it continues
    /// right where the installed part ends (`from`).
    Install {
        num: ConfigNum,
        shard: ShardId,
        from: Cursor,
        chunk: Box<ShardChunk>,
    },
    /// Delete a shard given away in config `num`, after its new owner confirmed it installed
    /// it.
    Delete { num: ConfigNum, shard: ShardId },
}
