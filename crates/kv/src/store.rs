//! `KvStore`: an ordered map from key to value, and its sequential semantics.

use crate::int::parse_canonical_i64;
use crate::{KvCommand, KvOutput, KvQuery, KvRequest, SetWhen};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use shardkv_rsm::{Applying, Error, NoInternal, Sessions, StateMachine};
use std::collections::BTreeMap;

/// The store: an ordered map from key to value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    #[serde(with = "byte_map")]
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A map of byte strings to byte strings, each key and value encoded as a byte string
/// (`serde_bytes`): in postcard the same bytes as sequences of u8, so snapshots of older
/// builds still read (tests/encoding.rs), without a call per byte.
mod byte_map {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<Vec<u8>, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (Bytes::new(k), Bytes::new(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, D::Error> {
        let map = BTreeMap::<ByteBuf, ByteBuf>::deserialize(d)?;
        Ok(map
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v.into_vec()))
            .collect())
    }
}

impl KvStore {
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entries with keys after `after` (all of them for `None`), in key order: how a
    /// shard is read in chunks while it moves.
    pub fn entries_after(&self, after: Option<&[u8]>) -> impl Iterator<Item = (&[u8], &[u8])> {
        use std::ops::Bound;
        let lower = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        self.map
            .range::<[u8], _>((lower, Bound::Unbounded))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Sets `key` to `value` (installing a moved shard).
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.map.insert(key, value);
    }

    /// Refuses a write whose result would be larger than any value may be (an append onto a
    /// large value): `TooLarge`, and nothing changes. Every value then fits in a reply, a
    /// session and a moving shard's chunk.
    ///
    /// A pipeline is not refused as a whole: each of its appends is held to the limit as it
    /// executes ([`KvStore::execute`] answers it [`KvOutput::TooLarge`] and it changes
    /// nothing), so nothing is checked, or copied, ahead of it.
    pub fn check_growth(&self, cmd: &KvCommand) -> Result<(), Error> {
        match self.too_large(cmd) {
            Some(KvOutput::TooLarge { bytes, max }) => Err(Error::TooLarge { bytes, max }),
            _ => Ok(()),
        }
    }

    /// `TooLarge` for an Append or AppendLen whose result would pass
    /// [`VALUE_BYTES_MAX`](crate::VALUE_BYTES_MAX); `None` for any other command.
    fn too_large(&self, cmd: &KvCommand) -> Option<KvOutput> {
        let (KvCommand::Append { key, value } | KvCommand::AppendLen { key, value }) = cmd else {
            return None;
        };
        let now = self.map.get(key).map_or(0, Vec::len);
        let bytes = (now + value.len()) as u64;
        let max = crate::VALUE_BYTES_MAX as u64;
        (bytes > max).then_some(KvOutput::TooLarge { bytes, max })
    }

