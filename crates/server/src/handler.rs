//! `NodeHandler`: the gRPC side of one hosted replica. It puts what arrives into the node's
//! bounded inbox and waits (with the server's deadline) for the answer the node thread sends
//! back. The inbox is bounded in items ([`INBOX_ITEMS_MAX`]) and in bytes
//! ([`INBOX_BYTES_MAX`]: peer messages and client requests each carry a [`Charge`] of their
//! size, released when the node thread drops them): past either, a client request is
//! answered `Busy` and peer messages are dropped (Raft resends). Generic over the hosted app; the KV service's [`Handler`] is implemented for the
//! KV store's replica, the controller's for the controller's.

use crate::member::Member;
use crate::membership::ChangeReply;
use shardkv_ctrl::{CtrlOutput, ShardCtrl};
use shardkv_kv::{KvOutput, KvRequest, KvStore};
use shardkv_net::convert::CtrlRequest;
use shardkv_net::{Answer, CtrlHandler, Handler, NodeStatus};
use shardkv_raft::Message;
use shardkv_rsm::{Error, Replica};
use shardkv_shardkv::DutyAnswer;
use shardkv_types::{ConfChange, NodeId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;
use tokio::sync::oneshot;

/// Items in a node's inbox, across all kinds.
pub const INBOX_ITEMS_MAX: usize = 16 * 1024;

/// Bytes of peer messages and client requests in a node's inbox (about 64 of the largest
/// requests, or a few hundred full append batches): enough to keep the node thread busy
/// for a while, small enough that a flood cannot grow the process without bound. An item
/// larger than the whole budget is still taken when the inbox holds nothing else.
pub const INBOX_BYTES_MAX: u64 = 256 << 20;

/// What an inbox item costs besides its payload (the channel slot, the reply sender).
const ITEM_OVERHEAD_BYTES: u64 = 64;

/// Bytes an item holds in an inbox's byte budget; released when the item is dropped (the
/// node thread handled it, or the channel was closed with it inside).
#[derive(Debug)]
pub struct Charge {
    bytes: u64,
    held: Arc<AtomicU64>,
}

impl Charge {
    /// Charges `bytes` to `held` if the budget has room (or holds nothing): `None` if not.
    pub fn take(held: &Arc<AtomicU64>, bytes: u64) -> Option<Charge> {
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            (now == 0 || now.saturating_add(bytes) <= INBOX_BYTES_MAX)
                .then(|| now.saturating_add(bytes))
        })
        .ok()?;
        Some(Charge {
            bytes,
            held: held.clone(),
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// About how many bytes a batch of peer messages holds.
fn messages_bytes(msgs: &[Message]) -> u64 {
    msgs.iter().map(shardkv_net::message_bytes).sum()
}

/// The encoded size of a client request, counted without allocating.
fn request_bytes<R: serde::Serialize>(req: &R) -> u64 {
    struct Count(u64);
    impl postcard::ser_flavors::Flavor for Count {
        type Output = u64;
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            self.0 += data.len() as u64;
            Ok(())
        }
        fn try_push(&mut self, _: u8) -> postcard::Result<()> {
            self.0 += 1;
            Ok(())
        }
        fn finalize(self) -> postcard::Result<u64> {
            Ok(self.0)
        }
    }
    postcard::serialize_with_flavor(req, Count(0)).unwrap_or(0) + ITEM_OVERHEAD_BYTES
}

/// How long a Status request waits for the node thread.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// The answer to a client request.
pub type KvReply = Result<KvOutput, Error>;

/// What the node thread takes from its inbox.
pub enum Inbound<A: Member> {
    /// Messages from a peer, and their share of the inbox's bytes.
    Raft(Vec<Message>, Charge),
    /// A client request, where to send its answer, and its share of the inbox's bytes.
    Request {
        req: A::Request,
        reply: oneshot::Sender<A::Response>,
        charge: Charge,
    },
    /// The client requests of one Batch message, handed over in one step, and their
    /// share of the inbox's bytes.
    Requests {
        reqs: Vec<(A::Request, oneshot::Sender<A::Response>)>,
        charge: Charge,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    /// A membership change from `shardkv member` (see [`crate::membership`]).
    ChangeMembership {
        change: ConfChange,
        reply: oneshot::Sender<ChangeReply>,
    },
    /// Another group's answer to request `token` the app sent to server `from`, and the
    /// request's share of the outbox's window (given back once handled).
    Answer {
        token: u64,
        from: NodeId,
        answer: DutyAnswer,
        held: crate::outbox::Held,
    },
    /// Graceful shutdown: the node thread finishes the batch in hand and returns.
    Stop,
}

/// A hosted replica's inbox, as the gRPC services see it.
pub struct NodeHandler<A: Member> {
    pub id: NodeId,
    pub inbox: SyncSender<Inbound<A>>,
    /// Bytes of the items in the inbox (see [`Charge`]).
    pub inbox_bytes: Arc<AtomicU64>,
    /// The server-side request deadline.
    pub request_timeout: Duration,
    /// The group's member addresses, for leader hints.
    pub addrs: crate::membership::AddressBook,
}

impl<A: Member> NodeHandler<A> {
    /// Hands a client request to the node thread and waits for its answer (bounded by the
    /// server's deadline: `Timeout`, may have applied, when it passes).
    pub async fn submit(&self, req: A::Request) -> A::Response
    where
        A::Request: serde::Serialize,
    {
        let (tx, rx) = oneshot::channel();
        let Some(charge) = Charge::take(&self.inbox_bytes, request_bytes(&req)) else {
            return A::refusal(Error::Busy);
        };
        let item = Inbound::Request {
            req,
            reply: tx,
            charge,
        };
        match self.inbox.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return A::refusal(Error::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return A::refusal(Error::Unavailable {
                    reason: "shutting down".into(),
                });
            }
        }
        answer::<A>(rx, self.request_timeout).await
    }

    /// Hands the requests of one Batch message to the node thread as one inbox item (one
    /// wake-up, one charge) and returns a future per request, in order, each resolving as
    /// [`NodeHandler::submit`] would (refused together: `Busy` when the inbox is full).
    pub fn submit_many(
        &self,
        reqs: Vec<A::Request>,
    ) -> Vec<impl Future<Output = A::Response> + Send + 'static + use<A>>
    where
        A::Request: serde::Serialize,
    {
        let timeout = self.request_timeout;
        let bytes = reqs.iter().map(request_bytes).sum();
        let (items, rxs): (Vec<_>, Vec<_>) = reqs
            .into_iter()
            .map(|req| {
                let (tx, rx) = oneshot::channel();
                ((req, tx), rx)
            })
            .unzip();
        let refusal = match Charge::take(&self.inbox_bytes, bytes) {
            None => Some(Error::Busy),
            Some(charge) => match self.inbox.try_send(Inbound::Requests {
                reqs: items,
                charge,
            }) {
                Ok(()) => None,
                Err(TrySendError::Full(_)) => Some(Error::Busy),
                Err(TrySendError::Disconnected(_)) => Some(Error::Unavailable {
                    reason: "shutting down".into(),
                }),
            },
        };
        // Refused: the senders went with the item, so each answer is made here instead.
        rxs.into_iter()
            .map(move |rx| {
                let refusal = refusal.clone();
                async move {
                    match refusal {
                        Some(e) => A::refusal(e),
                        None => answer::<A>(rx, timeout).await,
                    }
                }
            })
            .collect()
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

    /// Hands a membership change to the node thread and waits for its answer (bounded by
    /// the server's deadline: `Timeout`, the change may still apply).
    pub async fn change_membership(&self, change: ConfChange) -> ChangeReply {
        let (tx, rx) = oneshot::channel();
        let item = Inbound::ChangeMembership { change, reply: tx };
        match self.inbox.try_send(item) {
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
            Ok(Err(_)) | Err(_) => Err(Error::Timeout {
                detail: format!(
                    "the change did not apply within the server's deadline of {:?}; it may \
                     still: list the members to see",
                    self.request_timeout
                ),
            }),
        }
    }

    /// Raft messages from peer `from`; dropped when the inbox is full (Raft tolerates loss).
    /// False when they were dropped.
    pub fn raft_messages(&self, from: NodeId, msgs: Vec<Message>) -> bool {
        let Some(charge) = Charge::take(&self.inbox_bytes, messages_bytes(&msgs)) else {
            tracing::debug!(node = %self.id, %from, "inbox bytes full: dropping raft messages");
            return false;
        };
        if self.inbox.try_send(Inbound::Raft(msgs, charge)).is_err() {
            tracing::debug!(node = %self.id, %from, "inbox full: dropping raft messages");
            return false;
        }
        true
    }
}

/// The node's answer to a request handed over, within the server's deadline (`Timeout`,
/// may have applied, when it passes).
async fn answer<A: Member>(rx: oneshot::Receiver<A::Response>, timeout: Duration) -> A::Response {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(reply)) => reply,
        // The node took the request and then stopped, or the deadline passed: the request
        // may have been proposed, so its outcome is unknown.
        Ok(Err(_)) | Err(_) => A::refusal(Error::Timeout {
            detail: format!(
                "the server's deadline of {timeout:?} passed before the outcome was known"
            ),
        }),
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

    fn requests(this: &Arc<Self>, reqs: Vec<(shardkv_types::Gid, KvRequest)>) -> Vec<Answer> {
        let reqs = reqs.into_iter().map(|(_, req)| req).collect();
        this.submit_many(reqs)
            .into_iter()
            .map(|f| Box::pin(f) as Answer)
            .collect()
    }

    async fn status(&self) -> Result<NodeStatus, Error> {
        NodeHandler::status(self).await
    }

    fn raft_messages(&self, from: NodeId, msgs: Vec<Message>) {
        NodeHandler::raft_messages(self, from, msgs);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_byte_budget_refuses_past_its_bound_and_frees_what_the_node_dropped() {
        let held = Arc::new(AtomicU64::new(0));
        let big = Charge::take(&held, INBOX_BYTES_MAX + 1).expect("an empty inbox takes any item");
        assert!(Charge::take(&held, 1).is_none(), "full: refused");
        drop(big);
        assert_eq!(held.load(Ordering::Acquire), 0, "handled: released");
        let half = INBOX_BYTES_MAX / 2;
        let a = Charge::take(&held, half).expect("room");
        let b = Charge::take(&held, half).expect("room, exactly");
        assert!(Charge::take(&held, 1).is_none());
        drop(a);
        assert!(Charge::take(&held, 1).is_some());
        drop(b);
        assert_eq!(held.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_batch_is_one_inbox_item_and_is_refused_whole_when_the_inbox_is_full() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let (inbox, taken) = std::sync::mpsc::sync_channel(1);
        let h: NodeHandler<Replica<KvStore>> = NodeHandler {
            id: NodeId(1),
            inbox,
            inbox_bytes: Arc::new(AtomicU64::new(0)),
            request_timeout: Duration::from_secs(60),
            addrs: crate::membership::AddressBook::default(),
        };
        let get = |i: u8| shardkv_rsm::Request::Read(shardkv_kv::KvQuery::Get { key: vec![i] });
        let answers = h.submit_many((0..3).map(get).collect());
        let Ok(Inbound::Requests { reqs, .. }) = taken.try_recv() else {
            panic!("one Requests item");
        };
        assert!(taken.try_recv().is_err(), "and nothing else");
        assert_eq!(reqs.len(), 3);
        // The node answers out of order; each future gets its own request's answer.
        for (req, reply) in reqs.into_iter().rev() {
            let shardkv_rsm::Request::Read(shardkv_kv::KvQuery::Get { key }) = req else {
                panic!("a get");
            };
            let _ = reply.send(Ok(KvOutput::Value(Some(key))));
        }
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(
                rt.block_on(answer),
                Ok(KvOutput::Value(Some(vec![i as u8])))
            );
        }
        assert_eq!(
            h.inbox_bytes.load(Ordering::Acquire),
            0,
            "the charge went with the item"
        );
        // A full inbox refuses the whole batch: surely not applied.
        let _occupied = h.submit_many(vec![get(9)]);
        for answer in h.submit_many((0..2).map(get).collect()) {
            assert_eq!(rt.block_on(answer), Err(Error::Busy));
        }
    }

    #[test]
    fn an_item_costs_its_payload() {
        let entry = shardkv_types::Entry {
            term: shardkv_types::Term(1),
            index: shardkv_types::LogIndex(1),
            kind: shardkv_types::EntryKind::Normal,
            data: vec![0; 1 << 20],
        };
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: shardkv_types::Term(1),
            body: shardkv_raft::Body::AppendEntries {
                prev_log_index: shardkv_types::LogIndex(0),
                prev_log_term: shardkv_types::Term(0),
                entries: vec![entry.clone(), entry],
                leader_commit: shardkv_types::LogIndex(0),
                seq: 1,
            },
        };
        assert!(messages_bytes(&[m]) >= 2 << 20);
        let put = shardkv_kv::KvRequest::Write {
            client: shardkv_types::ClientId(1),
            seq: shardkv_types::Seq(1),
            retry: false,
            cmd: shardkv_kv::KvCommand::Put {
                key: b"k".to_vec(),
                value: vec![7; 1 << 20],
            },
        };
        let bytes = request_bytes(&put);
        assert!((1 << 20..(1 << 20) + 200).contains(&bytes), "{bytes}");
    }
}
