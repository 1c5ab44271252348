//! `run`: one server process from configuration to shutdown. A process is a *host* of
//! replicas, as a TiKV store hosts regions: it runs one replica of each configured group
//! (the shard controller, shard groups, plain KV groups), each with its own node thread,
//! Raft state, WAL and snapshots under `data-dir/g<gid>/`, its own identity file, and its
//! own peer streams stamped with its group id, all behind one gRPC port. Raft traffic is
//! routed to a replica by the group id every batch carries (another group's is dropped and
//! counted); a KV request goes to the group it names (`WrongGroup` if not hosted here), a
//! controller request to the controller's replica, another shard group's Pull or Installed
//! read (Shard service) to the shard group it names. A shard group's leader asks the
//! controller (at `ServerConfig::ctrl`) and other groups through its node's [`Outbox`].
//!
//! First the data directory's lock (`DirLock`: a second process on it is refused) and the
//! listening port (bound, not yet served). Then for each group, in order: check the identity file (cluster, group, node, voters), open
//! storage, restore the replica, start its peer transport and node thread. Then the port
//! opens. On the shutdown signal every node thread stops (a leader hands off first); a
//! fatal error in any group stops the process.

use crate::admin::{Admin, StatusFn};
use crate::config::{AdminListen, CTRL_GID, ServerConfig, Service};
use crate::driver::{self, DriverOptions};
use crate::front::{CtrlFront, KvFront, KvGroup, ShardFront};
use crate::handler::{INBOX_ITEMS_MAX, Inbound, NodeHandler};
use crate::in_process::OwnKv;
use crate::listen::{self, ListenOptions, StepDownSignal};
use crate::member::Member;
use crate::membership::Members;
use crate::metrics::{GroupMetrics, ProcessMetrics, TimedDisk};
use crate::node::{Fatal, Node};
use crate::outbox::Outbox;
use crate::redis::RedisFront;
use anyhow::{Context, Result, anyhow};
use shardkv_client::RetryPolicy;
use shardkv_ctrl::ShardCtrl;
use shardkv_kv::KvStore;
use shardkv_net::tls::{MemberTls, PeerAuth};
use shardkv_net::{PeerTransport, RaftDrops, RaftRouter, RaftService, TransportOptions};
use shardkv_raft::{Config, Message, Restored};
use shardkv_rsm::{Replica, ReplicaOptions, StateMachine};
use shardkv_shardkv::{Duties, DutyOptions, Naming, ShardGroup, ShardKv};
use shardkv_storage::{FsDisk, Identity, IdentityCheck, RaftStore};
use shardkv_types::Rng;
use shardkv_types::{Gid, NodeId};
use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// How long in-flight RPCs get to finish after the node threads stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Runs one server process until `shutdown` resolves (graceful: `Ok`) or a fatal error in
/// any hosted group (`Err`; the caller exits non-zero). Must run inside a multi-threaded
/// tokio runtime.
pub async fn run(cfg: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let span = tracing::info_span!("node", id = cfg.id.0);
    serve(cfg, shutdown, span.clone()).instrument(span).await
}

/// A running group's handles: how to reach its node thread.
struct Hosted {
    raft: Box<dyn Fn(NodeId, Vec<Message>) + Send + Sync>,
    stop: Box<dyn Fn() + Send + Sync>,
}

/// Routes Raft batches to the hosted replica of their group.
struct GroupRouter {
    id: NodeId,
    groups: BTreeMap<Gid, Hosted>,
}

impl RaftRouter for GroupRouter {
    fn node_id(&self) -> NodeId {
        self.id
    }

    fn hosts(&self, group: Gid) -> bool {
        self.groups.contains_key(&group)
    }

    fn deliver(&self, group: Gid, from: NodeId, msgs: Vec<Message>) {
        if let Some(g) = self.groups.get(&group) {
            (g.raft)(from, msgs);
        }
    }
}

