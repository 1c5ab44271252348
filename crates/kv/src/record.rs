//! What a client session keeps of a write's output, and how a retry is answered from it.
//!
//! A session record travels in snapshots and, in a sharded cluster, with every shard a group
//! hands off (the group's whole session table goes along). So a record is always in a shape
//! that builds before the Redis-era commands decode: `Done`, `Value`, `Cas` and `CasFailed`.
//! Only the command (which the retry carries) tells how to read it back:
//!
//! | command | output | record |
//! |---|---|---|
//! | Put, Append, PutMany | `Done` | `Done` |
//! | Delete | `Deleted { existed }` | `Cas { swapped: existed, current: None }` |
//! | Cas, swapped | `Cas { true, expected }` | `Cas { true, None }` (the retry carries `expected`) |
//! | Cas, not swapped | `Cas { false, found }` | itself, or `CasFailed` if found > [`RECORDED_VALUE_BYTES_MAX`] |
//! | Set | `Set { applied, old }` | `Cas { swapped: applied, current: old }`, or `CasFailed` if old is too large |
//! | GetDel | `Value(old)` | itself, or `CasFailed` if old is too large |
//! | AppendLen, IncrBy, DeleteMany | `Int(n)` | `Value(n as 8 little-endian bytes)` |
//! | IncrBy refused | `NotAnInteger` / `Overflow` | `Cas { swapped: false / true, current: None }` |
//! | Pipeline | `Outputs(outs)` | `Value(postcard of the list of each command's own record)` |
//! | Append, AppendLen in a pipeline, too large | `TooLarge { bytes, .. }` | `Cas { swapped: false, current: bytes as 8 little-endian bytes }` |
//!
//! A pipeline's record is the postcard encoding of the list of its commands' records, each
//! one of the rows above, held as bytes. The found values (of Cas, Set, GetDel) it keeps
//! add up to at most [`PIPELINE_RECORD_VALUE_BYTES_MAX`]: a command whose found value
//! would pass that is recorded `CasFailed`. Each other record is at most 12 bytes, so a
//! pipeline's record is at most `PIPELINE_OPS_MAX * 12 + PIPELINE_RECORD_VALUE_BYTES_MAX`
//! bytes and a few (under 2 KiB: `tests/sessions.rs`). Its retry decodes the list and
//! replays each command from its own record; if anything of that fails (a record that
//! does not decode or does not match the pipeline, a command whose record answers an
//! error such as a `CasFailed` one), the retry is answered `SessionExpired`: the pipeline
//! applied, once, and its answer is gone.
//!
//! A retry of a Cas whose found value was not kept is answered `CasFailed` (it surely did not
//! apply); of a Set or GetDel whose found value was not kept, `SessionExpired` (it applied,
//! once, and its answer is gone).

#[cfg(doc)]
use crate::PIPELINE_OPS_MAX;
use crate::{
    KvCommand, KvOutput, PIPELINE_RECORD_VALUE_BYTES_MAX, RECORDED_VALUE_BYTES_MAX, VALUE_BYTES_MAX,
};
use shardkv_rsm::Error;

/// A found value the record cannot keep: `CasFailed` with its size.
fn too_large(v: &[u8]) -> Option<KvOutput> {
    (v.len() > RECORDED_VALUE_BYTES_MAX).then_some(KvOutput::CasFailed {
        bytes: v.len() as u64,
    })
}

/// The 8 bytes of a recorded integer.
fn eight(b: &[u8]) -> Result<[u8; 8], Error> {
    b.try_into().map_err(|_| Error::Unavailable {
        reason: format!("a session record of {} bytes for an integer", b.len()),
    })
}

/// The answer to a retry of a pipeline from its record (`b`, the list of its commands'
/// records); `None` if the record does not decode, does not match `cmds`, or one of its
/// commands' records answers an error.
fn replay_pipeline(cmds: &[KvCommand], b: &[u8]) -> Option<KvOutput> {
    let records: Vec<KvOutput> = postcard::from_bytes(b).ok()?;
    if records.len() != cmds.len() {
        return None;
    }
    let outs = cmds
        .iter()
        .zip(&records)
        .map(|(c, r)| KvOutput::replay(c, r).ok())
        .collect::<Option<_>>()?;
    Some(KvOutput::Outputs(outs))
}

