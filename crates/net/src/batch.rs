//! The Kv service's Batch stream: many requests per message each way.
//!
//! The client tags each request with an id and sends as many as are waiting in one
//! [`pb::KvBatch`]; the server hands all requests of a message to its [`Handler`] in one
//! step ([`Handler::requests`]) and writes the answers back as they complete, several per
//! [`pb::KvBatchReply`] when several are ready, in any order. Each request is served
//! exactly as its unary call is (same conversion, same handler, same answers), so sessions,
//! sequence numbers and errors mean what they mean there.
//!
//! Bounds: a message carries at most [`BATCH_ENTRIES_MAX`] requests (within the Kv frame
//! limit tonic enforces); a stream has at most [`BATCH_IN_FLIGHT_MAX`] requests in flight,
//! and the server stops reading it while a further message could pass that (backpressure
//! through HTTP/2 flow control, not a queue); while the client does not read answers, the
//! server stops both answering and reading. A bad entry (no request, an id already in
//! flight) is answered `INVALID` with its id; the rest of the message and the stream go
//! on. A message over the per-message cap ends the stream with `INVALID_ARGUMENT` (none of
//! it served; like a frame over the size limit, which tonic refuses).

use crate::pb;
use crate::services::{Answer, Handler};
use crate::{KV_FRAME_BYTES_MAX, convert};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, Stream, StreamExt};
use prost::Message as _;
use shardkv_kv::{KvOutput, KvRequest};
use shardkv_rsm::Error;
use shardkv_types::Gid;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::Status;

/// The most requests one Batch message may carry; a message with more ends its stream
/// (`INVALID_ARGUMENT`).
pub const BATCH_ENTRIES_MAX: usize = 512;

/// The most requests of one Batch stream in flight on the server: it reads the next
/// message only while that message cannot take the stream past this.
pub const BATCH_IN_FLIGHT_MAX: usize = 4096;

/// The most encoded bytes of answers put in one reply message (a single larger answer
/// still goes alone: it fits in the frame limit, as its unary answer does).
pub const BATCH_REPLY_BYTES_MAX: usize = 4 << 20;

/// Reply messages written but not yet taken by the transport.
const REPLY_QUEUE: usize = 2;

/// The wire entry of request `id` for KV group `group`.
pub fn entry_to_wire(id: u64, group: Gid, req: KvRequest) -> pb::KvBatchEntry {
    use pb::kv_batch_entry::Request as R;
    let request = match convert::request_to_wire(group, req) {
        convert::WireRequest::Get(r) => R::Get(r),
        convert::WireRequest::Put(r) => R::Put(r),
        convert::WireRequest::Append(r) => R::Append(r),
        convert::WireRequest::Delete(r) => R::Delete(r),
        convert::WireRequest::Cas(r) => R::Cas(r),
        convert::WireRequest::Op(r) => R::Op(r),
    };
    pb::KvBatchEntry {
        id,
        request: Some(request),
    }
}

/// The request of a wire entry and the group it names; `Err` names what is malformed (no
/// request, a malformed operation).
pub fn entry_from_wire(e: pb::KvBatchEntry) -> Result<(Gid, KvRequest), String> {
    use pb::kv_batch_entry::Request as R;
    let id = e.id;
    Ok(
        match e
            .request
            .ok_or_else(|| format!("entry {id} carries no request"))?
        {
            R::Get(r) => (Gid(r.group), convert::get_from_wire(r)),
            R::Put(r) => (Gid(r.group), convert::put_from_wire(r)),
            R::Append(r) => (Gid(r.group), convert::append_from_wire(r)),
            R::Delete(r) => (Gid(r.group), convert::delete_from_wire(r)),
            R::Cas(r) => (Gid(r.group), convert::cas_from_wire(r)),
            R::Op(r) => (Gid(r.group), convert::op_from_wire(r)?),
        },
    )
}

/// The encoded size of an entry within its message (the field's tag and length included).
pub fn entry_bytes(e: &pb::KvBatchEntry) -> usize {
    let len = e.encoded_len();
    len + prost::length_delimiter_len(len) + 1
}

fn reply_entry_bytes(e: &pb::KvBatchReplyEntry) -> usize {
    let len = e.encoded_len();
    len + prost::length_delimiter_len(len) + 1
}

