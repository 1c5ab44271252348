//! The generic replicated state machine layer: one implementation of "Raft + sessions +
//! reads + snapshots" shared by the KV store, the shard controller and the sharded store.
//!
//! A [`StateMachine`] implements `apply` and `query` and is serializable; [`Replica`] does
//! everything else:
//! - writes become log entries carrying (client id, sequence number, command); applying one
//!   consults the session table, so a retried request is applied at most once and answered
//!   with the stored reply (exactly-once across leader changes, restarts and snapshots, since
//!   the table is part of every snapshot);
//! - reads are linearizable through ReadIndex: no log entry per read; the read is served once
//!   the state machine applied the confirmed index;
//! - a snapshot (state machine + sessions) is taken when the persisted Raft state exceeds
//!   `max_raft_state` bytes, never when it is unset;
//! - the persistence contract of the Raft core is kept: the shell persists each Ready and
//!   sends its messages before calling [`Replica::advance`], which applies.
//!
//! Like the Raft core it is deterministic and does no I/O.

mod machine;
mod replica;
mod reply;
mod session;

pub use machine::StateMachine;
pub use replica::{Envelope, Replica, ReplicaOptions};
pub use reply::{Reply, ReqId, RsmError};
pub use session::{Seen, Session, Sessions};
