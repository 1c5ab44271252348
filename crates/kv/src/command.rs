//! The KV protocol: commands, queries, outputs, and their size limits.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use shardkv_rsm::{Error, Request};

/// The largest key accepted, in bytes.
pub const KEY_BYTES_MAX: usize = 64 << 10;
/// The largest value accepted, in bytes.
pub const VALUE_BYTES_MAX: usize = 1 << 20;
/// The most keys one multi-key operation (`DeleteMany`, `PutMany`, `GetMany`, `Exists`)
/// names.
pub const MANY_KEYS_MAX: usize = 1024;
/// The most bytes (keys and values together) one multi-key operation carries.
pub const MANY_BYTES_MAX: usize = 2 << 20;
/// The most sub-operations one `Pipeline` command or query carries.
pub const PIPELINE_OPS_MAX: usize = 64;
/// The largest value a client session keeps to answer a retry of a failed CAS with the
/// value it found; a larger one is answered `Error::CasFailed` (read the key instead).
pub const RECORDED_VALUE_BYTES_MAX: usize = 128;
/// The most found-value bytes one pipeline's session record keeps, across its commands;
/// a command whose found value would pass it is recorded `CasFailed` (its pipeline's retry
/// is answered `Error::SessionExpired`).
pub const PIPELINE_RECORD_VALUE_BYTES_MAX: usize = 1024;

/// A write. Byte fields are encoded as byte strings (`serde_bytes`): in postcard the same
/// bytes as a sequence of u8, so logs and snapshots of older builds still read
/// (tests/encoding.rs), without a call per byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Append {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    Cas {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    // The variants below were added after the ones above (for the Redis front end); each is
    // appended, so the encodings of the ones before are unchanged. A member of an older
    // build cannot decode them: use them only once every member runs a build that has them.
    /// Set `key` to `value` if `when` holds. Answers `Set { applied, old }`, with the value
    /// it found in `old` only when `get` is set.
    Set {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        when: SetWhen,
        get: bool,
    },
    /// Delete the key; answers the value it had (`Value`).
    GetDel {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Append (as `Append`); answers the value's new length (`Int`).
    AppendLen {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Add `by` to the integer the key holds (a missing key holds 0) and store the sum in
    /// canonical decimal; answers the sum (`Int`), or `NotAnInteger` / `Overflow` and
    /// changes nothing.
    IncrBy {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        by: i64,
    },
    /// Delete every key; answers how many existed (`Int`). Atomic.
    DeleteMany { keys: Vec<ByteBuf> },
    /// Set every pair, in order (a key named twice ends with its last value); answers
    /// `Done`. Atomic.
    PutMany { pairs: Vec<(ByteBuf, ByteBuf)> },
    // Appended after `PutMany`.
    /// A client's pipelined writes as one log entry: every command applied at one index,
    /// in order, with nothing between them; answers `Outputs`, one per command, each what
    /// that command alone would answer at that point. 1 to [`PIPELINE_OPS_MAX`] commands,
    /// none a `Pipeline`, every key in one shard (as for the other multi-key commands).
    /// Not a transaction, as Redis's pipelines are not: an Append or AppendLen of it that
    /// would grow a value past [`VALUE_BYTES_MAX`] answers `KvOutput::TooLarge` and changes
    /// nothing, and the others apply. Its bytes (within [`MANY_BYTES_MAX`]) count, for each
    /// GetDel and `Set { get: true }`, the largest value it may answer
    /// ([`VALUE_BYTES_MAX`]), so its answer fits a reply as its request does.
    Pipeline { cmds: Vec<KvCommand> },
}

/// When a `Set` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetWhen {
    Always,
    /// Only if the key is absent (Redis `NX`).
    Absent,
    /// Only if the key exists (Redis `XX`).
    Present,
}

impl KvCommand {
    /// The key the command writes: the first one of a multi-key command (every key of which
    /// must be in one shard).
    pub fn key(&self) -> &[u8] {
        self.keys().next().unwrap_or_default()
    }

