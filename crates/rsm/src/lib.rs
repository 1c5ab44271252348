//! The generic replicated state machine layer: one implementation of "Raft + sessions +
//! reads + snapshots" shared by the KV store, the shard controller and the sharded store.
//!
//! A [`StateMachine`] implements `apply`, `apply_internal`, `query` and `validate` and is
//! serializable; [`Replica`] does everything else:
//! - a client [`Request`] is validated, then read or proposed ([`Replica::submit`]);
//! - writes become log entries carrying (client id, sequence number, retry flag, command);
//!   applying one consults the session table, so a retried request is applied at most once
//!   and answered from the stored record (exactly-once across leader changes, restarts and
//!   snapshots, since the table is part of every snapshot). A refusal (`apply` returning
//!   `Err`, such as `WrongGroup`) is answered but not recorded, so the request can still
//!   apply elsewhere;
//! - the session table is bounded ([`SessionLimits`], the same on every member): a session
//!   expires after `idle_entries_max` applied entries without activity, and a full table
//!   evicts the least recently active one. Expiry counts log entries, not time (thesis
//!   §6.3 stamps entries with the leader's clock instead): every replica applies the same
//!   entries, so it drops the same sessions at the same position with no clock in the log,
//!   and a busier group forgets idle clients sooner, which is what bounds its memory. A
//!   retry (the client got no definite answer to an earlier attempt) of a client whose
//!   session is gone (or, after a merge with dropped sessions, older than that merge) is
//!   answered `SessionExpired` (may have applied), never applied again; only its own log
//!   position decides that, after leadership and the state machine's refusal
//!   ([`StateMachine::admits`], e.g. `WrongGroup`); a first attempt needs no session.
//!   Sessions keep only [`StateMachine::record`] of an output (no values), and
//!   [`StateMachine::replay`] answers a retry from it;
//! - the group proposes its own commands ([`Replica::propose_internal`]: config steps, shard
//!   installs, deletions) without a session; the state machine may read and merge the
//!   session table while applying ([`Applying`]), so sessions can move with shards;
//! - reads are linearizable through ReadIndex: no log entry per read; the read is served once
//!   the state machine applied the confirmed index;
//! - a snapshot (state machine + sessions) is taken when the persisted Raft state exceeds
//!   `raft_state_bytes_max` bytes, never when it is unset;
//! - membership changes go through [`Replica::propose_conf_change`] (one server at a time,
//!   the Raft core's rules); they are not state machine commands, and each one applied is
//!   reported to the shell ([`Replica::take_applied_conf_changes`]) so that it can record
//!   the voter set and learn a new member's address;
//! - the persistence contract of the Raft core is kept: the shell persists each Ready and
//!   sends its messages before calling [`Replica::advance`], which applies.
//!
//! There is one error type, [`Error`], from here through the wire to the client.
//!
//! Asserted on the apply path: entries apply contiguously, a read is served only at or after
//! its confirmed index, an installed or taken snapshot only moves forward.
//!
//! A committed entry (or snapshot) this build cannot decode is never skipped: another
//! member, of another version, may have applied it, so skipping would diverge silently.
//! [`Replica::advance`] returns an error naming the entry's index and term and saying it
//! was written by an incompatible version (or is damaged); the host treats that as fatal
//! and the process exits non-zero.
//!
//! Like the Raft core it is deterministic and does no I/O.

mod error;
mod machine;
mod replica;
mod request;
mod session;
pub mod testing;

pub use error::{Error, Outcome, Reply};
pub use machine::{Applying, StateMachine};
pub use replica::{CONF_APPLIED_MAX, Replica, ReplicaOptions};
pub use request::{NoInternal, Proposal, Request};
pub use session::{DROPPED_REMEMBERED, Seen, Session, SessionLimits, Sessions};

/// An identifier the shell gives each request so it can route the reply back.
pub type ReqId = u64;
