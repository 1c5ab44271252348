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

use crate::driver::{CallFailure, Hinted};
use shardkv_kv::{KvOutput, KvRequest};
use shardkv_net::batch::{BATCH_ENTRIES_MAX, BATCH_IN_FLIGHT_MAX, entry_bytes, entry_to_wire};
use shardkv_net::pb::kv_client::KvClient;
use shardkv_net::{KV_FRAME_BYTES_MAX, convert, pb};
use shardkv_types::Gid;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tonic::transport::Channel;

/// The most encoded bytes of requests in one message (a single larger request still goes
/// alone: within the Kv frame limit, as its unary call).
pub(crate) const BATCH_MESSAGE_BYTES_MAX: usize = KV_FRAME_BYTES_MAX - (64 << 10);

/// Calls queued for a connection's writer; more callers wait to queue.
const QUEUE_MAX: usize = 1024;

/// What one call on a connection came to.
pub(crate) type CallResult = Result<Hinted<KvOutput>, CallFailure>;

/// How a batched call ended.
enum Outcome {
    Done(CallResult),
    /// The server does not serve Batch: the request was not sent, and comes back.
    Unsupported(KvRequest),
    /// The stream closed (or failed to open, for the reason given) before taking the
    /// request: it was not sent, and comes back.
    NotSent(KvRequest, tonic::Status),
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
    /// The server answered `UNIMPLEMENTED` when the stream opened.
    unsupported: Arc<AtomicBool>,
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
    /// there is none or it broke), or unary if the server does not serve Batch. A request
    /// a stream never took (it closed first) is offered to one new stream.
    pub(crate) async fn call(
        &self,
        slot: usize,
        channel: Channel,
        group: Gid,
        req: KvRequest,
    ) -> CallResult {
        let mut req = req;
        let mut why = stream_lost("is closed");
        for _ in 0..2 {
            let Some(conn) = self.conn(slot, &channel) else {
                return unary(channel, group, req).await;
            };
            match conn.call(group, req).await {
                Outcome::Done(r) => return r,
                Outcome::Unsupported(back) => {
                    self.lock(slot).unary = true;
                    return unary(channel, group, back).await;
                }
                Outcome::NotSent(back, status) => (req, why) = (back, status),
            }
        }
        Err(CallFailure::Status(why))
    }

    /// The live stream of `slot`, opened over `channel` if there is none; `None` when the
    /// server is called unary.
    fn conn(&self, slot: usize, channel: &Channel) -> Option<Arc<Conn>> {
        let mut s = self.lock(slot);
        if s.unary {
            return None;
        }
        let live = s.conn.as_ref().filter(|c| !c.dead.load(Ordering::Acquire));
        let conn = match live {
            Some(c) => c.clone(),
            None => Arc::new(Conn::open(channel.clone())),
        };
        s.conn = Some(conn.clone());
        Some(conn)
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
        WireRequest::Op(r) => client.op(r).await,
    };
    let reply: pb::KvReply = reply.map_err(CallFailure::Status)?.into_inner();
    hinted(reply)
}

/// Who answered, the answer and its leader hint ([`shardkv_net::hint`]).
fn hinted(reply: pb::KvReply) -> CallResult {
    let hint = shardkv_net::hint::read_kv(&reply);
    let (from, reply) = convert::reply_from_wire(reply).map_err(CallFailure::Malformed)?;
    Ok((from, reply, hint))
}

fn stream_lost(why: &str) -> tonic::Status {
    tonic::Status::unavailable(format!("the batch stream {why}"))
}

