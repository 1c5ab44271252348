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
//! | `op` | `get`, `put`, `append`, `del`, `cas`; `set`, `getdel`, `appendlen`, `incrby`, `strlen`; multi-key: `delmany`, `putmany`, `getmany`, `exists`; `pipeline` |
//! | `key` | the key (UTF-8); absent (or `""`) for a multi-key op and a pipeline |
//! | `keys` | multi-key ops only: the keys, in order |
//! | `value` | put / append / set / appendlen: the value; cas: the new value; absent otherwise |
//! | `values` | putmany only: the values, one per key of `keys` |
//! | `expected` | cas only: the expected value, `null` = the key must be absent |
//! | `when` | set only: `always` (the default), `absent` (Redis NX) or `present` (XX) |
//! | `get` | set only: whether it answers the value it found (default `false`) |
//! | `by` | incrby only: the increment |
//! | `ops` | pipeline only: its operations, in order, each a record of this format (its `client`, times and `status` those of the pipeline; none a pipeline) holding its own `output` |
//! | `output` | status ok only: get, getdel: the value read or `null` (missing key); cas: `true` if swapped; del: `true` if the key existed, `false` if not, absent (or `null`) if not known; absent (or `null`) for put / append / putmany; set: `{"applied": bool, "old": string or null}`; appendlen, strlen: the length; incrby: the sum, or `{"error": "not an integer"}` / `{"error": "overflow"}`; append / appendlen of a pipeline past the value limit: `{"error": "too large"}`; delmany, exists: the count; getmany: an array of strings and `null`s |
//! | `start_ns`, `end_ns` | call and return times, ns on one monotonic clock |
//! | `status` | `ok`; `failed` (surely not applied: dropped on read); `unknown` (timed out: may have applied; `end_ns` is ignored) |
//!
//! Unknown fields are ignored, so writers may add their own (latency, node, ...).

use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{Op, OpResult, Operation, Output, SetWhen};

/// The op kinds, spelled as in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Get,
    Put,
    Append,
    Del,
    Cas,
    Set,
    GetDel,
    AppendLen,
    IncrBy,
    StrLen,
    DelMany,
    PutMany,
    GetMany,
    Exists,
    Pipeline,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Get => "get",
            OpKind::Put => "put",
            OpKind::Append => "append",
            OpKind::Del => "del",
            OpKind::Cas => "cas",
            OpKind::Set => "set",
            OpKind::GetDel => "getdel",
            OpKind::AppendLen => "appendlen",
            OpKind::IncrBy => "incrby",
            OpKind::StrLen => "strlen",
            OpKind::DelMany => "delmany",
            OpKind::PutMany => "putmany",
            OpKind::GetMany => "getmany",
            OpKind::Exists => "exists",
            OpKind::Pipeline => "pipeline",
        })
    }
}

/// The `when` field of a set, spelled as in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    #[default]
    Always,
    Absent,
    Present,
}

impl From<When> for SetWhen {
    fn from(when: When) -> SetWhen {
        match when {
            When::Always => SetWhen::Always,
            When::Absent => SetWhen::Absent,
            When::Present => SetWhen::Present,
        }
    }
}

impl From<SetWhen> for When {
    fn from(when: SetWhen) -> When {
        match when {
            SetWhen::Always => When::Always,
            SetWhen::Absent => When::Absent,
            SetWhen::Present => When::Present,
        }
    }
}

/// The fields of the Redis front end's operations (all absent for the older ones, so older
/// files read and older writers need not know them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisFields {
    /// Multi-key ops: the keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// putmany: the values, one per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// set: when it applies (absent: always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    /// set: whether it answers the value it found (absent: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get: Option<bool>,
    /// incrby: the increment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<i64>,
    /// pipeline: its operations (absent in files written before pipelines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<Vec<HistoryRecord>>,
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
/// `null` for get and getdel, a number for the counts, lengths and sums, an array for
/// getmany, an object for set and for incrby's errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordOutput {
    Swapped(bool),
    Value(Option<String>),
    Int(i64),
    Values(Vec<Option<String>>),
    Set { applied: bool, old: Option<String> },
    Error { error: String },
}

