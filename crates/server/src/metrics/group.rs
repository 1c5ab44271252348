//! `GroupMetrics`: what one hosted replica reports to the admin port. The node thread
//! publishes its Raft view after every drive ([`GroupMetrics::publish`]: a dozen relaxed
//! atomic stores, no lock), the KV front counts client requests as they are answered, the
//! router counts peer messages as they arrive; a scrape or a health check only reads.

use super::histogram::{DISK_BUCKETS, Histogram, REQUEST_BUCKETS};
use shardkv_kv::{KvCommand, KvQuery, KvRequest};
use shardkv_rsm::{Error, Request};
use shardkv_types::{Gid, NodeId};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Client operations, as the `op` label names them.
pub const OPS: [&str; 15] = [
    "get",
    "put",
    "append",
    "delete",
    "cas",
    "set",
    "getdel",
    "incrby",
    "mdel",
    "mset",
    "mget",
    "exists",
    "strlen",
    "pipeline_write",
    "pipeline_read",
];
/// The shard controller's request ops, as the `op` label names them (indexed like
/// [`OPS`]: a controller group counts these in the first slots).
pub const CTRL_OPS: [&str; 5] = ["query", "join", "leave", "move", "servers"];

/// Request outcomes, as the `outcome` label names them: `ok` or an error's kind.
pub const OUTCOMES: [&str; 13] = [
    "ok",
    "not_leader",
    "lost_leadership",
    "wrong_group",
    "busy",
    "too_large",
    "invalid",
    "stale",
    "session_expired",
    "cas_failed",
    "timeout",
    "no_space",
    "unavailable",
];

/// A group whose node thread published nothing for this long is unhealthy (the thread is
/// stuck, e.g. in an fsync that does not return).
pub const PUBLISH_STALE: Duration = Duration::from_secs(5);

/// A group whose applied index lags its commit index and has not moved for this long is
/// unhealthy (applying is stuck).
pub const APPLY_STALE: Duration = Duration::from_secs(5);

/// The node thread's view of its replica at the end of one drive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftView {
    pub leader: Option<NodeId>,
    pub is_leader: bool,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub raft_state_bytes: u64,
    /// Client requests proposed or queued here and not answered yet.
    pub pending_requests: u64,
    /// Client sessions in the replica's session table.
    pub sessions: u64,
    /// Peer messages the transport queued, and dropped (queue full, peer unreachable).
    pub sent: u64,
    pub send_dropped: u64,
}

/// One group's health as `/health` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupHealth {
    pub gid: Gid,
    pub has_leader: bool,
    /// The node thread published within [`PUBLISH_STALE`].
    pub thread_alive: bool,
    /// Applied caught up with commit, or moved within [`APPLY_STALE`].
    pub applied_recently: bool,
}

impl GroupHealth {
    pub fn healthy(&self) -> bool {
        self.has_leader && self.thread_alive && self.applied_recently
    }
}

/// One hosted group's metrics. Counters only grow; gauges are the last published value.
#[derive(Debug)]
pub struct GroupMetrics {
    pub gid: Gid,
    /// `kv`, `ctrl` or `shard`.
    pub service: &'static str,
    epoch: Instant,
    published: AtomicBool,
    published_at_ms: AtomicU64,
    applied_moved_at_ms: AtomicU64,
    /// 0: no leader known.
    leader: AtomicU64,
    is_leader: AtomicBool,
    term: AtomicU64,
    commit: AtomicU64,
    applied: AtomicU64,
    raft_state_bytes: AtomicU64,
    pending_requests: AtomicU64,
    sessions: AtomicU64,
    sent: AtomicU64,
    send_dropped: AtomicU64,
    leader_changes: AtomicU64,
    proposals_failed: AtomicU64,
    received: AtomicU64,
    inbox_dropped: AtomicU64,
    migrations_started: AtomicU64,
    migrations_finished: AtomicU64,
    shard_bytes_moved: AtomicU64,
    /// (config, shard) pairs seen pulling at the last [`GroupMetrics::publish_pulling`];
    /// only the node thread takes it.
    pulling: Mutex<BTreeSet<(u64, u64)>>,
    /// Indexed `[op][outcome]` like [`OPS`] and [`OUTCOMES`].
    requests: [[AtomicU64; OUTCOMES.len()]; OPS.len()],
    latency: [Histogram; OPS.len()],
    pub fsync: Histogram,
    pub snapshot_save: Histogram,
}

