//! The on-disk record: `len: u32 LE | crc: u32 LE | type: u8 | payload[len]`, with
//! `crc = crc32c(len LE bytes ++ type ++ payload)`, and the scan that splits a file into
//! records and tells a torn tail from corruption.

use crate::error::StorageError;
use std::path::Path;

/// Bytes before a record's payload: length (4), crc32c (4), type (1).
pub const RECORD_HEADER_BYTES: usize = 9;

/// The largest payload one record may carry. Bounds what a corrupt length field can make
/// recovery allocate or skip.
pub const RECORD_PAYLOAD_BYTES_MAX: u64 = 64 << 20;

/// What a record holds. The values are the on-disk type byte and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// A postcard `Entry`; it replaces every entry at its index or above.
    Entry = 1,
    /// A postcard `HardState`; the last one wins.
    HardState = 2,
    /// A postcard `(LogIndex, Term)` (a snapshot's point, encoded as the first layout's
    /// `SnapshotMeta`): a snapshot that did not match the log was installed, so every earlier
    /// entry is discarded and the log restarts after that index.
    SnapshotReset = 3,
    /// A postcard `NodeId`: the content of the node-id marker file.
    NodeId = 4,
}

impl RecordType {
    fn from_byte(b: u8) -> Option<RecordType> {
        match b {
            1 => Some(RecordType::Entry),
            2 => Some(RecordType::HardState),
            3 => Some(RecordType::SnapshotReset),
            4 => Some(RecordType::NodeId),
            _ => None,
        }
    }
}

fn checksum(len_le: [u8; 4], kind: u8, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&len_le);
    let crc = crc32c::crc32c_append(crc, &[kind]);
    crc32c::crc32c_append(crc, payload)
}

/// Appends one encoded record to `out`.
pub fn encode(kind: RecordType, payload: &[u8], out: &mut Vec<u8>) -> Result<(), StorageError> {
    let len = payload.len() as u64;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(StorageError::TooLarge {
            bytes: len,
            max: RECORD_PAYLOAD_BYTES_MAX,
        });
    }
    let len_le = (len as u32).to_le_bytes();
    out.extend_from_slice(&len_le);
    out.extend_from_slice(&checksum(len_le, kind as u8, payload).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
    Ok(())
}

/// Encodes a serde value as one record.
pub fn encode_value<T: serde::Serialize>(
    kind: RecordType,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), StorageError> {
    let payload = postcard::to_allocvec(value).map_err(|e| StorageError::Io {
        op: "encode record",
        path: Default::default(),
        source: std::io::Error::other(e.to_string()),
    })?;
    encode(kind, &payload, out)
}

/// Decodes a record payload, naming file and offset on failure.
pub fn decode_value<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    file: &Path,
    offset: u64,
) -> Result<T, StorageError> {
    postcard::from_bytes(payload).map_err(|e| StorageError::Corrupt {
        file: file.to_path_buf(),
        offset,
        reason: format!("record with a valid checksum does not decode: {e}"),
    })
}

/// One record found by [`scan`]: its type, where it starts, and its payload.
#[derive(Debug)]
pub struct RawRecord<'a> {
    pub kind: RecordType,
    pub offset: u64,
    /// Header plus payload.
    pub len: u64,
    pub payload: &'a [u8],
}

/// The result of scanning one file.
#[derive(Debug)]
pub struct Scan<'a> {
    /// The good records before the first bad one.
    pub records: Vec<RawRecord<'a>>,
    /// Bytes up to the end of the last good record before the first bad one.
    pub valid_len: u64,
    /// The first bad record's offset and what is wrong with it; `None` if every byte from
    /// the start belongs to a good record.
    pub bad: Option<(u64, String)>,
}

enum Parse<'a> {
    Good(RawRecord<'a>),
    Bad(String),
}

