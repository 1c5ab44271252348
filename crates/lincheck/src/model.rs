//! The operations of a history and their sequential semantics.
//!
//! A key's state is `Option<Vec<u8>>`: `None` is a missing key, `Some(vec![])` is a key that
//! holds the empty value. The two are different states. Most operations touch one key; the
//! multi-key ones (`DeleteMany`, `PutMany`, `GetMany`, `Exists`) act on several keys at one
//! instant, and their state is the map of those keys (see [`crate::semantics`]).

use std::fmt;

/// A client request on one key, or (the `*Many` and `Exists` ops) on several at once.
///
/// Every operation names at least one key (checked by [`Operation::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read the current value.
    Get { key: Vec<u8> },
    /// Set the value, creating the key if it is missing.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Append to the value, creating the key (as `value`) if it is missing.
    Append { key: Vec<u8>, value: Vec<u8> },
    /// Remove the key. Deleting a missing key is not an error.
    Delete { key: Vec<u8> },
    /// Set the value to `new` iff the current state equals `expected`
    /// (`None` matches only a missing key).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
    // The operations of the Redis front end (shardkv_kv's commands appended after Cas).
    /// Set the value if `when` holds; answers whether it did and, if `get`, the value it
    /// found ([`Output::Set`]).
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        when: SetWhen,
        get: bool,
    },
    /// Remove the key; answers the value it had ([`Output::Get`]).
    GetDel { key: Vec<u8> },
    /// Append as `Append`; answers the new length ([`Output::Int`]).
    AppendLen { key: Vec<u8>, value: Vec<u8> },
    /// Add `by` to the integer the key holds in canonical decimal (a missing key holds 0)
    /// and store the sum in canonical decimal; answers the sum ([`Output::Int`]), or
    /// [`Output::NotAnInteger`] / [`Output::Overflow`], changing nothing.
    IncrBy { key: Vec<u8>, by: i64 },
    /// The length of the value, 0 if missing ([`Output::Int`]).
    StrLen { key: Vec<u8> },
    /// Remove every key; answers how many existed when removed, in order (a key named
    /// twice counts once) ([`Output::Int`]).
    DeleteMany { keys: Vec<Vec<u8>> },
    /// Set every pair in order (a key named twice ends with its last value); answers
    /// [`Output::Put`].
    PutMany { pairs: Vec<(Vec<u8>, Vec<u8>)> },
    /// Read every key, in order ([`Output::Values`]).
    GetMany { keys: Vec<Vec<u8>> },
    /// How many of the keys exist, a key named twice counting twice ([`Output::Int`]).
    Exists { keys: Vec<Vec<u8>> },
    /// A client's pipelined operations as one (shardkv_kv's `Pipeline`): applied at one
    /// instant, in order, nothing between them; answers one output per operation
    /// ([`Output::Outputs`]). None of them is itself a pipeline.
    Pipeline { ops: Vec<Op> },
}

/// The key-value pairs of a PutMany.
type Pairs = [(Vec<u8>, Vec<u8>)];

/// When a [`Op::Set`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetWhen {
    Always,
    /// Only if the key is missing (Redis `NX`).
    Absent,
    /// Only if the key exists (Redis `XX`).
    Present,
}

/// What a completed operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// The value read; `None` if the key was missing.
    Get(Option<Vec<u8>>),
    Put,
    Append,
    /// A Delete whose answer does not say whether the key existed (older servers).
    Delete,
    /// Whether the compare matched and the swap took effect.
    Cas {
        swapped: bool,
    },
    /// A Delete that says whether the key existed: it may only be linearized where the
    /// key is present (`true`) or absent (`false`).
    Deleted {
        existed: bool,
    },
    /// Set: whether it applied, and the value it found (`None` also when not asked for).
    Set {
        applied: bool,
        old: Option<Vec<u8>>,
    },
    /// AppendLen, StrLen: a length; IncrBy: the sum; DeleteMany, Exists: a count.
    Int(i64),
    /// GetMany: each key's value, in order, `None` for a missing key.
    Values(Vec<Option<Vec<u8>>>),
    /// IncrBy on a value that is not a 64-bit integer in canonical decimal.
    NotAnInteger,
    /// IncrBy whose sum passes the range of a 64-bit integer.
    Overflow,
    /// Pipeline: each operation's output, in order.
    Outputs(Vec<Output>),
    /// An Append or AppendLen (of a pipeline) whose result would pass
    /// [`VALUE_BYTES_MAX`](crate::VALUE_BYTES_MAX): it changed nothing. Admitted only
    /// where the value and the appended bytes together pass that.
    TooLarge,
}

