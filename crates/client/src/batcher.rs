//! The client side of the Kv service's Batch stream: per connection (endpoint slot), one
//! stream that carries every session's requests, many per message.
//!
//! A writer task takes the requests waiting at the moment it can send and puts them in one
//! message (no timer: idle, a request goes at once; while a send is in progress, what queues
//! goes in the next one), tagging each with a fresh id and registering its waiter first. A
//! reader task hands each answer to the waiter of its id. Bounds: at most
//! [`BATCH_IN_FLIGHT_MAX`] requests in flight per connection (past it the writer waits,
//! first dropping waiters whose caller gave up; callers queue behind it in a bounded
//! queue), [`BATCH_ENTRIES_MAX`] requests and [`BATCH_MESSAGE_BYTES_MAX`] bytes per message.
//!
//! Failures keep the unary call's meaning: a stream that breaks or ends fails every waiter
//! with its status (the driver then resets the connection and the clerk takes the request
//! as "may have applied", resending it with the same sequence number), and the next call
//! opens a new stream. A server that does not serve Batch (`UNIMPLEMENTED` when the stream
//! opens: nothing was read) is remembered per slot and called unary from then on.

use crate::driver::CallFailure;
use shardkv_kv::{KvOutput, KvRequest};
use shardkv_net::batch::{
    BATCH_ENTRIES_MAX, BATCH_IN_FLIGHT_MAX, entry_bytes, entry_to_wire,
};
use shardkv_net::pb::kv_client::KvClient;
use shardkv_net::{KV_FRAME_BYTES_MAX, convert, pb};
use shardkv_rsm::Reply;
use shardkv_types::{Gid, NodeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tonic::transport::Channel;

/// The most encoded bytes of requests in one message (a single larger request still goes
/// alone: within the Kv frame limit, as its unary call).
pub(crate) const BATCH_MESSAGE_BYTES_MAX: usize = 4 << 20;

/// Calls queued for a connection's writer; more callers wait to queue.
const QUEUE_MAX: usize = 1024;

/// What one call on a connection came to.
pub(crate) type CallResult = Result<(NodeId, Reply<KvOutput>), CallFailure>;

/// How a batched call ended.
enum Outcome {
    Done(CallResult),
    /// The server does not serve Batch: the request was not sent, and comes back.
    Unsupported(KvRequest),
}

/// A request queued for the writer.
struct Call {
    group: Gid,
    req: KvRequest,
    reply: oneshot::Sender<Outcome>,
}

/// A request sent and not yet answered; its permit is one of the in-flight bound's.
struct Waiter {
    reply: oneshot::Sender<Outcome>,
    _permit: OwnedSemaphorePermit,
}

/// The waiters of one stream by id, and whether the stream is over.
#[derive(Default)]
struct Waiters {
    by_id: HashMap<u64, Waiter>,
    /// Set once the stream broke or ended: the status every later waiter gets.
    broken: Option<tonic::Status>,
}

/// One connection's stream: where callers queue.
struct Conn {
    queue: mpsc::Sender<Call>,
    /// The stream broke or ended (the slot opens a new one on next use).
    dead: Arc<AtomicBool>,
}

/// The Batch streams of a group's endpoint slots.
#[derive(Debug)]
pub(crate) struct Batchers {
    slots: Vec<Mutex<Slot>>,
}

#[derive(Default)]
struct Slot {
    conn: Option<Arc<Conn>>,
    /// The server answered `UNIMPLEMENTED` to Batch: call it unary until reset.
    unary: bool,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("open", &self.conn.is_some())
            .field("unary", &self.unary)
            .finish()
    }
}

impl Batchers {
    pub(crate) fn new(slots: usize) -> Batchers {
        Batchers {
            slots: (0..slots).map(|_| Mutex::new(Slot::default())).collect(),
        }
    }

    /// Forgets `slot`'s stream and what it learned (its connection was reset).
    pub(crate) fn reset(&self, slot: usize) {
        *self.lock(slot) = Slot::default();
    }

