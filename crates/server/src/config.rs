//! Server configuration from three sources: flags, environment variables (`SHARDKV_*`) and an
//! optional TOML file. Each source is a [`ConfigLayer`] of optional values; layers are
//! merged with the higher-priority one winning field by field (flags > environment > file
//! > defaults) and then [`ConfigLayer::resolve`]d into a checked [`ServerConfig`].
//!
//! The CLI turns flags and environment into a layer (clap reads both); this module reads the
//! file. A file looks like:
//!
//! ```toml
//! id = 1
//! listen = "127.0.0.1:7001"
//! peers = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
//! data-dir = "/var/lib/shardkv/n1"
//! max-raft-state = "64MiB"     # or "off"
//! request-timeout = "2s"
//! disk-reserve = "32MiB"
//! cluster-token = "shardkv"    # every member of a cluster gives the same token
//! groups = "0=ctrl,1=kv"        # the groups this process hosts a replica of (or group-id = 1)
//! shards = 64                   # the controller's shard count, fixed at cluster creation
//! bootstrap = true              # first start of a new group only: an empty data-dir may
//!                               # become a new member (otherwise it is refused)
//! join = true                   # first start of a member added to existing groups (under a
//!                               # new id): an empty data-dir starts as a learner; see
//!                               # docs/membership.md
//! max-connections = 4096        # open client and peer connections at most
//! idle-timeout = "5m"           # a connection silent this long is closed
//! admin-listen = "127.0.0.1:8001" # the admin HTTP port (metrics, health); "off": none;
//!                               # default: the gRPC port + 1000 on the same address
//! log-format = "json"           # or "text" (the default); read by the CLI
//! redis-listen = "127.0.0.1:9001" # a Redis Cluster (RESP) port (crate::redis); default off
//! redis-password-file = "/etc/shardkv/redis.pass" # clients of the RESP port must AUTH with
//!                               # the file's first line (as Redis's requirepass); default
//!                               # none ("off")
//! # TLS (all three or none; docs/security.md):
//! cert = "/etc/shardkv/n1.pem"  # this member's certificate (URI SAN shardkv://node/1)
//! key = "/etc/shardkv/n1.key"
//! cacert = "/etc/shardkv/ca.pem"
//! ```
//!
//! Addresses are `HOST:PORT`, `HOST` an IP address, `[IPv6]` or a DNS name: `peers` and
//! `ctrl` are checked and kept as given (the peer transport and clients resolve them on
//! every connect; the identity file stores them unresolved), `listen` and `admin-listen`
//! are resolved once, here ([`resolve_listen`]); a name that does not resolve is refused.
//!
//! A process hosts one replica of each group in `groups` (a controller group and KV groups),
//! each with its own Raft state, WAL and snapshots under `data-dir/g<gid>/`, all behind one
//! port; every group has the same members (`peers`).

use crate::units::{parse_bytes, parse_duration};
use serde::Deserialize;
use shardkv_net::tls::TlsFiles;
use shardkv_net::{CLUSTER_TOKEN_DEFAULT, PeerIdentity, cluster_id_from_token};
pub use shardkv_redis::Password;
use shardkv_types::{Gid, NodeId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Snapshot when the persisted Raft state exceeds this, unless configured otherwise.
pub const MAX_RAFT_STATE_DEFAULT: u64 = 64 << 20;
/// How long a client request may wait for its outcome inside the server.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
/// Writes are refused while the data directory's filesystem has less free space than this.
pub const DISK_RESERVE_DEFAULT: u64 = 32 << 20;
/// The group a server belongs to unless configured otherwise (today's single KV group).
pub const GROUP_ID_DEFAULT: Gid = Gid(1);
/// The shard controller group's id on the wire. Shard groups are numbered from 1 (the
/// controller reserves gid 0 for "unassigned", so no shard group can take it).
pub const CTRL_GID: Gid = Gid(0);
/// The most groups one process hosts.
pub const GROUPS_HOSTED_MAX: usize = 64;

/// What a hosted group replicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// The key-value store.
    Kv,
    /// The shard controller.
    Ctrl,
    /// A shard group: the keys of the shards the controller assigns it, moved in and out
    /// as the configuration changes.
    Shard,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Kv => "kv",
            Service::Ctrl => "ctrl",
            Service::Shard => "shard",
        }
    }
}
/// The admin port's default distance from the gRPC port (`shardkv up`'s members on
/// 7001-7003 serve admin on 8001-8003).
pub const ADMIN_PORT_OFFSET: u16 = 1000;

/// Where the admin HTTP port listens (see `crate::admin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminListen {
    /// `--admin-listen off`.
    Off,
    /// Not configured: the gRPC address with the port + [`ADMIN_PORT_OFFSET`]. If it cannot
    /// be bound, the server logs a warning and runs without an admin port.
    Default(SocketAddr),
    /// Configured: failing to bind it stops the server.
    Given(SocketAddr),
}

