//! `Host`: the Ready loop and the refusal policy over one app and one store.

use crate::app::HostedApp;
use crate::leader_preference::LeaderPreference;
use crate::observer::{HostEvent, Observer, Transport};
use shardkv_raft::{Ready, Role};
use shardkv_rsm::{Error, ReqId};
use shardkv_storage::{Disk, RaftStore, SnapshotJob, SnapshotWritten, StorageError};
use shardkv_types::{NodeId, Term};
use std::collections::BTreeSet;
use std::fmt;

/// Default bound on requests handed to the app and not yet answered; more are `Busy`.
pub const REQUESTS_PENDING_MAX_DEFAULT: usize = 16 * 1024;

/// How far a member's snapshot threshold is moved from the configured one, at most, in
/// thousandths: members of a group snapshot at different log sizes, so one shared fault
/// (an unwritable directory, exhausted descriptors) does not meet all of them at once.
pub const SNAPSHOT_JITTER_PERMILLE_MAX: u64 = 150;
/// Ticks the app's snapshots are held back after a failed save, first and at most (the
/// hold doubles on every failure in a row; a saved snapshot resets it).
pub const SNAPSHOT_RETRY_TICKS_MIN: u64 = 100;
pub const SNAPSHOT_RETRY_TICKS_MAX: u64 = 6_000;
/// Ticks a leader that cannot write its disk keeps leading before it first tries to hand
/// off (long enough for its followers to acknowledge what it sent before it stalled).
pub const UNWRITTEN_HANDOFF_AFTER_TICKS: u64 = 5;

/// Where a host has the files of the app's snapshots written (see the crate docs,
/// "Snapshots in the background"). Without one the host runs each job itself at its next
/// `drive`, on the store's disk.
pub trait SnapshotWriter: Send {
    /// Starts writing; at most one job is outstanding.
    fn start(&mut self, job: SnapshotJob);
    /// The outstanding job's outcome, once it is done.
    fn poll(&mut self) -> Option<SnapshotWritten>;
}

