//! `NodeHandler`: the gRPC side of a server. It puts what arrives into the node's bounded
//! inbox and waits (with the server's deadline) for the answer the node thread sends back.

use shardkv_kv::{KvOutput, KvRequest};
use shardkv_net::{Handler, NodeStatus};
use shardkv_raft::Message;
use shardkv_rsm::Error;
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
#[derive(Debug)]
pub enum Inbound {
    /// Messages from a peer.
    Raft(Vec<Message>),
    /// A client request and where to send its answer.
    Request {
        req: KvRequest,
        reply: oneshot::Sender<KvReply>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    /// Graceful shutdown: the node thread finishes the batch in hand and returns.
    Stop,
}

/// Implements the services' [`Handler`] over a node's inbox.
pub struct NodeHandler {
    pub id: NodeId,
    pub inbox: SyncSender<Inbound>,
    /// The server-side request deadline.
    pub request_timeout: Duration,
}

impl Handler for NodeHandler {
    fn node_id(&self) -> NodeId {
        self.id
    }

    async fn request(&self, req: KvRequest) -> KvReply {
        let (tx, rx) = oneshot::channel();
        match self.inbox.try_send(Inbound::Request { req, reply: tx }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Error::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::Unavailable {
                    reason: "shutting down".into(),
                });
            }
        }
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(reply)) => reply,
            // The node took the request and then stopped, or the deadline passed: the request
            // may have been proposed, so its outcome is unknown.
            Ok(Err(_)) | Err(_) => Err(Error::Timeout {
                detail: format!(
                    "the server's deadline of {:?} passed before the outcome was known",
                    self.request_timeout
                ),
            }),
        }
    }

    async fn status(&self) -> Result<NodeStatus, Error> {
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

    fn raft_messages(&self, from: NodeId, msgs: Vec<Message>) {
        if self.inbox.try_send(Inbound::Raft(msgs)).is_err() {
            tracing::debug!(node = %self.id, %from, "inbox full: dropping raft messages");
        }
    }
}
