//! `Node`: the one owner of a member's replica and its host (store + Ready loop).
//! Synchronous: the node thread (see `driver`) feeds it inbox items and ticks, then calls
//! [`Node::drive`], which runs the shared host loop ([`shardkv_host::Host::drive`]) and
//! answers clients.
//!
//! The Ready loop, the persistence ordering (group commit, a leader's send before its own
//! fdatasync, commit-only Readys written without a sync), the NoSpace stall and the refusal
//! policy (duplicates from sessions, NoSpace / Unavailable / Busy) live in `shardkv-host`,
//! the same code the simulator crashes; see its crate docs for the contract. What stays
//! here is production-only: reply channels, logging, the leader hand-off on shutdown, the
//! status page and the metrics it publishes for the admin port ([`Node::publish_metrics`]).
//!
//! Failure policy (enforced by the host, logged here): a storage error other than
//! `NoSpace` is fatal (`drive` returns it and the process exits non-zero). `NoSpace` while
//! persisting a Ready stalls the node until space frees: it runs on without writing (it
//! answers heartbeats, applies what the others commit; writes are answered `NoSpace` by a
//! leader, which keeps serving reads and hands off once a quorum of others caught up;
//! followers redirect), or, for a snapshot from the leader, waits with peer messages
//! dropped; the stall is logged rate limited (see `stall_log`). While free space is below
//! the configured
//! reserve, writes are answered `NoSpace` before they are proposed and reads keep working.

use crate::handler::Inbound;
use crate::member::Member;
use crate::membership::Members;
use crate::metrics::{GroupMetrics, RaftView, TimedDisk};
use crate::outbox::Outbox;
use crate::snapshot_writer::ThreadWriter;
use crate::stall_log::{StallLine, StallLog};
use shardkv_host::{Host, HostEvent, HostOptions, Observer};
use shardkv_net::{NodeStatus, PeerTransport};
use shardkv_raft::Role;
use shardkv_rsm::ReqId;
use shardkv_storage::RaftStore;
use shardkv_types::{Gid, NodeId, Term};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

pub use shardkv_host::Fatal;

/// Client requests waiting for their outcome; more are answered `Busy`.
pub const PENDING_REQUESTS_MAX: usize = shardkv_host::REQUESTS_PENDING_MAX_DEFAULT;

/// One member of one group: the hosted app (a replica, or a shard group's replica and
/// duties), host (store and Ready loop), transport, the clients waiting, and for an app
/// that asks other groups, the outbox that carries its requests.
///
/// Invariant: the replica is only mutated through `host` (which drops ticks and messages
/// while frozen), except `transfer_leader`, which `hand_off` calls only when not
/// frozen, and the answers of other groups, which the app takes on its own clock.
pub struct Node<A: Member> {
    id: NodeId,
    gid: Gid,
    replica: A,
    host: Host<A, TimedDisk>,
    transport: PeerTransport,
    outbox: Option<Outbox>,
    pending: BTreeMap<ReqId, oneshot::Sender<A::Response>>,
    next_req: ReqId,
    /// Role and term last logged.
    seen: (Role, Term, Option<NodeId>),
    /// Why the app last said it cannot go on (logged when it changes).
    stuck: Option<String>,
    /// The disk-full stall's log lines, rate limited.
    stalls: StallLog,
    /// What the admin port shows of this member (published after every drive).
    metrics: Arc<GroupMetrics>,
    /// The group's membership as the shell keeps it: addresses, the identity file, the
    /// changes `shardkv member` asked for.
    members: Members,
}

/// The production observer: logs what the host reports, the stall rate limited
/// ([`StallLog`]). Checks nothing.
struct LogObserver<'a> {
    stalls: &'a mut StallLog,
}

impl Observer for LogObserver<'_> {
    fn on_event(&mut self, _id: NodeId, event: HostEvent) {
        let now = Instant::now();
        match event {
            HostEvent::Stalled { path, why } => {
                if let Some(line) = self.stalls.on_stalled(now) {
                    line.log(Some(&path), &why);
                }
            }
            HostEvent::Resumed => {
                if let Some(line) = self.stalls.on_resumed(now) {
                    line.log(None, "");
                }
            }
            HostEvent::SnapshotSaved { index, bytes } => {
                tracing::debug!(index = %index, bytes, "snapshot saved")
            }
            HostEvent::SnapshotNotSaved {
                index,
                error,
                retry_in_ticks,
            } => {
                let retry_in = crate::driver::TICK * retry_in_ticks as u32;
                if let Some(StallLine::SnapshotNotSaved { times }) =
                    self.stalls.on_snapshot_not_saved(now)
                {
                    tracing::warn!(index = %index, %error, retry_in = ?retry_in, times,
                        "snapshot not saved (the log is still complete); will try again")
                }
            }
        }
    }
}

