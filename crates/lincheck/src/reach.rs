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
//! ([`Reach::unreachable`] names a blocked op). This is a necessary condition only (it
//! ignores time and the order of the appends after the prefix), so it never cuts a
//! configuration that has a completion: the search stays complete (no false
//! NotLinearizable), and it stays sound (no false Linearizable) because it only removes
//! branches; Linearizable is still only reported for a full order found and replayed. A cut
//! configuration is marked failed in the memo, which is right since it has no completion,
//! and the dominance of failed configurations over supersets of unknown ops (`Cache`)
//! holds for it as for any other failure. The test depends only on (L, s), as the memo
//! requires. Unknown-outcome writes count as sources while not linearized (they may apply).
//!
//! **Cost.** The rule is applied to every op outside L that needs a value, however far in
//! the future (a read at the end of a burst of appends pins their order from the start),
//! but per distinct value, and only to the values it can fail for: those with no Put / CAS
//! outside L that could start them (*armed* values, kept in a set updated in O(1) per
//! counter change). Of those, values that a pending Append could start are reachable while
//! a Delete is pending or the key is absent. What is left costs a prefix comparison each.
//! The counters (how many writers outside L could start each required value, how many ops
//! outside L need it) are updated on every lift / unlift; a required value with more than
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
    /// Ops outside L that need this value.
    needers_left: u32,
    /// Too many writers to track: never cut.
    untracked: bool,
}

/// A set of required-value ids with O(1) insert, remove and iteration.
#[derive(Default)]
struct IdSet {
    members: Vec<u32>,
}

/// Which armed set a required value is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Armed {
    No,
    /// No Put / CAS and no Append outside L could start it.
    Bare,
    /// No Put / CAS, but some Append outside L could start it.
    ByAppend,
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
    /// `armed[id]` and its slot in the matching set.
    armed: Vec<(Armed, u32)>,
    bare: IdSet,
    by_append: IdSet,
    /// The ops that need each value, in op order (for explanations).
    needers: Vec<Vec<u32>>,
    linearized: Vec<bool>,
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
            armed: Vec::new(),
            bare: IdSet::default(),
            by_append: IdSet::default(),
            needers: Vec::new(),
            linearized: vec![false; ops.len()],
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
                    needers_left: 0,
                    untracked: false,
                });
                reach.needers.push(Vec::new());
            }
            reach.needs[op] = Some(id);
            reach.required[id as usize].needers_left += 1;
            reach.needers[id as usize].push(u32::try_from(op).expect("fits: ops are u32"));
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
        reach.armed = vec![(Armed::No, 0); reach.required.len()];
        for id in 0..reach.required.len() {
            reach.refresh(id as u32);
        }
        reach
    }

    /// Moves required value `id` to the armed set its counters call for.
    fn refresh(&mut self, id: u32) {
        let required = &self.required[id as usize];
        let want = if required.untracked || required.bases_left > 0 || required.needers_left == 0 {
            Armed::No
        } else if required.appends_left == 0 {
            Armed::Bare
        } else {
            Armed::ByAppend
        };
        let (have, slot) = self.armed[id as usize];
        if have == want {
            return;
        }
        match have {
            Armed::No => {}
            Armed::Bare => self.bare.remove(slot, &mut self.armed),
            Armed::ByAppend => self.by_append.remove(slot, &mut self.armed),
        }
        let slot = match want {
            Armed::No => 0,
            Armed::Bare => self.bare.push(id),
            Armed::ByAppend => self.by_append.push(id),
        };
        self.armed[id as usize] = (want, slot);
    }

    /// Op `op` was linearized: it is no longer a possible writer.
    pub(crate) fn lift(&mut self, op: u32) {
        self.update(op, false);
    }

    /// Undoes [`Reach::lift`] of op `op`.
    pub(crate) fn unlift(&mut self, op: u32) {
        self.update(op, true);
    }

    /// Counts op `op` in (`back`) or out of every counter it belongs to.
    fn update(&mut self, op: u32, back: bool) {
        let change = |count: &mut u32| {
            if back {
                *count += 1;
            } else {
                *count -= 1;
            }
        };
        let index = op as usize;
        self.linearized[index] = !back;
        if self.is_delete[index] {
            change(&mut self.deletes_left);
        }
        if let Some(id) = self.needs[index] {
            change(&mut self.required[id as usize].needers_left);
            self.refresh(id);
        }
        for position in 0..self.feeds[index].len() {
            let id = match self.feeds[index][position] {
                Feed::Base(id) => {
                    change(&mut self.required[id as usize].bases_left);
                    id
                }
                Feed::Append(id) => {
                    change(&mut self.required[id as usize].appends_left);
                    id
                }
            };
            self.refresh(id);
        }
    }

    /// An op outside L whose needed value no sequence of the ops outside L can produce from
    /// `state` (see the module docs), if any: then the configuration has no completion.
    pub(crate) fn unreachable(&self, table: &StateTable<'_>, state: StateId) -> Option<u32> {
        let current = table.value(state);
        let absent_reachable = state == StateId::ABSENT || self.deletes_left > 0;
        let bare = self.bare.members.iter();
        // A value an Append outside L could start is reachable via absent when that is.
        let by_append = self.by_append.members.iter().filter(|_| !absent_reachable);
        let dead = bare.chain(by_append).copied().find(|id| {
            let required = &self.required[*id as usize];
            match &required.value {
                None => !absent_reachable,
                Some(value) => {
                    let extends = current.is_some_and(|current| value.starts_with(current));
                    let from_absent = absent_reachable && required.appends_left > 0;
                    !(extends || from_absent)
                }
            }
        })?;
        self.needers[dead as usize]
            .iter()
            .copied()
            .find(|op| !self.linearized[*op as usize])
    }
}

impl IdSet {
    /// Adds `id`, returning its slot.
    fn push(&mut self, id: u32) -> u32 {
        self.members.push(id);
        u32::try_from(self.members.len() - 1).expect("fits: ids are u32")
    }

    /// Removes the member at `slot`, fixing the slot of the member moved into it.
    fn remove(&mut self, slot: u32, armed: &mut [(Armed, u32)]) {
        self.members.swap_remove(slot as usize);
        if let Some(moved) = self.members.get(slot as usize) {
            armed[*moved as usize].1 = slot;
        }
    }
}
