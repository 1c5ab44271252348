//! The sequential semantics of every operation, written once over any store of keys.
//!
//! The same rules as `shardkv_kv::KvStore::execute` and `read` (this crate does not depend
//! on the store: the model is the specification the store is checked against). A state is
//! anything that implements [`KeyValues`]: one register (`Option<Vec<u8>>`, every key
//! being that register), a map, or the checker's interned tuple of a component's values.

use std::collections::BTreeMap;

use crate::model::{Op, Output, SetWhen};

/// The largest value, in bytes (`shardkv_kv::VALUE_BYTES_MAX`): an Append or AppendLen
/// whose result would pass it answers [`Output::TooLarge`] and changes nothing. (The store
/// answers that only within a pipeline and refuses a lone one, which then is not in a
/// history: either way it changed nothing.)
pub const VALUE_BYTES_MAX: usize = 1 << 20;

/// A store of keys the semantics read and write.
pub trait KeyValues {
    /// The value of `key`, `None` if it is missing.
    fn value(&self, key: &[u8]) -> Option<&[u8]>;
    /// Sets `key` to `value`, creating it.
    fn put(&mut self, key: &[u8], value: Vec<u8>);
    /// Removes `key`, answering the value it had.
    fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>>;
}

/// One key's register: every key names it.
impl KeyValues for Option<Vec<u8>> {
    fn value(&self, _: &[u8]) -> Option<&[u8]> {
        self.as_deref()
    }

    fn put(&mut self, _: &[u8], value: Vec<u8>) {
        *self = Some(value);
    }

    fn remove(&mut self, _: &[u8]) -> Option<Vec<u8>> {
        self.take()
    }
}

impl KeyValues for BTreeMap<Vec<u8>, Vec<u8>> {
    fn value(&self, key: &[u8]) -> Option<&[u8]> {
        self.get(key).map(Vec::as_slice)
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.insert(key.to_vec(), value);
    }

    fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        BTreeMap::remove(self, key)
    }
}

/// The value of `b` if it is a 64-bit integer in canonical decimal: an optional `-`, then
/// digits with no leading zero (`0` alone is zero); no `+`, no spaces, no `-0`. Redis's rule
/// (`string2ll`), as `shardkv_kv::parse_canonical_i64`.
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

impl Op {
    /// The sequential specification: applies the op to `store` and returns what a
    /// sequential execution outputs.
    pub fn apply_to<S: KeyValues>(&self, store: &mut S) -> Output {
        let found = |store: &S, key: &[u8]| store.value(key).map(<[u8]>::to_vec);
        match self {
            Op::Get { key } => Output::Get(found(store, key)),
            Op::Put { key, value } => {
                store.put(key, value.clone());
                Output::Put
            }
            Op::Append { key, value } | Op::AppendLen { key, value }
                if store.value(key).map_or(0, <[u8]>::len) + value.len() > VALUE_BYTES_MAX =>
            {
                Output::TooLarge
            }
            Op::Append { key, value } => {
                append(store, key, value);
                Output::Append
            }
            Op::Delete { key } => Output::Deleted {
                existed: store.remove(key).is_some(),
            },
            Op::Cas { key, expected, new } => {
                let swapped = store.value(key) == expected.as_deref();
                if swapped {
                    store.put(key, new.clone());
                }
                Output::Cas { swapped }
            }
            Op::Set {
                key,
                value,
                when,
                get,
            } => {
                let old = found(store, key);
                let applied = match when {
                    SetWhen::Always => true,
                    SetWhen::Absent => old.is_none(),
                    SetWhen::Present => old.is_some(),
                };
                if applied {
                    store.put(key, value.clone());
                }
                Output::Set {
                    applied,
                    old: old.filter(|_| *get),
                }
            }
            Op::GetDel { key } => Output::Get(store.remove(key)),
            Op::AppendLen { key, value } => Output::Int(to_i64(append(store, key, value))),
            Op::IncrBy { key, by } => {
                let now = match store.value(key) {
                    None => 0,
                    Some(v) => match parse_canonical_i64(v) {
                        Some(n) => n,
                        None => return Output::NotAnInteger,
                    },
                };
                match now.checked_add(*by) {
                    Some(sum) => {
                        store.put(key, sum.to_string().into_bytes());
                        Output::Int(sum)
                    }
                    None => Output::Overflow,
                }
            }
            Op::StrLen { key } => Output::Int(to_i64(store.value(key).map_or(0, <[u8]>::len))),
            Op::DeleteMany { keys } => Output::Int(to_i64(
                keys.iter()
                    .filter(|key| store.remove(key).is_some())
                    .count(),
            )),
            Op::PutMany { pairs } => {
                for (key, value) in pairs {
                    store.put(key, value.clone());
                }
                Output::Put
            }
            Op::GetMany { keys } => {
                Output::Values(keys.iter().map(|key| found(store, key)).collect())
            }
            Op::Exists { keys } => Output::Int(to_i64(
                keys.iter().filter(|key| store.value(key).is_some()).count(),
            )),
            Op::Pipeline { ops } => {
                Output::Outputs(ops.iter().map(|op| op.apply_to(store)).collect())
            }
        }
    }
}

