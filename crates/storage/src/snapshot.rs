//! Snapshot files: `snap-<index>-<term>.snap`, written through a temp file, fsync, rename
//! and directory fsync; verified by crc32c on load.
//!
//! Layout (little-endian): `magic "SKVSNAP2" | index u64 | term u64 | data_len u64 |
//! conf_len u64 | conf | data | crc32c u32` where the crc covers every byte before it and
//! `conf` is the group membership as of `index` ([`Membership::to_bytes`]). Files of the
//! first layout (`"SKVSNAP1"`, no `conf_len` and no conf) still load, with an empty
//! (unknown) membership.

use crate::disk::Disk;
use crate::error::StorageError;
use shardkv_types::{LogIndex, Membership, SnapshotMeta, Term};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SKVSNAP2";
const MAGIC_V1: &[u8; 8] = b"SKVSNAP1";
const HEADER_BYTES: usize = 8 + 8 + 8 + 8;
/// The version-2 header adds the conf length.
const HEADER_BYTES_V2: usize = HEADER_BYTES + 8;
const SUFFIX: &str = ".snap";
/// Suffix of a snapshot being written; such a file is garbage after a crash.
pub const TMP_SUFFIX: &str = ".tmp";
/// Suffix given to a snapshot file that failed verification, so it is kept for forensics but
/// never considered again.
pub const CORRUPT_SUFFIX: &str = ".corrupt";

/// The file name of the snapshot `meta`.
pub fn file_name(meta: SnapshotMeta) -> String {
    format!("snap-{:020}-{:020}{SUFFIX}", meta.index.0, meta.term.0)
}

/// The snapshot a file name stands for, if it is one.
pub fn parse_file_name(name: &str) -> Option<SnapshotMeta> {
    let body = name.strip_prefix("snap-")?.strip_suffix(SUFFIX)?;
    let (index, term) = body.split_once('-')?;
    if index.len() != 20 || term.len() != 20 {
        return None;
    }
    Some(SnapshotMeta::at(
        LogIndex(index.parse().ok()?),
        Term(term.parse().ok()?),
    ))
}

fn encode(meta: SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let conf = meta.conf.to_bytes();
    let mut buf = Vec::with_capacity(HEADER_BYTES_V2 + conf.len() + data.len() + 4);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&meta.index.0.to_le_bytes());
    buf.extend_from_slice(&meta.term.0.to_le_bytes());
    buf.extend_from_slice(&(data.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(conf.len() as u64).to_le_bytes());
    buf.extend_from_slice(&conf);
    buf.extend_from_slice(data);
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(le)
}

/// Verifies a snapshot file's bytes against the index and term its name promises; returns
/// the meta (with the membership the file records) and the data.
pub fn decode(
    bytes: &[u8],
    path: &Path,
    expected: SnapshotMeta,
) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let v2 = bytes.len() >= 8 && &bytes[..8] == MAGIC;
    if bytes.len() < HEADER_BYTES + 4 || !(v2 || &bytes[..8] == MAGIC_V1) {
        return Err(corrupt(
            0,
            "not a snapshot file (bad magic or too short)".into(),
        ));
    }
    let body_len = bytes.len() - 4;
    let mut crc_le = [0u8; 4];
    crc_le.copy_from_slice(&bytes[body_len..]);
    if crc32c::crc32c(&bytes[..body_len]) != u32::from_le_bytes(crc_le) {
        return Err(corrupt(body_len, "snapshot checksum mismatch".into()));
    }
    let mut meta = SnapshotMeta::at(LogIndex(u64_at(bytes, 8)), Term(u64_at(bytes, 16)));
    let data_len = u64_at(bytes, 24);
    let mut data_at = HEADER_BYTES;
    if v2 {
        if body_len < HEADER_BYTES_V2 {
            return Err(corrupt(HEADER_BYTES, "snapshot header cut short".into()));
        }
        let conf_len = u64_at(bytes, HEADER_BYTES);
        let conf_end = (HEADER_BYTES_V2 as u64).saturating_add(conf_len);
        if conf_end > body_len as u64 {
            return Err(corrupt(
                HEADER_BYTES,
                format!("conf of {conf_len} bytes past the end"),
            ));
        }
        let conf_bytes = &bytes[HEADER_BYTES_V2..conf_end as usize];
        meta.conf = match Membership::from_bytes(conf_bytes) {
            Ok((conf, used)) if used == conf_bytes.len() => conf,
            Ok(_) => {
                return Err(corrupt(
                    HEADER_BYTES_V2,
                    "trailing bytes after the conf".into(),
                ));
            }
            Err(e) => return Err(corrupt(HEADER_BYTES_V2, format!("bad conf: {e}"))),
        };
        data_at = conf_end as usize;
    }
    let point = |m: &SnapshotMeta| (m.index, m.term);
    if point(&meta) != point(&expected) || data_len != (body_len - data_at) as u64 {
        return Err(corrupt(
            8,
            format!("header says {meta:?} with {data_len} data bytes, file name says {expected:?}"),
        ));
    }
    Ok((meta, bytes[data_at..body_len].to_vec()))
}

