//! The operations of a history and the sequential semantics of one key.
//!
//! A key's state is `Option<Vec<u8>>`: `None` is a missing key, `Some(vec![])` is a key that
//! holds the empty value. The two are different states.

use std::fmt;

/// A client request on one key.
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
    /// The output kind does not belong to the op kind (e.g. a Get with `Output::Put`).
    OutputMismatch {
        op: &'static str,
        output: &'static str,
    },
    /// The operation returned before it was called.
    ReturnBeforeCall { call_ns: u64, return_ns: u64 },
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
        }
    }
}

impl std::error::Error for InvalidOperation {}

impl Op {
    /// The key the operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Append { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. } => key,
        }
    }

    /// Short lower-case name, as used in the JSONL history format.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Get { .. } => "get",
            Op::Put { .. } => "put",
            Op::Append { .. } => "append",
            Op::Delete { .. } => "del",
            Op::Cas { .. } => "cas",
        }
    }

    /// Whether the operation can change the state. A read with an unknown result constrains
    /// nothing and is dropped by the checker.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }

    /// The sequential specification: applies the op to `state` in place and returns what a
    /// sequential execution would output.
    pub fn apply(&self, state: &mut Option<Vec<u8>>) -> Output {
        match self {
            Op::Get { .. } => Output::Get(state.clone()),
            Op::Put { value, .. } => {
                *state = Some(value.clone());
                Output::Put
            }
            Op::Append { value, .. } => {
                state.get_or_insert_with(Vec::new).extend_from_slice(value);
                Output::Append
            }
            Op::Delete { .. } => Output::Deleted {
                existed: state.take().is_some(),
            },
            Op::Cas { expected, new, .. } => {
                let swapped = state == expected;
                if swapped {
                    *state = Some(new.clone());
                }
                Output::Cas { swapped }
            }
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
        }
    }

    fn matches(&self, op: &Op) -> bool {
        matches!(
            (op, self),
            (Op::Get { .. }, Output::Get(_))
                | (Op::Put { .. }, Output::Put)
                | (Op::Append { .. }, Output::Append)
                | (Op::Delete { .. }, Output::Delete | Output::Deleted { .. })
                | (Op::Cas { .. }, Output::Cas { .. })
        )
    }
}

impl Operation {
    /// Checks the invariant of [`Operation`]: output kind matches op kind, and the operation
    /// did not return before it was called.
    pub fn validate(&self) -> Result<(), InvalidOperation> {
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
    /// One line: `client 3 put "k" "v" -> ok [call 10 ns, return 20 ns]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} {}", self.client, self.op.name())?;
        match &self.op {
            Op::Get { .. } | Op::Delete { .. } => {}
            Op::Put { value, .. } | Op::Append { value, .. } => {
                write!(f, " {}", show_bytes(value))?;
            }
            Op::Cas { expected, new, .. } => write!(
                f,
                " expected {} new {}",
                show_state(expected.as_deref()),
                show_bytes(new)
            )?,
        }
        match &self.result {
            OpResult::Ok { output, return_ns } => {
                match output {
                    Output::Get(value) => write!(f, " -> {}", show_state(value.as_deref()))?,
                    Output::Cas { swapped } => write!(f, " -> swapped={swapped}")?,
                    Output::Deleted { existed } => write!(f, " -> existed={existed}")?,
                    Output::Put | Output::Append | Output::Delete => write!(f, " -> ok")?,
                }
                write!(f, " [call {} ns, return {return_ns} ns]", self.call_ns)
            }
            OpResult::Unknown => write!(f, " -> unknown [call {} ns, no return]", self.call_ns),
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
