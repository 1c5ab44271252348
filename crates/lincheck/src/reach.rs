//! A time-free look-ahead: can the values that pending reads saw still be produced?
//!
//! **Why.** A key's state after appends spells out the order of every append since the last
//! Put / Delete / swapping CAS. Two orders of the same appends are different states, so
//! the memo cannot merge them, and an order that contradicts a read returning later is only
//! found dead when that read's return is reached. With k appends pending in between, the
//! search walks through every ordered subset of them first: exponential in k. Real
//! histories with 7 clients appending to one key do this (the simulator's seed 18).
//!
//! **The rule.** In a configuration (linearized set L, state s), every completed op that is
//! not in L must still be linearized, at a point where the state is reached from s by
//! applying some of the ops outside L, each at most once. A read needs its value there, and
//! so does a CAS that swapped (its expected value). Let v be that value and consider the
//! last op before that point, in the completion, that *resets* the value (a Put, a swapping
//! CAS or a Delete); after it only Appends ran (they only extend a value, or create it from
//! absent):
//! - no reset: v = s ++ appends, so s is present and a prefix of v, or s is absent and v
//!   is absent or starts with the value of an Append outside L;
//! - a Put or CAS outside L with new value p: v starts with p;
//! - a Delete outside L: v is absent or starts with the value of an Append outside L.
//!
//! If none of these can hold, the configuration has no completion and is cut
//! ([`Reach::reachable`] is false). This is a necessary condition only (it ignores time and
//! the order of the appends after the prefix), so it never cuts a configuration that has a
//! completion: the search stays complete, and it stays sound because it only removes
//! branches. Unknown-outcome writes count as sources while not linearized (they may apply).
//!
//! **Cost.** Only the candidates of a level are tested (the ops called before the first
//! remaining return, which the search scans anyway), each with one prefix comparison and a
//! few counters. The counters (how many writers outside L could start each required value)
//! are updated on every lift / unlift; a required value with more than
//! [`WRITERS_TRACKED_MAX`] possible writers is simply never tested, which only gives up
//! pruning, never correctness.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Op, OpResult, Operation, Output};
use crate::states::{StateId, StateTable};

/// Writers (Puts, CAS and Appends whose value is a prefix) tracked per required value;
/// beyond this a value is assumed always reachable (bounds memory and time per step).
const WRITERS_TRACKED_MAX: usize = 64;

/// One distinct value required by some read or swapping CAS.
struct Required {
    /// `None`: the key must be missing.
    value: Option<Vec<u8>>,
    /// Puts / CAS outside L whose new value is a prefix of `value`.
    bases_left: u32,
    /// Appends outside L whose value is a prefix of `value`.
    appends_left: u32,
    /// Too many writers to track: never cut.
    untracked: bool,
}

/// How an op feeds a required value.
#[derive(Clone, Copy)]
enum Feed {
    Base(u32),
    Append(u32),
}

/// The look-ahead state of one partition's search (see the module docs).
///
/// Invariant: the counters count exactly the ops that are not linearized, given that every
/// op was lifted / unlifted through [`Reach::lift`] / [`Reach::unlift`].
pub(crate) struct Reach {
    /// `needs[op]`: the required value op `op` must find at its point, if any.
    needs: Vec<Option<u32>>,
    required: Vec<Required>,
    /// `feeds[op]`: the required values whose counters op `op` is part of.
    feeds: Vec<Vec<Feed>>,
    is_delete: Vec<bool>,
    deletes_left: u32,
}

