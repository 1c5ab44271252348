//! Opening a data directory: node-id check, WAL replay, snapshot choice, and the checks
//! that the result is a valid Raft state. Nothing here keeps state; `RaftStore` does.

use crate::disk::Disk;
use crate::error::StorageError;
use crate::record::{self, RecordType};
use crate::segment;
use crate::snapshot;
use shardkv_types::{Entry, HardState, LogIndex, NodeId, SnapshotMeta, Term};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The node-id marker file: one `NodeId` record.
pub const NODE_ID_FILE: &str = "node-id";

/// The file name of WAL segment `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("wal-{seq:020}.log")
}

/// True if `name` is a WAL segment's file name.
pub fn is_segment_file_name(name: &str) -> bool {
    parse_segment_name(name).is_some()
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

/// What the state after recovery holds. The store hands this to Raft.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: HardState,
    pub snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// Contiguous; the first has index `snapshot index + 1` (or 1 without a snapshot).
    pub entries: Vec<Entry>,
    /// What recovery repaired or skipped (a torn tail cut off, a corrupt snapshot refused),
    /// one line each, for the operator's log.
    pub warnings: Vec<String>,
}

/// Where an entry's record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    pub term: Term,
    pub seq: u64,
    pub offset: u64,
    /// Header plus payload.
    pub len: u64,
}

/// A WAL segment as the store tracks it.
#[derive(Clone, Debug)]
pub struct SegmentState {
    pub seq: u64,
    pub path: PathBuf,
    pub len: u64,
    /// The highest index of an entry from this segment that is still in the log (snapshot-
    /// covered entries count: they serve a fallback to the previous snapshot). Index 0 when
    /// none. A segment may be deleted once this and every older segment's are covered by
    /// the oldest snapshot kept.
    pub live_max: LogIndex,
}

/// Everything `RaftStore::open` needs.
pub struct Opened {
    pub recovered: Recovered,
    /// Snapshot files on disk, ascending by index; the last is the one recovered.
    pub snapshots: Vec<SnapshotMeta>,
    pub segments: Vec<SegmentState>,
    /// One per recovered entry.
    pub metas: Vec<EntryMeta>,
    /// The recovered snapshot replaced the log (its install was cut short by a crash): the
    /// store must write a reset record before appending, so the next replay agrees.
    pub reset_needed: bool,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |e| StorageError::io(op, path, e)
}

fn sync_dir<D: Disk>(disk: &mut D, dir: &Path) -> Result<(), StorageError> {
    disk.sync_dir(dir)
        .map_err(|source| StorageError::SyncFailed {
            path: dir.to_path_buf(),
            source,
        })
}

/// Recovers the state stored in `dir` for node `id`, creating the directory and its
/// node-id marker if it is new.
pub fn recover<D: Disk>(disk: &mut D, dir: &Path, id: NodeId) -> Result<Opened, StorageError> {
    let mut warnings = Vec::new();
    let names = list_or_create(disk, dir)?;
    check_node_id(disk, dir, id, &names)?;
    remove_temp_files(disk, dir, &names)?;
    let segments = live_segments(disk, dir, &names, &mut warnings)?;
    let mut replay = Replay::default();
    let mut states = Vec::new();
    let n_segments = segments.len();
    for (i, seq) in segments.into_iter().enumerate() {
        let is_last = i + 1 == n_segments;
        if let Some(state) = replay_segment(disk, dir, seq, is_last, &mut replay, &mut warnings)? {
            states.push(state);
        }
    }
    let (snapshot, snapshots) = choose_snapshot(disk, dir, &names, &mut warnings)?;
    let meta = snapshot.as_ref().map(|(m, _)| *m).unwrap_or_default();
    let keep = replay.resolve(meta, dir, &warnings)?;
    let reset_needed = keep.is_none();
    let mut live_max = BTreeMap::new();
    if !reset_needed {
        for (e, loc) in &replay.entries {
            let m = live_max.entry(loc.seq).or_insert(LogIndex(0));
            *m = (*m).max(e.index);
        }
    }
    for s in &mut states {
        s.live_max = live_max.get(&s.seq).copied().unwrap_or_default();
    }
    let skip = keep.unwrap_or(replay.entries.len());
    let (entries, metas) = replay.entries.into_iter().skip(skip).unzip();
    Ok(Opened {
        recovered: Recovered {
            hard_state: replay.hard_state,
            snapshot,
            entries,
            warnings,
        },
        snapshots,
        segments: states,
        metas,
        reset_needed,
    })
}

fn list_or_create<D: Disk>(disk: &mut D, dir: &Path) -> Result<Vec<String>, StorageError> {
    match disk.list_dir(dir) {
        Ok(names) => Ok(names),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            disk.create_dir_all(dir)
                .map_err(io_err("create directory", dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(disk, parent)?;
            }
            Ok(Vec::new())
        }
        Err(e) => Err(StorageError::io("list directory", dir, e)),
    }
}