impl AdminListen {
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            AdminListen::Off => None,
            AdminListen::Default(a) | AdminListen::Given(a) => Some(a),
        }
    }

    /// `off`, an address, or the default next to `grpc` (off when the port would not fit).
    pub fn resolve(given: Option<&str>, grpc: SocketAddr) -> Result<AdminListen, String> {
        match given.map(str::trim) {
            Some("off" | "none") => Ok(AdminListen::Off),
            Some(s) => resolve_listen(s)
                .map(AdminListen::Given)
                .map_err(|e| format!("bad admin listen address: {e}")),
            None => Ok(grpc
                .port()
                .checked_add(ADMIN_PORT_OFFSET)
                .map_or(AdminListen::Off, |p| {
                    AdminListen::Default(SocketAddr::new(grpc.ip(), p))
                })),
        }
    }
}

/// How log lines are written (the CLI sets up logging; see docs/operations.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// The longest cluster token accepted, in bytes.
pub const CLUSTER_TOKEN_BYTES_MAX: usize = 256;

/// A checked configuration of one server.
///
/// Invariants: `peers` contains `id`; every id is non-zero; `cluster_id` is derived from
/// `cluster_token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub id: NodeId,
    /// Where the gRPC port (clients and peers) listens: `--listen` (or this member's
    /// `--peers` address), a name resolved once, here.
    pub listen: SocketAddr,
    /// Every member of the group, this one included, with its address as given:
    /// `HOST:PORT`, `HOST` an IP literal or a name, which the peer transport resolves on
    /// every (re)connect and the identity file stores unresolved.
    pub peers: BTreeMap<NodeId, String>,
    /// This member's own directory; a directory of another node id is refused.
    pub data_dir: PathBuf,
    /// Snapshot when the persisted Raft state exceeds this many bytes; never when `None`.
    pub max_raft_state: Option<u64>,
    pub request_timeout: Duration,
    /// Free bytes the data directory's filesystem keeps; below it writes get `NoSpace`.
    pub disk_reserve_bytes: u64,
    /// Names the cluster; the same on every member (like etcd's `--initial-cluster-token`).
    pub cluster_token: String,
    /// `cluster_id_from_token(cluster_token)`: stamped on every Raft batch and stored in the
    /// data directory.
    pub cluster_id: u64,
    /// The groups this process hosts a replica of. Invariant: not empty, at most
    /// [`GROUPS_HOSTED_MAX`], the controller only as [`CTRL_GID`], no KV group 0.
    pub groups: BTreeMap<Gid, Service>,
    /// The controller's shard count (a power of two, at most 16384).
    pub shards: u32,
    /// The shard controller's client addresses in node order (the i-th is node i+1), which
    /// this process's shard groups poll for configs. Empty when it hosts no shard group.
    pub ctrl: Vec<String>,

    // -- bootstrap (issue 10, item 2) --
    /// An empty data directory may become a new member (the first start of a new group).
    /// Without it an empty directory is refused: it is what a member that lost its data
    /// looks like (see `shardkv_storage::check_identity`).
    pub bootstrap: bool,
    // -- end bootstrap --
    /// An empty data directory may become a new *learner* of the existing groups (a
    /// member being added under a new id, docs/membership.md). Exclusive with `bootstrap`.
    pub join: bool,
    // Connections (see `listen`).
    /// The most open client and peer connections (lowered to stay below the descriptor
    /// limit), of the gRPC and RESP ports together.
    pub max_connections: usize,
    /// A connection whose peer sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The admin HTTP port (metrics, health, status).
    pub admin_listen: AdminListen,
    /// The Redis Cluster (RESP) port ([`crate::redis`]); `None`: none (the default).
    pub redis_listen: Option<SocketAddr>,
    /// The password the RESP port's clients must give (`AUTH`, as Redis's `requirepass`);
    /// `None`: none.
    pub redis_password: Option<Arc<Password>>,
    // --- TLS (docs/security.md) ---
    /// The certificate (presented when serving and to other members), its key and the CA
    /// every connection's certificate must be signed by; `None`: plaintext.
    pub tls: Option<TlsFiles>,
}

impl ServerConfig {
    /// The identity stamped on the Raft traffic of group `gid`.
    pub fn peer_identity(&self, gid: Gid) -> PeerIdentity {
        PeerIdentity {
            cluster_id: self.cluster_id,
            group_id: gid,
        }
    }

    /// Group `gid`'s own directory: `data-dir/g<gid>`.
    pub fn group_dir(&self, gid: Gid) -> PathBuf {
        self.data_dir.join(format!("g{}", gid.0))
    }
}

