//! The file seam: the few operations the store needs, and their real-filesystem version.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The file operations [`crate::RaftStore`] performs. Paths are full paths.
///
/// Durability contract every implementation must honour (and the conformance suite checks
/// on [`crate::SimDisk`], whose crash model is exactly this):
/// - after `sync(path)` returns `Ok`, every `append`/`truncate` of that file issued before
///   it survives a crash;
/// - after `sync_dir(dir)` returns `Ok`, every `create`/`rename`/`remove` of an entry of
///   `dir` issued before it survives a crash;
/// - anything else may be lost in a crash: the unsynced appends of a file may survive as
///   any subset of its sectors (see [`Disk::sector_bytes`]), written back in any order, and
///   a sector that was not written reads back as zeros.
///
/// `append` may fail after writing part of its data (a short write on a full disk): the
/// caller restores the old length with `truncate`.
pub trait Disk: Send + 'static {
    /// Creates `dir` and its missing parents (not durable until `sync_dir` of the parent).
    fn create_dir_all(&mut self, dir: &Path) -> io::Result<()>;
    /// The names of the regular files in `dir`, sorted. `NotFound` if `dir` does not exist.
    fn list_dir(&mut self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates a new empty file; fails with `AlreadyExists` if `path` exists.
    fn create(&mut self, path: &Path) -> io::Result<()>;
    /// The whole content of a file.
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>>;
    /// `len` bytes at `offset`; `UnexpectedEof` if the file is shorter.
    fn read_at(&mut self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// The current length of a file.
    fn file_len(&mut self, path: &Path) -> io::Result<u64>;
    /// Appends `data` at the end of the file.
    fn append(&mut self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Sets the file's length to `len` (`len` <= current length).
    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()>;
    /// fdatasync: makes the file's data and length durable.
    fn sync(&mut self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// fsync of a directory: makes its entries (create/rename/remove) durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// The unit a power cut writes whole or not at all, aligned to the start of a file:
    /// WAL recovery tells a hole a crash left (an all-zero sector) from damage by it.
    fn sector_bytes(&self) -> u64 {
        DEFAULT_SECTOR_BYTES
    }
}

/// The sector size of real disks (512 B logical sectors; pages are whole multiples).
pub const DEFAULT_SECTOR_BYTES: u64 = 512;

/// The real filesystem: `std::fs`, `File::sync_data` (fdatasync) for files and
/// `File::open(dir).sync_all()` for directories.
///
/// Keeps files open for appending so that a WAL append is one `write` system call.
#[derive(Debug, Default)]
pub struct FsDisk {
    /// Append handles of files written through this disk. Invariant: a handle is dropped
    /// when its path is renamed or removed, so a handle always names the file at its path.
    open_files: HashMap<PathBuf, File>,
}

impl FsDisk {
    pub fn new() -> FsDisk {
        FsDisk::default()
    }

    fn handle(&mut self, path: &Path) -> io::Result<&mut File> {
        if !self.open_files.contains_key(path) {
            let file = OpenOptions::new().append(true).open(path)?;
            self.open_files.insert(path.to_path_buf(), file);
        }
        self.open_files
            .get_mut(path)
            .ok_or_else(|| io::Error::other("file handle vanished"))
    }
}

impl Disk for FsDisk {
    fn create_dir_all(&mut self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn create(&mut self, path: &Path) -> io::Result<()> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        self.open_files.insert(path.to_path_buf(), file);
        Ok(())
    }

    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_at(&mut self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; len];
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn file_len(&mut self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn append(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.handle(path)?.write_all(data)
    }

    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()> {
        self.handle(path)?.set_len(len)
    }

    fn sync(&mut self, path: &Path) -> io::Result<()> {
        self.handle(path)?.sync_data()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.open_files.remove(from);
        self.open_files.remove(to);
        fs::rename(from, to)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.open_files.remove(path);
        fs::remove_file(path)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
