//! `shardkv up`: a local sharded cluster on loopback, one `shardkv server` child process per
//! member (this same executable), data and logs under one directory. Each process hosts one
//! replica of the shard controller (group 0) and of every shard group (1..=`--groups`), so
//! `shardkv admin` and the KV commands both work against the same endpoints. On the first
//! start (the controller has no config yet) the shard groups are joined, so the shards are
//! spread over them. Prints the endpoints, the shard map and how to use them, then waits;
//! SIGTERM or Ctrl-C stops every member gracefully (SIGKILL after a grace period). Running
//! it again on the same directory restarts the cluster with its data and shard map (nothing
//! is joined again; a larger `--groups` starts the new groups unjoined: `admin join` them).
//!
//! Identity: every member gets the same `--cluster-token`: the one given, or the one kept in
//! `<data-dir>/cluster-token`, or (first run) a new random one written there. Each member
//! records its peer list in its data directory, so `up --replicas 5` on a directory made
//! with 3 members is refused by the members (use the original count or a new directory).
//! Members start with `--bootstrap` only for groups no member has yet (see [`bootstrap`]):
//! a member whose directory was deleted refuses to start rather than rejoin empty.
//!
//! Each member serves its admin HTTP port (metrics, health; docs/operations.md) on its
//! gRPC port + 1000, which `up` prints (`off` when that port was taken after `up` checked).
//!
//! Redis: each member serves a Redis Cluster (RESP) port on its gRPC port + 2000
//! (`--redis-listen`; 9001-9003 for the default ports), so `redis-cli -c -p 9001` and
//! `redis-benchmark --cluster -p 9001` work against the cluster (docs/redis.md); `up` waits
//! until the first member's Redis port reports every slot served, and prints the
//! `redis-cli` line to try. `--no-redis` starts the members without it, and so does `--tls`
//! (the Redis port is plaintext only).
//!
//! Ports: before it creates or starts anything, `up` binds every member's gRPC, admin and
//! (unless `--no-redis`) Redis port on loopback; when one is in use (another cluster, another program) it exits 1 naming
//! that port. Before it reads anything from its members' ports it checks (on Linux) that
//! each one's listener belongs to its own member process, and exits 1 otherwise, so it never
//! reports another cluster's members or leader as its own ([`crate::ports`]).
//!
//! Every flag has an environment variable, `SHARDKV_UP_<FLAG>` (`SHARDKV_UP_BASE_PORT`,
//! ...; `SHARDKV_CLUSTER_TOKEN` for `--cluster-token`): `up`'s own names, so that the
//! members it starts, which inherit its environment, never read them as theirs.
//!
//! TLS: with `--tls`, `up` makes a throw-away CA and certificates under `<data-dir>/tls/`
//! ([`crate::certs`]), starts every member with `--cert`, `--key` and `--cacert`, talks to
//! them over TLS itself, and prints the client flags (and their `SHARDKV_*` form).

use crate::certs::ClusterCerts;
use crate::conn::{BASE_PORT_DEFAULT, ENDPOINTS_DEFAULT, runtime};
use crate::server_cmd::shutdown_signal;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use shardkv_client::{
    ClientOptions, ClientTlsConfig, Config, CtrlClient, Dial, Gid, NodeId, NodeStatus, Role,
    fetch_group_status_with,
};
use shardkv_host::leader_preference::preferred_leader;

use shardkv_server::config::{Password, password_file, read_password};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The groups every member hosts: the shard controller and shard groups 1..=`groups`.
fn hosted_groups(groups: u64) -> String {
    let shard_groups = (1..=groups).map(|g| format!(",{g}=shard"));
    std::iter::once("0=ctrl".to_string())
        .chain(shard_groups)
        .collect()
}