/// The `error` of an incrby whose value is not an integer.
const NOT_AN_INTEGER: &str = "not an integer";
/// The `error` of an incrby whose sum overflows.
const OVERFLOW: &str = "overflow";
/// The `error` of an append or appendlen (of a pipeline) past the value limit.
const TOO_LARGE: &str = "too large";

/// One line of a history file. Build one per operation and write it with
/// [`write_record_jsonl`]; read a file with [`read_history_jsonl`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub client: u64,
    pub op: OpKind,
    /// Empty (and not written) for a multi-key op, which has `redis.keys`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
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
    /// The fields only the Redis front end's ops have.
    #[serde(flatten)]
    pub redis: RedisFields,
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

/// The records of a pipeline's operations, each with the pipeline's client, times and
/// status, and its own output.
fn pipeline_records(operation: &Operation, ops: &[Op]) -> Result<Vec<HistoryRecord>, String> {
    let outputs: Vec<Option<&Output>> = match &operation.result {
        OpResult::Ok {
            output: Output::Outputs(outs),
            ..
        } => outs.iter().map(Some).collect(),
        OpResult::Ok { output, .. } => {
            return Err(format!("a pipeline with a {} output", output.name()));
        }
        OpResult::Unknown => ops.iter().map(|_| None).collect(),
    };
    ops.iter()
        .zip(outputs)
        .map(|(op, output)| {
            let result = match (output, &operation.result) {
                (Some(output), OpResult::Ok { return_ns, .. }) => OpResult::Ok {
                    output: output.clone(),
                    return_ns: *return_ns,
                },
                _ => OpResult::Unknown,
            };
            HistoryRecord::from_operation(&Operation {
                client: operation.client,
                op: op.clone(),
                call_ns: operation.call_ns,
                result,
            })
        })
        .collect()
}

impl HistoryRecord {
    /// The record of a known-ok or unknown operation. Errors if bytes are not UTF-8.
    pub fn from_operation(operation: &Operation) -> Result<HistoryRecord, String> {
        let text = |bytes: &[u8], what: &str| {
            String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
        };
        let texts = |all: &mut dyn Iterator<Item = &[u8]>, what: &str| {
            all.map(|bytes| text(bytes, what))
                .collect::<Result<Vec<String>, String>>()
        };
        let mut redis = RedisFields::default();
        let (op, value, expected) = match &operation.op {
            Op::Pipeline { ops } => {
                redis.ops = Some(pipeline_records(operation, ops)?);
                (OpKind::Pipeline, None, None)
            }
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
            Op::Set {
                value, when, get, ..
            } => {
                redis.when = Some((*when).into());
                redis.get = Some(*get);
                (OpKind::Set, Some(text(value, "value")?), None)
            }
            Op::GetDel { .. } => (OpKind::GetDel, None, None),
            Op::AppendLen { value, .. } => (OpKind::AppendLen, Some(text(value, "value")?), None),
            Op::IncrBy { by, .. } => {
                redis.by = Some(*by);
                (OpKind::IncrBy, None, None)
            }
            Op::StrLen { .. } => (OpKind::StrLen, None, None),
            Op::DeleteMany { .. } => (OpKind::DelMany, None, None),
            Op::GetMany { .. } => (OpKind::GetMany, None, None),
            Op::Exists { .. } => (OpKind::Exists, None, None),
            Op::PutMany { pairs } => {
                let mut values = pairs.iter().map(|(_, v)| v.as_slice());
                redis.values = Some(texts(&mut values, "value")?);
                (OpKind::PutMany, None, None)
            }
        };
        let multi_key = matches!(
            op,
            OpKind::DelMany | OpKind::PutMany | OpKind::GetMany | OpKind::Exists
        );
        let key = if op == OpKind::Pipeline {
            String::new()
        } else if multi_key {
            redis.keys = Some(texts(&mut operation.op.keys(), "key")?);
            String::new()
        } else {
            text(operation.op.key(), "key")?
        };
        let (status, output, end_ns) = match &operation.result {
            OpResult::Unknown => (Status::Unknown, None, operation.call_ns),
            OpResult::Ok { output, return_ns } => {
                let value =
                    |v: &Option<Vec<u8>>| v.as_deref().map(|v| text(v, "output")).transpose();
                let output = match output {
                    Output::Get(v) => Some(RecordOutput::Value(value(v)?)),
                    Output::Cas { swapped } => Some(RecordOutput::Swapped(*swapped)),
                    Output::Deleted { existed } => Some(RecordOutput::Swapped(*existed)),
                    Output::Put | Output::Append | Output::Delete => None,
                    Output::Set { applied, old } => Some(RecordOutput::Set {
                        applied: *applied,
                        old: value(old)?,
                    }),
                    Output::Int(n) => Some(RecordOutput::Int(*n)),
                    Output::Values(values) => Some(RecordOutput::Values(
                        values.iter().map(value).collect::<Result<_, _>>()?,
                    )),
                    Output::NotAnInteger => Some(RecordOutput::Error {
                        error: NOT_AN_INTEGER.into(),
                    }),
                    Output::Overflow => Some(RecordOutput::Error {
                        error: OVERFLOW.into(),
                    }),
                    Output::TooLarge => Some(RecordOutput::Error {
                        error: TOO_LARGE.into(),
                    }),
                    // Each operation's output is in its own record (`ops`).
                    Output::Outputs(_) => None,
                };
                (Status::Ok, output, *return_ns)
            }
        };
        Ok(HistoryRecord {
            client: operation.client,
            op,
            key,
            value,
            expected,
            output,
            start_ns: operation.call_ns,
            end_ns,
            status,
            redis,
        })
    }

