//! The host's two outward seams besides the disk: where messages go ([`Transport`]) and who
//! watches ([`Observer`]: the shell's log, the simulator's checker).

use shardkv_raft::{Message, RawNode, Status};
use shardkv_types::{Entry, LogIndex, NodeId, Term};
use std::path::PathBuf;

/// Where a host's Raft messages go. Sending never blocks and never fails: a transport that
/// cannot deliver drops (Raft retries).
pub trait Transport {
    fn send(&mut self, m: Message);
}

impl Transport for Vec<Message> {
    fn send(&mut self, m: Message) {
        self.push(m);
    }
}

impl<F: FnMut(Message)> Transport for F {
    fn send(&mut self, m: Message) {
        self(m)
    }
}

/// Something the shell must know about (and the server logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// Persisting a Ready failed without harm (`NoSpace`; or a snapshot from the leader
    /// whose save failed before anything on disk changed): the node stalls and retries
    /// until it can. `why` says which. Reported once per stall.
    Stalled { path: PathBuf, why: String },
    /// The stalled Ready was persisted: the node works again.
    Resumed,
    /// A snapshot the app took was saved.
    SnapshotSaved { index: LogIndex, bytes: usize },
    /// A snapshot the app took was not saved (no space, no file descriptor, no permission,
    /// a failed fsync of its temp file): the log is still complete and the host holds
    /// snapshots back for `retry_in_ticks` before the app may take another.
    SnapshotNotSaved {
        index: LogIndex,
        error: String,
        retry_in_ticks: u64,
    },
}

/// Hooks into the Ready loop. Every method has a no-op default; an `Err` from a checking
/// hook aborts `drive` with `Fatal::Observer` (the simulator's safety violation).
pub trait Observer {
    /// `entry` of node `id` is about to be written; `prev_term` is the term of the entry
    /// before it (`None` if the log does not know it, which is a bug).
    fn on_persist(
        &mut self,
        _id: NodeId,
        _entry: &Entry,
        _prev_term: Option<Term>,
    ) -> Result<(), String> {
        Ok(())
    }
    /// `entry` is committed and about to be applied on node `id`.
    fn on_apply(&mut self, _id: NodeId, _entry: &Entry) -> Result<(), String> {
        Ok(())
    }
    /// `raft` just became leader (before it applies the Ready that says so).
    fn on_leader(&mut self, _raft: &RawNode) -> Result<(), String> {
        Ok(())
    }
    /// The node's status after each `advance`.
    fn on_status(&mut self, _status: &Status) -> Result<(), String> {
        Ok(())
    }
    /// Something the shell must log.
    fn on_event(&mut self, _id: NodeId, _event: HostEvent) {}
}

/// An observer that watches nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}
