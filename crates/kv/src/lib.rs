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
//! [`KvStore::execute`] is the sequential semantics alone, so a sharded store can keep one
//! `KvStore` per shard and reuse it.
//!
//! Encoding (postcard, in log entries and snapshots): keys and values are byte strings
//! (`serde_bytes`), which postcard writes exactly as it wrote them as sequences of `u8`, so
//! what older builds stored still reads; `tests/encoding.rs` holds stored encodings and
//! checks both directions. A change to these types must keep those bytes.

mod command;
mod store;

pub use command::{
    KEY_BYTES_MAX, KvCommand, KvOutput, KvQuery, KvRequest, KvResponse, RECORDED_VALUE_BYTES_MAX,
    VALUE_BYTES_MAX, validate, validate_command, validate_query,
};
pub use store::KvStore;

/// A replica of the KV store.
pub type KvReplica = shardkv_rsm::Replica<KvStore>;
