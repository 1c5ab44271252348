//! A time-free refutation: reads of values that no sequence of the key's writes produces.
//!
//! Ignoring time, a key's state is either missing or `base ++ a1 ++ ... ++ ak` where `base`
//! is a Put / CAS value (or nothing, when the first append created the key) and each `ai`
//! is the value of some Append on the key. A completed read of a value that cannot be
//! split that way (or a CAS that swapped from such a value) has no linearization, whatever
//! the timing. This is cheap where the search is expensive: refuting a history with many
//! pending unknown appends can take the search exponential time.
//!
//! Each append op applies at most once, so a value holding one append's bytes more often
//! than there are appends of them (an exactly-once violation) is refuted too.
//!
//! It only ever refutes (a necessary condition, never sufficient), so it cannot turn a
//! linearizable history into a violation. The split is searched with a bounded number of
//! steps per value; giving up counts as producible.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Split attempts per value before giving up (and calling it producible). Values made of
/// unique, self-delimiting pieces split in one attempt per piece.
const SPLIT_STEPS_MAX_PER_VALUE: u64 = 100_000;

use crate::model::{Op, OpResult, Operation, Output, Writes};

/// Byte strings grouped by length, so that matching at a position costs one lookup per
/// distinct length.
#[derive(Default)]
struct ByLength<'h>(BTreeMap<usize, HashSet<&'h [u8]>>);

impl<'h> ByLength<'h> {
    fn insert(&mut self, bytes: &'h [u8]) {
        self.0.entry(bytes.len()).or_default().insert(bytes);
    }

    /// Lengths of the strings that occur in `text` at `at`.
    fn matches_at<'a>(&'a self, text: &'a [u8], at: usize) -> impl Iterator<Item = usize> + 'a {
        self.0
            .iter()
            .filter(move |(len, set)| {
                at + **len <= text.len() && set.contains(&text[at..at + **len])
            })
            .map(|(len, _)| *len)
    }
}

/// The write values of one key, to test which states are producible.
pub(crate) struct Producible<'h> {
    bases: ByLength<'h>,
    appends: ByLength<'h>,
    /// How many append ops carry each value.
    append_counts: HashMap<&'h [u8], usize>,
}