/// How a node thread ended: its group and the outcome.
type Ended = (Gid, Result<(), Fatal>);

async fn serve(
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
    span: tracing::Span,
) -> Result<()> {
    // One process per data directory, checked before anything in it is read or deleted;
    // the port is bound before storage is touched, so a second process on a taken port
    // leaves the live member's files alone. Both are held until this function returns.
    let _lock = shardkv_storage::DirLock::acquire(&cfg.data_dir).map_err(|e| anyhow!("{e}"))?;
    let nofile = listen::raise_nofile_limit();
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let admin_listener = bind_admin(cfg.admin_listen).await?;
    let redis_listener = match cfg.redis_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on the redis address {addr}"))?,
        ),
        None => None,
    };
    refuse_single_group_layout(&cfg.data_dir)?;
    let tls = load_tls(&cfg)?;
    check_joins(&cfg, tls.as_ref()).await?;
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<Ended>();
    let step_down = Arc::new(StepDownSignal::default());
    let env = NodeEnv {
        tls: tls.as_ref(),
        ended: &ended_tx,
        step_down: &step_down,
    };
    let mut router = GroupRouter {
        id: cfg.id,
        groups: BTreeMap::new(),
    };
    let mut front = KvFront {
        id: cfg.id,
        kv: BTreeMap::new(),
        ctrl: None,
        metrics: BTreeMap::new(),
        redis_addr: redis_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| {
                let own = cfg.peers.get(&cfg.id).map_or("", String::as_str);
                let (host, port) = crate::redis::advertised(a, own);
                match host.contains(':') {
                    true => format!("[{host}]:{port}"),
                    false => format!("{host}:{port}"),
                }
            }),
    };
    let mut shard_front = ShardFront {
        id: cfg.id,
        shard: BTreeMap::new(),
    };
    let mut group_metrics = Vec::new();
    let mut ctrl_metrics = None;
    let mut statuses: Vec<(Gid, StatusFn)> = Vec::new();
    for (&gid, &service) in &cfg.groups {
        let group_span =
            tracing::info_span!(parent: &span, "group", gid = gid.0, service = service.name());
        let metrics = Arc::new(GroupMetrics::new(gid, service.name()));
        group_metrics.push(metrics.clone());
        let hosted = match service {
            Service::Kv => {
                let opened = group_span.in_scope(|| {
                    replica_in(&cfg, &metrics, gid, "kv".into(), KvStore::default())
                })?;
                let started = start_node(&cfg, &env, &metrics, gid, opened, group_span)?;
                front.kv.insert(gid, KvGroup::Kv(started.handler.clone()));
                front.metrics.insert(gid, metrics.clone());
                statuses.push((gid, status_fn(started.handler.clone())));
                started.hosted
            }
            Service::Ctrl => {
                let initial = ShardCtrl::new(cfg.shards).map_err(|e| anyhow!("{e}"))?;
                // The shard count is fixed at creation: a replica started with another one
                // would apply the same log differently, so it is part of the identity.
                let service = format!("ctrl shards={}", cfg.shards);
                let opened =
                    group_span.in_scope(|| replica_in(&cfg, &metrics, gid, service, initial))?;
                let started = start_node(&cfg, &env, &metrics, gid, opened, group_span)?;
                front.ctrl = Some(started.handler.clone());
                ctrl_metrics = Some(metrics.clone());
                statuses.push((gid, status_fn(started.handler.clone())));
                started.hosted
            }
            Service::Shard => {
                // Like the controller's, the shard count is part of the identity.
                let service = format!("shard shards={}", cfg.shards);
                let initial = ShardKv::new(gid, cfg.shards);
                let (store, replica, members) =
                    group_span.in_scope(|| replica_in(&cfg, &metrics, gid, service, initial))?;
                let group = ShardGroup::new(replica, duties(&cfg));
                let opened = (store, group, members);
                let started = start_node(&cfg, &env, &metrics, gid, opened, group_span)?;
                front
                    .kv
                    .insert(gid, KvGroup::Shard(started.handler.clone()));
                front.metrics.insert(gid, metrics.clone());
                shard_front.shard.insert(gid, started.handler.clone());
                statuses.push((gid, status_fn(started.handler.clone())));
                started.hosted
            }
        };
        router.groups.insert(gid, hosted);
    }
    let router = Arc::new(router);
    let auth = match tls {
        Some(_) => PeerAuth::MemberCertificates,
        None => PeerAuth::Open,
    };
    let raft = RaftService::new(cfg.cluster_id, router.clone()).with_auth(auth);
    let drops = raft.drops();
    let process_metrics = Arc::new(ProcessMetrics::new(cfg.id, group_metrics));
    let _ = process_metrics.drops.set(drops.clone());
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let admin = admin_listener.map(|l| {
        let admin = Arc::new(Admin::new(process_metrics, statuses, cfg.listen));
        tokio::spawn(crate::admin::serve(l, admin))
    });
    let ctrl = front
        .ctrl
        .clone()
        .zip(ctrl_metrics)
        .map(|(handler, metrics)| Arc::new(CtrlFront { handler, metrics }));
    let front = Arc::new(front);
    let (stop_rpc_tx, stop_rpc_rx) = oneshot::channel::<()>();
    let mut builder = listen::limit_http2(tonic::transport::Server::builder());
    if let Some(tls) = &tls {
        builder = builder
            .tls_config(tls.server_config())
            .context("cannot use the TLS certificate and key")?;
    }
    let limits = ListenOptions {
        max_connections: listen::effective_max_connections(
            cfg.max_connections,
            nofile,
            cfg.groups.len(),
        ),
        idle_timeout: cfg.idle_timeout,
    };
    if limits.max_connections < cfg.max_connections {
        tracing::warn!(
            configured = cfg.max_connections,
            limit = limits.max_connections,
            "connection limit lowered to stay below the descriptor limit"
        );
    }
    // One descriptor budget for both ports: with a RESP port, each gets half of it.
    let (limits, redis_limits) = listen::split_connections(limits, redis_listener.is_some());
    let incoming = listen::incoming(listener, limits, step_down.clone());
    let redis = match redis_listener {
        Some(l) => {
            let client_tls = tls.as_ref().map(MemberTls::client_config);
            let groups = front.kv.values().cloned().collect();
            let own = OwnKv::new(front.clone(), own_grpc_addrs(&cfg));
            Some(RedisFront::start(
                &cfg,
                l,
                redis_limits,
                step_down.clone(),
                client_tls,
                groups,
                Arc::new(own),
            )?)
        }
        None => None,
    };
    let mut services = shardkv_net::router(&mut builder, front, raft);
    // Without a controller replica the Ctrl service is absent: clients are told so.
    if let Some(ctrl) = ctrl {
        services = shardkv_net::with_ctrl(services, ctrl);
    }
    // Without a shard group the Shard service is absent as well.
    if !shard_front.shard.is_empty() {
        services = shardkv_net::with_shard(services, Arc::new(shard_front), auth, drops.clone());
    }
    let serve = services.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rpc_rx.await;
    });
    let mut serve = tokio::spawn(serve);
    let groups: Vec<String> = cfg
        .groups
        .iter()
        .map(|(g, s)| format!("{}={}", g.0, s.name()))
        .collect();
    let admin_shown = admin_addr.map_or("off".to_string(), |a| a.to_string());
    let redis_shown = redis
        .as_ref()
        .map_or("off".to_string(), |r| r.addr.to_string());
    tracing::info!(listen = %cfg.listen, admin = %admin_shown, redis = %redis_shown, tls = tls.is_some(), data_dir = %cfg.data_dir.display(),
        max_connections = limits.max_connections, idle_timeout = ?limits.idle_timeout,
        cluster = %shardkv_net::cluster_hex(cfg.cluster_id), groups = %groups.join(","), "serving");
    tokio::pin!(shutdown);
    let running = cfg.groups.len();
    let outcome = tokio::select! {
        () = &mut shutdown => {
            tracing::info!("shutting down");
            stop_all(&router, &mut ended_rx, running).await
        }
        Some((gid, result)) = ended_rx.recv() => {
            let first = group_outcome(gid, result);
            let rest = stop_all(&router, &mut ended_rx, running - 1).await;
            first.and(rest)
        }
        served = &mut serve => Err(anyhow!("the gRPC server stopped: {served:?}")),
    };
    let _ = stop_rpc_tx.send(());
    // Peer streams never end on their own; give RPCs a moment, then drop the server.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, serve).await;
    if let Some(admin) = admin {
        admin.abort();
    }
    if let Some(redis) = redis {
        redis.stop();
    }
    log_drops(&drops);
    outcome
}