/// Whether member `id` starts with `--bootstrap`: when it lacks a group directory that
/// every member lacks (a new cluster, or new groups from a larger `--groups`). A member
/// missing a directory the others have lost its data: it starts without `--bootstrap`,
/// refuses to run and says why (see `shardkv_storage::check_identity`).
fn bootstrap(data_dir: &Path, replicas: u64, groups: u64, id: u64) -> bool {
    let missing = |member: u64, gid: u64| {
        !data_dir
            .join(format!("n{member}"))
            .join(format!("g{gid}"))
            .exists()
    };
    let lacked: Vec<u64> = (0..=groups).filter(|&g| missing(id, g)).collect();
    !lacked.is_empty()
        && lacked
            .iter()
            .all(|&g| (1..=replicas).all(|member| missing(member, g)))
}

/// How long the members get to elect a leader before `up` gives up.
const LEADER_WAIT: Duration = Duration::from_secs(20);
/// How long members get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(100);
/// How long `up` waits for the groups' leadership to reach their preferred members before
/// it shows the Redis line anyway.
const PREFERRED_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the members' data (n1/, n2/, ...) and logs (n1.log, ...).
    #[arg(long, env = "SHARDKV_UP_DATA_DIR", default_value = "shardkv-data")]
    data_dir: PathBuf,
    /// Member i listens on 127.0.0.1:(base-port + i - 1).
    #[arg(long, env = "SHARDKV_UP_BASE_PORT", default_value_t = BASE_PORT_DEFAULT)]
    base_port: u16,
    /// Number of members.
    #[arg(long, env = "SHARDKV_UP_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    replicas: u64,
    /// Passed to each member (e.g. 64MiB, or off).
    #[arg(long, env = "SHARDKV_UP_MAX_RAFT_STATE")]
    max_raft_state: Option<String>,
    /// Number of shard groups (each with a replica on every member). Joined on the first
    /// start only: more on a restart start unjoined (`shardkv admin join` them).
    #[arg(long, env = "SHARDKV_UP_GROUPS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    groups: u64,
    /// The shard count, fixed when the cluster is created (a power of two; default 64).
    #[arg(long, env = "SHARDKV_UP_SHARDS")]
    shards: Option<u32>,
    /// The cluster token every member gets (default: the one kept in the data directory,
    /// or a new random one on the first run).
    #[arg(long, env = "SHARDKV_CLUSTER_TOKEN")]
    cluster_token: Option<String>,
    /// Serve TLS with mutual authentication: make a throw-away CA and certificates under
    /// <data-dir>/tls/ (kept for later runs) and print the client flags to use.
    #[arg(long, env = "SHARDKV_UP_TLS")]
    tls: bool,
    /// Start the members without their Redis Cluster port (by default each serves one on
    /// its gRPC port + 2000; never with --tls: it is plaintext only).
    #[arg(long, env = "SHARDKV_UP_NO_REDIS")]
    no_redis: bool,
    /// A file whose first line is the password the Redis ports require (`AUTH`, `redis-cli
    /// -a` or `--askpass`), passed to every member; default: none (`off`), or the server's
    /// SHARDKV_REDIS_PASSWORD_FILE when that is set.
    #[arg(long, env = "SHARDKV_UP_REDIS_PASSWORD_FILE")]
    redis_password_file: Option<PathBuf>,
}

impl UpArgs {
    /// Whether the members serve Redis: unless `--no-redis`, or `--tls` (plaintext only).
    fn redis(&self) -> bool {
        !self.no_redis && !self.tls
    }
}

/// The environment variable `shardkv server` takes its Redis password file from.
const SERVER_PASSWORD_ENV: &str = "SHARDKV_REDIS_PASSWORD_FILE";

/// The file in `up`'s data directory that keeps the cluster token between runs.
const CLUSTER_TOKEN_FILE: &str = "cluster-token";

