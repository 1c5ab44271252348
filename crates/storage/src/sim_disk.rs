//! A deterministic, in-memory disk with crash, torn-write, bit-rot, fsync-failure and
//! full-disk faults, for the simulator and for crash-point tests.

use crate::disk::Disk;
use shardkv_types::Rng;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A simulated disk. Cloning gives another handle to the same disk, so a simulator can keep
/// one after the store that used it is dropped, then `crash()` it and reopen. Use one
/// `SimDisk` per simulated machine: `crash()` hits every file on it.
///
/// Crash model (a pure function of the seed and the operations issued):
/// - each file keeps its last synced content; what survives of the writes issued since its
///   last `sync` depends on the [`CrashMode`]: with [`CrashMode::Prefix`] (`crash()`) a
///   crash keeps none (half of the time) or a random prefix of them, the last one kept
///   possibly torn (a random prefix of it, or its full length with a zero-filled tail as
///   a filesystem that updated the size but not the data would leave); with
///   [`CrashMode::Pages`] any subset of the pages they touched lands, in no order;
/// - directory entries (create, rename, remove) issued since the last `sync_dir` of their
///   directory are all undone; directories themselves are durable at once;
/// - a file no durable name refers to is gone.
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

#[derive(Clone, Debug)]
struct State {
    rng: Rng,
    inodes: BTreeMap<u64, Inode>,
    inode_next: u64,
    /// The namespace as the running system sees it.
    names: BTreeMap<PathBuf, u64>,
    /// The namespace a crash would leave: updated per directory by `sync_dir`.
    names_durable: BTreeMap<PathBuf, u64>,
    dirs: Vec<PathBuf>,
    capacity_bytes: Option<u64>,
    /// See [`Disk::sector_bytes`]; [`CrashMode::Pages`] pages are whole multiples of it.
    sector_bytes: u64,
    sync_fail_next: bool,
    /// Mutating operations issued so far (the clock of `halt_after_ops`).
    ops: u64,
    /// Once `ops` reaches this, every operation fails: the machine is "dead" until `crash`.
    halt_at_ops: Option<u64>,
    /// File syncs (fdatasync) that succeeded.
    file_syncs: u64,
    /// Creating a file whose name ends with the suffix fails with the OS error.
    refuse_create: Option<(String, i32)>,
}

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order. Invariant: applying them to `durable` gives `data`.
    pending: Vec<WriteOp>,
}

/// How a crash treats the writes issued to a file since its last `sync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// A disk that writes in order: a prefix of them survives, the last one possibly torn.
    Prefix,
    /// Power loss under a page cache that writes dirty pages back in any order: the file's
    /// length becomes its current length (half of the time), its synced one, or any value
    /// in between, and each page
    /// (`page_bytes`, aligned to the start of the file) below it holds either its synced or
    /// its current content, chosen independently (zeros where the chosen version is
    /// shorter). Holes in the middle of unsynced data, with later pages present, are the
    /// point. Pages are whole multiples of the disk's sector size (see
    /// [`SimDisk::set_sector_bytes`]), as on real disks; WAL recovery relies on that.
    Pages { page_bytes: usize },
}

