//! The peer transport against a real Raft service on loopback: messages sent arrive in
//! order, a peer that comes up late (or comes back after going away) is reached once it
//! listens, and traffic of another cluster or group is dropped and counted. Outcomes are checked with generous bounded waits, never with timing.

use shardkv_kv::{KvOutput, KvRequest};
use shardkv_net::{
    Handler, NodeStatus, OneGroup, PeerIdentity, PeerTransport, RaftDrops, RaftService,
    TransportOptions, router,
};
use shardkv_raft::{Body, Message};
use shardkv_rsm::Error;
use shardkv_types::{Gid, NodeId, Term};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Records the Raft messages it receives; refuses client requests.
#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<Message>>,
}

impl Handler for Recorder {
    fn node_id(&self) -> NodeId {
        NodeId(2)
    }

    async fn request(&self, _: shardkv_types::Gid, _: KvRequest) -> Result<KvOutput, Error> {
        Err(Error::Unavailable {
            reason: "test".into(),
        })
    }

    async fn status(&self) -> Result<NodeStatus, Error> {
        Err(Error::Unavailable {
            reason: "test".into(),
        })
    }

    fn raft_messages(&self, _: NodeId, msgs: Vec<Message>) {
        self.got.lock().expect("lock").extend(msgs);
    }
}

impl Recorder {
    fn terms(&self) -> Vec<u64> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .map(|m| m.term.0)
            .collect()
    }
}

fn msg(term: u64) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(term),
        body: Body::HeartbeatResponse { read_seq: term },
    }
}

/// A peer's service on its own runtime, so stopping it closes every connection as a
/// process exit would.
struct Peer {
    rt: tokio::runtime::Runtime,
    rec: Arc<Recorder>,
    drops: Arc<RaftDrops>,
}

/// The identity of the test group.
const IDENT: PeerIdentity = PeerIdentity {
    cluster_id: 0xc1,
    group_id: Gid(1),
};

impl Peer {
    fn start(addr: SocketAddr) -> Peer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let rec = Arc::new(Recorder::default());
        let listener = rt.block_on(TcpListener::bind(addr)).expect("bind");
        let h = rec.clone();
        let raft = RaftService::new(
            IDENT.cluster_id,
            Arc::new(OneGroup {
                group: IDENT.group_id,
                handler: rec.clone(),
            }),
        );
        let drops = raft.drops();
        rt.spawn(async move {
            let mut b = tonic::transport::Server::builder();
            let _ = router(&mut b, h, raft)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Peer { rt, rec, drops }
    }

    fn stop(self) {
        self.rt.shutdown_timeout(Duration::from_secs(5));
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A transport from node 1 to node 2 at `addr`, on its own runtime.
fn transport_to(addr: SocketAddr) -> (tokio::runtime::Runtime, PeerTransport) {
    transport_as(addr, IDENT)
}

/// A transport from node 1 of `identity` to node 2 at `addr`.
fn transport_as(
    addr: SocketAddr,
    identity: PeerIdentity,
) -> (tokio::runtime::Runtime, PeerTransport) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let peers = BTreeMap::from([(NodeId(2), addr.to_string())]);
    let t = PeerTransport::start(
        NodeId(1),
        identity,
        &peers,
        TransportOptions::default(),
        rt.handle(),
    );
    (rt, t)
}

/// Goal: messages queued for a listening peer all arrive, in order. Method: 500 messages
/// through one transport to a recording service.
#[test]
fn queued_messages_arrive_in_order() {
    let addr = free_addr();
    let peer = Peer::start(addr);
    let (_rt, t) = transport_to(addr);
    for term in 1..=500 {
        t.send(msg(term));
    }
    wait_for("500 messages", || peer.rec.terms().len() == 500);
    assert_eq!(peer.rec.terms(), (1..=500).collect::<Vec<_>>());
    assert_eq!(t.dropped(), 0);
    peer.stop();
}

/// Goal: a peer that is down is reached once it listens, and again after it restarts.
/// Method: send while nothing listens, start the service, keep sending until a message
/// arrives; stop the service (closing its connections) and start it again on the same port.
#[test]
fn a_peer_that_comes_up_late_or_comes_back_is_reached() {
    let addr = free_addr();
    let (_rt, t) = transport_to(addr);
    t.send(msg(1));
    for round in 0..2u64 {
        let peer = Peer::start(addr);
        let mut term = 100 * (round + 1);
        wait_for(&format!("a message in round {round}"), || {
            term += 1;
            t.send(msg(term));
            !peer.rec.terms().is_empty()
        });
        peer.stop();
    }
}

/// Goal: a peer of another cluster or another group is never heard, only counted. Method:
/// transports stamped with another cluster id and another group id send to a listening
/// service until their batches are counted as dropped; then the right identity gets through.
#[test]
fn traffic_of_another_cluster_or_group_is_dropped_and_counted() {
    let addr = free_addr();
    let peer = Peer::start(addr);
    let other_cluster = PeerIdentity {
        cluster_id: 0xc2,
        ..IDENT
    };
    let other_group = PeerIdentity {
        group_id: Gid(2),
        ..IDENT
    };
    for (identity, what) in [(other_cluster, "cluster"), (other_group, "group")] {
        let (_rt, t) = transport_as(addr, identity);
        let mut term = 0;
        wait_for(&format!("a batch of another {what} to be dropped"), || {
            term += 1;
            t.send(msg(term));
            let c = peer.drops.counts();
            match what {
                "cluster" => c.wrong_cluster_batches > 0,
                _ => c.wrong_group_batches > 0,
            }
        });
    }
    assert!(
        peer.rec.terms().is_empty(),
        "nothing of another identity is delivered"
    );
    let (_rt, t) = transport_to(addr);
    wait_for("a batch of the right identity", || {
        t.send(msg(1));
        !peer.rec.terms().is_empty()
    });
    peer.stop();
}