impl Conn {
    /// A stream over `channel`, opened by its own task (callers queue meanwhile).
    fn open(channel: Channel) -> Conn {
        let (queue, calls) = mpsc::channel(QUEUE_MAX);
        let dead = Arc::new(AtomicBool::new(false));
        let unsupported = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(channel, calls, dead.clone(), unsupported.clone()));
        Conn {
            queue,
            dead,
            unsupported,
        }
    }

    async fn call(&self, group: Gid, req: KvRequest) -> Outcome {
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self.queue.send(Call { group, req, reply }).await {
            let req = refused.0.req;
            return if self.unsupported.load(Ordering::Acquire) {
                Outcome::Unsupported(req)
            } else {
                Outcome::NotSent(req, stream_lost("is closed"))
            };
        }
        answer.await.unwrap_or_else(|_| {
            Outcome::Done(Err(CallFailure::Status(stream_lost(
                "ended before answering",
            ))))
        })
    }
}

/// Opens the stream, then runs its writer here and its reader on a task of its own.
async fn run(
    channel: Channel,
    mut calls: mpsc::Receiver<Call>,
    dead: Arc<AtomicBool>,
    unsupported: Arc<AtomicBool>,
) {
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
            // Nothing was sent: every request queued comes back.
            let unimplemented = status.code() == tonic::Code::Unimplemented;
            unsupported.store(unimplemented, Ordering::Release);
            dead.store(true, Ordering::Release);
            calls.close();
            while let Some(call) = calls.recv().await {
                let outcome = if unimplemented {
                    Outcome::Unsupported(call.req)
                } else {
                    Outcome::NotSent(call.req, status.clone())
                };
                let _ = call.reply.send(outcome);
            }
            return;
        }
    };
    let waiters = Arc::new(Mutex::new(Waiters::default()));
    tokio::spawn(read(replies, waiters.clone(), dead));
    write(calls, out, waiters, BATCH_IN_FLIGHT_MAX).await;
}

