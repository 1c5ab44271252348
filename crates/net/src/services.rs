//! The server side of the gRPC services, over handlers the server implements: the Kv and Raft
//! services over a [`Handler`], the shard controller's Ctrl service over a [`CtrlHandler`]
//! (only on a server that hosts a controller replica; [`with_ctrl`] adds it to the router).
//! This module only translates: it decodes, size-checks (through tonic's limits) and hands
//! requests to the handler; it makes no decision about them.

use crate::convert::{self, CtrlRequest, decode_message};
use crate::members::{self, MembershipDone};
use crate::pb::ctrl_server::{Ctrl, CtrlServer};
use crate::pb::kv_server::{Kv, KvServer};
use crate::pb::raft_server::{Raft, RaftServer};
use crate::pb::shard_server::{Shard, ShardServer};
use crate::pb::{self};
use crate::tls::PeerAuth;
use crate::{
    CTRL_FRAME_BYTES_MAX, KV_FRAME_BYTES_MAX, NodeStatus, RAFT_FRAME_BYTES_MAX,
    SHARD_FRAME_BYTES_MAX, cluster_hex,
};
use shardkv_ctrl::CtrlOutput;
use shardkv_kv::{KvOutput, KvRequest};
use shardkv_raft::Message;
use shardkv_rsm::Error;
use shardkv_types::{ConfChange, Gid, NodeId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status, Streaming};

/// The answer to come of one request of a Batch message ([`Handler::requests`]).
pub type Answer = std::pin::Pin<Box<dyn Future<Output = Result<KvOutput, Error>> + Send>>;

/// What a server does with what arrives on its port.
pub trait Handler: Send + Sync + 'static {
    /// This server's node id (sent with every reply so clients learn who answered).
    fn node_id(&self) -> NodeId;

    /// Serves one client request. The handler applies its own deadline: the future always
    /// resolves, with `Error::Timeout` if the outcome is not known in time.
    /// `group` is the KV group the client routed the request to (`Gid(0)`: unspecified).
    fn request(
        &self,
        group: Gid,
        req: KvRequest,
    ) -> impl Future<Output = Result<KvOutput, Error>> + Send;

    /// Serves the requests of one Batch message (each with the group it names, as
    /// `request` takes them): one future per request, in order, each resolving as
    /// `request` would. The default serves each through `request`; a handler that can hand
    /// them all to its node in one step does so.
    fn requests(this: &Arc<Self>, reqs: Vec<(Gid, KvRequest)>) -> Vec<Answer>
    where
        Self: Sized,
    {
        reqs.into_iter()
            .map(|(group, req)| {
                let h = this.clone();
                Box::pin(async move { h.request(group, req).await }) as Answer
            })
            .collect()
    }

    /// This member's status.
    fn status(&self) -> impl Future<Output = Result<NodeStatus, Error>> + Send;

    /// The status of this server's replica of `group` (`None`: the default one, as
    /// [`Handler::status`]; `Some(Gid(0))`: the shard controller's). A handler of one group
    /// answers its own whatever is asked.
    fn group_status(
        &self,
        _group: Option<Gid>,
    ) -> impl Future<Output = Result<NodeStatus, Error>> + Send {
        self.status()
    }

    /// Raft messages that arrived from peer `from`, decoded. Must not block: a handler that
    /// cannot take them now drops them (Raft tolerates loss).
    fn raft_messages(&self, from: NodeId, msgs: Vec<Message>);

    /// Changes the membership of this server's replica of `group` (`None`: the default
    /// one, as [`Handler::group_status`]). Served by the group's leader; resolves once the
    /// change applied there, or with the reason it was refused. A handler without
    /// membership change refuses it.
    fn change_membership(
        &self,
        _group: Option<Gid>,
        _change: ConfChange,
    ) -> impl Future<Output = Result<MembershipDone, Error>> + Send {
        async {
            Err(Error::Invalid {
                reason: "this server does not change memberships".into(),
            })
        }
    }

    /// Where clients reach member `id` of `group` (as [`Handler::request`] routes it), if
    /// this server knows: filled into the leader hints of `NotLeader` and `LostLeadership`
    /// answers (see [`crate::hint`]).
    fn member_addr(&self, _group: Gid, _id: NodeId) -> Option<String> {
        None
    }
}

