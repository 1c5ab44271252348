//! Interned key states and the compiled step function of one partition.
//!
//! The search compares and hashes states at every step, and values can be long (appends
//! grow them), so every distinct state gets a small id. Equal ids mean equal bytes, so the
//! search never compares values, and a step is an integer comparison except for Append,
//! whose result is memoized per (state, op).

use std::collections::HashMap;

use crate::model::{Op, OpResult, Operation, Output};

/// Id of an interned state. Invariant: `StateId::ABSENT` is the missing key; every other id
/// names one distinct byte string in its [`StateTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StateId(u32);

impl StateId {
    /// The missing key, which is also the initial state of every key.
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
}

/// The states seen while checking one key, and the step function over them.
pub(crate) struct StateTable<'h> {
    /// Invariant: `values[0]` is unused (ABSENT); `ids[values[i]] == i` for `i >= 1`.
    values: Vec<Vec<u8>>,
    ids: HashMap<Vec<u8>, StateId>,
    /// `steps[i]` is the compiled form of `ops[i]`.
    steps: Vec<Step>,
    ops: Vec<&'h Operation>,
    /// Memo of Append results: (state before, op index) -> state after.
    appended: HashMap<(StateId, u32), StateId>,
}

impl<'h> StateTable<'h> {
    /// Compiles the ops of one partition.
    ///
    /// # Panics
    /// If an op is a Get with an unknown result (the checker drops those first) or has an
    /// output that does not match its kind.
    pub(crate) fn new(ops: Vec<&'h Operation>) -> StateTable<'h> {
        let mut table = StateTable {
            values: vec![Vec::new()],
            ids: HashMap::new(),
            steps: Vec::with_capacity(ops.len()),
            ops: Vec::new(),
            appended: HashMap::new(),
        };
        for op in &ops {
            let step = table.compile(op);
            table.steps.push(step);
        }
        table.ops = ops;
        table
    }

    fn compile(&mut self, operation: &Operation) -> Step {
        let output = match &operation.result {
            OpResult::Ok { output, .. } => Some(output),
            OpResult::Unknown => None,
        };
        match (&operation.op, output) {
            (Op::Get { .. }, Some(Output::Get(value))) => Step::Get {
                seen: self.intern_state(value.as_deref()),
            },
            (Op::Put { value, .. }, None | Some(Output::Put)) => Step::Put {
                to: self.intern(value),
            },
            (Op::Append { .. }, None | Some(Output::Append)) => Step::Append,
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
            Step::Append => Some(self.append(state, op)),
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

    /// Whether op `op` may be linearized in `state` and leaves every state unchanged: a read
    /// that saw `state`, a CAS known to have failed whose comparison fails in `state`, or a
    /// Delete known to have found no key in the absent state.
    /// Such an op can always go first (see `Search`), so the search never branches on it.
    pub(crate) fn is_observer_now(&self, state: StateId, op: u32) -> bool {
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
            _ => false,
        }
    }

    fn append(&mut self, state: StateId, op: u32) -> StateId {
        if let Some(next) = self.appended.get(&(state, op)) {
            return *next;
        }
        let Op::Append { value, .. } = &self.ops[op as usize].op else {
            unreachable!("Step::Append is compiled only from Op::Append");
        };
        let mut bytes = match state {
            StateId::ABSENT => Vec::with_capacity(value.len()),
            StateId(i) => {
                let mut bytes = Vec::with_capacity(self.values[i as usize].len() + value.len());
                bytes.extend_from_slice(&self.values[i as usize]);
                bytes
            }
        };
        bytes.extend_from_slice(value);
        let next = self.intern(&bytes);
        self.appended.insert((state, op), next);
        next
    }

    /// The bytes of a state, `None` if absent.
    pub(crate) fn value(&self, state: StateId) -> Option<&[u8]> {
        match state {
            StateId::ABSENT => None,
            StateId(i) => Some(&self.values[i as usize]),
        }
    }

    /// The operation with partition-local index `op`.
    pub(crate) fn op(&self, op: u32) -> &'h Operation {
        self.ops[op as usize]
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