    /// Every key the command writes, in order.
    pub fn keys(&self) -> Keys<'_> {
        match self {
            KvCommand::Put { key, .. }
            | KvCommand::Append { key, .. }
            | KvCommand::Delete { key }
            | KvCommand::Cas { key, .. }
            | KvCommand::Set { key, .. }
            | KvCommand::GetDel { key }
            | KvCommand::AppendLen { key, .. }
            | KvCommand::IncrBy { key, .. } => Keys::One(Some(key)),
            KvCommand::DeleteMany { keys } => Keys::Many(keys.iter()),
            KvCommand::PutMany { pairs } => Keys::Pairs(pairs.iter()),
            KvCommand::Pipeline { cmds } => {
                Keys::Nested(Box::new(cmds.iter().flat_map(Self::keys)))
            }
        }
    }

    /// The bytes the command carries (its keys and values) and, for one that answers a
    /// value it found (GetDel, `Set { get: true }`, Cas, which answers the value it found
    /// when it does not swap), the most that value can be: what a pipeline is bounded by,
    /// so its answer fits a reply as its request does.
    fn bytes(&self) -> usize {
        match self {
            KvCommand::Put { key, value }
            | KvCommand::Append { key, value }
            | KvCommand::AppendLen { key, value } => key.len() + value.len(),
            KvCommand::Set {
                key, value, get, ..
            } => key.len() + value.len() + if *get { VALUE_BYTES_MAX } else { 0 },
            KvCommand::GetDel { key } => key.len() + VALUE_BYTES_MAX,
            KvCommand::Delete { key } | KvCommand::IncrBy { key, .. } => key.len(),
            KvCommand::Cas { key, expected, new } => {
                key.len() + expected.as_ref().map_or(0, Vec::len) + new.len() + VALUE_BYTES_MAX
            }
            KvCommand::DeleteMany { keys } => keys.iter().map(|k| k.len()).sum(),
            KvCommand::PutMany { pairs } => pairs.iter().map(|(k, v)| k.len() + v.len()).sum(),
            KvCommand::Pipeline { cmds } => cmds.iter().map(Self::bytes).sum(),
        }
    }
}

/// The keys of a command or query, in order.
pub enum Keys<'a> {
    One(Option<&'a [u8]>),
    Many(std::slice::Iter<'a, ByteBuf>),
    Pairs(std::slice::Iter<'a, (ByteBuf, ByteBuf)>),
    /// A pipeline's: every sub-operation's keys, in order.
    Nested(Box<dyn Iterator<Item = &'a [u8]> + 'a>),
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Keys::One(k) => k.take(),
            Keys::Many(ks) => ks.next().map(|k| k.as_slice()),
            Keys::Pairs(ps) => ps.next().map(|(k, _)| k.as_slice()),
            Keys::Nested(ks) => ks.next(),
        }
    }
}

/// A read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    // Appended after `Get`, as the commands after `Cas` are.
    /// The values of the keys, in order (`Values`).
    GetMany { keys: Vec<ByteBuf> },
    /// How many of the keys exist, a key named twice counting twice (`Int`).
    Exists { keys: Vec<ByteBuf> },
    /// The length of the key's value, 0 if absent (`Int`).
    StrLen {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    // Appended after `StrLen`.
    /// A client's pipelined reads: every query answered at the one index of the read, in
    /// order (`Outputs`). 1 to [`PIPELINE_OPS_MAX`] queries, none a `Pipeline`, every key in
    /// one shard; `TooLarge` if the values it would answer add up to more than
    /// [`MANY_BYTES_MAX`].
    Pipeline { queries: Vec<KvQuery> },
}

impl KvQuery {
    /// The key the query reads: the first one of a multi-key query (every key of which must
    /// be in one shard).
    pub fn key(&self) -> &[u8] {
        self.keys().next().unwrap_or_default()
    }

    /// Every key the query reads, in order.
    pub fn keys(&self) -> Keys<'_> {
        match self {
            KvQuery::Get { key } | KvQuery::StrLen { key } => Keys::One(Some(key)),
            KvQuery::GetMany { keys } | KvQuery::Exists { keys } => Keys::Many(keys.iter()),
            KvQuery::Pipeline { queries } => {
                Keys::Nested(Box::new(queries.iter().flat_map(Self::keys)))
            }
        }
    }

    /// The bytes the query carries: its keys.
    fn bytes(&self) -> usize {
        self.keys().map(<[u8]>::len).sum()
    }
}

