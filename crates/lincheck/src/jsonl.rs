//! The history file format: one JSON object per line, one line per operation.
//!
//! ```text
//! {"client":7,"op":"cas","key":"k","value":"new","expected":null,"output":true,
//!  "start_ns":100,"end_ns":250,"status":"ok"}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `client` | client id (u64) |
//! | `op` | `get`, `put`, `append`, `del` or `cas` |
//! | `key` | the key (UTF-8) |
//! | `value` | put / append: the value; cas: the new value; absent otherwise |
//! | `expected` | cas only: the expected value, `null` = the key must be absent |
//! | `output` | status ok only: get: the value read or `null` (missing key); cas: `true` if swapped; del: `true` if the key existed, `false` if not, absent (or `null`) if not known; absent (or `null`) for put / append |
//! | `start_ns`, `end_ns` | call and return times, ns on one monotonic clock |
//! | `status` | `ok`; `failed` (surely not applied: dropped on read); `unknown` (timed out: may have applied; `end_ns` is ignored) |
//!
//! Unknown fields are ignored, so writers may add their own (latency, node, ...).

use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{Op, OpResult, Operation, Output};

/// The op kinds, spelled as in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Get,
    Put,
    Append,
    Del,
    Cas,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Get => "get",
            OpKind::Put => "put",
            OpKind::Append => "append",
            OpKind::Del => "del",
            OpKind::Cas => "cas",
        })
    }
}

/// How the operation ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Completed with `output`.
    Ok,
    /// Surely not applied (e.g. rejected before proposing).
    Failed,
    /// Outcome unknown (timeout): may or may not have applied.
    Unknown,
}

/// The `output` field: a bool for cas (swapped) and del (the key existed), a string or
/// `null` for get.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordOutput {
    Swapped(bool),
    Value(Option<String>),
}

/// One line of a history file. Build one per operation and write it with
/// [`write_record_jsonl`]; read a file with [`read_history_jsonl`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub client: u64,
    pub op: OpKind,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Outer `None`: field absent; `Some(None)`: `null` (the key must be absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub expected: Option<Option<String>>,
    /// Outer `None`: field absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub output: Option<RecordOutput>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status: Status,
}

/// Deserializes a field that is present (possibly `null`) as `Some`; absence is left to
/// `#[serde(default)]`. Distinguishes `"expected": null` from no `expected`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A bad history file: what is wrong and on which line (1-based).
#[derive(Debug)]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

/// What went wrong on the line.
#[derive(Debug)]
pub enum ParseErrorKind {
    /// Reading failed.
    Io(io::Error),
    /// Not a JSON object of the expected shape.
    Json(serde_json::Error),
    /// Well-formed JSON that does not describe a valid operation.
    Invalid(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ParseErrorKind::Io(e) => write!(f, "history line {}: read error: {e}", self.line),
            ParseErrorKind::Json(e) => write!(f, "history line {}: bad JSON: {e}", self.line),
            ParseErrorKind::Invalid(m) => write!(f, "history line {}: {m}", self.line),
        }
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ParseErrorKind::Io(e) => Some(e),
            ParseErrorKind::Json(e) => Some(e),
            ParseErrorKind::Invalid(_) => None,
        }
    }
}

/// Reads a JSONL history. `failed` operations are dropped, `unknown` ones become
/// [`OpResult::Unknown`]; blank lines are skipped. Every returned operation passes
/// [`Operation::validate`].
pub fn read_history_jsonl<R: BufRead>(reader: R) -> Result<Vec<Operation>, ParseError> {
    let mut history = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let fail = |kind| ParseError {
            line: line_number,
            kind,
        };
        let line = line.map_err(|e| fail(ParseErrorKind::Io(e)))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: HistoryRecord =
            serde_json::from_str(&line).map_err(|e| fail(ParseErrorKind::Json(e)))?;
        if let Some(operation) = record
            .to_operation()
            .map_err(|m| fail(ParseErrorKind::Invalid(m)))?
        {
            history.push(operation);
        }
    }
    Ok(history)
}

/// Writes one record as a JSON line.
pub fn write_record_jsonl<W: Write>(mut writer: W, record: &HistoryRecord) -> io::Result<()> {
    serde_json::to_writer(&mut writer, record)?;
    writer.write_all(b"\n")
}

/// Writes one operation as a JSON line. An unknown outcome is written with
/// `end_ns = call_ns` (readers ignore it).
///
/// Errors with `InvalidData` if a key or value is not UTF-8 (the format holds text).
pub fn write_op_jsonl<W: Write>(writer: W, operation: &Operation) -> io::Result<()> {
    let record = HistoryRecord::from_operation(operation)
        .map_err(|m| io::Error::new(io::ErrorKind::InvalidData, m))?;
    write_record_jsonl(writer, &record)
}