/// One source of configuration: every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigLayer {
    pub id: Option<u64>,
    pub listen: Option<String>,
    pub peers: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// A byte size, or `off` to never snapshot.
    pub max_raft_state: Option<String>,
    pub request_timeout: Option<String>,
    pub disk_reserve: Option<String>,
    pub cluster_token: Option<String>,
    pub group_id: Option<u64>,
    /// `GID=kv|ctrl|shard,...`: the groups hosted (instead of `group-id`).
    pub groups: Option<String>,
    pub shards: Option<u32>,
    /// The controller's addresses, `HOST:PORT,...` in node order (shard groups only).
    pub ctrl: Option<String>,

    // -- bootstrap (issue 10, item 2) --
    /// Allow an empty data directory to become a new member.
    pub bootstrap: Option<bool>,
    // -- end bootstrap --
    /// Allow an empty data directory to become a learner of existing groups.
    pub join: Option<bool>,
    // Connections (see `listen`).
    pub max_connections: Option<usize>,
    /// A duration (e.g. `5m`).
    pub idle_timeout: Option<String>,
    /// `HOST:PORT` or `off`.
    pub admin_listen: Option<String>,
    /// `HOST:PORT` or `off` (the default).
    pub redis_listen: Option<String>,
    /// A file whose first line is the RESP port's password; `off` or `none`: no password.
    pub redis_password_file: Option<PathBuf>,
    /// `text` or `json`; read by the CLI before logging starts (see [`ConfigLayer::log_format`]).
    pub log_format: Option<String>,
    // --- TLS: `cert`, `key` and `cacert`, all three or none ---
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cacert: Option<PathBuf>,
}

impl ConfigLayer {
    /// Reads a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<ConfigLayer, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("bad config file {}: {e}", path.display()))
    }

    /// `self` with every field it lacks taken from `lower`.
    pub fn over(self, lower: ConfigLayer) -> ConfigLayer {
        ConfigLayer {
            id: self.id.or(lower.id),
            listen: self.listen.or(lower.listen),
            peers: self.peers.or(lower.peers),
            data_dir: self.data_dir.or(lower.data_dir),
            max_raft_state: self.max_raft_state.or(lower.max_raft_state),
            request_timeout: self.request_timeout.or(lower.request_timeout),
            disk_reserve: self.disk_reserve.or(lower.disk_reserve),
            cluster_token: self.cluster_token.or(lower.cluster_token),
            group_id: self.group_id.or(lower.group_id),
            groups: self.groups.or(lower.groups),
            shards: self.shards.or(lower.shards),
            ctrl: self.ctrl.or(lower.ctrl),
            // -- bootstrap --
            bootstrap: self.bootstrap.or(lower.bootstrap),
            join: self.join.or(lower.join),
            max_connections: self.max_connections.or(lower.max_connections),
            idle_timeout: self.idle_timeout.or(lower.idle_timeout),
            admin_listen: self.admin_listen.or(lower.admin_listen),
            redis_listen: self.redis_listen.or(lower.redis_listen),
            redis_password_file: self.redis_password_file.or(lower.redis_password_file),
            log_format: self.log_format.or(lower.log_format),
            // TLS
            cert: self.cert.or(lower.cert),
            key: self.key.or(lower.key),
            cacert: self.cacert.or(lower.cacert),
        }
    }

    /// The log format this layer asks for (default text).
    pub fn log_format(&self) -> Result<LogFormat, String> {
        self.log_format
            .as_deref()
            .map_or(Ok(LogFormat::Text), LogFormat::parse)
    }

    /// Checks the layer and fills defaults.
    pub fn resolve(self) -> Result<ServerConfig, String> {
        self.log_format()?;
        let id = match self.id {
            Some(0) => return Err("node id 0 is reserved; use 1 or more".into()),
            Some(id) => NodeId(id),
            None => return Err("missing the node id (--id or SHARDKV_ID)".into()),
        };
        let peers =
            parse_peers(self.peers.as_deref().ok_or(
                "missing the group's members (--peers 1=HOST:PORT,2=... or SHARDKV_PEERS)",
            )?)?;
        let own = peers
            .get(&id)
            .ok_or_else(|| format!("--peers does not list this node ({id})"))?;
        let listen = match self.listen.as_deref() {
            Some(s) => resolve_listen(s).map_err(|e| format!("bad listen address: {e}"))?,
            None => resolve_listen(own).map_err(|e| {
                format!("cannot listen on this node's --peers address (or give --listen): {e}")
            })?,
        };
        let data_dir = self
            .data_dir
            .ok_or("missing the data directory (--data-dir or SHARDKV_DATA_DIR)")?;
        let max_raft_state = match self.max_raft_state.as_deref().map(str::trim) {
            None => Some(MAX_RAFT_STATE_DEFAULT),
            Some("off" | "none") => None,
            Some(s) => Some(parse_bytes(s)?),
        };
        let request_timeout = match self.request_timeout {
            None => REQUEST_TIMEOUT_DEFAULT,
            Some(s) => parse_duration(&s)?,
        };
        if request_timeout.is_zero() {
            return Err("request timeout must be positive".into());
        }
        let disk_reserve_bytes = match self.disk_reserve {
            None => DISK_RESERVE_DEFAULT,
            Some(s) => parse_bytes(&s)?,
        };
        let cluster_token = self
            .cluster_token
            .unwrap_or_else(|| CLUSTER_TOKEN_DEFAULT.to_string());
        if cluster_token.is_empty() || cluster_token.len() > CLUSTER_TOKEN_BYTES_MAX {
            return Err(format!(
                "the cluster token must be 1 to {CLUSTER_TOKEN_BYTES_MAX} bytes long"
            ));
        }
        let groups = match (self.groups.as_deref(), self.group_id) {
            (Some(_), Some(_)) => {
                return Err("give either --groups or --group-id, not both".into());
            }
            (Some(list), None) => parse_groups(list)?,
            (None, Some(0)) => {
                return Err("group id 0 is the controller's; a KV group uses 1 or more".into());
            }
            (None, Some(g)) => [(Gid(g), Service::Kv)].into(),
            (None, None) => [(GROUP_ID_DEFAULT, Service::Kv)].into(),
        };
        let shards = self.shards.unwrap_or(shardkv_types::SHARDS_DEFAULT);
        shardkv_types::check_shard_count(shards).map_err(|e| e.to_string())?;
        let ctrl = resolve_ctrl(self.ctrl.as_deref(), &groups, &peers)?;
        let (max_connections, idle_timeout) =
            resolve_connections(self.max_connections, self.idle_timeout.as_deref())?;
        let tls = resolve_tls(self.cert, self.key, self.cacert)?;
        let admin_listen = AdminListen::resolve(self.admin_listen.as_deref(), listen)?;
        let redis_listen = match self.redis_listen.as_deref().map(str::trim) {
            None | Some("off" | "none") => None,
            Some(s) => {
                Some(resolve_listen(s).map_err(|e| format!("bad redis listen address: {e}"))?)
            }
        };
        if redis_listen.is_some() && tls.is_some() {
            // Plaintext RESP beside mutual TLS would let anyone without a certificate in.
            return Err(
                "the Redis port does not serve TLS: give --redis-listen off (or none) \
                        with --cert, --key and --cacert"
                    .into(),
            );
        }
        let redis_password = match (&password_file(self.redis_password_file), redis_listen) {
            (None, _) => None,
            (Some(path), Some(_)) => Some(Arc::new(read_password(path)?)),
            (Some(_), None) => {
                return Err("--redis-password-file needs --redis-listen (the RESP port)".into());
            }
        };
        let (bootstrap, join) = (self.bootstrap.unwrap_or(false), self.join.unwrap_or(false));
        if bootstrap && join {
            return Err(
                "give --bootstrap (the first start of a new group) or --join (a new member of \
                 existing groups), not both"
                    .into(),
            );
        }
        if join && peers.len() < 2 {
            return Err("--join needs --peers listing the group's members besides this one".into());
        }
        Ok(ServerConfig {
            id,
            listen,
            peers,
            data_dir,
            max_raft_state,
            request_timeout,
            disk_reserve_bytes,
            cluster_id: cluster_id_from_token(&cluster_token),
            cluster_token,
            groups,
            shards,
            ctrl,
            // -- bootstrap --
            bootstrap,
            join,
            max_connections,
            idle_timeout,
            admin_listen,
            redis_listen,
            redis_password,
            tls,
        })
    }
}