/// The answer to any operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput {
    /// Get: the value, `None` if absent.
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// Put, Append (and Delete in builds before `Deleted`: see there).
    Done,
    /// CAS: whether it swapped, and the value it found.
    Cas {
        swapped: bool,
        #[serde(with = "serde_bytes")]
        current: Option<Vec<u8>>,
    },
    /// Only in a session's record, never answered: a CAS that did not swap and found a
    /// value of `bytes` bytes, too large to keep; its retry is answered `Error::CasFailed`.
    CasFailed { bytes: u64 },
    /// Delete: whether the key existed (and so was removed). Appended last, so the
    /// encodings of the variants before it are unchanged; a session record of a Delete
    /// applied by an older build holds `Done`, and its retry is answered `Done`. Only ever
    /// answered, never recorded: a session record (which travels in snapshots and shard
    /// moves) holds it as `Cas { swapped: existed, current: None }`, a shape every build
    /// decodes, so members of an older build in a rolling upgrade can still read them.
    Deleted { existed: bool },
    // Appended after `Deleted`, for the commands and queries appended after `Cas` and `Get`.
    /// AppendLen, IncrBy, DeleteMany, Exists, StrLen.
    Int(i64),
    /// GetMany: each key's value, `None` if absent.
    Values(Vec<Option<ByteBuf>>),
    /// Set: whether it applied, and (if asked for) the value it found.
    Set {
        applied: bool,
        #[serde(with = "serde_bytes")]
        old: Option<Vec<u8>>,
    },
    /// IncrBy on a value that is not a 64-bit integer in canonical decimal (Redis's rule:
    /// optional `-`, no `+`, no leading zeros, no spaces, no `-0`). Nothing changed.
    NotAnInteger,
    /// IncrBy whose sum passes the range of a 64-bit integer. Nothing changed.
    Overflow,
    // Appended after `Overflow`.
    /// Pipeline (command or query): one output per sub-operation, in order. Never
    /// recorded as itself (`record.rs`).
    Outputs(Vec<KvOutput>),
    // Appended after `Outputs`.
    /// Only within `Outputs`: an Append or AppendLen of a pipeline whose result would be
    /// `bytes` long, past `max` ([`VALUE_BYTES_MAX`]). Nothing changed. (A lone one is
    /// refused with `Error::TooLarge` instead.)
    TooLarge { bytes: u64, max: u64 },
}

/// A client request as it travels to a server.
pub type KvRequest = Request<KvCommand, KvQuery>;

/// A server's answer.
pub type KvResponse = Result<KvOutput, Error>;

fn check(bytes: usize, max: usize) -> Result<(), Error> {
    if bytes > max {
        Err(Error::TooLarge {
            bytes: bytes as u64,
            max: max as u64,
        })
    } else {
        Ok(())
    }
}

/// Checks a request's sizes against the limits.
pub fn validate(req: &KvRequest) -> Result<(), Error> {
    match req {
        Request::Read(q) => validate_query(q),
        Request::Write { cmd, .. } => validate_command(cmd),
    }
}

/// Checks a read's sizes against the limits.
pub fn validate_query(q: &KvQuery) -> Result<(), Error> {
    match q {
        KvQuery::Get { key } | KvQuery::StrLen { key } => check(key.len(), KEY_BYTES_MAX),
        KvQuery::GetMany { keys } | KvQuery::Exists { keys } => {
            check_many(keys.iter().map(|k| (k.as_slice(), &[][..])))
        }
        KvQuery::Pipeline { queries } => check_pipeline(
            queries,
            |q| matches!(q, KvQuery::Pipeline { .. }),
            validate_query,
            KvQuery::bytes,
        ),
    }
}

/// Checks a pipeline: 1 to [`PIPELINE_OPS_MAX`] operations, none itself a pipeline
/// (`nested`), each within its own limits (`each`), within [`MANY_BYTES_MAX`] in all
/// (`bytes`).
fn check_pipeline<T>(
    ops: &[T],
    nested: impl Fn(&T) -> bool,
    each: impl Fn(&T) -> Result<(), Error>,
    bytes: impl Fn(&T) -> usize,
) -> Result<(), Error> {
    let n = ops.len();
    if n == 0 || n > PIPELINE_OPS_MAX {
        return Err(Error::Invalid {
            reason: format!("a pipeline of {n} operations; 1 to {PIPELINE_OPS_MAX} are accepted"),
        });
    }
    if ops.iter().any(nested) {
        return Err(Error::Invalid {
            reason: "a pipeline within a pipeline".into(),
        });
    }
    ops.iter().try_for_each(each)?;
    check(ops.iter().map(bytes).sum(), MANY_BYTES_MAX)
}

/// Checks a multi-key operation: 1 to [`MANY_KEYS_MAX`] keys, each within the key and value
/// limits, within [`MANY_BYTES_MAX`] in all.
fn check_many<'a>(pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>) -> Result<(), Error> {
    let n = pairs.len();
    if n == 0 {
        return Err(Error::Invalid {
            reason: "a multi-key operation needs at least one key".into(),
        });
    }
    if n > MANY_KEYS_MAX {
        return Err(Error::Invalid {
            reason: format!("{n} keys in one operation; at most {MANY_KEYS_MAX} are accepted"),
        });
    }
    let mut total = 0;
    for (k, v) in pairs {
        check(k.len(), KEY_BYTES_MAX)?;
        check(v.len(), VALUE_BYTES_MAX)?;
        total += k.len() + v.len();
    }
    check(total, MANY_BYTES_MAX)
}

