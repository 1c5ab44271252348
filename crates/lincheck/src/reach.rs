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
//! **The whole-value rule (chains).** The prefix rule only asks whether v can *start*;
//! in each case above the rest of v must also be a concatenation of Appends outside L,
//! each at most once. Seed 521 needed this: an append called early but seen only in a later
//! read "P X" after a Put P was placed first (call order); P still pending, the prefix rule
//! never looked at v, and the search tried every order of a burst of 14 unread appends
//! before the next Put (33.9M steps) before undoing it. For a non-empty v, take as *starts*
//! 0 and the end of every Put / CAS value that prefixes v. When the split of v from every
//! start is forced (at each position at most one non-empty Append value matches) and all
//! starts from which it reaches the end lie on one path of positions (v is *chained*, see
//! [`Chain`]), the split after any start on the path is that path's suffix, so with D the
//! largest end of a path edge whose value has no Append outside L (*dead*), v is reachable
//! from start x on the path iff x >= D. Then v is reachable only if one of:
//! - (a) no reset: s is a prefix of v and |s| >= D (if |s| is off the path: assumed true);
//! - (b) a Put / CAS outside L writes a prefix p of v with |p| on the path and |p| >= D;
//! - (c) from absent (s absent, or a Delete outside L): 0 is on the path and D = 0.
//!
//! Soundness: by the case analysis above, a completion's value at the needer's point is
//! s ++ w, p ++ w or w (w made of Appends outside L, empty appends changing nothing), and
//! a split of w from a path position follows the path, all its edges live: one of (a)-(c)
//! holds. Empty appends, the counts of equal values and time are ignored, which only makes
//! the condition weaker. A value whose splits branch or form two paths is not chained and
//! keeps the prefix rule. D is kept exact under lift / unlift with a log of deaths, undone
//! in LIFO order. Chained values imply the prefix rule, so they are tested by (a)-(c) only.
//! The property test `agrees_with_brute_force_on_chained_value_histories` covers bases
//! ending inside a value, duplicated and ambiguous appends, and refuted histories.
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

use crate::model::{Op, OpResult, Operation, Output, Writes};
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
    /// Too many writers to track: never cut (by the prefix rule).
    untracked: bool,
    /// The whole-value rule's data, when the value is chained (see [`Chain`]); such a value
    /// is tested by that rule only, which implies the prefix rule.
    chain: Option<Chain>,
}

/// A required value `v` whose possible splits after a reset form a single path of append
/// values (the *chained* case, see the module docs): positions of `v` from which the rest
/// of `v` splits into non-empty append values, each split being forced.
///
/// Invariant: `dead_end` is the largest end of an edge whose `live` count is 0 (0 if none),
/// given that every op was lifted / unlifted through [`Reach`].
struct Chain {
    /// The positions of the path, ascending, the last one `v.len()`: from each, exactly one
    /// non-empty append value matches `v`, and taking it leads to the next.
    path: Vec<u32>,
    /// `(end, live)` of each edge of the path, in order: `v[start..end]` is an append value
    /// and `live` counts the Appends outside L that carry it.
    edges: Vec<(u32, u32)>,
    /// `(end, live)` of each distinct Put / CAS value that is a prefix of `v` ending on the
    /// path: `live` counts the writers of that value outside L.
    bases: Vec<(u32, u32)>,
    /// Whether position 0 is on the path (the value can be built by appends from absent).
    from_zero: bool,
    dead_end: u32,
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
    /// Chained, and no Put / CAS outside L leads to it by live appends.
    Chained,
}

/// How an op feeds a required value.
#[derive(Clone, Copy)]
enum Feed {
    Base(u32),
    Append(u32),
    /// Carries the value of edge `.1` of chained value `.0`.
    Edge(u32, u32),
    /// Writes the base `.1` of chained value `.0`.
    ChainBase(u32, u32),
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
    chained: IdSet,
    /// `(id, dead_end before)` for each edge that died, most recent last: edges die and
    /// revive in LIFO order (lift / unlift are), so a revival pops its own entry.
    dead_log: Vec<(u32, u32)>,
    /// The ops that need each value, in op order (for explanations).
    needers: Vec<Vec<u32>>,
    linearized: Vec<bool>,
}

