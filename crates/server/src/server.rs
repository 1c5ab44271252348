//! `run`: one member from configuration to shutdown. Checks the data directory's identity
//! (cluster, group, voters), opens storage, starts the node thread,
//! the peer transport and the gRPC port, and stops them in order on the shutdown signal.

use crate::config::ServerConfig;
use crate::driver::{self, DriverOptions};
use crate::handler::{INBOX_ITEMS_MAX, Inbound, NodeHandler};
use crate::node::Node;
use anyhow::{Context, Result, anyhow};
use shardkv_kv::{KvReplica, KvStore};
use shardkv_net::{OneGroup, PeerTransport, RaftDrops, RaftService, TransportOptions};
use shardkv_raft::{Config, Restored};
use shardkv_rsm::ReplicaOptions;
use shardkv_storage::{FsDisk, Identity, IdentityCheck, RaftStore};
use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tracing::Instrument;

/// How long in-flight RPCs get to finish after the node stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Runs one member until `shutdown` resolves (graceful: `Ok`) or a fatal error (`Err`; the
/// caller exits non-zero). Must run inside a multi-threaded tokio runtime.
pub async fn run(cfg: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let span = tracing::info_span!("node", id = cfg.id.0);
    serve(cfg, shutdown, span.clone()).instrument(span).await
}

async fn serve(
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
    span: tracing::Span,
) -> Result<()> {
    let (identity, checked) = check_identity(&cfg)?;
    let (store, restored) = open_storage(&cfg)?;
    // Logged only once storage is open: nothing is logged before the data directory is
    // complete (a member whose stderr is gone dies at its first log line).
    log_identity(&identity, checked);
    let voters = cfg.peers.keys().copied().collect();
    let opts = ReplicaOptions {
        raft_state_bytes_max: cfg.max_raft_state,
        ..ReplicaOptions::default()
    };
    let rc = Config::new(cfg.id, voters);
    let replica = KvReplica::new(rc, restored, random_seed(), opts, KvStore::default())
        .map_err(|e| anyhow!("cannot restore the state machine: {e}"))?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let peers: BTreeMap<_, _> = cfg
        .peers
        .iter()
        .map(|(id, a)| (*id, a.to_string()))
        .collect();
    let transport = PeerTransport::start(
        cfg.id,
        cfg.peer_identity(),
        &peers,
        TransportOptions::default(),
        &tokio::runtime::Handle::current(),
    );
    let (inbox_tx, inbox_rx) = std::sync::mpsc::sync_channel(INBOX_ITEMS_MAX);
    let (done_tx, done_rx) = oneshot::channel();
    let node = Node::new(replica, store, transport);
    let dopts = DriverOptions {
        data_dir: cfg.data_dir.clone(),
        disk_reserve_bytes: cfg.disk_reserve_bytes,
    };
    let node_span = span.clone();
    std::thread::Builder::new()
        .name(format!("node-{}", cfg.id.0))
        .spawn(move || {
            let _enter = node_span.enter();
            let _ = done_tx.send(driver::run(node, inbox_rx, dopts));
        })
        .context("cannot start the node thread")?;
    let handler = Arc::new(NodeHandler {
        id: cfg.id,
        inbox: inbox_tx.clone(),
        request_timeout: cfg.request_timeout,
    });
    let (stop_rpc_tx, stop_rpc_rx) = oneshot::channel::<()>();
    let raft = RaftService::new(
        cfg.cluster_id,
        Arc::new(OneGroup {
            group: cfg.group_id,
            handler: handler.clone(),
        }),
    );
    let drops = raft.drops();
    let mut builder = tonic::transport::Server::builder();
    // Without TCP_NODELAY on accepted connections, a reply written in more than one
    // segment waits on the client's delayed ACK (Nagle): milliseconds per request.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let serve = shardkv_net::router(&mut builder, handler, raft).serve_with_incoming_shutdown(
        incoming,
        async {
            let _ = stop_rpc_rx.await;
        },
    );
    let mut serve = tokio::spawn(serve);
    tracing::info!(listen = %cfg.listen, data_dir = %cfg.data_dir.display(),
        cluster = %shardkv_net::cluster_hex(cfg.cluster_id), group = cfg.group_id.0, "serving");
    tokio::pin!(shutdown);
    let mut done_rx = done_rx;
    let outcome = tokio::select! {
        () = &mut shutdown => {
            tracing::info!("shutting down");
            let _ = inbox_tx.send(Inbound::Stop);
            node_outcome((&mut done_rx).await)
        }
        done = &mut done_rx => node_outcome(done),
        served = &mut serve => Err(anyhow!("the gRPC server stopped: {served:?}")),
    };
    let _ = stop_rpc_tx.send(());
    // Peer streams never end on their own; give RPCs a moment, then drop the server.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, serve).await;
    log_drops(&drops);
    outcome
}

