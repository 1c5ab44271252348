//! Crash-safe storage for one Raft node: a segmented write-ahead log holding log entries
//! and the hard state, plus snapshot files, over a [`Disk`] seam with two implementations:
//! the real filesystem ([`FsDisk`]) and a deterministic faulty disk for the simulator
//! ([`SimDisk`]).
//!
//! It is not a state machine store and knows nothing about Raft's rules beyond what a
//! valid persisted state is; it is used only by the shells (server, simulator).
//!
//! # Directory layout
//! - `LOCK` (in a server's data directory, above the group directories): the exclusive
//!   lock a server holds for its lifetime ([`DirLock`]), with the holder's pid; a second
//!   process on the same directory is refused before it reads or deletes anything.
//! - `identity`: cluster id, group id, node id and the group's voter set, written on first
//!   start and checked on every later one by [`check_identity`] (see [`identity`] for the
//!   format and rules); a directory of another cluster, group or voter set is refused.
//! - `node-id`: one record naming the node; a directory of another node is refused.
//! - `wal-<seq>.log`: WAL segments, consecutive sequence numbers, the last one active.
//!   Before sealed segments are deleted the hard state is written again to the active one.
//! - `snap-<index>-<term>.snap`: snapshot files (the newest two are kept).
//!
//! # Record format
//! `len: u32 LE | crc32c: u32 LE | type: u8 | payload[len]`, the crc covering the length
//! bytes, the type and the payload. Types: entry (postcard `Entry`), hard state, snapshot
//! reset, node id. Replay rules: an entry record replaces every entry at its index and above
//! (that is how a conflicting suffix is truncated, without rewriting anything); the last
//! hard-state record wins; a reset record (written when a snapshot that does not match the
//! log is installed) discards every entry before it.
//!
//! # Durability promise
//! `append` and `set_hard_state` write at once but promise nothing; `sync` makes all of
//! them durable with one fdatasync (group commit). `save_snapshot` is durable when it
//! returns: temp file, fdatasync, rename, directory fsync. A snapshot of the log's own prefix
//! can also be saved in two steps (`start_snapshot`, [`SnapshotJob::run`] on another
//! thread, `finish_snapshot`): the log is compacted only in the last step, once the file is
//! durable. Every create, rename and delete
//! is followed by a directory fsync before anything depends on it. A sealed segment is
//! fdatasync'ed before the next one is written to. After a crash, `open` returns a state
//! that contains everything synced, with contiguous entries that start right after the
//! snapshot.
//!
//! # Recovery
//! A bad record at the end of the newest segment (nothing valid after it) is a torn write
//! and is cut off. A bad record anywhere else is [`StorageError::Corrupt`], naming file
//! and byte offset, and `open` refuses to start (this fails safe: a torn record whose
//! surviving bytes happen to contain a well-formed record is also refused, never dropped).
//! A snapshot that fails its checksum is renamed `*.corrupt` and the previous one is used
//! together with the log after it, which is kept for exactly this. A log that does not
//! continue the snapshot is [`StorageError::Gap`].
//!
//! # Failure policy
//! - fsync error: [`StorageError::SyncFailed`]; the store is poisoned (every later write
//!   fails with [`StorageError::Poisoned`]) and the caller must stop the process — after a
//!   failed fsync the kernel may have dropped the data, so retrying would lie.
//! - full disk: [`StorageError::NoSpace`]; the failed write is cut back so no partial record
//!   remains, reads keep working, and writes succeed again once space is freed.
//! - any other I/O error while writing poisons the store too (fail-stop) — except a failed
//!   snapshot *write* (creating, writing or syncing its temp file, or the rename: EMFILE,
//!   EACCES, EIO on the temp file): the temp file is removed, the WAL and the current
//!   snapshot are untouched, and the store stays writable; the caller logs it and tries a
//!   later snapshot (the full log is still on disk).
//!
//! # Example
//! ```
//! use shardkv_storage::{RaftStore, SimDisk};
//! use shardkv_types::{Entry, HardState, LogIndex, NodeId, Term};
//! use std::path::Path;
//!
//! let disk = SimDisk::new(7);
//! let dir = Path::new("/data/n1");
//! let (mut store, recovered) = RaftStore::open(disk.clone(), dir, NodeId(1)).unwrap();
//! assert!(recovered.entries.is_empty());
//! store.append(&[Entry::normal(Term(1), LogIndex(1), b"x".to_vec())]).unwrap();
//! store.set_hard_state(HardState { term: Term(1), vote: Some(NodeId(1)), commit: LogIndex(1) }).unwrap();
//! store.sync().unwrap();
//! drop(store);
//! disk.crash(); // only synced data survives
//! let (_store, recovered) = RaftStore::open(disk, dir, NodeId(1)).unwrap();
//! assert_eq!(recovered.entries.len(), 1);
//! assert_eq!(recovered.hard_state.commit, LogIndex(1));
//! ```

mod disk;
mod error;
pub mod identity;
mod lock;
mod record;
mod recovery;
mod sim_disk;
mod snapshot;
mod store;

pub use disk::{Disk, FsDisk};
pub use error::StorageError;
pub use identity::{Identity, IdentityCheck, check_identity, write_identity};
pub use lock::{DirLock, LOCK_FILE_NAME, LockError};
pub use record::{RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};
pub use recovery::Recovered;
pub use sim_disk::SimDisk;
pub use store::{
    RaftStore, SEGMENT_BYTES_MAX_DEFAULT, SNAPSHOTS_KEPT, SnapshotJob, SnapshotWritten,
    StoreOptions,
};
