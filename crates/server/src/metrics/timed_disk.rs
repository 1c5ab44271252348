//! `TimedDisk`: the real filesystem, with every fdatasync of the node thread's store timed
//! into its group's fsync histogram (the WAL's group commit; rarely a received snapshot).

use super::histogram::Histogram;
use shardkv_storage::{Disk, FsDisk};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// [`FsDisk`] with `sync` timed into `fsync`.
#[derive(Debug)]
pub struct TimedDisk {
    inner: FsDisk,
    fsync: Arc<super::GroupMetrics>,
}

impl TimedDisk {
    pub fn new(metrics: Arc<super::GroupMetrics>) -> TimedDisk {
        TimedDisk {
            inner: FsDisk::new(),
            fsync: metrics,
        }
    }

    fn histogram(&self) -> &Histogram {
        &self.fsync.fsync
    }
}

impl Disk for TimedDisk {
    fn create_dir_all(&mut self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn create(&mut self, path: &Path) -> io::Result<()> {
        self.inner.create(path)
    }
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn read_at(&mut self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.inner.read_at(path, offset, len)
    }
    fn file_len(&mut self, path: &Path) -> io::Result<u64> {
        self.inner.file_len(path)
    }
    fn append(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.append(path, data)
    }
    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn sync(&mut self, path: &Path) -> io::Result<()> {
        let start = Instant::now();
        let synced = self.inner.sync(path);
        self.histogram().observe(start.elapsed());
        synced
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn sector_bytes(&self) -> u64 {
        self.inner.sector_bytes()
    }
}