/// The token for this run: see the module docs. Refuses a given token that differs from
/// the kept one (the members would refuse it anyway, one by one, less clearly).
fn cluster_token(data_dir: &Path, given: Option<&str>) -> Result<String> {
    let path = data_dir.join(CLUSTER_TOKEN_FILE);
    let kept = match fs::read_to_string(&path) {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match (kept, given) {
        (Some(kept), Some(given)) if kept != given => bail!(
            "{} was created with cluster token {kept:?}, not {given:?}; run without \
             --cluster-token (or with the kept one), or use another --data-dir",
            data_dir.display()
        ),
        (Some(kept), _) => Ok(kept),
        (None, given) => {
            let token = match given {
                Some(t) => t.to_string(),
                None => format!("up-{:016x}", RandomState::new().hash_one(Instant::now())),
            };
            let tmp = data_dir.join(format!("{CLUSTER_TOKEN_FILE}.tmp"));
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{token}\n").as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(data_dir)?.sync_all()?;
            Ok(token)
        }
    }
}

/// One child process.
struct Member {
    id: u64,
    addr: String,
    /// Its Redis port, unless `--no-redis`.
    redis: Option<u16>,
    log: PathBuf,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Member {
    /// `Err` naming the member and its last logged error if it exited during startup.
    fn alive_or_error(&mut self) -> Result<()> {
        if !self.check() {
            bail!(
                "member n{} exited during startup{}; see {}",
                self.id,
                last_error(&self.log).map_or(String::new(), |e| format!(": {e}")),
                self.log.display()
            );
        }
        Ok(())
    }

    /// Notes (and reports once) that the member exited.
    fn check(&mut self) -> bool {
        if self.exited.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            eprintln!(
                "member n{} exited ({status}); see {}",
                self.id,
                self.log.display()
            );
            self.exited = Some(status);
        }
        self.exited.is_none()
    }
}

pub fn run(mut args: UpArgs) -> Result<ExitCode> {
    crate::ports::check_free(args.base_port, args.replicas, args.redis())?;
    // Read now (a bad file fails before anything starts), passed to the members by its
    // absolute path (they run in other directories). A SHARDKV_REDIS_PASSWORD_FILE exported
    // for `shardkv server` counts too, so that it does not start an open cluster.
    let own = password_file(args.redis_password_file.take());
    let server_env =
        std::env::var_os(SERVER_PASSWORD_ENV).and_then(|v| password_file(Some(v.into())));
    args.redis_password_file = match (own, args.redis()) {
        (Some(_), false) => {
            bail!("--redis-password-file needs the Redis ports (no --no-redis or --tls)")
        }
        (Some(file), true) => Some(file),
        (None, true) => server_env,
        (None, false) => None,
    };
    let redis_password = match &args.redis_password_file {
        None => None,
        Some(path) => {
            let password = read_password(path).map_err(|e| anyhow!(e))?;
            args.redis_password_file = Some(fs::canonicalize(path)?);
            Some(password)
        }
    };
    fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = fs::canonicalize(&args.data_dir)?;
    let token = cluster_token(&data_dir, args.cluster_token.as_deref())?;
    let addrs: Vec<String> = (0..args.replicas)
        .map(|i| format!("127.0.0.1:{}", u64::from(args.base_port) + i))
        .collect();
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let certs = match args.tls {
        true => Some(ClusterCerts::ensure(&data_dir.join("tls"), args.replicas)?),
        false => None,
    };
    let client_tls = match &certs {
        Some(c) => Some(
            shardkv_client::tls::client_config(&c.ca, Some((&c.client.cert, &c.client.key)))
                .context("the client certificate up made")?,
        ),
        None => None,
    };
    // Decided for every member before any starts: a started member creates its group
    // directories, after which the others would look like members that lost theirs.
    let bootstraps: Vec<bool> = (1..=args.replicas)
        .map(|id| bootstrap(&data_dir, args.replicas, args.groups, id))
        .collect();
    let mut members = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let spawned = spawn(
            &args,
            &data_dir,
            &token,
            (i as u64 + 1, bootstraps[i]),
            addr,
            &peers.join(","),
            certs.as_ref(),
        );
        match spawned {
            Ok(m) => members.push(m),
            Err(e) => {
                stop(&mut members);
                return Err(e);
            }
        }
    }
    let rt = runtime()?;
    let started = Started {
        data_dir: &data_dir,
        addrs: &addrs,
        groups: args.groups,
        tls: client_tls,
        certs: certs.as_ref(),
        redis_password,
    };
    let outcome = rt.block_on(supervise(&mut members, &started));
    stop(&mut members);
    outcome
}