    /// Applies a write: the sequential semantics of every command. A lone Append or
    /// AppendLen is not held to the value limit here ([`KvStore::check_growth`] refuses it
    /// first); one within a pipeline is, and answers `TooLarge`, changing nothing.
    pub fn execute(&mut self, cmd: &KvCommand) -> KvOutput {
        match cmd {
            KvCommand::Put { key, value } => {
                self.map.insert(key.clone(), value.clone());
                KvOutput::Done
            }
            KvCommand::Append { key, value } => {
                self.append(key, value);
                KvOutput::Done
            }
            KvCommand::AppendLen { key, value } => KvOutput::Int(self.append(key, value) as i64),
            KvCommand::Delete { key } => KvOutput::Deleted {
                existed: self.map.remove(key).is_some(),
            },
            KvCommand::Cas { key, expected, new } => {
                let current = self.map.get(key).cloned();
                let swapped = current == *expected;
                if swapped {
                    self.map.insert(key.clone(), new.clone());
                }
                KvOutput::Cas { swapped, current }
            }
            KvCommand::Set {
                key,
                value,
                when,
                get,
            } => {
                let found = self.map.get(key);
                let applied = match when {
                    SetWhen::Always => true,
                    SetWhen::Absent => found.is_none(),
                    SetWhen::Present => found.is_some(),
                };
                let old = if *get { found.cloned() } else { None };
                if applied {
                    self.map.insert(key.clone(), value.clone());
                }
                KvOutput::Set { applied, old }
            }
            KvCommand::GetDel { key } => KvOutput::Value(self.map.remove(key)),
            KvCommand::IncrBy { key, by } => {
                let now = match self.map.get(key) {
                    None => 0,
                    Some(v) => match parse_canonical_i64(v) {
                        Some(n) => n,
                        None => return KvOutput::NotAnInteger,
                    },
                };
                match now.checked_add(*by) {
                    Some(sum) => {
                        self.map.insert(key.clone(), sum.to_string().into_bytes());
                        KvOutput::Int(sum)
                    }
                    None => KvOutput::Overflow,
                }
            }
            KvCommand::DeleteMany { keys } => KvOutput::Int(
                keys.iter()
                    .filter(|k| self.map.remove(k.as_slice()).is_some())
                    .count() as i64,
            ),
            KvCommand::PutMany { pairs } => {
                for (k, v) in pairs {
                    self.map.insert(k.to_vec(), v.to_vec());
                }
                KvOutput::Done
            }
            KvCommand::Pipeline { cmds } => KvOutput::Outputs(
                cmds.iter()
                    .map(|c| match self.too_large(c) {
                        Some(refused) => refused,
                        None => self.execute(c),
                    })
                    .collect(),
            ),
        }
    }

    /// Appends `value` to the key's value (creating it); answers the new length.
    fn append(&mut self, key: &[u8], value: &[u8]) -> usize {
        let v = self.map.entry(key.to_vec()).or_default();
        v.extend_from_slice(value);
        v.len()
    }

    /// The bytes of the values `q` answers.
    fn answer_bytes(&self, q: &KvQuery) -> usize {
        let value = |k: &[u8]| self.map.get(k).map_or(0, Vec::len);
        match q {
            KvQuery::Get { key } => value(key),
            KvQuery::GetMany { keys } => keys.iter().map(|k| value(k)).sum(),
            KvQuery::Exists { .. } | KvQuery::StrLen { .. } => 0,
            KvQuery::Pipeline { queries } => queries.iter().map(|q| self.answer_bytes(q)).sum(),
        }
    }