/// Ticks a member that handed leadership off declines it back (three of the starved
/// process's step-down periods: `listen::STARVED_STEP_DOWN_AFTER`).
const HAND_OFF_DECLINE_TICKS: u64 = 1_500;

/// How much the log may grow with the state, in multiples of `--max-raft-state`: with the
/// 64 MiB default, a state is rewritten at most once per its own size of log up to 512 MiB
/// of state, and a member holds at most 576 MiB of log in memory.
pub const LOG_GROWTH_MAX_FACTOR: u64 = 8;

/// The host options of group `gid`'s member: the leaders of the groups a process hosts
/// spread over the processes (preferred leaders, ranked by gid), and a large state is not
/// rewritten once per `max_raft_state` of log (shardkv-host docs, "Snapshot points").
pub fn host_options(gid: Gid, max_raft_state: Option<u64>) -> HostOptions {
    HostOptions {
        requests_pending_max: PENDING_REQUESTS_MAX,
        leader_rank: Some(gid.0),
        log_grows_with_state_up_to: max_raft_state
            .map(|max| max.saturating_mul(LOG_GROWTH_MAX_FACTOR)),
    }
}

impl<A: Member> Node<A> {
    /// A member of group `gid`; `outbox` carries the requests of an app that asks other
    /// groups (without one they are dropped).
    pub fn new(
        gid: Gid,
        replica: A,
        store: RaftStore<TimedDisk>,
        transport: PeerTransport,
        outbox: Option<Outbox>,
        members: Members,
        opts: HostOptions,
    ) -> Self {
        let raft = replica.raft();
        let id = raft.id();
        let seen = (raft.role(), raft.term(), raft.leader());
        Node {
            id,
            gid,
            host: Host::new(id, store, opts)
                .with_snapshot_writer(Box::new(ThreadWriter::default())),
            replica,
            transport,
            outbox,
            pending: BTreeMap::new(),
            next_req: 1,
            seen,
            stuck: None,
            stalls: StallLog::default(),
            metrics: Arc::new(GroupMetrics::new(gid, "")),
            members,
        }
    }

    /// Publishes to `metrics` (shared with the admin port) instead of a private set, and
    /// times snapshot saves into it.
    pub fn with_metrics(mut self, metrics: Arc<GroupMetrics>) -> Self {
        let writer = ThreadWriter::timed(metrics.clone());
        self.host = self.host.with_snapshot_writer(Box::new(writer));
        self.metrics = metrics;
        self
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn term(&self) -> Term {
        self.replica.raft().term()
    }

    /// Takes one inbox item (anything but `Stop`).
    pub fn handle(&mut self, item: Inbound<A>) {
        match item {
            Inbound::Raft(msgs, _charge) => {
                for m in msgs {
                    self.host.step(&mut self.replica, m);
                }
            }
            Inbound::Request { req, reply, .. } => self.request(req, reply),
            Inbound::Requests { reqs, .. } => {
                for (req, reply) in reqs {
                    self.request(req, reply);
                }
            }
            Inbound::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Inbound::ChangeMembership { change, reply } => {
                let stalled = self.host.is_stalled();
                let raft = self.replica.raft_mut();
                self.members
                    .propose(raft, &mut self.transport, stalled, change, reply);
            }
            // `held` is given back to the outbox when the item is dropped, after this.
            Inbound::Answer {
                token,
                from,
                answer,
                held: _held,
            } => {
                self.metrics
                    .add_shard_bytes_moved(crate::metrics::shard_bytes(&answer));
                self.replica.on_answer(token, from, answer)
            }
            Inbound::Stop => {}
        }
    }

    fn request(&mut self, req: A::Request, reply: oneshot::Sender<A::Response>) {
        let id = self.next_req;
        self.next_req += 1;
        self.pending.insert(id, reply);
        // The host answers refusals and duplicates through `take_responses`, like the rest.
        self.host.submit(&mut self.replica, id, req);
    }

    pub fn is_leader(&self) -> bool {
        self.replica.raft().is_leader()
    }

    /// A leader asks the next member (by id, wrapping) to take over — on a graceful
    /// shutdown, so clients see a short hand-off instead of an election timeout, or when
    /// this process cannot serve clients; `why` is logged. False when there is nothing to
    /// hand off (not the leader, alone, or stalled).
    pub fn hand_off(&mut self, why: &str) -> bool {
        // Whether or not it leads now, it should not be handed leadership back soon.
        self.host.decline_leadership_for(HAND_OFF_DECLINE_TICKS);
        if self.host.is_frozen() || !self.is_leader() {
            return false;
        }
        let voters: Vec<NodeId> = self.replica.raft().conf().voters().collect();
        let next = voters
            .iter()
            .copied()
            .filter(|&v| v > self.id)
            .min()
            .or_else(|| voters.iter().copied().filter(|&v| v != self.id).min());
        let Some(to) = next else {
            return false;
        };
        tracing::info!(term = %self.term(), to = %to, why, "handing leadership off");
        let _ = self.replica.raft_mut().transfer_leader(to);
        true
    }

    /// Advances the logical clock by one tick (skipped while stalled).
    pub fn tick(&mut self) {
        self.host.tick(&mut self.replica);
    }

    /// Sets whether free disk space is below the reserve.
    pub fn set_disk_low(&mut self, low: bool) {
        if self.host.set_disk_low(low) {
            if low {
                tracing::warn!(term = %self.term(), "free disk space below the reserve: refusing writes");
            } else {
                tracing::info!(term = %self.term(), "free disk space above the reserve again: accepting writes");
            }
        }
    }

    /// Forgets requests whose client side gave up (the handler's deadline passed and its
    /// receiver is gone), so the map stays bounded by live requests. The replica still
    /// answers them later; those answers are dropped.
    pub fn forget_abandoned(&mut self) {
        let host = &mut self.host;
        self.pending.retain(|&id, tx| {
            let live = !tx.is_closed();
            if !live {
                host.forget(id);
            }
            live
        });
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
            raft_state_bytes: self.host.raft_state_bytes(),
            no_space: self.host.no_space(),
            group: self.gid,
            shards: self.replica.shards_held(),
            members: self.members.infos(self.replica.raft()),
            hosted: Vec::new(),
            redis_addr: None,
        }
    }