impl GroupMetrics {
    pub fn new(gid: Gid, service: &'static str) -> GroupMetrics {
        GroupMetrics {
            gid,
            service,
            epoch: Instant::now(),
            published: AtomicBool::new(false),
            published_at_ms: AtomicU64::new(0),
            applied_moved_at_ms: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            is_leader: AtomicBool::new(false),
            term: AtomicU64::new(0),
            commit: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            raft_state_bytes: AtomicU64::new(0),
            pending_requests: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            send_dropped: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            proposals_failed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            inbox_dropped: AtomicU64::new(0),
            migrations_started: AtomicU64::new(0),
            migrations_finished: AtomicU64::new(0),
            shard_bytes_moved: AtomicU64::new(0),
            pulling: Mutex::new(BTreeSet::new()),
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram::new(REQUEST_BUCKETS)),
            fsync: Histogram::new(DISK_BUCKETS),
            snapshot_save: Histogram::new(DISK_BUCKETS),
        }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The node thread's view after a drive. Counts a leader change when the known leader
    /// changes to another member (not when it is merely lost).
    pub fn publish(&self, v: &RaftView, now: Instant) {
        let r = Ordering::Relaxed;
        let leader = v.leader.map_or(0, |l| l.0);
        let before = self.leader.swap(leader, r);
        if leader != 0 && leader != before {
            self.leader_changes.fetch_add(1, r);
        }
        let now_ms = self.now_ms(now);
        if self.applied.swap(v.applied, r) != v.applied || !self.published.load(r) {
            self.applied_moved_at_ms.store(now_ms, r);
        }
        self.is_leader.store(v.is_leader, r);
        self.term.store(v.term, r);
        self.commit.store(v.commit, r);
        self.raft_state_bytes.store(v.raft_state_bytes, r);
        self.pending_requests.store(v.pending_requests, r);
        self.sessions.store(v.sessions, r);
        self.sent.store(v.sent, r);
        self.send_dropped.store(v.send_dropped, r);
        self.published_at_ms.store(now_ms, r);
        self.published.store(true, r);
    }

    /// The shards this group is pulling now, as (config, shard): a pair not seen at the
    /// previous call started a migration, a pair gone since finished one. Called by the
    /// node thread every few ticks, so a move shorter than that is not counted.
    pub fn publish_pulling(&self, now: BTreeSet<(u64, u64)>) {
        let mut seen = self.pulling.lock().unwrap_or_else(|p| p.into_inner());
        let started = now.difference(&seen).count() as u64;
        let finished = seen.difference(&now).count() as u64;
        self.migrations_started
            .fetch_add(started, Ordering::Relaxed);
        self.migrations_finished
            .fetch_add(finished, Ordering::Relaxed);
        *seen = now;
    }

