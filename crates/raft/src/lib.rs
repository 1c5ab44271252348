//! A synchronous, deterministic Raft core.
//!
//! [`RawNode`] is the Raft algorithm and nothing else: no I/O, no clock, no threads, no OS
//! randomness. Its inputs are [`RawNode::tick`] (one unit of logical time),
//! [`RawNode::step`] (a message from a peer), [`RawNode::propose`] (a command) and
//! [`RawNode::read_index`] (a linearizable read point). Its output is a [`Ready`] batch:
//! what to persist, what to send, what to apply. The same inputs always produce the same
//! outputs, so a simulator can run whole clusters under one seed.
//!
//! # The persistence contract
//!
//! For every [`Ready`] the application, in this order:
//! 1. persists the snapshot, the entries and the hard state, durably (fsync);
//! 2. sends the messages (a vote or an append acknowledgement must never leave before the
//!    state it promises is on disk);
//! 3. installs the snapshot into its state machine and applies the committed entries, in
//!    order, each exactly once;
//! 4. serves the read states whose index it has applied;
//! 5. calls [`RawNode::advance`].
//!
//! Snapshots the application takes itself are handed to [`RawNode::compact`], which drops
//! the covered prefix of the in-memory log only; the application persists the snapshot
//! (before or after: storage drops the durable log prefix only once the snapshot itself is
//! durable, so a crash in between recovers from the full log).
//!
//! # What it implements
//!
//! Leader election with randomized timeouts, PreVote and CheckQuorum (both on by default);
//! log replication that sends as soon as a command is proposed (all commands proposed
//! between two `ready` calls share one message per follower), pipelined within a bounded
//! window; fast conflict backup (conflict term and its first index); the paper's commit rule
//! and a no-op entry at the start of every term; InstallSnapshot in bounded chunks; ReadIndex
//! reads confirmed by one heartbeat round; leadership transfer; membership change one server
//! at a time (below).
//!
//! # Membership
//!
//! A group's membership ([`shardkv_types::Membership`]) is its voters and its learners.
//! Learners receive the log and snapshots but never campaign, and neither their votes nor
//! their acknowledgements count toward any quorum (elections, commits, ReadIndex rounds,
//! CheckQuorum). It changes by single-server steps (Raft thesis §4.1–4.3): a
//! [`shardkv_types::ConfChange`] entry adds a learner, promotes a learner to voter, or
//! removes a member, proposed with [`RawNode::propose_conf_change`].
//!
//! Why single-server changes and not joint consensus: adding or removing one voter at a
//! time means any majority of the old voters and any majority of the new overlap, so no two
//! leaders can be elected in one term across the change with a single configuration in
//! force per node; joint consensus (§4.3) buys arbitrary changes in one step at the cost of
//! a second configuration kind, two-phase commits and two quorum rules everywhere. Replacing
//! a machine is add learner → promote → remove, three steps an operator wants to watch
//! anyway; the learner stage (§4.2.1) keeps a new member from stalling commits while it
//! catches up.
//!
//! The rules:
//! - Every node uses the latest membership in its log, committed or not (§4.1); a
//!   membership entry cut off by a new leader's log reverts to the one before it.
//! - A leader refuses a change while its previous one is uncommitted
//!   ([`ProposeError::ConfChangePending`]), and before it committed an entry of its own term
//!   ([`ProposeError::LeaderNotReady`]: the fix to the single-server bug, an earlier
//!   leader's uncommitted change may still be in flight); a change that does not apply
//!   ([`ProposeError::ConfChange`]); and promoting a learner more than
//!   [`Config::promote_lag_max`] entries behind its log ([`ProposeError::LearnerBehind`]).
//! - A leader may remove itself: it keeps leading (and replicating) without counting itself
//!   until the removal commits, then steps down (§4.2.2). It keeps replicating to a removed
//!   member until the removal commits, so that the member learns of it.
//! - A node that is not a voter in its membership (a learner, a removed node) never
//!   campaigns. Vote requests from nodes outside the membership are ignored, so a removed
//!   node that missed its removal cannot disrupt the group; everyone else's vote requests
//!   are answered, learners included (a learner may have been promoted without knowing it
//!   yet; its vote counts only for a candidate that knows).
//! - A snapshot's [`shardkv_types::SnapshotMeta::conf`] is the membership as of its index, so
//!   an installed snapshot and a restart know it. [`Config::voters`] and
//!   [`Config::learners`] are only the bootstrap membership, used when neither the log nor
//!   the snapshot records one.
//!
//! # Refused input
//!
//! The core trusts a message's sender id (authentication is the transport's job) but not
//! its fields. A term more than [`TERM_JUMP_MAX`] ahead of the local one is refused and
//! never becomes the local term; terms and indexes never wrap (`Term::checked_next`; a node
//! at `u64::MAX` stops campaigning rather than go back to term 0). A leader ignores an
//! acknowledgement of anything it did not send that peer in this term, and a rejection of
//! an index it never sent or whose hint points past it; a follower ignores a heartbeat's
//! commit index beyond its own log and drops malformed appends and snapshot chunks (no index
//! past [`INDEX_MAX`]). Leader messages are accepted from any sender (a lagging member may
//! not know a newly added leader yet); vote requests only from members. Each is an
//! [`Anomaly`]:
//! counted ([`RawNode::anomaly_count`]) and logged as a `tracing` warning at most once per
//! kind per election timeout.
//!
//! Every append carries a per-follower `seq` that the answer echoes, so the leader matches
//! each rejection to the exact append it answers. A follower that rejects an append sent
//! after it acknowledged index `m`, at or below `m` (or reports a log ending at or below
//! `m`), lost its log, e.g. its data directory was emptied: the leader logs
//! [`Anomaly::FollowerLogLost`], moves its `match_index` back to 0 and resends the log.
//! Reordered or duplicated rejections (of an append no longer outstanding, or written
//! before a later acknowledgement) never lower `match_index`.
//!
//! # Limits
//!
//! Every queue and batch has a bound in [`Config`]: entries and bytes per append, appends in
//! flight per follower, snapshot chunk size, committed bytes per Ready, uncommitted entries,
//! pending reads, proposal size.
//!
//! # Example
//!
//! ```
//! use shardkv_raft::{Config, RawNode, Restored};
//! use shardkv_types::NodeId;
//!
//! // A single-node group elects itself and commits a proposal.
//! let mut node = RawNode::new(Config::new(NodeId(1), vec![NodeId(1)]), Restored::default(), 7);
//! while !node.is_leader() {
//!     node.tick();
//!     let rd = node.ready();
//!     node.advance(rd);
//! }
//! let index = node.propose(b"hello".to_vec()).unwrap();
//! let mut applied = Vec::new();
//! for _ in 0..3 {
//!     let rd = node.ready();
//!     // persist rd.entries / rd.hard_state here, send rd.messages, then apply:
//!     applied.extend(rd.committed_entries.iter().map(|e| e.index));
//!     node.advance(rd);
//! }
//! assert!(applied.contains(&index));
//! ```

mod anomaly;
mod config;
mod election;
mod error;
mod handoff;
mod log;
mod message;
mod node;
mod progress;
mod read_index;
mod ready;
mod replication;
mod snapshot;

pub use anomaly::{Anomaly, INDEX_MAX, TERM_JUMP_MAX};
pub use config::Config;
pub use error::ProposeError;
pub use log::RaftLog;
pub use message::{Body, ConflictHint, Message};
pub use node::{RawNode, Restored, Status};
pub use progress::{Progress, ProgressState};
pub use ready::{ReadState, Ready, Role, Snapshot, SoftState};
