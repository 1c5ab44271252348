//! `RawNode`: one Raft peer as a deterministic state machine. This file holds its state,
//! the public API, timers, role transitions and the Ready/advance cycle; elections,
//! replication and snapshot transfer live in their own modules.

use crate::anomaly::{Anomalies, Anomaly};
use crate::log::RaftLog;
use crate::progress::Progress;
use crate::read_index::ReadQueue;
use crate::{Body, Config, Message, ProposeError, ReadState, Ready, Role, Snapshot, SoftState};
use shardkv_types::{
    ADDR_BYTES_MAX, ConfChange, ConfChangeKind, ConfEntry, ConfError, Entry, HardState, LogIndex,
    Membership, NodeId, Rng, SnapshotMeta, Term,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a node restarts from: everything its storage recovered.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// The newest durable snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The durable entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

/// A read-only view of a node for status pages and invariant checkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub term: Term,
    pub vote: Option<NodeId>,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub commit: LogIndex,
    pub applied: LogIndex,
    pub last_index: LogIndex,
    pub snapshot_index: LogIndex,
    /// The membership this node's log implies (committed or not).
    pub conf: Membership,
}

/// One Raft peer. Feed it `tick`, `step`, `propose` and `read_index`; drain it with `ready`
/// and acknowledge with `advance` (see [`Ready`] for the persistence contract).
///
/// Invariants: `log.applied() <= log.committed()`; `vote` refers to `term`; only a leader
/// has `progress` entries; between `ready` and `advance` no other method may be called.
#[derive(Debug)]
pub struct RawNode {
    pub(crate) cfg: Config,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog,
    pub(crate) rng: Rng,
    /// Ticks since this node was created; the leader's clock for peer activity.
    pub(crate) ticks: u64,
    /// Ticks since the last heartbeat from a leader (followers), or since the last campaign.
    pub(crate) election_elapsed: u32,
    pub(crate) election_timeout: u32,
    pub(crate) heartbeat_elapsed: u32,
    /// Candidate: the answers received in this election (true = granted).
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Leader: the replication state of every other member (voters and learners), and of a
    /// member being removed until its removal commits.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) reads: ReadQueue,
    /// Leader: the peer leadership is being handed to, and for how many ticks.
    pub(crate) transferee: Option<(NodeId, u32)>,
    /// Follower: a snapshot being received in chunks.
    pub(crate) incoming_snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// The newest snapshot this node holds (sent to followers behind the compacted log).
    pub(crate) snapshot: Option<Snapshot>,
    /// A snapshot received from the leader that the application has not been handed yet.
    pub(crate) pending_snapshot: Option<Snapshot>,
    pub(crate) msgs: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    prev_hard_state: HardState,
    prev_soft_state: SoftState,
    pub(crate) ready_outstanding: bool,
    /// The application cannot persist (its disk is full): see [`RawNode::set_storage_full`].
    pub(crate) storage_full: bool,
    /// Ignore `TimeoutNow`: see [`RawNode::set_declines_transfers`].
    pub(crate) declines_transfers: bool,
    /// Leader: command bytes of the entries after the commit index.
    pub(crate) uncommitted_bytes: usize,
    /// Refused messages and alarming events, counted and logged at a bounded rate.
    anomalies: Anomalies,
}

