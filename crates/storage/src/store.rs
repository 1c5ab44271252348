//! `RaftStore`: the WAL, hard state and snapshot files of one Raft node in one directory.

use crate::disk::Disk;
use crate::error::StorageError;
use crate::record::RecordType;
use crate::recovery::{self, EntryMeta, Recovered, SegmentState};
use crate::segment;
use crate::snapshot;
use shardkv_types::{Entry, HardState, LogIndex, NodeId, SnapshotMeta, Term};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default size at which the active WAL segment is sealed and a new one started.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 << 20;

/// Snapshot files kept: the newest, and the one before it as a fallback should the newest
/// turn out corrupt (the log after the older one is kept too, so the fallback is complete).
pub const SNAPSHOTS_KEPT: usize = 2;

/// Tunables of a [`RaftStore`].
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// A segment is sealed once the next write would take it past this size (a single batch
    /// larger than this still goes into one segment).
    pub segment_bytes_max: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
        }
    }
}

/// A snapshot file to write: made by [`RaftStore::start_snapshot`], run anywhere with
/// [`SnapshotJob::run`], completed by [`RaftStore::finish_snapshot`].
#[derive(Debug)]
pub struct SnapshotJob {
    dir: PathBuf,
    meta: SnapshotMeta,
    data: Arc<Vec<u8>>,
}

impl SnapshotJob {
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }

    /// The directory the file goes to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes, syncs and renames the file into place with `disk` (temp file, fdatasync,
    /// rename, directory fsync), on whatever thread calls it.
    pub fn run<D: Disk>(self, disk: &mut D) -> SnapshotWritten {
        SnapshotWritten {
            meta: self.meta,
            outcome: snapshot::write(disk, &self.dir, self.meta, &self.data),
        }
    }
}

/// What running a [`SnapshotJob`] did.
#[derive(Debug)]
pub struct SnapshotWritten {
    meta: SnapshotMeta,
    outcome: Result<PathBuf, snapshot::WriteFailure>,
}

impl SnapshotWritten {
    /// A job that could not be run at all (its writer failed to start or died): nothing
    /// was written.
    pub fn not_run(meta: SnapshotMeta, dir: &Path, source: std::io::Error) -> SnapshotWritten {
        let tmp = dir.join(snapshot::file_name(meta));
        SnapshotWritten {
            meta,
            outcome: Err(snapshot::WriteFailure {
                error: StorageError::io("write in the background", tmp, source),
                renamed: false,
            }),
        }
    }

    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }
}

/// The persistent state of one Raft node: see the crate docs for the contract.
pub struct RaftStore<D: Disk> {
    disk: D,
    dir: PathBuf,
    opts: StoreOptions,
    /// The hard state last written to the WAL (durable after the next `sync`).
    hard_state: HardState,
    /// The newest durable snapshot; index 0 means none.
    snapshot: SnapshotMeta,
    /// Snapshot files on disk, ascending. Invariant: the last is `snapshot` when non-empty.
    snapshots: Vec<SnapshotMeta>,
    /// Entries `snapshot.index + 1 ..= last_index()`, where each record lives.
    log: VecDeque<EntryMeta>,
    /// Sum of `log[..].len`.
    log_bytes: u64,
    /// Ascending by sequence number; the last one is the active (appended) segment.
    /// Invariant: non-empty once open returns; only the active one may have unsynced data.
    segments: Vec<SegmentState>,
    /// The active segment has writes not yet fdatasync'ed.
    dirty: bool,
    /// Bytes of the active segment the last fdatasync made durable: the synced-offset
    /// marker every record written now carries (see `segment`).
    synced_len: u64,
    /// Set by any failure after which durability can no longer be promised.
    poisoned: Option<String>,
}