/// The outcome of an operation as the client saw it.
///
/// Definitely-failed operations (the client knows they did not apply) are not part of a
/// history at all: leave them out.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpResult {
    /// The operation completed at `return_ns` with `output`.
    Ok { output: Output, return_ns: u64 },
    /// The client gave up (timeout, lost connection): the operation may have taken effect
    /// once at any instant after its call, or never. Its return time is +infinity.
    Unknown,
}

/// One operation of a concurrent history.
///
/// Invariant (checked by [`Operation::validate`]): for `OpResult::Ok`, the output kind
/// matches the op kind and `return_ns >= call_ns`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// Which client issued the operation. Only used in explanations: the checker does not
    /// assume a client's operations are sequential.
    pub client: u64,
    pub op: Op,
    /// When the client sent the request (any monotonic clock, in nanoseconds).
    pub call_ns: u64,
    pub result: OpResult,
}

/// Why an [`Operation`] is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidOperation {
    /// The output kind does not belong to the op kind (e.g. a Get with `Output::Put`, a
    /// GetMany with another number of values than keys, a Set without `get` that answers
    /// an old value).
    OutputMismatch {
        op: &'static str,
        output: &'static str,
    },
    /// The operation returned before it was called.
    ReturnBeforeCall { call_ns: u64, return_ns: u64 },
    /// A multi-key operation that names no key.
    NoKeys { op: &'static str },
    /// A pipeline holding a pipeline.
    NestedPipeline,
}

impl fmt::Display for InvalidOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidOperation::OutputMismatch { op, output } => {
                write!(f, "a {op} operation cannot have a {output} output")
            }
            InvalidOperation::ReturnBeforeCall { call_ns, return_ns } => {
                write!(
                    f,
                    "returned at {return_ns} ns, before its call at {call_ns} ns"
                )
            }
            InvalidOperation::NoKeys { op } => write!(f, "a {op} operation names no key"),
            InvalidOperation::NestedPipeline => write!(f, "a pipeline within a pipeline"),
        }
    }
}

impl std::error::Error for InvalidOperation {}

impl Op {
    /// The first key the operation touches (the only one, except for multi-key ops).
    pub fn key(&self) -> &[u8] {
        self.keys().next().unwrap_or_default()
    }

    /// Every key the operation touches, in order (a key named twice comes twice; a
    /// pipeline's are its operations' keys).
    pub fn keys(&self) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        let (keys, pairs): (&[Vec<u8>], &Pairs) = match self {
            Op::Pipeline { ops } => return Box::new(ops.iter().flat_map(Op::keys)),
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Append { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. }
            | Op::Set { key, .. }
            | Op::GetDel { key }
            | Op::AppendLen { key, .. }
            | Op::IncrBy { key, .. }
            | Op::StrLen { key } => (std::slice::from_ref(key), &[]),
            Op::DeleteMany { keys } | Op::GetMany { keys } | Op::Exists { keys } => (keys, &[]),
            Op::PutMany { pairs } => (&[], pairs),
        };
        Box::new(
            keys.iter()
                .map(Vec::as_slice)
                .chain(pairs.iter().map(|(k, _)| k.as_slice())),
        )
    }

    /// Short lower-case name, as used in the JSONL history format.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Get { .. } => "get",
            Op::Put { .. } => "put",
            Op::Append { .. } => "append",
            Op::Delete { .. } => "del",
            Op::Cas { .. } => "cas",
            Op::Set { .. } => "set",
            Op::GetDel { .. } => "getdel",
            Op::AppendLen { .. } => "appendlen",
            Op::IncrBy { .. } => "incrby",
            Op::StrLen { .. } => "strlen",
            Op::DeleteMany { .. } => "delmany",
            Op::PutMany { .. } => "putmany",
            Op::GetMany { .. } => "getmany",
            Op::Exists { .. } => "exists",
            Op::Pipeline { .. } => "pipeline",
        }
    }

    /// Whether the operation can change the state. A read with an unknown result constrains
    /// nothing and is dropped by the checker.
    pub fn is_write(&self) -> bool {
        match self {
            Op::Pipeline { ops } => ops.iter().any(Op::is_write),
            _ => !matches!(
                self,
                Op::Get { .. } | Op::StrLen { .. } | Op::GetMany { .. } | Op::Exists { .. }
            ),
        }
    }

    /// The sequential specification on one key: applies the op to `state` in place and
    /// returns what a sequential execution would output. Every key the op names is taken
    /// to be this one register, which is right for single-key ops (and multi-key ops that
    /// name one key); [`Op::apply_to`] runs any op on a map.
    pub fn apply(&self, state: &mut Option<Vec<u8>>) -> Output {
        self.apply_to(state)
    }
}