/// Stops every node thread and waits for `running` of them to end; the first fatal error
/// wins.
async fn stop_all(
    router: &GroupRouter,
    ended: &mut mpsc::UnboundedReceiver<Ended>,
    running: usize,
) -> Result<()> {
    for g in router.groups.values() {
        (g.stop)();
    }
    let mut outcome = Ok(());
    for _ in 0..running {
        match ended.recv().await {
            Some((gid, result)) => outcome = outcome.and(group_outcome(gid, result)),
            None => return outcome.and(Err(anyhow!("a node thread died"))),
        }
    }
    outcome
}

fn group_outcome(gid: Gid, result: Result<(), Fatal>) -> Result<()> {
    result.map_err(|e| anyhow!("group {gid}: {e}"))
}

/// A started group: its inbox as the services see it, and its router entry.
struct Started<A: Member> {
    handler: Arc<NodeHandler<A>>,
    hosted: Hosted,
}

/// How often a stable shard group leader asks the controller for the next config, and the
/// pause before a duty that made no progress is tried again.
const DUTY_POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// About how much of a moving shard one pull answer and one install entry carry: well
/// under the log's entry limit and the frame limit, and small enough that the writes behind
/// an install entry in the new owner's log wait little (docs/bench.md: 256 KiB halves the
/// other keys' p99 during a move against 1 MiB).
const DUTY_CHUNK_BYTES: u64 = 256 << 10;
/// How fast a group pulls moving shards: a move leaves most of the machine to the shards
/// that do not move (docs/bench.md has the curve).
const DUTY_PULL_BYTES_PER_S: u64 = 8 << 20;
const DUTY_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// The duties of a shard group member: poll the controller at `cfg.ctrl`, whose servers
/// (like every group's in a config) are named `ID=HOST:PORT`, or `HOST:PORT` by position.
fn duties(cfg: &ServerConfig) -> Duties {
    let tick_ms = driver::TICK.as_millis() as u64;
    let ticks = |d: std::time::Duration| d.as_millis() as u64 / tick_ms;
    let opts = DutyOptions {
        tick_ms,
        poll_every_ms: DUTY_POLL_EVERY.as_millis() as u64,
        retry_ms: DUTY_RETRY.as_millis() as u64,
        policy: RetryPolicy {
            // A little longer than the outbox's own bound on one request.
            attempt_ticks: ticks(crate::outbox::OUTBOUND_ATTEMPT_TIMEOUT) + 10,
            hedge_ticks: 0,
            backoff_ticks_max: 20,
            attempts_max: 20,
            op_ticks_max: Some(ticks(std::time::Duration::from_secs(10))),
        },
        chunk_bytes: DUTY_CHUNK_BYTES,
        pull_bytes_per_s: Some(DUTY_PULL_BYTES_PER_S),
    };
    Duties::new(
        CTRL_GID,
        &cfg.ctrl,
        Naming::Ids,
        opts,
        Rng::new(random_seed()),
    )
}