/// Reads and verifies the snapshot `meta` in `dir`; returns its meta with the membership the
/// file records, and its data.
pub fn load<D: Disk>(
    disk: &mut D,
    dir: &Path,
    meta: SnapshotMeta,
) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let path = dir.join(file_name(meta));
    let bytes = disk
        .read(&path)
        .map_err(|e| StorageError::io("read snapshot", &path, e))?;
    decode(&bytes, &path, meta)
}

/// How far [`write`] got when it failed; decides what the caller must roll back.
#[derive(Debug)]
pub struct WriteFailure {
    pub error: StorageError,
    /// True once the rename happened: the new file may be visible (and even durable).
    pub renamed: bool,
}

/// Makes the snapshot durable under its final name: write `<name>.tmp`, fdatasync, rename,
/// fsync the directory. On failure up to and including the rename the temp file is removed
/// and nothing else changed (`renamed` false).
pub fn write<D: Disk>(
    disk: &mut D,
    dir: &Path,
    meta: SnapshotMeta,
    data: &[u8],
) -> Result<PathBuf, WriteFailure> {
    let path = dir.join(file_name(meta));
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", file_name(meta)));
    let early = |error| WriteFailure {
        error,
        renamed: false,
    };
    // A temp file left by an earlier failed attempt is garbage.
    if disk.file_len(&tmp).is_ok() {
        disk.remove(&tmp)
            .map_err(|e| early(StorageError::io("remove", &tmp, e)))?;
    }
    disk.create(&tmp)
        .map_err(|e| early(StorageError::io("create", &tmp, e)))?;
    let staged = disk
        .append(&tmp, &encode(meta, data))
        .map_err(|e| StorageError::io("write", &tmp, e))
        .and_then(|()| {
            disk.sync(&tmp).map_err(|source| StorageError::SyncFailed {
                path: tmp.clone(),
                source,
            })
        });
    if let Err(error) = staged {
        // Best effort: a leftover temp file is removed on the next open anyway.
        let _ = disk.remove(&tmp);
        return Err(early(error));
    }
    // rename(2) is atomic: when it fails, the final name was not touched.
    if let Err(e) = disk.rename(&tmp, &path) {
        let _ = disk.remove(&tmp);
        return Err(early(StorageError::io("rename", &tmp, e)));
    }
    disk.sync_dir(dir).map_err(|source| WriteFailure {
        error: StorageError::SyncFailed {
            path: dir.to_path_buf(),
            source,
        },
        renamed: true,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardkv_types::NodeId;

    #[test]
    fn names_and_content_round_trip_and_any_flipped_bit_is_refused() {
        // Goal: the name parser inverts the namer, the membership survives, and the
        // checksum catches every single-bit flip.
        let conf = Membership::new(&[NodeId(1), NodeId(2)], &[NodeId(5)]).unwrap();
        let meta = SnapshotMeta {
            conf,
            ..SnapshotMeta::at(LogIndex(42), Term(7))
        };
        let named = SnapshotMeta::at(LogIndex(42), Term(7));
        assert_eq!(parse_file_name(&file_name(meta)), Some(named));
        assert_eq!(parse_file_name("snap-1-2.snap"), None);
        let bytes = encode(meta, b"state machine");
        assert_eq!(
            decode(&bytes, Path::new("s"), named).unwrap(),
            (meta, b"state machine".to_vec())
        );
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad, Path::new("s"), named).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn a_first_layout_file_loads_with_an_unknown_membership() {
        let meta = SnapshotMeta::at(LogIndex(3), Term(2));
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC_V1);
        for n in [3u64, 2, 4] {
            v1.extend_from_slice(&n.to_le_bytes());
        }
        v1.extend_from_slice(b"data");
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&v1, Path::new("s"), meta).unwrap(),
            (meta, b"data".to_vec())
        );
    }
}