/// Appends `value` to the key's value (creating it); answers the new length.
fn append<S: KeyValues>(store: &mut S, key: &[u8], value: &[u8]) -> usize {
    let mut now = store.value(key).map(<[u8]>::to_vec).unwrap_or_default();
    now.extend_from_slice(value);
    let len = now.len();
    store.put(key, now);
    len
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).expect("lengths and counts fit in i64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn only_the_canonical_form_reads_as_an_integer() {
        // Goal: Redis's integer rule; method: edge cases either side of it.
        let p = parse_canonical_i64;
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
            b"1.0",
            b"9223372036854775808",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn redis_operations_follow_the_store_semantics() {
        // Goal: each new op as the store executes it; method: run them on a map.
        let mut m = BTreeMap::new();
        let set = |when, get| Op::Set {
            key: k("a"),
            value: k("v"),
            when,
            get,
        };
        let applied = |applied, old: Option<&str>| Output::Set {
            applied,
            old: old.map(k),
        };
        assert_eq!(
            set(SetWhen::Present, true).apply_to(&mut m),
            applied(false, None)
        );
        assert_eq!(
            set(SetWhen::Absent, true).apply_to(&mut m),
            applied(true, None)
        );
        assert_eq!(
            set(SetWhen::Absent, true).apply_to(&mut m),
            applied(false, Some("v"))
        );
        assert_eq!(
            set(SetWhen::Always, false).apply_to(&mut m),
            applied(true, None)
        );
        let incr = |by| Op::IncrBy { key: k("n"), by };
        assert_eq!(incr(5).apply_to(&mut m), Output::Int(5));
        assert_eq!(incr(i64::MAX).apply_to(&mut m), Output::Overflow);
        assert_eq!(
            m.value(b"n"),
            Some(&b"5"[..]),
            "an overflow changes nothing"
        );
        assert_eq!(
            Op::IncrBy { key: k("a"), by: 1 }.apply_to(&mut m),
            Output::NotAnInteger
        );
        let append = Op::AppendLen {
            key: k("a"),
            value: k("xy"),
        };
        assert_eq!(append.apply_to(&mut m), Output::Int(3));
        assert_eq!(Op::StrLen { key: k("zz") }.apply_to(&mut m), Output::Int(0));
        let keys = vec![k("a"), k("a"), k("zz"), k("n")];
        assert_eq!(
            Op::Exists { keys: keys.clone() }.apply_to(&mut m),
            Output::Int(3),
            "a key named twice counts twice"
        );
        assert_eq!(
            Op::GetMany {
                keys: vec![k("n"), k("zz")]
            }
            .apply_to(&mut m),
            Output::Values(vec![Some(k("5")), None])
        );
        assert_eq!(
            Op::DeleteMany { keys }.apply_to(&mut m),
            Output::Int(2),
            "a key named twice is removed once"
        );
        let pairs = vec![(k("p"), k("1")), (k("p"), k("2"))];
        assert_eq!(Op::PutMany { pairs }.apply_to(&mut m), Output::Put);
        assert_eq!(
            Op::GetDel { key: k("p") }.apply_to(&mut m),
            Output::Get(Some(k("2")))
        );
        assert!(m.is_empty());
    }
}