impl<D: Disk> RaftStore<D> {
    /// Opens (creating if empty) the data dir of node `id`; refuses a dir that belongs to
    /// another node id. Returns the recovered state for Raft.
    pub fn open(
        disk: D,
        dir: &Path,
        id: NodeId,
    ) -> Result<(RaftStore<D>, Recovered), StorageError> {
        RaftStore::open_with(disk, dir, id, StoreOptions::default())
    }

    /// [`RaftStore::open`] with explicit options.
    pub fn open_with(
        mut disk: D,
        dir: &Path,
        id: NodeId,
        opts: StoreOptions,
    ) -> Result<(RaftStore<D>, Recovered), StorageError> {
        assert!(
            opts.segment_bytes_max > 0,
            "segment_bytes_max must be positive"
        );
        let opened = recovery::recover(&mut disk, dir, id)?;
        // The loaded snapshot's meta carries its membership; the names only index and term.
        let snapshot = match &opened.recovered.snapshot {
            Some((meta, _)) => *meta,
            None => opened.snapshots.last().copied().unwrap_or_default(),
        };
        let log: VecDeque<EntryMeta> = opened.metas.into();
        let mut store = RaftStore {
            disk,
            dir: dir.to_path_buf(),
            opts,
            hard_state: opened.recovered.hard_state,
            snapshot,
            snapshots: opened.snapshots,
            log_bytes: log.iter().map(|m| m.len).sum(),
            log,
            segments: opened.segments,
            dirty: false,
            synced_len: 0,
            poisoned: None,
        };
        if store.segments.is_empty() {
            store.start_segment(1)?;
            store.sync()?;
        } else {
            // What was recovered may be unsynced writes of a process that died (they sit
            // in the page cache); Raft will treat it as persisted, so make it so.
            for path in store
                .segments
                .iter()
                .map(|s| s.path.clone())
                .collect::<Vec<_>>()
            {
                store.sync_file(&path)?;
            }
            store.sync_dir()?;
            store.synced_len = store.active().len;
        }
        if opened.reset_needed {
            // The snapshot replaced the log but its reset record never became durable.
            store.write_reset(snapshot)?;
            store.sync()?;
        }
        Ok((store, opened.recovered))
    }

