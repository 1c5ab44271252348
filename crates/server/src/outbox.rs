//! [`Outbox`]: carries a shard group's requests to other groups (the controller's Query,
//! another shard group's Pull and Installed reads) over gRPC, and feeds the answers back
//! into the node's inbox, where the group's duties take them on their own clock.
//!
//! Contract:
//! - [`Outbox::send`] never blocks the node thread: each request is a tokio task.
//! - At most [`OUTBOUND_IN_FLIGHT_MAX`] requests are in flight per group; more are dropped.
//!   Each attempt is bounded by [`OUTBOUND_ATTEMPT_TIMEOUT`]. A dropped or timed-out request
//!   produces no answer: the duty's clerk core gives up on the attempt on its own clock and
//!   tries again (every request is a read, so a retry is always safe).
//! - A request that surely reached no server (no connection, no such service, a reply that
//!   does not decode) is answered `Unavailable`, so the clerk moves to the next server at
//!   once instead of waiting out the attempt.
//! - With TLS ([`Outbox::new`]'s `tls`) every connection presents this member's
//!   certificate: another group's Shard service accepts only member certificates.
//! - The answer names the server the request was sent to (`Outbound::to`, its position in
//!   the group's server list), as the clerk core counts servers.

use shardkv_net::convert::{self, WireCtrlRequest};
use shardkv_net::pb::ctrl_client::CtrlClient;
use shardkv_net::pb::shard_client::ShardClient;
use shardkv_net::{CTRL_FRAME_BYTES_MAX, SHARD_FRAME_BYTES_MAX, pb};
use shardkv_rsm::{Error, Reply};
use shardkv_shardkv::{CtrlRequest, DutyAnswer, DutyRequest, Outbound, ShardOutput};
use shardkv_types::{Gid, NodeId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// The most requests one group has in flight to other groups.
pub const OUTBOUND_IN_FLIGHT_MAX: usize = 64;

/// How long one request may take (a pulled shard can be large).
pub const OUTBOUND_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The most distinct servers whose connections are kept.
const CHANNELS_MAX: usize = 256;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The sending side of one shard group member's requests to other groups.
pub struct Outbox {
    rt: Handle,
    answers: Arc<Answers>,
    in_flight: Arc<AtomicUsize>,
    /// Lazily connected channels by address (they reconnect on their own).
    channels: Mutex<BTreeMap<String, Channel>>,
    /// Connect with TLS as this member (`None`: plaintext).
    tls: Option<ClientTlsConfig>,
}

/// Where answers go: the node's inbox, as [`crate::handler::Inbound::Answer`].
pub type Answers = dyn Fn(u64, NodeId, DutyAnswer) + Send + Sync;

/// Decrements the in-flight count when a request task ends, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Outbox {
    /// An outbox whose answers go to `inbox`; its tasks run on `rt`; it connects with
    /// `tls` if given.
    pub fn new(rt: Handle, answers: Box<Answers>, tls: Option<ClientTlsConfig>) -> Outbox {
        Outbox {
            rt,
            answers: Arc::from(answers),
            in_flight: Arc::new(AtomicUsize::new(0)),
            channels: Mutex::new(BTreeMap::new()),
            tls,
        }
    }

    /// Sends `o` in the background (or drops it: see the module contract).
    pub fn send(&self, o: Outbound) {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= OUTBOUND_IN_FLIGHT_MAX {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(gid = %o.gid, "too many requests to other groups in flight: dropped one");
            return;
        }
        let guard = InFlight(self.in_flight.clone());
        let channel = self.channel(&o.addr);
        let answers = self.answers.clone();
        self.rt.spawn(async move {
            let _guard = guard;
            let answer = match channel {
                Ok(ch) => {
                    let call = call(ch, o.gid, o.request);
                    match tokio::time::timeout(OUTBOUND_ATTEMPT_TIMEOUT, call).await {
                        Ok(a) => a,
                        Err(_) => return,
                    }
                }
                Err(reason) => unavailable_like(&o.request, reason),
            };
            answers(o.token, o.to, answer);
        });
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let uri = shardkv_net::tls::endpoint_uri(addr, self.tls.is_some());
        let mut endpoint =
            Endpoint::from_shared(uri).map_err(|e| format!("bad address {addr:?}: {e}"))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("TLS towards {addr}: {e}"))?;
        }
        let endpoint = endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true);
        // The channel's background task needs the runtime (the node thread is not in it).
        let _rt = self.rt.enter();
        let c = endpoint.connect_lazy();
        if channels.len() >= CHANNELS_MAX {
            channels.clear();
        }
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

/// One request to another group: its answer, or `Unavailable` when the RPC failed.
async fn call(channel: Channel, gid: Gid, request: DutyRequest) -> DutyAnswer {
    match request {
        DutyRequest::Ctrl(r) => DutyAnswer::Ctrl(call_ctrl(channel, r).await),
        DutyRequest::Shard(r) => DutyAnswer::Shard(call_shard(channel, gid, &r).await),
    }
}

async fn call_ctrl(channel: Channel, req: CtrlRequest) -> Reply<shardkv_ctrl::CtrlOutput> {
    let mut client = CtrlClient::new(channel)
        .max_decoding_message_size(CTRL_FRAME_BYTES_MAX)
        .max_encoding_message_size(CTRL_FRAME_BYTES_MAX);
    let reply = match convert::ctrl_request_to_wire(req) {
        WireCtrlRequest::Join(r) => client.join(r).await,
        WireCtrlRequest::Leave(r) => client.leave(r).await,
        WireCtrlRequest::Move(r) => client.r#move(r).await,
        WireCtrlRequest::Query(r) => client.query(r).await,
    };
    let reply: pb::CtrlReply = reply.map_err(status_error)?.into_inner();
    match convert::ctrl_reply_from_wire(reply) {
        Ok((_, r)) => r,
        Err(e) => Err(unavailable(format!("malformed controller reply: {e}"))),
    }
}

async fn call_shard(
    channel: Channel,
    gid: Gid,
    req: &shardkv_shardkv::ShardRequest,
) -> Reply<ShardOutput> {
    let mut client = ShardClient::new(channel)
        .max_decoding_message_size(SHARD_FRAME_BYTES_MAX)
        .max_encoding_message_size(SHARD_FRAME_BYTES_MAX);
    let request = postcard::to_allocvec(req).expect("encoding to memory cannot fail");
    let call = pb::ShardCall {
        group: gid.0,
        request,
    };
    let reply = client.call(call).await.map_err(status_error)?.into_inner();
    let bytes = match convert::shard_reply_from_wire(reply) {
        Ok((_, r)) => r?,
        Err(e) => return Err(unavailable(format!("malformed shard reply: {e}"))),
    };
    postcard::from_bytes(&bytes).map_err(|e| unavailable(format!("undecodable shard output: {e}")))
}

fn status_error(s: tonic::Status) -> Error {
    unavailable(format!("{:?}: {}", s.code(), s.message()))
}

fn unavailable(reason: String) -> Error {
    Error::Unavailable { reason }
}

/// `Unavailable` as the answer type of `request`.
fn unavailable_like(request: &DutyRequest, reason: String) -> DutyAnswer {
    match request {
        DutyRequest::Ctrl(_) => DutyAnswer::Ctrl(Err(unavailable(reason))),
        DutyRequest::Shard(_) => DutyAnswer::Shard(Err(unavailable(reason))),
    }
}