impl Reach {
    /// Whether the look-ahead applies to a partition of `ops`: one key, and no op whose
    /// writes it does not model ([`Writes::Opaque`]). Where it does not, the partition's
    /// search goes without it ([`Reach::new`] with `applies` false), which only costs time.
    pub(crate) fn applies(ops: &[&Operation]) -> bool {
        let key = ops.first().map(|o| o.op.key());
        ops.iter()
            .all(|o| o.op.writes() != Writes::Opaque && o.op.keys().all(|k| Some(k) == key))
    }

    /// Indexes the ops of one partition (indexes as in the search); with `applies` false
    /// (see [`Reach::applies`]) tracks nothing and never cuts.
    pub(crate) fn new(ops: &[&Operation], applies: bool) -> Reach {
        let mut reach = Reach {
            needs: vec![None; ops.len()],
            required: Vec::new(),
            feeds: vec![Vec::new(); ops.len()],
            is_delete: vec![false; ops.len()],
            deletes_left: 0,
            armed: Vec::new(),
            bare: IdSet::default(),
            by_append: IdSet::default(),
            chained: IdSet::default(),
            dead_log: Vec::new(),
            needers: Vec::new(),
            linearized: vec![false; ops.len()],
        };
        if !applies {
            return reach;
        }
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
                    chain: None,
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
            let (value, is_base) = match (operation.op.writes(), &operation.result) {
                (
                    _,
                    OpResult::Ok {
                        output: Output::Cas { swapped: false },
                        ..
                    },
                ) => continue,
                (Writes::Base(value), _) => (value, true),
                (Writes::Append(value), _) => (value, false),
                (Writes::Delete, _) => {
                    reach.is_delete[op] = true;
                    reach.deletes_left += 1;
                    continue;
                }
                (Writes::Nothing, _) => continue,
                (Writes::Opaque, _) => unreachable!("checked by Reach::applies"),
            };
            writers.entry(value).or_default().push((op, is_base));
            lengths.insert(value.len(), ());
        }
        let appends = AppendValues::new(ops);
        let mut edges_total = 0;
        for (id, required) in (0u32..).zip(reach.required.iter_mut()) {
            let Some(value) = &required.value else {
                continue;
            };
            if edges_total < CHAIN_EDGES_MAX
                && let Some(chain) = Chain::new(value, &appends, &writers, &lengths)
            {
                edges_total += chain.edges.len();
                for (index, (start, end)) in (0u32..).zip(chain.spans()) {
                    for op in &appends.ops[&value[start as usize..end as usize]] {
                        reach.feeds[*op].push(Feed::Edge(id, index));
                    }
                }
                for (index, (end, _)) in (0u32..).zip(&chain.bases) {
                    for (op, is_base) in &writers[&value[..*end as usize]] {
                        if *is_base {
                            reach.feeds[*op].push(Feed::ChainBase(id, index));
                        }
                    }
                }
                required.chain = Some(chain);
                continue;
            }
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
        let want = if let Some(chain) = &required.chain {
            if required.needers_left > 0 && !chain.base_leads() {
                Armed::Chained
            } else {
                Armed::No
            }
        } else if required.untracked || required.bases_left > 0 || required.needers_left == 0 {
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
            Armed::Chained => self.chained.remove(slot, &mut self.armed),
        }
        let slot = match want {
            Armed::No => 0,
            Armed::Bare => self.bare.push(id),
            Armed::ByAppend => self.by_append.push(id),
            Armed::Chained => self.chained.push(id),
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
        // Reverse order when counting back in, so that edges revive in the reverse order
        // of their deaths, as `dead_log` needs.
        for step in 0..self.feeds[index].len() {
            let position = if back {
                self.feeds[index].len() - 1 - step
            } else {
                step
            };
            let id = match self.feeds[index][position] {
                Feed::Base(id) => {
                    change(&mut self.required[id as usize].bases_left);
                    id
                }
                Feed::Append(id) => {
                    change(&mut self.required[id as usize].appends_left);
                    id
                }
                Feed::ChainBase(id, base) => {
                    let chain = self.required[id as usize].chain.as_mut().expect("chained");
                    change(&mut chain.bases[base as usize].1);
                    id
                }
                Feed::Edge(id, edge) => {
                    let chain = self.required[id as usize].chain.as_mut().expect("chained");
                    let (end, live) = &mut chain.edges[edge as usize];
                    change(live);
                    match (*live, back) {
                        (0, false) => {
                            self.dead_log.push((id, chain.dead_end));
                            chain.dead_end = chain.dead_end.max(*end);
                        }
                        (1, true) => {
                            let (logged, dead_end) = self.dead_log.pop().expect("logged death");
                            debug_assert_eq!(logged, id, "edges revive in LIFO order");
                            chain.dead_end = dead_end;
                        }
                        _ => continue,
                    }
                    id
                }
            };
            self.refresh(id);
        }
    }

    /// An op outside L whose needed value no sequence of the ops outside L can produce from
    /// `state` (see the module docs), if any: then the configuration has no completion.
    pub(crate) fn unreachable(&self, table: &StateTable<'_>, state: StateId) -> Option<u32> {
        if self.required.is_empty() {
            return None;
        }
        let current = table.value(state);
        let absent_reachable = state == StateId::ABSENT || self.deletes_left > 0;
        let bare = self.bare.members.iter();
        // A value an Append outside L could start is reachable via absent when that is.
        let by_append = self.by_append.members.iter().filter(|_| !absent_reachable);
        let chained = self.chained.members.iter().copied().filter(|id| {
            let required = &self.required[*id as usize];
            let chain = required.chain.as_ref().expect("chained");
            let value = required
                .value
                .as_deref()
                .expect("chained values are present");
            !chain.reachable(value, current, absent_reachable)
        });
        let dead = chained
            .chain(bare.chain(by_append).copied().filter(|id| {
                let required = &self.required[*id as usize];
                match &required.value {
                    None => !absent_reachable,
                    Some(value) => {
                        let extends = current.is_some_and(|current| value.starts_with(current));
                        let from_absent = absent_reachable && required.appends_left > 0;
                        !(extends || from_absent)
                    }
                }
            }))
            .next()?;
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

/// Edges of all chained values together, at most: bounds memory (a value read late in a
/// long run of appends holds thousands of them); past it values use the prefix rule only.
const CHAIN_EDGES_MAX: usize = 1 << 22;

/// The non-empty Append values of a partition, to split required values.
struct AppendValues<'h> {
    /// The ops carrying each value.
    ops: HashMap<&'h [u8], Vec<usize>>,
    /// The distinct lengths of the values, ascending.
    lengths: Vec<usize>,
}

impl<'h> AppendValues<'h> {
    fn new(ops: &[&'h Operation]) -> AppendValues<'h> {
        let mut values = AppendValues {
            ops: HashMap::new(),
            lengths: Vec::new(),
        };
        for (op, operation) in ops.iter().enumerate() {
            if let Writes::Append(value) = operation.op.writes()
                && !value.is_empty()
            {
                values.ops.entry(value).or_default().push(op);
            }
        }
        let mut lengths: Vec<usize> = values.ops.keys().map(|v| v.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        values.lengths = lengths;
        values
    }

    /// The end of the one Append value that matches `value` at `at`: `Ok(None)` if none
    /// does, `Err(())` if several do (the split would branch).
    fn next(&self, value: &[u8], at: usize) -> Result<Option<usize>, ()> {
        let mut found = None;
        for len in self
            .lengths
            .iter()
            .take_while(|len| at + **len <= value.len())
        {
            if self.ops.contains_key(&value[at..at + len]) {
                if found.is_some() {
                    return Err(());
                }
                found = Some(at + len);
            }
        }
        Ok(found)
    }
}

impl Chain {
    /// The chain of a non-empty required `value`, if its splits are a single path: from
    /// every *start* (0, and the end of each Put / CAS value that is a prefix of `value`)
    /// the split into non-empty Append values is forced (one value matches at each
    /// position), and the starts from which it reaches the end all lie on one path.
    /// `writers` / `lengths` are the writers by value and their lengths, as in
    /// [`Reach::new`].
    fn new(
        value: &[u8],
        appends: &AppendValues<'_>,
        writers: &HashMap<&[u8], Vec<(usize, bool)>>,
        lengths: &BTreeMap<usize, ()>,
    ) -> Option<Chain> {
        if value.is_empty() {
            return None;
        }
        // Starts, ascending: 0 and the ends of the base values that prefix `value`.
        let mut starts = vec![0usize];
        let mut base_lives = Vec::new();
        for len in lengths.keys().take_while(|len| **len <= value.len()) {
            let bases = writers
                .get(&value[..*len])
                .map_or(0, |w| w.iter().filter(|(_, is_base)| *is_base).count());
            if bases > 0 {
                base_lives.push((*len, bases));
                if *len > 0 {
                    starts.push(*len);
                }
            }
        }
        // The path from the smallest start that reaches the end; every other start that
        // reaches the end must be on it.
        let mut path: Vec<u32> = Vec::new();
        let mut edges: Vec<(u32, u32)> = Vec::new();
        for start in starts.iter().copied() {
            if path.binary_search(&to_u32(start)).is_ok() {
                continue;
            }
            let mut walk = vec![to_u32(start)];
            let mut walk_edges = Vec::new();
            let mut at = start;
            while at < value.len() {
                match appends.next(value, at) {
                    Err(()) => return None,
                    Ok(None) => break,
                    Ok(Some(end)) => {
                        let live = appends.ops[&value[at..end]].len();
                        walk_edges.push((to_u32(end), to_u32(live)));
                        walk.push(to_u32(end));
                        at = end;
                    }
                }
            }
            if at < value.len() {
                continue; // This start never reaches the value.
            }
            if !path.is_empty() {
                return None; // A second path: the rule would need one per path.
            }
            path = walk;
            edges = walk_edges;
        }
        if path.is_empty() {
            // No split at all; the time-free check refutes such reads, and the prefix rule
            // handles a Put of the whole value.
            return None;
        }
        let bases = base_lives
            .into_iter()
            .filter(|(end, _)| path.binary_search(&to_u32(*end)).is_ok())
            .map(|(end, live)| (to_u32(end), to_u32(live)))
            .collect();
        Some(Chain {
            from_zero: path[0] == 0,
            path,
            edges,
            bases,
            dead_end: 0,
        })
    }

    /// `(start, end)` of each edge.
    fn spans(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.path
            .iter()
            .copied()
            .zip(self.edges.iter().map(|e| e.0))
    }

    /// Whether a Put / CAS outside L writes a prefix of the value from which live appends
    /// lead to its end (rule (b) of the module docs).
    fn base_leads(&self) -> bool {
        self.bases
            .iter()
            .any(|(end, live)| *live > 0 && *end >= self.dead_end)
    }

    /// Whether the value can be reached from `current` without a Put / CAS (rules (a) and
    /// (c) of the module docs): by live appends from the current value, or from absent.
    fn reachable(&self, value: &[u8], current: Option<&[u8]>, absent_reachable: bool) -> bool {
        if absent_reachable && self.from_zero && self.dead_end == 0 {
            return true;
        }
        let Some(current) = current else {
            return false;
        };
        let len = to_u32(current.len());
        // Off the path: the rest of the split is not indexed; assume reachable.
        let on_path = self.path.binary_search(&len).is_ok();
        value.starts_with(current) && (len >= self.dead_end || !on_path)
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("lincheck: value over 4 GiB")
}