/// Serves one Batch stream for `handler`: the stream of reply messages. The work runs on
/// a task of its own, which ends when the client closed its side and every request in
/// flight was answered, or when the client stopped reading.
pub fn serve<H, S>(
    handler: Arc<H>,
    inbound: S,
) -> impl Stream<Item = Result<pb::KvBatchReply, Status>> + Send + 'static
where
    H: Handler,
    S: Stream<Item = Result<pb::KvBatch, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(REPLY_QUEUE);
    tokio::spawn(run(handler, inbound, tx, BATCH_IN_FLIGHT_MAX));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The answer to the request of an id, with the group it was for (`None` for an entry
/// refused before it reached one): the group's address book fills leader hints.
type Answered = (u64, Option<Gid>, Result<KvOutput, Error>);

/// An answer on its way: the request's id, its group and its future.
struct InFlight {
    id: u64,
    group: Gid,
    answer: Answer,
}

impl std::future::Future for InFlight {
    type Output = Answered;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let (id, group) = (self.id, self.group);
        self.answer.as_mut().poll(cx).map(|r| (id, Some(group), r))
    }
}

/// One stream's state: the ids in flight and their answers to come.
struct BatchStream<H> {
    handler: Arc<H>,
    in_flight_max: usize,
    ids: HashSet<u64>,
    answers: FuturesUnordered<InFlight>,
}

impl<H: Handler> BatchStream<H> {
    /// Whether the stream may read another message: even a full one stays within the cap.
    fn has_room(&self) -> bool {
        self.ids.len() + BATCH_ENTRIES_MAX <= self.in_flight_max
    }

    /// Hands the good entries of `batch` to the handler in one step; the bad ones'
    /// answers, at once. A message over [`BATCH_ENTRIES_MAX`] is refused whole (`Err`,
    /// nothing of it served): the stream ends with that status.
    fn admit(&mut self, batch: pb::KvBatch) -> Result<Vec<Answered>, Status> {
        let entries = batch.entries.len();
        if entries > BATCH_ENTRIES_MAX {
            return Err(Status::invalid_argument(format!(
                "a Batch message carries at most {BATCH_ENTRIES_MAX} requests; this one \
                 carried {entries}"
            )));
        }
        let mut refused = Vec::new();
        let mut ids = Vec::with_capacity(entries);
        let mut reqs = Vec::with_capacity(entries);
        for e in batch.entries {
            let id = e.id;
            let invalid = |reason: String| (id, None, Err(Error::Invalid { reason }));
            match entry_from_wire(e) {
                Err(reason) => refused.push(invalid(reason)),
                // In flight from now on (or already: refused).
                Ok(_) if !self.ids.insert(id) => refused.push(invalid(format!(
                    "request id {id} is already in flight on this stream"
                ))),
                Ok(req) => {
                    ids.push(id);
                    reqs.push(req);
                }
            }
        }
        if !refused.is_empty() {
            // Answered to the client; at debug level, as a client could send many.
            tracing::debug!(
                refused = refused.len(),
                entries,
                "refused bad entries of a Batch message"
            );
        }
        let groups: Vec<Gid> = reqs.iter().map(|(g, _)| *g).collect();
        let answers = H::requests(&self.handler, reqs);
        assert_eq!(answers.len(), ids.len(), "one answer per request");
        for ((id, group), answer) in ids.into_iter().zip(groups).zip(answers) {
            self.answers.push(InFlight { id, group, answer });
        }
        Ok(refused)
    }

    /// The answers ready now besides `first`, each leaving the in-flight set.
    fn ready(&mut self, first: Answered) -> Vec<Answered> {
        let mut done = vec![first];
        while let Some(Some(more)) = self.answers.next().now_or_never() {
            done.push(more);
        }
        for (id, _, _) in &done {
            self.ids.remove(id);
        }
        done
    }
}

/// Writes `answers` as reply messages of at most [`BATCH_REPLY_BYTES_MAX`] each (bounded
/// by the Kv frame limit), with leader hints as the unary calls carry them
/// ([`crate::hint`]). False when the client is gone.
async fn send<H: Handler>(
    handler: &H,
    answers: Vec<Answered>,
    tx: &mpsc::Sender<Result<pb::KvBatchReply, Status>>,
) -> bool {
    let budget = BATCH_REPLY_BYTES_MAX.min(KV_FRAME_BYTES_MAX);
    let mut msg = pb::KvBatchReply::default();
    let mut bytes = 0;
    for (id, group, reply) in answers {
        let mut wire = convert::reply_to_wire(handler.node_id(), reply);
        if let Some(group) = group {
            crate::hint::fill_kv(&mut wire, |l| handler.member_addr(group, l));
        }
        let entry = pb::KvBatchReplyEntry {
            id,
            reply: Some(wire),
        };
        let size = reply_entry_bytes(&entry);
        if !msg.replies.is_empty() && bytes + size > budget {
            if tx.send(Ok(std::mem::take(&mut msg))).await.is_err() {
                return false;
            }
            bytes = 0;
        }
        bytes += size;
        msg.replies.push(entry);
    }
    msg.replies.is_empty() || tx.send(Ok(msg)).await.is_ok()
}