fn spawn(
    args: &UpArgs,
    data_dir: &Path,
    token: &str,
    (id, bootstrap): (u64, bool),
    addr: &str,
    peers: &str,
    certs: Option<&ClusterCerts>,
) -> Result<Member> {
    let log = data_dir.join(format!("n{id}.log"));
    let out = File::options().create(true).append(true).open(&log)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("server")
        .args(["--id", &id.to_string(), "--peers", peers])
        .args(["--cluster-token", token])
        .args(["--groups", &hosted_groups(args.groups)])
        .arg("--data-dir")
        .arg(data_dir.join(format!("n{id}")))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    if let Some(m) = &args.max_raft_state {
        cmd.args(["--max-raft-state", m]);
    }
    if let Some(n) = args.shards {
        cmd.args(["--shards", &n.to_string()]);
    }
    if bootstrap {
        cmd.arg("--bootstrap");
    }
    // Explicitly off, too: the members inherit up's environment (SHARDKV_REDIS_LISTEN).
    let redis = match args.redis() {
        true => crate::ports::member_ports(args.base_port, id - 1)?.redis,
        false => None,
    };
    match redis {
        Some(port) => cmd.args(["--redis-listen", &format!("127.0.0.1:{port}")]),
        None => cmd.args(["--redis-listen", "off"]),
    };
    // The same for the password (over the environment and a config file alike).
    match (redis, &args.redis_password_file) {
        (Some(_), Some(file)) => cmd.arg("--redis-password-file").arg(file),
        _ => cmd.args(["--redis-password-file", "off"]),
    };
    if let Some(certs) = certs {
        let own = certs
            .members
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(_, f)| f)
            .context("no certificate for this member")?;
        cmd.arg("--cert").arg(&own.cert);
        cmd.arg("--key").arg(&own.key);
        cmd.arg("--cacert").arg(&certs.ca);
    }
    // SAFETY: the closure only makes the prctl syscall, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // Members die with `up` even if it is killed without a chance to stop them.
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().context("cannot start a member process")?;
    Ok(Member {
        id,
        addr: addr.to_string(),
        redis,
        log,
        child,
        exited: None,
    })
}

/// What `up` started and how to reach it.
struct Started<'a> {
    data_dir: &'a Path,
    addrs: &'a [String],
    groups: u64,
    /// How `up` itself connects with `--tls`.
    tls: Option<ClientTlsConfig>,
    certs: Option<&'a ClusterCerts>,
    /// What `up` gives the Redis ports before asking them anything.
    redis_password: Option<Password>,
}

impl Started<'_> {
    fn dial(&self, timeout: Duration) -> Dial {
        Dial {
            timeout,
            tls: self.tls.clone(),
        }
    }
}