fn check_node_id<D: Disk>(
    disk: &mut D,
    dir: &Path,
    id: NodeId,
    names: &[String],
) -> Result<(), StorageError> {
    let path = dir.join(NODE_ID_FILE);
    if names.iter().any(|n| n == NODE_ID_FILE) {
        let bytes = disk.read(&path).map_err(io_err("read", &path))?;
        let records = record::scan_all(&bytes, &path)?;
        let found: NodeId = match records.as_slice() {
            [r] if r.kind == RecordType::NodeId => record::decode_value(r.payload, &path, 0)?,
            _ => {
                return Err(StorageError::Corrupt {
                    file: path,
                    offset: 0,
                    reason: "node-id marker does not hold exactly one node-id record".into(),
                });
            }
        };
        if found != id {
            return Err(StorageError::WrongNode {
                dir: dir.to_path_buf(),
                expected: id,
                found: format!("node {found}"),
            });
        }
        return Ok(());
    }
    let ours: Vec<&String> = names
        .iter()
        .filter(|n| parse_segment_name(n).is_some() || snapshot::parse_file_name(n).is_some())
        .collect();
    if !ours.is_empty() {
        return Err(StorageError::WrongNode {
            dir: dir.to_path_buf(),
            expected: id,
            found: format!(
                "an unknown node (WAL or snapshot files but no {NODE_ID_FILE} marker: {ours:?})"
            ),
        });
    }
    let mut buf = Vec::new();
    record::encode_value(RecordType::NodeId, &id, &mut buf)?;
    let tmp_name = format!("{NODE_ID_FILE}{}", snapshot::TMP_SUFFIX);
    let tmp = dir.join(&tmp_name);
    if names.contains(&tmp_name) {
        disk.remove(&tmp).map_err(io_err("remove", &tmp))?;
    }
    disk.create(&tmp).map_err(io_err("create", &tmp))?;
    disk.append(&tmp, &buf).map_err(io_err("write", &tmp))?;
    disk.sync(&tmp).map_err(|source| StorageError::SyncFailed {
        path: tmp.clone(),
        source,
    })?;
    disk.rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    sync_dir(disk, dir)
}