fn parse_at(bytes: &[u8], at: usize) -> Parse<'_> {
    let rest = &bytes[at..];
    if rest.len() < RECORD_HEADER_BYTES {
        return Parse::Bad(format!("{} bytes cannot hold a record header", rest.len()));
    }
    let len_le = [rest[0], rest[1], rest[2], rest[3]];
    let len = u32::from_le_bytes(len_le) as u64;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let kind = rest[8];
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Parse::Bad(format!("length {len} exceeds the record limit"));
    }
    let end = RECORD_HEADER_BYTES + len as usize;
    if rest.len() < end {
        return Parse::Bad(format!(
            "record of {len} bytes runs past the end of the file"
        ));
    }
    // The type is checked first: it is the cheap test that rejects most garbage.
    let Some(record_type) = RecordType::from_byte(kind) else {
        return Parse::Bad(format!("unknown record type {kind}"));
    };
    let payload = &rest[RECORD_HEADER_BYTES..end];
    if checksum(len_le, kind, payload) != crc {
        return Parse::Bad("checksum mismatch".to_string());
    }
    Parse::Good(RawRecord {
        kind: record_type,
        offset: at as u64,
        len: end as u64,
        payload,
    })
}

/// Splits `bytes` from offset `start` into records, up to the first bad one. Whether a bad
/// record is a torn or unsynced tail or corruption is the caller's decision (see
/// `segment::scan` for the WAL's rule).
pub fn scan(bytes: &[u8], start: usize) -> Scan<'_> {
    let mut records = Vec::new();
    let mut at = start.min(bytes.len());
    // Bounded: every iteration advances `at` by at least a header.
    while at < bytes.len() {
        match parse_at(bytes, at) {
            Parse::Good(r) => {
                at += r.len as usize;
                records.push(r);
            }
            Parse::Bad(reason) => {
                return Scan {
                    records,
                    valid_len: at as u64,
                    bad: Some((at as u64, reason)),
                };
            }
        }
    }
    Scan {
        records,
        valid_len: at as u64,
        bad: None,
    }
}

/// [`scan`] of a whole file that must hold only good records (a file written once and
/// synced before use): a bad record is [`StorageError::Corrupt`] at its offset.
pub fn scan_all<'a>(bytes: &'a [u8], file: &Path) -> Result<Vec<RawRecord<'a>>, StorageError> {
    let s = scan(bytes, 0);
    match s.bad {
        None => Ok(s.records),
        Some((offset, reason)) => Err(StorageError::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason,
        }),
    }
}

/// Every good record that starts after offset `bad`, trying each byte position (a record
/// found inside another's payload included: callers use these only to refuse, never to
/// keep data).
pub fn records_after(bytes: &[u8], bad: u64) -> impl Iterator<Item = RawRecord<'_>> {
    (bad as usize + 1..bytes.len()).filter_map(move |p| match parse_at(bytes, p) {
        Parse::Good(r) => Some(r),
        Parse::Bad(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_records() -> Vec<u8> {
        let mut buf = Vec::new();
        encode(RecordType::Entry, b"hello", &mut buf).unwrap();
        encode(RecordType::HardState, b"world!", &mut buf).unwrap();
        buf
    }

    #[test]
    fn records_round_trip_and_a_cut_file_scans_as_the_records_before_the_cut() {
        // Goal: a file cut at any byte scans as the records before the cut, the rest bad.
        let buf = two_records();
        let first_len = RECORD_HEADER_BYTES + 5;
        for cut in 0..=buf.len() {
            let s = scan(&buf[..cut], 0);
            let expect = if cut == buf.len() {
                2
            } else if cut >= first_len {
                1
            } else {
                0
            };
            assert_eq!(s.records.len(), expect, "cut at {cut}");
            assert_eq!(
                s.bad.is_some(),
                cut != buf.len() && cut != first_len && cut != 0
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_bad_at_its_record_and_the_records_after_it_are_found() {
        // Goal: damage is reported at its record's offset, and a resync finds what follows.
        let mut buf = two_records();
        buf[RECORD_HEADER_BYTES + 1] ^= 4;
        let s = scan(&buf, 0);
        assert!(s.records.is_empty());
        assert_eq!(s.bad.as_ref().map(|b| b.0), Some(0));
        let after: Vec<u64> = records_after(&buf, 0).map(|r| r.offset).collect();
        assert_eq!(after, vec![(RECORD_HEADER_BYTES + 5) as u64]);
        match scan_all(&buf, Path::new("f")) {
            Err(StorageError::Corrupt { offset, .. }) => assert_eq!(offset, 0),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
