//! `PeerTransport`: outbound Raft traffic. One bounded queue and one sender task per peer;
//! the task keeps a client stream open to the peer's Raft service, reopening it with
//! exponential backoff when it breaks. The stream's body is the queue itself
//! ([`QueueStream`]): the HTTP/2 side takes what is queued, as one batch, straight from it
//! when it can send, so a message crosses no task between the node thread and the
//! connection besides the one that writes the stream.

use crate::connect_log::{ConnectLog, Say};
use crate::convert::encode_message;
use crate::pb::{self, raft_client::RaftClient};
use crate::{
    PEER_QUEUE_BYTES_MAX, PEER_QUEUE_MESSAGES_MAX, PeerIdentity, RAFT_BATCH_BYTES_MAX,
    RAFT_BATCH_MESSAGES_MAX, RAFT_FRAME_BYTES_MAX,
};
use shardkv_raft::Message;
use shardkv_types::NodeId;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc::{self, error::TrySendError};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Tunables of the peer transport.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// Messages queued per peer; when full, new messages are dropped.
    pub queue_messages_max: usize,
    pub connect_timeout: Duration,
    /// First wait after a failed connection; doubled on each failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Connect with TLS, presenting this member's certificate (`None`: plaintext).
    pub tls: Option<ClientTlsConfig>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            queue_messages_max: PEER_QUEUE_MESSAGES_MAX,
            connect_timeout: Duration::from_millis(500),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            tls: None,
        }
    }
}

/// Sends Raft messages to the other members of a group. `send` never blocks.
///
/// Dropping the transport ends every sender task once its queue is empty.
pub struct PeerTransport {
    me: NodeId,
    identity: PeerIdentity,
    /// Per peer: its queue, and the bytes ([`message_bytes`]) queued in it.
    queues: BTreeMap<NodeId, (mpsc::Sender<Message>, Arc<AtomicU64>)>,
    /// Messages dropped because a queue was full or the peer unknown.
    dropped: Arc<AtomicU64>,
    /// Failed connection attempts to any peer (a metric).
    connect_failures: Arc<AtomicU64>,
    /// Messages queued for a peer (a metric).
    sent: AtomicU64,
    /// What a sender task started later ([`PeerTransport::add_peer`]) needs.
    opts: TransportOptions,
    runtime: tokio::runtime::Handle,
    /// Each peer's address as its sender task dials it.
    addrs: BTreeMap<NodeId, String>,
}

impl PeerTransport {
    /// Starts one sender task per peer on `runtime`. `peers` maps each other member to its
    /// `host:port`; an entry for `me` is ignored. Every batch carries `identity`.
    pub fn start(
        me: NodeId,
        identity: PeerIdentity,
        peers: &BTreeMap<NodeId, String>,
        opts: TransportOptions,
        runtime: &tokio::runtime::Handle,
    ) -> PeerTransport {
        assert!(
            opts.queue_messages_max >= 1,
            "a peer queue holds at least one message"
        );
        assert_ne!(identity.cluster_id, 0, "cluster id 0 is reserved");
        let mut transport = PeerTransport {
            me,
            identity,
            queues: BTreeMap::new(),
            dropped: Arc::new(AtomicU64::new(0)),
            connect_failures: Arc::new(AtomicU64::new(0)),
            sent: AtomicU64::new(0),
            opts,
            runtime: runtime.clone(),
            addrs: BTreeMap::new(),
        };
        for (&peer, addr) in peers {
            transport.add_peer(peer, addr);
        }
        transport
    }

    /// Starts sending to `peer` at `addr` (a member added to the group), or, for a known
    /// peer at another address, redials it there (what was queued for the old address is
    /// dropped: Raft resends). `me` and an unchanged address are ignored.
    pub fn add_peer(&mut self, peer: NodeId, addr: &str) {
        if peer == self.me || self.addrs.get(&peer).is_some_and(|a| a == addr) {
            return;
        }
        self.remove_peer(peer);
        let (tx, rx) = mpsc::channel(self.opts.queue_messages_max);
        let queued = Arc::new(AtomicU64::new(0));
        let sender = PeerSender {
            queued: queued.clone(),
            me: self.me,
            identity: self.identity,
            peer,
            addr: addr.to_string(),
            opts: self.opts.clone(),
            dropped: self.dropped.clone(),
            connect_failures: self.connect_failures.clone(),
        };
        self.runtime.spawn(sender.run(rx));
        self.queues.insert(peer, (tx, queued));
        self.addrs.insert(peer, addr.to_string());
    }

