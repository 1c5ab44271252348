//! The key-value state machine replicated by `shardkv-rsm`.
//!
//! Keys and values are bytes; a missing key and an empty value differ. Operations: Get (a
//! query, served by ReadIndex), Put, Append (creates a missing key), Delete (answers whether
//! the key existed: [`KvOutput::Deleted`]), and CAS
//! (swap iff the current value equals `expected`, where `None` means "absent"). Requests over
//! [`KEY_BYTES_MAX`] / [`VALUE_BYTES_MAX`] are refused with `TooLarge` by [`validate`]
//! (the state machine's `validate`, run by `Replica::submit`), before they are proposed.
//!
//! An append whose result would pass [`VALUE_BYTES_MAX`] is refused with `TooLarge` when it
//! is applied ([`KvStore::check_growth`]). A client session keeps only what a retry needs of
//! an output ([`KvOutput::record`]): `Done`, whether a Delete found the key, whether a CAS
//! swapped, and the value a failed
//! CAS found only up to [`RECORDED_VALUE_BYTES_MAX`] bytes (a retry of one that found more
//! is answered `CasFailed`).
//!
//! For the Redis front end (appended, so older encodings are unchanged): `Set` (with a
//! condition, optionally answering the old value), `GetDel`, `AppendLen` (answers the new
//! length), `IncrBy` (Redis's integer rules: [`parse_canonical_i64`]; `NotAnInteger` and
//! `Overflow` change nothing), `DeleteMany` and `PutMany` (atomic), and the queries
//! `GetMany`, `Exists` and `StrLen`. A multi-key operation names 1 to [`MANY_KEYS_MAX`]
//! keys within [`MANY_BYTES_MAX`]; a sharded store refuses one whose keys span shards. A
//! Set's or GetDel's found value is kept for retries only up to
//! [`RECORDED_VALUE_BYTES_MAX`] bytes (a retry of one that found more is answered
//! `SessionExpired`: applied once, its answer gone). Session records of every command keep
//! to the shapes older builds decode (`record.rs`), so a shard handed to a group of an older
//! build still moves; the commands themselves, in a group's log, cannot be decoded by a
//! member of a build without them: use them only once every member has been upgraded.
//!
//! A client's pipelined operations travel as one (appended after those): `Pipeline`, of 1
//! to [`PIPELINE_OPS_MAX`] writes applied at one log index in order, or of reads answered
//! at one read index; it answers `Outputs`, one per operation, each what that operation
//! alone would answer at that point. Its keys are all its operations' keys (one shard),
//! its bytes within [`MANY_BYTES_MAX`], and a read pipeline's answer within
//! [`MANY_BYTES_MAX`] as GetMany's is; a write pipeline's bytes count each GetDel's and
//! `Set { get: true }`'s found value as [`VALUE_BYTES_MAX`], so its answer is bounded the
//! same way. It is not a transaction (as Redis's pipelines are not): an append of it past
//! [`VALUE_BYTES_MAX`] answers [`KvOutput::TooLarge`], changing nothing, and the others
//! apply. Its session record is a `Value` holding its commands' records, keeping at most
//! [`PIPELINE_RECORD_VALUE_BYTES_MAX`] bytes of found values (so under 2 KiB); a retry
//! that cannot be answered from it is answered `SessionExpired` (`record.rs`).
//!
//! [`KvStore::execute`] is the sequential semantics alone, so a sharded store can keep one
//! `KvStore` per shard and reuse it.
//!
//! Encoding (postcard, in log entries and snapshots): keys and values are byte strings
//! (`serde_bytes`), which postcard writes exactly as it wrote them as sequences of `u8`, so
//! what older builds stored still reads; `tests/encoding.rs` holds stored encodings and
//! checks both directions. A change to these types must keep those bytes.

mod command;
mod int;
mod record;
mod store;

pub use command::{
    KEY_BYTES_MAX, Keys, KvCommand, KvOutput, KvQuery, KvRequest, KvResponse, MANY_BYTES_MAX,
    MANY_KEYS_MAX, PIPELINE_OPS_MAX, PIPELINE_RECORD_VALUE_BYTES_MAX, RECORDED_VALUE_BYTES_MAX,
    SetWhen, VALUE_BYTES_MAX, validate, validate_command, validate_query,
};
pub use int::parse_canonical_i64;
pub use serde_bytes::ByteBuf;
pub use store::KvStore;

/// A replica of the KV store.
pub type KvReplica = shardkv_rsm::Replica<KvStore>;
