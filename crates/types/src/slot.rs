//! Keys → slots → shards, as Redis Cluster maps keys to slots.
//!
//! A key's slot is CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection, no final
//! xor) of the key, or of its hash tag, mod [`SLOTS`]. The hash tag is the part between the
//! first `{` and the first `}` after it, when that part is not empty; so keys sharing a tag
//! share a slot, and hence a shard. Slots map to shards by contiguous, equal-sized ranges:
//! `shard = slot * shards / SLOTS`, with `shards` a power of two in `1..=SHARDS_MAX`, fixed
//! when the cluster is created.

use crate::ShardId;
use std::fmt;
use std::ops::Range;

/// The number of slots, as in Redis Cluster.
pub const SLOTS: u16 = 16384;
/// The largest shard count: one slot per shard.
pub const SHARDS_MAX: u32 = SLOTS as u32;
/// The shard count of a cluster created without one.
pub const SHARDS_DEFAULT: u32 = 64;

/// CRC16-XMODEM lookup table, built at compile time.
const CRC16_TABLE: [u16; 256] = crc16_table();

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// CRC16-XMODEM of `bytes` (poly 0x1021, init 0, no reflection). `crc16(b"123456789")` is
/// 0x31C3.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of `key` that is hashed: its hash tag when it has a non-empty one, else the key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let after = &key[open + 1..];
    match after.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &after[..close],
        _ => key,
    }
}

/// The slot of `key`, in `0..SLOTS`.
pub fn key_slot(key: &[u8]) -> u16 {
    let slot = crc16(hash_tag(key)) % SLOTS;
    debug_assert!(slot < SLOTS);
    slot
}

/// Why a shard count is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardCountError {
    pub shards: u32,
}

impl fmt::Display for ShardCountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shard count {} is invalid: it must be a power of two between 1 and {SHARDS_MAX}",
            self.shards
        )
    }
}

impl std::error::Error for ShardCountError {}

/// Checks that `shards` is a power of two in `1..=SHARDS_MAX`.
pub fn check_shard_count(shards: u32) -> Result<(), ShardCountError> {
    if shards.is_power_of_two() && shards <= SHARDS_MAX {
        Ok(())
    } else {
        Err(ShardCountError { shards })
    }
}

/// The shard that holds `slot`, when there are `shards` shards.
///
/// # Panics
/// If `slot >= SLOTS` or `shards` fails [`check_shard_count`].
pub fn shard_of_slot(slot: u16, shards: u32) -> ShardId {
    assert!(slot < SLOTS, "slot {slot} out of range 0..{SLOTS}");
    assert!(
        check_shard_count(shards).is_ok(),
        "invalid shard count {shards}"
    );
    let shard = u64::from(slot) * u64::from(shards) / u64::from(SLOTS);
    assert!(shard < u64::from(shards));
    ShardId(shard)
}

/// The shard that holds `key`, when there are `shards` shards.
///
/// # Panics
/// If `shards` fails [`check_shard_count`].
pub fn shard_of_key(key: &[u8], shards: u32) -> ShardId {
    shard_of_slot(key_slot(key), shards)
}

/// The slots of `shard` (start inclusive, end exclusive), when there are `shards` shards.
///
/// # Panics
/// If `shards` fails [`check_shard_count`] or `shard >= shards`.
pub fn slots_of_shard(shard: ShardId, shards: u32) -> Range<u16> {
    assert!(
        check_shard_count(shards).is_ok(),
        "invalid shard count {shards}"
    );
    assert!(
        shard.0 < u64::from(shards),
        "{shard} out of range 0..{shards}"
    );
    let width = SHARDS_MAX / shards;
    // shard < shards <= SLOTS, so both bounds fit in u16 (the end of the last is SLOTS).
    let start = shard.0 as u32 * width;
    start as u16..(start + width) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the CRC is CRC16-XMODEM. Method: the standard check value of "123456789".
    #[test]
    fn crc16_xmodem_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    /// Goal: slots of well-known keys match Redis (`CLUSTER KEYSLOT`). Method: compare the
    /// computed slots against the values Redis documents and prints.
    #[test]
    fn well_known_slots_match_redis() {
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b"123456789"), 0x31C3 % SLOTS);
    }

    /// Goal: hash tags follow the Redis Cluster spec. Method: its documented examples.
    #[test]
    fn hash_tags_follow_redis_examples() {
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"no tag"), b"no tag");
        assert_eq!(hash_tag(b"open{only"), b"open{only");
        assert_eq!(hash_tag(b"}close{x}"), b"x");
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    /// Goal: shard counts are powers of two up to SHARDS_MAX. Method: boundary values.
    #[test]
    fn shard_count_validation() {
        for ok in [1, 2, 64, 1024, SHARDS_MAX] {
            assert_eq!(check_shard_count(ok), Ok(()));
        }
        for bad in [0, 3, 10, 100, 2 * SHARDS_MAX, u32::MAX] {
            let err = check_shard_count(bad).unwrap_err();
            assert!(err.to_string().contains(&bad.to_string()), "{err}");
        }
    }

    /// Goal: slots map to shards by contiguous equal ranges. Method: walk every slot for every
    /// valid shard count and compare with `slots_of_shard`.
    #[test]
    fn slots_map_to_contiguous_equal_shards() {
        let mut shards = 1;
        while shards <= SHARDS_MAX {
            let width = u32::from(SLOTS) / shards;
            let mut prev = ShardId(0);
            for slot in 0..SLOTS {
                let shard = shard_of_slot(slot, shards);
                assert!(shard.0 < u64::from(shards));
                assert!(shard == prev || shard.0 == prev.0 + 1, "not contiguous");
                assert!(slots_of_shard(shard, shards).contains(&slot));
                prev = shard;
            }
            assert_eq!(prev.0, u64::from(shards) - 1);
            for s in 0..u64::from(shards) {
                assert_eq!(slots_of_shard(ShardId(s), shards).len() as u32, width);
            }
            shards *= 2;
        }
        assert_eq!(shard_of_key(b"foo", 64), ShardId(12182 * 64 / 16384));
    }

    #[test]
    #[should_panic(expected = "invalid shard count")]
    fn shard_of_slot_rejects_bad_count() {
        shard_of_slot(0, 10);
    }
}