/// Where the Raft traffic of a port goes, by group id: the seam between the peer service
/// and whatever hosts replicas. A single-group server uses [`OneGroup`]; a host of several
/// groups implements it over its map of replicas.
pub trait RaftRouter: Send + Sync + 'static {
    /// This host's node id: every message it accepts must be addressed to it.
    fn node_id(&self) -> NodeId;

    /// Whether this host runs a replica of `group`. Asked before a batch is decoded; a
    /// batch for a group it does not host is dropped and counted, never decoded or stepped.
    fn hosts(&self, group: Gid) -> bool;

    /// Messages from peer `from` for `group` (one `hosts` accepted), decoded and checked to
    /// be addressed from `from` to this node. Must not block (drop when full).
    fn deliver(&self, group: Gid, from: NodeId, msgs: Vec<Message>);
}

/// A [`RaftRouter`] for a server that runs one replica of one group: accepts only that
/// group's traffic and hands it to the [`Handler`].
pub struct OneGroup<H> {
    pub group: Gid,
    pub handler: Arc<H>,
}

impl<H: Handler> RaftRouter for OneGroup<H> {
    fn node_id(&self) -> NodeId {
        self.handler.node_id()
    }

    fn hosts(&self, group: Gid) -> bool {
        group == self.group
    }

    fn deliver(&self, group: Gid, from: NodeId, msgs: Vec<Message>) {
        debug_assert_eq!(group, self.group, "deliver only what hosts() accepted");
        self.handler.raft_messages(from, msgs);
    }
}

/// A tonic router serving the Kv service for `handler` and the Raft peer service `raft`,
/// with the frame limits set.
pub fn router<H: Handler, R: RaftRouter>(
    builder: &mut tonic::transport::Server,
    handler: Arc<H>,
    raft: RaftService<R>,
) -> tonic::transport::server::Router {
    let kv = KvServer::new(KvService { handler })
        .max_decoding_message_size(KV_FRAME_BYTES_MAX)
        .max_encoding_message_size(KV_FRAME_BYTES_MAX);
    let raft = RaftServer::new(raft)
        .max_decoding_message_size(RAFT_FRAME_BYTES_MAX)
        .max_encoding_message_size(RAFT_FRAME_BYTES_MAX);
    builder.add_service(kv).add_service(raft)
}

/// The Kv service.
pub struct KvService<H> {
    handler: Arc<H>,
}

impl<H: Handler> KvService<H> {
    async fn serve(&self, group: u64, req: KvRequest) -> Result<Response<pb::KvReply>, Status> {
        let reply = self.handler.request(Gid(group), req).await;
        let mut wire = convert::reply_to_wire(self.handler.node_id(), reply);
        crate::hint::fill_kv(&mut wire, |l| self.handler.member_addr(Gid(group), l));
        Ok(Response::new(wire))
    }
}

#[tonic::async_trait]
impl<H: Handler> Kv for KvService<H> {
    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::KvReply>, Status> {
        let r = r.into_inner();
        self.serve(r.group, convert::get_from_wire(r)).await
    }

    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::KvReply>, Status> {
        let r = r.into_inner();
        self.serve(r.group, convert::put_from_wire(r)).await
    }

    async fn append(&self, r: Request<pb::AppendRequest>) -> Result<Response<pb::KvReply>, Status> {
        let r = r.into_inner();
        self.serve(r.group, convert::append_from_wire(r)).await
    }

    async fn delete(&self, r: Request<pb::DeleteRequest>) -> Result<Response<pb::KvReply>, Status> {
        let r = r.into_inner();
        self.serve(r.group, convert::delete_from_wire(r)).await
    }

    async fn cas(&self, r: Request<pb::CasRequest>) -> Result<Response<pb::KvReply>, Status> {
        let r = r.into_inner();
        self.serve(r.group, convert::cas_from_wire(r)).await
    }