impl<'h> Producible<'h> {
    /// Collects the values written by `ops` (completed or unknown: either may have applied).
    ///
    /// # Panics
    /// If an op writes what the check does not model: call it only where
    /// `Reach::applies` (one key, no [`Writes::Opaque`]).
    pub(crate) fn new(ops: &[&'h Operation]) -> Producible<'h> {
        let mut producible = Producible {
            bases: ByLength::default(),
            appends: ByLength::default(),
            append_counts: HashMap::new(),
        };
        for operation in ops {
            match operation.op.writes() {
                Writes::Base(value) => producible.bases.insert(value),
                Writes::Append(value) => {
                    producible.appends.insert(value);
                    *producible.append_counts.entry(value).or_default() += 1;
                }
                Writes::Nothing | Writes::Delete => {}
                Writes::Opaque => {
                    panic!("lincheck: Producible of a partition it does not apply to")
                }
            }
        }
        producible
    }

    /// Whether some sequence of the writes, each applied at most once, may leave `value`
    /// (true also when the split search gives up).
    pub(crate) fn can_produce(&self, value: &[u8]) -> bool {
        self.can_produce_with_repeats(value) && self.can_split(value)
    }

    /// Whether some sequence of the writes, appends possibly repeated, leaves `value`:
    /// polynomial, and enough to refute values that were never written.
    fn can_produce_with_repeats(&self, value: &[u8]) -> bool {
        // reached[i]: value[..i] is a producible state, or (i = 0) the key was missing and
        // the next append creates it.
        let mut reached = vec![false; value.len() + 1];
        for len in self.bases.matches_at(value, 0) {
            reached[len] = true;
        }
        for at in 0..=value.len() {
            if !reached[at] && at != 0 {
                continue;
            }
            for len in self.appends.matches_at(value, at) {
                reached[at + len] = true;
            }
        }
        reached[value.len()]
    }

    /// Whether `value` splits into a base (or nothing, then at least one append) and
    /// appends used at most as often as they were issued. Depth-first over positions with
    /// an explicit stack (values can hold thousands of pieces).
    fn can_split(&self, value: &[u8]) -> bool {
        let empty_append = self.append_counts.contains_key(&b""[..]);
        if value.is_empty() {
            return self.bases.matches_at(value, 0).next().is_some() || empty_append;
        }
        let mut used: HashMap<&[u8], usize> = HashMap::new();
        let mut steps = 0;
        // Starts: after each base that prefixes the value, and at 0 (key created by an
        // append). A frame is (position, piece lengths still to try there, length taken).
        let starts: Vec<usize> = self.bases.matches_at(value, 0).chain([0]).collect();
        for start in starts {
            let mut stack: Vec<(usize, Vec<usize>, usize)> =
                vec![(start, self.pieces_at(value, start), 0)];
            while let Some((at, pieces, _)) = stack.last_mut() {
                steps += 1;
                if steps > SPLIT_STEPS_MAX_PER_VALUE {
                    return true;
                }
                if *at == value.len() {
                    return true;
                }
                let at = *at;
                match pieces.pop() {
                    Some(len) => {
                        let piece = &value[at..at + len];
                        let count = used.entry(piece).or_default();
                        if *count < self.append_counts[piece] {
                            *count += 1;
                            stack.last_mut().expect("frame").2 = len;
                            stack.push((at + len, self.pieces_at(value, at + len), 0));
                        }
                    }
                    None => {
                        stack.pop();
                        if let Some((from, _, taken)) = stack.last() {
                            *used
                                .get_mut(&value[*from..*from + *taken])
                                .expect("piece in use") -= 1;
                        }
                    }
                }
            }
        }
        false
    }

    /// Lengths of the non-empty append values found in `value` at `at`.
    fn pieces_at(&self, value: &[u8], at: usize) -> Vec<usize> {
        self.appends
            .matches_at(value, at)
            .filter(|len| *len > 0)
            .collect()
    }

    /// The first (in `ops` order) completed operation that requires an unproducible state:
    /// a read of it, or a CAS that swapped from it.
    pub(crate) fn first_impossible(&self, ops: &[&Operation]) -> Option<usize> {
        let mut checked: HashSet<&[u8]> = HashSet::new();
        ops.iter().position(|operation| {
            let needed = match (&operation.op, &operation.result) {
                (
                    _,
                    OpResult::Ok {
                        output: Output::Get(Some(value)),
                        ..
                    },
                ) => value,
                (
                    Op::Cas {
                        expected: Some(value),
                        ..
                    },
                    OpResult::Ok {
                        output: Output::Cas { swapped: true },
                        ..
                    },
                ) => value,
                _ => return false,
            };
            !checked.contains(needed.as_slice()) && {
                checked.insert(needed);
                !self.can_produce(needed)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(op: Op) -> Operation {
        Operation {
            client: 0,
            op,
            call_ns: 0,
            result: OpResult::Unknown,
        }
    }

    #[test]
    fn values_are_split_into_a_base_and_appends() {
        // Goal: exactly the time-free reachable states; method: puts "ab", appends "c", "".
        let key = b"k".to_vec();
        let ops = [
            write(Op::Put {
                key: key.clone(),
                value: b"ab".to_vec(),
            }),
            write(Op::Append {
                key: key.clone(),
                value: b"c".to_vec(),
            }),
        ];
        let refs: Vec<&Operation> = ops.iter().collect();
        let producible = Producible::new(&refs);
        for value in ["ab", "abc", "c"] {
            assert!(producible.can_produce(value.as_bytes()), "{value}");
        }
        for value in ["", "a", "b", "cab", "abd", "abcc"] {
            assert!(!producible.can_produce(value.as_bytes()), "{value}");
        }
        let with_empty = [write(Op::Append { key, value: vec![] })];
        let refs: Vec<&Operation> = with_empty.iter().collect();
        assert!(Producible::new(&refs).can_produce(b""));
    }

    #[test]
    fn each_append_counts_at_most_once() {
        // Goal: duplicated appends are refuted; method: one "c" op, two "c" ops, and
        // ambiguous pieces that need backtracking.
        let key = b"k".to_vec();
        let append = |v: &str| {
            write(Op::Append {
                key: key.clone(),
                value: v.as_bytes().to_vec(),
            })
        };
        let once = [append("c")];
        let refs: Vec<&Operation> = once.iter().collect();
        assert!(Producible::new(&refs).can_produce(b"c"));
        assert!(!Producible::new(&refs).can_produce(b"cc"));
        let twice = [append("c"), append("c")];
        let refs: Vec<&Operation> = twice.iter().collect();
        assert!(Producible::new(&refs).can_produce(b"cc"));
        assert!(!Producible::new(&refs).can_produce(b"ccc"));
        let ambiguous = [append("a"), append("ab"), append("b"), append("ba")];
        let refs: Vec<&Operation> = ambiguous.iter().collect();
        let producible = Producible::new(&refs);
        assert!(producible.can_produce(b"abab"), "ab + a + b");
        assert!(producible.can_produce(b"ababa"), "ab + a + ba");
        assert!(!producible.can_produce(b"aaa"));
    }
}
