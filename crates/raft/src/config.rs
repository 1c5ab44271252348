//! Tunables of one Raft node, each with a named bound.

use shardkv_types::{Membership, NodeId};

/// The configuration of one Raft node. Every queue and batch the core keeps is bounded by a
/// field here.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; must be one of `voters` or `learners`.
    pub id: NodeId,
    /// The voting members of the group the node starts with. Only the bootstrap membership:
    /// once the log or a snapshot records one, that one stands (see the crate docs).
    pub voters: Vec<NodeId>,
    /// The learners (non-voting members) of the bootstrap membership; a node joining an
    /// existing group starts as one of them.
    pub learners: Vec<NodeId>,
    /// The minimum election timeout in ticks. Each node draws its timeout uniformly from
    /// `[election_ticks, 2 * election_ticks)` after every reset.
    pub election_ticks: u32,
    /// Ticks between leader heartbeats. Must be well below `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Run a pre-vote round before incrementing the term (Raft thesis §9.6): a node that was
    /// partitioned away cannot disrupt a healthy leader when it returns.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum within `election_ticks`; and a
    /// node that heard from a leader within `election_ticks` ignores vote requests.
    pub check_quorum: bool,
    /// The most entries in one AppendEntries message.
    pub append_entries_max: usize,
    /// The most entry bytes in one AppendEntries message (at least one entry is always sent).
    pub append_bytes_max: usize,
    /// The most AppendEntries messages in flight to one follower in the replicate state.
    pub inflight_appends_max: usize,
    /// The most snapshot bytes in one InstallSnapshot chunk.
    pub snapshot_chunk_bytes_max: usize,
    /// The most committed-entry bytes handed to the application in one Ready (at least one
    /// entry is always handed out).
    pub apply_bytes_max: usize,
    /// The most log entries a leader holds beyond its commit index; proposals past it fail
    /// with `ProposeError::Busy`.
    pub uncommitted_entries_max: usize,
    /// The most ReadIndex requests pending at the leader.
    pub pending_reads_max: usize,
    /// The largest command a proposal may carry.
    pub proposal_bytes_max: usize,
    /// The most command bytes a leader holds uncommitted; a proposal beyond it (unless
    /// nothing is uncommitted) is refused with `ProposeError::Busy`. With
    /// `uncommitted_entries_max`, bounds the memory of a leader that cannot commit (its
    /// followers' disks are full, or they are cut off).
    pub uncommitted_bytes_max: usize,
    /// A learner is promoted only when its log is at most this many entries behind the
    /// leader's (thesis §4.2.1: a voter that cannot keep up would stall commits).
    pub promote_lag_max: u64,
}

impl Config {
    /// Defaults for a node with a 10 ms tick: heartbeats every 100 ms, elections after
    /// 500–1000 ms of silence.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            learners: Vec::new(),
            election_ticks: 50,
            heartbeat_ticks: 10,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 256,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 256,
            snapshot_chunk_bytes_max: 256 << 10,
            apply_bytes_max: 4 << 20,
            uncommitted_entries_max: 10_000,
            pending_reads_max: 10_000,
            proposal_bytes_max: 8 << 20,
            uncommitted_bytes_max: 256 << 20,
            promote_lag_max: 1_000,
        }
    }

    /// The bootstrap membership: `voters` and `learners`.
    ///
    /// # Panics
    /// If they do not form a valid membership (see [`Config::validate`]).
    pub fn membership(&self) -> Membership {
        Membership::new(&self.voters, &self.learners)
            .unwrap_or_else(|e| panic!("invalid membership in the configuration: {e}"))
    }

    /// Checks the invariants between fields.
    ///
    /// # Panics
    /// If the configuration is inconsistent; that is a programmer error.
    pub fn validate(&self) {
        assert!(
            self.voters.contains(&self.id) || self.learners.contains(&self.id),
            "{} is not among the voters {:?} or learners {:?}",
            self.id,
            self.voters,
            self.learners
        );
        assert!(!self.voters.is_empty(), "a group needs at least one voter");
        assert!(self.id.0 != 0, "node id 0 is reserved");
        assert!(
            self.heartbeat_ticks >= 1,
            "heartbeat_ticks must be at least 1"
        );
        assert!(
            self.election_ticks > self.heartbeat_ticks,
            "election_ticks ({}) must exceed heartbeat_ticks ({})",
            self.election_ticks,
            self.heartbeat_ticks
        );
        assert!(self.append_entries_max >= 1 && self.inflight_appends_max >= 1);
        assert!(self.snapshot_chunk_bytes_max >= 1);
        self.membership();
    }
}