/// Waits for the controller's leader, joins the shard groups on the first start, waits for
/// them to take the config, prints how to use the cluster, then waits for a signal.
async fn supervise(members: &mut [Member], started: &Started<'_>) -> Result<ExitCode> {
    let Started {
        data_dir,
        addrs,
        groups,
        ..
    } = *started;
    wait_for_own_ports(members).await?;
    let leader = wait_for_leader(members, started).await?;
    let config = join_on_first_start(started).await?;
    wait_for_groups(members, &config, started).await?;
    let redis = members.first().and_then(|m| m.redis);
    if let Some(port) = redis {
        let masters = wait_for_preferred_leaders(members, &config, started).await;
        let ask = RedisAsk {
            port,
            password: started.redis_password.as_ref(),
        };
        wait_for_redis(&ask, masters).await?;
    }
    let endpoints = addrs.join(",");
    println!(
        "shardkv: {} members up, each hosting the shard controller (group 0) and shard groups \
         1-{groups}; data and logs in {}",
        members.len(),
        data_dir.display()
    );
    for m in members.iter() {
        let mark = if Some(m.id) == leader {
            "  (leader)"
        } else {
            ""
        };
        let redis = m
            .redis
            .map_or(String::new(), |p| format!("  redis 127.0.0.1:{p}"));
        println!(
            "  n{}  {}  admin {}{redis}{mark}",
            m.id,
            m.addr,
            admin_shown(&m.addr).await
        );
    }
    print!("{}", crate::admin::table(&config));
    let mut env = if endpoints == ENDPOINTS_DEFAULT {
        String::new()
    } else {
        format!("export SHARDKV_ENDPOINTS={endpoints} SHARDKV_CTRL_ENDPOINTS={endpoints}; ")
    };
    if let Some(c) = started.certs {
        println!(
            "tls:  every connection needs a certificate signed by {}; clients use\n      \
             --cacert {} --cert {} --key {}",
            c.ca.display(),
            c.ca.display(),
            c.client.cert.display(),
            c.client.key.display()
        );
        let tls_env = format!(
            "export SHARDKV_CACERT={} SHARDKV_CERT={} SHARDKV_KEY={}; ",
            c.ca.display(),
            c.client.cert.display(),
            c.client.key.display()
        );
        println!("      or: {tls_env}");
        env.push_str(&tls_env);
    }
    println!("try:  {env}shardkv put greeting hello && shardkv get greeting && shardkv status");
    println!("      shardkv admin move 0 2 && shardkv admin query   # move shard 0 to group 2");
    println!(
        "      add a group: 3 x `shardkv server --groups {}=shard --ctrl {endpoints} ...`, \
         then `shardkv admin join {}=ADDR,ADDR,ADDR` (see docs/sharding.md)",
        groups + 1,
        groups + 1
    );
    if let Some(port) = redis {
        let auth = match started.redis_password {
            Some(_) => " --askpass",
            None => "",
        };
        println!(
            "redis:  redis-cli -c -p {port}{auth}   # a Redis Cluster client of the same data"
        );
    }
    println!("stop: Ctrl-C (running `shardkv up` again on the same --data-dir keeps the data)");
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(POLL) => {}
        }
        let alive = members
            .iter_mut()
            .fold(0, |n, m| n + usize::from(m.check()));
        if alive == 0 {
            bail!("every member exited");
        }
    }
}

/// The controller's latest config, after joining shard groups `1..=groups` (every member
/// hosts each, so each group's servers are `addrs` in node order) if the controller has
/// never had a config: the first start. A restart keeps the shard map as it is.
async fn join_on_first_start(started: &Started<'_>) -> Result<Config> {
    let (addrs, groups) = (started.addrs, started.groups);
    let opts = ClientOptions {
        op_timeout: LEADER_WAIT,
        tls: started.tls.clone(),
        ..ClientOptions::default()
    };
    let mut ctrl = CtrlClient::connect_with(addrs, opts).map_err(|e| anyhow!("{e}"))?;
    let latest = ctrl.query(None).await.map_err(|e| anyhow!("{e}"))?;
    if latest.num.0 > 0 {
        return Ok(latest);
    }
    let join: BTreeMap<Gid, Vec<String>> = (1..=groups).map(|g| (Gid(g), addrs.to_vec())).collect();
    let num = ctrl
        .join(join)
        .await
        .map_err(|e| anyhow!("joining the shard groups: {e}"))?
        .map_err(|e| anyhow!("the controller refused to join the shard groups: {e}"))?;
    ctrl.query(Some(num)).await.map_err(|e| anyhow!("{e}"))
}

