//! `NodeHandler`: the gRPC side of one hosted replica. It puts what arrives into the node's
//! bounded inbox and waits (with the server's deadline) for the answer the node thread sends
//! back. Generic over the hosted app; the KV service's [`Handler`] is implemented for the
//! KV store's replica, the controller's for the controller's.

use crate::member::Member;
use shardkv_ctrl::{CtrlOutput, ShardCtrl};
use shardkv_kv::{KvOutput, KvRequest, KvStore};
use shardkv_net::convert::CtrlRequest;
use shardkv_net::{CtrlHandler, Handler, NodeStatus};
use shardkv_raft::Message;
use shardkv_rsm::{Error, Replica};
use shardkv_shardkv::DutyAnswer;
use shardkv_types::NodeId;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;
use tokio::sync::oneshot;

/// Items in a node's inbox, across all kinds.
pub const INBOX_ITEMS_MAX: usize = 16 * 1024;

/// How long a Status request waits for the node thread.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// The answer to a client request.
pub type KvReply = Result<KvOutput, Error>;

/// What the node thread takes from its inbox.
pub enum Inbound<A: Member> {
    /// Messages from a peer.
    Raft(Vec<Message>),
    /// A client request and where to send its answer.
    Request {
        req: A::Request,
        reply: oneshot::Sender<A::Response>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    /// Another group's answer to request `token` the app sent to server `from`.
    Answer {
        token: u64,
        from: NodeId,
        answer: DutyAnswer,
    },
    /// Graceful shutdown: the node thread finishes the batch in hand and returns.
    Stop,
}

/// A hosted replica's inbox, as the gRPC services see it.
pub struct NodeHandler<A: Member> {
    pub id: NodeId,
    pub inbox: SyncSender<Inbound<A>>,
    /// The server-side request deadline.
    pub request_timeout: Duration,
}

impl<A: Member> NodeHandler<A> {
    /// Hands a client request to the node thread and waits for its answer (bounded by the
    /// server's deadline: `Timeout`, may have applied, when it passes).
    pub async fn submit(&self, req: A::Request) -> A::Response {
        let (tx, rx) = oneshot::channel();
        match self.inbox.try_send(Inbound::Request { req, reply: tx }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return A::refusal(Error::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return A::refusal(Error::Unavailable {
                    reason: "shutting down".into(),
                });
            }
        }
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(reply)) => reply,
            // The node took the request and then stopped, or the deadline passed: the request
            // may have been proposed, so its outcome is unknown.
            Ok(Err(_)) | Err(_) => A::refusal(Error::Timeout {
                detail: format!(
                    "the server's deadline of {:?} passed before the outcome was known",
                    self.request_timeout
                ),
            }),
        }
    }

    /// The member's status, from the node thread.
    pub async fn status(&self) -> Result<NodeStatus, Error> {
        let (tx, rx) = oneshot::channel();
        let unavailable = |reason: &str| Error::Unavailable {
            reason: reason.into(),
        };
        self.inbox
            .try_send(Inbound::Status { reply: tx })
            .map_err(|_| unavailable("inbox full or shutting down"))?;
        match tokio::time::timeout(STATUS_TIMEOUT, rx).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(_)) => Err(unavailable("shutting down")),
            Err(_) => Err(unavailable("node thread did not answer in time")),
        }
    }

    /// Raft messages from peer `from`; dropped when the inbox is full (Raft tolerates loss).
    pub fn raft_messages(&self, from: NodeId, msgs: Vec<Message>) {
        if self.inbox.try_send(Inbound::Raft(msgs)).is_err() {
            tracing::debug!(node = %self.id, %from, "inbox full: dropping raft messages");
        }
    }
}

impl Handler for NodeHandler<Replica<KvStore>> {
    fn node_id(&self) -> NodeId {
        self.id
    }

    /// A server of one group serves every request it gets, whatever group it names.
    async fn request(&self, _group: shardkv_types::Gid, req: KvRequest) -> KvReply {
        self.submit(req).await
    }

    async fn status(&self) -> Result<NodeStatus, Error> {
        NodeHandler::status(self).await
    }

    fn raft_messages(&self, from: NodeId, msgs: Vec<Message>) {
        NodeHandler::raft_messages(self, from, msgs)
    }
}

impl CtrlHandler for NodeHandler<Replica<ShardCtrl>> {
    fn node_id(&self) -> NodeId {
        self.id
    }

    async fn ctrl_request(&self, req: CtrlRequest) -> Result<CtrlOutput, Error> {
        self.submit(req).await
    }
}