    fn lock(&self, slot: usize) -> std::sync::MutexGuard<'_, Slot> {
        self.slots[slot].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `req` for `group` to `slot` on its Batch stream over `channel` (opened if
    /// there is none or it broke), or unary if the server does not serve Batch.
    pub(crate) async fn call(
        &self,
        slot: usize,
        channel: Channel,
        group: Gid,
        req: KvRequest,
    ) -> CallResult {
        let conn = {
            let mut s = self.lock(slot);
            if s.unary {
                None
            } else {
                let live = s.conn.as_ref().filter(|c| !c.dead.load(Ordering::Acquire));
                let conn = match live {
                    Some(c) => c.clone(),
                    None => Arc::new(Conn::open(channel.clone())),
                };
                s.conn = Some(conn.clone());
                Some(conn)
            }
        };
        let Some(conn) = conn else {
            return unary(channel, group, req).await;
        };
        match conn.call(group, req).await {
            Outcome::Done(r) => r,
            Outcome::Unsupported(req) => {
                self.lock(slot).unary = true;
                unary(channel, group, req).await
            }
        }
    }
}

/// One unary call.
pub(crate) async fn unary(channel: Channel, group: Gid, req: KvRequest) -> CallResult {
    use convert::WireRequest;
    let mut client = KvClient::new(channel)
        .max_decoding_message_size(KV_FRAME_BYTES_MAX)
        .max_encoding_message_size(usize::MAX);
    let reply = match convert::request_to_wire(group, req) {
        WireRequest::Get(r) => client.get(r).await,
        WireRequest::Put(r) => client.put(r).await,
        WireRequest::Append(r) => client.append(r).await,
        WireRequest::Delete(r) => client.delete(r).await,
        WireRequest::Cas(r) => client.cas(r).await,
    };
    let reply: pb::KvReply = reply.map_err(CallFailure::Status)?.into_inner();
    convert::reply_from_wire(reply).map_err(CallFailure::Malformed)
}

fn stream_lost(why: &str) -> tonic::Status {
    tonic::Status::unavailable(format!("the batch stream {why}"))
}

impl Conn {
    /// A stream over `channel`, opened by its own task (callers queue meanwhile).
    fn open(channel: Channel) -> Conn {
        let (queue, calls) = mpsc::channel(QUEUE_MAX);
        let dead = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(channel, calls, dead.clone()));
        Conn { queue, dead }
    }

    async fn call(&self, group: Gid, req: KvRequest) -> Outcome {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Call { group, req, reply }).await.is_err() {
            return Outcome::Done(Err(CallFailure::Status(stream_lost("is closed"))));
        }
        answer.await.unwrap_or_else(|_| {
            Outcome::Done(Err(CallFailure::Status(stream_lost(
                "ended before answering",
            ))))
        })
    }
}

/// Opens the stream, then runs its writer here and its reader on a task of its own.
async fn run(channel: Channel, mut calls: mpsc::Receiver<Call>, dead: Arc<AtomicBool>) {
    let mut client = KvClient::new(channel)
        .max_decoding_message_size(KV_FRAME_BYTES_MAX)
        .max_encoding_message_size(usize::MAX);
    let (out, out_rx) = mpsc::channel(1);
    let opened = client
        .batch(tokio_stream::wrappers::ReceiverStream::new(out_rx))
        .await;
    let replies = match opened {
        Ok(r) => r.into_inner(),
        Err(status) => {
            dead.store(true, Ordering::Release);
            calls.close();
            let unsupported = status.code() == tonic::Code::Unimplemented;
            while let Some(call) = calls.recv().await {
                let outcome = if unsupported {
                    Outcome::Unsupported(call.req)
                } else {
                    Outcome::Done(Err(CallFailure::Status(status.clone())))
                };
                let _ = call.reply.send(outcome);
            }
            return;
        }
    };
    let waiters = Arc::new(Mutex::new(Waiters::default()));
    tokio::spawn(read(replies, waiters.clone(), dead));
    write(calls, out, &waiters, BATCH_IN_FLIGHT_MAX).await;
}

