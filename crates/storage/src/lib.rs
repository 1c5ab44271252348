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
//!   Each starts with the 8-byte header `SKVWAL\0\x02` (WAL format 2), made durable when
//!   the segment is created (one fdatasync per segment).
//! - `snap-<index>-<term>.snap`: snapshot files (the newest two are kept), each recording
//!   the group membership as of its index.
//!
//! # Record format
//! `len: u32 LE | crc32c: u32 LE | type: u8 | payload[len]`, the crc covering the length
//! bytes, the type and the payload. Types: entry (postcard `Entry`), hard state, snapshot
//! reset, node id. In a WAL segment every payload starts with a synced-offset marker,
//! `synced_to: u64 LE`, then the postcard value: the segment's length at its last completed
//! fdatasync when the record was written (the header length if none since it was created).
//! The marker rides in records that are written anyway, so group commit keeps one fdatasync
//! per batch. Replay rules: an entry record replaces every entry at its index and above
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
//! fdatasync'ed before the next one is written to. After a crash — a process kill or a
//! power cut that persisted any subset of the unsynced pages — `open` returns a state that
//! contains everything synced, with contiguous entries that start right after the
//! snapshot, plus a prefix of the unsynced writes.
//!
//! # Recovery
//! Sealed segments were synced in full before the next one was created: a bad record in
//! one is [`StorageError::Corrupt`], naming file and byte offset, and `open` refuses to
//! start. In the newest segment the first bad record, at offset `b`, is judged by what the
//! segment says was synced: `S` is the highest marker of any valid record in it, those
//! before `b` and those a resync finds after it.
//! - `b < S`: a record written after a sync that covered `b` survived, so `b` was synced:
//!   [`StorageError::Corrupt`] ("synced data is damaged"), whatever the damage looks like.
//! - `b >= S` and no valid record after it: a write a crash cut short; the tail is cut.
//! - `b >= S` and valid records after it: after a power cut the page cache may have written
//!   unsynced pages back in any order (the server writes commit-only hard states without a
//!   sync), leaving a hole with valid records after it. A hole is unwritten sectors, which
//!   read back as zeros: if some piece of `b..next valid record` between two sector
//!   boundaries ([`Disk::sector_bytes`], 512 B on real disks) is all zeros, the tail from
//!   `b` on is cut (it was never synced: a sync would have made the hole durable and every
//!   later record would say so); otherwise it is damage, not a power cut, and refused.
//!
//! Why nothing synced is cut: a synced record survives a power cut intact, so a bad record
//! there is damage after the fact (a bit flip, a lost sector); if anything was written
//! after the sync that covered it, that record's marker exceeds `b` and recovery refuses.
//! The one case the markers cannot tell is damage to the last synced batch before anything
//! else was written: a zeroed sector there, or a bad record with nothing valid after it,
//! looks exactly like a power cut during that batch's sync and is cut (as any WAL that
//! cuts torn tails does); damage that is not zeros is still refused. A valid-looking
//! record inside an entry's payload can at worst make recovery refuse, never keep data.
//!
//! The first record of a segment carries the header length as its marker. A newest segment
//! whose header is missing, torn or zero was never written to (the header is synced before
//! anything else) and is removed. Snapshots and compaction keep their own protocol (temp
//! file, fdatasync, rename, directory fsync; segments deleted only after the hard state was
//! rewritten and synced into the active one), so markers only concern the active segment.
//!
//! A segment of WAL format 1 (before the markers, no header) is refused with a
//! [`StorageError::Corrupt`] that says so: there is no upgrade path; restore such a member
//! from its peers (empty its data dir and re-add it) or run the older version. The node-id
//! file keeps the plain record format.
//!
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
mod segment;
mod sim_disk;
mod snapshot;
mod store;

pub use disk::{DEFAULT_SECTOR_BYTES, Disk, FsDisk};
pub use error::StorageError;
pub use identity::{Identity, IdentityCheck, check_identity, read_identity_file, write_identity};
pub use lock::{DirLock, LOCK_FILE_NAME, LockError};
pub use record::{RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};
pub use recovery::Recovered;
pub use sim_disk::{CrashMode, SimDisk};
pub use store::{
    RaftStore, SEGMENT_BYTES_MAX_DEFAULT, SNAPSHOTS_KEPT, SnapshotJob, SnapshotWritten,
    StoreOptions,
};
