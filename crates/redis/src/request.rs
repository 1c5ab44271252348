//! Framing client requests out of a connection's read buffer: RESP arrays of bulk strings
//! (what every client library sends) and inline commands (a line of words, what
//! `redis-benchmark`'s PING_INLINE and a human on telnet send).
//!
//! Every declared length is checked against [`Limits`] as soon as its header is read, before
//! any of its bytes are waited for: a request that could never fit (a bulk of 2^31 bytes, a
//! million-argument array) is a protocol error at once, not a buffer that grows until the
//! client stops. A protocol error is fatal to the connection, as in Redis: the server answers
//! it and closes.
//!
//! Requests are a strict subset of RESP (an array whose elements are all bulk strings), so
//! they are framed here, in one pass over the headers; replies, which use the whole of RESP2
//! and RESP3, are encoded by the `redis-protocol` crate ([`crate::reply`]).

use bytes::{Bytes, BytesMut};
use std::fmt;

/// What one request may hold. The defaults follow shardkv's own limits (a value of at most
/// 1 MiB) rather than Redis's 512 MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Arguments in one request, the command name included.
    pub args_max: usize,
    /// Bytes of one argument.
    pub bulk_bytes_max: usize,
    /// Bytes of one request as sent, headers included.
    pub request_bytes_max: usize,
    /// Bytes of one inline command line.
    pub inline_bytes_max: usize,
    /// How long writing replies may wait on a client that does not read them; past it the
    /// connection is closed (a client pipelining without reading holds nothing forever).
    pub write_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            args_max: 1 << 16,
            bulk_bytes_max: shardkv_kv::VALUE_BYTES_MAX,
            // The largest request that can succeed (an MSET of MANY_BYTES_MAX) with room
            // for its headers; a larger one could only be refused.
            request_bytes_max: shardkv_kv::MANY_BYTES_MAX + (1 << 20),
            inline_bytes_max: 64 << 10,
            write_timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The limits of a connection that has not given the password yet (when one is
    /// required), as Redis's for unauthenticated clients: at most 10 arguments of at most
    /// 16 KiB, so a connection without the password holds little memory.
    /// (Never above `self`'s.)
    pub fn unauthenticated(&self) -> Limits {
        Limits {
            args_max: self.args_max.min(10),
            bulk_bytes_max: self.bulk_bytes_max.min(16 << 10),
            request_bytes_max: self.request_bytes_max.min(10 * (16 << 10) + 1024),
            inline_bytes_max: self.inline_bytes_max.min(16 << 10),
            write_timeout: self.write_timeout,
        }
    }
}

/// A request the connection cannot frame; the text is what Redis answers (after `ERR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn error(what: impl Into<String>) -> ProtocolError {
    ProtocolError(what.into())
}

/// A count header (`*N` or `$N`) longer than this without its CRLF is refused, as Redis does.
const COUNT_LINE_MAX: usize = 32;

/// Takes the next complete request out of `buf`: `Ok(Some(args))` with the command name
/// first, `Ok(None)` when more bytes are needed (nothing is consumed but empty lines and
/// empty arrays, which are skipped as Redis skips them), or the protocol error that must
/// end the connection.
pub fn take_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    while !buf.is_empty() {
        let taken = if buf[0] == b'*' {
            take_multibulk(buf, limits)?
        } else {
            take_inline(buf, limits)?
        };
        match taken {
            None => return Ok(None),
            Some(args) if args.is_empty() => continue,
            Some(args) => return Ok(Some(args)),
        }
    }
    Ok(None)
}

