//! `Host`: the Ready loop and the refusal policy over one app and one store.

use crate::app::HostedApp;
use crate::observer::{HostEvent, Observer, Transport};
use shardkv_raft::{Ready, Role};
use shardkv_rsm::{Error, ReqId};
use shardkv_storage::{Disk, RaftStore, StorageError};
use shardkv_types::{NodeId, Term};
use std::collections::BTreeSet;
use std::fmt;

/// Default bound on requests handed to the app and not yet answered; more are `Busy`.
pub const REQUESTS_PENDING_MAX_DEFAULT: usize = 16 * 1024;

/// Tunables of a [`Host`].
#[derive(Clone, Copy, Debug)]
pub struct HostOptions {
    /// Requests handed to the app and not yet answered (nor forgotten); more are `Busy`.
    pub requests_pending_max: usize,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            requests_pending_max: REQUESTS_PENDING_MAX_DEFAULT,
        }
    }
}

/// Why `drive` stopped for good: the shell must stop the node (the process exits non-zero;
/// the simulator crashes the node or fails the run).
#[derive(Debug)]
pub enum Fatal {
    /// A storage error other than `NoSpace`: after it nothing can be promised.
    Storage {
        id: NodeId,
        what: &'static str,
        error: StorageError,
    },
    /// The app could not apply a Ready (an undecodable snapshot).
    App { id: NodeId, error: String },
    /// The observer refused what it saw (the simulator's checker: a safety violation).
    Observer(String),
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::Storage { id, what, error } => {
                write!(f, "{id}: fatal storage error {what}: {error}")
            }
            Fatal::App { id, error } => write!(f, "{id}: applying a ready: {error}"),
            Fatal::Observer(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Fatal {}

/// What the host did, for tests, benchmarks and status pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCounters {
    /// Readys handed to `advance`.
    pub readys: u64,
    /// Syncs issued (one per Ready that had something durable to promise).
    pub syncs: u64,
    /// Readys written without a sync (only the commit index moved).
    pub unsynced_writes: u64,
    /// Readys whose messages left before their entries were durable here (leader only).
    pub early_sends: u64,
    /// Persist attempts that hit `NoSpace`.
    pub no_space: u64,
    /// Fatal storage errors while persisting a Ready whose messages had already left (the
    /// crash point between "sent" and "synced"; the simulator counts it).
    pub fatal_after_early_send: u64,
}

/// A Ready being persisted, with what of it is already written. Kept across drives while
/// the node is stalled.
struct Pending {
    rd: Ready,
    snapshot_saved: bool,
    entries_saved: bool,
}

/// The host of one Raft member: its store, the Ready loop and the refusal policy. The app
/// is passed to every call (see the crate docs, "Ownership").
///
/// Invariants: while `stalled` is set, the app's Raft core has a Ready outstanding and the
/// host calls nothing on the app but `advance` (through `drive`) and the read-only
/// `duplicate_answer`; `synced_vote` is the term and vote the store holds durably;
/// `pending` holds the ids handed to the app and not yet answered or forgotten.
pub struct Host<A: HostedApp, D: Disk> {
    id: NodeId,
    store: RaftStore<D>,
    opts: HostOptions,
    stalled: Option<Pending>,
    /// Free space is below the shell's reserve: writes are refused before they are proposed.
    disk_low: bool,
    /// Term and vote as of the last sync.
    synced_vote: (Term, Option<NodeId>),
    pending: BTreeSet<ReqId>,
    /// Answers the host gave itself (duplicates, refusals), delivered by `take_responses`.
    answered: Vec<(ReqId, A::Response)>,
    counters: HostCounters,
    /// Bytes of the newest snapshot this host saved (0 if none in this incarnation).
    snapshot_bytes: usize,
}

impl<A: HostedApp, D: Disk> Host<A, D> {
    /// A host for member `id` over a store the shell opened (and built the app from).
    pub fn new(id: NodeId, store: RaftStore<D>, opts: HostOptions) -> Host<A, D> {
        let hs = store.hard_state();
        Host {
            id,
            synced_vote: (hs.term, hs.vote),
            store,
            opts,
            stalled: None,
            disk_low: false,
            pending: BTreeSet::new(),
            answered: Vec::new(),
            counters: HostCounters::default(),
            snapshot_bytes: 0,
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// True while a Ready could not be persisted for lack of space.
    pub fn is_stalled(&self) -> bool {
        self.stalled.is_some()
    }

    /// True while free space is below the reserve.
    pub fn is_disk_low(&self) -> bool {
        self.disk_low
    }

    /// True while writes are refused with `NoSpace` (disk low or stalled).
    pub fn no_space(&self) -> bool {
        self.disk_low || self.stalled.is_some()
    }

    pub fn counters(&self) -> HostCounters {
        self.counters
    }

    pub fn store(&self) -> &RaftStore<D> {
        &self.store
    }

    /// Logical size of the persisted Raft state.
    pub fn raft_state_bytes(&self) -> u64 {
        self.store.raft_state_bytes()
    }

    /// Bytes of the newest snapshot saved by this host (0 if none yet).
    pub fn snapshot_bytes(&self) -> usize {
        self.snapshot_bytes
    }

    /// Requests handed to the app and not yet answered.
    pub fn requests_pending(&self) -> usize {
        self.pending.len()
    }

    /// Sets whether free disk space is below the reserve; true if that changed.
    pub fn set_disk_low(&mut self, low: bool) -> bool {
        let changed = low != self.disk_low;
        self.disk_low = low;
        changed
    }

    /// One tick of the logical clock (dropped while stalled).
    pub fn tick(&mut self, app: &mut A) {
        if self.stalled.is_none() {
            app.tick();
        }
    }

    /// A peer's message (dropped while stalled: Raft retries).
    pub fn step(&mut self, app: &mut A, m: shardkv_raft::Message) {
        if self.stalled.is_none() {
            app.step(m);
        }
    }

    /// A client request, answered through [`Host::take_responses`] under `req`. The refusal
    /// policy, in order: a retry of an applied write gets its stored answer (even when
    /// writes are refused); while stalled, a member that believes it leads answers writes
    /// `NoSpace` and reads `Unavailable`, and a follower answers `NotLeader` with its hint
    /// (it cannot touch Raft, and the leader may well have space); while disk is low, the
    /// leader answers writes `NoSpace` (a follower lets the replica redirect the client);
    /// beyond the pending bound, `Busy`.
    ///
    /// # Panics
    /// If `req` is already pending (the shell numbers requests).
    pub fn submit(&mut self, app: &mut A, req: ReqId, r: A::Request) {
        if let Some(answer) = app.duplicate_answer(&r) {
            return self.answered.push((req, answer));
        }
        let is_write = A::is_write(&r);
        let leads = app.raft().is_leader();
        let refusal = if self.stalled.is_some() {
            Some(match (leads, is_write) {
                (true, true) => Error::NoSpace,
                (true, false) => Error::Unavailable {
                    reason: "this member's disk is full; ask another member".into(),
                },
                (false, _) => Error::NotLeader {
                    leader: app.raft().leader(),
                },
            })
        } else if is_write && self.disk_low && leads {
            Some(Error::NoSpace)
        } else if self.pending.len() >= self.opts.requests_pending_max {
            Some(Error::Busy)
        } else {
            None
        };
        if let Some(e) = refusal {
            return self.answered.push((req, A::refusal(e)));
        }
        assert!(self.pending.insert(req), "request id {req} submitted twice");
        app.request(req, r);
    }

    /// Forgets a pending request whose client gave up; its answer, when it comes, is
    /// dropped from `take_responses`.
    pub fn forget(&mut self, req: ReqId) {
        self.pending.remove(&req);
    }

    /// Every answer produced since the last call: the host's own (duplicates, refusals)
    /// first, then the app's for requests still pending.
    pub fn take_responses(&mut self, app: &mut A) -> Vec<(ReqId, A::Response)> {
        let mut out = std::mem::take(&mut self.answered);
        for (req, resp) in app.take_responses() {
            if self.pending.remove(&req) {
                out.push((req, resp));
            }
        }
        out
    }

    /// The Ready loop: until the app has no more Readys (or persistence stalls), persist,
    /// send, advance — see the crate docs for the order and why it is safe. Retries a
    /// stalled Ready first.
    pub fn drive(
        &mut self,
        app: &mut A,
        transport: &mut impl Transport,
        observer: &mut impl Observer,
    ) -> Result<(), Fatal> {
        if let Some(p) = self.stalled.take() {
            self.persist_and_finish(app, p, true, transport, observer)?;
        }
        while self.stalled.is_none() {
            let Some(mut rd) = app.ready() else {
                break;
            };
            for e in &rd.entries {
                let prev_term = app.raft().log().term(e.index.prev());
                observer
                    .on_persist(self.id, e, prev_term)
                    .map_err(Fatal::Observer)?;
            }
            let early = self.may_send_before_persisting(app, &rd)
                && !rd.messages.is_empty()
                && rd.must_persist();
            if early {
                // Early send: the leader's appends leave now; its own entries count towards
                // a quorum only after `advance`, which follows the sync below.
                self.counters.early_sends += 1;
                for m in std::mem::take(&mut rd.messages) {
                    transport.send(m);
                }
            }
            let p = Pending {
                rd,
                snapshot_saved: false,
                entries_saved: false,
            };
            let finished = self.persist_and_finish(app, p, false, transport, observer);
            if early && matches!(finished, Err(Fatal::Storage { .. })) {
                self.counters.fatal_after_early_send += 1;
            }
            finished?;
        }
        Ok(())
    }

    /// True when `rd`'s messages may go out before its entries are durable here: the node
    /// leads, the Ready installs no snapshot, and it changes neither the term nor the vote
    /// (a vote or a term bump must be durable before any message that depends on it).
    fn may_send_before_persisting(&self, app: &A, rd: &Ready) -> bool {
        app.raft().is_leader() && rd.snapshot.is_none() && !self.vote_changes(rd)
    }

    fn vote_changes(&self, rd: &Ready) -> bool {
        rd.hard_state
            .is_some_and(|hs| (hs.term, hs.vote) != self.synced_vote)
    }

    /// Persists `p`, then sends, observes, advances and saves the app's snapshot. On
    /// `NoSpace` keeps `p` as the stalled Ready and returns `Ok`.
    fn persist_and_finish(
        &mut self,
        app: &mut A,
        mut p: Pending,
        retry: bool,
        transport: &mut impl Transport,
        observer: &mut impl Observer,
    ) -> Result<(), Fatal> {
        match self.persist(&mut p) {
            Ok(()) => {}
            Err(StorageError::NoSpace { path }) => {
                self.counters.no_space += 1;
                if !retry {
                    observer.on_event(self.id, HostEvent::Stalled { path });
                }
                self.stalled = Some(p);
                return Ok(());
            }
            Err(error) => return Err(self.fatal("persisting raft state", error)),
        }
        if retry {
            observer.on_event(self.id, HostEvent::Resumed);
        }
        // Everything this Ready promises is durable (or, for a commit-only Ready, need not
        // be): its messages may go.
        let mut rd = p.rd;
        for m in std::mem::take(&mut rd.messages) {
            transport.send(m);
        }
        for e in &rd.committed_entries {
            observer.on_apply(self.id, e).map_err(Fatal::Observer)?;
        }
        if rd.soft_state.is_some_and(|ss| ss.role == Role::Leader) {
            observer.on_leader(app.raft()).map_err(Fatal::Observer)?;
        }
        let snapshot = app
            .advance(rd, self.store.raft_state_bytes())
            .map_err(|error| Fatal::App { id: self.id, error })?;
        self.counters.readys += 1;
        if let Some(s) = snapshot {
            match self.store.save_snapshot(s.meta, &s.data) {
                Ok(()) => {
                    self.snapshot_bytes = s.data.len();
                    let event = HostEvent::SnapshotSaved {
                        index: s.meta.index,
                        bytes: s.data.len(),
                    };
                    observer.on_event(self.id, event);
                }
                // The full log is still on disk; a later snapshot will try again.
                Err(StorageError::NoSpace { .. }) => {
                    let event = HostEvent::SnapshotNotSaved {
                        index: s.meta.index,
                    };
                    observer.on_event(self.id, event);
                }
                Err(error) => return Err(self.fatal("saving a snapshot", error)),
            }
        }
        observer
            .on_status(&app.raft().status())
            .map_err(Fatal::Observer)
    }

    /// Persists what `p.rd` asks for, skipping the parts already written, with at most one
    /// sync. A Ready that changes only the commit index is written but not synced (see the
    /// crate docs); entries, a snapshot, and a new term or vote are always synced before the
    /// Ready's remaining messages go.
    fn persist(&mut self, p: &mut Pending) -> Result<(), StorageError> {
        if !p.rd.must_persist() {
            return Ok(());
        }
        if let (Some(s), false) = (&p.rd.snapshot, p.snapshot_saved) {
            self.store.save_snapshot(s.meta, &s.data)?;
            self.snapshot_bytes = s.data.len();
            p.snapshot_saved = true;
        }
        if !p.entries_saved {
            self.store.append(&p.rd.entries)?;
            p.entries_saved = true;
        }
        if let Some(hs) = p.rd.hard_state {
            self.store.set_hard_state(hs)?;
        }
        if p.rd.snapshot.is_none() && p.rd.entries.is_empty() && !self.vote_changes(&p.rd) {
            self.counters.unsynced_writes += 1;
            return Ok(());
        }
        self.store.sync()?;
        self.counters.syncs += 1;
        let hs = self.store.hard_state();
        self.synced_vote = (hs.term, hs.vote);
        Ok(())
    }

    fn fatal(&self, what: &'static str, error: StorageError) -> Fatal {
        Fatal::Storage {
            id: self.id,
            what,
            error,
        }
    }
}
