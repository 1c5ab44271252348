//! The WAL segment format (format 2): an 8-byte header, then records whose payload starts
//! with a synced-offset marker, and the scan that tells an unsynced tail from corruption.
//!
//! `segment = MAGIC | record*`, `record payload = synced_to: u64 LE | postcard value`,
//! where `synced_to` is the segment's length at its last completed fdatasync when the
//! record was written (the header length if the segment was never synced since). The
//! marker costs no extra write: it rides inside records that are written anyway.
//!
//! Why it works: a record at offset `p` says "bytes `..synced_to` of this segment were
//! durable before I was written". A record that was synced survives any crash, so if a
//! sync happened after a record `b` was written, every record written after that sync
//! claims `synced_to > b`. Recovery therefore takes `S`, the highest marker of any valid
//! record in the segment (including records found after a bad spot); a bad record at
//! `b < S` damaged synced data and is [`StorageError::Corrupt`]; a bad record at `b >= S`
//! lies in writes no sync covered, and everything from `b` on — holes, garbage and valid
//! records after them that a power cut persisted out of order — is cut off.

use crate::error::StorageError;
use crate::record::{self, RawRecord, RecordType};
use std::path::Path;

/// The first bytes of every format-2 segment. A format-1 segment (before synced-offset
/// markers) starts with a record length instead and is refused by name.
pub const MAGIC: [u8; 8] = *b"SKVWAL\x00\x02";

/// Bytes of the segment header: the offset of the first record.
pub const HEADER_BYTES: u64 = MAGIC.len() as u64;


/// Appends one WAL record holding `value`, written while `synced_to` bytes of its segment
/// are durable.
pub fn encode<T: serde::Serialize>(
    kind: RecordType,
    synced_to: u64,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), StorageError> {
    let payload = postcard::to_extend(value, synced_to.to_le_bytes().to_vec()).map_err(|e| {
        StorageError::Io {
            op: "encode record",
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    record::encode(kind, &payload, out)
}

/// One WAL record: where it is, what it claims was synced, and its value's bytes.
#[derive(Debug)]
pub struct WalRecord<'a> {
    pub kind: RecordType,
    pub offset: u64,
    /// Header plus payload.
    pub len: u64,
    pub synced_to: u64,
    /// The postcard value after the marker.
    pub body: &'a [u8],
}

impl WalRecord<'_> {
    /// Decodes the value, naming file and offset on failure.
    pub fn decode<T: serde::de::DeserializeOwned>(&self, file: &Path) -> Result<T, StorageError> {
        record::decode_value(self.body, file, self.offset)
    }
}

/// Splits a raw record's payload into marker and value. A marker that claims bytes at or
/// past the record itself is impossible for a record this code wrote: `None`.
fn split(r: RawRecord<'_>) -> Option<WalRecord<'_>> {
    let (marker, body) = r.payload.split_first_chunk::<8>()?;
    let synced_to = u64::from_le_bytes(*marker);
    (synced_to <= r.offset).then_some(WalRecord {
        kind: r.kind,
        offset: r.offset,
        len: r.len,
        synced_to,
        body,
    })
}

/// Parses the single WAL record `bytes`, read back from offset `offset` of `file`.
pub fn parse_one<'a>(
    bytes: &'a [u8],
    file: &Path,
    offset: u64,
) -> Result<WalRecord<'a>, StorageError> {
    let scan = record::scan(bytes, 0);
    let bad = |reason: String| StorageError::Corrupt {
        file: file.to_path_buf(),
        offset,
        reason,
    };
    if let Some((_, reason)) = scan.bad {
        return Err(bad(reason));
    }
    match scan.records.into_iter().next() {
        Some(r) => {
            let r = RawRecord { offset, ..r };
            split(r).ok_or_else(|| bad("WAL record without a valid synced-offset marker".into()))
        }
        None => Err(bad("no record".into())),
    }
}

/// The result of scanning one segment.
#[derive(Debug)]
pub struct SegmentScan<'a> {
    pub records: Vec<WalRecord<'a>>,
    /// Bytes up to the end of the last record kept.
    pub valid_len: u64,
    /// Why bytes after `valid_len` were cut off, if any were.
    pub cut: Option<String>,
}

