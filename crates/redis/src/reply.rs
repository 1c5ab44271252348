//! Replies, and their encoding in the protocol the connection speaks: RESP2 until the
//! client says `HELLO 3`, RESP3 after. The wire format is the `redis-protocol` crate's.
//!
//! One [`Reply`] value covers both: a map is a flat array in RESP2, a verbatim string a bulk
//! string, a nil `$-1` (RESP2) or `_` (RESP3).

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::{BytesFrame as Frame3, FrameMap, VerbatimStringFormat};

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    /// The number `HELLO` answers with.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A simple string (`+OK`).
    Status(&'static str),
    /// An error, its code first (`ERR ...`, `MOVED 3999 127.0.0.1:7101`, `CROSSSLOT ...`).
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Nil,
    Array(Vec<Reply>),
    /// A map in RESP3; its pairs flattened into an array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// Text meant for humans (INFO, CLUSTER INFO, CLUSTER NODES): a verbatim string in
    /// RESP3, a bulk string in RESP2.
    Text(String),
}

impl Reply {
    pub const OK: Reply = Reply::Status("OK");

    /// An `ERR` error.
    pub fn err(text: impl AsRef<str>) -> Reply {
        Reply::Error(format!("ERR {}", text.as_ref()))
    }

    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    /// A bulk string, or nil.
    pub fn maybe(b: Option<impl Into<Bytes>>) -> Reply {
        b.map_or(Reply::Nil, Reply::bulk)
    }

    /// A bulk string of UTF-8 text.
    pub fn text_bulk(s: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(s.into()))
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the reply's encoding in `proto` to `out`.
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        // Encoding into a growing buffer fails only on a bug in the frame built here.
        let encoded = match proto {
            Protocol::Resp2 => {
                redis_protocol::resp2::encode::extend_encode(out, &self.to_resp2(), false)
            }
            Protocol::Resp3 => {
                redis_protocol::resp3::encode::complete::extend_encode(out, &self.to_resp3(), false)
            }
        };
        encoded.expect("a reply frame encodes");
    }

    fn to_resp2(&self) -> Frame2 {
        match self {
            Reply::Status(s) => Frame2::SimpleString(Bytes::from_static(s.as_bytes())),
            Reply::Error(e) => Frame2::Error(one_line(e).into()),
            Reply::Int(i) => Frame2::Integer(*i),
            Reply::Bulk(b) => Frame2::BulkString(b.clone()),
            Reply::Nil => Frame2::Null,
            Reply::Array(items) => Frame2::Array(items.iter().map(Reply::to_resp2).collect()),
            Reply::Map(pairs) => Frame2::Array(
                pairs
                    .iter()
                    .flat_map(|(k, v)| [k.to_resp2(), v.to_resp2()])
                    .collect(),
            ),
            Reply::Text(t) => Frame2::BulkString(Bytes::from(t.clone())),
        }
    }

    fn to_resp3(&self) -> Frame3 {
        match self {
            Reply::Status(s) => Frame3::SimpleString {
                data: Bytes::from_static(s.as_bytes()),
                attributes: None,
            },
            Reply::Error(e) => Frame3::SimpleError {
                data: one_line(e).into(),
                attributes: None,
            },
            Reply::Int(i) => Frame3::Number {
                data: *i,
                attributes: None,
            },
            Reply::Bulk(b) => Frame3::BlobString {
                data: b.clone(),
                attributes: None,
            },
            Reply::Nil => Frame3::Null,
            Reply::Array(items) => Frame3::Array {
                data: items.iter().map(Reply::to_resp3).collect(),
                attributes: None,
            },
            Reply::Map(pairs) => {
                let mut data = FrameMap::default();
                for (k, v) in pairs {
                    data.insert(k.to_resp3(), v.to_resp3());
                }
                Frame3::Map {
                    data,
                    attributes: None,
                }
            }
            Reply::Text(t) => Frame3::VerbatimString {
                data: Bytes::from(t.clone()),
                format: VerbatimStringFormat::Text,
                attributes: None,
            },
        }
    }
}

/// Simple strings and errors cannot hold a line break.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply, p: Protocol) -> String {
        let mut out = BytesMut::new();
        r.encode(p, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn resp2_and_resp3_encodings() {
        use Protocol::*;
        assert_eq!(wire(&Reply::OK, Resp2), "+OK\r\n");
        assert_eq!(
            wire(&Reply::err("syntax error"), Resp2),
            "-ERR syntax error\r\n"
        );
        assert_eq!(wire(&Reply::Int(-3), Resp3), ":-3\r\n");
        assert_eq!(wire(&Reply::Nil, Resp2), "$-1\r\n");
        assert_eq!(wire(&Reply::Nil, Resp3), "_\r\n");
        assert_eq!(wire(&Reply::bulk("ab"), Resp2), "$2\r\nab\r\n");
        let map = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        assert_eq!(wire(&map, Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(wire(&map, Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(wire(&Reply::Text("x".into()), Resp2), "$1\r\nx\r\n");
        assert_eq!(wire(&Reply::Text("x".into()), Resp3), "=5\r\ntxt:x\r\n");
        assert_eq!(
            wire(&Reply::Error("ERR a\r\nb".into()), Resp2),
            "-ERR a  b\r\n"
        );
    }
}
