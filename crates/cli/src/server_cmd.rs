//! `shardkv server`: runs one server process until SIGTERM or Ctrl-C. It hosts one replica
//! of each group in `--groups` (default: the single KV group `--group-id`, 1), each under
//! `--data-dir`/g<gid>/.
//!
//! Configuration comes from flags, `SHARDKV_*` environment variables and an optional TOML
//! file (`--config`); flags win over the environment, which wins over the file. See
//! `shardkv_server::config` for the file format.

use anyhow::{Result, anyhow};
use clap::Args;
use shardkv_server::{ConfigLayer, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct ServerArgs {
    /// A TOML file with any of the settings below (kebab-case keys).
    #[arg(long, env = "SHARDKV_CONFIG")]
    config: Option<PathBuf>,
    /// This member's node id (1 or more).
    #[arg(long, env = "SHARDKV_ID")]
    id: Option<u64>,
    /// Address of the gRPC port (clients and peers); default: this node's --peers entry.
    #[arg(long, env = "SHARDKV_LISTEN")]
    listen: Option<String>,
    /// Every member of the group, this one included: 1=HOST:PORT,2=HOST:PORT,...
    #[arg(long, env = "SHARDKV_PEERS")]
    peers: Option<String>,
    /// This member's data directory. Its first start records the cluster, group, node and
    /// --peers ids there (kept following membership changes); a later start with another
    /// node id, cluster token, group id or set of member ids is refused.
    #[arg(long, env = "SHARDKV_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Snapshot when the persisted Raft state exceeds this (e.g. 64MiB); `off` never does.
    #[arg(long, env = "SHARDKV_MAX_RAFT_STATE")]
    max_raft_state: Option<String>,
    /// Server-side deadline of a client request (e.g. 2s); past it the client is told
    /// "timeout: may have applied".
    #[arg(long, env = "SHARDKV_REQUEST_TIMEOUT")]
    request_timeout: Option<String>,
    /// Refuse writes while the data directory's filesystem has less free space (e.g. 32MiB).
    #[arg(long, env = "SHARDKV_DISK_RESERVE")]
    disk_reserve: Option<String>,
    /// Names the cluster; every member gives the same one (default "shardkv"). Raft traffic
    /// stamped with another cluster's token is dropped, and a data directory created with
    /// another token is refused.
    #[arg(long, env = "SHARDKV_CLUSTER_TOKEN")]
    cluster_token: Option<String>,
    /// The replica group this member belongs to (default 1). Raft traffic for another group
    /// is dropped, and a data directory of another group is refused.
    #[arg(long, env = "SHARDKV_GROUP_ID")]
    group_id: Option<u64>,
    /// The groups this process hosts a replica of, instead of --group-id:
    /// GID=kv|shard|ctrl,... (e.g. 0=ctrl,1=shard,2=shard). The shard controller is group 0;
    /// a `shard` group serves the shards the controller assigns it (after `admin join`);
    /// `kv` is a plain, unsharded group. Every group has the --peers members and lives in
    /// --data-dir/g<gid>/.
    #[arg(long, env = "SHARDKV_GROUPS")]
    groups: Option<String>,
    /// The shard controller's shard count, fixed when the cluster is created: a power of two
    /// up to 16384 (default 64).
    #[arg(long, env = "SHARDKV_SHARDS")]
    shards: Option<u32>,
    /// The shard controller's servers, HOST:PORT,... in node order, which the shard groups
    /// hosted here poll for configs. Default: the --peers addresses when this process
    /// hosts the controller (0=ctrl).
    #[arg(long, env = "SHARDKV_CTRL")]
    ctrl: Option<String>,
    /// First start of a brand-new group only: let an empty --data-dir become a new member.
    /// Without it a member refuses an empty data directory, since that is what a member
    /// that lost its disk looks like (its votes and log are gone; rejoining under the same
    /// id could lose acknowledged writes). Ignored when the directory has data.
    #[arg(long, env = "SHARDKV_BOOTSTRAP")]
    bootstrap: bool,
    /// First start of a member being added to running groups, under a NEW node id: an
    /// empty --data-dir starts as a non-voting learner of every group in --groups, which
    /// `shardkv member add` then adds and `member promote` makes a voter
    /// (docs/membership.md). --peers lists the current members and this one. Ignored when
    /// the directory has data.
    #[arg(long, env = "SHARDKV_JOIN", conflicts_with = "bootstrap")]
    join: bool,
    /// The most open client and peer connections (default 4096, lowered to stay below the
    /// descriptor limit); further ones are closed at once and logged. With --redis-listen
    /// the gRPC and RESP ports share it, half each.
    #[arg(long, env = "SHARDKV_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// A connection whose peer sends nothing for this long is closed (default 5m).
    #[arg(long, env = "SHARDKV_IDLE_TIMEOUT")]
    idle_timeout: Option<String>,
    /// TLS: this member's certificate (PEM), signed by --cacert, with the URI SAN
    /// shardkv://node/<--id>. Presented to clients and, as a client certificate, to the
    /// other members. With --cert, --key and --cacert every connection must present a
    /// certificate the CA signed (docs/security.md).
    #[arg(long, env = "SHARDKV_CERT")]
    cert: Option<PathBuf>,
    /// The admin HTTP port: /metrics (Prometheus), /health, /livez, /readyz and /status
    /// (docs/operations.md). Default: the gRPC port + 1000 on the same address (skipped with
    /// a warning if taken); `off` serves none.
    #[arg(long, env = "SHARDKV_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// A Redis Cluster (RESP) port for `redis-cli -c`, `redis-benchmark --cluster` and Redis
    /// client libraries (docs/redis.md): HOST:PORT, or `off` (the default). Each connection
    /// is its own shardkv client session; slots are mastered by the process hosting the
    /// leader of their shard's group, other keys are answered MOVED.
    #[arg(long, env = "SHARDKV_REDIS_LISTEN")]
    redis_listen: Option<String>,
    /// A file whose first line is the password clients of the Redis port must give (`AUTH
    /// <password>`, `redis-cli -a`), as Redis's `requirepass`; default: none. Kept in a file
    /// so that it is not in the process list.
    #[arg(long, env = "SHARDKV_REDIS_PASSWORD_FILE")]
    redis_password_file: Option<PathBuf>,
    /// Log lines as `text` (default) or `json` (one object per line; a replica's lines carry
    /// its node id, group and term in their spans).
    #[arg(long, env = "SHARDKV_LOG_FORMAT")]
    log_format: Option<String>,
    /// TLS: the private key of --cert (PEM).
    #[arg(long, env = "SHARDKV_KEY")]
    key: Option<PathBuf>,
    /// TLS: the cluster CA's certificate (PEM): members and clients must present a
    /// certificate it signed.
    #[arg(long, env = "SHARDKV_CACERT")]
    cacert: Option<PathBuf>,
}

pub fn run(args: ServerArgs) -> Result<ExitCode> {
    let file = match &args.config {
        Some(path) => ConfigLayer::from_toml_file(path).map_err(|e| anyhow!(e))?,
        None => ConfigLayer::default(),
    };
    let flags = ConfigLayer {
        id: args.id,
        listen: args.listen,
        peers: args.peers,
        data_dir: args.data_dir,
        max_raft_state: args.max_raft_state,
        request_timeout: args.request_timeout,
        disk_reserve: args.disk_reserve,
        cluster_token: args.cluster_token,
        group_id: args.group_id,
        groups: args.groups,
        shards: args.shards,
        ctrl: args.ctrl,
        bootstrap: args.bootstrap.then_some(true),
        join: args.join.then_some(true),
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout,
        admin_listen: args.admin_listen,
        redis_listen: args.redis_listen,
        redis_password_file: args.redis_password_file,
        log_format: args.log_format,
        cert: args.cert,
        key: args.key,
        cacert: args.cacert,
    };
    let cfg = flags.over(file).resolve().map_err(|e| anyhow!(e))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(shardkv_server::run(cfg, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

impl ServerArgs {
    /// The log format asked for by the flag (or environment), else the config file; text
    /// when neither says or what they say is unreadable (`run` then reports why).
    pub fn log_format(&self) -> LogFormat {
        let layer = match (&self.log_format, &self.config) {
            (Some(f), _) => ConfigLayer {
                log_format: Some(f.clone()),
                ..ConfigLayer::default()
            },
            (None, Some(path)) => ConfigLayer::from_toml_file(path).unwrap_or_default(),
            (None, None) => ConfigLayer::default(),
        };
        layer.log_format().unwrap_or_default()
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = ctrl_c.await;
        }
    }
}
