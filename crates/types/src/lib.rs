//! Identifiers, log records and the deterministic random number generator shared by every
//! shardkv crate.
//!
//! This crate is the bottom of the dependency graph: it has no I/O and no logic beyond
//! arithmetic on newtypes. Every id and index is a newtype so that a `Term` can never be
//! passed where a `LogIndex` is expected.
//!
//! Contract:
//! - `LogIndex(0)` and `Term(0)` mean "nothing": the log's first real entry has index 1 and a
//!   node that never voted has term 0.
//! - A key's shard is Redis Cluster's slot ([`key_slot`]) mapped to contiguous ranges
//!   ([`shard_of_slot`]); the shard count is a power of two up to [`SHARDS_MAX`].
//! - A group's membership ([`Membership`]) is voters plus learners, at most [`MEMBERS_MAX`],
//!   changed one server at a time by a [`ConfChange`] entry.
//! - [`Rng`] is a pure function of its seed: the same seed yields the same stream on every
//!   platform, which is what makes simulations replayable.

mod ids;
mod log;
mod membership;
mod rng;
mod slot;

pub use ids::{ClientId, ConfigNum, Gid, LogIndex, NodeId, Seq, ShardId, Term};
pub use log::{Entry, EntryKind, HardState, SnapshotMeta};
pub use membership::{
    ADDR_BYTES_MAX, ConfChange, ConfChangeKind, ConfEntry, ConfError, MEMBERS_MAX, Membership,
};
pub use rng::Rng;
pub use slot::{
    SHARDS_DEFAULT, SHARDS_MAX, SLOTS, ShardCountError, check_shard_count, crc16, hash_tag,
    key_slot, shard_of_key, shard_of_slot, slots_of_shard,
};
