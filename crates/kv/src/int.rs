//! Integers stored as values: the canonical decimal form Redis's INCR family reads and
//! writes.

/// The value of `b` if it is a 64-bit integer in canonical decimal: an optional `-`, then
/// digits with no leading zero (`0` alone is zero); no `+`, no spaces, no `-0`. The rule of
/// Redis's `string2ll`, so a value another Redis client wrote reads as it would in Redis.
pub fn parse_canonical_i64(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let canonical = match digits {
        [] => false,
        [b'0'] => b.len() == 1,
        [first, ..] => *first != b'0',
    };
    if !canonical || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_canonical_i64 as p;

    #[test]
    fn only_the_canonical_form_reads_as_an_integer() {
        assert_eq!(p(b"0"), Some(0));
        assert_eq!(p(b"-7"), Some(-7));
        assert_eq!(p(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(p(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"+1",
            b"01",
            b" 1",
            b"1 ",
            b"1.0",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"\xff",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