/// A Redis password file as given (a flag, the environment, the TOML file): `None` for
/// none, `off` or `none` (blanks around it ignored).
pub fn password_file(given: Option<PathBuf>) -> Option<PathBuf> {
    given.filter(|p| !matches!(p.to_str().map(str::trim), Some("off" | "none" | "")))
}

/// The longest Redis password accepted (Redis's own have no limit; 4 KiB is ample).
pub const PASSWORD_LINE_MAX: usize = 4096;

/// The RESP port's password: the first line of `path` (its line ending dropped), which must
/// not be empty.
pub fn read_password(path: &Path) -> Result<Password, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| {
        format!(
            "cannot read the Redis password file {}: {e}",
            path.display()
        )
    };
    // A bounded read: a wrong path (a device, a huge file) fails instead of filling memory.
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(PASSWORD_LINE_MAX as u64 + 2).read_to_end(&mut text))
        .map_err(cannot)?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > PASSWORD_LINE_MAX {
        return Err(format!(
            "the first line of the Redis password file {} is longer than {PASSWORD_LINE_MAX} bytes",
            path.display()
        ));
    }
    Password::new(line.to_vec()).ok_or_else(|| {
        format!(
            "the Redis password file {} has an empty first line",
            path.display()
        )
    })
}

/// The connection limit and idle timeout, checked (both must be positive).
fn resolve_connections(
    max_connections: Option<usize>,
    idle_timeout: Option<&str>,
) -> Result<(usize, Duration), String> {
    let max_connections = max_connections.unwrap_or(crate::listen::MAX_CONNECTIONS_DEFAULT);
    if max_connections == 0 {
        return Err("max-connections must be at least 1".into());
    }
    let idle_timeout = match idle_timeout {
        None => crate::listen::IDLE_TIMEOUT_DEFAULT,
        Some(s) => parse_duration(s)?,
    };
    if idle_timeout.is_zero() {
        return Err("idle-timeout must be positive".into());
    }
    Ok((max_connections, idle_timeout))
}

/// TLS is on when `--cert`, `--key` and `--cacert` are all given, off when none is.
fn resolve_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cacert: Option<PathBuf>,
) -> Result<Option<TlsFiles>, String> {
    match (cert, key, cacert) {
        (Some(cert), Some(key), Some(cacert)) => Ok(Some(TlsFiles { cert, key, cacert })),
        (None, None, None) => Ok(None),
        _ => Err(
            "TLS needs all of --cert, --key and --cacert (SHARDKV_CERT, SHARDKV_KEY, \
             SHARDKV_CACERT), or none of them"
                .into(),
        ),
    }
}