/// Checks group `gid`'s identity, opens its storage under `data-dir/g<gid>/` (its fsyncs
/// timed into `metrics`) and restores its replica from `initial` (or its snapshot), with
/// the membership the directory records.
fn replica_in<SM: StateMachine>(
    cfg: &ServerConfig,
    metrics: &Arc<GroupMetrics>,
    gid: Gid,
    service: String,
    initial: SM,
) -> Result<(RaftStore<TimedDisk>, Replica<SM>, Members)> {
    let dir = cfg.group_dir(gid);
    let (identity, checked) = check_identity(cfg, gid, &service, &dir)?;
    let disk = TimedDisk::new(metrics.clone());
    let (store, restored) = open_storage(cfg, disk, &dir)?;
    // Logged only once storage is open: nothing is logged before the data directory is
    // complete.
    log_identity(&identity, checked);
    // Raft's bootstrap membership is the one the directory was created with, never the
    // rewritten members; the log's membership entries and snapshot override it.
    let opts = ReplicaOptions {
        raft_state_bytes_max: cfg.max_raft_state,
        ..ReplicaOptions::default()
    };
    let mut rc = Config::new(cfg.id, identity.initial_voters.iter().copied().collect());
    rc.learners = identity.initial_learners.iter().copied().collect();
    let replica = Replica::new(rc, restored, random_seed(), opts, initial)
        .map_err(|e| anyhow!("group {gid}: cannot restore the state machine: {e}"))?;
    let members = Members::new(dir, identity, replica.conf());
    Ok((store, replica, members))
}

