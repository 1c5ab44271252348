//! The Redis Cluster front end of a server process (`--redis-listen`, docs/redis.md): a
//! RESP port that `redis-cli -c`, `redis-benchmark --cluster` and Redis client libraries
//! use, with shardkv's semantics (every command linearizable, every write replicated to a
//! majority and fsynced before it is answered).
//!
//! - Connections are accepted under the same bounds as the gRPC port's
//!   ([`crate::listen`]: `--max-connections`, the idle and handshake timeouts, a refused
//!   connection closed at once), counted separately from them.
//! - Each connection is served by `shardkv_redis::serve` with a [`ServerBackend`]: a client
//!   session of the cluster of its own while it is open (through the controller when the
//!   process hosts shard groups, else its one KV group), so a write retried inside shardkv
//!   applies once; sessions are pooled across connections ([`SessionPool`]). A Redis client
//!   that retries on its own after a dropped connection sends a new write.
//! - A key whose group leader is in this process (the usual case: cluster clients follow
//!   `MOVED` to the leader's process) is served in process, without a connection
//!   (`shardkv_client::in_process`, [`crate::in_process`]); other attempts travel by gRPC.
//! - The cluster view (which process masters which slots) is kept by a [`ViewPoller`]: a
//!   process masters the slots of the shards whose group leader it hosts; other keys are
//!   answered `MOVED` to the process hosting their group's leader, as that process
//!   advertises itself in its status (`StatusReply.redis_addr`).
//! - Plaintext only: a member with TLS on refuses `--redis-listen` (config), since a
//!   plaintext port would let in clients without a certificate. With
//!   `--redis-password-file` a connection must `AUTH` before anything else
//!   (`shardkv_redis::auth`).
//! - A process without a RESP port answers Status with no `redis_addr` and is no node of
//!   the view; slots whose group leader it hosts are answered `CLUSTERDOWN` by the others
//!   until leadership moves.

mod backend;
mod poller;
mod sessions;

pub use backend::ServerBackend;
pub use poller::{Layout, POLL_EVERY, ViewPoller, split_addr};
pub use sessions::{IDLE_SESSIONS_MAX, SessionPool};

use crate::config::{CTRL_GID, ServerConfig, Service};
use crate::front::KvGroup;
use crate::in_process::OwnKv;
use crate::listen::{self, ListenOptions, StepDownSignal};
use anyhow::{Result, bail};
use shardkv_client::in_process::Local;
use shardkv_client::{Client, ClientOptions, ClientTlsConfig, CtrlClient, Dial, Gid};
use shardkv_redis::{Access, ClusterView, Limits, Password, Session};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// The Redis version clients are told: the command set and replies this front end follows.
pub const REDIS_VERSION: &str = "7.0.0";
/// How long one Redis command may take over all its attempts (a leader election, a shard
/// move): past it, the client is answered with the last error.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection of the process shares.
pub struct RedisShared {
    /// The client sessions of the process's own cluster; each connection takes one.
    sessions: SessionPool,
    /// The KV and shard groups hosted here (for DBSIZE: the keys of those it leads).
    groups: Vec<KvGroup>,
    view: watch::Receiver<Arc<ClusterView>>,
    /// The keys of the shard groups this process leads, as the poller last learned them.
    keys: Arc<Mutex<Option<u64>>>,
    poke: Arc<Notify>,
    limits: Limits,
    /// What a connection must give before any other command (`AUTH`).
    password: Option<Arc<Password>>,
    port: u16,
    started: Instant,
    /// Connections open now.
    connected: AtomicUsize,
    max_clients: usize,
    next_id: AtomicU64,
}

/// The address clients reach this process's RESP port at: the listening address, or for an
/// unspecified one (`0.0.0.0`) the host of this member's `--peers` entry.
pub fn advertised(listen: SocketAddr, own_peer: &str) -> (String, u16) {
    let host = if listen.ip().is_unspecified() {
        split_addr(own_peer).map_or_else(|| listen.ip().to_string(), |(h, _)| h)
    } else {
        listen.ip().to_string()
    };
    (host, listen.port())
}