/// Checks a write's sizes against the limits.
pub fn validate_command(cmd: &KvCommand) -> Result<(), Error> {
    match cmd {
        KvCommand::Put { key, value } | KvCommand::Append { key, value } => {
            check(key.len(), KEY_BYTES_MAX)?;
            check(value.len(), VALUE_BYTES_MAX)
        }
        KvCommand::Delete { key } | KvCommand::GetDel { key } | KvCommand::IncrBy { key, .. } => {
            check(key.len(), KEY_BYTES_MAX)
        }
        KvCommand::Set { key, value, .. } | KvCommand::AppendLen { key, value } => {
            check(key.len(), KEY_BYTES_MAX)?;
            check(value.len(), VALUE_BYTES_MAX)
        }
        KvCommand::DeleteMany { keys } => check_many(keys.iter().map(|k| (k.as_slice(), &[][..]))),
        KvCommand::PutMany { pairs } => {
            check_many(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
        }
        KvCommand::Cas { key, expected, new } => {
            check(key.len(), KEY_BYTES_MAX)?;
            check(expected.as_ref().map_or(0, Vec::len), VALUE_BYTES_MAX)?;
            check(new.len(), VALUE_BYTES_MAX)
        }
        KvCommand::Pipeline { cmds } => check_pipeline(
            cmds,
            |c| matches!(c, KvCommand::Pipeline { .. }),
            validate_command,
            KvCommand::bytes,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardkv_types::{ClientId, Seq};

    fn write(cmd: KvCommand) -> KvRequest {
        Request::Write {
            client: ClientId(1),
            seq: Seq(1),
            retry: false,
            cmd,
        }
    }

    #[test]
    fn a_delete_is_recorded_in_a_shape_older_builds_decode_and_replayed_as_deleted() {
        let del = KvCommand::Delete { key: b"k".to_vec() };
        for existed in [true, false] {
            let rec = KvOutput::record(&del, &KvOutput::Deleted { existed });
            assert_eq!(
                rec,
                KvOutput::Cas {
                    swapped: existed,
                    current: None
                },
                "no variant an older build lacks"
            );
            assert_eq!(
                KvOutput::replay(&del, &rec),
                Ok(KvOutput::Deleted { existed })
            );
        }
        // A record of an older build's Delete answers as it did.
        assert_eq!(KvOutput::replay(&del, &KvOutput::Done), Ok(KvOutput::Done));
    }

    #[test]
    fn oversized_requests_are_refused() {
        let big = vec![0u8; VALUE_BYTES_MAX + 1];
        let err = validate(&write(KvCommand::Put {
            key: b"a".to_vec(),
            value: big,
        }))
        .unwrap_err();
        assert_eq!(
            err,
            Error::TooLarge {
                bytes: VALUE_BYTES_MAX as u64 + 1,
                max: VALUE_BYTES_MAX as u64
            }
        );
        let long_key = vec![0; KEY_BYTES_MAX + 1];
        assert!(
            validate(&write(KvCommand::Delete {
                key: long_key.clone()
            }))
            .is_err()
        );
        assert!(validate(&Request::Read(KvQuery::Get { key: long_key })).is_err());
        let ok = write(KvCommand::Put {
            key: b"a".to_vec(),
            value: b"b".to_vec(),
        });
        assert!(validate(&ok).is_ok());
    }
    fn bufs(n: usize, bytes: usize) -> Vec<ByteBuf> {
        (0..n)
            .map(|i| ByteBuf::from(vec![i as u8; bytes]))
            .collect()
    }

    #[test]
    fn multi_key_operations_name_one_to_many_keys_max_within_many_bytes_max() {
        // Goal: validate's multi-key limits; method: each op at and past each limit.
        let read = |q: KvQuery| validate(&Request::Read(q));
        let too_large = |bytes: usize, max: usize| {
            Err(Error::TooLarge {
                bytes: bytes as u64,
                max: max as u64,
            })
        };
        let none = bufs(0, 1);
        assert!(matches!(
            validate_command(&KvCommand::DeleteMany { keys: none.clone() }),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            read(KvQuery::GetMany { keys: none.clone() }),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            read(KvQuery::Exists { keys: none }),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            validate_command(&KvCommand::PutMany { pairs: Vec::new() }),
            Err(Error::Invalid { .. })
        ));
        let most = bufs(MANY_KEYS_MAX, 1);
        assert_eq!(read(KvQuery::GetMany { keys: most.clone() }), Ok(()));
        assert_eq!(
            validate(&write(KvCommand::DeleteMany { keys: most })),
            Ok(())
        );
        let over = bufs(MANY_KEYS_MAX + 1, 1);
        assert!(matches!(
            read(KvQuery::Exists { keys: over.clone() }),
            Err(Error::Invalid { reason }) if reason.contains("1025 keys")
        ));
        let pairs: Vec<_> = over.into_iter().map(|k| (k, ByteBuf::new())).collect();
        assert!(matches!(
            validate_command(&KvCommand::PutMany { pairs }),
            Err(Error::Invalid { .. })
        ));
        // Three values of 1 MiB: each within VALUE_BYTES_MAX, together past MANY_BYTES_MAX.
        let pairs: Vec<_> = bufs(3, 1)
            .into_iter()
            .map(|k| (k, ByteBuf::from(vec![0; VALUE_BYTES_MAX])))
            .collect();
        assert_eq!(
            validate_command(&KvCommand::PutMany { pairs }),
            too_large(3 + 3 * VALUE_BYTES_MAX, MANY_BYTES_MAX)
        );
        let pairs = vec![(
            ByteBuf::from(&b"k"[..]),
            ByteBuf::from(vec![0; VALUE_BYTES_MAX + 1]),
        )];
        assert_eq!(
            validate_command(&KvCommand::PutMany { pairs }),
            too_large(VALUE_BYTES_MAX + 1, VALUE_BYTES_MAX),
            "each value within the value limit"
        );
        let keys = bufs(2, KEY_BYTES_MAX + 1);
        assert_eq!(
            read(KvQuery::GetMany { keys }),
            too_large(KEY_BYTES_MAX + 1, KEY_BYTES_MAX),
            "each key within the key limit"
        );
        let long_key = vec![0; KEY_BYTES_MAX + 1];
        for cmd in [
            KvCommand::GetDel {
                key: long_key.clone(),
            },
            KvCommand::IncrBy {
                key: long_key.clone(),
                by: 1,
            },
            KvCommand::Set {
                key: long_key.clone(),
                value: Vec::new(),
                when: SetWhen::Always,
                get: false,
            },
        ] {
            assert!(validate_command(&cmd).is_err(), "a key past KEY_BYTES_MAX");
        }
        assert!(read(KvQuery::StrLen { key: long_key }).is_err());
        let big = KvCommand::AppendLen {
            key: b"k".to_vec(),
            value: vec![0; VALUE_BYTES_MAX + 1],
        };
        assert!(validate_command(&big).is_err());
    }

    #[test]
    fn a_found_value_is_recorded_up_to_recorded_value_bytes_max() {
        // Goal: record/replay of Set-with-get and GetDel: a small found value replays
        // exactly, a larger one is recorded Unrecorded and its retry answers
        // SessionExpired; every other new output is recorded as answered.
        let set = KvCommand::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            when: SetWhen::Always,
            get: true,
        };
        let getdel = KvCommand::GetDel { key: b"k".to_vec() };
        for bytes in [0, 1, RECORDED_VALUE_BYTES_MAX, RECORDED_VALUE_BYTES_MAX + 1] {
            let found = Some(vec![b'x'; bytes]);
            let large = bytes > RECORDED_VALUE_BYTES_MAX;
            for (cmd, out) in [
                (
                    &set,
                    KvOutput::Set {
                        applied: true,
                        old: found.clone(),
                    },
                ),
                (&getdel, KvOutput::Value(found.clone())),
            ] {
                let rec = KvOutput::record(cmd, &out);
                if large {
                    assert_eq!(
                        rec,
                        KvOutput::CasFailed {
                            bytes: bytes as u64
                        }
                    );
                    assert_eq!(KvOutput::replay(cmd, &rec), Err(Error::SessionExpired));
                } else {
                    assert_eq!(KvOutput::replay(cmd, &rec), Ok(out));
                }
            }
        }
        let incr = KvCommand::IncrBy {
            key: b"n".to_vec(),
            by: 1,
        };
        for out in [KvOutput::Int(7), KvOutput::NotAnInteger, KvOutput::Overflow] {
            let rec = KvOutput::record(&incr, &out);
            assert_eq!(KvOutput::replay(&incr, &rec), Ok(out));
        }
        let many = KvCommand::DeleteMany { keys: bufs(2, 1) };
        let rec = KvOutput::record(&many, &KvOutput::Int(2));
        assert_eq!(KvOutput::replay(&many, &rec), Ok(KvOutput::Int(2)));
    }
}