/// Scans segment `bytes` (the content of `file`). Only the newest segment (`newest`) may
/// end in an unsynced tail: older ones were synced in full before the next one was
/// created, so any damage in them is corruption.
///
/// A newest segment whose header is missing, torn or zero is one whose creation a crash
/// interrupted (the header is synced before anything else is written): it scans as empty
/// with `valid_len` 0, and the caller removes it.
pub fn scan<'a>(
    bytes: &'a [u8],
    file: &Path,
    newest: bool,
) -> Result<SegmentScan<'a>, StorageError> {
    check_header(bytes, file, newest)?;
    if (bytes.len() as u64) < HEADER_BYTES || bytes[..MAGIC.len()] != MAGIC {
        return Ok(SegmentScan {
            records: Vec::new(),
            valid_len: 0,
            cut: Some("a segment whose creation a crash interrupted (no header)".into()),
        });
    }
    let raw = record::scan(bytes, HEADER_BYTES as usize);
    let mut records = Vec::with_capacity(raw.records.len());
    let mut bad = raw.bad;
    for r in raw.records {
        let offset = r.offset;
        match split(r) {
            Some(w) => records.push(w),
            None => {
                bad = Some((offset, "WAL record without a valid synced-offset marker".into()));
                break;
            }
        }
    }
    let Some((at, reason)) = bad else {
        return Ok(SegmentScan {
            records,
            valid_len: raw.valid_len,
            cut: None,
        });
    };
    records.retain(|r| r.offset < at);
    let corrupt = |reason: String| StorageError::Corrupt {
        file: file.to_path_buf(),
        offset: at,
        reason,
    };
    if !newest {
        return Err(corrupt(format!("{reason} in a sealed segment")));
    }
    // The highest marker: of the records before the bad spot, and of any valid record after
    // it (out-of-order pages may have persisted records past a hole; they still tell the
    // truth about what was synced before they were written).
    let after: Vec<WalRecord<'_>> = record::records_after(bytes, at).filter_map(split).collect();
    let claim = after
        .iter()
        .map(|w| (w.synced_to, Some(w.offset)))
        .chain(records.iter().map(|w| (w.synced_to, None)))
        .max_by_key(|(s, _)| *s);
    if let Some((synced, by)) = claim.filter(|(s, _)| at < *s) {
        return Err(corrupt(format!(
            "{reason}, inside the synced part of the segment (the record at {} says bytes \
             up to {synced} were synced): synced data is damaged",
            by.map_or_else(|| "an earlier offset".to_string(), |o| o.to_string()),
        )));
    }
    let cut = match after.first() {
        None => format!("{reason}: a write a crash cut short"),
        Some(next) if has_zero_sector(bytes, at, next.offset) => format!(
            "{reason}, a hole of unwritten sectors before a record at {}: unsynced pages a \
             power cut persisted out of order",
            next.offset
        ),
        Some(next) => {
            return Err(corrupt(format!(
                "{reason}, and a valid record follows at {} with no unwritten (zero) \
                 sector in between: damage, not a power cut",
                next.offset
            )));
        }
    };
    Ok(SegmentScan {
        valid_len: at,
        records,
        cut: Some(cut),
    })
}

/// The unit a power cut loses or keeps whole: a 512-byte sector, aligned to the file start
/// (pages are whole multiples of it). Unwritten sectors read back as zeros.
pub const SECTOR_BYTES: u64 = 512;

/// True if some piece of `bytes[from..to]` between two sector boundaries is all zeros:
/// the mark a sector that never got written leaves (as etcd's WAL tells a torn write).
fn has_zero_sector(bytes: &[u8], from: u64, to: u64) -> bool {
    let mut lo = from;
    // Bounded: one iteration per sector between `from` and `to`.
    while lo < to {
        let hi = ((lo / SECTOR_BYTES + 1) * SECTOR_BYTES).min(to);
        if bytes[lo as usize..hi as usize].iter().all(|&b| b == 0) {
            return true;
        }
        lo = hi;
    }
    false
}

/// Refuses a segment of another format by name. A newest segment that holds nothing but a
/// prefix of the header or zeros passes (its creation was interrupted).
fn check_header(bytes: &[u8], file: &Path, newest: bool) -> Result<(), StorageError> {
    let n = bytes.len().min(MAGIC.len());
    if bytes.len() >= MAGIC.len() && bytes[..n] == MAGIC {
        return Ok(());
    }
    let header_torn = bytes[..n] == MAGIC[..n] || bytes[..n].iter().all(|&b| b == 0);
    if newest && header_torn && bytes[n..].iter().all(|&b| b == 0) {
        return Ok(());
    }
    let old_format = matches!(record::scan(bytes, 0).records.first(), Some(r) if r.offset == 0);
    let reason = if old_format {
        "WAL segment of format 1 (written by a shardkv version before synced-offset markers); \
         this version reads format 2 only and has no upgrade path: restore this member from \
         its peers (empty the data dir and re-add it) or run the older version"
            .to_string()
    } else {
        format!(
            "not a WAL segment of format 2: its first bytes are not the header {:?}",
            String::from_utf8_lossy(&MAGIC)
        )
    };
    Err(StorageError::Corrupt {
        file: file.to_path_buf(),
        offset: 0,
        reason,
    })
}