#[derive(Clone, Debug)]
enum WriteOp {
    Append(Vec<u8>),
    Truncate(u64),
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl SimDisk {
    /// An empty disk whose crash decisions are drawn from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            state: Arc::new(Mutex::new(State {
                rng: Rng::new(seed),
                inodes: BTreeMap::new(),
                inode_next: 1,
                names: BTreeMap::new(),
                names_durable: BTreeMap::new(),
                dirs: Vec::new(),
                capacity_bytes: None,
                sector_bytes: crate::disk::DEFAULT_SECTOR_BYTES,
                sync_fail_next: false,
                ops: 0,
                halt_at_ops: None,
                file_syncs: 0,
                refuse_create: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An independent copy of this disk (same content, same pending writes, same RNG state).
    pub fn fork(&self) -> SimDisk {
        SimDisk {
            state: Arc::new(Mutex::new(self.lock().clone())),
        }
    }

    /// Power loss with [`CrashMode::Prefix`]: see [`SimDisk::crash_with`].
    pub fn crash(&self) {
        self.crash_with(CrashMode::Prefix);
    }

    /// Power loss: applies the crash model above with `mode`, then lets the disk work again
    /// (clears `halt_after_ops` and `fail_next_sync`).
    ///
    /// # Panics
    /// If `mode` has a page size that is not a positive multiple of the sector size.
    pub fn crash_with(&self, mode: CrashMode) {
        let mut s = self.lock();
        if let CrashMode::Pages { page_bytes } = mode {
            let sector = s.sector_bytes as usize;
            assert!(
                page_bytes > 0 && page_bytes % sector == 0,
                "a page of {page_bytes} B is not a whole number of {sector} B sectors"
            );
        }
        let State { rng, inodes, .. } = &mut *s;
        for inode in inodes.values_mut() {
            let pending = std::mem::take(&mut inode.pending);
            let content = match mode {
                _ if pending.is_empty() => std::mem::take(&mut inode.durable),
                CrashMode::Prefix => {
                    crash_prefix(std::mem::take(&mut inode.durable), &pending, rng)
                }
                CrashMode::Pages { page_bytes } => {
                    crash_pages(&inode.durable, &inode.data, page_bytes, rng)
                }
            };
            inode.durable = content.clone();
            inode.data = content;
        }
        s.names = s.names_durable.clone();
        let live: Vec<u64> = s.names.values().copied().collect();
        s.inodes.retain(|id, _| live.contains(id));
        s.halt_at_ops = None;
        s.sync_fail_next = false;
    }

    /// The next `sync` or `sync_dir` fails with EIO (and makes nothing durable).
    pub fn fail_next_sync(&self) {
        self.lock().sync_fail_next = true;
    }

    /// Sets the sector size the disk reports (512 by default). A small one (16 B) lets
    /// tests with small records see out-of-order power cuts often.
    ///
    /// # Panics
    /// If `bytes` is 0.
    pub fn set_sector_bytes(&self, bytes: u64) {
        assert!(bytes > 0, "a sector holds at least one byte");
        self.lock().sector_bytes = bytes;
    }

    /// Limits the total bytes of all files; an append beyond it writes what fits and fails
    /// with ENOSPC (`io::ErrorKind::StorageFull`), like a real full disk.
    pub fn set_capacity_bytes(&self, cap: Option<u64>) {
        self.lock().capacity_bytes = cap;
    }

    /// Flips one bit of a file's content, synced or not (media corruption).
    ///
    /// # Panics
    /// If the file does not exist or is shorter than `byte_offset + 1` (a test bug).
    pub fn flip_bit(&self, path: &Path, byte_offset: u64, bit: u8) {
        let mut s = self.lock();
        let id = *s
            .names
            .get(path)
            .unwrap_or_else(|| panic!("flip_bit: no file {}", path.display()));
        let inode = s.inodes.get_mut(&id).expect("named inode exists");
        let at = byte_offset as usize;
        assert!(at < inode.data.len(), "flip_bit: offset {at} past end");
        inode.data[at] ^= 1 << (bit % 8);
        if at < inode.durable.len() {
            inode.durable[at] ^= 1 << (bit % 8);
        }
    }

    /// Mutating operations issued so far; used to count the disk steps of a store operation.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// After `ops` more mutating operations succeed, every operation fails until `crash()`:
    /// the way crash-point tests stop the world between two disk steps.
    pub fn halt_after_ops(&self, ops: u64) {
        let mut s = self.lock();
        s.halt_at_ops = Some(s.ops + ops);
    }

    /// File syncs (fdatasync) that succeeded so far.
    pub fn file_syncs(&self) -> u64 {
        self.lock().file_syncs
    }

    /// While set to `(suffix, errno)`, creating a file whose name ends with `suffix` fails
    /// with that OS error (24 EMFILE, 13 EACCES, ...) and changes nothing.
    pub fn refuse_create(&self, rule: Option<(&str, i32)>) {
        self.lock().refuse_create = rule.map(|(suffix, errno)| (suffix.to_string(), errno));
    }

    /// Total bytes of all files (what counts against the capacity).
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }
}

impl State {
    /// Bytes of the files the running system can see (an unlinked file frees its space).
    fn used_bytes(&self) -> u64 {
        self.names
            .values()
            .filter_map(|id| self.inodes.get(id))
            .map(|i| i.data.len() as u64)
            .sum()
    }

    /// Counts a mutating operation, or fails if the disk is halted.
    fn tick(&mut self) -> io::Result<()> {
        self.check_halted()?;
        self.ops += 1;
        Ok(())
    }

    fn check_halted(&self) -> io::Result<()> {
        match self.halt_at_ops {
            Some(at) if self.ops >= at => Err(io::Error::other("simulated disk halted (crash)")),
            _ => Ok(()),
        }
    }

    fn inode(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let id = *self.names.get(path).ok_or_else(|| not_found(path))?;
        self.inodes.get_mut(&id).ok_or_else(|| not_found(path))
    }