/// Reads the integer of a `*N\r\n` or `$N\r\n` header starting at `at`: `Ok(None)` if the
/// line is not complete yet, else the value and where the line ends.
fn count_line(
    buf: &[u8],
    at: usize,
    too_long: &str,
    invalid: &str,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let window = &buf[at + 1..buf.len().min(at + 1 + COUNT_LINE_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() - at > COUNT_LINE_MAX {
            return Err(error(too_long));
        }
        return Ok(None);
    };
    let digits = std::str::from_utf8(&window[..cr]).map_err(|_| error(invalid))?;
    let n: i64 = digits.parse().map_err(|_| error(invalid))?;
    Ok(Some((n, at + 1 + cr + 2)))
}

/// A `*N` array of `N` bulk strings. `Some(vec![])` for an array of none (skipped).
fn take_multibulk(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let invalid_count = "invalid multibulk length";
    let Some((n, mut pos)) = count_line(buf, 0, "too big mbulk count string", invalid_count)?
    else {
        return Ok(None);
    };
    if n <= 0 {
        let _ = buf.split_to(pos);
        return Ok(Some(Vec::new()));
    }
    let n = usize::try_from(n).map_err(|_| error(invalid_count))?;
    if n > limits.args_max {
        return Err(error(invalid_count));
    }
    // Never trust a declared count for an allocation.
    let mut spans = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(error(format!("expected '$', got '{}'", buf[pos] as char)));
        }
        let invalid = "invalid bulk length";
        let Some((len, start)) = count_line(buf, pos, "too big bulk count string", invalid)? else {
            return Ok(None);
        };
        let len = usize::try_from(len).map_err(|_| error(invalid))?;
        if len > limits.bulk_bytes_max {
            return Err(error(format!(
                "invalid bulk length (an argument of {len} bytes; at most {} here)",
                limits.bulk_bytes_max
            )));
        }
        let end = start + len + 2;
        if end > limits.request_bytes_max {
            return Err(error(format!(
                "request too large (more than {} bytes)",
                limits.request_bytes_max
            )));
        }
        if end > buf.len() {
            return Ok(None);
        }
        if &buf[end - 2..end] != b"\r\n" {
            return Err(error("bulk string not terminated by CRLF"));
        }
        spans.push((start, len));
        pos = end;
    }
    let frame = buf.split_to(pos).freeze();
    Ok(Some(
        spans
            .into_iter()
            .map(|(start, len)| frame.slice(start..start + len))
            .collect(),
    ))
}

/// An inline command: one line, split into words with Redis's quoting rules.
fn take_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.inline_bytes_max {
            return Err(error("too big inline request"));
        }
        return Ok(None);
    };
    if nl > limits.inline_bytes_max {
        return Err(error("too big inline request"));
    }
    let line = buf.split_to(nl + 1);
    let line = line[..nl].strip_suffix(b"\r").unwrap_or(&line[..nl]);
    let words = split_words(line).ok_or_else(|| error("unbalanced quotes in request"))?;
    if words.len() > limits.args_max {
        return Err(error("invalid multibulk length"));
    }
    Ok(Some(words.into_iter().map(Bytes::from).collect()))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0)
}

/// Splits an inline line into words: blanks separate words; `"..."` takes the escapes
/// `\n \r \t \b \a \\ \" \xHH`; `'...'` takes `\'`; a closing quote must end the word.
/// `None` for unbalanced quotes.
pub fn split_words(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Some(words);
        }
        let mut word = Vec::new();
        loop {
            match line.get(i) {
                None => break,
                Some(&b) if is_space(b) => break,
                Some(b'"') => i = quoted(line, i + 1, b'"', &mut word)?,
                Some(b'\'') => i = quoted(line, i + 1, b'\'', &mut word)?,
                Some(&b) => {
                    word.push(b);
                    i += 1;
                }
            }
        }
        words.push(word);
    }
}

/// Reads a quoted piece starting after its opening `quote`; returns the index after the
/// closing quote, which must be followed by a blank or the end of the line.
fn quoted(line: &[u8], mut i: usize, quote: u8, word: &mut Vec<u8>) -> Option<usize> {
    loop {
        let b = *line.get(i)?;
        if b == quote {
            let after = i + 1;
            return (after == line.len() || is_space(line[after])).then_some(after);
        }
        if b == b'\\' && i + 1 < line.len() {
            let e = line[i + 1];
            if quote == b'\'' {
                if e == b'\'' {
                    word.push(b'\'');
                    i += 2;
                    continue;
                }
            } else if let Some(hex) = hex_escape(&line[i + 1..]) {
                word.push(hex);
                i += 4;
                continue;
            } else {
                word.push(match e {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'a' => 7,
                    other => other,
                });
                i += 2;
                continue;
            }
        }
        word.push(b);
        i += 1;
    }
}

