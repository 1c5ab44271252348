//! What travels to a shard group and what it puts in its log: client reads and writes of
//! keys, the queries other groups send while moving shards, and the group's own
//! reconfiguration steps.

use serde::{Deserialize, Serialize};
use shardkv_ctrl::Config;
use shardkv_kv::{KvCommand, KvOutput, KvQuery, KvStore};
use shardkv_rsm::{Request, Sessions};
use shardkv_types::{ConfigNum, ShardId};

/// A read served by ReadIndex: a client's read of a key, or another group's question about
/// a shard in migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardQuery {
    /// A client's read of a key.
    Kv(KvQuery),
    /// The new owner of `shard` in config `num` asks the old owner (this group) for the
    /// shard's data and the session table. Answered with the shard once this group applied
    /// config `num` (the shard is then frozen here).
    Pull { num: ConfigNum, shard: ShardId },
    /// The old owner of `shard` in config `num` asks the new owner (this group) whether it
    /// installed the shard, so the old owner may delete its copy.
    Installed { num: ConfigNum, shard: ShardId },
}

/// A request to a shard group.
pub type ShardRequest = Request<KvCommand, ShardQuery>;

/// A shard as it moves between groups: its data and the session table of the group that
/// gave it away, so that exactly-once survives the move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardExport {
    pub store: KvStore,
    pub sessions: Sessions<ShardOutput>,
}

/// The answer to any request of a shard group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardOutput {
    /// The answer to a client's read or write.
    Kv(KvOutput),
    /// The answer to `Pull`: the shard, frozen at the config asked for.
    Shard(Box<ShardExport>),
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
    /// Install a pulled shard, in the config it was pulled for.
    Install {
        num: ConfigNum,
        shard: ShardId,
        export: Box<ShardExport>,
    },
    /// Delete a shard given away in config `num`, after its new owner confirmed it installed
    /// it.
    Delete { num: ConfigNum, shard: ShardId },
}