/// How an op writes its one key, as the single-key look-ahead (`reach`) and time-free
/// check (`producible`) see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writes<'a> {
    /// Never changes the key.
    Nothing,
    /// May set the key to this value (Put, CAS, Set).
    Base(&'a [u8]),
    /// May append this value (Append, AppendLen).
    Append(&'a [u8]),
    /// May remove the key (Delete, GetDel).
    Delete,
    /// Writes what those checks do not model (IncrBy, DeleteMany, PutMany, a pipeline
    /// that writes): a partition holding one goes without them.
    Opaque,
}

impl Op {
    /// See [`Writes`].
    pub(crate) fn writes(&self) -> Writes<'_> {
        match self {
            Op::Get { .. } | Op::StrLen { .. } | Op::GetMany { .. } | Op::Exists { .. } => {
                Writes::Nothing
            }
            Op::Put { value, .. } | Op::Cas { new: value, .. } | Op::Set { value, .. } => {
                Writes::Base(value)
            }
            Op::Append { value, .. } | Op::AppendLen { value, .. } => Writes::Append(value),
            Op::Delete { .. } | Op::GetDel { .. } => Writes::Delete,
            Op::IncrBy { .. } | Op::DeleteMany { .. } | Op::PutMany { .. } => Writes::Opaque,
            Op::Pipeline { .. } if self.is_write() => Writes::Opaque,
            Op::Pipeline { .. } => Writes::Nothing,
        }
    }
}

impl Output {
    /// Short lower-case name of the output kind.
    pub fn name(&self) -> &'static str {
        match self {
            Output::Get(_) => "get",
            Output::Put => "put",
            Output::Append => "append",
            Output::Delete | Output::Deleted { .. } => "del",
            Output::Cas { .. } => "cas",
            Output::Set { .. } => "set",
            Output::Int(_) => "int",
            Output::Values(_) => "values",
            Output::NotAnInteger => "notaninteger",
            Output::Overflow => "overflow",
            Output::Outputs(_) => "outputs",
            Output::TooLarge => "toolarge",
        }
    }

    fn matches(&self, op: &Op) -> bool {
        match (op, self) {
            (Op::Pipeline { ops }, Output::Outputs(outs)) => {
                ops.len() == outs.len() && ops.iter().zip(outs).all(|(o, out)| out.matches(o))
            }
            (Op::Set { get, .. }, Output::Set { old, .. }) => *get || old.is_none(),
            (Op::GetMany { keys }, Output::Values(values)) => keys.len() == values.len(),
            _ => matches!(
                (op, self),
                (Op::Get { .. } | Op::GetDel { .. }, Output::Get(_))
                    | (Op::Put { .. } | Op::PutMany { .. }, Output::Put)
                    | (Op::Append { .. }, Output::Append)
                    | (Op::Append { .. } | Op::AppendLen { .. }, Output::TooLarge)
                    | (Op::Delete { .. }, Output::Delete | Output::Deleted { .. })
                    | (Op::Cas { .. }, Output::Cas { .. })
                    | (
                        Op::AppendLen { .. }
                            | Op::StrLen { .. }
                            | Op::DeleteMany { .. }
                            | Op::Exists { .. },
                        Output::Int(_)
                    )
                    | (
                        Op::IncrBy { .. },
                        Output::Int(_) | Output::NotAnInteger | Output::Overflow
                    )
            ),
        }
    }

    /// Whether a recorded output admits `computed`, the output of a sequential execution:
    /// equal, or a Delete's answer that does not say whether the key existed.
    pub(crate) fn admits(&self, computed: &Output) -> bool {
        match (self, computed) {
            (Output::Outputs(recorded), Output::Outputs(computed)) => {
                recorded.len() == computed.len()
                    && recorded.iter().zip(computed).all(|(r, c)| r.admits(c))
            }
            _ => {
                self == computed
                    || (*self == Output::Delete && matches!(computed, Output::Deleted { .. }))
            }
        }
    }

    /// Whether an op with this output changed nothing, wherever it can be linearized: a
    /// read, or a write whose answer says it did not apply (a CAS that did not swap, a
    /// Delete or GetDel of a missing key, a Set whose condition failed, an IncrBy error,
    /// a DeleteMany that found no key, an append answered too large). Such an op never needs to branch the search.
    pub(crate) fn changes_nothing(&self, op: &Op) -> bool {
        if let (Op::Pipeline { ops }, Output::Outputs(outs)) = (op, self) {
            return ops.iter().zip(outs).all(|(o, out)| out.changes_nothing(o));
        }
        !op.is_write()
            || matches!(
                (op, self),
                (Op::Cas { .. }, Output::Cas { swapped: false })
                    | (Op::Delete { .. }, Output::Deleted { existed: false })
                    | (Op::GetDel { .. }, Output::Get(None))
                    | (Op::Set { .. }, Output::Set { applied: false, .. })
                    | (Op::IncrBy { .. }, Output::NotAnInteger | Output::Overflow)
                    | (Op::DeleteMany { .. }, Output::Int(0))
                    | (Op::Append { .. } | Op::AppendLen { .. }, Output::TooLarge)
            )
    }
}

