//! [`Outbox`]: carries a shard group's requests to other groups (the controller's Query,
//! another shard group's Pull and Installed reads) over gRPC, and feeds the answers back
//! into the node's inbox, where the group's duties take them on their own clock.
//!
//! Contract:
//! - [`Outbox::send`] never blocks the node thread: each request is a tokio task.
//! - Bounded in items and bytes: per group, at most [`OUTBOUND_IN_FLIGHT_MAX`] requests,
//!   reserving together at most [`OUTBOUND_BYTES_MAX`] bytes of the largest answers they
//!   may bring back (the frame limit of their service: a Shard answer reserves
//!   `SHARD_FRAME_BYTES_MAX`, a controller answer `CTRL_FRAME_BYTES_MAX`), are held from
//!   [`Outbox::send`] until the node thread has handled the answer (an answer waiting in
//!   the inbox still holds its share: [`Held`] travels with it); more are dropped. Each
//!   attempt is bounded by [`OUTBOUND_ATTEMPT_TIMEOUT`]. A dropped or timed-out request
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
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// The most requests one group has in flight to other groups.
pub const OUTBOUND_IN_FLIGHT_MAX: usize = 64;

/// The most answer bytes one group's requests to other groups may hold, counted at the
/// largest answer each may bring (eight full Shard answers, or 32 controller answers).
pub const OUTBOUND_BYTES_MAX: u64 = 128 << 20;

/// How long one request may take (a pulled shard can be large).
pub const OUTBOUND_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The most distinct servers whose connections are kept.
const CHANNELS_MAX: usize = 256;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The sending side of one shard group member's requests to other groups.
pub struct Outbox {
    rt: Handle,
    answers: Arc<Answers>,
    window: Arc<Window>,
    /// Lazily connected channels by address (they reconnect on their own).
    channels: Mutex<BTreeMap<String, Channel>>,
    /// Connect with TLS as this member (`None`: plaintext).
    tls: Option<ClientTlsConfig>,
}

/// Where answers go: the node's inbox, as [`crate::handler::Inbound::Answer`], with the
/// request's share of the window (dropped once the answer is handled).
pub type Answers = dyn Fn(u64, NodeId, DutyAnswer, Held) + Send + Sync;

/// What the requests of one group hold: how many, and their reserved answer bytes.
#[derive(Debug)]
struct Window {
    held: Mutex<(usize, u64)>,
    items_max: usize,
    bytes_max: u64,
}

impl Window {
    fn new(items_max: usize, bytes_max: u64) -> Arc<Window> {
        Arc::new(Window {
            held: Mutex::new((0, 0)),
            items_max,
            bytes_max,
        })
    }

    /// One request reserving `bytes`, if both bounds have room.
    fn take(self: &Arc<Window>, bytes: u64) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (items, reserved) = *held;
        if items >= self.items_max || reserved.saturating_add(bytes) > self.bytes_max {
            return None;
        }
        *held = (items + 1, reserved + bytes);
        Some(Held {
            window: self.clone(),
            bytes,
        })
    }

    fn held(&self) -> (usize, u64) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One request's share of its group's window, given back when dropped: when the node
/// thread has handled its answer, or when the request ended without one.
#[derive(Debug)]
pub struct Held {
    window: Arc<Window>,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.window.held.lock().unwrap_or_else(|p| p.into_inner());
        held.0 -= 1;
        held.1 -= self.bytes;
    }
}

/// The most bytes the answer to `request` can hold: its service's frame limit.
fn answer_bytes_max(request: &DutyRequest) -> u64 {
    match request {
        DutyRequest::Ctrl(_) => CTRL_FRAME_BYTES_MAX as u64,
        DutyRequest::Shard(_) => SHARD_FRAME_BYTES_MAX as u64,
    }
}

impl Outbox {
    /// An outbox whose answers go to `inbox`; its tasks run on `rt`; it connects with
    /// `tls` if given.
    pub fn new(rt: Handle, answers: Box<Answers>, tls: Option<ClientTlsConfig>) -> Outbox {
        Outbox {
            rt,
            answers: Arc::from(answers),
            window: Window::new(OUTBOUND_IN_FLIGHT_MAX, OUTBOUND_BYTES_MAX),
            channels: Mutex::new(BTreeMap::new()),
            tls,
        }
    }

    /// Sends `o` in the background (or drops it: see the module contract).
    pub fn send(&self, o: Outbound) {
        let Some(held) = self.window.take(answer_bytes_max(&o.request)) else {
            let (items, bytes) = self.window.held();
            tracing::debug!(gid = %o.gid, items, bytes, "too many requests to other groups in flight: dropped one");
            return;
        };
        let channel = self.channel(&o.addr);
        let answers = self.answers.clone();
        self.rt.spawn(async move {
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
            answers(o.token, o.to, answer, held);
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
        WireCtrlRequest::Servers(r) => client.servers(r).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the window refuses a request by bytes even with items to spare, and a share
    /// given back (its answer handled) makes room again.
    #[test]
    fn the_window_is_bounded_in_bytes_as_well_as_items() {
        let w = Window::new(OUTBOUND_IN_FLIGHT_MAX, OUTBOUND_BYTES_MAX);
        let shard = SHARD_FRAME_BYTES_MAX as u64;
        let mut held: Vec<Held> = (0..OUTBOUND_BYTES_MAX / shard)
            .map(|_| w.take(shard).expect("room for a full Shard answer"))
            .collect();
        assert!(
            held.len() < OUTBOUND_IN_FLIGHT_MAX,
            "bytes bind before items"
        );
        assert!(w.take(shard).is_none(), "no room for another full answer");
        assert!(w.take(1).is_none(), "not even a byte");
        held.pop();
        assert!(w.take(shard).is_some(), "a handled answer makes room");
        assert_eq!(w.held(), (held.len(), held.len() as u64 * shard));
        drop(held);
        assert_eq!(w.held(), (0, 0));
    }

    /// Goal: small requests are bounded by count.
    #[test]
    fn the_window_is_bounded_in_items() {
        let w = Window::new(OUTBOUND_IN_FLIGHT_MAX, OUTBOUND_BYTES_MAX);
        let held: Vec<Held> = (0..OUTBOUND_IN_FLIGHT_MAX)
            .map(|_| w.take(1).expect("room"))
            .collect();
        assert!(w.take(1).is_none());
        drop(held);
        assert!(w.take(1).is_some());
    }
}