impl Reach {
    /// Indexes the ops of one partition (indexes as in the search).
    pub(crate) fn new(ops: &[&Operation]) -> Reach {
        let mut reach = Reach {
            needs: vec![None; ops.len()],
            required: Vec::new(),
            feeds: vec![Vec::new(); ops.len()],
            is_delete: vec![false; ops.len()],
            deletes_left: 0,
        };
        let mut ids: HashMap<Option<&[u8]>, u32> = HashMap::new();
        for (op, operation) in ops.iter().enumerate() {
            let needed = match (&operation.op, &operation.result) {
                (
                    _,
                    OpResult::Ok {
                        output: Output::Get(value),
                        ..
                    },
                ) => value.as_deref(),
                (
                    Op::Cas { expected, .. },
                    OpResult::Ok {
                        output: Output::Cas { swapped: true },
                        ..
                    },
                ) => expected.as_deref(),
                _ => continue,
            };
            let next = u32::try_from(ids.len()).expect("lincheck: over 2^32 values");
            let id = *ids.entry(needed).or_insert(next);
            if id == next {
                reach.required.push(Required {
                    value: needed.map(<[u8]>::to_vec),
                    bases_left: 0,
                    appends_left: 0,
                    untracked: false,
                });
            }
            reach.needs[op] = Some(id);
        }
        // Writers by value, and the distinct lengths of those values: a required value's
        // possible writers are found with one lookup per length.
        let mut writers: HashMap<&[u8], Vec<(usize, bool)>> = HashMap::new();
        let mut lengths: BTreeMap<usize, ()> = BTreeMap::new();
        for (op, operation) in ops.iter().enumerate() {
            let (value, is_base) = match (&operation.op, &operation.result) {
                (Op::Put { value, .. }, _) => (value, true),
                (Op::Append { value, .. }, _) => (value, false),
                (
                    Op::Cas { .. },
                    OpResult::Ok {
                        output: Output::Cas { swapped: false },
                        ..
                    },
                ) => continue,
                (Op::Cas { new, .. }, _) => (new, true),
                (Op::Delete { .. }, _) => {
                    reach.is_delete[op] = true;
                    reach.deletes_left += 1;
                    continue;
                }
                (Op::Get { .. }, _) => continue,
            };
            writers
                .entry(value.as_slice())
                .or_default()
                .push((op, is_base));
            lengths.insert(value.len(), ());
        }
        for (id, required) in (0u32..).zip(reach.required.iter_mut()) {
            let Some(value) = &required.value else {
                continue;
            };
            let mut found: Vec<(usize, bool)> = Vec::new();
            for len in lengths.keys().take_while(|len| **len <= value.len()) {
                if let Some(ops) = writers.get(&value[..*len]) {
                    found.extend_from_slice(ops);
                }
                if found.len() > WRITERS_TRACKED_MAX {
                    break;
                }
            }
            if found.len() > WRITERS_TRACKED_MAX {
                required.untracked = true;
                continue;
            }
            for (op, is_base) in found {
                if is_base {
                    required.bases_left += 1;
                    reach.feeds[op].push(Feed::Base(id));
                } else {
                    required.appends_left += 1;
                    reach.feeds[op].push(Feed::Append(id));
                }
            }
        }
        reach
    }

    /// Op `op` was linearized: it is no longer a possible writer.
    pub(crate) fn lift(&mut self, op: u32) {
        let op = op as usize;
        self.deletes_left -= u32::from(self.is_delete[op]);
        for feed in &self.feeds[op] {
            match *feed {
                Feed::Base(id) => self.required[id as usize].bases_left -= 1,
                Feed::Append(id) => self.required[id as usize].appends_left -= 1,
            }
        }
    }

    /// Undoes [`Reach::lift`] of op `op`.
    pub(crate) fn unlift(&mut self, op: u32) {
        let op = op as usize;
        self.deletes_left += u32::from(self.is_delete[op]);
        for feed in &self.feeds[op] {
            match *feed {
                Feed::Base(id) => self.required[id as usize].bases_left += 1,
                Feed::Append(id) => self.required[id as usize].appends_left += 1,
            }
        }
    }

    /// False only if op `op` (not linearized) needs a value that no sequence of the ops not
    /// linearized can produce from `state`: then the configuration has no completion.
    pub(crate) fn reachable(&self, table: &StateTable<'_>, state: StateId, op: u32) -> bool {
        let Some(id) = self.needs[op as usize] else {
            return true;
        };
        let required = &self.required[id as usize];
        if required.untracked || required.bases_left > 0 {
            return true;
        }
        let absent_reachable = state == StateId::ABSENT || self.deletes_left > 0;
        match (&required.value, table.value(state)) {
            (None, _) => absent_reachable,
            (Some(value), current) => {
                current.is_some_and(|current| value.starts_with(current))
                    || (absent_reachable && required.appends_left > 0)
            }
        }
    }
}
