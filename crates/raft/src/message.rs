//! The messages Raft peers exchange. Every message carries the sender's term.

use serde::{Deserialize, Serialize};
use shardkv_types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};

/// One message between two peers of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term; for a pre-vote request, the term the sender would campaign in.
    pub term: Term,
    pub body: Body,
}

/// Where a follower's log diverges from the leader's, so the leader can skip a whole term of
/// conflicting entries per round trip (the "fast backup" of the Raft paper §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHint {
    /// The term of the follower's entry at the rejected `prev_log_index`, or `None` when the
    /// follower's log is shorter than that.
    pub conflict_term: Option<Term>,
    /// The first index the follower holds in `conflict_term`; when `conflict_term` is `None`,
    /// the follower's last index + 1.
    pub conflict_index: LogIndex,
}

/// What a message asks or answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    RequestVote {
        pre_vote: bool,
        /// Set by a leadership transfer: the receiver votes even if it heard from a leader
        /// recently.
        force: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    },
    RequestVoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    AppendEntries {
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        /// The leader's number for this send to this follower in this term (increasing):
        /// the answer echoes it, so the leader matches a late or duplicated answer to the
        /// very append it answers.
        seq: u64,
    },
    AppendEntriesResponse {
        success: bool,
        /// On success the last index known to match the leader's log; on rejection the
        /// `prev_log_index` that was rejected.
        index: LogIndex,
        hint: Option<ConflictHint>,
        /// The `seq` of the append answered (0 when answering an older term).
        seq: u64,
    },
    Heartbeat {
        /// `min(leader commit, follower match)`, so a follower never commits an entry it may
        /// not share with the leader.
        commit: LogIndex,
        /// The newest ReadIndex round this heartbeat confirms leadership for; 0 for none.
        read_seq: u64,
    },
    HeartbeatResponse {
        read_seq: u64,
    },
    InstallSnapshot {
        meta: SnapshotMeta,
        /// Byte offset of `data` within the whole snapshot.
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// True for the last chunk.
        done: bool,
    },
    InstallSnapshotResponse {
        meta: SnapshotMeta,
        /// The offset the follower expects next.
        next_offset: u64,
        /// The whole snapshot was received and handed to the application.
        installed: bool,
    },
    /// Leadership transfer: the receiver campaigns at once.
    TimeoutNow,
}

impl Message {
    /// True for requests (messages that expect an answer), false for responses.
    pub fn is_request(&self) -> bool {
        matches!(
            self.body,
            Body::RequestVote { .. }
                | Body::AppendEntries { .. }
                | Body::Heartbeat { .. }
                | Body::InstallSnapshot { .. }
                | Body::TimeoutNow
        )
    }

    /// True when this message promises something about the sender's disk, so it may leave
    /// only once the Ready it came in was persisted: an acknowledgement of entries or of a
    /// snapshot, and a vote granted. Every other message (a heartbeat's answer, a rejection,
    /// a pre-vote, anything a leader sends) depends only on the sender's term and vote — see
    /// [`Ready`](crate::Ready) for what an application that could not persist may send.
    pub fn waits_for_persist(&self) -> bool {
        match self.body {
            Body::AppendEntriesResponse { success, .. } => success,
            Body::InstallSnapshotResponse { installed, .. } => installed,
            Body::RequestVoteResponse { pre_vote, granted } => granted && !pre_vote,
            _ => false,
        }
    }

    /// A short name of the message kind, for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            Body::RequestVote { pre_vote: true, .. } => "PreVote",
            Body::RequestVote { .. } => "RequestVote",
            Body::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResp",
            Body::RequestVoteResponse { .. } => "RequestVoteResp",
            Body::AppendEntries { .. } => "Append",
            Body::AppendEntriesResponse { .. } => "AppendResp",
            Body::Heartbeat { .. } => "Heartbeat",
            Body::HeartbeatResponse { .. } => "HeartbeatResp",
            Body::InstallSnapshot { .. } => "Snapshot",
            Body::InstallSnapshotResponse { .. } => "SnapshotResp",
            Body::TimeoutNow => "TimeoutNow",
        }
    }
}