async fn run<H, S>(
    handler: Arc<H>,
    mut inbound: S,
    tx: mpsc::Sender<Result<pb::KvBatchReply, Status>>,
    in_flight_max: usize,
) where
    H: Handler,
    S: Stream<Item = Result<pb::KvBatch, Status>> + Unpin,
{
    let mut stream = BatchStream {
        handler,
        in_flight_max,
        ids: HashSet::new(),
        answers: FuturesUnordered::new(),
    };
    let mut reading = true;
    loop {
        let can_read = reading && stream.has_room();
        tokio::select! {
            msg = inbound.next(), if can_read => match msg {
                Some(Ok(batch)) => match stream.admit(batch) {
                    Ok(refused) => {
                        if !send(&*stream.handler, refused, &tx).await {
                            return;
                        }
                    }
                    Err(status) => {
                        tracing::debug!(%status, "ending a Batch stream");
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                },
                Some(Err(status)) => {
                    tracing::debug!(%status, "a Batch stream broke on the client's side");
                    reading = false;
                }
                None => reading = false,
            },
            Some(first) = stream.answers.next(), if !stream.answers.is_empty() => {
                let done = stream.ready(first);
                if !send(&*stream.handler, done, &tx).await {
                    return;
                }
            }
            else => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeStatus;
    use shardkv_kv::KvQuery;
    use shardkv_rsm::Request;
    use shardkv_types::NodeId;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use tokio::sync::oneshot;

    /// A handler that records each hand-off, answers a Get with its key and a write with
    /// Done; with `hold`, each answer waits until the test releases it.
    #[derive(Default)]
    struct Fake {
        handoffs: Mutex<Vec<usize>>,
        hold: bool,
        held: Mutex<Vec<oneshot::Sender<()>>>,
    }

    fn output(req: KvRequest) -> Result<KvOutput, Error> {
        match req {
            Request::Read(KvQuery::Get { key }) => Ok(KvOutput::Value(Some(key))),
            Request::Read(q) => Ok(KvOutput::Int(q.keys().count() as i64)),
            Request::Write { .. } => Ok(KvOutput::Done),
        }
    }

    impl Handler for Fake {
        fn node_id(&self) -> NodeId {
            NodeId(7)
        }

        async fn request(&self, _: Gid, req: KvRequest) -> Result<KvOutput, Error> {
            output(req)
        }

        fn requests(this: &Arc<Self>, reqs: Vec<(Gid, KvRequest)>) -> Vec<Answer> {
            this.handoffs.lock().unwrap().push(reqs.len());
            reqs.into_iter()
                .map(|(_, req)| {
                    let out = output(req);
                    if !this.hold {
                        return Box::pin(std::future::ready(out)) as Answer;
                    }
                    let (release, released) = oneshot::channel();
                    this.held.lock().unwrap().push(release);
                    Box::pin(async move {
                        let _ = released.await;
                        out
                    }) as Answer
                })
                .collect()
        }

        async fn status(&self) -> Result<NodeStatus, Error> {
            Err(Error::Busy)
        }

        fn raft_messages(&self, _: NodeId, _: Vec<shardkv_raft::Message>) {}
    }

    fn get(id: u64, key: &str) -> pb::KvBatchEntry {
        let req = Request::Read(KvQuery::Get {
            key: key.as_bytes().to_vec(),
        });
        entry_to_wire(id, Gid(0), req)
    }

    /// The answers of a finished stream, by id (an id answered twice keeps both).
    async fn answers(
        replies: impl Stream<Item = Result<pb::KvBatchReply, Status>>,
    ) -> BTreeMap<u64, Vec<Result<KvOutput, Error>>> {
        let mut by_id: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        let mut replies = std::pin::pin!(replies);
        while let Some(msg) = replies.next().await {
            for e in msg.expect("no stream error").replies {
                let (server, reply) =
                    convert::reply_from_wire(e.reply.expect("a reply")).expect("well-formed");
                assert_eq!(server, NodeId(7));
                by_id.entry(e.id).or_default().push(reply);
            }
        }
        by_id
    }

    fn value(key: &str) -> Result<KvOutput, Error> {
        Ok(KvOutput::Value(Some(key.as_bytes().to_vec())))
    }

    #[tokio::test]
    async fn the_requests_of_a_message_reach_the_handler_in_one_step_and_each_is_answered() {
        let fake = Arc::new(Fake::default());
        let mut entries: Vec<_> = (1..=100).map(|i| get(i, &format!("k{i}"))).collect();
        let put = Request::Write {
            client: shardkv_types::ClientId(9),
            seq: shardkv_types::Seq(1),
            retry: false,
            cmd: shardkv_kv::KvCommand::Put {
                key: b"p".to_vec(),
                value: b"v".to_vec(),
            },
        };
        entries.push(entry_to_wire(101, Gid(0), put));
        let inbound = tokio_stream::iter(vec![Ok(pb::KvBatch { entries })]);
        let got = answers(serve(fake.clone(), inbound)).await;
        assert_eq!(*fake.handoffs.lock().unwrap(), vec![101], "one hand-off");
        assert_eq!(got.len(), 101);
        for i in 1..=100 {
            assert_eq!(got[&i], vec![value(&format!("k{i}"))]);
        }
        assert_eq!(got[&101], vec![Ok(KvOutput::Done)]);
    }

    #[tokio::test]
    async fn a_bad_entry_is_answered_invalid_and_the_rest_and_the_stream_go_on() {
        let fake = Arc::new(Fake::default());
        let empty = pb::KvBatchEntry {
            id: 2,
            request: None,
        };
        let first = vec![get(1, "a"), empty, get(1, "again"), get(3, "b")];
        let inbound = tokio_stream::iter(vec![
            Ok(pb::KvBatch { entries: first }),
            Ok(pb::KvBatch {
                entries: vec![get(4, "c")],
            }),
        ]);
        let got = answers(serve(fake.clone(), inbound)).await;
        let invalid = |r: &Result<KvOutput, Error>| matches!(r, Err(Error::Invalid { .. }));
        assert_eq!(
            got[&1].len(),
            2,
            "the request and its duplicate: {:?}",
            got[&1]
        );
        assert!(got[&1].contains(&value("a")));
        assert!(got[&1].iter().any(invalid), "the duplicate id is refused");
        assert!(invalid(&got[&2][0]), "no request: {:?}", got[&2]);
        assert_eq!(got[&3], vec![value("b")]);
        assert_eq!(got[&4], vec![value("c")], "the stream goes on");
        assert_eq!(
            *fake.handoffs.lock().unwrap(),
            vec![2, 1],
            "bad entries never reach the handler"
        );
    }

    #[tokio::test]
    async fn a_message_over_the_cap_ends_the_stream_and_none_of_it_is_served() {
        let fake = Arc::new(Fake::default());
        let oversized: Vec<_> = (0..=BATCH_ENTRIES_MAX as u64)
            .map(|i| get(i, "x"))
            .collect();
        let inbound = tokio_stream::iter(vec![
            Ok(pb::KvBatch {
                entries: vec![get(1_000, "before")],
            }),
            Ok(pb::KvBatch { entries: oversized }),
            Ok(pb::KvBatch {
                entries: vec![get(2_000, "after")],
            }),
        ]);
        let mut replies = std::pin::pin!(serve(fake.clone(), inbound));
        let mut ended = None;
        while let Some(msg) = replies.next().await {
            if let Err(status) = msg {
                ended = Some(status);
            }
        }
        let status = ended.expect("the stream ends with a status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("at most 512"), "{status:?}");
        assert_eq!(
            *fake.handoffs.lock().unwrap(),
            vec![1],
            "nothing of it or after"
        );
    }

    /// Lets the spawned tasks run until they wait (a current-thread runtime: no clock).
    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn at_the_in_flight_cap_the_server_stops_reading_until_answers_go_out() {
        let fake = Arc::new(Fake {
            hold: true,
            ..Fake::default()
        });
        let full = |base: u64| pb::KvBatch {
            entries: (base..base + BATCH_ENTRIES_MAX as u64)
                .map(|i| get(i, "k"))
                .collect(),
        };
        let (client, inbound) = mpsc::channel(4);
        let (tx, mut replies) = mpsc::channel(REPLY_QUEUE);
        let cap = 2 * BATCH_ENTRIES_MAX;
        let stream = tokio_stream::wrappers::ReceiverStream::new(inbound);
        tokio::spawn(run(fake.clone(), stream, tx, cap));
        for m in 0..3 {
            client.send(Ok(full(m * 10_000))).await.expect("open");
        }
        settle().await;
        let handoffs = || fake.handoffs.lock().unwrap().clone();
        assert_eq!(handoffs(), vec![BATCH_ENTRIES_MAX; 2], "the third waits");
        // Answers go out: room again, and the third message is read.
        let released: Vec<_> = fake
            .held
            .lock()
            .unwrap()
            .drain(..BATCH_ENTRIES_MAX)
            .collect();
        for r in released {
            r.send(()).expect("waiting");
        }
        let mut answered = 0;
        while answered < BATCH_ENTRIES_MAX {
            answered += replies
                .recv()
                .await
                .expect("open")
                .expect("ok")
                .replies
                .len();
        }
        settle().await;
        assert_eq!(handoffs(), vec![BATCH_ENTRIES_MAX; 3]);
    }
}
