//! What travels to a replica ([`Request`]) and what a replica puts in the log
//! ([`Proposal`]).

use serde::{Deserialize, Serialize};
use shardkv_types::{ClientId, Seq};

/// A client request as it travels to a server: a read, served by ReadIndex without a log
/// entry, or a write numbered in its client's session for exactly-once application.
///
/// `retry` is set when an earlier attempt of the same write may have applied (the client
/// got no definite answer to it): if the group no longer holds the client's session, such
/// a write is refused with `SessionExpired` instead of being applied a second time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<C, Q> {
    Read(Q),
    Write {
        client: ClientId,
        seq: Seq,
        retry: bool,
        cmd: C,
    },
}

impl<C, Q> Request<C, Q> {
    pub fn is_write(&self) -> bool {
        matches!(self, Request::Write { .. })
    }
}

/// The payload of a log entry: a client's write with its session coordinates, or a command
/// the group proposed itself (a config step, a shard install, a deletion), which has no
/// session and no client waiting on it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Proposal<C, I> {
    Client {
        client: ClientId,
        seq: Seq,
        retry: bool,
        cmd: C,
    },
    Internal(I),
}

/// The internal command type of a state machine that has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoInternal {}