fn lock(waiters: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    waiters.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer: takes what is queued, one message per send, until every caller is gone or
/// the stream is over. A request is taken only with one of `in_flight_max` permits in hand,
/// so at most that many are in flight and every request taken goes out in the next send.
async fn write(
    mut calls: mpsc::Receiver<Call>,
    out: mpsc::Sender<pb::KvBatch>,
    waiters: Arc<Mutex<Waiters>>,
    in_flight_max: usize,
) {
    let permits = Arc::new(Semaphore::new(in_flight_max));
    let mut next_id: u64 = 1;
    // A request taken but left for the next message (it would have made this one too big).
    let mut carry: Option<(oneshot::Sender<Outcome>, pb::KvBatchEntry)> = None;
    loop {
        let permit = acquire(&permits, &waiters).await;
        // A call whose caller gave up (its attempt timed out) is never sent: the caller
        // counted it as possibly applied and may have resent it as a retry since, which
        // this stale first attempt must not overtake.
        let (reply, entry) = match carry.take().filter(|(r, _)| !r.is_closed()) {
            Some(c) => c,
            None => loop {
                match calls.recv().await {
                    Some(call) if call.reply.is_closed() => continue,
                    Some(call) => break tag(call, &mut next_id),
                    None => return,
                }
            },
        };
        let mut bytes = entry_bytes(&entry);
        let mut taken = vec![(reply, entry, permit)];
        while taken.len() < BATCH_ENTRIES_MAX {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let Ok(call) = calls.try_recv() else {
                break;
            };
            if call.reply.is_closed() {
                continue;
            }
            let (reply, entry) = tag(call, &mut next_id);
            let size = entry_bytes(&entry);
            if bytes + size > BATCH_MESSAGE_BYTES_MAX {
                carry = Some((reply, entry));
                break;
            }
            bytes += size;
            taken.push((reply, entry, permit));
        }
        let entries = register(&waiters, taken);
        if !entries.is_empty() && out.send(pb::KvBatch { entries }).await.is_err() {
            // The transport dropped the stream: the reader sees why and fails the waiters.
            return;
        }
    }
}

/// Registers the waiters of the requests about to be sent, and returns their entries; on a
/// stream already over, fails them instead.
fn register(
    waiters: &Mutex<Waiters>,
    taken: Vec<(
        oneshot::Sender<Outcome>,
        pb::KvBatchEntry,
        OwnedSemaphorePermit,
    )>,
) -> Vec<pb::KvBatchEntry> {
    let mut w = lock(waiters);
    let mut entries = Vec::with_capacity(taken.len());
    for (reply, entry, permit) in taken {
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
    entries
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
            // UNIMPLEMENTED after the stream opened is no statement about the service, and
            // a size or resource refusal of the stream is none about its requests: the
            // stream is lost, its requests are retried.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unimplemented
                        | tonic::Code::OutOfRange
                        | tonic::Code::ResourceExhausted
                ) =>
            {
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
            Some(r) => hinted(r),
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

#[cfg(test)]
mod tests {
    use super::*;
    use pb::kv_batch_entry::Request as WireReq;
    use shardkv_kv::KvQuery;
    use shardkv_rsm::Request;
    use shardkv_types::NodeId;

    fn get(key: &str) -> KvRequest {
        Request::Read(KvQuery::Get {
            key: key.as_bytes().to_vec(),
        })
    }

    /// Queues a Get of each key; where each answer will come.
    async fn queue(calls: &mpsc::Sender<Call>, keys: &[&str]) -> Vec<oneshot::Receiver<Outcome>> {
        let mut answers = Vec::new();
        for key in keys {
            let (reply, answer) = oneshot::channel();
            let call = Call {
                group: Gid(1),
                req: get(key),
                reply,
            };
            calls.send(call).await.expect("the writer runs");
            answers.push(answer);
        }
        answers
    }

    fn key_of(e: &pb::KvBatchEntry) -> Vec<u8> {
        match &e.request {
            Some(WireReq::Get(g)) => g.key.clone(),
            other => panic!("expected a Get, got {other:?}"),
        }
    }

    /// The server's answer to entry `e`: its own key as the value.
    fn echo(e: &pb::KvBatchEntry) -> pb::KvBatchReplyEntry {
        let value = Ok(KvOutput::Value(Some(key_of(e))));
        pb::KvBatchReplyEntry {
            id: e.id,
            reply: Some(convert::reply_to_wire(NodeId(2), value)),
        }
    }

    fn value(outcome: Outcome) -> Vec<u8> {
        match outcome {
            Outcome::Done(Ok((NodeId(2), Ok(KvOutput::Value(Some(v))), None))) => v,
            Outcome::Done(Ok((from, reply, _))) => {
                panic!("expected a value, got {reply:?} from {from}")
            }
            Outcome::Done(Err(_)) => panic!("expected a value, got a failed call"),
            Outcome::Unsupported(_) | Outcome::NotSent(..) => panic!("expected a value"),
        }
    }

    /// Lets the spawned tasks run until they wait (a current-thread runtime: no clock).
    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    struct Rig {
        calls: mpsc::Sender<Call>,
        sent: mpsc::Receiver<pb::KvBatch>,
        waiters: Arc<Mutex<Waiters>>,
    }

    /// A writer with `in_flight_max` permits whose messages land in `sent`; the calls
    /// queued by `before` are there when it starts.
    async fn rig(in_flight_max: usize, before: &[&str]) -> (Rig, Vec<oneshot::Receiver<Outcome>>) {
        let (calls, rx) = mpsc::channel(QUEUE_MAX);
        let (out, sent) = mpsc::channel(1);
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let answers = queue(&calls, before).await;
        tokio::spawn(write(rx, out, waiters.clone(), in_flight_max));
        let rig = Rig {
            calls,
            sent,
            waiters,
        };
        (rig, answers)
    }

    #[tokio::test]
    async fn what_queued_goes_in_one_message_and_each_answer_reaches_its_own_caller() {
        let keys = ["a", "b", "c", "d"];
        let (mut rig, answers) = rig(16, &keys).await;
        let msg = rig.sent.recv().await.expect("a message");
        assert_eq!(msg.entries.len(), 4, "coalesced: {msg:?}");
        let ids: std::collections::HashSet<u64> = msg.entries.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 4, "distinct ids");
        // The server answers in another order, over two messages.
        let mut replies: Vec<_> = msg.entries.iter().rev().map(echo).collect();
        let rest = replies.split_off(1);
        deliver(&rig.waiters, pb::KvBatchReply { replies });
        deliver(&rig.waiters, pb::KvBatchReply { replies: rest });
        for (key, answer) in keys.iter().zip(answers) {
            assert_eq!(value(answer.await.expect("answered")), key.as_bytes());
        }
        assert!(lock(&rig.waiters).by_id.is_empty(), "no waiter left");
        // Idle again: the next request goes alone, at once, with a new id.
        let late = queue(&rig.calls, &["e"]).await;
        let msg = rig.sent.recv().await.expect("a message");
        assert_eq!(msg.entries.len(), 1);
        assert!(!ids.contains(&msg.entries[0].id), "ids are not reused");
        deliver(
            &rig.waiters,
            pb::KvBatchReply {
                replies: vec![echo(&msg.entries[0])],
            },
        );
        let late = late.into_iter().next().expect("one");
        assert_eq!(value(late.await.expect("answered")), b"e");
    }

    #[tokio::test]
    async fn a_broken_stream_fails_every_waiter_and_every_later_call_as_possibly_applied() {
        let (mut rig, answers) = rig(16, &["a", "b"]).await;
        let msg = rig.sent.recv().await.expect("a message");
        assert_eq!(msg.entries.len(), 2);
        let dead = AtomicBool::new(false);
        let reset = tonic::Status::unavailable("connection reset");
        fail_all(&rig.waiters, &dead, reset);
        assert!(
            dead.load(Ordering::Acquire),
            "the slot opens a new stream next time"
        );
        let later = queue(&rig.calls, &["c"]).await;
        for answer in answers.into_iter().chain(later) {
            match answer.await.expect("answered") {
                // The driver resets the connection on UNAVAILABLE and hands the clerk a
                // lost attempt (`on_timeout`): a write may have applied and is resent with
                // its sequence number.
                Outcome::Done(Err(CallFailure::Status(s))) => {
                    assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                }
                _ => panic!("expected the stream's failure"),
            }
        }
        // A late answer for a request already failed is ignored.
        deliver(
            &rig.waiters,
            pb::KvBatchReply {
                replies: vec![echo(&msg.entries[0])],
            },
        );
    }

    #[tokio::test]
    async fn the_in_flight_bound_holds_requests_back_until_answers_free_room() {
        let (mut rig, mut answers) = rig(2, &["a", "b", "c", "d", "e"]).await;
        let first = rig.sent.recv().await.expect("a message");
        assert_eq!(first.entries.len(), 2, "the bound: {first:?}");
        settle().await;
        assert!(
            rig.sent.try_recv().is_err(),
            "nothing more while 2 are in flight"
        );
        deliver(
            &rig.waiters,
            pb::KvBatchReply {
                replies: vec![echo(&first.entries[1])],
            },
        );
        let second = rig.sent.recv().await.expect("room for one");
        assert_eq!(second.entries.len(), 1);
        assert_eq!(key_of(&second.entries[0]), b"c");
        settle().await;
        assert!(rig.sent.try_recv().is_err(), "full again");
        // A caller that gave up ("a", its attempt timed out) frees its room when the
        // writer next needs room.
        drop(answers.remove(0));
        deliver(
            &rig.waiters,
            pb::KvBatchReply {
                replies: vec![echo(&second.entries[0])],
            },
        );
        let third = rig.sent.recv().await.expect("room");
        assert_eq!(key_of(&third.entries[0]), b"d");
        let fourth = rig
            .sent
            .recv()
            .await
            .expect("room, after dropping the abandoned one");
        assert_eq!(key_of(&fourth.entries[0]), b"e");
        assert_eq!(lock(&rig.waiters).by_id.len(), 2);
    }
}