impl Operation {
    /// Checks the invariant of [`Operation`]: output kind matches op kind, and the operation
    /// did not return before it was called.
    pub fn validate(&self) -> Result<(), InvalidOperation> {
        if let Op::Pipeline { ops } = &self.op {
            if ops.iter().any(|o| matches!(o, Op::Pipeline { .. })) {
                return Err(InvalidOperation::NestedPipeline);
            }
            if let Some(o) = ops.iter().find(|o| o.keys().next().is_none()) {
                return Err(InvalidOperation::NoKeys { op: o.name() });
            }
        }
        if self.op.keys().next().is_none() {
            return Err(InvalidOperation::NoKeys { op: self.op.name() });
        }
        let OpResult::Ok { output, return_ns } = &self.result else {
            return Ok(());
        };
        if !output.matches(&self.op) {
            return Err(InvalidOperation::OutputMismatch {
                op: self.op.name(),
                output: output.name(),
            });
        }
        if *return_ns < self.call_ns {
            return Err(InvalidOperation::ReturnBeforeCall {
                call_ns: self.call_ns,
                return_ns: *return_ns,
            });
        }
        Ok(())
    }

    /// The return time, `None` for +infinity (an unknown outcome).
    pub fn return_ns(&self) -> Option<u64> {
        match &self.result {
            OpResult::Ok { return_ns, .. } => Some(*return_ns),
            OpResult::Unknown => None,
        }
    }
}

/// Formats bytes for humans: UTF-8 text quoted and escaped, long values cut with their
/// length shown, `absent` for a missing key.
pub(crate) fn show_state(state: Option<&[u8]>) -> String {
    match state {
        None => "absent".to_string(),
        Some(bytes) => show_bytes(bytes),
    }
}

/// Formats a byte string for humans, quoted, cut after a few dozen bytes.
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    const SHOWN_BYTES_MAX: usize = 48;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN_BYTES_MAX)]);
    if bytes.len() <= SHOWN_BYTES_MAX {
        format!("{text:?}")
    } else {
        format!("{text:?}... ({} bytes)", bytes.len())
    }
}

impl fmt::Display for Operation {
    /// One line: `client 3 put "v" -> ok [call 10 ns, return 20 ns]` (the key is named by
    /// the explanation's header; a multi-key op lists its keys; a pipeline lists its ops
    /// and their outputs in brackets, `; ` between them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} ", self.client)?;
        fmt_op(&self.op, f)?;
        match &self.result {
            OpResult::Ok { output, return_ns } => {
                write!(f, " ->")?;
                fmt_output(output, f)?;
                write!(f, " [call {} ns, return {return_ns} ns]", self.call_ns)
            }
            OpResult::Unknown => write!(f, " -> unknown [call {} ns, no return]", self.call_ns),
        }
    }
}