/// `xHH` after a backslash.
fn hex_escape(rest: &[u8]) -> Option<u8> {
    match rest {
        [b'x', h, l, ..] => {
            let s = std::str::from_utf8(&[*h, *l]).ok()?.to_owned();
            u8::from_str_radix(&s, 16).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = take_request(&mut buf, &Limits::default())? {
            out.push(args);
        }
        Ok(out)
    }

    fn words(args: &[Bytes]) -> Vec<&[u8]> {
        args.iter().map(|b| &b[..]).collect()
    }

    #[test]
    fn arrays_of_bulk_strings_and_inline_lines_frame_alike() {
        let got =
            all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n  set a \"b c\"\r\n\r\n*0\r\n").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(words(&got[0]), [&b"GET"[..], b"k"]);
        assert_eq!(words(&got[1]), [&b"PING"[..]]);
        assert_eq!(words(&got[2]), [&b"set"[..], b"a", b"b c"]);
    }

    #[test]
    fn a_partial_request_waits_and_consumes_nothing() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nab"[..]);
        assert_eq!(take_request(&mut buf, &Limits::default()), Ok(None));
        assert_eq!(buf.len(), 19);
        buf.extend_from_slice(b"cde\r\n");
        let args = take_request(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(words(&args), [&b"GET"[..], b"abcde"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn huge_declared_lengths_are_refused_before_any_data_arrives() {
        let err = all(b"*1\r\n$2147483648\r\n").unwrap_err();
        assert!(err.0.starts_with("invalid bulk length"), "{err}");
        let err = all(b"*100000000\r\n").unwrap_err();
        assert_eq!(err.0, "invalid multibulk length");
        let err = all(b"*1\r\n$-1\r\n").unwrap_err();
        assert_eq!(err.0, "invalid bulk length");
        let err = all(b"*1\r\n$99999999999999999999999999999999999999\r\n").unwrap_err();
        assert_eq!(err.0, "too big bulk count string");
    }

    #[test]
    fn malformed_requests_name_what_is_wrong() {
        assert_eq!(all(b"*1\r\n:5\r\n").unwrap_err().0, "expected '$', got ':'");
        assert_eq!(all(b"*x\r\n").unwrap_err().0, "invalid multibulk length");
        assert_eq!(
            all(b"*1\r\n$1\r\nab\r\n").unwrap_err().0,
            "bulk string not terminated by CRLF"
        );
        assert_eq!(
            all(b"set a \"b\n").unwrap_err().0,
            "unbalanced quotes in request"
        );
        assert_eq!(
            all(b"set a \"b\"c\n").unwrap_err().0,
            "unbalanced quotes in request"
        );
    }

    #[test]
    fn an_unterminated_inline_line_is_bounded() {
        let limits = Limits::default();
        let mut buf = BytesMut::from(&vec![b'a'; limits.inline_bytes_max][..]);
        assert_eq!(take_request(&mut buf, &limits), Ok(None));
        buf.extend_from_slice(b"a");
        assert_eq!(
            take_request(&mut buf, &limits).unwrap_err().0,
            "too big inline request"
        );
    }

    #[test]
    fn inline_quoting_follows_redis() {
        let w = split_words(br#"a "x\ny\x41\"" 'it\'s' "" b"#).unwrap();
        assert_eq!(w, [&b"a"[..], b"x\nyA\"", b"it's", b"", b"b"]);
    }

    proptest! {
        /// However the bytes arrive, the same requests come out.
        #[test]
        fn framing_does_not_depend_on_how_bytes_arrive(
            reqs in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5),
                1..8),
            cuts in proptest::collection::vec(0usize..400, 0..10),
        ) {
            let mut wire = Vec::new();
            for r in &reqs {
                wire.extend_from_slice(format!("*{}\r\n", r.len()).as_bytes());
                for a in r {
                    wire.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                    wire.extend_from_slice(a);
                    wire.extend_from_slice(b"\r\n");
                }
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.push(wire.len());
            cuts.sort();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut from = 0;
            for c in cuts {
                buf.extend_from_slice(&wire[from..c]);
                from = c;
                while let Some(args) = take_request(&mut buf, &Limits::default()).unwrap() {
                    got.push(args.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(got, reqs);
            prop_assert!(buf.is_empty());
        }
    }
}
