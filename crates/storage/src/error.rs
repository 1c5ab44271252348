//! The one error type of the crate. Every variant says what an operator should do.

use crate::identity::Identity;
use shardkv_types::{LogIndex, NodeId};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// What went wrong in storage.
///
/// Policy (see the crate docs): [`StorageError::NoSpace`] is an operating condition (the
/// write was rolled back and may be retried once space is freed); [`StorageError::SyncFailed`]
/// and [`StorageError::Poisoned`] mean the process must stop; [`StorageError::Corrupt`],
/// [`StorageError::Gap`], [`StorageError::WrongNode`], [`StorageError::NotBootstrapped`] and
/// [`StorageError::IdentityMismatch`] refuse to start and need an operator.
#[derive(Debug)]
pub enum StorageError {
    /// The disk is full. The failed write left nothing behind; reads keep working and writes
    /// work again once space is freed.
    NoSpace { path: PathBuf },
    /// fsync/fdatasync failed. The kernel may have dropped the dirty pages, so the data is in
    /// an unknown state: the store is poisoned and the process must stop (never retry).
    SyncFailed { path: PathBuf, source: io::Error },
    /// An earlier failure left the store unable to promise durability; every write is refused.
    Poisoned { cause: String },
    /// A record or file failed its checksum or is malformed somewhere other than a torn tail.
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The data directory belongs to another node (or holds unrecognised data).
    WrongNode {
        dir: PathBuf,
        expected: NodeId,
        found: String,
    },
    /// The identity file says this directory belongs to another cluster, group or voter set
    /// than the one this start gives (see [`crate::check_identity`]).
    IdentityMismatch {
        dir: PathBuf,
        stored: Box<Identity>,
        given: Box<Identity>,
    },
    /// The data directory holds nothing (no identity file, no Raft data) and this start was
    /// not told to bootstrap: a member whose data was lost must not come back as if it had
    /// never voted or acknowledged anything (see [`crate::check_identity`]).
    NotBootstrapped {
        dir: PathBuf,
        /// The directory holds an identity file but no WAL or snapshot.
        identity_only: bool,
    },
    /// The log does not continue the snapshot: entries between them are missing.
    Gap {
        dir: PathBuf,
        snapshot_index: LogIndex,
        first_log_index: LogIndex,
        detail: String,
    },
    /// `append` was called with entries that do not continue the log (a caller bug).
    BadAppend {
        index: LogIndex,
        first: LogIndex,
        last: LogIndex,
    },
    /// Entries `lo..hi` were asked for but the log holds `first..=last`.
    NotInLog {
        lo: LogIndex,
        hi: LogIndex,
        first: LogIndex,
        last: LogIndex,
    },
    /// `save_snapshot` was called with a snapshot not newer than the current one.
    StaleSnapshot { index: LogIndex, current: LogIndex },
    /// A single record exceeds [`crate::RECORD_PAYLOAD_BYTES_MAX`].
    TooLarge { bytes: u64, max: u64 },
    /// Any other I/O error, with the operation and file it happened on.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error, turning ENOSPC / EDQUOT into [`StorageError::NoSpace`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if is_no_space(&source) {
            StorageError::NoSpace { path }
        } else {
            StorageError::Io { op, path, source }
        }
    }

    /// True for errors after which the process must stop rather than carry on.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StorageError::SyncFailed { .. } | StorageError::Poisoned { .. }
        )
    }
}

/// True when `e` means "no space left" (ENOSPC or a quota).
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NoSpace { path } => write!(
                f,
                "no space left on device writing {}: the write was rolled back; free disk \
                 space and writes will resume (reads keep working)",
                path.display()
            ),
            StorageError::SyncFailed { path, source } => write!(
                f,
                "fsync of {} failed ({source}): durability can no longer be promised; \
                 stop this process and check the disk before restarting",
                path.display()
            ),
            StorageError::Poisoned { cause } => write!(
                f,
                "storage refuses writes after an earlier fatal error ({cause}); restart the process"
            ),
            StorageError::Corrupt {
                file,
                offset,
                reason,
            } => write!(
                f,
                "corrupt data in {} at byte offset {offset}: {reason}; refusing to start \
                 (restore this node from a peer or a backup)",
                file.display()
            ),
            StorageError::NotBootstrapped { dir, identity_only } => write!(
                f,
                "data directory {} {}: if this member \
                 ran before, its votes and log are gone and rejoining under the same id could \
                 lose acknowledged writes, so it refuses to start; start it with --bootstrap \
                 only when creating a brand-new group; to replace a member whose disk was lost, \
                 start a new member under a NEW id with --join and add, promote it and remove \
                 this one with `shardkv member` (docs/membership.md; see also \"a member's data \
                 directory is lost\" in docs/kv.md)",
                dir.display(),
                if *identity_only {
                    "holds an identity file but no Raft log or snapshot (they were lost, or \
                     the member was bootstrapped and stopped before it first opened its log, \
                     which --bootstrap again repairs)"
                } else {
                    "is empty (no identity file, no Raft log)"
                }
            ),
            StorageError::WrongNode {
                dir,
                expected,
                found,
            } => write!(
                f,
                "data directory {} belongs to {found}, not to node {expected}; refusing to use it",
                dir.display()
            ),
            StorageError::IdentityMismatch { dir, stored, given } => write!(
                f,
                "data directory {} belongs to another membership ({}); refusing to start. \
                 Restart this member with its stored settings (--id {} --peers {} \
                 --cluster-token {:?} --group-id {}), or give it a fresh data directory",
                dir.display(),
                stored.differences(given).join("; "),
                stored.node_id.0,
                stored.peer_list(),
                stored.cluster_token,
                stored.group_id.0
            ),
            StorageError::Gap {
                dir,
                snapshot_index,
                first_log_index,
                detail,
            } => write!(
                f,
                "log in {} does not continue the snapshot: snapshot covers up to {snapshot_index} \
                 but the first log entry is {first_log_index}{}",
                dir.display(),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                }
            ),
            StorageError::BadAppend { index, first, last } => write!(
                f,
                "append starting at {index} does not continue the log (first {first}, last {last})"
            ),
            StorageError::NotInLog {
                lo,
                hi,
                first,
                last,
            } => write!(
                f,
                "entries {lo}..{hi} are not in the log, which holds {first}..={last}"
            ),
            StorageError::StaleSnapshot { index, current } => write!(
                f,
                "snapshot at {index} is not newer than the current snapshot at {current}"
            ),
            StorageError::TooLarge { bytes, max } => {
                write!(
                    f,
                    "record of {bytes} bytes exceeds the limit of {max} bytes"
                )
            }
            StorageError::Io { op, path, source } => {
                write!(f, "{op} {} failed: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::SyncFailed { source, .. } | StorageError::Io { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}