fn lock(waiters: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    waiters.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer: takes what is queued, one message per send, until every caller is gone or
/// the stream is over. At most `in_flight_max` requests are in flight.
async fn write(
    mut calls: mpsc::Receiver<Call>,
    out: mpsc::Sender<pb::KvBatch>,
    waiters: &Mutex<Waiters>,
    in_flight_max: usize,
) {
    let permits = Arc::new(Semaphore::new(in_flight_max));
    let mut next_id: u64 = 1;
    // A request taken but left for the next message (it would have made this one too big).
    let mut carry: Option<(oneshot::Sender<Outcome>, pb::KvBatchEntry)> = None;
    loop {
        let (first, entry) = match carry.take() {
            Some(c) => c,
            None => {
                let Some(call) = calls.recv().await else {
                    return;
                };
                tag(call, &mut next_id)
            }
        };
        let mut bytes = entry_bytes(&entry);
        let mut taken = vec![(first, entry)];
        while taken.len() < BATCH_ENTRIES_MAX {
            let Ok(call) = calls.try_recv() else {
                break;
            };
            let (reply, entry) = tag(call, &mut next_id);
            let size = entry_bytes(&entry);
            if bytes + size > BATCH_MESSAGE_BYTES_MAX {
                carry = Some((reply, entry));
                break;
            }
            bytes += size;
            taken.push((reply, entry));
        }
        let mut entries = Vec::with_capacity(taken.len());
        for (reply, entry) in taken {
            let permit = acquire(&permits, waiters).await;
            let mut w = lock(waiters);
            if let Some(status) = &w.broken {
                let _ = reply.send(Outcome::Done(Err(CallFailure::Status(status.clone()))));
                continue;
            }
            let waiter = Waiter {
                reply,
                _permit: permit,
            };
            let fresh = w.by_id.insert(entry.id, waiter).is_none();
            assert!(fresh, "request ids are never reused on a stream");
            entries.push(entry);
        }
        if !entries.is_empty() && out.send(pb::KvBatch { entries }).await.is_err() {
            // The transport dropped the stream: the reader sees why and fails the waiters.
            return;
        }
    }
}

/// A queued call as a wire entry with the next id, and where its answer goes.
fn tag(call: Call, next_id: &mut u64) -> (oneshot::Sender<Outcome>, pb::KvBatchEntry) {
    let entry = entry_to_wire(*next_id, call.group, call.req);
    *next_id += 1;
    (call.reply, entry)
}

/// One permit of the in-flight bound; when none is free, the waiters whose caller gave up
/// (its attempt timed out) are dropped first, their answers ignored when they come.
async fn acquire(permits: &Arc<Semaphore>, waiters: &Mutex<Waiters>) -> OwnedSemaphorePermit {
    if let Ok(p) = permits.clone().try_acquire_owned() {
        return p;
    }
    lock(waiters).by_id.retain(|_, w| !w.reply.is_closed());
    permits
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed")
}

/// The reader: hands each answer to its waiter; when the stream ends or breaks, fails every
/// waiter (and every later one) with the reason and marks the connection dead.
async fn read(
    mut replies: tonic::Streaming<pb::KvBatchReply>,
    waiters: Arc<Mutex<Waiters>>,
    dead: Arc<AtomicBool>,
) {
    let status = loop {
        match replies.message().await {
            Ok(Some(msg)) => deliver(&waiters, msg),
            Ok(None) => break stream_lost("was ended by the server"),
            // UNIMPLEMENTED after the stream opened is no statement about the service.
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                break stream_lost(&format!("broke: {}", s.message()));
            }
            Err(s) => break s,
        }
    };
    fail_all(&waiters, &dead, status);
}

/// Hands the answers of one reply message to their waiters (an unknown id is a waiter
/// dropped because its caller gave up).
fn deliver(waiters: &Mutex<Waiters>, msg: pb::KvBatchReply) {
    let mut w = lock(waiters);
    for e in msg.replies {
        let Some(waiter) = w.by_id.remove(&e.id) else {
            continue;
        };
        let answer = match e.reply {
            Some(r) => convert::reply_from_wire(r).map_err(CallFailure::Malformed),
            None => Err(CallFailure::Malformed(format!(
                "the answer to request {} carries no reply",
                e.id
            ))),
        };
        let _ = waiter.reply.send(Outcome::Done(answer));
    }
}

/// The stream is over: every waiter, and every request registered later, gets `status`.
fn fail_all(waiters: &Mutex<Waiters>, dead: &AtomicBool, status: tonic::Status) {
    dead.store(true, Ordering::Release);
    let mut w = lock(waiters);
    for (_, waiter) in w.by_id.drain() {
        let _ = waiter
            .reply
            .send(Outcome::Done(Err(CallFailure::Status(status.clone()))));
    }
    w.broken = Some(status);
}
