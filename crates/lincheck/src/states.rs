//! Interned states and the compiled step function of one partition.
//!
//! The search compares and hashes states at every step, and values can be long (appends
//! grow them), so every distinct state gets a small id. Equal ids mean equal states, so the
//! search never compares values, and a step is an integer comparison except for Append,
//! whose result is memoized per (state, op), and the Redis-era ops, which run the model
//! (`semantics`) once per (state, op) and are memoized the same way.
//!
//! A partition of one key has the key's value as its state: a state id is a value id. A
//! partition of several keys (joined by multi-key ops) has the tuple of its keys' value ids
//! as its state, interned in turn; every op there runs the model.

use std::collections::HashMap;

use crate::model::{Op, OpResult, Operation, Output, show_bytes, show_state};
use crate::semantics::{KeyValues, VALUE_BYTES_MAX};

/// Id of an interned state. Invariant: `StateId::ABSENT` is the initial state (every key
/// missing); in a one-key partition every other id names one distinct byte string of its
/// [`StateTable`], in a partition of several keys one distinct tuple of value ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StateId(u32);

impl StateId {
    /// The missing key (every key missing), which is also the initial state.
    pub(crate) const ABSENT: StateId = StateId(0);

    pub(crate) fn as_u64(self) -> u64 {
        u64::from(self.0)
    }
}

/// One operation reduced to what its step needs, with every constant value interned.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A completed read: allowed only in state `seen`.
    Get { seen: StateId },
    /// Put (any outcome): moves to `to`.
    Put { to: StateId },
    /// Append (any outcome): moves to the current value followed by the op's value.
    Append,
    /// Delete: moves to absent; `existed` (when the answer says) is allowed only in a
    /// present (`true`) or absent (`false`) state.
    Delete { existed: Option<bool> },
    /// CAS: swaps to `new` iff the state is `expected`; `swapped` is `None` when the
    /// outcome is unknown (both branches are allowed).
    Cas {
        expected: StateId,
        new: StateId,
        swapped: Option<bool>,
    },
    /// Any other op, and every op of a partition of several keys: runs the model.
    Model,
}

/// The states seen while checking one partition, and the step function over them.
pub(crate) struct StateTable<'h> {
    /// Invariant: `values[0]` is unused (ABSENT); `ids[values[i]] == i` for `i >= 1`.
    values: Vec<Vec<u8>>,
    ids: HashMap<Vec<u8>, StateId>,
    /// The partition's keys, sorted and distinct.
    keys: Vec<&'h [u8]>,
    /// With several keys: `tuples[i]` is state i's value id per key of `keys`. Invariant:
    /// `tuples[0]` is all ABSENT; `tuple_ids[tuples[i]] == i`.
    tuples: Vec<Vec<StateId>>,
    tuple_ids: HashMap<Vec<StateId>, StateId>,
    /// `steps[i]` is the compiled form of `ops[i]`.
    steps: Vec<Step>,
    ops: Vec<&'h Operation>,
    /// Memo of Append and Model results: (state before, op index) -> state after, `None`
    /// when the op's recorded output is impossible there.
    stepped: HashMap<(StateId, u32), Option<StateId>>,
}

impl<'h> StateTable<'h> {
    /// Compiles the ops of one partition.
    ///
    /// # Panics
    /// If an op is a read with an unknown result (the checker drops those first) or has an
    /// output that does not match its kind.
    pub(crate) fn new(ops: Vec<&'h Operation>) -> StateTable<'h> {
        let mut keys: Vec<&'h [u8]> = ops.iter().flat_map(|o| o.op.keys()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut table = StateTable {
            values: vec![Vec::new()],
            ids: HashMap::new(),
            tuples: vec![vec![StateId::ABSENT; keys.len()]],
            tuple_ids: HashMap::from([(vec![StateId::ABSENT; keys.len()], StateId::ABSENT)]),
            keys,
            steps: Vec::with_capacity(ops.len()),
            ops: Vec::new(),
            stepped: HashMap::new(),
        };
        for op in &ops {
            let step = table.compile(op);
            table.steps.push(step);
        }
        table.ops = ops;
        table
    }

    /// Whether the partition has one key, whose value is the state.
    pub(crate) fn is_one_key(&self) -> bool {
        self.keys.len() == 1
    }