    async fn op(&self, r: Request<pb::OpRequest>) -> Result<Response<pb::KvReply>, Status> {
        let r = r.into_inner();
        let group = r.group;
        match convert::op_from_wire(r) {
            Ok(req) => self.serve(group, req).await,
            Err(reason) => {
                let reply = Err(Error::Invalid { reason });
                Ok(Response::new(convert::reply_to_wire(
                    self.handler.node_id(),
                    reply,
                )))
            }
        }
    }

    type BatchStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::KvBatchReply, Status>> + Send>,
    >;

    /// See [`crate::batch`].
    async fn batch(
        &self,
        r: Request<Streaming<pb::KvBatch>>,
    ) -> Result<Response<Self::BatchStream>, Status> {
        let replies = crate::batch::serve(self.handler.clone(), r.into_inner());
        Ok(Response::new(Box::pin(replies)))
    }

    async fn status(
        &self,
        r: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let group = r.into_inner().group.map(Gid);
        match self.handler.group_status(group).await {
            Ok(s) => Ok(Response::new(convert::status_to_wire(&s))),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn change_membership(
        &self,
        r: Request<pb::MembershipChange>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let reply = match members::change_from_wire(r.into_inner()) {
            Ok((group, change)) => self.handler.change_membership(group, change).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(members::membership_reply_to_wire(
            self.handler.node_id(),
            &reply,
        )))
    }
}

/// What a server that hosts a shard controller replica does with controller requests.
pub trait CtrlHandler: Send + Sync + 'static {
    /// This server's node id (sent with every reply so clients learn who answered).
    fn node_id(&self) -> NodeId;

    /// Serves one controller request. `Ok` carries the controller's own answer, which may be
    /// a refusal (`Ok(Err(CtrlError))`: recorded, nothing changed); `Err` means the request
    /// was not served here (`NotLeader`, `Timeout`, ...). The handler applies its own
    /// deadline: the future always resolves.
    fn ctrl_request(
        &self,
        req: CtrlRequest,
    ) -> impl Future<Output = Result<CtrlOutput, Error>> + Send;

    /// Where clients reach member `id` of the controller group, if this server knows (see
    /// [`Handler::member_addr`]).
    fn member_addr(&self, _id: NodeId) -> Option<String> {
        None
    }
}

/// The Ctrl service for `handler`, with the frame limits set. A server that hosts no
/// controller replica does not add it, and tonic answers its RPCs `UNIMPLEMENTED` (the
/// client library reports that as "this server hosts no shard controller").
pub fn ctrl_service<H: CtrlHandler>(handler: Arc<H>) -> CtrlServer<CtrlService<H>> {
    CtrlServer::new(CtrlService { handler })
        .max_decoding_message_size(CTRL_FRAME_BYTES_MAX)
        .max_encoding_message_size(CTRL_FRAME_BYTES_MAX)
}

/// Adds the Ctrl service for `handler` to a router built by [`router`], next to Kv and Raft.
pub fn with_ctrl<H: CtrlHandler>(
    router: tonic::transport::server::Router,
    handler: Arc<H>,
) -> tonic::transport::server::Router {
    router.add_service(ctrl_service(handler))
}

/// The Ctrl service.
pub struct CtrlService<H> {
    handler: Arc<H>,
}

impl<H: CtrlHandler> CtrlService<H> {
    async fn serve(&self, req: CtrlRequest) -> Result<Response<pb::CtrlReply>, Status> {
        let reply = self.handler.ctrl_request(req).await;
        let mut wire = convert::ctrl_reply_to_wire(self.handler.node_id(), reply);
        crate::hint::fill_ctrl(&mut wire, |l| self.handler.member_addr(l));
        Ok(Response::new(wire))
    }
}

#[tonic::async_trait]
impl<H: CtrlHandler> Ctrl for CtrlService<H> {
    async fn join(&self, r: Request<pb::JoinRequest>) -> Result<Response<pb::CtrlReply>, Status> {
        self.serve(convert::join_from_wire(r.into_inner())).await
    }