/// What every node thread of this process shares.
#[derive(Clone, Copy)]
struct NodeEnv<'a> {
    /// This member's TLS identity (`None`: plaintext).
    tls: Option<&'a MemberTls>,
    /// Where a node thread reports that it ended.
    ended: &'a mpsc::UnboundedSender<Ended>,
    /// Set by the accept loop when this process cannot take connections.
    step_down: &'a Arc<StepDownSignal>,
}

/// Starts group `gid`'s peer transport and node thread around `app` (and, for an app that
/// asks other groups, its outbox); the node publishes to `metrics`, and the router counts
/// the peer messages it delivers there.
fn start_node<A: Member>(
    cfg: &ServerConfig,
    env: &NodeEnv<'_>,
    metrics: &Arc<GroupMetrics>,
    gid: Gid,
    (store, app, members): (RaftStore<TimedDisk>, A, Members),
    span: tracing::Span,
) -> Result<Started<A>> {
    let NodeEnv {
        tls,
        ended,
        step_down,
    } = *env;
    let _enter = span.enter();
    let peers = members.addresses();
    let book = members.book();
    let rt = tokio::runtime::Handle::current();
    let transport = PeerTransport::start(
        cfg.id,
        cfg.peer_identity(gid),
        &peers,
        TransportOptions {
            tls: tls.map(MemberTls::client_config),
            ..TransportOptions::default()
        },
        &rt,
    );
    let (inbox_tx, inbox_rx) = std::sync::mpsc::sync_channel(INBOX_ITEMS_MAX);
    let outbox = A::ASKS_OTHER_GROUPS.then(|| {
        let tx = inbox_tx.clone();
        // A full inbox drops the answer: the duty times the attempt out and asks again.
        let answers = move |token, from, answer, held| {
            let _ = tx.try_send(Inbound::Answer {
                token,
                from,
                answer,
                held,
            });
        };
        Outbox::new(rt, Box::new(answers), tls.map(MemberTls::client_config))
    });
    let id = cfg.id;
    let host_opts = crate::node::host_options(gid, cfg.max_raft_state);
    let node = Node::new(gid, app, store, transport, outbox, members, host_opts)
        .with_metrics(metrics.clone());
    let dopts = DriverOptions {
        data_dir: cfg.group_dir(gid),
        disk_reserve_bytes: cfg.disk_reserve_bytes,
        step_down: step_down.clone(),
    };
    let node_span = span.clone();
    let ended = ended.clone();
    std::thread::Builder::new()
        .name(format!("node-{}-g{}", cfg.id.0, gid.0))
        .spawn(move || {
            let _enter = node_span.enter();
            // A panic (an assertion on a protocol step) ends the group like a fatal error:
            // the process stops instead of serving on without it.
            let run = std::panic::AssertUnwindSafe(|| driver::run(node, inbox_rx, dopts));
            let outcome = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                Err(Fatal::App {
                    id,
                    error: "the node thread panicked (see the log above)".into(),
                })
            });
            let _ = ended.send((gid, outcome));
        })
        .context("cannot start a node thread")?;
    let handler = Arc::new(NodeHandler {
        id: cfg.id,
        inbox: inbox_tx.clone(),
        inbox_bytes: Default::default(),
        request_timeout: cfg.request_timeout,
        addrs: book,
    });
    let raft_handler = handler.clone();
    let received = metrics.clone();
    let hosted = Hosted {
        raft: Box::new(move |from, msgs| {
            let n = msgs.len() as u64;
            let delivered = raft_handler.raft_messages(from, msgs);
            received.add_received(n, delivered);
        }),
        // Called from async code: a full inbox must not block a runtime thread.
        stop: Box::new(move || {
            if let Err(std::sync::mpsc::TrySendError::Full(stop)) = inbox_tx.try_send(Inbound::Stop)
            {
                let tx = inbox_tx.clone();
                std::thread::spawn(move || tx.send(stop));
            }
        }),
    };
    Ok(Started { handler, hosted })
}

