//! `Node`: the one owner of a member's replica and storage. Synchronous: the node thread
//! (see `driver`) feeds it inbox items and ticks, then calls [`Node::drive`], which runs the
//! Ready loop — persist with one fdatasync, send, advance, persist the rsm's snapshot — and
//! answers clients.
//!
//! Latency: a leader sends its appends before its own fdatasync when the Ready changes
//! neither term nor vote (`may_send_before_persisting`), and a Ready that only moves the
//! commit index is written without a sync (`persist`). Both keep the Raft contract: no
//! message leaves that depends on state not yet durable, and the leader's entries count
//! towards a quorum only after they are synced.
//!
//! Failure policy: a storage error other than `NoSpace` is fatal (`drive` returns it and the
//! process exits non-zero; after a failed fsync nothing can be promised). `NoSpace` while
//! persisting a Ready stalls the node: the Ready is kept and retried on every drive, peer
//! messages are dropped, writes are answered `NoSpace` and reads `Unavailable` (a stalled
//! member cannot confirm a read index), until space frees. Separately, while free space is
//! below the configured reserve, writes are answered `NoSpace` before they are proposed and
//! reads keep working.

use crate::handler::{Inbound, KvReply};
use shardkv_kv::{KvReplica, KvRequest};
use shardkv_net::{NodeStatus, PeerTransport};
use shardkv_raft::{Ready, Role};
use shardkv_rsm::{Error, ReqId, Request, Seen};
use shardkv_storage::{FsDisk, RaftStore, StorageError};
use shardkv_types::{NodeId, Term};
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// Client requests waiting for their outcome; more are answered `Busy`.
pub const PENDING_REQUESTS_MAX: usize = 16 * 1024;