    fn take_sync_failure(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.sync_fail_next) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        Ok(())
    }

    fn parent_exists(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if self.dirs.iter().any(|d| d == p) => Ok(()),
            _ => Err(not_found(path)),
        }
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&mut self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        for d in dir.ancestors() {
            if !d.as_os_str().is_empty() && !s.dirs.iter().any(|x| x == d) {
                s.dirs.push(d.to_path_buf());
            }
        }
        Ok(())
    }

    fn list_dir(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        s.check_halted()?;
        if !s.dirs.iter().any(|d| d == dir) {
            return Err(not_found(dir));
        }
        let names = s
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        Ok(names) // BTreeMap order is sorted order
    }

    fn create(&mut self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if let Some((suffix, errno)) = &s.refuse_create
            && path.to_string_lossy().ends_with(suffix.as_str())
        {
            return Err(io::Error::from_raw_os_error(*errno));
        }
        s.tick()?;
        s.parent_exists(path)?;
        if s.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let id = s.inode_next;
        s.inode_next += 1;
        s.inodes.insert(id, Inode::default());
        s.names.insert(path.to_path_buf(), id);
        Ok(())
    }

    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        let mut s = self.lock();
        s.check_halted()?;
        Ok(s.inode(path)?.data.clone())
    }

    fn read_at(&mut self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut s = self.lock();
        s.check_halted()?;
        let data = &s.inode(path)?.data;
        let start = offset as usize;
        match start.checked_add(len) {
            Some(end) if end <= data.len() => Ok(data[start..end].to_vec()),
            _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        }
    }

    fn file_len(&mut self, path: &Path) -> io::Result<u64> {
        let mut s = self.lock();
        s.check_halted()?;
        Ok(s.inode(path)?.data.len() as u64)
    }

    fn append(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        let room = match s.capacity_bytes {
            Some(cap) => cap.saturating_sub(s.used_bytes()) as usize,
            None => usize::MAX,
        };
        let fits = data.len().min(room);
        let inode = s.inode(path)?;
        inode.data.extend_from_slice(&data[..fits]);
        inode.pending.push(WriteOp::Append(data[..fits].to_vec()));
        if fits < data.len() {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        Ok(())
    }

    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        let inode = s.inode(path)?;
        if len as usize > inode.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SimDisk::truncate cannot extend a file",
            ));
        }
        inode.data.truncate(len as usize);
        inode.pending.push(WriteOp::Truncate(len));
        Ok(())
    }

    fn sync(&mut self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        s.inode(path)?;
        s.take_sync_failure()?;
        let inode = s.inode(path)?;
        inode.durable = inode.data.clone();
        inode.pending.clear();
        s.file_syncs += 1;
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        s.parent_exists(to)?;
        let id = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        s.names.remove(path).ok_or_else(|| not_found(path))?;
        let durable_ids: Vec<u64> = s.names_durable.values().copied().collect();
        let live: Vec<u64> = s.names.values().copied().collect();
        s.inodes
            .retain(|id, _| live.contains(id) || durable_ids.contains(id));
        Ok(())
    }

    fn sector_bytes(&self) -> u64 {
        self.lock().sector_bytes
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        if !s.dirs.iter().any(|d| d == dir) {
            return Err(not_found(dir));
        }
        s.take_sync_failure()?;
        s.names_durable.retain(|p, _| p.parent() != Some(dir));
        let current: Vec<(PathBuf, u64)> = s
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        s.names_durable.extend(current);
        let durable_ids: Vec<u64> = s.names_durable.values().copied().collect();
        let live: Vec<u64> = s.names.values().copied().collect();
        s.inodes
            .retain(|id, _| live.contains(id) || durable_ids.contains(id));
        Ok(())
    }
}

/// [`CrashMode::Prefix`]: none of `pending` (half of the time) or a prefix of it, the last
/// write kept possibly torn.
fn crash_prefix(mut content: Vec<u8>, pending: &[WriteOp], rng: &mut Rng) -> Vec<u8> {
    if !rng.chance(500) {
        return content;
    }
    let kept = rng.index(pending.len() + 1);
    for (i, op) in pending.iter().enumerate().take(kept + 1) {
        match op {
            WriteOp::Truncate(len) if i < kept => content.truncate(*len as usize),
            WriteOp::Append(bytes) if i < kept => content.extend_from_slice(bytes),
            WriteOp::Append(bytes) if rng.chance(500) => {
                let cut = rng.index(bytes.len().max(1)).min(bytes.len());
                content.extend_from_slice(&bytes[..cut]);
                if rng.chance(250) {
                    content.resize(content.len() + bytes.len() - cut, 0);
                }
            }
            _ => {}
        }
    }
    content
}

/// [`CrashMode::Pages`]: a length between the synced and the current one (half of the
/// time the current one), each page from either version.
fn crash_pages(durable: &[u8], data: &[u8], page_bytes: usize, rng: &mut Rng) -> Vec<u8> {
    assert!(page_bytes > 0, "CrashMode::Pages needs a page size");
    let (lo, hi) = (durable.len().min(data.len()), durable.len().max(data.len()));
    // The size is metadata, journaled apart from the data: mostly the current or the
    // synced one, sometimes any in between.
    let len = match rng.index(4) {
        0 | 1 => data.len(),
        2 => durable.len(),
        _ => rng.range(lo as u64, hi as u64 + 1) as usize,
    };
    let mut out = Vec::with_capacity(len);
    // Bounded: one iteration per page below `len`.
    while out.len() < len {
        let (start, end) = (out.len(), (out.len() + page_bytes).min(len));
        let from = if rng.chance(500) { data } else { durable };
        if from.len() > start {
            out.extend_from_slice(&from[start..from.len().min(end)]);
        }
        out.resize(end, 0);
    }
    out
}