    fn compile(&mut self, operation: &Operation) -> Step {
        let output = match &operation.result {
            OpResult::Ok { output, .. } => Some(output),
            OpResult::Unknown => None,
        };
        if !operation.op.is_write() && output.is_none() {
            panic!(
                "lincheck: a {} of unknown outcome must be dropped before checking",
                operation.op.name()
            );
        }
        if !self.is_one_key() {
            return Step::Model;
        }
        match (&operation.op, output) {
            (Op::Get { .. }, Some(Output::Get(value))) => Step::Get {
                seen: self.intern_state(value.as_deref()),
            },
            (Op::Put { value, .. }, None | Some(Output::Put)) => Step::Put {
                to: self.intern(value),
            },
            (Op::Append { .. }, None | Some(Output::Append)) => Step::Append,
            // Answered only past the value limit (and then it changed nothing): the model
            // decides whether the value it appended to was that large.
            (Op::Append { .. }, Some(Output::TooLarge)) => Step::Model,
            (Op::Delete { .. }, None | Some(Output::Delete)) => Step::Delete { existed: None },
            (Op::Delete { .. }, Some(Output::Deleted { existed })) => Step::Delete {
                existed: Some(*existed),
            },
            (Op::Cas { expected, new, .. }, None | Some(Output::Cas { .. })) => Step::Cas {
                expected: self.intern_state(expected.as_deref()),
                new: self.intern(new),
                swapped: match output {
                    Some(Output::Cas { swapped }) => Some(*swapped),
                    _ => None,
                },
            },
            (
                Op::Set { .. }
                | Op::GetDel { .. }
                | Op::AppendLen { .. }
                | Op::IncrBy { .. }
                | Op::StrLen { .. }
                | Op::DeleteMany { .. }
                | Op::PutMany { .. }
                | Op::GetMany { .. }
                | Op::Exists { .. }
                | Op::Pipeline { .. },
                _,
            ) => Step::Model,
            (op, output) => panic!(
                "lincheck: op {} with output {:?} must be validated (or dropped) before checking",
                op.name(),
                output
            ),
        }
    }

    fn intern_state(&mut self, value: Option<&[u8]>) -> StateId {
        match value {
            None => StateId::ABSENT,
            Some(bytes) => self.intern(bytes),
        }
    }

    fn intern(&mut self, bytes: &[u8]) -> StateId {
        if let Some(id) = self.ids.get(bytes) {
            return *id;
        }
        let id = StateId(u32::try_from(self.values.len()).expect("lincheck: over 2^32 states"));
        self.values.push(bytes.to_vec());
        self.ids.insert(bytes.to_vec(), id);
        id
    }

    fn intern_tuple(&mut self, tuple: Vec<StateId>) -> StateId {
        if let Some(id) = self.tuple_ids.get(&tuple) {
            return *id;
        }
        let id = StateId(u32::try_from(self.tuples.len()).expect("lincheck: over 2^32 states"));
        self.tuples.push(tuple.clone());
        self.tuple_ids.insert(tuple, id);
        id
    }

    /// The state after linearizing op `op` in `state`, or `None` if the op's recorded output
    /// is impossible in `state`.
    pub(crate) fn step(&mut self, state: StateId, op: u32) -> Option<StateId> {
        match self.steps[op as usize] {
            Step::Get { seen } => (seen == state).then_some(state),
            Step::Put { to } => Some(to),
            Step::Delete { existed } => match existed {
                Some(reported) if reported != (state != StateId::ABSENT) => None,
                _ => Some(StateId::ABSENT),
            },
            Step::Append | Step::Model => {
                if let Some(next) = self.stepped.get(&(state, op)) {
                    return *next;
                }
                let next = match self.steps[op as usize] {
                    Step::Append => self.append(state, op),
                    _ => self.run_model(state, op),
                };
                self.stepped.insert((state, op), next);
                next
            }
            Step::Cas {
                expected,
                new,
                swapped,
            } => {
                let matched = expected == state;
                match swapped {
                    Some(reported) if reported != matched => None,
                    _ => Some(if matched { new } else { state }),
                }
            }
        }
    }

    /// The value of `state` followed by op `op`'s (an Append of a one-key partition): the
    /// model's Append, without materializing the state twice (appends grow long values).
    /// The state after Append op `op` on `state`: the value with the bytes appended; past
    /// [`VALUE_BYTES_MAX`] the store refuses the append, so an acknowledged one is not
    /// admitted there (`None`) and one of unknown outcome changed nothing.
    fn append(&mut self, state: StateId, op: u32) -> Option<StateId> {
        let operation = self.ops[op as usize];
        let Op::Append { value, .. } = &operation.op else {
            unreachable!("Step::Append is compiled only from Op::Append");
        };
        let before = self.value_of(state).unwrap_or_default();
        if before.len() + value.len() > VALUE_BYTES_MAX {
            return match operation.result {
                OpResult::Ok { .. } => None,
                _ => Some(state),
            };
        }
        let mut bytes = Vec::with_capacity(before.len() + value.len());
        bytes.extend_from_slice(before);
        bytes.extend_from_slice(value);
        Some(self.intern(&bytes))
    }

    /// Runs op `op` of the model on `state`: the state after it, if its recorded output (or
    /// any, for an unknown outcome) is what the model answers.
    fn run_model(&mut self, state: StateId, op: u32) -> Option<StateId> {
        let operation = self.ops[op as usize];
        let mut slots = Slots {
            keys: &self.keys,
            values: self.materialize(state),
        };
        let computed = operation.op.apply_to(&mut slots);
        if let OpResult::Ok { output, .. } = &operation.result
            && !output.admits(&computed)
        {
            return None;
        }
        let values = slots.values;
        let ids: Vec<StateId> = values
            .iter()
            .map(|v| self.intern_state(v.as_deref()))
            .collect();
        Some(if self.is_one_key() {
            ids[0]
        } else {
            self.intern_tuple(ids)
        })
    }

