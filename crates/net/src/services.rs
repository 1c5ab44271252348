//! The server side of both gRPC services, over a [`Handler`] that the server implements.
//! This module only translates: it decodes, size-checks (through tonic's limits) and hands
//! requests to the handler; it makes no decision about them.

use crate::convert::{self, decode_message};
use crate::pb::kv_server::{Kv, KvServer};
use crate::pb::raft_server::{Raft, RaftServer};
use crate::pb::{self};
use crate::{KV_FRAME_BYTES_MAX, NodeStatus, RAFT_FRAME_BYTES_MAX};
use shardkv_kv::{KvOutput, KvRequest};
use shardkv_raft::Message;
use shardkv_rsm::Error;
use shardkv_types::NodeId;
use std::future::Future;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// What a server does with what arrives on its port.
pub trait Handler: Send + Sync + 'static {
    /// This server's node id (sent with every reply so clients learn who answered).
    fn node_id(&self) -> NodeId;

    /// Serves one client request. The handler applies its own deadline: the future always
    /// resolves, with `Error::Timeout` if the outcome is not known in time.
    fn request(&self, req: KvRequest) -> impl Future<Output = Result<KvOutput, Error>> + Send;

    /// This member's status.
    fn status(&self) -> impl Future<Output = Result<NodeStatus, Error>> + Send;

    /// Raft messages that arrived from peer `from`, decoded. Must not block: a handler that
    /// cannot take them now drops them (Raft tolerates loss).
    fn raft_messages(&self, from: NodeId, msgs: Vec<Message>);
}

/// A tonic router serving both services for `handler`, with the frame limits set.
pub fn router<H: Handler>(
    builder: &mut tonic::transport::Server,
    handler: Arc<H>,
) -> tonic::transport::server::Router {
    let kv = KvServer::new(KvService {
        handler: handler.clone(),
    })
    .max_decoding_message_size(KV_FRAME_BYTES_MAX)
    .max_encoding_message_size(KV_FRAME_BYTES_MAX);
    let raft = RaftServer::new(RaftService { handler })
        .max_decoding_message_size(RAFT_FRAME_BYTES_MAX)
        .max_encoding_message_size(RAFT_FRAME_BYTES_MAX);
    builder.add_service(kv).add_service(raft)
}

/// The Kv service.
pub struct KvService<H> {
    handler: Arc<H>,
}

impl<H: Handler> KvService<H> {
    async fn serve(&self, req: KvRequest) -> Result<Response<pb::KvReply>, Status> {
        let reply = self.handler.request(req).await;
        Ok(Response::new(convert::reply_to_wire(
            self.handler.node_id(),
            reply,
        )))
    }
}

#[tonic::async_trait]
impl<H: Handler> Kv for KvService<H> {
    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::KvReply>, Status> {
        self.serve(convert::get_from_wire(r.into_inner())).await
    }

    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::KvReply>, Status> {
        self.serve(convert::put_from_wire(r.into_inner())).await
    }

    async fn append(&self, r: Request<pb::AppendRequest>) -> Result<Response<pb::KvReply>, Status> {
        self.serve(convert::append_from_wire(r.into_inner())).await
    }

    async fn delete(&self, r: Request<pb::DeleteRequest>) -> Result<Response<pb::KvReply>, Status> {
        self.serve(convert::delete_from_wire(r.into_inner())).await
    }

    async fn cas(&self, r: Request<pb::CasRequest>) -> Result<Response<pb::KvReply>, Status> {
        self.serve(convert::cas_from_wire(r.into_inner())).await
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        match self.handler.status().await {
            Ok(s) => Ok(Response::new(convert::status_to_wire(&s))),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

/// The Raft peer service.
pub struct RaftService<H> {
    handler: Arc<H>,
}

#[tonic::async_trait]
impl<H: Handler> Raft for RaftService<H> {
    async fn send(
        &self,
        r: Request<Streaming<pb::RaftBatch>>,
    ) -> Result<Response<pb::RaftAck>, Status> {
        let remote = r.remote_addr();
        let mut stream = r.into_inner();
        let me = self.handler.node_id();
        loop {
            match stream.message().await {
                Ok(Some(batch)) => {
                    let from = NodeId(batch.from);
                    let msgs = decode_batch(me, from, &batch.messages);
                    if !msgs.is_empty() {
                        self.handler.raft_messages(from, msgs);
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(node = %me, ?remote, %status, "raft stream ended");
                    break;
                }
            }
        }
        Ok(Response::new(pb::RaftAck {}))
    }
}

/// Decodes a batch, dropping (with a log line) every message that does not decode or is not
/// from `from` to `me`.
fn decode_batch(me: NodeId, from: NodeId, frames: &[Vec<u8>]) -> Vec<Message> {
    let mut msgs = Vec::with_capacity(frames.len());
    for bytes in frames {
        match decode_message(bytes) {
            Ok(m) if m.to == me && m.from == from => msgs.push(m),
            Ok(m) => tracing::warn!(
                node = %me, batch_from = %from, from = %m.from, to = %m.to,
                "dropping a misaddressed raft message"
            ),
            Err(e) => tracing::warn!(
                node = %me, %from, bytes = bytes.len(), error = %e,
                "dropping an undecodable raft message"
            ),
        }
    }
    msgs
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardkv_raft::Body;
    use shardkv_types::Term;

    #[test]
    fn undecodable_and_misaddressed_messages_are_dropped() {
        let good = Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(3),
            body: Body::TimeoutNow,
        };
        let wrong_to = Message {
            to: NodeId(3),
            ..good.clone()
        };
        let frames = vec![
            convert::encode_message(&good),
            vec![0xde, 0xad, 0xbe, 0xef],
            convert::encode_message(&wrong_to),
            Vec::new(),
        ];
        assert_eq!(decode_batch(NodeId(1), NodeId(2), &frames), vec![good]);
    }
}