    /// Stops sending to `peer` (a member removed from the group): its sender task ends once
    /// its queue is empty.
    pub fn remove_peer(&mut self, peer: NodeId) {
        self.queues.remove(&peer);
        self.addrs.remove(&peer);
    }

    /// The peers this transport sends to, with their addresses.
    pub fn peers(&self) -> &BTreeMap<NodeId, String> {
        &self.addrs
    }

    /// Queues `m` for `m.to`; drops it if that queue is full or the peer is unknown.
    pub fn send(&self, m: Message) {
        debug_assert_eq!(m.from, self.me, "messages leave from this node");
        let Some((queue, queued)) = self.queues.get(&m.to) else {
            // Logged once per member by the shell (a member whose address it does not know).
            tracing::debug!(node = %self.me, to = %m.to, "dropping a message to an unknown peer");
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let bytes = message_bytes(&m);
        if queued.load(Ordering::Acquire).saturating_add(bytes) > PEER_QUEUE_BYTES_MAX {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queued.fetch_add(bytes, Ordering::AcqRel);
        match queue.try_send(m) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                queued.fetch_sub(bytes, Ordering::AcqRel);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The cluster and group this transport's batches name.
    pub fn identity(&self) -> PeerIdentity {
        self.identity
    }

    /// Failed connection attempts to any peer so far (each is retried with backoff).
    pub fn connect_failures(&self) -> u64 {
        self.connect_failures.load(Ordering::Relaxed)
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages queued for peers so far (some may still be dropped on the way: see
    /// [`PeerTransport::dropped`]).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// How a stream to a peer ended.
enum StreamEnd {
    /// The transport was dropped: stop.
    Closed,
    /// The connection or stream failed: reconnect.
    Broken,
}

/// The task that feeds one peer.
struct PeerSender {
    me: NodeId,
    identity: PeerIdentity,
    peer: NodeId,
    addr: String,
    opts: TransportOptions,
    dropped: Arc<AtomicU64>,
    connect_failures: Arc<AtomicU64>,
    /// The bytes queued for this peer ([`message_bytes`]), released as messages leave.
    queued: Arc<AtomicU64>,
}

impl PeerSender {
    async fn run(self, rx: mpsc::Receiver<Message>) {
        let rx = Arc::new(Mutex::new(rx));
        let mut backoff = self.opts.backoff_min;
        let mut log = ConnectLog::default();
        loop {
            // A new endpoint each time: a name is resolved again on every attempt.
            match self.connect().await {
                Ok(channel) => {
                    tracing::debug!(node = %self.me, peer = %self.peer, "peer stream open");
                    if let Say::Reachable { failures } = log.connected() {
                        tracing::info!(node = %self.me, peer = %self.peer, addr = %self.addr,
                            failures, "peer reachable again");
                    }
                    backoff = self.opts.backoff_min;
                    if let StreamEnd::Closed = self.pump(channel, &rx).await {
                        return;
                    }
                }
                Err(e) => {
                    self.connect_failures.fetch_add(1, Ordering::Relaxed);
                    if let Say::Unreachable { failures } = log.failed(std::time::Instant::now()) {
                        tracing::warn!(node = %self.me, peer = %self.peer, addr = %self.addr,
                            error = %crate::connect_log::chain(&e),
                            failures_since_last_report = failures,
                            "cannot connect to peer (a name is resolved again on every \
                             attempt); retrying with backoff");
                    }
                    backoff = (backoff * 2).min(self.opts.backoff_max);
                }
            }
            // What queued up while the peer was unreachable is stale; Raft resends.
            {
                let mut rx = lock(&rx);
                let stale = self.drain(&mut rx);
                self.dropped.fetch_add(stale, Ordering::Relaxed);
                if rx.is_closed() && rx.is_empty() {
                    return;
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }

    async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        let uri = crate::tls::endpoint_uri(&self.addr, self.opts.tls.is_some());
        let mut endpoint = Endpoint::from_shared(uri)?;
        if let Some(tls) = &self.opts.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        endpoint
            .connect_timeout(self.opts.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(3))
            .connect()
            .await
    }

    /// Streams the queue to the peer until the stream breaks or the queue closes.
    async fn pump(&self, channel: Channel, rx: &Arc<Mutex<mpsc::Receiver<Message>>>) -> StreamEnd {
        let closed = Arc::new(AtomicBool::new(false));
        let body = QueueStream {
            rx: rx.clone(),
            closed: closed.clone(),
            me: self.me,
            peer: self.peer,
            identity: self.identity,
            dropped: self.dropped.clone(),
            queued: self.queued.clone(),
        };
        let mut client = RaftClient::new(channel).max_encoding_message_size(RAFT_FRAME_BYTES_MAX);
        let end = client.send(body).await;
        if closed.load(Ordering::Acquire) {
            return StreamEnd::Closed;
        }
        tracing::debug!(node = %self.me, peer = %self.peer, status = ?end.err(),
            "peer stream broke");
        StreamEnd::Broken
    }

    /// Empties `rx` without waiting; returns how many messages it held.
    fn drain(&self, rx: &mut mpsc::Receiver<Message>) -> u64 {
        let mut n = 0;
        while let Ok(m) = rx.try_recv() {
            self.queued.fetch_sub(message_bytes(&m), Ordering::AcqRel);
            n += 1;
        }
        n
    }
}

/// The peer's queue, locked by the one stream that sends it at a time (a broken stream's
/// body may linger a moment after the next one opened: they share the queue, and each
/// message goes out at most once).
fn lock(rx: &Mutex<mpsc::Receiver<Message>>) -> std::sync::MutexGuard<'_, mpsc::Receiver<Message>> {
    // A poisoned lock only means a panic elsewhere; the receiver itself is intact.
    rx.lock().unwrap_or_else(|e| e.into_inner())
}

/// The body of the stream to one peer: each item is what the queue holds when the HTTP/2
/// side asks for more (at least one message, within [`RAFT_BATCH_MESSAGES_MAX`] and
/// [`RAFT_BATCH_BYTES_MAX`]), encoded. It ends when the transport is dropped and the queue
/// is empty, and says so in `closed`.
struct QueueStream {
    rx: Arc<Mutex<mpsc::Receiver<Message>>>,
    closed: Arc<AtomicBool>,
    me: NodeId,
    peer: NodeId,
    identity: PeerIdentity,
    dropped: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
}

impl QueueStream {
    /// `m` left the queue: its bytes no longer count.
    fn took(&self, m: Message) -> Message {
        self.queued.fetch_sub(message_bytes(&m), Ordering::AcqRel);
        m
    }

    /// `first` and whatever else is queued, within the batch bounds.
    fn batch(&self, first: Message, rx: &mut mpsc::Receiver<Message>) -> pb::RaftBatch {
        let mut messages = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            let frame = encode_message(&m);
            if frame.len() + 64 > RAFT_FRAME_BYTES_MAX {
                tracing::warn!(node = %self.me, peer = %self.peer, kind = m.kind(),
                    bytes = frame.len(), "dropping a raft message larger than a frame");
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                bytes += frame.len();
                messages.push(frame);
            }
            if messages.len() < RAFT_BATCH_MESSAGES_MAX && bytes < RAFT_BATCH_BYTES_MAX {
                next = rx.try_recv().ok().map(|m| self.took(m));
            }
        }
        pb::RaftBatch {
            from: self.me.0,
            messages,
            cluster_id: self.identity.cluster_id,
            group_id: self.identity.group_id.0,
        }
    }
}

impl tokio_stream::Stream for QueueStream {
    type Item = pb::RaftBatch;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<pb::RaftBatch>> {
        let this = self.get_mut();
        let rx = this.rx.clone();
        let mut rx = lock(&rx);
        loop {
            return match rx.poll_recv(cx) {
                Poll::Ready(Some(m)) => {
                    let first = this.took(m);
                    let batch = this.batch(first, &mut rx);
                    if batch.messages.is_empty() {
                        // Only oversized messages, all dropped: wait for the next.
                        continue;
                    }
                    Poll::Ready(Some(batch))
                }
                Poll::Ready(None) => {
                    this.closed.store(true, Ordering::Release);
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

/// About how many bytes a Raft message holds: its entries or snapshot chunk, and 64 for the
/// rest. What the peer queues and the node inbox count against their byte bounds.
pub fn message_bytes(m: &Message) -> u64 {
    use shardkv_raft::Body;
    let payload = match &m.body {
        Body::AppendEntries { entries, .. } => entries.iter().map(|e| e.size_bytes()).sum(),
        Body::InstallSnapshot { data, .. } => data.len(),
        _ => 0,
    };
    payload as u64 + 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardkv_types::{Entry, EntryKind, Gid, LogIndex, Term};

    fn append(to: NodeId, bytes: usize) -> Message {
        Message {
            from: NodeId(1),
            to,
            term: Term(1),
            body: shardkv_raft::Body::AppendEntries {
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                entries: vec![Entry {
                    term: Term(1),
                    index: LogIndex(1),
                    kind: EntryKind::Normal,
                    data: vec![0; bytes],
                }],
                leader_commit: LogIndex(0),
                seq: 1,
            },
        }
    }

    #[test]
    fn a_peer_queue_is_bounded_in_bytes_as_well_as_in_messages() {
        // A runtime that is never driven: the sender task never takes from the queue.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let peers = BTreeMap::from([(NodeId(2), "127.0.0.1:1".to_string())]);
        let identity = PeerIdentity {
            cluster_id: 1,
            group_id: Gid(1),
        };
        let t = PeerTransport::start(
            NodeId(1),
            identity,
            &peers,
            TransportOptions::default(),
            rt.handle(),
        );
        let each = 4 << 20;
        let fit = (PEER_QUEUE_BYTES_MAX / message_bytes(&append(NodeId(2), each))) as usize;
        assert!(fit < PEER_QUEUE_MESSAGES_MAX, "the byte bound comes first");
        for _ in 0..fit {
            t.send(append(NodeId(2), each));
        }
        assert_eq!(t.dropped(), 0);
        t.send(append(NodeId(2), each));
        assert_eq!(t.dropped(), 1, "past the byte bound: dropped");
        t.send(append(NodeId(2), 0));
        assert_eq!(t.dropped(), 1, "a small message still fits");
        assert_eq!(
            t.sent(),
            fit as u64 + 1,
            "queued messages are counted as sent"
        );
        t.send(append(NodeId(9), 0));
        assert_eq!(
            (t.sent(), t.dropped()),
            (fit as u64 + 1, 2),
            "an unknown peer"
        );
    }

    #[test]
    fn a_peer_whose_name_does_not_resolve_is_retried_not_fatal() {
        // Goal: a member named by DNS that does not resolve (yet) is dialled again and
        // again, with backoff, and the transport keeps working for the others. Method: a
        // transport with an unresolvable peer name; wait (bounded) for several failed
        // attempts; sending to it stays a non-blocking queue push. The log line per
        // attempt is rate-limited (`connect_log`'s test).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let peers = BTreeMap::from([(NodeId(2), "no-such-peer.invalid:7001".to_string())]);
        let identity = PeerIdentity {
            cluster_id: 1,
            group_id: Gid(1),
        };
        let opts = TransportOptions {
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
            ..TransportOptions::default()
        };
        let t = PeerTransport::start(NodeId(1), identity, &peers, opts, rt.handle());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while t.connect_failures() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} attempts in 60 s",
                t.connect_failures()
            );
            t.send(append(NodeId(2), 0));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(t.peers()[&NodeId(2)], "no-such-peer.invalid:7001");
    }

    #[test]
    fn the_stream_body_takes_what_is_queued_as_one_batch_and_ends_with_the_queue() {
        use tokio_stream::StreamExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (tx, rx) = mpsc::channel(16);
        let queued = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let identity = PeerIdentity {
            cluster_id: 7,
            group_id: Gid(3),
        };
        let mut body = QueueStream {
            rx: Arc::new(Mutex::new(rx)),
            closed: closed.clone(),
            me: NodeId(1),
            peer: NodeId(2),
            identity,
            dropped: Arc::new(AtomicU64::new(0)),
            queued: queued.clone(),
        };
        let sent = [append(NodeId(2), 10), append(NodeId(2), 20)];
        for m in &sent {
            queued.fetch_add(message_bytes(m), Ordering::AcqRel);
            tx.try_send(m.clone()).expect("room");
        }
        let batch = rt.block_on(body.next()).expect("a batch");
        assert_eq!((batch.from, batch.cluster_id, batch.group_id), (1, 7, 3));
        let got: Vec<Message> = batch
            .messages
            .iter()
            .map(|f| crate::convert::decode_message(f).expect("decodes"))
            .collect();
        assert_eq!(got, sent, "everything queued, in order, in one batch");
        assert_eq!(
            queued.load(Ordering::Acquire),
            0,
            "their bytes left the queue"
        );
        assert!(!closed.load(Ordering::Acquire));
        drop(tx);
        assert!(rt.block_on(body.next()).is_none(), "the transport is gone");
        assert!(closed.load(Ordering::Acquire), "and the sender is told so");
    }
}