/// The controller addresses shard groups poll: the given list, or (for a process that hosts
/// the controller itself) the members' addresses in node order, since every member hosts the
/// same groups. Needed only when a shard group is hosted.
fn resolve_ctrl(
    given: Option<&str>,
    groups: &BTreeMap<Gid, Service>,
    peers: &BTreeMap<NodeId, String>,
) -> Result<Vec<String>, String> {
    if !groups.values().any(|s| *s == Service::Shard) {
        return Ok(Vec::new());
    }
    if let Some(list) = given {
        let addrs: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        // `HOST:PORT` (the i-th is node i+1) or `ID=HOST:PORT`.
        let addr_of = |a: &String| a.split_once('=').map_or(a.clone(), |(_, x)| x.to_string());
        if let Some((bad, e)) = addrs
            .iter()
            .find_map(|a| host_port(addr_of(a).trim()).err().map(|e| (a, e)))
        {
            return Err(format!("bad controller address {bad:?} in --ctrl: {e}"));
        }
        if addrs.is_empty() {
            return Err("--ctrl lists no addresses".into());
        }
        return Ok(addrs);
    }
    if groups.contains_key(&CTRL_GID) {
        // With ids: after a membership change the members are not 1..=n.
        return Ok(peers
            .iter()
            .map(|(id, a)| format!("{}={a}", id.0))
            .collect());
    }
    Err(
        "a shard group needs the controller's addresses (--ctrl HOST:PORT,... or \
         SHARDKV_CTRL), unless this process hosts the controller (0=ctrl)"
            .into(),
    )
}

/// Parses `0=ctrl,1=kv,2=kv`: the groups a process hosts.
pub fn parse_groups(s: &str) -> Result<BTreeMap<Gid, Service>, String> {
    let mut groups = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (gid, kind) = item
            .split_once('=')
            .ok_or_else(|| format!("group {item:?} is not GID=kv, GID=shard or GID=ctrl"))?;
        let gid: u64 = gid
            .trim()
            .parse()
            .map_err(|e| format!("bad group id in {item:?}: {e}"))?;
        let service = match kind.trim() {
            "kv" => Service::Kv,
            "ctrl" => Service::Ctrl,
            "shard" => Service::Shard,
            other => {
                return Err(format!(
                    "group {gid}: unknown service {other:?} (kv, shard or ctrl)"
                ));
            }
        };
        match (Gid(gid), service) {
            (CTRL_GID, Service::Kv | Service::Shard) => {
                return Err("group 0 is the controller's; a KV group uses 1 or more".into());
            }
            (g, Service::Ctrl) if g != CTRL_GID => {
                return Err(format!("the controller group is group 0, not {g}"));
            }
            _ => {}
        }
        if groups.insert(Gid(gid), service).is_some() {
            return Err(format!("group {gid} is listed twice"));
        }
    }
    if groups.is_empty() {
        return Err("--groups lists no groups".into());
    }
    if groups.len() > GROUPS_HOSTED_MAX {
        return Err(format!(
            "--groups lists {} groups; one process hosts at most {GROUPS_HOSTED_MAX}",
            groups.len()
        ));
    }
    Ok(groups)
}

/// Checks that `s` is `HOST:PORT` (`HOST` an IPv4 literal, `[IPv6]` or a DNS name, `PORT`
/// 1 to 65535) without resolving it; returns it trimmed, as given.
pub fn host_port(s: &str) -> Result<String, String> {
    let s = s.trim();
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("{s:?}: bad port {port:?} (1 to 65535)")),
    }
    let v6 = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let ok = match v6 {
        Some(ip) => ip.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            // A DNS name (RFC 1123 labels; `_` allowed, as some service names use it) or
            // an IPv4 literal, which is made of the same characters.
            host.len() <= 253
                && host.split('.').all(|label| {
                    (1..=63).contains(&label.len())
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                })
        }
    };
    if !ok {
        return Err(format!(
            "{s:?}: bad host {host:?} (an IP address, [IPv6] or a DNS name)"
        ));
    }
    Ok(s.to_string())
}