    async fn leave(&self, r: Request<pb::LeaveRequest>) -> Result<Response<pb::CtrlReply>, Status> {
        self.serve(convert::leave_from_wire(r.into_inner())).await
    }

    async fn r#move(&self, r: Request<pb::MoveRequest>) -> Result<Response<pb::CtrlReply>, Status> {
        self.serve(convert::move_from_wire(r.into_inner())).await
    }

    async fn servers(
        &self,
        r: Request<pb::ServersRequest>,
    ) -> Result<Response<pb::CtrlReply>, Status> {
        self.serve(convert::servers_from_wire(r.into_inner())).await
    }

    async fn query(&self, r: Request<pb::QueryRequest>) -> Result<Response<pb::CtrlReply>, Status> {
        self.serve(convert::query_from_wire(r.into_inner())).await
    }
}

/// What a server that hosts shard groups does with the questions other groups ask while
/// moving shards (the Shard service).
pub trait ShardHandler: Send + Sync + 'static {
    /// This server's node id (sent with every reply).
    fn node_id(&self) -> NodeId;

    /// Serves one postcard-encoded `ShardRequest` for `group` (the frame was size-checked
    /// before it got here; the handler decodes it and refuses what does not decode with
    /// `Invalid`). `Ok` is the postcard-encoded `ShardOutput`. The handler applies its own
    /// deadline: the future always resolves.
    fn shard_call(
        &self,
        group: Gid,
        request: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, Error>> + Send;
}

/// Adds the Shard service for `handler` to a router built by [`router`], with the frame
/// limit ([`SHARD_FRAME_BYTES_MAX`]) set. Only connections `auth` lets through reach it;
/// refusals are counted and logged in `drops` (the Raft service's, [`RaftService::drops`]).
pub fn with_shard<H: ShardHandler>(
    router: tonic::transport::server::Router,
    handler: Arc<H>,
    auth: PeerAuth,
    drops: Arc<RaftDrops>,
) -> tonic::transport::server::Router {
    let svc = ShardServer::new(ShardService {
        handler,
        auth,
        drops,
    })
    .max_decoding_message_size(SHARD_FRAME_BYTES_MAX)
    .max_encoding_message_size(SHARD_FRAME_BYTES_MAX);
    router.add_service(svc)
}

/// The Shard service.
pub struct ShardService<H> {
    handler: Arc<H>,
    auth: PeerAuth,
    drops: Arc<RaftDrops>,
}

#[tonic::async_trait]
impl<H: ShardHandler> Shard for ShardService<H> {
    async fn call(
        &self,
        r: Request<pb::ShardCall>,
    ) -> Result<Response<pb::ShardCallReply>, Status> {
        let certs = r.peer_certs();
        if let Err(status) = self.auth.member(certs.as_deref().map(Vec::as_slice)) {
            let remote = r.remote_addr();
            self.drops.count(DropReason::NotAMember, 1, || {
                format!("a Shard call from {remote:?}: {}", status.message())
            });
            return Err(status);
        }
        let r = r.into_inner();
        let reply = self.handler.shard_call(Gid(r.group), r.request).await;
        Ok(Response::new(convert::shard_reply_to_wire(
            self.handler.node_id(),
            reply,
        )))
    }
}

/// The Raft peer service: checks each batch's cluster id against its own and asks its
/// [`RaftRouter`] whether it hosts the batch's group, both before decoding; then decodes,
/// drops misaddressed or undecodable messages, and delivers the rest. Every drop is
/// counted in [`RaftDrops`] and logged at most once per [`DROP_LOG_INTERVAL`] per reason.
///
/// With [`PeerAuth::MemberCertificates`] a stream is refused (PERMISSION_DENIED) unless its
/// connection presented a member certificate, and a batch whose `from` is not the member the
/// certificate names is dropped whole ([`DropReason::ForgedSender`]).
pub struct RaftService<R> {
    cluster_id: u64,
    routes: Arc<R>,
    drops: Arc<RaftDrops>,
    auth: PeerAuth,
}