impl HistoryRecord {
    /// The record of a known-ok or unknown operation. Errors if bytes are not UTF-8.
    pub fn from_operation(operation: &Operation) -> Result<HistoryRecord, String> {
        let text = |bytes: &[u8], what: &str| {
            String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
        };
        let (op, value, expected) = match &operation.op {
            Op::Get { .. } => (OpKind::Get, None, None),
            Op::Put { value, .. } => (OpKind::Put, Some(text(value, "value")?), None),
            Op::Append { value, .. } => (OpKind::Append, Some(text(value, "value")?), None),
            Op::Delete { .. } => (OpKind::Del, None, None),
            Op::Cas { expected, new, .. } => (
                OpKind::Cas,
                Some(text(new, "new value")?),
                Some(
                    expected
                        .as_deref()
                        .map(|e| text(e, "expected value"))
                        .transpose()?,
                ),
            ),
        };
        let (status, output, end_ns) = match &operation.result {
            OpResult::Unknown => (Status::Unknown, None, operation.call_ns),
            OpResult::Ok { output, return_ns } => {
                let output = match output {
                    Output::Get(v) => Some(RecordOutput::Value(
                        v.as_deref().map(|v| text(v, "output")).transpose()?,
                    )),
                    Output::Cas { swapped } => Some(RecordOutput::Swapped(*swapped)),
                    Output::Deleted { existed } => Some(RecordOutput::Swapped(*existed)),
                    Output::Put | Output::Append | Output::Delete => None,
                };
                (Status::Ok, output, *return_ns)
            }
        };
        Ok(HistoryRecord {
            client: operation.client,
            op,
            key: text(operation.op.key(), "key")?,
            value,
            expected,
            output,
            start_ns: operation.call_ns,
            end_ns,
            status,
        })
    }

    /// The operation this record describes, `None` for a `failed` one; `Err` names what is
    /// missing or inconsistent.
    pub fn to_operation(&self) -> Result<Option<Operation>, String> {
        let key = self.key.as_bytes().to_vec();
        let value = || {
            self.value
                .as_ref()
                .map(|v| v.as_bytes().to_vec())
                .ok_or_else(|| format!("{} needs a \"value\"", self.op))
        };
        let op = match self.op {
            OpKind::Get => Op::Get { key },
            OpKind::Put => Op::Put {
                key,
                value: value()?,
            },
            OpKind::Append => Op::Append {
                key,
                value: value()?,
            },
            OpKind::Del => Op::Delete { key },
            OpKind::Cas => {
                let expected = self.expected.as_ref().ok_or(
                    "cas needs \"expected\" (a string, or null for a missing key)".to_string(),
                )?;
                Op::Cas {
                    key,
                    expected: expected.as_ref().map(|e| e.as_bytes().to_vec()),
                    new: value()?,
                }
            }
        };
        let result = match self.status {
            Status::Failed => return Ok(None),
            Status::Unknown => OpResult::Unknown,
            Status::Ok => OpResult::Ok {
                output: self.ok_output()?,
                return_ns: self.end_ns,
            },
        };
        let operation = Operation {
            client: self.client,
            op,
            call_ns: self.start_ns,
            result,
        };
        operation.validate().map_err(|e| e.to_string())?;
        Ok(Some(operation))
    }

    fn ok_output(&self) -> Result<Output, String> {
        match (self.op, &self.output) {
            (OpKind::Get, Some(RecordOutput::Value(v))) => {
                Ok(Output::Get(v.as_ref().map(|v| v.as_bytes().to_vec())))
            }
            (OpKind::Get, _) => {
                Err("ok get needs \"output\": a string, or null for a missing key".into())
            }
            (OpKind::Cas, Some(RecordOutput::Swapped(swapped))) => {
                Ok(Output::Cas { swapped: *swapped })
            }
            (OpKind::Cas, _) => {
                Err("ok cas needs \"output\": true if it swapped, else false".into())
            }
            (OpKind::Del, Some(RecordOutput::Swapped(existed))) => {
                Ok(Output::Deleted { existed: *existed })
            }
            (kind, None | Some(RecordOutput::Value(None))) => Ok(match kind {
                OpKind::Put => Output::Put,
                OpKind::Append => Output::Append,
                _ => Output::Delete,
            }),
            (kind, Some(_)) => Err(format!("{kind} has no output; found {:?}", self.output)),
        }
    }
}