    /// Appends entries; if `entries[0].index <= last_index()`, the conflicting suffix from
    /// `entries[0].index` is replaced (logically: the new records supersede the old ones on
    /// replay, nothing is rewritten). Not durable until [`RaftStore::sync`].
    ///
    /// On `NoSpace` nothing was written and the log is unchanged.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_writable()?;
        let Some(head) = entries.first() else {
            return Ok(());
        };
        let (first, last) = (self.first_index(), self.last_index());
        let contiguous = entries.windows(2).all(|w| w[1].index == w[0].index.next());
        if head.index < first || head.index > last.next() || !contiguous {
            return Err(StorageError::BadAppend {
                index: head.index,
                first,
                last,
            });
        }
        let (base, spans) = self.write_records(|synced_to, buf| {
            buf.reserve(entries.iter().map(|e| e.size_bytes() + 24).sum());
            let mut spans = Vec::with_capacity(entries.len());
            for e in entries {
                let at = buf.len() as u64;
                segment::encode(RecordType::Entry, synced_to, e, buf)?;
                spans.push((e.term, at, buf.len() as u64 - at));
            }
            Ok(spans)
        })?;
        // The log changes only once the write succeeded.
        let keep = (head.index.0 - first.0) as usize;
        while self.log.len() > keep {
            let gone = self.log.pop_back().expect("len > keep >= 0");
            self.log_bytes -= gone.len;
        }
        let cut = head.index.prev();
        for s in &mut self.segments {
            s.live_max = s.live_max.min(cut);
        }
        let active = self
            .segments
            .last_mut()
            .expect("invariant: an active segment");
        active.live_max = entries[entries.len() - 1].index;
        for (term, at, len) in spans {
            self.log.push_back(EntryMeta {
                term,
                seq: active.seq,
                offset: base + at,
                len,
            });
            self.log_bytes += len;
        }
        debug_assert_eq!(self.last_index(), entries[entries.len() - 1].index);
        Ok(())
    }

    /// Records the hard state; not durable until [`RaftStore::sync`].
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        self.check_writable()?;
        if hs == self.hard_state {
            return Ok(());
        }
        self.write_records(|synced_to, buf| {
            segment::encode(RecordType::HardState, synced_to, &hs, buf)
        })?;
        self.hard_state = hs;
        Ok(())
    }

    /// Group commit: makes everything appended or set since the last sync durable with one
    /// fdatasync. An fsync error is [`StorageError::SyncFailed`] and poisons the store:
    /// the caller must stop the process (never retry and go on).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_writable()?;
        if self.dirty {
            let path = self.active().path.clone();
            self.sync_file(&path)?;
            self.dirty = false;
            self.synced_len = self.active().len;
        }
        Ok(())
    }

    /// Durably stores a snapshot (temp file, fsync, rename, fsync dir; the previous snapshot
    /// is kept), then drops the log prefix `<= meta.index`. If the log does not hold
    /// `meta.index` with `meta.term` (a leader's snapshot replacing a divergent or short
    /// log), every entry is discarded and the log continues at `meta.index + 1`.
    ///
    /// Also makes everything appended before it durable when it writes a reset record.
    ///
    /// A failure before the new file got its final name (creating, writing or syncing the
    /// temp file, the rename) changes nothing and leaves the store writable
    /// ([`RaftStore::poisoned`] stays `None`): the full log is still there, so the caller
    /// may go on and try a later snapshot. A failure after the rename poisons the store.
    pub fn save_snapshot(&mut self, meta: SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.check_writable()?;
        if meta.index <= self.snapshot.index {
            return Err(StorageError::StaleSnapshot {
                index: meta.index,
                current: self.snapshot.index,
            });
        }
        let matches = self.term(meta.index) == Some(meta.term);
        let path = match snapshot::write(&mut self.disk, &self.dir, meta, data) {
            Ok(path) => path,
            // Nothing but a temp file was touched (and it is gone): the WAL and the current
            // snapshot are as they were, so any error here (EMFILE, EACCES, even a failed
            // fdatasync of the temp file, which holds nothing acknowledged) leaves the store
            // writable, and the caller may try a later snapshot.
            Err(f) if !f.renamed => return Err(f.error),
            Err(f) => return Err(self.after_failure(f.error, true)),
        };
        if !matches {
            // Without the reset record a later replay would mix old and new entries.
            if let Err(e) = self.write_reset(meta).and_then(|()| self.sync()) {
                let unclean = e.is_fatal() || self.undo_snapshot_file(&path).is_err();
                return Err(self.after_failure(e, unclean));
            }
        }
        if matches {
            let covered = meta.index.0 - self.snapshot.index.0;
            for gone in self.log.drain(..covered as usize) {
                self.log_bytes -= gone.len;
            }
        } else {
            self.log.clear();
            self.log_bytes = 0;
            for s in &mut self.segments {
                s.live_max = LogIndex(0);
            }
        }
        self.snapshot = meta;
        self.snapshots.push(meta);
        self.compact()
    }

    /// Starts saving a snapshot of a prefix this log holds (one the state machine took, not
    /// a leader's install: that is [`RaftStore::save_snapshot`]) in two steps, so the file
    /// can be written and synced off the thread that owns the store: run the returned
    /// [`SnapshotJob`] on any thread with any [`Disk`] over the same files, then hand its
    /// outcome to [`RaftStore::finish_snapshot`]. Nothing changes here until then; a crash
    /// before it leaves the previous snapshot and the full log.
    pub fn start_snapshot(
        &self,
        meta: SnapshotMeta,
        data: Arc<Vec<u8>>,
    ) -> Result<SnapshotJob, StorageError> {
        self.check_writable()?;
        if meta.index <= self.snapshot.index {
            return Err(StorageError::StaleSnapshot {
                index: meta.index,
                current: self.snapshot.index,
            });
        }
        assert_eq!(
            self.term(meta.index),
            Some(meta.term),
            "a snapshot started in the background covers a prefix of this log"
        );
        Ok(SnapshotJob {
            dir: self.dir.clone(),
            meta,
            data,
        })
    }

    /// Completes a snapshot started with [`RaftStore::start_snapshot`]: on success drops the
    /// log prefix it covers (and old files, as `save_snapshot` does). A failure before the
    /// file got its final name changes nothing and leaves the store writable; one after
    /// poisons it. A snapshot overtaken meanwhile (a newer one saved or installed) is
    /// removed and ignored.
    pub fn finish_snapshot(&mut self, written: SnapshotWritten) -> Result<(), StorageError> {
        let meta = written.meta;
        match written.outcome {
            Err(f) if !f.renamed => return Err(f.error),
            Err(f) => return Err(self.after_failure(f.error, true)),
            Ok(_) if meta.index <= self.snapshot.index => {
                let path = self.dir.join(snapshot::file_name(meta));
                // Best effort: recovery takes the newest snapshot anyway.
                let _ = self.disk.remove(&path);
                return Ok(());
            }
            Ok(_) => {}
        }
        self.check_writable()?;
        debug_assert_eq!(self.term(meta.index), Some(meta.term));
        let covered = meta.index.0 - self.snapshot.index.0;
        for gone in self.log.drain(..covered as usize) {
            self.log_bytes -= gone.len;
        }
        self.snapshot = meta;
        self.snapshots.push(meta);
        self.compact()
    }

    /// Logical size of the persisted Raft state: the encoded hard state plus the records of
    /// the live entries after the snapshot.
    pub fn raft_state_bytes(&self) -> u64 {
        let mut buf = Vec::new();
        let hs = segment::encode(RecordType::HardState, 0, &self.hard_state, &mut buf);
        debug_assert!(hs.is_ok());
        buf.len() as u64 + self.log_bytes
    }

    /// Physical bytes of the WAL segment files.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Reads the live entries `lo..hi` (`hi` exclusive) back from the WAL. Works while the
    /// disk is full.
    pub fn entries(&mut self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StorageError> {
        let (first, last) = (self.first_index(), self.last_index());
        if lo < first || hi > last.next() || lo > hi {
            return Err(StorageError::NotInLog {
                lo,
                hi,
                first,
                last,
            });
        }
        let mut out = Vec::with_capacity((hi.0 - lo.0) as usize);
        for i in lo.0..hi.0 {
            let m = self.log[(i - first.0) as usize];
            let path = self.dir.join(recovery::segment_file_name(m.seq));
            let bytes = self
                .disk
                .read_at(&path, m.offset, m.len as usize)
                .map_err(|e| StorageError::io("read", &path, e))?;
            let r = segment::parse_one(&bytes, &path, m.offset)?;
            let entry: Option<Entry> = match r.kind {
                RecordType::Entry => Some(r.decode(&path)?),
                _ => None,
            };
            match entry {
                Some(e) if e.index == LogIndex(i) => out.push(e),
                _ => {
                    return Err(StorageError::Corrupt {
                        file: path,
                        offset: m.offset,
                        reason: format!("expected the record of entry i{i}"),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Reads and verifies the current snapshot file.
    pub fn load_snapshot(&mut self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        if self.snapshot.index == LogIndex(0) {
            return Ok(None);
        }
        let (meta, data) = snapshot::load(&mut self.disk, &self.dir, self.snapshot)?;
        Ok(Some((meta, data)))
    }

    /// The hard state last set (durable once synced).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The data directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest snapshot (index 0 when there is none).
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot
    }

    /// The index of the first live entry (snapshot index + 1).
    pub fn first_index(&self) -> LogIndex {
        self.snapshot.index.next()
    }

    /// The index of the last entry, or the snapshot index when the log is empty.
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.index.0 + self.log.len() as u64)
    }

    /// The term of entry `index`, or of the snapshot if `index` is its index.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        Some(self.log[(index.0 - self.first_index().0) as usize].term)
    }

    /// Why the store refuses writes, if it does.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// The number of WAL segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The disk this store writes to.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// The disk this store writes to, for running a [`SnapshotJob`] in place.
    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    /// Closes the store and hands back its disk.
    pub fn into_disk(self) -> D {
        self.disk
    }

    fn active(&self) -> &SegmentState {
        self.segments.last().expect("invariant: an active segment")
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(cause) => Err(StorageError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records a failure. Only a `NoSpace` that left the disk as it was (`unclean` false)
    /// keeps the store writable; anything else poisons it (fail-stop).
    fn after_failure(&mut self, e: StorageError, unclean: bool) -> StorageError {
        if unclean || e.is_fatal() || !matches!(e, StorageError::NoSpace { .. }) {
            self.poisoned.get_or_insert_with(|| e.to_string());
        }
        e
    }

    fn sync_file(&mut self, path: &Path) -> Result<(), StorageError> {
        self.disk.sync(path).map_err(|source| {
            let e = StorageError::SyncFailed {
                path: path.to_path_buf(),
                source,
            };
            self.after_failure(e, true)
        })
    }

    fn sync_dir(&mut self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        self.disk.sync_dir(&dir).map_err(|source| {
            let e = StorageError::SyncFailed { path: dir, source };
            self.after_failure(e, true)
        })
    }

    /// Appends `buf` to the active segment and returns the offset it starts at. On failure
    /// the segment is cut back to its old length, so no partial record stays behind.
    fn write_active(&mut self, buf: &[u8]) -> Result<u64, StorageError> {
        let (path, base) = (self.active().path.clone(), self.active().len);
        if let Err(e) = self.disk.append(&path, buf) {
            let e = StorageError::io("append to", &path, e);
            let restored = self.disk.truncate(&path, base).is_ok();
            return Err(self.after_failure(e, !restored));
        }
        self.dirty = true;
        let active = self
            .segments
            .last_mut()
            .expect("invariant: an active segment");
        active.len += buf.len() as u64;
        Ok(base)
    }

    /// Encodes records with `encode` (given the synced-offset marker to put in them),
    /// rotating first if they would take the active segment past its limit, and appends
    /// them. Returns the offset they start at and what `encode` returned.
    fn write_records<T>(
        &mut self,
        encode: impl Fn(u64, &mut Vec<u8>) -> Result<T, StorageError>,
    ) -> Result<(u64, T), StorageError> {
        let mut buf = Vec::new();
        let mut out = encode(self.synced_len, &mut buf)?;
        let len = buf.len();
        if self.maybe_rotate(len as u64)? {
            // A new segment: the marker changed (its size did not).
            buf.clear();
            out = encode(self.synced_len, &mut buf)?;
            debug_assert_eq!(buf.len(), len, "a marker has a fixed size");
        }
        // The marker never claims more than is on disk, nor less than the header.
        debug_assert!(
            (segment::HEADER_BYTES..=self.active().len).contains(&self.synced_len),
            "synced_len {} outside the active segment",
            self.synced_len
        );
        let base = self.write_active(&buf)?;
        Ok((base, out))
    }

    fn write_reset(&mut self, meta: SnapshotMeta) -> Result<(), StorageError> {
        self.write_records(|synced_to, buf| {
            // The point only, as the first WAL layout wrote it: the membership is in the
            // snapshot file.
            segment::encode(
                RecordType::SnapshotReset,
                synced_to,
                &(meta.index, meta.term),
                buf,
            )
        })
        .map(drop)
    }

    /// Seals the active segment and starts the next one if `incoming` bytes would take it
    /// past the limit. True if it did.
    fn maybe_rotate(&mut self, incoming: u64) -> Result<bool, StorageError> {
        let active = self.active();
        if active.len <= segment::HEADER_BYTES
            || active.len + incoming <= self.opts.segment_bytes_max
        {
            return Ok(false);
        }
        // Recovery tolerates a torn tail only in the newest segment, so the sealed one must
        // be complete on disk before the next one receives anything.
        let (seq, path) = (active.seq, active.path.clone());
        self.sync_file(&path)?;
        self.dirty = false;
        self.start_segment(seq + 1)?;
        Ok(true)
    }

    /// Creates segment `seq` with its header, makes the header and the directory entry
    /// durable (one fdatasync per segment: recovery then knows a segment without a header
    /// was never written to).
    fn start_segment(&mut self, seq: u64) -> Result<(), StorageError> {
        let path = self.dir.join(recovery::segment_file_name(seq));
        if let Err(e) = self.disk.create(&path) {
            let e = StorageError::io("create", &path, e);
            return Err(self.after_failure(e, false));
        }
        if let Err(e) = self.disk.append(&path, &segment::MAGIC) {
            // Recovery removes a newest segment with a torn header, but the store must not
            // find this name taken at the next rotation: remove it now.
            let e = StorageError::io("write the header of", &path, e);
            let removed = self.disk.remove(&path).is_ok();
            return Err(self.after_failure(e, !removed));
        }
        self.sync_file(&path)?;
        self.sync_dir()?;
        self.segments.push(SegmentState {
            seq,
            path,
            len: segment::HEADER_BYTES,
            live_max: LogIndex(0),
        });
        self.synced_len = segment::HEADER_BYTES;
        Ok(())
    }

    /// Rolls back a snapshot file whose install could not be recorded in the WAL.
    fn undo_snapshot_file(&mut self, path: &Path) -> Result<(), StorageError> {
        self.disk
            .remove(path)
            .map_err(|e| StorageError::io("remove", path, e))?;
        self.sync_dir()
    }

    /// Deletes snapshots beyond [`SNAPSHOTS_KEPT`] and the WAL segments whose entries the
    /// oldest kept snapshot covers. A failed removal is retried at the next snapshot.
    fn compact(&mut self) -> Result<(), StorageError> {
        let mut removed = false;
        while self.snapshots.len() > SNAPSHOTS_KEPT {
            let path = self.dir.join(snapshot::file_name(self.snapshots[0]));
            if self.disk.remove(&path).is_err() {
                break;
            }
            self.snapshots.remove(0);
            removed = true;
        }
        let floor = if self.snapshots.len() >= SNAPSHOTS_KEPT {
            self.snapshots[0].index
        } else {
            LogIndex(0)
        };
        if self.segments.len() > 1 && self.segments[0].live_max <= floor {
            // The segments about to go may hold the only copy of the hard state: write it
            // again to the active segment and make it durable first.
            let mut buf = Vec::new();
            segment::encode(
                RecordType::HardState,
                self.synced_len,
                &self.hard_state,
                &mut buf,
            )?;
            match self.write_active(&buf) {
                Ok(_) => self.sync()?,
                // The snapshot itself is saved; the segments go at the next snapshot.
                Err(StorageError::NoSpace { .. }) => return self.sync_dir_if(removed),
                Err(e) => return Err(e),
            }
        }
        // A segment goes only with every older one, so the live segments stay consecutive.
        while self.segments.len() > 1 && self.segments[0].live_max <= floor {
            let path = self.segments[0].path.clone();
            if self.disk.remove(&path).is_err() {
                break;
            }
            self.segments.remove(0);
            removed = true;
        }
        self.sync_dir_if(removed)
    }

    fn sync_dir_if(&mut self, changed: bool) -> Result<(), StorageError> {
        if changed { self.sync_dir() } else { Ok(()) }
    }
}