impl<R: RaftRouter> RaftService<R> {
    /// A peer service for cluster `cluster_id` over `routes`, open to anyone
    /// ([`PeerAuth::Open`]; [`RaftService::with_auth`] changes that).
    pub fn new(cluster_id: u64, routes: Arc<R>) -> RaftService<R> {
        RaftService {
            cluster_id,
            routes,
            drops: Arc::new(RaftDrops::default()),
            auth: PeerAuth::Open,
        }
    }

    /// The same service, accepting only what `auth` lets through.
    pub fn with_auth(self, auth: PeerAuth) -> RaftService<R> {
        RaftService { auth, ..self }
    }

    /// The drop counters, to read while the service runs.
    pub fn drops(&self) -> Arc<RaftDrops> {
        self.drops.clone()
    }

    /// Checks, decodes and delivers one batch that came on a connection authenticated as
    /// `member` (`None`: an open port).
    fn receive(&self, batch: pb::RaftBatch, member: Option<NodeId>) {
        let me = self.routes.node_id();
        let from = NodeId(batch.from);
        let group = Gid(batch.group_id);
        if let Some(member) = member
            && member != from
        {
            self.drops.count(DropReason::ForgedSender, 1, || {
                format!(
                    "a batch claiming to be from node {} (group {}) came on a connection \
                     authenticated as node {}",
                    from.0, group.0, member.0
                )
            });
            return;
        }
        if batch.cluster_id != self.cluster_id {
            self.drops.count(DropReason::WrongCluster, 1, || {
                format!(
                    "expected cluster {}, received cluster {} from node {} (group {}); \
                     a member of another cluster (or one with another --cluster-token) \
                     is sending to this address",
                    cluster_hex(self.cluster_id),
                    cluster_hex(batch.cluster_id),
                    from.0,
                    group.0
                )
            });
            return;
        }
        if !self.routes.hosts(group) {
            self.drops.count(DropReason::WrongGroup, 1, || {
                format!(
                    "received group {} from node {}, which this node does not host; \
                     check the sender's --group-id and --peers",
                    group.0, from.0
                )
            });
            return;
        }
        let msgs = self.decode_batch(me, from, &batch.messages);
        if !msgs.is_empty() {
            self.routes.deliver(group, from, msgs);
        }
    }

    /// Decodes a batch, dropping every message that does not decode or is not from `from`
    /// to `me`.
    fn decode_batch(&self, me: NodeId, from: NodeId, frames: &[Vec<u8>]) -> Vec<Message> {
        let mut msgs = Vec::with_capacity(frames.len());
        for bytes in frames {
            match decode_message(bytes) {
                Ok(m) if m.to == me && m.from == from => msgs.push(m),
                Ok(m) => self.drops.count(DropReason::Misaddressed, 1, || {
                    format!(
                        "a message from {} to {} in a batch from {from} (this node is {me})",
                        m.from, m.to
                    )
                }),
                Err(e) => self.drops.count(DropReason::Undecodable, 1, || {
                    format!("{} bytes from {from}: {e}", bytes.len())
                }),
            }
        }
        msgs
    }
}

#[tonic::async_trait]
impl<R: RaftRouter> Raft for RaftService<R> {
    async fn send(
        &self,
        r: Request<Streaming<pb::RaftBatch>>,
    ) -> Result<Response<pb::RaftAck>, Status> {
        let remote = r.remote_addr();
        let certs = r.peer_certs();
        let member = match self.auth.member(certs.as_deref().map(Vec::as_slice)) {
            Ok(member) => member,
            Err(status) => {
                self.drops.count(DropReason::NotAMember, 1, || {
                    format!("a Raft stream from {remote:?}: {}", status.message())
                });
                return Err(status);
            }
        };
        let mut stream = r.into_inner();
        loop {
            match stream.message().await {
                Ok(Some(batch)) => self.receive(batch, member),
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(node = %self.routes.node_id(), ?remote, %status,
                        "raft stream ended");
                    break;
                }
            }
        }
        Ok(Response::new(pb::RaftAck {}))
    }
}