/// Tunables of a [`Host`].
#[derive(Clone, Copy, Debug)]
pub struct HostOptions {
    /// Requests handed to the app and not yet answered (nor forgotten); more are `Busy`.
    pub requests_pending_max: usize,
    /// The group's rank for preferred leaders (its group id), or `None` to leave
    /// leadership where elections put it (see [`crate::leader_preference`]).
    pub leader_rank: Option<u64>,
    /// `Some(cap)`: the log may also grow by the size of the last snapshot, up to `cap`
    /// bytes, before it counts towards the app's snapshot threshold (crate docs, "Snapshot
    /// points"): a state of S bytes is then rewritten about once per S bytes of log rather
    /// than once per threshold, so snapshots cost at most about as many bytes as the log
    /// until the state passes `cap` (which bounds the log a member holds in memory).
    /// `None` (the lab's rule): the log is held under the threshold whatever the state.
    pub log_grows_with_state_up_to: Option<u64>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            requests_pending_max: REQUESTS_PENDING_MAX_DEFAULT,
            leader_rank: None,
            log_grows_with_state_up_to: None,
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
    /// Snapshots the app took that could not be saved (not fatal: see the crate docs).
    pub snapshots_not_saved: u64,
    /// Snapshots the app took while another was still being written, dropped (the app
    /// should not take them: the host passes it no log pressure meanwhile).
    pub snapshots_skipped: u64,
    /// Readys that went on without being persisted (disk full): their entries and hard
    /// state were handed back to Raft.
    pub readys_unwritten: u64,
    /// Messages of those Readys held back because they promise what was not written.
    pub messages_held: u64,
    /// Leadership hand-offs started because this leader could not write its disk.
    pub unwritten_handoffs: u64,
    /// Leadership transfers started towards the group's preferred leader.
    pub preferred_transfers: u64,
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
/// `duplicate_answer`; while `unwritten` is set no Ready is outstanding, and Raft holds
/// entries or a hard state this store has not made durable; `synced_vote` is the term and
/// vote the store holds durably; `pending` holds the ids handed to the app and not yet
/// answered or forgotten.
pub struct Host<A: HostedApp, D: Disk> {
    id: NodeId,
    store: RaftStore<D>,
    opts: HostOptions,
    stalled: Option<Pending>,
    /// The last Ready could not be written for lack of space and went on without (see the
    /// crate docs, "Failure policy"): the node runs, but its log and vote on disk lag.
    unwritten: bool,
    /// Ticks this node has led while `unwritten` (paces the hand-off attempts).
    unwritten_leader_ticks: u64,
    /// Ticks before a stalled Ready whose leader snapshot could not be written is tried
    /// again (0 otherwise).
    stalled_hold_ticks: u64,
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
    /// This member's snapshot threshold relative to the configured one, in thousandths.
    snapshot_scale_permille: u64,
    /// Ticks left during which the app takes no snapshot (after a failed save).
    snapshot_hold_ticks: u64,
    /// The hold the next failed save sets.
    snapshot_retry_ticks: u64,
    /// Runs snapshot jobs off this thread, if the shell gave one.
    writer: Option<Box<dyn SnapshotWriter>>,
    /// A job to run at the next `drive` (no writer).
    snapshot_deferred: Option<SnapshotJob>,
    /// Bytes of the snapshot being written, while one is.
    snapshot_in_flight: Option<usize>,
    /// The preferred-leader policy, when the group has a rank.
    preference: Option<LeaderPreference>,
    /// Ticks left during which this member declines leadership transfers (after its shell
    /// handed leadership off: [`Host::decline_leadership_for`]).
    declining_ticks: u64,
}

/// Member `id`'s snapshot threshold relative to the configured one, in thousandths: within
/// `1000 ± SNAPSHOT_JITTER_PERMILLE_MAX`, a pure function of the id (so the simulator stays
/// deterministic), spread apart for consecutive ids by Fibonacci hashing.
pub fn snapshot_scale_permille(id: NodeId) -> u64 {
    let spread = 2 * SNAPSHOT_JITTER_PERMILLE_MAX + 1;
    let top = id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44; // 20 well-mixed bits
    1000 - SNAPSHOT_JITTER_PERMILLE_MAX + top * spread / (1 << 20)
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
            unwritten: false,
            unwritten_leader_ticks: 0,
            stalled_hold_ticks: 0,
            disk_low: false,
            pending: BTreeSet::new(),
            answered: Vec::new(),
            counters: HostCounters::default(),
            snapshot_bytes: 0,
            snapshot_scale_permille: snapshot_scale_permille(id),
            snapshot_hold_ticks: 0,
            snapshot_retry_ticks: SNAPSHOT_RETRY_TICKS_MIN,
            writer: None,
            snapshot_deferred: None,
            snapshot_in_flight: None,
            preference: opts.leader_rank.map(LeaderPreference::new),
            declining_ticks: 0,
        }
    }

    /// Has the files of the app's snapshots written by `writer` (a thread, in the server).
    pub fn with_snapshot_writer(mut self, writer: Box<dyn SnapshotWriter>) -> Self {
        self.writer = Some(writer);
        self
    }

    /// True while a snapshot the app took is being written.
    pub fn snapshot_in_flight(&self) -> bool {
        self.snapshot_in_flight.is_some()
    }

    /// The persisted Raft state as the app's snapshot policy sees it: the store's size (less
    /// the last snapshot's with [`HostOptions::log_grows_with_state_up_to`]) scaled by this
    /// member's jitter, or 0 while snapshots are held back after a failed save (see the
    /// crate docs).
    fn snapshot_pressure(&self) -> u64 {
        if self.snapshot_hold_ticks > 0 || self.snapshot_in_flight.is_some() {
            return 0;
        }
        let mut bytes = u128::from(self.store.raft_state_bytes());
        if let Some(cap) = self.opts.log_grows_with_state_up_to {
            bytes = bytes.saturating_sub(u128::from((self.snapshot_bytes as u64).min(cap)));
        }
        (bytes * 1000 / u128::from(self.snapshot_scale_permille)) as u64
    }

    /// Ticks left before the app may take a snapshot again (0 unless a save failed).
    pub fn snapshot_hold_ticks(&self) -> u64 {
        self.snapshot_hold_ticks
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// True while this member cannot persist what Raft asks of it: its disk is full (it
    /// runs on without writing) or a Ready waits to be retried (see [`Host::is_frozen`]).
    pub fn is_stalled(&self) -> bool {
        self.stalled.is_some() || self.unwritten
    }

    /// True while a Ready that brings a snapshot waits to be persisted: the app's Raft core
    /// has it outstanding, so nothing but the host may touch the app.
    pub fn is_frozen(&self) -> bool {
        self.stalled.is_some()
    }

    /// True while free space is below the reserve.
    pub fn is_disk_low(&self) -> bool {
        self.disk_low
    }

    /// True while writes are refused with `NoSpace` (disk low or stalled).
    pub fn no_space(&self) -> bool {
        self.disk_low || self.is_stalled()
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

    /// One tick of the logical clock (dropped while frozen). A leader that cannot write
    /// its disk asks Raft to hand off ([`shardkv_raft::RawNode::hand_off_unwritten`]) a few
    /// ticks into the stall and then every heartbeat interval (Raft starts no second
    /// transfer while one is in flight; a transfer gives up after an election timeout).
    pub fn tick(&mut self, app: &mut A) {
        self.snapshot_hold_ticks = self.snapshot_hold_ticks.saturating_sub(1);
        self.stalled_hold_ticks = self.stalled_hold_ticks.saturating_sub(1);
        if self.stalled.is_some() {
            return;
        }
        self.declining_ticks = self.declining_ticks.saturating_sub(1);
        // A member that should not lead now declines transfers to it: a low disk would
        // answer every write `NoSpace`, an unwritten log cannot take its own vote, and a
        // shell that just handed off wants leadership elsewhere.
        let decline = self.disk_low || self.unwritten || self.declining_ticks > 0;
        app.raft_mut().set_declines_transfers(decline);
        app.tick();
        self.prefer_leader(app);
        if !(self.unwritten && app.raft().is_leader()) {
            self.unwritten_leader_ticks = 0;
            return;
        }
        self.unwritten_leader_ticks += 1;
        let every = u64::from(app.raft().config().heartbeat_ticks).max(1);
        let t = self.unwritten_leader_ticks;
        if t >= UNWRITTEN_HANDOFF_AFTER_TICKS
            && (t - UNWRITTEN_HANDOFF_AFTER_TICKS).is_multiple_of(every)
            && app.raft_mut().hand_off_unwritten().is_some()
        {
            self.counters.unwritten_handoffs += 1;
        }
    }

    /// Hands leadership to the group's preferred member when the policy says so (never from
    /// a leader whose log is unwritten: its own hand-off policy decides then, nor over a
    /// transfer in flight).
    fn prefer_leader(&mut self, app: &mut A) {
        let Some(p) = self.preference.as_mut() else {
            return;
        };
        let Some(to) = p.on_tick(app.raft()) else {
            return;
        };
        if self.unwritten || app.raft().transfer_in_flight() {
            return;
        }
        let _ = app.raft_mut().transfer_leader(to);
        if app.raft().transfer_in_flight() {
            self.counters.preferred_transfers += 1;
        }
    }

    /// Declines leadership transfers to this member for `ticks` (the shell handed
    /// leadership off and wants it to stay elsewhere; see
    /// `RawNode::set_declines_transfers`).
    pub fn decline_leadership_for(&mut self, ticks: u64) {
        self.declining_ticks = self.declining_ticks.max(ticks);
    }

    /// A peer's message (dropped while frozen: Raft retries).
    pub fn step(&mut self, app: &mut A, m: shardkv_raft::Message) {
        if self.stalled.is_none() {
            app.step(m);
        }
    }

    /// A client request, answered through [`Host::take_responses`] under `req`. The refusal
    /// policy, in order: a retry of an applied write gets its stored answer (even when
    /// writes are refused); while stalled, a member that believes it leads answers writes
    /// `NoSpace` and reads `Unavailable` if frozen (it cannot touch Raft) — an unfrozen one
    /// serves reads, since a read index needs no disk —, and a follower answers `NotLeader`
    /// with its hint (the leader may well have space); while disk is low, the leader
    /// answers writes `NoSpace` (a follower lets the replica redirect the client); beyond
    /// the pending bound, `Busy`.
    ///
    /// # Panics
    /// If `req` is already pending (the shell numbers requests).
    pub fn submit(&mut self, app: &mut A, req: ReqId, r: A::Request) {
        if let Some(answer) = app.duplicate_answer(&r) {
            return self.answered.push((req, answer));
        }
        let is_write = A::is_write(&r);
        let leads = app.raft().is_leader();
        // A stalled leader still serves reads unless frozen: a read index needs no disk.
        let refusal = if self.is_stalled() && (is_write || !leads || self.is_frozen()) {
            Some(if !leads {
                Error::NotLeader {
                    leader: app.raft().leader(),
                }
            } else if is_write {
                Error::NoSpace
            } else {
                Error::Unavailable {
                    reason: "this member's disk is full; ask another member".into(),
                }
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
        self.poll_snapshot(observer)?;
        if self.stalled.is_some() && self.stalled_hold_ticks > 0 {
            return Ok(());
        }
        if let Some(p) = self.stalled.take() {
            self.persist_and_finish(app, p, true, transport, observer)?;
        }
        // While the disk is full, one attempt per drive: every Ready hands back what the
        // last one could not write.
        let mut attempts_left = if self.unwritten { 1 } else { usize::MAX };
        while self.stalled.is_none() && attempts_left > 0 {
            let Some(mut rd) = app.ready() else {
                break;
            };
            attempts_left -= 1;
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
            let retry = self.unwritten;
            let finished = self.persist_and_finish(app, p, retry, transport, observer);
            if self.unwritten {
                attempts_left = 0;
            }
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
    /// `NoSpace` goes on without persisting (`unwritten`), or, for a Ready that brings a
    /// snapshot, keeps `p` as the stalled Ready; either way returns `Ok`. `retry`: the node
    /// was stalled already (the stall is reported once, and the end of it).
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
                    let why = if p.rd.snapshot.is_some() {
                        "disk full: the leader's snapshot waits to be written; this member \
                         answers no peer meanwhile"
                    } else {
                        "disk full: this member writes nothing and acknowledges nothing \
                         meanwhile, but applies what the others commit and keeps answering \
                         heartbeats (a leader keeps serving reads)"
                    };
                    let why = why.to_string();
                    observer.on_event(self.id, HostEvent::Stalled { path, why });
                }
                if p.rd.snapshot.is_some() {
                    self.stalled = Some(p);
                    return Ok(());
                }
                self.unwritten = true;
                self.counters.readys_unwritten += 1;
                app.raft_mut().set_storage_full(true);
                return self.finish(app, p.rd, false, transport, observer);
            }
            // The leader's snapshot could not be written (EMFILE, EACCES, ...) and nothing
            // changed on disk: like a full disk, the Ready waits and is tried again, after a
            // pause that doubles per failure in a row (the leader resends meanwhile). Only a
            // store poisoned by a failed write of acknowledged data is fatal.
            Err(error) if self.leader_snapshot_unwritten(&p, &error) => {
                self.counters.snapshots_not_saved += 1;
                self.stalled_hold_ticks = self.snapshot_retry_ticks;
                self.snapshot_retry_ticks =
                    (self.snapshot_retry_ticks * 2).min(SNAPSHOT_RETRY_TICKS_MAX);
                if !retry {
                    let path = self.store.dir().to_path_buf();
                    let why = format!("the leader's snapshot cannot be written: {error}");
                    observer.on_event(self.id, HostEvent::Stalled { path, why });
                }
                self.stalled = Some(p);
                return Ok(());
            }
            Err(error) => return Err(self.fatal("persisting raft state", error)),
        }
        if retry {
            observer.on_event(self.id, HostEvent::Resumed);
        }
        if self.unwritten {
            self.unwritten = false;
            app.raft_mut().set_storage_full(false);
        }
        self.finish(app, p.rd, true, transport, observer)
    }

    /// Steps 4–6 of the Ready loop for `rd`, `persisted` or not. Persisted: everything it
    /// promises is durable (or, for a commit-only Ready, need not be), so its messages go.
    /// Not persisted (disk full; never with a snapshot): its entries and hard state go back
    /// to Raft, which hands them out again, and only the messages that promise nothing
    /// about this disk go — none if it changes the term or vote (see `shardkv_raft::Ready`).
    fn finish(
        &mut self,
        app: &mut A,
        mut rd: Ready,
        persisted: bool,
        transport: &mut impl Transport,
        observer: &mut impl Observer,
    ) -> Result<(), Fatal> {
        assert!(
            persisted || rd.snapshot.is_none(),
            "a Ready with a snapshot must be persisted before it is advanced"
        );
        let may_speak = persisted || !self.vote_changes(&rd);
        if !persisted {
            rd.entries.clear();
            rd.hard_state = None;
        }
        for m in std::mem::take(&mut rd.messages) {
            if persisted || (may_speak && !m.waits_for_persist()) {
                transport.send(m);
            } else {
                self.counters.messages_held += 1;
            }
        }
        for e in &rd.committed_entries {
            observer.on_apply(self.id, e).map_err(Fatal::Observer)?;
        }
        if rd.soft_state.is_some_and(|ss| ss.role == Role::Leader) {
            observer.on_leader(app.raft()).map_err(Fatal::Observer)?;
        }
        // No snapshot while the disk is full: it could not be saved.
        let pressure = if persisted {
            self.snapshot_pressure()
        } else {
            0
        };
        let snapshot = app
            .advance(rd, pressure)
            .map_err(|error| Fatal::App { id: self.id, error })?;
        self.counters.readys += 1;
        if let Some(s) = snapshot {
            self.save_app_snapshot(&s, observer)?;
        }
        observer
            .on_status(&app.raft().status())
            .map_err(Fatal::Observer)
    }

    /// Starts saving a snapshot the app took: its file is written by the writer (or at
    /// the next `drive`), and [`Host::poll_snapshot`] completes it.
    fn save_app_snapshot(
        &mut self,
        s: &shardkv_raft::Snapshot,
        observer: &mut impl Observer,
    ) -> Result<(), Fatal> {
        // One job at a time. An app that snapshots without heeding the pressure of 0 the
        // host passes meanwhile loses nothing by this one being dropped: its log is whole.
        if self.snapshot_in_flight.is_some() {
            self.counters.snapshots_skipped += 1;
            return Ok(());
        }
        let job = match self.store.start_snapshot(s.meta, s.data.clone()) {
            Ok(job) => job,
            Err(error) => return self.snapshot_failed(s.meta.index, error, observer),
        };
        self.snapshot_in_flight = Some(s.data.len());
        match &mut self.writer {
            Some(w) => w.start(job),
            None => self.snapshot_deferred = Some(job),
        }
        Ok(())
    }

    /// Completes the snapshot being written, if its file is done: the store compacts its
    /// log only now, once the file is durable.
    fn poll_snapshot(&mut self, observer: &mut impl Observer) -> Result<(), Fatal> {
        let written = match (self.snapshot_deferred.take(), &mut self.writer) {
            (Some(job), _) => Some(job.run(self.store.disk_mut())),
            (None, Some(w)) if self.snapshot_in_flight.is_some() => w.poll(),
            (None, _) => None,
        };
        let Some(written) = written else {
            return Ok(());
        };
        let bytes = self.snapshot_in_flight.take().unwrap_or(0);
        let index = written.meta().index;
        match self.store.finish_snapshot(written) {
            Ok(()) => {
                self.snapshot_bytes = bytes;
                self.snapshot_retry_ticks = SNAPSHOT_RETRY_TICKS_MIN;
                observer.on_event(self.id, HostEvent::SnapshotSaved { index, bytes });
                Ok(())
            }
            Err(error) => self.snapshot_failed(index, error, observer),
        }
    }

    /// A snapshot the app took was not saved. A failure that left the store writable (the
    /// store says which: see `RaftStore::save_snapshot`) is not fatal — the full log is
    /// still on disk — and holds the app's snapshots back for a while, doubling on every
    /// failure in a row, so a persistent fault costs neither a crash nor an encode per Ready.
    fn snapshot_failed(
        &mut self,
        index: shardkv_types::LogIndex,
        error: StorageError,
        observer: &mut impl Observer,
    ) -> Result<(), Fatal> {
        if self.store.poisoned().is_some() {
            return Err(self.fatal("saving a snapshot", error));
        }
        self.counters.snapshots_not_saved += 1;
        self.snapshot_hold_ticks = self.snapshot_retry_ticks;
        self.snapshot_retry_ticks = (self.snapshot_retry_ticks * 2).min(SNAPSHOT_RETRY_TICKS_MAX);
        let event = HostEvent::SnapshotNotSaved {
            index,
            error: error.to_string(),
            retry_in_ticks: self.snapshot_hold_ticks,
        };
        observer.on_event(self.id, event);
        Ok(())
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
            // Entries a Ready that went on unwritten handed back may be in the store
            // already (written before its hard state hit NoSpace): the same index and term
            // is the same entry, and the sync below makes it durable. Written again, they
            // would need the space a second time.
            let held =
                p.rd.entries
                    .iter()
                    .take_while(|e| self.store.term(e.index) == Some(e.term))
                    .count();
            self.store.append(&p.rd.entries[held..])?;
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

    /// True if `p` brings a snapshot from the leader that is not saved yet while the store
    /// is still writable: its save failed (with `error`, not one that retrying cannot
    /// mend) before anything on disk changed.
    fn leader_snapshot_unwritten(&self, p: &Pending, error: &StorageError) -> bool {
        p.rd.snapshot.is_some()
            && !p.snapshot_saved
            && self.store.poisoned().is_none()
            && !matches!(error, StorageError::StaleSnapshot { .. })
    }

    fn fatal(&self, what: &'static str, error: StorageError) -> Fatal {
        Fatal::Storage {
            id: self.id,
            what,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::NoopObserver;
    use shardkv_kv::{KvCommand, KvStore};
    use shardkv_raft::{Config, Message};
    use shardkv_rsm::{Replica, ReplicaOptions, Request};
    use shardkv_storage::{SimDisk, SnapshotJob, SnapshotWritten};
    use shardkv_types::{ClientId, LogIndex, Seq};
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// "Too many open files".
    const EMFILE: i32 = 24;

    #[derive(Default)]
    struct Events(Vec<HostEvent>);

    impl Observer for Events {
        fn on_event(&mut self, _id: NodeId, event: HostEvent) {
            self.0.push(event);
        }
    }

    type App = Replica<KvStore>;

    /// Member `id` of the group 1..=`voters` over a disk refusing snapshot files while
    /// `disk` (a clone: the test keeps a handle to refuse snapshot files on it), with a small
    /// snapshot threshold.
    fn member(id: u64, voters: u64, disk: &SimDisk) -> (Host<App, SimDisk>, App) {
        member_with(id, voters, disk, HostOptions::default())
    }

    fn member_with(
        id: u64,
        voters: u64,
        disk: &SimDisk,
        host_opts: HostOptions,
    ) -> (Host<App, SimDisk>, App) {
        let disk = disk.clone();
        let id = NodeId(id);
        let dir = format!("/n{}", id.0);
        let (store, rec) = RaftStore::open(disk, Path::new(&dir), id).expect("open");
        let opts = ReplicaOptions {
            raft_state_bytes_max: Some(2_000),
            ..ReplicaOptions::default()
        };
        let cfg = Config::new(id, (1..=voters).map(NodeId).collect());
        let app = Replica::new(cfg, crate::restored(rec), id.0, opts, KvStore::default())
            .expect("replica");
        (Host::new(id, store, host_opts), app)
    }

    /// A single-member KV group over the refusing disk, elected leader.
    fn single_member(disk: &SimDisk) -> (Host<App, SimDisk>, App) {
        single_member_with(disk, HostOptions::default())
    }

    fn single_member_with(disk: &SimDisk, opts: HostOptions) -> (Host<App, SimDisk>, App) {
        let (mut host, mut app) = member_with(1, 1, disk, opts);
        for _ in 0..100 {
            host.tick(&mut app);
            host.drive(&mut app, &mut Vec::new(), &mut NoopObserver)
                .expect("drive");
            if app.raft().is_leader() {
                return (host, app);
            }
        }
        panic!("a single member never led");
    }

    /// Client 1's write number `seq`: a 200-byte value under `k<seq>`.
    fn put_request(seq: u64) -> Request<KvCommand, <KvStore as shardkv_rsm::StateMachine>::Query> {
        let cmd = KvCommand::Put {
            key: format!("k{seq}").into_bytes(),
            value: vec![b'v'; 200],
        };
        Request::Write {
            client: ClientId(1),
            seq: Seq(seq),
            cmd,
            retry: false,
        }
    }

    fn put(
        host: &mut Host<App, SimDisk>,
        app: &mut App,
        seq: u64,
        events: &mut Events,
    ) -> Result<(), Fatal> {
        host.submit(app, seq, put_request(seq));
        host.tick(app);
        host.drive(app, &mut Vec::new(), events)
    }

    /// Writes 400 distinct 200-byte values into a single member (threshold 2 000 bytes)
    /// and returns the bytes of every snapshot it saved, summed.
    fn snapshot_bytes_written(log_grows_with_state: bool) -> u64 {
        let disk = SimDisk::new(22);
        let opts = HostOptions {
            log_grows_with_state_up_to: log_grows_with_state.then_some(u64::MAX),
            ..HostOptions::default()
        };
        let (mut host, mut app) = single_member_with(&disk, opts);
        let mut events = Events::default();
        let (mut written, mut last_index) = (0, LogIndex(0));
        for seq in 1..=400 {
            put(&mut host, &mut app, seq, &mut events).expect("put");
            let index = host.store().snapshot_meta().index;
            if index > last_index {
                last_index = index;
                written += host.snapshot_bytes() as u64;
            }
        }
        assert_eq!(app.applied().0, app.raft().status().commit.0);
        written
    }

    #[test]
    fn a_log_that_grows_with_the_state_bounds_what_snapshots_rewrite() {
        // Goal: with `log_grows_with_state`, a growing state is rewritten about once per
        // its own size of log, so all snapshots together cost a small multiple of the
        // bytes written, where the fixed threshold rewrites it every 2 000 bytes of log.
        // Method: the same 400 distinct 200-byte puts (about 90 KB of log) both ways.
        let log_bytes = 400 * 220;
        let fixed = snapshot_bytes_written(false);
        let grows = snapshot_bytes_written(true);
        assert!(
            fixed > 10 * log_bytes,
            "fixed threshold: {fixed} bytes of snapshots"
        );
        assert!(
            grows <= 3 * log_bytes,
            "grows with state: {grows} bytes of snapshots"
        );
        assert!(grows > 0, "snapshots are still taken");
    }

    #[test]
    fn a_snapshot_file_that_cannot_be_created_is_reported_held_back_and_retried_not_fatal() {
        // Goal: EMFILE creating the snapshot file does not stop the node: the event names the
        // error, no snapshot is tried during the hold, and once files can be created again a
        // later snapshot is saved. Method: a single-member group with a small snapshot
        // threshold over a disk refusing snapshot files; write until a save fails; write
        // through the hold; allow files; write until a snapshot is saved.
        let disk = SimDisk::new(21);
        disk.refuse_create(Some((".snap.tmp", EMFILE)));
        let (mut host, mut app) = single_member(&disk);
        let mut events = Events::default();
        let mut seq = 1;
        while host.counters().snapshots_not_saved == 0 {
            assert!(seq < 200, "no snapshot was ever attempted");
            put(&mut host, &mut app, seq, &mut events).expect("a failed snapshot is not fatal");
            seq += 1;
        }
        let failed = events.0.iter().find_map(|e| match e {
            HostEvent::SnapshotNotSaved {
                error,
                retry_in_ticks,
                ..
            } => Some((error.clone(), *retry_in_ticks)),
            _ => None,
        });
        let (error, retry_in_ticks) = failed.expect("reported");
        assert!(error.contains("create"), "{error}");
        assert_eq!(retry_in_ticks, SNAPSHOT_RETRY_TICKS_MIN);
        assert!(host.store().poisoned().is_none());
        // During the hold, writes go on and no snapshot is attempted.
        let attempts = host.counters().snapshots_not_saved;
        for _ in 0..SNAPSHOT_RETRY_TICKS_MIN / 2 {
            put(&mut host, &mut app, seq, &mut events).expect("writes go on");
            seq += 1;
        }
        assert_eq!(host.counters().snapshots_not_saved, attempts);
        disk.refuse_create(None);
        let mut saved = false;
        for _ in 0..3 * SNAPSHOT_RETRY_TICKS_MIN {
            put(&mut host, &mut app, seq, &mut events).expect("writes go on");
            seq += 1;
            if host.store().snapshot_meta().index.0 > 0 {
                saved = true;
                break;
            }
        }
        assert!(saved, "a later snapshot is saved once files can be created");
        assert_eq!(app.applied().0, app.raft().status().commit.0);
    }

    #[test]
    fn a_leader_snapshot_that_cannot_be_written_stalls_the_follower_and_is_installed_later() {
        // Goal: a follower that cannot create the file for a snapshot its leader sends
        // (EMFILE) does not die: the Ready waits, and once files can be created the snapshot
        // is installed and the follower catches up. Method: three members; member 3 is cut
        // off while the others write past a snapshot (so the leader must send it one); it
        // is reconnected while refusing snapshot files, then allowed.
        let disks: Vec<SimDisk> = (1..=3).map(|id| SimDisk::new(20 + id)).collect();
        let mut nodes: Vec<_> = (1..=3)
            .map(|id| member(id, 3, &disks[id as usize - 1]))
            .collect();
        let mut events = Events::default();
        let mut inflight: Vec<Message> = Vec::new();
        let mut connected3 = false;
        let mut seq = 0;
        // One round: every node ticks and drives; messages are delivered (to 3 only once
        // connected); the leader gets a write every round while `write`.
        let mut round = |nodes: &mut Vec<(Host<App, SimDisk>, App)>,
                         connected3: bool,
                         write: bool,
                         events: &mut Events|
         -> Result<(), Fatal> {
            for m in std::mem::take(&mut inflight) {
                if (m.to == NodeId(3) || m.from == NodeId(3)) && !connected3 {
                    continue;
                }
                let (h, a) = &mut nodes[m.to.0 as usize - 1];
                h.step(a, m);
            }
            for (h, a) in nodes.iter_mut() {
                if write && a.raft().is_leader() {
                    seq += 1;
                    h.submit(a, seq, put_request(seq));
                }
                h.tick(a);
                h.drive(a, &mut inflight, events)?;
            }
            Ok(())
        };
        for _ in 0..2_000 {
            round(&mut nodes, connected3, true, &mut events).expect("no fatal error");
            if nodes[..2]
                .iter()
                .all(|(h, _)| h.store().snapshot_meta().index.0 > 0)
            {
                break;
            }
        }
        assert!(
            nodes[0].0.store().snapshot_meta().index.0 > 0,
            "the others snapshotted"
        );
        disks[2].refuse_create(Some((".snap.tmp", EMFILE)));
        connected3 = true;
        for _ in 0..300 {
            round(&mut nodes, connected3, false, &mut events)
                .expect("a snapshot that cannot be written is not fatal");
        }
        assert!(
            nodes[2].0.is_stalled(),
            "member 3 waits with the snapshot unsaved"
        );
        let stalls: Vec<&String> = events
            .0
            .iter()
            .filter_map(|e| match e {
                HostEvent::Stalled { why, .. } => Some(why),
                _ => None,
            })
            .collect();
        assert_eq!(stalls.len(), 1, "the stall is reported once: {stalls:?}");
        assert!(stalls[0].contains("leader's snapshot"), "{}", stalls[0]);
        // Retried after a pause that doubles (100, 200 ticks in 300 rounds), not every drive.
        let tries = nodes[2].0.counters().snapshots_not_saved;
        assert!((2..=4).contains(&tries), "{tries} tries in 300 ticks");
        disks[2].refuse_create(None);
        for _ in 0..600 {
            round(&mut nodes, connected3, false, &mut events).expect("no fatal error");
            if nodes[2].1.applied() == nodes[0].1.applied() {
                break;
            }
        }
        assert!(!nodes[2].0.is_stalled());
        assert!(nodes[2].0.store().snapshot_meta().index.0 > 0, "installed");
        assert_eq!(nodes[2].1.applied(), nodes[0].1.applied(), "caught up");
    }

    #[test]
    fn snapshot_thresholds_differ_between_members_and_stay_within_the_jitter() {
        // Goal: members of a group do not snapshot at the same log size, and no member's
        // threshold moves by more than the jitter. Method: the scale of ids 1..=7 pairwise,
        // and of many ids against the bounds.
        let lo = 1000 - SNAPSHOT_JITTER_PERMILLE_MAX;
        let hi = 1000 + SNAPSHOT_JITTER_PERMILLE_MAX;
        for id in 0..10_000 {
            let s = snapshot_scale_permille(NodeId(id));
            assert!((lo..=hi).contains(&s), "id {id}: {s}");
        }
        let small: Vec<u64> = (1..=7)
            .map(|i| snapshot_scale_permille(NodeId(i)))
            .collect();
        for (i, a) in small.iter().enumerate() {
            for b in &small[i + 1..] {
                assert!(a.abs_diff(*b) >= 10, "ids 1..=7 spread apart: {small:?}");
            }
        }
    }

    /// A writer that keeps the job until the test lets it run.
    struct HeldWriter {
        disk: SimDisk,
        job: Arc<std::sync::Mutex<Option<SnapshotJob>>>,
        release: Arc<AtomicBool>,
    }

    impl SnapshotWriter for HeldWriter {
        fn start(&mut self, job: SnapshotJob) {
            *self.job.lock().unwrap() = Some(job);
        }
        fn poll(&mut self) -> Option<SnapshotWritten> {
            if !self.release.load(Ordering::Relaxed) {
                return None;
            }
            let job = self.job.lock().unwrap().take()?;
            Some(job.run(&mut self.disk))
        }
    }

    #[test]
    fn a_snapshot_written_by_the_writer_compacts_the_log_only_when_it_is_done() {
        // Goal: while the snapshot's file is being written the node keeps applying, takes
        // no other snapshot and the store keeps its full log; the completion, collected at a
        // later drive, compacts it. Method: a writer that holds the job until released.
        let (host, mut app) = single_member(&SimDisk::new(21));
        let disk = host.store().disk().clone();
        let job = Arc::new(std::sync::Mutex::new(None));
        let release = Arc::new(AtomicBool::new(false));
        let writer = HeldWriter {
            disk,
            job: job.clone(),
            release: release.clone(),
        };
        let mut host = host.with_snapshot_writer(Box::new(writer));
        let mut events = Events::default();
        let mut seq = 1;
        while !host.snapshot_in_flight() {
            assert!(seq < 200, "no snapshot was taken");
            put(&mut host, &mut app, seq, &mut events).expect("put");
            seq += 1;
        }
        let taken = job
            .lock()
            .unwrap()
            .as_ref()
            .map(|j| j.meta())
            .expect("a job");
        for _ in 0..20 {
            put(&mut host, &mut app, seq, &mut events).expect("writes go on");
            seq += 1;
        }
        assert!(host.snapshot_in_flight());
        assert_eq!(host.store().snapshot_meta().index.0, 0, "not compacted yet");
        assert_eq!(host.store().first_index().0, 1);
        assert_eq!(
            app.applied().0,
            app.raft().status().commit.0,
            "applying goes on"
        );
        release.store(true, Ordering::Relaxed);
        put(&mut host, &mut app, seq, &mut events).expect("put");
        // (The log it kept is past the threshold again: the next job may have started.)
        assert_eq!(host.store().snapshot_meta(), taken);
        assert!(events.0.iter().any(|e| matches!(
            e,
            HostEvent::SnapshotSaved { index, .. } if *index == taken.index
        )));
    }
}
