//! `DirLock`: one process per data directory.
//!
//! A server takes an exclusive lock on `<data-dir>/LOCK` before it reads, writes or
//! deletes anything in the directory and holds it until it exits (the kernel releases it
//! when the process dies, even by SIGKILL, so a stale lock never blocks a restart). The
//! holder writes its pid into the file, so a second process can say who holds it.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// The exclusive lock on a data directory; released when dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    /// Held open: closing the file releases the lock.
    _file: File,
    path: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it (its pid, if it recorded one).
    Held { dir: PathBuf, holder: Option<u32> },
    /// The lock file could not be created, opened or locked.
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Held { dir, holder } => {
                write!(
                    f,
                    "data directory {} is in use by another process",
                    dir.display()
                )?;
                match holder {
                    Some(pid) => write!(f, " (pid {pid})")?,
                    None => write!(f, " (pid unknown)")?,
                }
                f.write_str(": two servers on one data directory would corrupt it; stop the other one or use another --data-dir")
            }
            LockError::Io { path, op, source } => {
                write!(f, "cannot {op} the lock file {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for LockError {}

impl DirLock {
    /// Creates `dir` if missing and takes its lock without waiting; records this
    /// process's pid in the lock file.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE_NAME);
        let io_err = |op, source| LockError::Io {
            path: path.clone(),
            op,
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io_err("create the directory of", e))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("open", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder: recorded_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err("lock", e)),
        }
        // Only the holder writes: the pid is informative, not part of the lock.
        file.set_len(0).map_err(|e| io_err("write", e))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| io_err("write", e))?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn recorded_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_naming_the_holder_until_the_first_is_dropped() {
        // Goal: one holder at a time; the refusal names the directory and the holder's pid;
        // dropping the lock releases it.
        let tmp = std::env::temp_dir().join(format!("shardkv-lock-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let first = DirLock::acquire(&tmp).expect("first lock");
        let second = DirLock::acquire(&tmp).expect_err("second lock must be refused");
        match &second {
            LockError::Held { dir, holder } => {
                assert_eq!(dir, &tmp);
                assert_eq!(*holder, Some(std::process::id()));
            }
            other => panic!("unexpected error: {other}"),
        }
        assert!(second.to_string().contains(&tmp.display().to_string()));
        drop(first);
        let third = DirLock::acquire(&tmp).expect("lock after release");
        drop(third);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