    /// Runs the host's Ready loop until the core has nothing more (or persistence stalls),
    /// then answers clients. One fdatasync per Ready: everything that arrived since the last
    /// drive shares it (group commit).
    pub fn drive(&mut self) -> Result<(), Fatal> {
        let transport = &self.transport;
        let mut send = |m| transport.send(m);
        let mut observer = LogObserver {
            stalls: &mut self.stalls,
        };
        let driven = self.host.drive(&mut self.replica, &mut send, &mut observer);
        if let Some(line) = self.stalls.on_drive(Instant::now()) {
            line.log(None, "");
        }
        if let Err(e) = driven {
            tracing::error!(term = %self.term(), error = %e, "fatal error in the ready loop");
            return Err(e);
        }
        self.deliver_replies();
        let applied = self.replica.take_applied_conf_changes();
        let stalled = self.host.is_stalled();
        self.members
            .after_drive(self.replica.raft(), stalled, applied, &mut self.transport);
        self.send_outbound();
        self.log_role_change();
        Ok(())
    }

    fn deliver_replies(&mut self) {
        for (id, reply) in self.host.take_responses(&mut self.replica) {
            if A::proposal_failed(&reply) {
                self.metrics.add_proposal_failed();
            }
            if let Some(tx) = self.pending.remove(&id) {
                let _ = tx.send(reply);
            }
        }
    }

    /// Hands the app's requests to other groups to the outbox (which sends them without
    /// blocking the node thread, and feeds the answers back through the inbox).
    fn send_outbound(&mut self) {
        let stuck = self.replica.stuck();
        if stuck != self.stuck {
            match &stuck {
                Some(why) => tracing::error!(%why, "the group cannot take configs"),
                None => tracing::info!("the group takes configs again"),
            }
            self.stuck = stuck;
        }
        let out = self.replica.take_outbound();
        if let Some(outbox) = &self.outbox {
            for o in out {
                outbox.send(o);
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

    /// Publishes the replica's Raft view to the admin port's metrics (after every drive:
    /// a few atomic stores).
    pub fn publish_metrics(&self) {
        let raft = self.replica.raft().status();
        let view = RaftView {
            leader: raft.leader,
            is_leader: raft.role == Role::Leader,
            term: raft.term.0,
            commit: raft.commit.0,
            applied: raft.applied.0,
            raft_state_bytes: self.host.raft_state_bytes(),
            pending_requests: self.pending.len() as u64,
            sessions: self.replica.sessions() as u64,
            sent: self.transport.sent(),
            send_dropped: self.transport.dropped(),
        };
        self.metrics.publish(&view, Instant::now());
    }

    /// Publishes the shards this group is pulling (for the migration counters); a shard
    /// group only, every few ticks (it walks the shard table).
    pub fn publish_shards(&self) {
        let Some(held) = self.replica.shards_held() else {
            return;
        };
        let pulling: BTreeSet<(u64, u64)> = held
            .shards
            .iter()
            .filter(|(_, p)| *p == shardkv_net::ShardPhase::Pulling)
            .map(|(id, _)| (held.config.0, id.0))
            .collect();
        self.metrics.publish_pulling(pulling);
    }
}