impl RawNode {
    /// A node starting from what its storage recovered. `seed` drives its election
    /// timeouts; give every node a different one.
    ///
    /// # Panics
    /// If `cfg` is invalid or `restored` is inconsistent.
    pub fn new(cfg: Config, restored: Restored, seed: u64) -> RawNode {
        cfg.validate();
        let mut snap_meta = restored
            .snapshot
            .as_ref()
            .map(|s| s.meta)
            .unwrap_or_default();
        if snap_meta.conf.is_empty() {
            // No snapshot, or one older than membership changes: the bootstrap membership.
            snap_meta.conf = cfg.membership();
        }
        let log = RaftLog::restore(snap_meta, restored.entries, restored.hard_state.commit);
        let hs = restored.hard_state;
        let mut node = RawNode {
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader: None,
            log,
            rng: Rng::new(seed),
            ticks: 0,
            election_elapsed: 0,
            election_timeout: cfg.election_ticks,
            heartbeat_elapsed: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            reads: ReadQueue::default(),
            transferee: None,
            incoming_snapshot: None,
            // The held snapshot carries the membership the log starts from.
            snapshot: restored.snapshot.map(|s| Snapshot {
                meta: snap_meta,
                ..s
            }),
            pending_snapshot: None,
            msgs: Vec::new(),
            read_states: Vec::new(),
            prev_hard_state: HardState {
                commit: LogIndex(0),
                ..hs
            },
            prev_soft_state: SoftState {
                leader: None,
                role: Role::Follower,
            },
            ready_outstanding: false,
            storage_full: false,
            declines_transfers: false,
            uncommitted_bytes: 0,
            anomalies: Anomalies::default(),
            cfg,
        };
        node.prev_hard_state.commit = node.log.committed();
        node.reset_election_timeout();
        node
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// The log, read-only: for invariant checkers and status.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            term: self.term,
            vote: self.vote,
            role: self.role,
            leader: self.leader,
            commit: self.log.committed(),
            applied: self.log.applied(),
            last_index: self.log.last_index(),
            snapshot_index: self.log.snapshot_meta().index,
            conf: self.log.conf(),
        }
    }

    /// The membership in force on this node: its log's latest (thesis §4.1).
    pub fn conf(&self) -> Membership {
        self.log.conf()
    }

    /// A leader's view of how far `peer`'s log is known to match its own (`None`: not the
    /// leader, or not a member). The leader itself matches its last index.
    pub fn matched(&self, peer: NodeId) -> Option<LogIndex> {
        if !self.is_leader() {
            return None;
        }
        if peer == self.cfg.id {
            return Some(self.log.last_index());
        }
        self.progress.get(&peer).map(|p| p.match_index)
    }

    /// True if this node is a voter of the membership in force.
    pub fn is_voter(&self) -> bool {
        self.log.conf().is_voter(self.cfg.id)
    }

    /// How many times this node met `kind` (see [`Anomaly`]).
    pub fn anomaly_count(&self, kind: Anomaly) -> u64 {
        self.anomalies.count(kind)
    }

    /// Counts an anomaly involving `peer` and logs it (warn), at most one line per kind per
    /// election timeout.
    pub(crate) fn note(&mut self, kind: Anomaly, peer: NodeId, detail: std::fmt::Arguments<'_>) {
        let window = u64::from(self.cfg.election_ticks);
        if let Some(suppressed) = self.anomalies.note(kind, self.ticks, window) {
            tracing::warn!(node = %self.cfg.id, term = %self.term, peer = %peer, suppressed,
                "raft: {kind}: {detail}");
        }
    }

    pub(crate) fn quorum(&self) -> usize {
        self.log.conf().quorum()
    }

    /// The other voters: whom a candidate asks for votes.
    pub(crate) fn voter_peers(&self) -> Vec<NodeId> {
        self.log
            .conf()
            .voters()
            .filter(|&p| p != self.cfg.id)
            .collect()
    }

    /// Leader: every peer it replicates to.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.progress.keys().copied().collect()
    }

    /// True if a quorum can be confirmed without asking anyone: this node is the only voter.
    pub(crate) fn sole_voter(&self) -> bool {
        let conf = self.log.conf();
        conf.voter_count() == 1 && conf.is_voter(self.cfg.id)
    }

    pub(crate) fn send(&mut self, to: NodeId, term: Term, body: Body) {
        debug_assert_ne!(to, self.cfg.id, "no messages to self");
        self.msgs.push(Message {
            from: self.cfg.id,
            to,
            term,
            body,
        });
    }

    /// Advances the logical clock by one tick: followers and candidates may start an
    /// election; leaders send heartbeats and check that a quorum is still reachable.
    pub fn tick(&mut self) {
        assert!(!self.ready_outstanding, "tick between ready and advance");
        self.ticks += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else if !self.is_voter() {
            // A learner, or a removed node: never campaigns. Its clock still runs, so that
            // the leader lease it grants ends: it may have been promoted without knowing yet,
            // and its vote may be needed.
            self.election_elapsed = self.election_elapsed.saturating_add(1);
        } else {
            self.election_elapsed += 1;
            if self.election_elapsed >= self.election_timeout {
                self.election_elapsed = 0;
                // A vote for itself it could not store would only silence it.
                if !self.storage_full {
                    self.campaign(self.cfg.pre_vote, false);
                }
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.cfg.check_quorum && !self.quorum_active() {
            self.become_follower(self.term, None);
            return;
        }
        if let Some((to, elapsed)) = self.transferee {
            if elapsed + 1 >= self.cfg.election_ticks {
                self.transferee = None;
            } else {
                self.transferee = Some((to, elapsed + 1));
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            let seq = self.reads.current_seq();
            self.bcast_heartbeat(seq);
        }
    }

    /// True if a quorum of voters (this node included if it is one) was heard from within
    /// the last election timeout.
    fn quorum_active(&self) -> bool {
        let window = u64::from(self.cfg.election_ticks);
        let conf = self.log.conf();
        let active = self
            .progress
            .iter()
            .filter(|(id, p)| conf.is_voter(**id) && self.ticks - p.last_active_tick < window)
            .count();
        active + usize::from(conf.is_voter(self.cfg.id)) >= self.quorum()
    }

    /// Proposes a command. Returns the index it will have if it commits in this term.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<LogIndex, ProposeError> {
        assert!(!self.ready_outstanding, "propose between ready and advance");
        self.check_proposal(data.len())?;
        self.uncommitted_bytes += data.len();
        let index = self.log.last_index().next();
        self.log.append_new(Entry::normal(self.term, index, data));
        Ok(index)
    }

    /// What refuses any proposal: not the leader, a transfer, too large, too many pending.
    fn check_proposal(&self, bytes: usize) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        if bytes > self.cfg.proposal_bytes_max {
            return Err(ProposeError::TooLarge {
                bytes,
                max: self.cfg.proposal_bytes_max,
            });
        }
        let uncommitted = self.log.last_index().0 - self.log.committed().0;
        if uncommitted >= self.cfg.uncommitted_entries_max as u64
            || (self.uncommitted_bytes > 0
                && self.uncommitted_bytes + bytes > self.cfg.uncommitted_bytes_max)
        {
            return Err(ProposeError::Busy);
        }
        Ok(())
    }

    /// Proposes a single-server membership change. It takes effect on each node as soon as
    /// the entry is in its log (this leader at once: a promoted learner counts toward the
    /// commit of this very entry). Refused while an earlier change is uncommitted, before
    /// this leader committed an entry of its term, when it does not apply to the current
    /// membership, and for a promotion of a learner more than `Config::promote_lag_max`
    /// entries behind. Returns the entry's index.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<LogIndex, ProposeError> {
        assert!(
            !self.ready_outstanding,
            "propose_conf_change between ready and advance"
        );
        self.check_proposal(cc.encode().len())?;
        if cc.addr.len() > ADDR_BYTES_MAX || cc.node.0 == 0 {
            // Every node must read the entry back; one that does not decode changes nothing.
            return Err(ProposeError::ConfChange(if cc.node.0 == 0 {
                ConfError::ReservedId
            } else {
                ConfError::Malformed
            }));
        }
        if let Some(index) = self.log.conf_index()
            && index > self.log.committed()
        {
            return Err(ProposeError::ConfChangePending { index });
        }
        if !self.can_serve_reads() {
            return Err(ProposeError::LeaderNotReady);
        }
        let next = self
            .log
            .conf()
            .apply(&cc)
            .map_err(ProposeError::ConfChange)?;
        let last = self.log.last_index();
        if cc.kind == ConfChangeKind::Promote {
            let matched = self
                .progress
                .get(&cc.node)
                .map_or(LogIndex(0), |p| p.match_index);
            if matched.0.saturating_add(self.cfg.promote_lag_max) < last.0 {
                return Err(ProposeError::LearnerBehind {
                    node: cc.node,
                    matched,
                    last,
                });
            }
        }
        let index = last.next();
        let (kind, member) = (cc.kind, cc.node);
        let entry = ConfEntry { change: cc, next };
        let entry = Entry::conf_change(self.term, index, &entry);
        self.uncommitted_bytes += entry.data.len();
        self.log.append_new(entry);
        assert_eq!(
            self.log.conf(),
            next,
            "the log follows the change it just took"
        );
        self.sync_progress();
        tracing::info!(node = %self.cfg.id, term = %self.term, %index, change = ?kind,
            %member, conf = %next, "raft: membership change proposed");
        Ok(index)
    }

    /// Leader: one progress per member of the membership in force other than itself. A
    /// member just added starts probing from the end of the log; a removed member's progress
    /// stays until its removal commits, so that it learns of it (see `after_commit`).
    fn sync_progress(&mut self) {
        let next = self.log.last_index().next();
        let conf = self.log.conf();
        for m in conf.members().filter(|&m| m != self.cfg.id) {
            self.progress
                .entry(m)
                .or_insert_with(|| Progress::new(next, self.ticks));
        }
    }

    /// Leader, after the commit index moved: once the membership in force is committed,
    /// forget members it removed, and step down if it removed this leader (thesis §4.2.2).
    fn after_commit(&mut self) {
        let committed = self.log.committed();
        if self.log.conf_index().is_some_and(|i| i > committed) {
            return;
        }
        let conf = self.log.conf();
        self.progress.retain(|id, _| conf.contains(*id));
        if !conf.is_voter(self.cfg.id) {
            tracing::info!(node = %self.cfg.id, term = %self.term, %conf,
                "raft: this leader's removal committed; stepping down");
            self.become_follower(self.term, None);
        }
    }

    /// Asks for a linearizable read point. The answer comes back as a [`ReadState`] with
    /// the same `ctx` in a later Ready.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ProposeError> {
        assert!(
            !self.ready_outstanding,
            "read_index between ready and advance"
        );
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.reads.len() >= self.cfg.pending_reads_max {
            return Err(ProposeError::Busy);
        }
        let index = self.can_serve_reads().then(|| self.log.committed());
        self.reads.push(ctx, index);
        Ok(())
    }

    /// A leader may serve reads once it committed an entry of its own term.
    pub(crate) fn can_serve_reads(&self) -> bool {
        self.log.term(self.log.committed()) == Some(self.term)
    }

    /// Starts handing leadership to `to`: the leader stops taking proposals, brings `to` up to
    /// date and tells it to campaign at once. Gives up after an election timeout.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), ProposeError> {
        assert!(
            !self.ready_outstanding,
            "transfer_leader between ready and advance"
        );
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.cfg.id || !self.progress.contains_key(&to) || !self.conf().is_voter(to) {
            return Ok(());
        }
        self.transferee = Some((to, 0));
        if self.progress[&to].match_index == self.log.last_index() {
            self.send(to, self.term, Body::TimeoutNow);
        }
        Ok(())
    }

    /// The application took a snapshot of its state covering entries up to `index` (which
    /// it has applied); the log prefix it covers is dropped. The application persists the
    /// snapshot itself before calling this. `data` may be shared with the application (an
    /// `Arc`), so a large state is not copied to be kept here for followers.
    ///
    /// # Panics
    /// If `index` was not applied yet, or is beyond the entries marked persisted (an
    /// application that applies committed entries it could not persist must not snapshot
    /// them: see [`Ready`]).
    pub fn compact(&mut self, index: LogIndex, data: impl Into<Arc<Vec<u8>>>) {
        assert!(!self.ready_outstanding, "compact between ready and advance");
        assert!(
            index <= self.log.stable(),
            "compact at {index} beyond the persisted log ({})",
            self.log.stable()
        );
        if index <= self.log.snapshot_meta().index {
            return;
        }
        let meta = self.log.compact(index);
        self.snapshot = Some(Snapshot {
            meta,
            data: data.into(),
        });
    }

    pub(crate) fn reset_election_timeout(&mut self) {
        let min = u64::from(self.cfg.election_ticks);
        self.election_timeout = self.rng.range(min, 2 * min) as u32;
    }

    fn reset(&mut self, term: Term) {
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_election_timeout();
        self.votes.clear();
        self.progress.clear();
        self.transferee = None;
        for ctx in self.reads.clear() {
            self.read_states.push(ReadState { ctx, index: None });
        }
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    pub(crate) fn become_pre_candidate(&mut self) {
        // The term is not changed: a pre-vote only asks whether an election could succeed.
        self.reset(self.term);
        self.role = Role::PreCandidate;
    }

    pub(crate) fn become_candidate(&mut self) {
        self.reset(self.term.next());
        self.vote = Some(self.cfg.id);
        self.role = Role::Candidate;
    }

    pub(crate) fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        assert!(self.is_voter(), "only a voter becomes leader");
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.sync_progress();
        let next = self.log.last_index().next();
        // Raft §5.4.2: commit an entry of the new term at once, which commits every earlier
        // entry and lets the leader serve reads.
        self.log.append_new(Entry::noop(term, next));
        self.uncommitted_bytes = self.uncommitted_bytes_in(self.log.committed(), next);
    }

    /// Sends what a leader owes its followers: appends for new entries and a heartbeat round
    /// for new reads. Called before every Ready so that everything proposed in one batch of
    /// events goes out in one message per follower.
    fn flush(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        for p in self.peers() {
            self.maybe_send_append(p);
        }
        if self.reads.needs_round() && !self.sole_voter() {
            let seq = self.reads.start_round();
            self.bcast_heartbeat(seq);
        }
        let (conf, id) = (self.log.conf(), self.cfg.id);
        let released = self.reads.release(&conf, id);
        self.read_states
            .extend(released.into_iter().map(|(ctx, i)| ReadState {
                ctx,
                index: Some(i),
            }));
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    /// True if `ready` would return something to do.
    pub fn has_ready(&mut self) -> bool {
        self.flush();
        !self.msgs.is_empty()
            || !self.read_states.is_empty()
            || self.pending_snapshot.is_some()
            || !self.log.unstable().is_empty()
            || self.log.committed() > self.log.applied()
            || self.hard_state() != self.prev_hard_state
            || self.soft_state() != self.prev_soft_state
    }

    /// The next batch of work; see [`Ready`] for what the application must do with it.
    /// Must be followed by `advance` before any other call.
    pub fn ready(&mut self) -> Ready {
        assert!(
            !self.ready_outstanding,
            "ready called twice without advance"
        );
        self.flush();
        let hs = self.hard_state();
        let ss = self.soft_state();
        let rd = Ready {
            soft_state: (ss != self.prev_soft_state).then_some(ss),
            hard_state: (hs != self.prev_hard_state).then_some(hs),
            snapshot: self.pending_snapshot.take(),
            entries: self.log.unstable().to_vec(),
            messages: std::mem::take(&mut self.msgs),
            committed_entries: self.log.next_committed(self.cfg.apply_bytes_max),
            read_states: std::mem::take(&mut self.read_states),
        };
        self.prev_soft_state = ss;
        self.ready_outstanding = true;
        rd
    }

    /// Acknowledges that `rd` was persisted, sent and applied.
    pub fn advance(&mut self, rd: Ready) {
        assert!(self.ready_outstanding, "advance without ready");
        self.ready_outstanding = false;
        if let Some(hs) = rd.hard_state {
            self.prev_hard_state = hs;
        }
        // Only if the last entry handed out is still in the log: nothing may step in between,
        // but a stale mark would acknowledge an entry that was never persisted.
        if let Some(last) = rd.entries.last()
            && self.log.term(last.index) == Some(last.term)
        {
            self.log.stable_to(last.index);
        }
        if let Some(last) = rd.committed_entries.last() {
            self.log.applied_to(last.index);
        }
        if self.role == Role::Leader {
            // The leader's own entries count towards a quorum only once persisted.
            self.maybe_commit();
        }
    }

    /// Command bytes of the entries in `(after, through]`.
    pub(crate) fn uncommitted_bytes_in(&self, after: LogIndex, through: LogIndex) -> usize {
        let mut bytes = 0;
        let mut i = after.next();
        while i <= through {
            bytes += self.log.entry(i).map_or(0, |e| e.data.len());
            i = i.next();
        }
        bytes
    }

    /// Leader: commits the highest index a quorum of the voters in force has persisted (this
    /// leader counts only while it is a voter), if it is of this term.
    pub(crate) fn maybe_commit(&mut self) {
        let conf = self.log.conf();
        let mut matched: Vec<LogIndex> = self
            .progress
            .iter()
            .filter(|(id, _)| conf.is_voter(**id))
            .map(|(_, p)| p.match_index)
            .collect();
        if conf.is_voter(self.cfg.id) {
            matched.push(self.log.stable());
        }
        assert_eq!(
            matched.len(),
            conf.voter_count(),
            "the leader tracks every voter"
        );
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[self.quorum() - 1];
        if candidate > self.log.committed() && self.log.term(candidate) == Some(self.term) {
            let newly = self.uncommitted_bytes_in(self.log.committed(), candidate);
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(newly);
            self.log.commit_to(candidate);
            // Reads that arrived before this leader could serve them get their index now.
            self.reads.set_unknown_indexes(self.log.committed());
            self.after_commit();
        }
    }
}