/// How often at most one warning per drop reason is logged; drops in between are counted
/// and summed into the next warning.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why the peer service dropped something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// A batch whose cluster id is not this node's.
    WrongCluster,
    /// A batch for a group this node does not host.
    WrongGroup,
    /// A message not from the batch's sender or not to this node.
    Misaddressed,
    /// A message that does not decode.
    Undecodable,
    /// A batch whose sender is not the member its connection's certificate names.
    ForgedSender,
    /// A Raft stream or Shard call on a connection without a member certificate.
    NotAMember,
}

impl DropReason {
    const ALL: [DropReason; 6] = [
        DropReason::WrongCluster,
        DropReason::WrongGroup,
        DropReason::Misaddressed,
        DropReason::Undecodable,
        DropReason::ForgedSender,
        DropReason::NotAMember,
    ];

    fn what(self) -> &'static str {
        match self {
            DropReason::WrongCluster => "dropping raft batches for another cluster",
            DropReason::WrongGroup => "dropping raft batches for a group not hosted here",
            DropReason::Misaddressed => "dropping misaddressed raft messages",
            DropReason::Undecodable => "dropping undecodable raft messages",
            DropReason::ForgedSender => {
                "dropping raft batches whose sender is not the certificate's member"
            }
            DropReason::NotAMember => "refusing a peer service to a non-member certificate",
        }
    }
}

/// What the peer service dropped, per reason. Batches for the identity checks (they are
/// dropped whole, before decoding), messages for the per-message checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftDropCounts {
    pub wrong_cluster_batches: u64,
    pub wrong_group_batches: u64,
    pub misaddressed_messages: u64,
    pub undecodable_messages: u64,
    /// Batches whose `from` is not the member the connection's certificate names.
    pub forged_sender_batches: u64,
    /// Raft streams and Shard calls refused for want of a member certificate.
    pub not_a_member_calls: u64,
}

/// The drop counters of a [`RaftService`] and its log rate limiter.
#[derive(Debug, Default)]
pub struct RaftDrops {
    /// Indexed like [`DropReason::ALL`].
    counts: [AtomicU64; 6],
    /// Per reason: when the last warning was logged and the count it reported.
    /// Invariant: `reported <= counts[reason]`.
    logged: Mutex<BTreeMap<DropReason, (Instant, u64)>>,
}

impl RaftDrops {
    /// The counts so far.
    pub fn counts(&self) -> RaftDropCounts {
        let get = |r: DropReason| self.counts[r as usize].load(Ordering::Relaxed);
        RaftDropCounts {
            wrong_cluster_batches: get(DropReason::WrongCluster),
            wrong_group_batches: get(DropReason::WrongGroup),
            misaddressed_messages: get(DropReason::Misaddressed),
            undecodable_messages: get(DropReason::Undecodable),
            forged_sender_batches: get(DropReason::ForgedSender),
            not_a_member_calls: get(DropReason::NotAMember),
        }
    }