    /// Each key's value in `state`, in the order of `keys`.
    fn materialize(&self, state: StateId) -> Vec<Option<Vec<u8>>> {
        let value = |id: StateId| self.value_of(id).map(<[u8]>::to_vec);
        if self.is_one_key() {
            vec![value(state)]
        } else {
            self.tuples[state.0 as usize]
                .iter()
                .map(|id| value(*id))
                .collect()
        }
    }

    /// Whether op `op` may be linearized in `state` and leaves every state unchanged: a read
    /// that saw `state`, a CAS known to have failed whose comparison fails in `state`, a
    /// Delete known to have found no key in the absent state, or any op whose answer says it
    /// changed nothing ([`Output::changes_nothing`]) and that fits `state`.
    /// Such an op can always go first (see `Search`), so the search never branches on it.
    pub(crate) fn is_observer_now(&mut self, state: StateId, op: u32) -> bool {
        match self.steps[op as usize] {
            Step::Get { seen } => seen == state,
            Step::Cas {
                expected,
                swapped: Some(false),
                ..
            } => expected != state,
            Step::Delete {
                existed: Some(false),
            } => state == StateId::ABSENT,
            Step::Model => {
                let operation = self.ops[op as usize];
                matches!(&operation.result, OpResult::Ok { output, .. }
                    if output.changes_nothing(&operation.op))
                    && self.step(state, op) == Some(state)
            }
            _ => false,
        }
    }

    /// The bytes of a value id, `None` if absent.
    fn value_of(&self, id: StateId) -> Option<&[u8]> {
        match id {
            StateId::ABSENT => None,
            StateId(i) => Some(&self.values[i as usize]),
        }
    }

    /// The bytes of a state of a one-key partition, `None` if absent.
    pub(crate) fn value(&self, state: StateId) -> Option<&[u8]> {
        debug_assert!(
            self.is_one_key(),
            "a state of several keys has no one value"
        );
        self.value_of(state)
    }

    /// A state for humans: the value, or each key's value for a partition of several keys.
    pub(crate) fn show(&self, state: StateId) -> String {
        if self.is_one_key() {
            return show_state(self.value_of(state));
        }
        let shown: Vec<String> = self
            .keys
            .iter()
            .zip(&self.tuples[state.0 as usize])
            .map(|(key, id)| format!("{}: {}", show_bytes(key), show_state(self.value_of(*id))))
            .collect();
        format!("{{{}}}", shown.join(", "))
    }

    /// The operation with partition-local index `op`.
    pub(crate) fn op(&self, op: u32) -> &'h Operation {
        self.ops[op as usize]
    }
}

/// A partition's values by key, for the model to run on.
struct Slots<'a> {
    /// Sorted and distinct, as [`StateTable::keys`].
    keys: &'a [&'a [u8]],
    values: Vec<Option<Vec<u8>>>,
}

impl Slots<'_> {
    fn slot(&self, key: &[u8]) -> usize {
        self.keys
            .binary_search(&key)
            .expect("an op's keys are its partition's")
    }
}

impl KeyValues for Slots<'_> {
    fn value(&self, key: &[u8]) -> Option<&[u8]> {
        self.values[self.slot(key)].as_deref()
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        let slot = self.slot(key);
        self.values[slot] = Some(value);
    }

    fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let slot = self.slot(key);
        self.values[slot].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(op: Op, output: Output) -> Operation {
        Operation {
            client: 0,
            op,
            call_ns: 0,
            result: OpResult::Ok {
                output,
                return_ns: 0,
            },
        }
    }

    #[test]
    fn equal_bytes_reached_two_ways_share_one_id() {
        // Goal: interning is exact; method: reach "ab" by Put and by Append, compare ids.
        let k = b"k".to_vec();
        let put_ab = done(
            Op::Put {
                key: k.clone(),
                value: b"ab".to_vec(),
            },
            Output::Put,
        );
        let put_a = done(
            Op::Put {
                key: k.clone(),
                value: b"a".to_vec(),
            },
            Output::Put,
        );
        let append_b = done(
            Op::Append {
                key: k.clone(),
                value: b"b".to_vec(),
            },
            Output::Append,
        );
        let mut table = StateTable::new(vec![&put_ab, &put_a, &append_b]);
        let via_put = table.step(StateId::ABSENT, 0).unwrap();
        let a = table.step(StateId::ABSENT, 1).unwrap();
        let via_append = table.step(a, 2).unwrap();
        assert_eq!(via_put, via_append);
        assert_eq!(table.value(via_append), Some(&b"ab"[..]));
        assert_eq!(
            table
                .step(StateId::ABSENT, 2)
                .map(|s| table.value(s).map(<[u8]>::to_vec)),
            Some(Some(b"b".to_vec()))
        );
    }
}