/// Resolves a listen address `HOST:PORT` (an IP literal, or a name resolved now, once: the
/// first address it resolves to). Port 0 asks the system for a free port.
pub fn resolve_listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port0 = s.strip_suffix(":0").map(|h| format!("{h}:1"));
    host_port(port0.as_deref().unwrap_or(s))?;
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// Parses `1=127.0.0.1:7001,2=db-2.example:7001`: addresses are checked, not resolved.
pub fn parse_peers(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("peer {item:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|e| format!("bad peer id in {item:?}: {e}"))?;
        if id == 0 {
            return Err(format!("peer {item:?}: node id 0 is reserved"));
        }
        let addr = host_port(addr).map_err(|e| format!("bad peer address in {item:?}: {e}"))?;
        if peers.insert(NodeId(id), addr).is_some() {
            return Err(format!("peer {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("--peers lists no members".into());
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> ConfigLayer {
        ConfigLayer {
            id: Some(2),
            peers: Some("1=127.0.0.1:7001, 2=127.0.0.1:7002,3=127.0.0.1:7003".into()),
            data_dir: Some("/tmp/n2".into()),
            ..ConfigLayer::default()
        }
    }

    #[test]
    fn bootstrap_is_off_unless_a_layer_sets_it() {
        assert!(!layer().resolve().expect("valid").bootstrap);
        let file: ConfigLayer = toml::from_str("bootstrap = true").expect("toml");
        assert!(layer().over(file).resolve().expect("valid").bootstrap);
    }

    #[test]
    fn defaults_fill_what_no_layer_sets() {
        let c = layer().resolve().expect("valid");
        assert_eq!(c.id, NodeId(2));
        assert_eq!(c.listen, "127.0.0.1:7002".parse().expect("addr"));
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.max_raft_state, Some(MAX_RAFT_STATE_DEFAULT));
        assert_eq!(c.request_timeout, REQUEST_TIMEOUT_DEFAULT);
        assert_eq!(c.cluster_token, CLUSTER_TOKEN_DEFAULT);
        assert_eq!(c.cluster_id, cluster_id_from_token(CLUSTER_TOKEN_DEFAULT));
        assert_eq!(c.groups, [(GROUP_ID_DEFAULT, Service::Kv)].into());
    }

    #[test]
    fn cluster_token_and_group_id_come_from_any_layer() {
        // Goal: identity settings layer like every other setting.
        let file: ConfigLayer =
            toml::from_str("cluster-token = \"prod-eu\"\ngroup-id = 7").expect("toml");
        let c = layer().over(file.clone()).resolve().expect("valid");
        assert_eq!(c.cluster_token, "prod-eu");
        assert_eq!(c.cluster_id, cluster_id_from_token("prod-eu"));
        assert_eq!(c.groups, [(Gid(7), Service::Kv)].into());
        let flags = ConfigLayer {
            group_id: Some(3),
            ..layer()
        };
        let c = flags.over(file).resolve().expect("valid");
        assert_eq!(c.groups, [(Gid(3), Service::Kv)].into());
        let zero = ConfigLayer {
            group_id: Some(0),
            ..layer()
        };
        assert!(zero.resolve().unwrap_err().contains("controller"));
        let empty = ConfigLayer {
            cluster_token: Some(String::new()),
            ..layer()
        };
        assert!(empty.resolve().unwrap_err().contains("cluster token"));
    }

    #[test]
    fn a_process_hosts_the_listed_groups_each_in_its_own_directory() {
        // Goal: `groups` lists what one process hosts; the controller is group 0 only.
        let c = ConfigLayer {
            groups: Some("0=ctrl, 1=kv,2=kv".into()),
            shards: Some(16),
            ..layer()
        }
        .resolve()
        .expect("valid");
        let want = [
            (CTRL_GID, Service::Ctrl),
            (Gid(1), Service::Kv),
            (Gid(2), Service::Kv),
        ];
        assert_eq!(c.groups, want.into());
        assert_eq!(c.shards, 16);
        assert_eq!(c.group_dir(Gid(2)), PathBuf::from("/tmp/n2/g2"));
        for (bad, why) in [
            ("0=kv", "controller"),
            ("3=ctrl", "group 0"),
            ("1=kv,1=kv", "twice"),
            ("1=redis", "unknown service"),
            ("", "no groups"),
        ] {
            let l = ConfigLayer {
                groups: Some(bad.into()),
                ..layer()
            };
            let e = l.resolve().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let both = ConfigLayer {
            groups: Some("1=kv".into()),
            group_id: Some(1),
            ..layer()
        };
        assert!(both.resolve().unwrap_err().contains("either"));
        let bad_shards = ConfigLayer {
            shards: Some(10),
            ..layer()
        };
        assert!(bad_shards.resolve().is_err());
    }

    #[test]
    fn shard_groups_poll_the_given_controller_or_the_members_when_hosting_it() {
        // Goal: a shard group always knows where the controller is, in node order.
        let hosted = ConfigLayer {
            groups: Some("0=ctrl,1=shard,2=shard".into()),
            ..layer()
        }
        .resolve()
        .expect("valid");
        assert_eq!(hosted.groups[&Gid(1)], Service::Shard);
        assert_eq!(
            hosted.ctrl,
            ["1=127.0.0.1:7001", "2=127.0.0.1:7002", "3=127.0.0.1:7003"],
            "the members' addresses, with their node ids"
        );
        let given = ConfigLayer {
            groups: Some("3=shard".into()),
            ctrl: Some("127.0.0.1:9001, 127.0.0.1:9002".into()),
            ..layer()
        }
        .resolve()
        .expect("valid");
        assert_eq!(given.ctrl, ["127.0.0.1:9001", "127.0.0.1:9002"]);
        let kv_only = layer().resolve().expect("valid");
        assert!(
            kv_only.ctrl.is_empty(),
            "no shard group, no controller needed"
        );
        for (groups, ctrl, why) in [
            ("3=shard", None, "--ctrl"),
            ("3=shard", Some("nohost"), "bad controller address"),
            ("0=shard", None, "controller's"),
        ] {
            let l = ConfigLayer {
                groups: Some(groups.into()),
                ctrl: ctrl.map(String::from),
                ..layer()
            };
            let e = l.resolve().unwrap_err();
            assert!(e.contains(why), "{groups} {ctrl:?}: {e}");
        }
    }

    #[test]
    fn higher_layers_win_field_by_field() {
        let file: ConfigLayer = toml::from_str(
            "id = 3\nmax-raft-state = \"1MiB\"\nrequest-timeout = \"500ms\"\ndisk-reserve = \"0\"",
        )
        .expect("toml");
        let flags = ConfigLayer {
            max_raft_state: Some("off".into()),
            ..layer()
        };
        let c = flags.over(file).resolve().expect("valid");
        assert_eq!(c.id, NodeId(2), "the flag's id wins over the file's");
        assert_eq!(c.max_raft_state, None);
        assert_eq!(c.request_timeout, Duration::from_millis(500));
        assert_eq!(c.disk_reserve_bytes, 0);
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        let no_self = ConfigLayer {
            id: Some(9),
            ..layer()
        };
        assert!(no_self.resolve().unwrap_err().contains("does not list"));
        assert!(parse_peers("1=127.0.0.1:1,1=127.0.0.1:2").is_err());
        assert!(parse_peers("x=127.0.0.1:1").is_err());
        assert!(parse_peers("1:127.0.0.1:1").is_err());
        let unknown: Result<ConfigLayer, _> = toml::from_str("colour = \"blue\"");
        assert!(unknown.is_err());
    }

    #[test]
    fn addresses_may_be_names_kept_as_given_and_listen_resolves_once() {
        // Goal: --peers and --ctrl take DNS names (Kubernetes, compose), stored as given
        // for the transport to resolve on every connect; --listen (or this member's peer
        // address) is resolved at start; bad ones are refused with the reason.
        let peers = parse_peers("1=localhost:7001, 2=db-2.shardkv.svc:7001,3=[::1]:7003")
            .expect("names and literals");
        assert_eq!(peers[&NodeId(2)], "db-2.shardkv.svc:7001");
        assert_eq!(peers[&NodeId(3)], "[::1]:7003");
        for bad in [
            "1=db:0",
            "1=db:x",
            "1=db",
            "1=-db:1",
            "1=d b:1",
            "1=[nope]:1",
            "1=a..b:1",
        ] {
            let e = parse_peers(bad).unwrap_err();
            assert!(e.contains("bad peer address"), "{bad}: {e}");
        }
        let named = ConfigLayer {
            id: Some(1),
            peers: Some("1=localhost:7001,2=db-2.shardkv.svc:7001".into()),
            data_dir: Some("/tmp/x".into()),
            groups: Some("0=ctrl,1=shard".into()),
            ..ConfigLayer::default()
        };
        let c = named.clone().resolve().expect("a name in --peers");
        assert!(c.listen.ip().is_loopback(), "{}", c.listen);
        assert_eq!(c.listen.port(), 7001);
        assert_eq!(c.ctrl, ["1=localhost:7001", "2=db-2.shardkv.svc:7001"]);
        let unresolvable = ConfigLayer {
            listen: Some("no-such-host.invalid:7001".into()),
            ..named.clone()
        };
        let e = unresolvable.resolve().unwrap_err();
        assert!(
            e.contains("cannot resolve") && e.contains("no-such-host.invalid"),
            "{e}"
        );
        let ctrl = ConfigLayer {
            id: Some(1),
            peers: Some("1=127.0.0.1:7001".into()),
            data_dir: Some("/tmp/x".into()),
            groups: Some("1=shard".into()),
            ctrl: Some("ctrl-0.example:7001,ctrl-1.example:7001".into()),
            ..ConfigLayer::default()
        };
        assert_eq!(ctrl.clone().resolve().expect("named ctrl").ctrl.len(), 2);
        let bad_ctrl = ConfigLayer {
            ctrl: Some("ctrl 0:7001".into()),
            ..ctrl
        };
        assert!(bad_ctrl.resolve().unwrap_err().contains("--ctrl"));
        assert_eq!(
            resolve_listen("127.0.0.1:0").expect("port 0"),
            "127.0.0.1:0".parse::<SocketAddr>().expect("addr")
        );
    }

    #[test]
    fn the_admin_port_defaults_to_the_grpc_port_plus_1000_or_is_given_or_off() {
        // Goal: the admin address rule (default, given, off, out of range, bad); method: layers.
        let c = layer().resolve().expect("valid");
        let default = "127.0.0.1:8002".parse().expect("addr");
        assert_eq!(c.admin_listen, AdminListen::Default(default));
        let file: ConfigLayer = toml::from_str("admin-listen = \"0.0.0.0:9100\"").expect("toml");
        let c = layer().over(file).resolve().expect("valid");
        let given = "0.0.0.0:9100".parse().expect("addr");
        assert_eq!(c.admin_listen, AdminListen::Given(given));
        let off = ConfigLayer {
            admin_listen: Some("off".into()),
            ..layer()
        };
        assert_eq!(off.resolve().expect("valid").admin_listen, AdminListen::Off);
        let high = ConfigLayer {
            listen: Some("127.0.0.1:65000".into()),
            ..layer()
        };
        assert_eq!(
            high.resolve().expect("valid").admin_listen,
            AdminListen::Off
        );
        let bad = ConfigLayer {
            admin_listen: Some("nowhere".into()),
            ..layer()
        };
        assert!(bad.resolve().unwrap_err().contains("admin listen"));
    }

    #[test]
    fn the_redis_password_is_the_files_first_line_and_needs_the_port() {
        // Goal: no password by default; the first line of the file (without its line
        // ending); an empty or missing file and a password without a port are refused.
        let dir = tempfile::tempdir().expect("tmp");
        let with = |content: &[u8], listen: Option<&str>| {
            let path = dir.path().join("pass");
            std::fs::write(&path, content).expect("write");
            ConfigLayer {
                redis_listen: listen.map(str::to_string),
                redis_password_file: Some(path),
                ..layer()
            }
            .resolve()
        };
        let port = Some("127.0.0.1:9002");
        assert_eq!(layer().resolve().expect("valid").redis_password, None);
        let c = with(b"s3cret\r\nignored\n", port).expect("valid");
        let p = c.redis_password.clone().expect("a password");
        assert!(p.matches(b"s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(with(b"\nx", port).unwrap_err().contains("empty first line"));
        assert!(
            with(b"pw", None)
                .unwrap_err()
                .contains("needs --redis-listen")
        );
        let missing = ConfigLayer {
            redis_listen: port.map(str::to_string),
            redis_password_file: Some(dir.path().join("none")),
            ..layer()
        };
        assert!(missing.resolve().unwrap_err().contains("cannot read"));
        let long = vec![b'x'; PASSWORD_LINE_MAX + 1];
        assert!(with(&long, port).unwrap_err().contains("longer than"));
        let mut longest = vec![b'y'; PASSWORD_LINE_MAX];
        longest.extend_from_slice(b"\r\n");
        let c = with(&longest, port).expect("a password of the longest length");
        assert!(
            c.redis_password
                .expect("set")
                .matches(&longest[..PASSWORD_LINE_MAX])
        );
        let off = ConfigLayer {
            redis_password_file: Some("off".into()),
            ..layer()
        };
        assert_eq!(off.resolve().expect("valid").redis_password, None);
    }

    #[test]
    fn the_redis_port_is_off_unless_given() {
        // Goal: no RESP port by default, a given one resolved, `off` and bad ones handled.
        assert_eq!(layer().resolve().expect("valid").redis_listen, None);
        let file: ConfigLayer = toml::from_str("redis-listen = \"127.0.0.1:9002\"").expect("toml");
        let c = layer().over(file).resolve().expect("valid");
        assert_eq!(
            c.redis_listen,
            Some("127.0.0.1:9002".parse().expect("addr"))
        );
        let off = ConfigLayer {
            redis_listen: Some("off".into()),
            ..layer()
        };
        assert_eq!(off.resolve().expect("valid").redis_listen, None);
        let bad = ConfigLayer {
            redis_listen: Some("nowhere".into()),
            ..layer()
        };
        assert!(bad.resolve().unwrap_err().contains("redis listen"));
        let with_tls = ConfigLayer {
            redis_listen: Some("127.0.0.1:9002".into()),
            cert: Some("c.pem".into()),
            key: Some("k.pem".into()),
            cacert: Some("ca.pem".into()),
            ..layer()
        };
        assert!(
            with_tls
                .resolve()
                .unwrap_err()
                .contains("does not serve TLS")
        );
    }

    #[test]
    fn the_log_format_is_text_json_or_refused() {
        // Goal: the log format layers like every setting and refuses unknown values.
        assert_eq!(layer().log_format(), Ok(LogFormat::Text));
        let file: ConfigLayer = toml::from_str("log-format = \"json\"").expect("toml");
        assert_eq!(file.log_format(), Ok(LogFormat::Json));
        let bad = ConfigLayer {
            log_format: Some("xml".into()),
            ..layer()
        };
        assert!(bad.resolve().unwrap_err().contains("log format"));
    }

    #[test]
    fn tls_needs_all_three_files_or_none() {
        // Goal: a half-configured TLS never starts a plaintext server.
        assert_eq!(layer().resolve().expect("valid").tls, None);
        let file: ConfigLayer =
            toml::from_str("cert = \"n2.pem\"\nkey = \"n2.key\"\ncacert = \"ca.pem\"")
                .expect("toml");
        let c = layer().over(file).resolve().expect("valid");
        let files = c.tls.expect("tls on");
        assert_eq!(files.cert, PathBuf::from("n2.pem"));
        assert_eq!(files.cacert, PathBuf::from("ca.pem"));
        let half = ConfigLayer {
            cert: Some("n2.pem".into()),
            key: Some("n2.key".into()),
            ..layer()
        };
        assert!(half.resolve().unwrap_err().contains("--cacert"));
    }
}