fn fmt_op(op: &Op, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}", op.name())?;
    match op {
        Op::Get { .. } | Op::Delete { .. } | Op::GetDel { .. } | Op::StrLen { .. } => Ok(()),
        Op::Put { value, .. } | Op::Append { value, .. } | Op::AppendLen { value, .. } => {
            write!(f, " {}", show_bytes(value))
        }
        Op::Cas { expected, new, .. } => write!(
            f,
            " expected {} new {}",
            show_state(expected.as_deref()),
            show_bytes(new)
        ),
        Op::Set {
            value, when, get, ..
        } => write!(f, " {} {when:?} get={get}", show_bytes(value)),
        Op::IncrBy { by, .. } => write!(f, " {by}"),
        Op::DeleteMany { keys } | Op::GetMany { keys } | Op::Exists { keys } => {
            for key in keys {
                write!(f, " {}", show_bytes(key))?;
            }
            Ok(())
        }
        Op::PutMany { pairs } => {
            for (key, value) in pairs {
                write!(f, " {}={}", show_bytes(key), show_bytes(value))?;
            }
            Ok(())
        }
        Op::Pipeline { ops } => {
            write!(f, " [")?;
            for (i, op) in ops.iter().enumerate() {
                if i > 0 {
                    write!(f, ";")?;
                }
                write!(f, " ")?;
                fmt_op(op, f)?;
                if op.keys().nth(1).is_none() {
                    write!(f, " @{}", show_bytes(op.key()))?;
                }
            }
            write!(f, " ]")
        }
    }
}

fn fmt_output(output: &Output, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match output {
        Output::Get(value) => write!(f, " {}", show_state(value.as_deref())),
        Output::Cas { swapped } => write!(f, " swapped={swapped}"),
        Output::Deleted { existed } => write!(f, " existed={existed}"),
        Output::Put | Output::Append | Output::Delete => write!(f, " ok"),
        Output::Set { applied, old } => {
            write!(f, " applied={applied} old={}", show_state(old.as_deref()))
        }
        Output::Int(n) => write!(f, " {n}"),
        Output::Values(values) => {
            for value in values {
                write!(f, " {}", show_state(value.as_deref()))?;
            }
            Ok(())
        }
        Output::NotAnInteger => write!(f, " not an integer"),
        Output::Overflow => write!(f, " overflow"),
        Output::TooLarge => write!(f, " too large"),
        Output::Outputs(outs) => {
            write!(f, " [")?;
            for (i, out) in outs.iter().enumerate() {
                if i > 0 {
                    write!(f, ";")?;
                }
                fmt_output(out, f)?;
            }
            write!(f, " ]")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_semantics_distinguish_missing_from_empty() {
        // Goal: the reference model keeps absent and empty apart; method: apply each op kind.
        let key = b"k".to_vec();
        let mut state = None;
        let cas_absent = Op::Cas {
            key: key.clone(),
            expected: None,
            new: vec![],
        };
        assert_eq!(cas_absent.apply(&mut state), Output::Cas { swapped: true });
        assert_eq!(state, Some(vec![]));
        assert_eq!(cas_absent.apply(&mut state), Output::Cas { swapped: false });
        let append = Op::Append {
            key: key.clone(),
            value: b"x".to_vec(),
        };
        append.apply(&mut state);
        assert_eq!(
            Op::Get { key: key.clone() }.apply(&mut state),
            Output::Get(Some(b"x".to_vec()))
        );
        Op::Delete { key: key.clone() }.apply(&mut state);
        append.apply(&mut state);
        assert_eq!(state, Some(b"x".to_vec()));
    }

    #[test]
    fn validate_rejects_mismatched_output_and_time_travel() {
        // Goal: malformed operations are named; method: build two bad ones.
        let bad_kind = Operation {
            client: 1,
            op: Op::Get { key: b"k".to_vec() },
            call_ns: 0,
            result: OpResult::Ok {
                output: Output::Put,
                return_ns: 1,
            },
        };
        assert!(matches!(
            bad_kind.validate(),
            Err(InvalidOperation::OutputMismatch { .. })
        ));
        let bad_time = Operation {
            client: 1,
            op: Op::Delete { key: b"k".to_vec() },
            call_ns: 5,
            result: OpResult::Ok {
                output: Output::Delete,
                return_ns: 4,
            },
        };
        assert!(matches!(
            bad_time.validate(),
            Err(InvalidOperation::ReturnBeforeCall { .. })
        ));
    }
}