impl KvOutput {
    /// The bytes of the found value this record of `cmd` keeps (a Cas's, Set's or
    /// GetDel's), 0 for any other.
    fn found_bytes(&self, cmd: &KvCommand) -> usize {
        match (cmd, self) {
            (
                KvCommand::Cas { .. } | KvCommand::Set { .. } | KvCommand::GetDel { .. },
                KvOutput::Cas {
                    current: Some(v), ..
                }
                | KvOutput::Value(Some(v)),
            ) => v.len(),
            _ => 0,
        }
    }

    /// What a client session keeps of `out`, the output of `cmd`: enough to answer a retry
    /// the same way ([`KvOutput::replay`]), in a shape every build decodes (module docs).
    pub fn record(cmd: &KvCommand, out: &KvOutput) -> KvOutput {
        use KvCommand as C;
        use KvOutput as O;
        match (cmd, out) {
            (C::Delete { .. }, O::Deleted { existed }) => O::Cas {
                swapped: *existed,
                current: None,
            },
            (C::Cas { .. }, O::Cas { swapped: true, .. }) => O::Cas {
                swapped: true,
                current: None,
            },
            (
                C::Cas { .. },
                O::Cas {
                    swapped: false,
                    current: Some(v),
                },
            )
            | (C::GetDel { .. }, O::Value(Some(v))) => too_large(v).unwrap_or_else(|| out.clone()),
            (C::Set { .. }, O::Set { applied, old }) => old
                .as_deref()
                .and_then(too_large)
                .unwrap_or_else(|| O::Cas {
                    swapped: *applied,
                    current: old.clone(),
                }),
            (C::AppendLen { .. } | C::IncrBy { .. } | C::DeleteMany { .. }, O::Int(n)) => {
                O::Value(Some(n.to_le_bytes().to_vec()))
            }
            (C::IncrBy { .. }, O::NotAnInteger | O::Overflow) => O::Cas {
                swapped: *out == O::Overflow,
                current: None,
            },
            (C::Append { .. } | C::AppendLen { .. }, O::TooLarge { bytes, .. }) => O::Cas {
                swapped: false,
                current: Some(bytes.to_le_bytes().to_vec()),
            },
            (C::Pipeline { cmds }, O::Outputs(outs)) => {
                assert_eq!(
                    cmds.len(),
                    outs.len(),
                    "one output per command of a pipeline"
                );
                let mut kept = 0;
                let records: Vec<KvOutput> = cmds
                    .iter()
                    .zip(outs)
                    .map(|(c, o)| {
                        let record = KvOutput::record(c, o);
                        let found = record.found_bytes(c);
                        if kept + found > PIPELINE_RECORD_VALUE_BYTES_MAX {
                            return O::CasFailed {
                                bytes: found as u64,
                            };
                        }
                        kept += found;
                        record
                    })
                    .collect();
                O::Value(Some(
                    postcard::to_allocvec(&records).expect("a list of records encodes"),
                ))
            }
            _ => out.clone(),
        }
    }