/// A storage failure after which the process must stop.
#[derive(Debug)]
pub struct Fatal(pub String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

/// A Ready whose persistence hit `NoSpace`, with what of it is already durable.
struct Stalled {
    rd: Ready,
    snapshot_saved: bool,
    entries_saved: bool,
}

/// One member: replica, storage, transport, and the clients waiting on it.
///
/// Invariant: while `stalled` is set no method of the replica but `advance` (through
/// `drive`) is called, as the Raft core requires between `ready` and `advance`.
pub struct Node {
    id: NodeId,
    replica: KvReplica,
    store: RaftStore<FsDisk>,
    transport: PeerTransport,
    pending: BTreeMap<ReqId, oneshot::Sender<KvReply>>,
    next_req: ReqId,
    stalled: Option<Stalled>,
    /// Free space is below the reserve: writes are refused before they are proposed.
    disk_low: bool,
    /// Role and term last logged.
    seen: (Role, Term, Option<NodeId>),
    /// Term and vote as of the last fdatasync. Invariant: what the store holds durably.
    synced_vote: (Term, Option<NodeId>),
}

impl Node {
    pub fn new(replica: KvReplica, store: RaftStore<FsDisk>, transport: PeerTransport) -> Node {
        let raft = replica.raft();
        let seen = (raft.role(), raft.term(), raft.leader());
        let hs = store.hard_state();
        Node {
            synced_vote: (hs.term, hs.vote),
            id: raft.id(),
            replica,
            store,
            transport,
            pending: BTreeMap::new(),
            next_req: 1,
            stalled: None,
            disk_low: false,
            seen,
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn term(&self) -> Term {
        self.replica.raft().term()
    }

    /// Takes one inbox item (anything but `Stop`).
    pub fn handle(&mut self, item: Inbound) {
        match item {
            Inbound::Raft(msgs) if self.stalled.is_none() => {
                for m in msgs {
                    self.replica.step(m);
                }
            }
            Inbound::Raft(_) => {}
            Inbound::Request { req, reply } => self.request(req, reply),
            Inbound::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Inbound::Stop => {}
        }
    }

    fn request(&mut self, req: KvRequest, reply: oneshot::Sender<KvReply>) {
        let is_write = req.is_write();
        // A retry of a write that already applied gets its stored reply even when new writes
        // are refused: answering NoSpace ("surely not applied") would be wrong for it.
        if let Request::Write { client, seq, .. } = &req
            && let Seen::Duplicate(out) = self.replica.sessions().check(*client, *seq)
        {
            let _ = reply.send(Ok(out.clone()));
            return;
        }
        let refusal = if is_write && (self.disk_low || self.stalled.is_some()) {
            Some(Error::NoSpace)
        } else if self.stalled.is_some() {
            Some(Error::Unavailable {
                reason: "this member's disk is full; ask another member".into(),
            })
        } else if self.pending.len() >= PENDING_REQUESTS_MAX {
            Some(Error::Busy)
        } else {
            None
        };
        if let Some(e) = refusal {
            let _ = reply.send(Err(e));
            return;
        }
        let id = self.next_req;
        self.next_req += 1;
        self.pending.insert(id, reply);
        self.replica.submit(id, req);
    }

    pub fn is_leader(&self) -> bool {
        self.replica.raft().is_leader()
    }

    /// Graceful shutdown of a leader: asks the next member (by id, wrapping) to take over,
    /// so clients see a short hand-off instead of an election timeout. False when there is
    /// nothing to hand off (not the leader, alone, or stalled).
    pub fn begin_hand_off(&mut self) -> bool {
        if self.stalled.is_some() || !self.is_leader() {
            return false;
        }
        let voters = &self.replica.raft().config().voters;
        let next = voters
            .iter()
            .copied()
            .filter(|&v| v > self.id)
            .min()
            .or_else(|| voters.iter().copied().filter(|&v| v != self.id).min());
        let Some(to) = next else {
            return false;
        };
        tracing::info!(term = %self.term(), to = %to, "shutting down: handing leadership off");
        self.replica.transfer_leader(to);
        true
    }

    /// Advances the logical clock by one tick (skipped while stalled).
    pub fn tick(&mut self) {
        if self.stalled.is_none() {
            self.replica.tick();
        }
    }

    /// Sets whether free disk space is below the reserve.
    pub fn set_disk_low(&mut self, low: bool) {
        if low != self.disk_low {
            if low {
                tracing::warn!(term = %self.term(), "free disk space below the reserve: refusing writes");
            } else {
                tracing::info!(term = %self.term(), "free disk space above the reserve again: accepting writes");
            }
        }
        self.disk_low = low;
    }

    /// Forgets requests whose client side gave up (the handler's deadline passed and its
    /// receiver is gone), so the map stays bounded by live requests. The replica still
    /// answers them later; those answers are dropped.
    pub fn forget_abandoned(&mut self) {
        self.pending.retain(|_, tx| !tx.is_closed());
    }

    pub fn status(&self) -> NodeStatus {
        let s = self.replica.raft().status();
        NodeStatus {
            id: s.id,
            role: s.role,
            term: s.term,
            leader: s.leader,
            commit: s.commit,
            applied: s.applied,
            last_index: s.last_index,
            snapshot_index: s.snapshot_index,
            raft_state_bytes: self.store.raft_state_bytes(),
            no_space: self.disk_low || self.stalled.is_some(),
        }
    }

    /// Runs the Ready loop until the core has nothing more (or persistence stalls), then
    /// answers clients. One fdatasync per Ready: everything that arrived since the last
    /// drive shares it (group commit).
    pub fn drive(&mut self) -> Result<(), Fatal> {
        if let Some(st) = self.stalled.take() {
            self.persist_and_finish(st)?;
        }
        while self.stalled.is_none() {
            let Some(mut rd) = self.replica.ready() else {
                break;
            };
            if self.may_send_before_persisting(&rd) {
                for m in std::mem::take(&mut rd.messages) {
                    self.transport.send(m);
                }
            }
            let st = Stalled {
                rd,
                snapshot_saved: false,
                entries_saved: false,
            };
            self.persist_and_finish(st)?;
        }
        self.deliver_replies();
        self.log_role_change();
        Ok(())
    }

    /// True when `rd`'s messages may go out before its entries are durable here: a leader
    /// writes its own log in parallel with replicating it (Raft thesis §10.2.1), which takes
    /// the leader's fdatasync off the commit latency. Safe because the leader's appends do
    /// not depend on its own disk: the core counts the leader's entries towards a quorum
    /// only once `advance` marks them stable, which happens after the sync. Never when the
    /// Ready changes the term or vote, or installs a snapshot: messages may depend on those.
    fn may_send_before_persisting(&self, rd: &Ready) -> bool {
        let vote_changed = rd
            .hard_state
            .is_some_and(|hs| (hs.term, hs.vote) != self.synced_vote);
        self.replica.raft().is_leader() && rd.snapshot.is_none() && !vote_changed
    }

    fn persist_and_finish(&mut self, mut st: Stalled) -> Result<(), Fatal> {
        match self.persist(&mut st) {
            Ok(()) => {}
            Err(StorageError::NoSpace { path }) => {
                if self.stalled.is_none() {
                    tracing::warn!(term = %self.term(), path = %path.display(),
                        "disk full while persisting raft state: stalled until space frees");
                }
                self.stalled = Some(st);
                return Ok(());
            }
            Err(e) => return Err(self.fatal("persisting raft state", e)),
        }
        let mut rd = st.rd;
        for m in std::mem::take(&mut rd.messages) {
            self.transport.send(m);
        }
        let snapshot = self
            .replica
            .advance(rd, self.store.raft_state_bytes())
            .map_err(|e| Fatal(format!("{}: applying a ready: {e}", self.id)))?;
        if let Some(s) = snapshot {
            match self.store.save_snapshot(s.meta, &s.data) {
                Ok(()) => {
                    tracing::debug!(index = %s.meta.index, bytes = s.data.len(), "snapshot saved")
                }
                // The full log is still on disk; a later snapshot will try again.
                Err(StorageError::NoSpace { .. }) => {
                    tracing::warn!(term = %self.term(), "disk full: snapshot not saved")
                }
                Err(e) => return Err(self.fatal("saving a snapshot", e)),
            }
        }
        Ok(())
    }

    /// Persists what `st.rd` asks for, skipping the parts already durable, with at most one
    /// sync.
    ///
    /// A Ready that changes only the commit index is written but not synced: the commit
    /// index is volatile state in Raft (a restarted member relearns it from the leader, and
    /// recovery clamps it to the log), so it rides along with the next sync, as in etcd.
    /// This takes one fdatasync per write off the leader's critical path. Entries, a
    /// snapshot, and a new term or vote are always synced before the Ready's messages go.
    fn persist(&mut self, st: &mut Stalled) -> Result<(), StorageError> {
        if !st.rd.must_persist() {
            return Ok(());
        }
        if let (Some(s), false) = (&st.rd.snapshot, st.snapshot_saved) {
            self.store.save_snapshot(s.meta, &s.data)?;
            st.snapshot_saved = true;
        }
        if !st.entries_saved {
            self.store.append(&st.rd.entries)?;
            st.entries_saved = true;
        }
        if let Some(hs) = st.rd.hard_state {
            self.store.set_hard_state(hs)?;
        }
        let vote_changed = st
            .rd
            .hard_state
            .is_some_and(|hs| (hs.term, hs.vote) != self.synced_vote);
        if st.rd.snapshot.is_none() && st.rd.entries.is_empty() && !vote_changed {
            return Ok(());
        }
        self.store.sync()?;
        let hs = self.store.hard_state();
        self.synced_vote = (hs.term, hs.vote);
        Ok(())
    }

    fn fatal(&self, what: &str, e: StorageError) -> Fatal {
        tracing::error!(term = %self.term(), error = %e, "fatal storage error {what}");
        Fatal(format!("{}: fatal storage error {what}: {e}", self.id))
    }

    fn deliver_replies(&mut self) {
        for (id, reply) in self.replica.take_replies() {
            if let Some(tx) = self.pending.remove(&id) {
                let _ = tx.send(reply);
            }
        }
    }

    fn log_role_change(&mut self) {
        let raft = self.replica.raft();
        let now = (raft.role(), raft.term(), raft.leader());
        if now != self.seen {
            tracing::info!(term = %now.1, role = ?now.0, leader = ?now.2.map(|l| l.0), "raft state changed");
            self.seen = now;
        }
    }

    /// Messages the transport dropped so far.
    pub fn dropped_messages(&self) -> u64 {
        self.transport.dropped()
    }

    /// Client requests waiting for their outcome.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }
}
