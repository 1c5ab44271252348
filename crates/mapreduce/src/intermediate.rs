//! The format of intermediate files `mr-<map>-<reduce>`.
//!
//! A sequence of records, each `len(key) key len(value) value`, lengths as unsigned LEB128
//! varints and strings as UTF-8. No header and no trailer: an empty file holds no records.
//! Files are installed by atomic rename, so a torn file is never seen; the decoder still
//! checks every length against what is left and every string's UTF-8, and reports the byte
//! offset of anything malformed instead of panicking, because the bytes come from disk.

use std::fmt;

use crate::app::KeyValue;

/// A malformed intermediate file.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset of the record that could not be decoded.
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// Appends one record to `buf`.
pub fn encode(buf: &mut Vec<u8>, key: &str, value: &str) {
    put_varint(buf, key.len() as u64);
    buf.extend_from_slice(key.as_bytes());
    put_varint(buf, value.len() as u64);
    buf.extend_from_slice(value.as_bytes());
}

/// Decodes every record of `bytes` and appends them to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<KeyValue>) -> Result<(), DecodeError> {
    let mut pos = 0;
    while pos < bytes.len() {
        let record_offset = pos;
        let fail = |what| DecodeError {
            offset: record_offset,
            what,
        };
        let key = take_string(bytes, &mut pos).map_err(fail)?;
        let value = take_string(bytes, &mut pos).map_err(fail)?;
        out.push(KeyValue { key, value });
    }
    Ok(())
}

fn put_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn take_varint(bytes: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    let mut n: u64 = 0;
    // A u64 needs at most 10 groups of 7 bits.
    for shift in (0..70).step_by(7) {
        let Some(&byte) = bytes.get(*pos) else {
            return Err("truncated length");
        };
        *pos += 1;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err("length overflows u64");
        }
        n |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err("length longer than 10 bytes")
}

fn take_string(bytes: &[u8], pos: &mut usize) -> Result<String, &'static str> {
    let len = take_varint(bytes, pos)?;
    let left = bytes.len() - *pos;
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= left)
        .ok_or("length past the end of the file")?;
    let slice = &bytes[*pos..*pos + len];
    *pos += len;
    String::from_utf8(slice.to_vec()).map_err(|_| "string is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_including_empty_and_long_strings() {
        let long = "x".repeat(300);
        let pairs = [("", ""), ("a", "1"), (long.as_str(), "é\tz")];
        let mut buf = Vec::new();
        for (k, v) in pairs {
            encode(&mut buf, k, v);
        }
        let mut out = Vec::new();
        decode(&buf, &mut out).unwrap();
        let got: Vec<_> = out
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect();
        assert_eq!(got, pairs);
    }

    #[test]
    fn malformed_input_is_an_error_with_offset_never_a_panic() {
        // Goal: bytes from disk cannot crash a worker; method: truncate a valid file at every
        // length and flip bytes, checking decode returns (Ok or Err) each time.
        let mut buf = Vec::new();
        encode(&mut buf, "key", "value");
        encode(&mut buf, "k2", "v2");
        for cut in 0..buf.len() {
            let mut out = Vec::new();
            let _ = decode(&buf[..cut], &mut out);
        }
        let mut out = Vec::new();
        assert_eq!(
            decode(&buf[..buf.len() - 1], &mut out),
            Err(DecodeError {
                offset: 10,
                what: "length past the end of the file"
            })
        );
        let mut huge = vec![0xff; 10];
        huge.push(0x01);
        assert!(decode(&huge, &mut Vec::new()).is_err());
        assert!(decode(&[0x02, 0xff, 0xfe, 0x00], &mut Vec::new()).is_err());
    }
}