/// A group's status query for `/status`.
fn status_fn<A: Member>(handler: Arc<NodeHandler<A>>) -> StatusFn {
    Box::new(move || {
        let handler = handler.clone();
        Box::pin(async move { handler.status().await })
    })
}

/// The `HOST:PORT` strings that name this process's gRPC port in endpoint lists and
/// configs: its `--peers` entry, and its listen address unless that is unspecified.
fn own_grpc_addrs(cfg: &ServerConfig) -> Vec<String> {
    let mut addrs: Vec<String> = cfg.peers.get(&cfg.id).cloned().into_iter().collect();
    if !cfg.listen.ip().is_unspecified() {
        addrs.push(cfg.listen.to_string());
    }
    addrs
}

/// Binds the admin port: a configured address must bind; the default one (next to the
/// gRPC port) is skipped with a warning when taken.
async fn bind_admin(listen: AdminListen) -> Result<Option<TcpListener>> {
    let bind = |addr: SocketAddr| TcpListener::bind(addr);
    match listen {
        AdminListen::Off => Ok(None),
        AdminListen::Given(addr) => bind(addr)
            .await
            .map(Some)
            .with_context(|| format!("cannot listen on the admin address {addr}")),
        AdminListen::Default(addr) => match bind(addr).await {
            Ok(l) => Ok(Some(l)),
            Err(e) => {
                tracing::warn!(%addr, error = %e,
                    "cannot listen on the default admin address; serving without the admin \
                     port (set --admin-listen to choose another)");
                Ok(None)
            }
        },
    }
}

/// With `--join`, for every group whose directory is not created yet: the id must be new to
/// the group (see [`crate::membership::check_join`]).
async fn check_joins(cfg: &ServerConfig, tls: Option<&MemberTls>) -> Result<()> {
    if !cfg.join {
        return Ok(());
    }
    let peers: BTreeMap<NodeId, String> = cfg
        .peers
        .iter()
        .map(|(id, a)| (*id, a.to_string()))
        .collect();
    for &gid in cfg.groups.keys() {
        if cfg.group_dir(gid).join("identity").exists() {
            continue;
        }
        let client_tls = tls.map(MemberTls::client_config);
        crate::membership::check_join(cfg.id, gid, &peers, client_tls)
            .await
            .map_err(|e| anyhow!("group {gid}: {e}"))?;
    }
    Ok(())
}