    /// Answers a read; `TooLarge` for a GetMany (or a pipeline of reads) whose values add
    /// up to more than [`MANY_BYTES_MAX`](crate::MANY_BYTES_MAX) (so every answer fits in a
    /// reply frame), counted before anything is copied.
    pub fn read(&self, q: &KvQuery) -> Result<KvOutput, Error> {
        if let KvQuery::GetMany { .. } | KvQuery::Pipeline { .. } = q {
            let bytes = self.answer_bytes(q);
            let max = crate::MANY_BYTES_MAX;
            if bytes > max {
                return Err(Error::TooLarge {
                    bytes: bytes as u64,
                    max: max as u64,
                });
            }
        }
        Ok(match q {
            KvQuery::Get { key } => KvOutput::Value(self.map.get(key).cloned()),
            KvQuery::GetMany { keys } => KvOutput::Values(
                keys.iter()
                    .map(|k| self.map.get(k.as_slice()).cloned().map(ByteBuf::from))
                    .collect(),
            ),
            KvQuery::Exists { keys } => KvOutput::Int(
                keys.iter()
                    .filter(|k| self.map.contains_key(k.as_slice()))
                    .count() as i64,
            ),
            KvQuery::StrLen { key } => {
                KvOutput::Int(self.map.get(key).map_or(0, |v| v.len() as i64))
            }
            KvQuery::Pipeline { queries } => KvOutput::Outputs(
                queries
                    .iter()
                    .map(|q| self.read(q))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

impl StateMachine for KvStore {
    type Command = KvCommand;
    type Query = KvQuery;
    type Output = KvOutput;
    type Internal = NoInternal;

    fn validate(req: &KvRequest) -> Result<(), Error> {
        crate::validate(req)
    }

    fn apply(
        &mut self,
        cmd: &KvCommand,
        _: &mut Applying<'_, KvOutput>,
    ) -> Result<KvOutput, Error> {
        self.check_growth(cmd)?;
        Ok(self.execute(cmd))
    }

    fn record(cmd: &KvCommand, out: &KvOutput) -> KvOutput {
        KvOutput::record(cmd, out)
    }

    fn replay(cmd: &KvCommand, recorded: &KvOutput) -> Result<KvOutput, Error> {
        KvOutput::replay(cmd, recorded)
    }

    fn apply_internal(&mut self, cmd: &NoInternal, _: &mut Applying<'_, KvOutput>) {
        match *cmd {}
    }

    fn query(&self, q: &KvQuery, _: &Sessions<KvOutput>) -> Result<KvOutput, Error> {
        self.read(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn operations_follow_their_sequential_semantics() {
        let mut s = KvStore::default();
        let get = |s: &KvStore, key: &str| s.read(&KvQuery::Get { key: k(key) }).unwrap();
        assert_eq!(get(&s, "a"), KvOutput::Value(None));
        s.execute(&KvCommand::Append {
            key: k("a"),
            value: k("x"),
        });
        s.execute(&KvCommand::Append {
            key: k("a"),
            value: k("y"),
        });
        assert_eq!(get(&s, "a"), KvOutput::Value(Some(k("xy"))));
        let cas = s.execute(&KvCommand::Cas {
            key: k("a"),
            expected: Some(k("nope")),
            new: k("z"),
        });
        let found = Some(k("xy"));
        assert_eq!(
            cas,
            KvOutput::Cas {
                swapped: false,
                current: found.clone()
            }
        );
        let cas = s.execute(&KvCommand::Cas {
            key: k("a"),
            expected: found.clone(),
            new: k("z"),
        });
        assert_eq!(
            cas,
            KvOutput::Cas {
                swapped: true,
                current: found
            }
        );
        s.execute(&KvCommand::Delete { key: k("a") });
        let cas = s.execute(&KvCommand::Cas {
            key: k("a"),
            expected: None,
            new: k("new"),
        });
        assert_eq!(
            cas,
            KvOutput::Cas {
                swapped: true,
                current: None
            }
        );
        s.execute(&KvCommand::Put {
            key: k("e"),
            value: vec![],
        });
        assert_eq!(
            get(&s, "e"),
            KvOutput::Value(Some(vec![])),
            "empty value is not absent"
        );
    }

    #[test]
    fn a_delete_answers_whether_the_key_existed() {
        let mut s = KvStore::default();
        let del = KvCommand::Delete { key: k("a") };
        assert_eq!(s.execute(&del), KvOutput::Deleted { existed: false });
        s.execute(&KvCommand::Put {
            key: k("a"),
            value: vec![],
        });
        assert_eq!(
            s.execute(&del),
            KvOutput::Deleted { existed: true },
            "an empty value is a key"
        );
        assert_eq!(s.get(b"a"), None);
        assert_eq!(s.execute(&del), KvOutput::Deleted { existed: false });
    }

    #[test]
    fn an_append_past_the_value_limit_is_refused_and_changes_nothing() {
        let mut s = KvStore::default();
        let half = vec![b'x'; crate::VALUE_BYTES_MAX / 2 + 1];
        let append = KvCommand::Append {
            key: k("a"),
            value: half.clone(),
        };
        assert_eq!(s.check_growth(&append), Ok(()));
        s.execute(&append);
        assert!(matches!(
            s.check_growth(&append),
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(s.get(b"a"), Some(&half), "the refusal changed nothing");
        let put = KvCommand::Put {
            key: k("a"),
            value: half,
        };
        assert_eq!(
            s.check_growth(&put),
            Ok(()),
            "a put replaces, it does not grow"
        );
    }
    fn set(key: &str, value: &str, when: SetWhen, get: bool) -> KvCommand {
        KvCommand::Set {
            key: k(key),
            value: k(value),
            when,
            get,
        }
    }

    fn set_out(applied: bool, old: Option<&str>) -> KvOutput {
        KvOutput::Set {
            applied,
            old: old.map(k),
        }
    }

    #[test]
    fn set_applies_by_its_condition_and_answers_the_value_found_if_asked() {
        // Goal: SetWhen and `get`; method: each condition on a missing and a present key.
        let mut s = KvStore::default();
        assert_eq!(
            s.execute(&set("a", "1", SetWhen::Present, true)),
            set_out(false, None)
        );
        assert_eq!(s.get(b"a"), None, "XX on a missing key changes nothing");
        assert_eq!(
            s.execute(&set("a", "1", SetWhen::Absent, true)),
            set_out(true, None)
        );
        assert_eq!(
            s.execute(&set("a", "2", SetWhen::Absent, true)),
            set_out(false, Some("1"))
        );
        assert_eq!(
            s.get(b"a"),
            Some(&k("1")),
            "NX on a present key changes nothing"
        );
        assert_eq!(
            s.execute(&set("a", "3", SetWhen::Present, false)),
            set_out(true, None),
            "without get, no old value"
        );
        assert_eq!(
            s.execute(&set("a", "", SetWhen::Always, true)),
            set_out(true, Some("3"))
        );
        assert_eq!(
            s.execute(&set("a", "4", SetWhen::Absent, false)),
            set_out(false, None),
            "an empty value is a present key"
        );
    }

    #[test]
    fn getdel_appendlen_and_strlen_follow_their_semantics() {
        // Goal: GetDel answers and removes, AppendLen answers the new length (and creates
        // the key), StrLen answers 0 for a missing key; method: a short sequence.
        let mut s = KvStore::default();
        let getdel = KvCommand::GetDel { key: k("a") };
        assert_eq!(s.execute(&getdel), KvOutput::Value(None));
        let app = |v: &str| KvCommand::AppendLen {
            key: k("a"),
            value: k(v),
        };
        assert_eq!(s.execute(&app("xy")), KvOutput::Int(2));
        assert_eq!(s.execute(&app("")), KvOutput::Int(2));
        assert_eq!(s.execute(&app("z")), KvOutput::Int(3));
        let strlen = |key: &str| s.read(&KvQuery::StrLen { key: k(key) }).unwrap();
        assert_eq!(strlen("a"), KvOutput::Int(3));
        assert_eq!(strlen("none"), KvOutput::Int(0));
        assert_eq!(s.execute(&getdel), KvOutput::Value(Some(k("xyz"))));
        assert_eq!(s.execute(&getdel), KvOutput::Value(None));
        let half = vec![b'x'; crate::VALUE_BYTES_MAX / 2 + 1];
        let big = KvCommand::AppendLen {
            key: k("a"),
            value: half.clone(),
        };
        assert_eq!(s.check_growth(&big), Ok(()));
        s.execute(&big);
        assert!(
            matches!(s.check_growth(&big), Err(Error::TooLarge { .. })),
            "AppendLen is held to the value limit as Append is"
        );
    }

    #[test]
    fn incrby_follows_redis_and_its_errors_change_nothing() {
        // Goal: IncrBy from missing (0), canonical sums, NotAnInteger and Overflow at both
        // ends of i64 leaving the value as it was; method: each case on one key.
        let mut s = KvStore::default();
        let incr = |by| KvCommand::IncrBy { key: k("n"), by };
        assert_eq!(s.execute(&incr(-4)), KvOutput::Int(-4));
        assert_eq!(s.get(b"n"), Some(&k("-4")), "stored in canonical decimal");
        assert_eq!(s.execute(&incr(4)), KvOutput::Int(0));
        assert_eq!(s.get(b"n"), Some(&k("0")), "zero, not -0");
        for not_integer in [
            "",
            "x",
            "01",
            "+1",
            " 1",
            "-0",
            "1.5",
            "9223372036854775808",
        ] {
            s.insert(k("n"), k(not_integer));
            assert_eq!(
                s.execute(&incr(1)),
                KvOutput::NotAnInteger,
                "{not_integer:?}"
            );
            assert_eq!(s.get(b"n"), Some(&k(not_integer)), "changed nothing");
        }
        s.insert(k("n"), i64::MAX.to_string().into_bytes());
        assert_eq!(s.execute(&incr(1)), KvOutput::Overflow);
        assert_eq!(s.get(b"n"), Some(&i64::MAX.to_string().into_bytes()));
        assert_eq!(s.execute(&incr(-1)), KvOutput::Int(i64::MAX - 1));
        s.insert(k("n"), i64::MIN.to_string().into_bytes());
        assert_eq!(s.execute(&incr(-1)), KvOutput::Overflow);
        assert_eq!(s.get(b"n"), Some(&i64::MIN.to_string().into_bytes()));
        assert_eq!(s.execute(&incr(i64::MAX)), KvOutput::Int(-1));
    }

    #[test]
    fn multi_key_operations_count_as_they_execute() {
        // Goal: DeleteMany counts each existing key once (a key named twice is gone the
        // second time), Exists counts a key named twice twice, PutMany's last pair for a
        // key wins, GetMany answers in order; method: one store.
        let mut s = KvStore::default();
        let bufs =
            |ks: &[&str]| -> Vec<ByteBuf> { ks.iter().map(|x| ByteBuf::from(k(x))).collect() };
        let pairs = [("a", "1"), ("b", "2"), ("a", "3")]
            .iter()
            .map(|(key, v)| (ByteBuf::from(k(key)), ByteBuf::from(k(v))))
            .collect();
        assert_eq!(s.execute(&KvCommand::PutMany { pairs }), KvOutput::Done);
        assert_eq!(s.get(b"a"), Some(&k("3")), "the last pair wins");
        assert_eq!(
            s.read(&KvQuery::GetMany {
                keys: bufs(&["b", "none", "a"])
            }),
            Ok(KvOutput::Values(vec![
                Some(ByteBuf::from(k("2"))),
                None,
                Some(ByteBuf::from(k("3")))
            ]))
        );
        assert_eq!(
            s.read(&KvQuery::Exists {
                keys: bufs(&["a", "a", "none", "b"])
            }),
            Ok(KvOutput::Int(3))
        );
        assert_eq!(
            s.execute(&KvCommand::DeleteMany {
                keys: bufs(&["a", "a", "none", "b"])
            }),
            KvOutput::Int(2)
        );
        assert!(s.is_empty());
    }

    /// Goal: a GetMany whose answer could not fit a reply frame is refused before anything
    /// is copied, and one within the bound is answered.
    #[test]
    fn a_get_many_of_values_past_the_bound_is_refused_too_large() {
        let mut s = KvStore::default();
        let big = vec![b'v'; crate::VALUE_BYTES_MAX];
        for key in ["a", "b", "c"] {
            s.insert(k(key), big.clone());
        }
        let keys = |names: &[&str]| {
            names
                .iter()
                .map(|n| ByteBuf::from(k(n)))
                .collect::<Vec<_>>()
        };
        let three = s.read(&KvQuery::GetMany {
            keys: keys(&["a", "b", "c"]),
        });
        assert_eq!(
            three,
            Err(Error::TooLarge {
                bytes: 3 * crate::VALUE_BYTES_MAX as u64,
                max: crate::MANY_BYTES_MAX as u64
            })
        );
        let two = s.read(&KvQuery::GetMany {
            keys: keys(&["a", "b"]),
        });
        assert!(matches!(two, Ok(KvOutput::Values(v)) if v.len() == 2));
    }
}