/// Where the process's data lives, for its Redis clients: its shard groups (through the
/// controller) or its one KV group.
fn layout_of(cfg: &ServerConfig, opts: &ClientOptions) -> Result<(Client, Layout)> {
    let shard = cfg.groups.values().any(|s| *s == Service::Shard);
    let kv: Vec<Gid> = cfg
        .groups
        .iter()
        .filter(|(_, s)| **s == Service::Kv)
        .map(|(g, _)| *g)
        .collect();
    let e = |e: shardkv_client::Error| anyhow::anyhow!("the Redis port's client: {e}");
    if shard {
        let client = Client::connect_sharded(&cfg.ctrl, opts.clone()).map_err(e)?;
        let ctrl = CtrlClient::connect_with(&cfg.ctrl, opts.clone()).map_err(e)?;
        return Ok((client, Layout::Sharded(Box::new(ctrl))));
    }
    let [gid] = kv[..] else {
        bail!(
            "--redis-listen needs shard groups or exactly one KV group in --groups (this \
             process hosts {} KV groups)",
            kv.len()
        );
    };
    assert_ne!(gid, CTRL_GID, "a KV group is never the controller's");
    let peers: Vec<String> = cfg
        .peers
        .iter()
        .map(|(id, a)| format!("{}={a}", id.0))
        .collect();
    let opts = ClientOptions {
        group: gid,
        ..opts.clone()
    };
    let client = Client::connect_with(&peers, opts).map_err(e)?;
    Ok((client, Layout::Single(gid)))
}

/// The running front end: abort to stop accepting.
pub struct RedisFront {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
    poller: JoinHandle<()>,
}

impl RedisFront {
    /// Starts serving `listener` (bound to `cfg.redis_listen`) and polling the view.
    pub fn start(
        cfg: &ServerConfig,
        listener: TcpListener,
        limits: ListenOptions,
        step_down: Arc<StepDownSignal>,
        tls: Option<ClientTlsConfig>,
        groups: Vec<KvGroup>,
        own: Arc<OwnKv>,
    ) -> Result<RedisFront> {
        let addr = listener.local_addr()?;
        // A key whose group leader is in this process (the usual case: clients follow
        // MOVED to the leader's process) is served without a connection.
        let opts = ClientOptions {
            op_timeout: OP_TIMEOUT,
            tls: tls.clone(),
            in_process: Some(Local(own.clone())),
            ..ClientOptions::default()
        };
        let (client, layout) = layout_of(cfg, &opts)?;
        let own_peer = cfg.peers.get(&cfg.id).map_or("", String::as_str);
        let (tx, rx) = watch::channel(Arc::new(ClusterView::new(Vec::new(), &[None], 0)));
        let poke = Arc::new(Notify::new());
        let keys = Arc::new(Mutex::new(None));
        let poller = ViewPoller {
            cluster_id: cfg.cluster_id,
            my_addr: advertised(addr, own_peer),
            my_grpc: own.addrs().to_vec(),
            peers: cfg.peers.clone(),
            layout,
            dial: Dial {
                timeout: poller::POLL_CALL_TIMEOUT,
                tls,
            },
            tx,
            poke: poke.clone(),
            ctrl_failing: false,
            keys: keys.clone(),
        };
        let shared = Arc::new(RedisShared {
            sessions: SessionPool::new(client),
            groups,
            view: rx,
            keys,
            poke,
            limits: Limits::default(),
            password: cfg.redis_password.clone(),
            port: addr.port(),
            started: Instant::now(),
            connected: AtomicUsize::new(0),
            max_clients: limits.max_connections,
            next_id: AtomicU64::new(1),
        });
        let poller = tokio::spawn(poller.run());
        let accept = tokio::spawn(accept(listener, limits, step_down, shared));
        Ok(RedisFront {
            addr,
            accept,
            poller,
        })
    }

    /// Stops accepting and polling (open connections end with the runtime).
    pub fn stop(&self) {
        self.accept.abort();
        self.poller.abort();
    }
}

async fn accept(
    listener: TcpListener,
    limits: ListenOptions,
    step_down: Arc<StepDownSignal>,
    shared: Arc<RedisShared>,
) {
    let mut incoming = listen::incoming(listener, limits, step_down).into_inner();
    while let Some(conn) = incoming.recv().await {
        let Ok(conn) = conn else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            shared.connected.fetch_add(1, Ordering::Relaxed);
            let mut backend = ServerBackend::new(shared.clone(), shared.sessions.take());
            let mut session = Session::with_access(id, Access::new(shared.password.clone()));
            let ended =
                shardkv_redis::serve(conn, &mut session, &mut backend, &shared.limits).await;
            shared.sessions.put(backend.into_session());
            shared.connected.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(client = id, ?ended, "redis connection ended");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_advertises_the_peer_host() {
        let any: SocketAddr = "0.0.0.0:9001".parse().expect("addr");
        assert_eq!(
            advertised(any, "node1.example:7001"),
            ("node1.example".into(), 9001)
        );
        let lo: SocketAddr = "127.0.0.1:9001".parse().expect("addr");
        assert_eq!(
            advertised(lo, "node1.example:7001"),
            ("127.0.0.1".into(), 9001)
        );
    }
}
