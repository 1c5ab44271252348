//! File names in the shared directory and the write-then-rename discipline.
//!
//! Every file a task produces is written under a temporary name in the same directory,
//! fsynced, and renamed over its final name. A rename is atomic, so a reader sees either the
//! old complete file or the new complete one; a worker that dies mid-write leaves only a
//! `.mr-tmp-*` file that nothing reads. Task outputs are deterministic, so when a slow and a
//! re-issued attempt both finish, whichever rename lands last installs identical bytes.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Most fsyncs [`AtomicFile::commit_all`] runs at once.
pub const SYNC_THREADS_MAX: usize = 16;

/// Prefix of temporary files; never read by the framework.
pub const TEMP_PREFIX: &str = ".mr-tmp-";

/// The intermediate file map task `map` writes for reduce task `reduce`.
pub fn intermediate_name(map: u32, reduce: u32) -> String {
    format!("mr-{map}-{reduce}")
}

/// The output file of reduce task `reduce`.
pub fn output_name(reduce: u32) -> String {
    format!("mr-out-{reduce}")
}

/// The reduce partition of `key`: FNV-1a (32 bit) of the key's bytes, modulo `n_reduce`.
/// Stable across processes, machines and releases, since workers must agree on it.
///
/// # Panics
/// If `n_reduce` is 0.
pub fn partition(key: &str, n_reduce: u32) -> u32 {
    assert!(n_reduce > 0);
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let hash = key
        .bytes()
        .fold(OFFSET_BASIS, |h, b| (h ^ u32::from(b)).wrapping_mul(PRIME));
    (hash & 0x7fff_ffff) % n_reduce
}

/// A file being written under a temporary name, installed by [`AtomicFile::commit`].
/// Dropped without commit, the temporary file is removed.
pub struct AtomicFile {
    writer: BufWriter<NamedTempFile>,
    final_path: PathBuf,
}

impl AtomicFile {
    /// Starts writing what will become `dir/name`.
    pub fn create(dir: &Path, name: &str) -> io::Result<AtomicFile> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX);
        // Readable by everyone, like any output file (tempfile's default is owner-only).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let temp = builder.tempfile_in(dir)?;
        Ok(AtomicFile {
            writer: BufWriter::with_capacity(256 * 1024, temp),
            final_path: dir.join(name),
        })
    }

    /// Writes `bytes` to `dir/name` atomically.
    pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut file = AtomicFile::create(dir, name)?;
        file.write_all(bytes)?;
        file.commit()
    }

    /// Flushes, fsyncs and renames the file to its final name.
    pub fn commit(self) -> io::Result<()> {
        AtomicFile::commit_all(vec![self])
    }

    /// Commits several files. The fsyncs run concurrently (up to [`SYNC_THREADS_MAX`] at a
    /// time) because a journaling file system folds concurrent fsyncs into one commit: ten
    /// files then cost about one fsync instead of ten. Renames follow, in order, once every
    /// file is durable. On error some files may be installed and others not; each installed
    /// one is complete.
    pub fn commit_all(files: Vec<AtomicFile>) -> io::Result<()> {
        let mut synced = Vec::with_capacity(files.len());
        for file in files {
            let temp = file.writer.into_inner().map_err(|e| e.into_error())?;
            synced.push((temp, file.final_path));
        }
        for chunk in synced.chunks(SYNC_THREADS_MAX) {
            if let [(temp, _)] = chunk {
                temp.as_file().sync_data()?;
                continue;
            }
            std::thread::scope(|scope| {
                let syncs: Vec<_> = chunk
                    .iter()
                    .map(|(temp, _)| scope.spawn(|| temp.as_file().sync_data()))
                    .collect();
                // The scope joins every thread even if we return at the first error.
                syncs
                    .into_iter()
                    .try_for_each(|s| s.join().expect("fsync thread panicked"))
            })?;
        }
        for (temp, final_path) in synced {
            temp.persist(&final_path).map_err(|e| e.error)?;
        }
        Ok(())
    }

    /// The final path, for error messages.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Opens `path` for reading with its name in the error.
pub fn open(path: &Path) -> anyhow::Result<File> {
    use anyhow::Context;
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_stable_and_in_range() {
        // Goal: workers on different machines agree; method: pin known FNV-1a values.
        assert_eq!(partition("", 1_000_000), 0x011c_9dc5 % 1_000_000);
        assert_eq!(partition("a", 10), (0xe40c_292c_u32 & 0x7fff_ffff) % 10);
        for word in ["the", "and", "sherlock", "émile"] {
            assert!(partition(word, 7) < 7);
        }
    }

    #[test]
    fn uncommitted_file_leaves_nothing_and_commit_installs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut f = AtomicFile::create(dir.path(), "out").unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        AtomicFile::write(dir.path(), "out", b"whole").unwrap();
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"whole");
        AtomicFile::write(dir.path(), "out", b"again").unwrap();
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"again");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