/// One line with what the peer service dropped over the process's life, if anything.
fn log_drops(drops: &RaftDrops) {
    let c = drops.counts();
    if c != Default::default() {
        tracing::warn!(
            wrong_cluster_batches = c.wrong_cluster_batches,
            wrong_group_batches = c.wrong_group_batches,
            misaddressed_messages = c.misaddressed_messages,
            undecodable_messages = c.undecodable_messages,
            "raft traffic dropped by the peer service"
        );
    }
}

/// Checks (or, on first start, writes) the data directory's identity file: the cluster,
/// group, node and voter set it was created for. A different one refuses to start.
fn check_identity(cfg: &ServerConfig) -> Result<(Identity, IdentityCheck)> {
    let given = Identity {
        cluster_id: cfg.cluster_id,
        cluster_token: cfg.cluster_token.clone(),
        group_id: cfg.group_id,
        node_id: cfg.id,
        voters: cfg
            .peers
            .iter()
            .map(|(id, a)| (*id, a.to_string()))
            .collect(),
    };
    let checked = shardkv_storage::check_identity(&mut FsDisk::new(), &cfg.data_dir, &given)
        .map_err(|e| anyhow!("{e}"))?;
    Ok((given, checked))
}

fn log_identity(given: &Identity, checked: IdentityCheck) {
    match checked {
        IdentityCheck::Created => tracing::info!(identity = %given, "new data directory"),
        IdentityCheck::Matched => {}
        IdentityCheck::AddressesUpdated { stored } => {
            tracing::info!(?stored, given = ?given.voters, "member addresses changed; recorded")
        }
        IdentityCheck::Adopted => tracing::warn!(
            identity = %given,
            "data directory from before identity files: adopted the given cluster, group and \
             peer list as its identity; if the peer list is not the one this group was \
             created with, stop now and restart with the original one"
        ),
    }
}

fn node_outcome(
    done: Result<Result<(), crate::node::Fatal>, oneshot::error::RecvError>,
) -> Result<()> {
    match done {
        Ok(r) => r.map_err(anyhow::Error::from),
        Err(_) => Err(anyhow!("the node thread died")),
    }
}

/// Opens the data directory (refusing another node's) and converts what it recovered.
fn open_storage(cfg: &ServerConfig) -> Result<(RaftStore<FsDisk>, Restored)> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    let (store, rec) = RaftStore::open(FsDisk::new(), &cfg.data_dir, cfg.id)
        .with_context(|| format!("cannot open storage in {}", cfg.data_dir.display()))?;
    for w in &rec.warnings {
        tracing::warn!(warning = %w, "storage recovery");
    }
    tracing::info!(
        term = rec.hard_state.term.0,
        commit = rec.hard_state.commit.0,
        entries = rec.entries.len(),
        snapshot = ?rec.snapshot.as_ref().map(|(m, _)| m.index.0),
        "storage recovered"
    );
    Ok((store, shardkv_host::restored(rec)))
}

/// A seed for election timeouts: the shell's randomness (the core never draws its own).
fn random_seed() -> u64 {
    RandomState::new().hash_one(std::process::id())
}