fn remove_temp_files<D: Disk>(
    disk: &mut D,
    dir: &Path,
    names: &[String],
) -> Result<(), StorageError> {
    let mut removed = false;
    for name in names.iter().filter(|n| n.ends_with(snapshot::TMP_SUFFIX)) {
        if name.starts_with("snap-") {
            let path = dir.join(name);
            disk.remove(&path).map_err(io_err("remove", &path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(disk, dir)?;
    }
    Ok(())
}

/// The segments to replay: the run of consecutive sequence numbers that ends at the newest.
/// Older ones are leftovers of a prefix deletion a crash interrupted; they are removed.
fn live_segments<D: Disk>(
    disk: &mut D,
    dir: &Path,
    names: &[String],
    warnings: &mut Vec<String>,
) -> Result<Vec<u64>, StorageError> {
    let seqs: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    let mut first = seqs.len();
    while first > 0 && (first == seqs.len() || seqs[first - 1] + 1 == seqs[first]) {
        first -= 1;
    }
    if first > 0 {
        for &seq in &seqs[..first] {
            let path = dir.join(segment_file_name(seq));
            disk.remove(&path).map_err(io_err("remove", &path))?;
            warnings.push(format!(
                "removed {} left over from an interrupted log compaction",
                path.display()
            ));
        }
        sync_dir(disk, dir)?;
    }
    Ok(seqs[first..].to_vec())
}

/// Replays one segment; `None` when it was the newest and its creation a crash
/// interrupted (no header): it is removed.
fn replay_segment<D: Disk>(
    disk: &mut D,
    dir: &Path,
    seq: u64,
    is_last: bool,
    replay: &mut Replay,
    warnings: &mut Vec<String>,
) -> Result<Option<SegmentState>, StorageError> {
    let path = dir.join(segment_file_name(seq));
    let bytes = disk.read(&path).map_err(io_err("read", &path))?;
    let scan = segment::scan(&bytes, &path, is_last, disk.sector_bytes())?;
    for r in &scan.records {
        match r.kind {
            RecordType::Entry => {
                let e: Entry = r.decode(&path)?;
                let meta = EntryMeta {
                    term: e.term,
                    seq,
                    offset: r.offset,
                    len: r.len,
                };
                replay.entry(e, meta, &path)?;
            }
            RecordType::HardState => replay.hard_state = r.decode(&path)?,
            RecordType::SnapshotReset => {
                // Only the point: the membership lives in the snapshot file.
                let (index, term): (LogIndex, Term) = r.decode(&path)?;
                replay.start = Some((index, Some(term)));
                replay.entries.clear();
            }
            RecordType::NodeId => {
                return Err(StorageError::Corrupt {
                    file: path,
                    offset: r.offset,
                    reason: "node-id record inside a WAL segment".into(),
                });
            }
        }
    }
    if scan.valid_len == 0 {
        disk.remove(&path).map_err(io_err("remove", &path))?;
        sync_dir(disk, dir)?;
        warnings.push(format!(
            "removed {}: {}",
            path.display(),
            scan.cut.as_deref().unwrap_or("empty")
        ));
        return Ok(None);
    }
    if let Some(why) = &scan.cut {
        disk.truncate(&path, scan.valid_len)
            .map_err(io_err("truncate", &path))?;
        disk.sync(&path)
            .map_err(|source| StorageError::SyncFailed {
                path: path.clone(),
                source,
            })?;
        warnings.push(format!(
            "cut an unsynced tail of {} bytes off {} at offset {}: {why}",
            bytes.len() as u64 - scan.valid_len,
            path.display(),
            scan.valid_len
        ));
    }
    Ok(Some(SegmentState {
        seq,
        path,
        len: scan.valid_len,
        live_max: LogIndex(0),
    }))
}

/// The newest snapshot that verifies; newer ones that do not are renamed `*.corrupt`.
#[allow(clippy::type_complexity)]
fn choose_snapshot<D: Disk>(
    disk: &mut D,
    dir: &Path,
    names: &[String],
    warnings: &mut Vec<String>,
) -> Result<(Option<(SnapshotMeta, Vec<u8>)>, Vec<SnapshotMeta>), StorageError> {
    let mut metas: Vec<SnapshotMeta> = names
        .iter()
        .filter_map(|n| snapshot::parse_file_name(n))
        .collect();
    metas.sort_by_key(|m| (m.index, m.term));
    // Bounded by the number of snapshot files.
    while let Some(&meta) = metas.last() {
        match snapshot::load(disk, dir, meta) {
            Ok((loaded, data)) => return Ok((Some((loaded, data)), metas)),
            Err(e @ StorageError::Corrupt { .. }) => {
                let path = dir.join(snapshot::file_name(meta));
                let aside = dir.join(format!(
                    "{}{}",
                    snapshot::file_name(meta),
                    snapshot::CORRUPT_SUFFIX
                ));
                disk.rename(&path, &aside)
                    .map_err(io_err("rename", &path))?;
                sync_dir(disk, dir)?;
                warnings.push(format!(
                    "refused snapshot: {e}; kept it as {}",
                    aside.display()
                ));
                metas.pop();
            }
            Err(e) => return Err(e),
        }
    }
    Ok((None, metas))
}

/// The log as the WAL records rebuild it, before the snapshot is applied.
#[derive(Default)]
struct Replay {
    /// The index just before the first entry, and its term when a reset record set it.
    /// `None` until the first entry or reset record.
    start: Option<(LogIndex, Option<Term>)>,
    /// Invariant: contiguous from `start + 1`.
    entries: Vec<(Entry, EntryMeta)>,
    hard_state: HardState,
}

impl Replay {
    /// An entry record replaces every entry at its index or above.
    fn entry(&mut self, e: Entry, meta: EntryMeta, file: &Path) -> Result<(), StorageError> {
        if e.index == LogIndex(0) {
            return Err(StorageError::Corrupt {
                file: file.to_path_buf(),
                offset: meta.offset,
                reason: "entry with index 0".into(),
            });
        }
        match self.start {
            Some((start, _)) if e.index > start => {
                let last = start.0 + self.entries.len() as u64;
                if e.index.0 > last + 1 {
                    return Err(StorageError::Corrupt {
                        file: file.to_path_buf(),
                        offset: meta.offset,
                        reason: format!("entry {} does not follow the last entry i{last}", e.index),
                    });
                }
                self.entries.truncate((e.index.0 - start.0 - 1) as usize);
            }
            // The first entry seen, or one below the start: everything before it lives in
            // segments already deleted (covered by a snapshot) or was replaced.
            _ => {
                self.entries.clear();
                self.start = Some((e.index.prev(), None));
            }
        }
        self.entries.push((e, meta));
        Ok(())
    }

    /// Applies snapshot `snap` to the replayed log: `Some(n)` keeps the entries after the
    /// first `n`; `None` means the snapshot replaces the whole log.
    fn resolve(
        &self,
        snap: SnapshotMeta,
        dir: &Path,
        warnings: &[String],
    ) -> Result<Option<usize>, StorageError> {
        let Some((start, start_term)) = self.start else {
            return Ok(Some(0));
        };
        let last = LogIndex(start.0 + self.entries.len() as u64);
        if snap.index < start {
            return Err(StorageError::Gap {
                dir: dir.to_path_buf(),
                snapshot_index: snap.index,
                first_log_index: start.next(),
                detail: if warnings.is_empty() {
                    "entries in between are missing".into()
                } else {
                    warnings.join("; ")
                },
            });
        }
        if snap.index == start {
            return Ok(match start_term {
                Some(t) if t != snap.term => None,
                _ => Some(0),
            });
        }
        if snap.index > last {
            return Ok(None);
        }
        let at = (snap.index.0 - start.0 - 1) as usize;
        Ok((self.entries[at].0.term == snap.term).then_some(at + 1))
    }
}
