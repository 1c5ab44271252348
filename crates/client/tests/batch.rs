//! The client library's Batch stream against in-test Kv servers over real gRPC: requests of
//! concurrent sessions share messages, a stream the server breaks fails its requests as
//! lost answers (the write is resent with its sequence number, marked as a possible
//! retry), and a server without Batch is called unary.

use shardkv_client::{Client, ClientOptions};
use shardkv_kv::KvOutput;
use shardkv_net::pb::kv_server::{Kv, KvServer};
use shardkv_net::{convert, pb};
use shardkv_types::NodeId;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// How a fake server treats Batch streams.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Like a build from before Batch: `UNIMPLEMENTED`.
    NoBatch,
    /// The first stream reads one message and breaks without answering; later ones serve.
    BreakFirst,
    /// Every stream serves.
    Serve,
}

/// A write as the fake server saw it: how it came, its sequence number, `first_attempt`.
type Seen = (&'static str, u64, bool);

#[derive(Clone)]
struct Fake {
    mode: Mode,
    streams: Arc<Mutex<usize>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Entries per Batch message received.
    messages: Arc<Mutex<Vec<usize>>>,
}

fn done() -> pb::KvReply {
    convert::reply_to_wire(NodeId(1), Ok(KvOutput::Done))
}

fn answer(e: &pb::KvBatchEntry) -> pb::KvReply {
    use pb::kv_batch_entry::Request as R;
    match &e.request {
        Some(R::Get(g)) => {
            convert::reply_to_wire(NodeId(1), Ok(KvOutput::Value(Some(g.key.clone()))))
        }
        _ => done(),
    }
}

impl Fake {
    fn new(mode: Mode) -> Fake {
        Fake {
            mode,
            streams: Arc::default(),
            seen: Arc::default(),
            messages: Arc::default(),
        }
    }

    fn record(&self, how: &'static str, seq: u64, first_attempt: bool) {
        self.seen.lock().unwrap().push((how, seq, first_attempt));
    }

    fn record_entries(&self, batch: &pb::KvBatch) {
        use pb::kv_batch_entry::Request as R;
        self.messages.lock().unwrap().push(batch.entries.len());
        for e in &batch.entries {
            if let Some(R::Put(p)) = &e.request {
                self.record("batch", p.seq, p.first_attempt);
            }
        }
    }
}

type Replies = Pin<Box<dyn Stream<Item = Result<pb::KvBatchReply, Status>> + Send>>;

#[tonic::async_trait]
impl Kv for Fake {
    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::KvReply>, Status> {
        let key = r.into_inner().key;
        let reply = convert::reply_to_wire(NodeId(1), Ok(KvOutput::Value(Some(key))));
        Ok(Response::new(reply))
    }

    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::KvReply>, Status> {
        let r = r.into_inner();
        self.record("unary", r.seq, r.first_attempt);
        Ok(Response::new(done()))
    }

    async fn append(&self, _: Request<pb::AppendRequest>) -> Result<Response<pb::KvReply>, Status> {
        Ok(Response::new(done()))
    }

    async fn delete(&self, _: Request<pb::DeleteRequest>) -> Result<Response<pb::KvReply>, Status> {
        Ok(Response::new(done()))
    }

    async fn cas(&self, _: Request<pb::CasRequest>) -> Result<Response<pb::KvReply>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn op(&self, _: Request<pb::OpRequest>) -> Result<Response<pb::KvReply>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn change_membership(
        &self,
        _: Request<pb::MembershipChange>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    type BatchStream = Replies;

    async fn batch(&self, r: Request<Streaming<pb::KvBatch>>) -> Result<Response<Replies>, Status> {
        let first_stream = {
            let mut n = self.streams.lock().unwrap();
            *n += 1;
            *n == 1
        };
        if self.mode == Mode::NoBatch {
            return Err(Status::unimplemented("no Batch here"));
        }
        let breaks = self.mode == Mode::BreakFirst && first_stream;
        let mut inbound = r.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(batch)) = inbound.next().await {
                fake.record_entries(&batch);
                if breaks {
                    let _ = tx.send(Err(Status::internal("stream reset"))).await;
                    return;
                }
                let replies = batch
                    .entries
                    .iter()
                    .map(|e| pb::KvBatchReplyEntry {
                        id: e.id,
                        reply: Some(answer(e)),
                    })
                    .collect();
                if tx.send(Ok(pb::KvBatchReply { replies })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn serve(fake: Fake) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tonic::transport::Server::builder()
        .add_service(KvServer::new(fake))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr
}

fn client(addr: SocketAddr) -> Client {
    let opts = ClientOptions {
        op_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    Client::connect_with(&[addr.to_string()], opts).expect("valid endpoints")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_resends_the_write_with_its_sequence_number_as_a_possible_retry() {
    let fake = Fake::new(Mode::BreakFirst);
    let mut c = client(serve(fake.clone()).await);
    c.put("k", "v").await.expect("applied on the second stream");
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], ("batch", 1, true), "the first attempt");
    assert_eq!(
        seen[1],
        ("batch", 1, false),
        "the same write, on a new stream, as a retry"
    );
    assert_eq!(
        *fake.streams.lock().unwrap(),
        2,
        "the broken stream was replaced"
    );
    c.put("k", "w").await.expect("the new stream serves");
    assert_eq!(fake.seen.lock().unwrap()[2], ("batch", 2, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_batch_is_called_unary() {
    let fake = Fake::new(Mode::NoBatch);
    let mut c = client(serve(fake.clone()).await);
    c.put("k", "v").await.expect("served unary");
    assert_eq!(c.get("k").await.expect("served unary"), Some(b"k".to_vec()));
    c.put("k", "w").await.expect("served unary");
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![("unary", 1, true), ("unary", 2, true)],
        "sent once each"
    );
    assert_eq!(
        *fake.streams.lock().unwrap(),
        1,
        "asked once, then remembered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_messages_and_each_gets_its_own_answer() {
    let fake = Fake::new(Mode::Serve);
    let root = client(serve(fake.clone()).await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut c = root.session();
        tasks.push(tokio::spawn(async move {
            for j in 0..20 {
                let key = format!("k{i}-{j}");
                let got = c.get(key.clone()).await.expect("answered");
                assert_eq!(got, Some(key.into_bytes()), "its own answer");
            }
        }));
    }
    for t in tasks {
        t.await.expect("session ran");
    }
    let messages = fake.messages.lock().unwrap().clone();
    assert_eq!(messages.iter().sum::<usize>(), 64 * 20);
    assert_eq!(
        *fake.streams.lock().unwrap(),
        1,
        "one stream for every session"
    );
    // How much was coalesced depends on scheduling (the unit tests check that what is
    // queued goes in one message); shown, not asserted.
    eprintln!("{} requests in {} messages", 64 * 20, messages.len());
}