    /// The answer to a retry of `cmd` from its session record.
    pub fn replay(cmd: &KvCommand, recorded: &KvOutput) -> Result<KvOutput, Error> {
        use KvCommand as C;
        use KvOutput as O;
        Ok(match (cmd, recorded) {
            (C::Delete { .. }, O::Cas { swapped, .. }) => O::Deleted { existed: *swapped },
            (C::Cas { expected, .. }, O::Cas { swapped: true, .. }) => O::Cas {
                swapped: true,
                current: expected.clone(),
            },
            (C::Set { .. } | C::GetDel { .. }, O::CasFailed { .. }) => {
                return Err(Error::SessionExpired);
            }
            (_, O::CasFailed { bytes }) => return Err(Error::CasFailed { bytes: *bytes }),
            (C::Set { .. }, O::Cas { swapped, current }) => O::Set {
                applied: *swapped,
                old: current.clone(),
            },
            (C::AppendLen { .. } | C::IncrBy { .. } | C::DeleteMany { .. }, O::Value(Some(b))) => {
                O::Int(i64::from_le_bytes(eight(b)?))
            }
            (
                C::Append { .. } | C::AppendLen { .. },
                O::Cas {
                    current: Some(b), ..
                },
            ) => O::TooLarge {
                bytes: u64::from_le_bytes(eight(b)?),
                max: VALUE_BYTES_MAX as u64,
            },
            (C::Pipeline { cmds }, O::Value(Some(b))) => {
                replay_pipeline(cmds, b).ok_or(Error::SessionExpired)?
            }
            (C::IncrBy { .. }, O::Cas { swapped, .. }) => {
                if *swapped {
                    O::Overflow
                } else {
                    O::NotAnInteger
                }
            }
            _ => recorded.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SetWhen;
    use serde_bytes::ByteBuf;

    fn old_shape(o: &KvOutput) -> bool {
        matches!(
            o,
            KvOutput::Done | KvOutput::Value(_) | KvOutput::Cas { .. } | KvOutput::CasFailed { .. }
        )
    }

    #[test]
    fn every_record_has_an_old_shape_and_replays_the_answer() {
        let k = || b"k".to_vec();
        let set = |get| KvCommand::Set {
            key: k(),
            value: b"v".to_vec(),
            when: SetWhen::Absent,
            get,
        };
        let incr = KvCommand::IncrBy { key: k(), by: 1 };
        let cases = [
            (
                set(false),
                KvOutput::Set {
                    applied: true,
                    old: None,
                },
            ),
            (
                set(true),
                KvOutput::Set {
                    applied: false,
                    old: Some(b"x".to_vec()),
                },
            ),
            (
                KvCommand::GetDel { key: k() },
                KvOutput::Value(Some(b"x".to_vec())),
            ),
            (KvCommand::GetDel { key: k() }, KvOutput::Value(None)),
            (
                KvCommand::AppendLen {
                    key: k(),
                    value: k(),
                },
                KvOutput::Int(7),
            ),
            (incr.clone(), KvOutput::Int(i64::MIN)),
            (incr.clone(), KvOutput::Int(-1)),
            (incr.clone(), KvOutput::NotAnInteger),
            (incr, KvOutput::Overflow),
            (
                KvCommand::DeleteMany {
                    keys: vec![ByteBuf::from(k())],
                },
                KvOutput::Int(0),
            ),
            (KvCommand::PutMany { pairs: vec![] }, KvOutput::Done),
        ];
        for (cmd, out) in cases {
            let rec = KvOutput::record(&cmd, &out);
            assert!(old_shape(&rec), "{cmd:?}: {rec:?}");
            assert_eq!(KvOutput::replay(&cmd, &rec), Ok(out), "{cmd:?}");
        }
    }

    #[test]
    fn a_found_value_too_large_to_keep_replays_as_session_expired() {
        let big = vec![b'x'; RECORDED_VALUE_BYTES_MAX + 1];
        let set = KvCommand::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            when: SetWhen::Always,
            get: true,
        };
        let getdel = KvCommand::GetDel { key: b"k".to_vec() };
        let cases = [
            (
                set,
                KvOutput::Set {
                    applied: true,
                    old: Some(big.clone()),
                },
            ),
            (getdel, KvOutput::Value(Some(big))),
        ];
        for (cmd, out) in cases {
            let rec = KvOutput::record(&cmd, &out);
            assert_eq!(
                rec,
                KvOutput::CasFailed {
                    bytes: RECORDED_VALUE_BYTES_MAX as u64 + 1
                }
            );
            assert_eq!(KvOutput::replay(&cmd, &rec), Err(Error::SessionExpired));
        }
    }

    #[test]
    fn a_pipeline_record_that_does_not_decode_or_match_replays_as_session_expired() {
        // Goal: a retry of a pipeline whose record cannot answer it says "may have
        // applied" (SessionExpired), never "surely not" (Unavailable, CasFailed).
        let one = KvCommand::Delete { key: b"k".to_vec() };
        let pipeline = KvCommand::Pipeline {
            cmds: vec![one.clone(), one],
        };
        let rec = KvOutput::record(
            &pipeline,
            &KvOutput::Outputs(vec![KvOutput::Deleted { existed: true }; 2]),
        );
        let KvOutput::Value(Some(list)) = &rec else {
            panic!("{rec:?}");
        };
        let shorter = KvCommand::Pipeline {
            cmds: vec![KvCommand::Delete { key: b"k".to_vec() }],
        };
        for (cmd, rec) in [
            (&shorter, rec.clone()),
            (
                &pipeline,
                KvOutput::Value(Some(list[..list.len() - 1].to_vec())),
            ),
            (&pipeline, KvOutput::Value(Some(vec![0xff; 3]))),
        ] {
            assert_eq!(
                KvOutput::replay(cmd, &rec),
                Err(Error::SessionExpired),
                "{rec:?}"
            );
        }
    }
}