    /// Counts `n` drops for `reason` and logs one warning (built by `detail`, naming the
    /// expected and received ids) if none was logged for this reason in the last
    /// [`DROP_LOG_INTERVAL`].
    fn count(&self, reason: DropReason, n: u64, detail: impl FnOnce() -> String) {
        debug_assert_eq!(DropReason::ALL[reason as usize], reason);
        let total = self.counts[reason as usize].fetch_add(n, Ordering::Relaxed) + n;
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let due = logged
            .get(&reason)
            .is_none_or(|(at, _)| now.duration_since(*at) >= DROP_LOG_INTERVAL);
        if !due {
            return;
        }
        let since = total - logged.get(&reason).map_or(0, |(_, reported)| *reported);
        logged.insert(reason, (now, total));
        drop(logged);
        let detail = detail();
        tracing::warn!(
            reason = ?reason, dropped_since_last_report = since, dropped_total = total,
            "{}: {detail}", reason.what()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardkv_raft::Body;
    use shardkv_types::Term;

    /// Records the Raft messages it is handed.
    #[derive(Default)]
    struct Sink {
        got: Mutex<Vec<Message>>,
    }

    impl Handler for Sink {
        fn node_id(&self) -> NodeId {
            NodeId(1)
        }

        async fn request(&self, _: Gid, _: KvRequest) -> Result<KvOutput, Error> {
            Err(Error::Busy)
        }

        async fn status(&self) -> Result<NodeStatus, Error> {
            Err(Error::Busy)
        }

        fn raft_messages(&self, _: NodeId, msgs: Vec<Message>) {
            self.got.lock().expect("lock").extend(msgs);
        }
    }

    fn service(sink: &Arc<Sink>) -> RaftService<OneGroup<Sink>> {
        let routes = OneGroup {
            group: Gid(1),
            handler: sink.clone(),
        };
        RaftService::new(0xc1, Arc::new(routes))
    }

    fn good() -> Message {
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(3),
            body: Body::TimeoutNow,
        }
    }

    fn batch(cluster_id: u64, group_id: u64) -> pb::RaftBatch {
        pb::RaftBatch {
            from: 2,
            messages: vec![convert::encode_message(&good())],
            cluster_id,
            group_id,
        }
    }

    #[test]
    fn undecodable_and_misaddressed_messages_are_dropped_and_counted() {
        // Goal: per-message checks drop what is not from the sender to this node.
        let wrong_to = Message {
            to: NodeId(3),
            ..good()
        };
        let frames = vec![
            convert::encode_message(&good()),
            vec![0xde, 0xad, 0xbe, 0xef],
            convert::encode_message(&wrong_to),
            Vec::new(),
        ];
        let sink = Arc::new(Sink::default());
        let s = service(&sink);
        assert_eq!(s.decode_batch(NodeId(1), NodeId(2), &frames), vec![good()]);
        let counts = s.drops().counts();
        assert_eq!(counts.misaddressed_messages, 1);
        assert_eq!(counts.undecodable_messages, 2);
    }

    #[test]
    fn batches_for_another_cluster_or_group_are_counted_and_never_delivered() {
        // Goal: identity checks run before anything is delivered. Method: a batch of each
        // kind through `receive`, then look at what the handler got and at the counters.
        let sink = Arc::new(Sink::default());
        let s = service(&sink);
        s.receive(batch(0xc2, 1), None);
        s.receive(batch(0, 1), None);
        s.receive(batch(0xc1, 2), None);
        assert!(sink.got.lock().expect("lock").is_empty());
        s.receive(batch(0xc1, 1), None);
        assert_eq!(*sink.got.lock().expect("lock"), vec![good()]);
        assert_eq!(
            s.drops().counts(),
            RaftDropCounts {
                wrong_cluster_batches: 2,
                wrong_group_batches: 1,
                ..RaftDropCounts::default()
            }
        );
    }

    #[test]
    fn drops_are_logged_once_per_interval_per_reason() {
        // Goal: a flood of bad batches makes one warning, not one per batch. Method: count
        // many drops at once and read what the limiter reported.
        let drops = RaftDrops::default();
        let mut built = 0;
        for _ in 0..100 {
            drops.count(DropReason::WrongGroup, 1, || {
                built += 1;
                String::new()
            });
        }
        drops.count(DropReason::WrongCluster, 1, String::new);
        assert_eq!(built, 1, "one warning for 100 drops");
        let logged = drops.logged.lock().expect("lock");
        assert_eq!(logged.get(&DropReason::WrongGroup).map(|l| l.1), Some(1));
        assert_eq!(logged.get(&DropReason::WrongCluster).map(|l| l.1), Some(1));
        assert_eq!(drops.counts().wrong_group_batches, 100);
    }

    #[test]
    fn a_batch_not_from_the_certificates_member_is_dropped_and_counted() {
        // Goal: on a TLS port, a member cannot speak for another one. Method: the same
        // batch (from node 2) on connections authenticated as node 3 and as node 2.
        let sink = Arc::new(Sink::default());
        let s = service(&sink);
        s.receive(batch(0xc1, 1), Some(NodeId(3)));
        assert!(sink.got.lock().expect("lock").is_empty());
        assert_eq!(s.drops().counts().forged_sender_batches, 1);
        s.receive(batch(0xc1, 1), Some(NodeId(2)));
        assert_eq!(*sink.got.lock().expect("lock"), vec![good()]);
    }
}