    /// The operation this record describes, `None` for a `failed` one; `Err` names what is
    /// missing or inconsistent.
    pub fn to_operation(&self) -> Result<Option<Operation>, String> {
        if self.op == OpKind::Pipeline {
            return self.pipeline_to_operation();
        }
        let key = self.key.as_bytes().to_vec();
        let value = || {
            self.value
                .as_ref()
                .map(|v| v.as_bytes().to_vec())
                .ok_or_else(|| format!("{} needs a \"value\"", self.op))
        };
        let keys = || -> Result<Vec<Vec<u8>>, String> {
            let keys = self
                .redis
                .keys
                .as_ref()
                .ok_or_else(|| format!("{} needs \"keys\"", self.op))?;
            Ok(keys.iter().map(|k| k.as_bytes().to_vec()).collect())
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
            OpKind::Set => Op::Set {
                key,
                value: value()?,
                when: self.redis.when.unwrap_or_default().into(),
                get: self.redis.get.unwrap_or(false),
            },
            OpKind::GetDel => Op::GetDel { key },
            OpKind::AppendLen => Op::AppendLen {
                key,
                value: value()?,
            },
            OpKind::IncrBy => Op::IncrBy {
                key,
                by: self.redis.by.ok_or("incrby needs \"by\"")?,
            },
            OpKind::StrLen => Op::StrLen { key },
            OpKind::DelMany => Op::DeleteMany { keys: keys()? },
            OpKind::GetMany => Op::GetMany { keys: keys()? },
            OpKind::Exists => Op::Exists { keys: keys()? },
            OpKind::Pipeline => unreachable!("taken apart above"),
            OpKind::PutMany => {
                let keys = keys()?;
                let values = self
                    .redis
                    .values
                    .as_ref()
                    .ok_or("putmany needs \"values\"")?;
                if values.len() != keys.len() {
                    return Err(format!(
                        "putmany has {} keys but {} values",
                        keys.len(),
                        values.len()
                    ));
                }
                let values = values.iter().map(|v| v.as_bytes().to_vec());
                Op::PutMany {
                    pairs: keys.into_iter().zip(values).collect(),
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

    /// A pipeline's operation: each of `ops` read as a record with the pipeline's client,
    /// times and status.
    fn pipeline_to_operation(&self) -> Result<Option<Operation>, String> {
        let records = self.redis.ops.as_ref().ok_or("pipeline needs \"ops\"")?;
        let (mut ops, mut outputs) = (Vec::new(), Vec::new());
        for record in records {
            if record.op == OpKind::Pipeline {
                return Err("a pipeline within a pipeline".into());
            }
            let record = HistoryRecord {
                client: self.client,
                start_ns: self.start_ns,
                end_ns: self.end_ns,
                status: self.status,
                ..record.clone()
            };
            let Some(operation) = record.to_operation()? else {
                return Ok(None);
            };
            ops.push(operation.op);
            if let OpResult::Ok { output, .. } = operation.result {
                outputs.push(output);
            }
        }
        let result = match self.status {
            Status::Failed => return Ok(None),
            Status::Unknown => OpResult::Unknown,
            Status::Ok => OpResult::Ok {
                output: Output::Outputs(outputs),
                return_ns: self.end_ns,
            },
        };
        let operation = Operation {
            client: self.client,
            op: Op::Pipeline { ops },
            call_ns: self.start_ns,
            result,
        };
        operation.validate().map_err(|e| e.to_string())?;
        Ok(Some(operation))
    }

    fn ok_output(&self) -> Result<Output, String> {
        let bytes = |v: &Option<String>| v.as_ref().map(|v| v.as_bytes().to_vec());
        match (self.op, &self.output) {
            (OpKind::Get | OpKind::GetDel, Some(RecordOutput::Value(v))) => {
                Ok(Output::Get(bytes(v)))
            }
            (OpKind::Get | OpKind::GetDel, _) => Err(format!(
                "ok {} needs \"output\": a string, or null for a missing key",
                self.op
            )),
            (OpKind::Cas, Some(RecordOutput::Swapped(swapped))) => {
                Ok(Output::Cas { swapped: *swapped })
            }
            (OpKind::Cas, _) => {
                Err("ok cas needs \"output\": true if it swapped, else false".into())
            }
            (OpKind::Del, Some(RecordOutput::Swapped(existed))) => {
                Ok(Output::Deleted { existed: *existed })
            }
            (OpKind::Set, Some(RecordOutput::Set { applied, old })) => Ok(Output::Set {
                applied: *applied,
                old: bytes(old),
            }),
            (OpKind::Set, _) => {
                Err("ok set needs \"output\": {\"applied\": bool, \"old\": string or null}".into())
            }
            (OpKind::Append | OpKind::AppendLen, Some(RecordOutput::Error { error })) => {
                match error.as_str() {
                    TOO_LARGE => Ok(Output::TooLarge),
                    other => Err(format!("{} error {other:?} is not {TOO_LARGE:?}", self.op)),
                }
            }
            (OpKind::IncrBy, Some(RecordOutput::Error { error })) => match error.as_str() {
                NOT_AN_INTEGER => Ok(Output::NotAnInteger),
                OVERFLOW => Ok(Output::Overflow),
                other => Err(format!(
                    "incrby error {other:?} is neither {NOT_AN_INTEGER:?} nor {OVERFLOW:?}"
                )),
            },
            (
                OpKind::AppendLen
                | OpKind::StrLen
                | OpKind::IncrBy
                | OpKind::DelMany
                | OpKind::Exists,
                Some(RecordOutput::Int(n)),
            ) => Ok(Output::Int(*n)),
            (
                OpKind::AppendLen
                | OpKind::StrLen
                | OpKind::IncrBy
                | OpKind::DelMany
                | OpKind::Exists,
                _,
            ) => Err(format!("ok {} needs \"output\": a number", self.op)),
            (OpKind::GetMany, Some(RecordOutput::Values(values))) => {
                Ok(Output::Values(values.iter().map(bytes).collect()))
            }
            (OpKind::GetMany, _) => {
                Err("ok getmany needs \"output\": an array of strings and nulls".into())
            }
            (kind, None | Some(RecordOutput::Value(None))) => Ok(match kind {
                OpKind::Put | OpKind::PutMany => Output::Put,
                OpKind::Append => Output::Append,
                _ => Output::Delete,
            }),
            (kind, Some(_)) => Err(format!("{kind} has no output; found {:?}", self.output)),
        }
    }
}