/// Waits until a member of every group in `config` reports that config with no shard in
/// migration, so the first requests do not bounce between groups.
async fn wait_for_groups(
    members: &mut [Member],
    config: &Config,
    started: &Started<'_>,
) -> Result<()> {
    let deadline = Instant::now() + LEADER_WAIT;
    let settled = |s: &NodeStatus| {
        s.shards
            .as_ref()
            .is_some_and(|h| h.config >= config.num && h.moving().next().is_none())
    };
    for &gid in config.groups.keys() {
        'group: loop {
            if Instant::now() >= deadline {
                bail!(
                    "group {gid} did not take config {} within {LEADER_WAIT:?}",
                    config.num
                );
            }
            for m in members.iter_mut() {
                if !m.check() {
                    bail!(
                        "member n{} exited during startup; see {}",
                        m.id,
                        m.log.display()
                    );
                }
                let dial = started.dial(POLL * 5);
                let status = fetch_group_status_with(&m.addr, Some(gid), &dial).await;
                if status.is_ok_and(|s| s.role == Role::Leader && settled(&s)) {
                    break 'group;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// Waits until every member listens on its gRPC port itself (see [`crate::ports`]), so
/// that what `up` reads there next is its own cluster's. Fails when another process holds
/// a member's port (taken after [`crate::ports::check_free`]) or a member exits.
async fn wait_for_own_ports(members: &mut [Member]) -> Result<()> {
    use crate::ports::{Owner, owner};
    let deadline = Instant::now() + LEADER_WAIT;
    for m in members.iter_mut() {
        let port = m
            .addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .context("a member address without a port")?;
        loop {
            m.alive_or_error()?;
            // Another listener on the port number (another address, or one that raced
            // up's check) does not end the wait at once: the member may not listen yet.
            let late = Instant::now() >= deadline;
            match owner(port, m.child.id()) {
                Owner::Pid | Owner::Unknown => break,
                Owner::Other if late => bail!(
                    "another process listens on {} (member n{}'s port, taken after up checked \
                     it): not this cluster's; stop it or use another --base-port",
                    m.addr,
                    m.id
                ),
                // A /proc that lists no sockets (some sandboxes): a connection tells.
                Owner::Nobody if late && std::net::TcpStream::connect(&m.addr).is_ok() => break,
                Owner::Nobody if late => bail!(
                    "member n{} did not listen on {} within {LEADER_WAIT:?}; see {}",
                    m.id,
                    m.addr,
                    m.log.display()
                ),
                Owner::Other | Owner::Nobody => tokio::time::sleep(POLL).await,
            }
        }
    }
    Ok(())
}

/// Waits, at most [`PREFERRED_WAIT`], until each shard group is led by its preferred member
/// (`shardkv_host::leader_preference`: the servers hand leadership there a few election
/// timeouts after an election), so the Redis slot masters `up` shows next stay where they
/// are: `redis-benchmark --cluster` stops when a master changes under it. Returns the Redis
/// ports of the preferred members (the masters the view should show), or `None` past the
/// wait: `up` goes on, and leadership still settles there later.
async fn wait_for_preferred_leaders(
    members: &mut [Member],
    config: &Config,
    started: &Started<'_>,
) -> Option<BTreeSet<u16>> {
    let deadline = Instant::now() + PREFERRED_WAIT;
    let voters: Vec<NodeId> = members.iter().map(|m| NodeId(m.id)).collect();
    let mut masters = BTreeSet::new();
    for &gid in config.groups.keys() {
        let preferred = preferred_leader(gid.0, voters.iter().copied())?;
        let m = members.iter().find(|m| m.id == preferred.0)?;
        loop {
            if Instant::now() >= deadline {
                return None;
            }
            let dial = started.dial(POLL * 5);
            let status = fetch_group_status_with(&m.addr, Some(gid), &dial).await;
            if status.is_ok_and(|s| s.role == Role::Leader) {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        masters.insert(m.redis?);
    }
    Some(masters)
}

/// A Redis port `up` asks, and the password it requires.
struct RedisAsk<'a> {
    port: u16,
    password: Option<&'a Password>,
}

impl RedisAsk<'_> {
    /// Asks one inline command (after `AUTH` when a password is required) and returns what
    /// one read brings (the short replies `up` asks for fit in one).
    async fn ask(&self, command: &str) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut buf = vec![0u8; 16 << 10];
        if let Some(p) = self.password {
            // As a RESP array: the password may hold blanks.
            let secret = p.expose();
            let mut auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n", secret.len()).into_bytes();
            auth.extend_from_slice(secret);
            auth.extend_from_slice(b"\r\n");
            s.write_all(&auth).await?;
            let n = s.read(&mut buf).await?;
            if !buf[..n].starts_with(b"+OK") {
                let answer = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                return Err(std::io::Error::other(format!("AUTH answered {answer}")));
            }
        }
        s.write_all(format!("{command}\r\n").as_bytes()).await?;
        let n = s.read(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// The ports of the nodes that master slots, in a `CLUSTER NODES` reply.
fn master_ports(nodes: &str) -> BTreeSet<u16> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let addr = fields.get(1)?.split('@').next()?;
            (fields.len() > 8).then(|| addr.rsplit_once(':')?.1.parse().ok())?
        })
        .collect()
}

/// Waits until the Redis port at `port` answers `CLUSTER INFO` with every slot served (its
/// view has learned every group's leader) and, when `masters` is known, names exactly those
/// ports as the masters in `CLUSTER NODES` (its view has caught up with the last leadership
/// change), so the first `redis-cli -c` command works.
async fn wait_for_redis(redis: &RedisAsk<'_>, masters: Option<BTreeSet<u16>>) -> Result<()> {
    let port = redis.port;
    let deadline = Instant::now() + LEADER_WAIT;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        let ask = async {
            let info = redis.ask("CLUSTER INFO").await?;
            let nodes = redis.ask("CLUSTER NODES").await?;
            Ok::<_, std::io::Error>((info, nodes))
        };
        match tokio::time::timeout(POLL * 5, ask).await {
            Ok(Ok((info, nodes))) if info.contains("cluster_state:ok") => {
                if masters.as_ref().is_none_or(|m| *m == master_ports(&nodes)) {
                    return Ok(());
                }
                last = format!("masters not yet the preferred ones: {nodes}");
            }
            Ok(Ok((info, _))) => last = info,
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer in time".into(),
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("the Redis port 127.0.0.1:{port} did not serve every slot within {LEADER_WAIT:?}: {last}")
}

async fn wait_for_leader(members: &mut [Member], started: &Started<'_>) -> Result<Option<u64>> {
    let deadline = Instant::now() + LEADER_WAIT;
    while Instant::now() < deadline {
        for m in members.iter_mut() {
            m.alive_or_error()?;
            let dial = started.dial(Duration::from_millis(500));
            let ctrl = fetch_group_status_with(&m.addr, Some(Gid(0)), &dial);
            if let Ok(s) = ctrl.await
                && s.role == Role::Leader
            {
                return Ok(Some(s.id.0));
            }
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("no leader was elected within {LEADER_WAIT:?}; see the logs in each member's log file")
}

/// A member's admin port as `shardkv server` picks it by default (the gRPC port + 1000):
/// `http://ADDR` when something listens there, else why not.
async fn admin_shown(grpc: &str) -> String {
    let admin = grpc.parse::<std::net::SocketAddr>().ok().and_then(|a| {
        let port = a
            .port()
            .checked_add(shardkv_server::config::ADMIN_PORT_OFFSET)?;
        Some(std::net::SocketAddr::new(a.ip(), port))
    });
    let Some(admin) = admin else {
        return "off (port out of range)".into();
    };
    let connect = tokio::net::TcpStream::connect(admin);
    match tokio::time::timeout(Duration::from_millis(500), connect).await {
        Ok(Ok(_)) => format!("http://{admin}"),
        _ => format!("off ({admin} was taken; see the member's log)"),
    }
}

/// The last `error: ...` line of a member's log (what made it exit), if any.
fn last_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_string)
}

/// SIGTERM to every live member, then SIGKILL to those still running after the grace.
fn stop(members: &mut [Member]) {
    for m in members.iter_mut().filter(|m| m.exited.is_none()) {
        let pid = rustix::process::Pid::from_child(&m.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline
        && members
            .iter_mut()
            .any(|m| m.child.try_wait().ok().flatten().is_none())
    {
        std::thread::sleep(POLL);
    }
    for m in members.iter_mut() {
        if m.child.try_wait().ok().flatten().is_none() {
            eprintln!(
                "member n{} did not stop in {STOP_GRACE:?}; killing it",
                m.id
            );
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}
