//! A porcupine-style linearizability checker for shardkv's key-value model.
//!
//! **What it is.** Given a concurrent history of client operations (Get, Put, Append,
//! Delete, CAS on byte keys and values, and the Redis front end's Set with a condition,
//! GetDel, AppendLen, IncrBy, StrLen and the multi-key DeleteMany, PutMany, GetMany,
//! Exists, and a Pipeline of any of them: one operation whose effect is its operations
//! applied in order at one instant, linking all their keys), each with its call time and
//! either its return time
//! and output or an unknown outcome, [`check`] decides whether some total order of the
//! operations (a) respects real time: an operation that returned before another was called
//! comes first, and (b) replays through the sequential KV model with every recorded output.
//!
//! **Contract.**
//! - [`Verdict::Linearizable`] and [`Verdict::NotLinearizable`] are exact: never a false
//!   verdict. The work is bounded by a deterministic [`Budget`] of search steps and memo
//!   bytes per key (no clocks); running out gives [`Verdict::Unknown`], which claims
//!   nothing. The same history and budget always give the same verdict and explanation.
//! - The history is split per key, or rather per connected component of keys touched
//!   together by multi-key ops (whose state is the map of its keys); components are checked
//!   in the byte order of their first key and the verdict names the first failing one's
//!   first key, with a human-readable explanation (the longest linearizable prefix found and
//!   the op that could not be placed). A history of single-key ops has one component per key.
//! - An operation with [`OpResult::Unknown`] (a timeout) took effect once at some instant
//!   after its call, or never: its return time is +infinity and it need not be linearized.
//!   An unknown read constrains nothing and is dropped. Definitely-failed operations must
//!   not be passed in at all.
//! - A missing key and an empty value are different states. Every key starts missing.
//! - Operations that touch at the same instant (one returns at t, another is called at t)
//!   count as concurrent, as in porcupine.
//! - Malformed operations (output kind not matching the op, return before call) are a
//!   programmer error and panic; [`read_history_jsonl`] rejects them with the line number.
//!
//! **What it is not.** Not a checker of other models, not a checker of session guarantees
//! or exactly-once delivery beyond what linearizability implies (a duplicated append shows up
//! as a read no order explains), and not a visualizer. The [`synth`] module generates
//! test histories; it is not part of checking.
//!
//! **Algorithm.** Wing & Gong's search with Lowe's memoization, as in porcupine: events
//! sorted by time (calls before returns at equal times) in a doubly linked list; linearizing
//! an op lifts its call and return out of the list, backtracking puts them back; a cache of
//! (set of linearized ops as a bit set, state) cuts every configuration seen before. States
//! are interned so a step is an integer comparison. Beyond porcupine: reads never cause
//! branching, failed configurations also cut their variants with extra unknown-outcome ops,
//! two candidate orders race side by side, a look-ahead cuts every configuration in which
//! some pending read's value can no longer be produced (which keeps bursts of concurrent
//! appends linear: each order of them is a distinct state the memo cannot merge), and a
//! time-free check refutes reads of values that no combination of the key's writes
//! produces, each applied at most once (see the `search`, `cache`, `reach` and
//! `producible` modules). The look-ahead and the time-free check model the values of one
//! key written by Put, CAS, Set, Append, AppendLen, Delete and GetDel; a component of
//! several keys, or one with IncrBy, DeleteMany, PutMany or a pipeline that writes, is
//! searched without them (its
//! states are then interned maps, or numbers, which the memo merges well).
//!
//! **Limits.** Checking is NP-complete in general. Keys with a handful of concurrent clients
//! check in milliseconds per thousand ops; a single key hammered by ~15 fully overlapping
//! clients, or refuting a history with many unknown appends pending at once, can exhaust
//! the budget and give `Unknown`.
//!
//! ```
//! use shardkv_lincheck::{check, Budget, Op, OpResult, Operation, Output, Verdict};
//!
//! let key = b"x".to_vec();
//! let put = Operation {
//!     client: 1,
//!     op: Op::Put { key: key.clone(), value: b"1".to_vec() },
//!     call_ns: 0,
//!     result: OpResult::Ok { output: Output::Put, return_ns: 10 },
//! };
//! // A read that starts after the put returned must see it.
//! let stale_read = Operation {
//!     client: 2,
//!     op: Op::Get { key: key.clone() },
//!     call_ns: 20,
//!     result: OpResult::Ok { output: Output::Get(None), return_ns: 30 },
//! };
//! assert!(check(&[put.clone()], Budget::default()).is_linearizable());
//! assert!(matches!(
//!     check(&[put, stale_read], Budget::default()),
//!     Verdict::NotLinearizable { .. }
//! ));
//! ```

mod bitset;
mod cache;
mod checker;
mod events;
mod explain;
mod jsonl;
mod model;
mod producible;
mod reach;
mod search;
mod semantics;
mod states;
pub mod synth;
mod verdict;

pub use checker::{check, check_report};
pub use jsonl::{
    HistoryRecord, OpKind, ParseError, ParseErrorKind, RecordOutput, RedisFields, Status, When,
    read_history_jsonl, write_op_jsonl, write_record_jsonl,
};
pub use model::{InvalidOperation, Op, OpResult, Operation, Output, SetWhen};
pub use semantics::{KeyValues, VALUE_BYTES_MAX, parse_canonical_i64};
pub use verdict::{Budget, KeyOutcome, KeyReport, Report, Verdict};