/// Reads and checks the TLS files, if configured: the certificate must be this node's.
fn load_tls(cfg: &ServerConfig) -> Result<Option<MemberTls>> {
    cfg.tls
        .as_ref()
        .map(|files| MemberTls::load(files, cfg.id).map_err(|e| anyhow!("TLS: {e}")))
        .transpose()
}

/// Refuses a data directory in the layout of a single-group server (its files directly in
/// `data-dir`, not in `data-dir/g<gid>/`): starting would create an empty group beside it.
fn refuse_single_group_layout(data_dir: &Path) -> Result<()> {
    for name in ["node-id", "identity"] {
        if data_dir.join(name).exists() {
            return Err(anyhow!(
                "{} holds a single-group data directory (its files are not under g<gid>/): \
                 move them into {}/g1/ to keep serving them as group 1, or use a fresh \
                 --data-dir",
                data_dir.display(),
                data_dir.display()
            ));
        }
    }
    Ok(())
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
            forged_sender_batches = c.forged_sender_batches,
            not_a_member_calls = c.not_a_member_calls,
            "raft traffic dropped by the peer service"
        );
    }
}

/// Checks (or, on first start, writes) a group directory's identity file: the cluster,
/// group, node and members it was created for (or, after membership changes, last
/// recorded). A different one refuses to start. Returns what the directory now records.
fn check_identity(
    cfg: &ServerConfig,
    gid: Gid,
    service: &str,
    dir: &Path,
) -> Result<(Identity, IdentityCheck)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut voters: BTreeMap<NodeId, String> = cfg
        .peers
        .iter()
        .map(|(id, a)| (*id, a.to_string()))
        .collect();
    // A joining member starts as a learner of the groups it joins.
    let learners = match cfg.join {
        true => voters.remove_entry(&cfg.id).into_iter().collect(),
        false => BTreeMap::new(),
    };
    let given = Identity {
        cluster_id: cfg.cluster_id,
        cluster_token: cfg.cluster_token.clone(),
        group_id: gid,
        node_id: cfg.id,
        initial_voters: voters.keys().copied().collect(),
        initial_learners: learners.keys().copied().collect(),
        voters,
        service: service.to_string(),
        learners,
    };
    let mut disk = FsDisk::new();
    let may_create = cfg.bootstrap || cfg.join;
    let checked = shardkv_storage::check_identity(&mut disk, dir, &given, may_create)
        .map_err(|e| anyhow!("group {gid}: {e}"))?;
    let recorded = shardkv_storage::read_identity_file(&mut disk, dir)
        .map_err(|e| anyhow!("group {gid}: {e}"))?
        .ok_or_else(|| anyhow!("group {gid}: the identity file vanished after its check"))?;
    Ok((recorded, checked))
}

fn log_identity(given: &Identity, checked: IdentityCheck) {
    match checked {
        IdentityCheck::Created => tracing::info!(identity = %given, "new data directory"),
        IdentityCheck::Matched => {}
        IdentityCheck::AddressesUpdated { stored } => {
            tracing::info!(?stored, now = %given.peer_list(), "member addresses changed; recorded")
        }
        IdentityCheck::Adopted => tracing::warn!(
            identity = %given,
            "data directory from before identity files: adopted the given cluster, group and \
             peer list as its identity; if the peer list is not the one this group was \
             created with, stop now and restart with the original one"
        ),
    }
}

/// Opens a group's directory (refusing another node's) and converts what it recovered.
fn open_storage(
    cfg: &ServerConfig,
    disk: TimedDisk,
    dir: &Path,
) -> Result<(RaftStore<TimedDisk>, Restored)> {
    let (store, rec) = RaftStore::open(disk, dir, cfg.id)
        .with_context(|| format!("cannot open storage in {}", dir.display()))?;
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