    pub fn add_shard_bytes_moved(&self, bytes: u64) {
        self.shard_bytes_moved.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_proposal_failed(&self) {
        self.proposals_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Peer messages delivered to this group's inbox (`delivered`) or dropped there.
    pub fn add_received(&self, messages: u64, delivered: bool) {
        let counter = match delivered {
            true => &self.received,
            false => &self.inbox_dropped,
        };
        counter.fetch_add(messages, Ordering::Relaxed);
    }

    /// The names of the ops this group counts: [`CTRL_OPS`] for the controller, else
    /// [`OPS`].
    pub fn ops(&self) -> &'static [&'static str] {
        if self.service == "ctrl" {
            &CTRL_OPS
        } else {
            &OPS
        }
    }

    /// A client request answered after `took`.
    pub fn observe_request<T>(&self, op: usize, outcome: &Result<T, Error>, took: Duration) {
        self.requests[op][outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
        self.latency[op].observe(took);
    }

    pub fn health(&self, now: Instant) -> GroupHealth {
        let r = Ordering::Relaxed;
        let now_ms = self.now_ms(now);
        let age = |at: &AtomicU64| Duration::from_millis(now_ms.saturating_sub(at.load(r)));
        let published = self.published.load(r);
        GroupHealth {
            gid: self.gid,
            has_leader: published && self.leader.load(r) != 0,
            thread_alive: published && age(&self.published_at_ms) < PUBLISH_STALE,
            applied_recently: published
                && (self.applied.load(r) >= self.commit.load(r)
                    || age(&self.applied_moved_at_ms) < APPLY_STALE),
        }
    }

    /// Everything a scrape shows, read now.
    pub fn read(&self) -> GroupReading {
        let r = Ordering::Relaxed;
        GroupReading {
            has_leader: self.leader.load(r) != 0,
            is_leader: self.is_leader.load(r),
            term: self.term.load(r),
            leader_changes: self.leader_changes.load(r),
            commit: self.commit.load(r),
            applied: self.applied.load(r),
            pending: self.pending_requests.load(r),
            failed: self.proposals_failed.load(r),
            raft_state_bytes: self.raft_state_bytes.load(r),
            sessions: self.sessions.load(r),
            sent: self.sent.load(r),
            received: self.received.load(r),
            send_dropped: self.send_dropped.load(r),
            inbox_dropped: self.inbox_dropped.load(r),
            migrations_started: self.migrations_started.load(r),
            migrations_finished: self.migrations_finished.load(r),
            shard_bytes_moved: self.shard_bytes_moved.load(r),
        }
    }

    /// Requests answered so far with op `op` and outcome `outcome` (indices into [`OPS`]
    /// and [`OUTCOMES`]).
    pub fn requests(&self, op: usize, outcome: usize) -> u64 {
        self.requests[op][outcome].load(Ordering::Relaxed)
    }

    pub fn latency(&self, op: usize) -> &Histogram {
        &self.latency[op]
    }
}

/// A group's counters and gauges at one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupReading {
    pub has_leader: bool,
    pub is_leader: bool,
    pub term: u64,
    pub leader_changes: u64,
    pub commit: u64,
    pub applied: u64,
    pub pending: u64,
    pub failed: u64,
    pub raft_state_bytes: u64,
    pub sessions: u64,
    pub sent: u64,
    pub received: u64,
    pub send_dropped: u64,
    pub inbox_dropped: u64,
    pub migrations_started: u64,
    pub migrations_finished: u64,
    pub shard_bytes_moved: u64,
}

/// The index in [`CTRL_OPS`] of a controller request.
pub fn ctrl_op_index(req: &shardkv_net::convert::CtrlRequest) -> usize {
    use shardkv_ctrl::CtrlCommand;
    match req {
        Request::Read(_) => 0,
        Request::Write { cmd, .. } => match cmd {
            CtrlCommand::Join { .. } => 1,
            CtrlCommand::Leave { .. } => 2,
            CtrlCommand::Move { .. } => 3,
            CtrlCommand::Servers { .. } => 4,
        },
    }
}

/// The index in [`OPS`] of a KV request.
pub fn op_index(req: &KvRequest) -> usize {
    match req {
        Request::Read(KvQuery::Get { .. }) => 0,
        Request::Read(KvQuery::GetMany { .. }) => 10,
        Request::Read(KvQuery::Exists { .. }) => 11,
        Request::Read(KvQuery::StrLen { .. }) => 12,
        Request::Read(KvQuery::Pipeline { .. }) => 14,
        Request::Write { cmd, .. } => match cmd {
            KvCommand::Put { .. } => 1,
            KvCommand::Append { .. } | KvCommand::AppendLen { .. } => 2,
            KvCommand::Delete { .. } => 3,
            KvCommand::Cas { .. } => 4,
            KvCommand::Set { .. } => 5,
            KvCommand::GetDel { .. } => 6,
            KvCommand::IncrBy { .. } => 7,
            KvCommand::DeleteMany { .. } => 8,
            KvCommand::PutMany { .. } => 9,
            KvCommand::Pipeline { .. } => 13,
        },
    }
}

/// The index in [`OUTCOMES`] of an answer.
pub fn outcome_index<T>(r: &Result<T, Error>) -> usize {
    match r {
        Ok(_) => 0,
        Err(e) => OUTCOMES
            .iter()
            .position(|o| *o == e.kind())
            .unwrap_or(OUTCOMES.len() - 1),
    }
}

/// Whether an answer means a proposal this member took failed: it lost leadership before
/// the outcome was known, or it refused the request for want of room (queue, disk) or
/// availability. A redirect (`not_leader`, `wrong_group`) or a request the client got
/// wrong is not a failed proposal.
pub fn proposal_failed<T>(r: &Result<T, Error>) -> bool {
    matches!(
        r,
        Err(Error::LostLeadership { .. }
            | Error::Timeout { .. }
            | Error::Busy
            | Error::NoSpace
            | Error::Unavailable { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(leader: Option<u64>, commit: u64, applied: u64) -> RaftView {
        RaftView {
            leader: leader.map(NodeId),
            commit,
            applied,
            ..RaftView::default()
        }
    }

    #[test]
    fn leader_changes_count_a_new_leader_not_a_lost_one() {
        // Goal: etcd's leader_changes_seen semantics; method: publish a sequence of leaders.
        let m = GroupMetrics::new(Gid(1), "kv");
        let t = Instant::now();
        m.publish(&view(None, 0, 0), t);
        m.publish(&view(Some(1), 0, 0), t);
        m.publish(&view(Some(1), 0, 0), t);
        m.publish(&view(None, 0, 0), t);
        m.publish(&view(Some(2), 0, 0), t);
        assert_eq!(m.read().leader_changes, 2);
        assert!(m.read().has_leader);
    }

    #[test]
    fn health_needs_a_leader_a_live_thread_and_applying() {
        // Goal: each of the three health conditions turns a group unhealthy; method: publish views
        // at chosen instants.
        let m = GroupMetrics::new(Gid(1), "kv");
        let t = Instant::now();
        assert!(!m.health(t).healthy(), "nothing published yet");
        m.publish(&view(None, 5, 5), t);
        let h = m.health(t);
        assert!(!h.has_leader && h.thread_alive && h.applied_recently);
        m.publish(&view(Some(2), 5, 5), t);
        assert!(m.health(t).healthy());
        assert!(
            !m.health(t + PUBLISH_STALE).healthy(),
            "a thread that stopped publishing is unhealthy"
        );
        m.publish(&view(Some(2), 9, 6), t);
        assert!(m.health(t + Duration::from_secs(1)).healthy(), "applying");
        m.publish(&view(Some(2), 9, 6), t + APPLY_STALE);
        let h = m.health(t + APPLY_STALE);
        assert!(
            h.thread_alive && !h.applied_recently,
            "applied stuck behind commit"
        );
    }

    #[test]
    fn migrations_start_when_a_shard_is_first_seen_pulling_and_finish_when_it_is_not() {
        // Goal: migrations counted from the pulling set's changes; method: three samples.
        let m = GroupMetrics::new(Gid(1), "shard");
        m.publish_pulling([(2, 0), (2, 1)].into());
        m.publish_pulling([(2, 1)].into());
        m.publish_pulling([(3, 1), (3, 4)].into());
        let r = m.read();
        assert_eq!((r.migrations_started, r.migrations_finished), (4, 2));
    }

    #[test]
    fn requests_are_counted_by_op_and_outcome() {
        // Goal: a request lands in its (op, outcome) counter and its op's histogram; method: two
        // puts.
        let m = GroupMetrics::new(Gid(1), "kv");
        let put = KvRequest::Write {
            client: shardkv_types::ClientId(1),
            seq: shardkv_types::Seq(1),
            retry: false,
            cmd: KvCommand::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
        };
        let op = op_index(&put);
        assert_eq!(OPS[op], "put");
        m.observe_request(op, &Ok::<(), Error>(()), Duration::from_millis(1));
        let busy: Result<(), Error> = Err(Error::Busy);
        m.observe_request(op, &busy, Duration::from_millis(1));
        assert_eq!(m.requests(op, 0), 1);
        assert_eq!(m.requests(op, outcome_index(&busy)), 1);
        assert_eq!(OUTCOMES[outcome_index(&busy)], "busy");
        assert_eq!(m.latency(op).snapshot().count, 2);
        assert!(proposal_failed(&busy));
        assert!(!proposal_failed(&Err::<(), _>(Error::NotLeader {
            leader: None
        })));
    }

    #[test]
    fn every_error_kind_has_its_own_outcome() {
        // Goal: no error kind falls into another's outcome label; method: every variant.
        let errors = [
            Error::NotLeader { leader: None },
            Error::LostLeadership { leader: None },
            Error::WrongGroup { gid: Gid(1) },
            Error::Busy,
            Error::TooLarge { bytes: 1, max: 0 },
            Error::Invalid {
                reason: String::new(),
            },
            Error::Stale,
            Error::SessionExpired,
            Error::CasFailed { bytes: 0 },
            Error::Timeout {
                detail: String::new(),
            },
            Error::NoSpace,
            Error::Unavailable {
                reason: String::new(),
            },
        ];
        for e in errors {
            let kind = e.kind();
            assert_eq!(OUTCOMES[outcome_index(&Err::<(), _>(e))], kind);
        }
    }
}
