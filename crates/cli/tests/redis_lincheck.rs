//! The Redis Cluster front end judged by its history, through a Redis client nobody here
//! wrote: the `redis` crate's async cluster client (slot map from `CLUSTER SLOTS`, one
//! connection per node, `MOVED` refreshing the map) runs concurrent clients doing GET, SET
//! (plain, `NX`, `XX GET`), APPEND, DEL, GETDEL and INCR / INCRBY on a few keys against
//! `shardkv up` (3 member processes, 2 shard groups)
//! while a shard moves between the groups and back, and the process hosting a group's
//! leader is killed (SIGKILL) and restarted. Every operation is recorded with its call and
//! return times: ok (with its reply), unknown (the client could not learn the outcome of a
//! write: a lost connection, a timeout, the server's "outcome is unknown") or failed (the
//! server refused it without applying it: `MOVED`, `TRYAGAIN`, `CLUSTERDOWN` until the
//! attempts ran out); an unknown read is dropped. Then every acknowledged append to a
//! client's own key must be there exactly once and in order, and the whole history must
//! pass the linearizability checker (undecided fails).
//!
//! The client is built with `retries(0)`: the library would otherwise resend a request
//! whose connection dropped, on a new connection, which is a new shardkv session, and a
//! write could apply twice (docs/redis.md, "Exactly once"). The test retries only what the
//! server refused without applying, and opens a new cluster connection after an unknown.
//!
//! Each command maps to the checker's model of the KV operation it runs: GET to Get, SET
//! to Set (its condition, whether it applied, the old value when asked), APPEND to
//! AppendLen (the returned length is checked), DEL of one key to Delete with whether it
//! existed, GETDEL to GetDel, INCR / INCRBY to IncrBy (Redis's "not an integer" error is
//! an output too). INCR runs on counter keys and, now and then, on the string keys.
//!
//! Outcomes only: every wait is a bounded poll; nothing depends on speed.

mod common;

use common::cluster::{BIN, LEADER_WAIT, POLL, agreed_leader, tail, wait_until};
use common::history::{Recorded, Shared, assert_linearizable_in, await_progress, check_own_key};
use common::up::Up;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use shardkv_client::{
    ClientOptions, Config, ConfigNum, CtrlClient, Gid, Outcome, fetch_group_status,
};
use shardkv_lincheck::{Op, OpResult, Output, SetWhen};
use shardkv_types::{Rng, shard_of_key};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Clients running concurrently, each on its own cluster connection.
const CLIENTS: usize = 4;
/// Shared keys, half of them in each group's shards at the start.
const SHARED_KEYS: usize = 4;
/// Counter keys (INCR and GET only), half in each group's shards at the start.
const COUNTER_KEYS: usize = 2;
/// The most operations one client issues (the loop also stops when the faults are over).
const OPS_PER_CLIENT_MAX: usize = 3000;
/// Acknowledged operations awaited between faults, so each fault hits a working cluster.
const PROGRESS_OPS: u64 = 150;
/// Attempts of one operation the server refuses without applying it (MOVED, TRYAGAIN,
/// CLUSTERDOWN, no connection to the slot's node) before it counts as failed.
const ATTEMPTS_MAX: usize = 200;
/// The pause between such attempts (the client refreshes its slot map meanwhile).
const REFUSED_PAUSE: Duration = Duration::from_millis(50);
/// How long a request may wait for its reply before its outcome is unknown.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the clients get to finish after being told to stop.
const CLIENT_STOP_WAIT: Duration = Duration::from_secs(60);
/// `up`'s shard count (the default).
const SHARDS: u32 = 64;

/// The test's view of the redis client's reply to one command.
enum Reply {
    Done(Output),
    /// The server refused it and surely did not apply it: it may be sent again.
    Refused,
    /// Applied or not, the client cannot tell.
    Lost(RedisError),
}

/// The Redis command for a model operation.
fn command(op: &Op) -> redis::Cmd {
    let mut cmd;
    match op {
        Op::Get { key } => cmd = redis::cmd("GET").arg(key.as_slice()).clone(),
        Op::Set {
            key,
            value,
            when,
            get,
        } => {
            cmd = redis::cmd("SET")
                .arg(key.as_slice())
                .arg(value.as_slice())
                .clone();
            match when {
                SetWhen::Always => {}
                SetWhen::Absent => _ = cmd.arg("NX"),
                SetWhen::Present => _ = cmd.arg("XX"),
            }
            if *get {
                cmd.arg("GET");
            }
        }
        Op::AppendLen { key, value } => {
            cmd = redis::cmd("APPEND")
                .arg(key.as_slice())
                .arg(value.as_slice())
                .clone()
        }
        Op::Delete { key } => cmd = redis::cmd("DEL").arg(key.as_slice()).clone(),
        Op::GetDel { key } => cmd = redis::cmd("GETDEL").arg(key.as_slice()).clone(),
        Op::IncrBy { key, by: 1 } => cmd = redis::cmd("INCR").arg(key.as_slice()).clone(),
        Op::IncrBy { key, by } => cmd = redis::cmd("INCRBY").arg(key.as_slice()).arg(*by).clone(),
        other => panic!("this workload does not draw {other:?}"),
    }
    cmd
}

/// The model's output for a reply. A reply of the wrong shape is a bug of the front end.
fn output(op: &Op, value: Value) -> Output {
    match (op, value) {
        (Op::Get { .. } | Op::GetDel { .. }, Value::Nil) => Output::Get(None),
        (Op::Get { .. } | Op::GetDel { .. }, Value::BulkString(v)) => Output::Get(Some(v)),
        (Op::Set { get: false, .. }, Value::Okay) => Output::Set {
            applied: true,
            old: None,
        },
        (Op::Set { get: false, .. }, Value::Nil) => Output::Set {
            applied: false,
            old: None,
        },
        (
            Op::Set {
                when, get: true, ..
            },
            found @ (Value::Nil | Value::BulkString(_)),
        ) => {
            let old = match found {
                Value::BulkString(v) => Some(v),
                _ => None,
            };
            let applied = match when {
                SetWhen::Always => true,
                SetWhen::Absent => old.is_none(),
                SetWhen::Present => old.is_some(),
            };
            Output::Set { applied, old }
        }
        (Op::AppendLen { .. } | Op::IncrBy { .. }, Value::Int(n)) => Output::Int(n),
        (Op::Delete { .. }, Value::Int(n)) if n == 0 || n == 1 => {
            Output::Deleted { existed: n == 1 }
        }
        (op, value) => panic!("{op:?} answered {value:?}"),
    }
}

/// Redis's errors that are an IncrBy's output (it changed nothing), not a failure.
fn incr_refusal(op: &Op, e: &RedisError) -> Option<Output> {
    if !matches!(op, Op::IncrBy { .. })
        || e.kind() != ErrorKind::Server(ServerErrorKind::ResponseError)
    {
        return None;
    }
    let text = e.to_string();
    if text.contains("value is not an integer or out of range") {
        Some(Output::NotAnInteger)
    } else if text.contains("increment or decrement would overflow") {
        Some(Output::Overflow)
    } else {
        None
    }
}

/// Whether the server said it did not apply the command: shardkv answers a write that may
/// have applied with a plain ERR, never with these (crates/redis/src/session.rs `failure`).
fn refused(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
        ) | ErrorKind::ClusterConnectionNotFound
    )
}

async fn send(conn: &mut ClusterConnection, op: &Op) -> Reply {
    let got = command(op)
        .query_async::<Value>(conn)
        .await
        .and_then(Value::extract_error);
    match got {
        Ok(value) => Reply::Done(output(op, value)),
        Err(e) if refused(&e) => Reply::Refused,
        Err(e) if incr_refusal(op, &e).is_some() => {
            Reply::Done(incr_refusal(op, &e).expect("just matched"))
        }
        Err(e) => Reply::Lost(e),
    }
}

/// Runs `op` to an outcome: sent again while the server refuses it (bounded), never after
/// a reply was lost.
async fn run(conn: &mut ClusterConnection, op: &Op) -> (Outcome, Option<Output>) {
    for _ in 0..ATTEMPTS_MAX {
        match send(conn, op).await {
            Reply::Done(out) => return (Outcome::Ok, Some(out)),
            Reply::Refused => tokio::time::sleep(REFUSED_PAUSE).await,
            Reply::Lost(e) => {
                if matches!(e.kind(), ErrorKind::Server(_)) {
                    eprintln!("{op:?}: {e}");
                }
                return (Outcome::Unknown, None);
            }
        }
    }
    (Outcome::Failed, None)
}

/// Runs `op` and records it in `rec` as `client`'s.
async fn record(
    conn: &mut ClusterConnection,
    shared: &Shared,
    rec: &mut Recorded,
    client: u64,
    op: Op,
) -> (Outcome, Option<Output>) {
    let call_ns = shared.ns();
    let (outcome, out) = run(conn, &op).await;
    let return_ns = shared.ns();
    if outcome == Outcome::Ok {
        shared.acked.fetch_add(1, Ordering::Relaxed);
    }
    rec.push(client, op, call_ns, (outcome, out.clone()), return_ns);
    (outcome, out)
}

/// A new cluster connection (its slot map read from the nodes), retried while no node
/// answers, within the leader wait.
async fn connect(client: &ClusterClient) -> ClusterConnection {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        match client.get_async_connection().await {
            Ok(conn) => return conn,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("no cluster connection within {LEADER_WAIT:?}: {e}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// The keys the clients share: string keys and counter keys.
struct Keys {
    strings: Vec<String>,
    counters: Vec<String>,
}

/// One client: appends unique tokens to a key of its own and runs the other commands on
/// the shared keys, until told to stop or [`OPS_PER_CLIENT_MAX`] operations.
async fn run_client(
    client: ClusterClient,
    w: usize,
    keys: Arc<Keys>,
    shared: Arc<Shared>,
) -> Recorded {
    let id = w as u64 + 1;
    let mut conn = connect(&client).await;
    let mut rng = Rng::new(id);
    let mut rec = Recorded::empty();
    rec.own_key = format!("own{w}");
    for i in 0..OPS_PER_CLIENT_MAX {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let pick =
            |rng: &mut Rng, of: &[String]| of[rng.range(0, of.len() as u64) as usize].clone();
        let key = pick(&mut rng, &keys.strings).into_bytes();
        let counter = pick(&mut rng, &keys.counters).into_bytes();
        let value = format!("{w}.{i};").into_bytes();
        let own = rec.own_key.clone().into_bytes();
        let set = |when, get| Op::Set {
            key: key.clone(),
            value: value.clone(),
            when,
            get,
        };
        let op = match rng.range(0, 100) {
            0..25 => {
                let token = format!("<{w}.{i}>");
                let op = Op::AppendLen {
                    key: own,
                    value: token.clone().into_bytes(),
                };
                let done = record(&mut conn, &shared, &mut rec, id, op).await;
                rec.appends.push((token, done.0));
                if done.0 == Outcome::Unknown {
                    conn = connect(&client).await;
                }
                continue;
            }
            // Reading its own key often keeps the checker's search short: an append of
            // unknown outcome can only be placed between the reads that do not and do show it.
            25..33 => Op::Get { key: own },
            33..46 => Op::Get { key },
            46..56 => set(SetWhen::Always, false),
            56..60 => set(SetWhen::Absent, false),
            60..64 => set(SetWhen::Present, true),
            64..72 => Op::AppendLen {
                key: key.clone(),
                value,
            },
            72..78 => Op::Delete { key },
            78..81 => Op::GetDel { key },
            // Now and then on a string key: Redis's "not an integer" error is an output.
            81..83 => Op::IncrBy { key, by: 1 },
            83..93 => Op::IncrBy {
                key: counter,
                by: rng.range(1, 4) as i64,
            },
            _ => Op::Get { key: counter },
        };
        let (outcome, _) = record(&mut conn, &shared, &mut rec, id, op).await;
        if outcome == Outcome::Unknown {
            // The connection that lost a reply may be to a dead node: start afresh.
            conn = connect(&client).await;
        }
    }
    rec
}

/// `n` keys `{prefix}0`, `{prefix}1`, ... chosen so that half are in shards of group 1 and
/// half in shards of group 2 under `config`.
fn keys_of_both_groups(config: &Config, prefix: &str, n: usize) -> Vec<String> {
    let mut picked: Vec<String> = Vec::new();
    for g in [Gid(1), Gid(2)] {
        let of_group = (0..)
            .map(|i| format!("{prefix}{i}"))
            .filter(|k| config.owner(shard_of_key(k.as_bytes(), SHARDS)) == Some(g))
            .take(n / 2);
        picked.extend(of_group.collect::<Vec<_>>());
    }
    picked
}

/// `up`'s member processes, as the test reaches and restarts them.
struct Members<'a> {
    up: &'a Up,
    rt: &'a tokio::runtime::Runtime,
    /// gRPC addresses, member i+1 at index i.
    addrs: Vec<String>,
    /// Members the test started again itself (killed when dropped).
    restarted: Vec<Child>,
}

impl Members<'_> {
    /// The member hosting the leader of `gid` that the answering members agree on.
    fn group_leader(&self, gid: Gid) -> u64 {
        let mut found = 0;
        wait_until(&format!("a leader of group {}", gid.0), LEADER_WAIT, || {
            let all: Vec<_> = self
                .addrs
                .iter()
                .filter_map(|a| {
                    let status = fetch_group_status(a, Some(gid), Duration::from_secs(1));
                    self.rt.block_on(status).ok()
                })
                .collect();
            agreed_leader(&all).inspect(|&l| found = l).is_some()
        });
        found
    }

    /// Waits until `gid`'s leader reports config `num` (or later) with no shard in
    /// migration.
    fn wait_settled(&self, gid: Gid, num: ConfigNum) {
        wait_until(
            &format!("group {} to take config {num} and finish moving", gid.0),
            LEADER_WAIT,
            || {
                let addr = &self.addrs[(self.group_leader(gid) - 1) as usize];
                let status = fetch_group_status(addr, Some(gid), Duration::from_secs(1));
                self.rt
                    .block_on(status)
                    .ok()
                    .and_then(|s| s.shards)
                    .is_some_and(|h| h.config >= num && h.moving().next().is_none())
            },
        );
    }

    /// Member `id`'s data directory, as `up` names it.
    fn data_dir(&self, id: u64) -> PathBuf {
        self.up.dir.join(format!("n{id}"))
    }

    /// SIGKILL to member `id` (a child of `up`, found in /proc by its data directory);
    /// returns its command line, to start it again.
    fn kill(&self, id: u64) -> Vec<OsString> {
        let (pid, args) = find_process(&self.data_dir(id))
            .unwrap_or_else(|| panic!("no process of member n{id} found"));
        let pid = rustix::process::Pid::from_raw(pid).expect("a pid is positive");
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("SIGKILL");
        wait_until(&format!("n{id} to die"), LEADER_WAIT, || {
            find_process(&self.data_dir(id)).is_none()
        });
        args
    }

    /// Starts member `id` again with the command line `up` gave it (less `--bootstrap`),
    /// logging where `up` logs it.
    fn restart(&mut self, id: u64, args: &[OsString]) {
        let log = fs::File::options()
            .append(true)
            .open(self.up.dir.join(format!("n{id}.log")))
            .expect("the member's log");
        let child = Command::new(BIN)
            .args(args[1..].iter().filter(|a| *a != "--bootstrap"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("restart a member");
        self.restarted.push(child);
    }
}

impl Drop for Members<'_> {
    fn drop(&mut self) {
        for child in &mut self.restarted {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A live (not zombie) `shardkv server` process whose `--data-dir` is `dir`: its pid and
/// command line.
fn find_process(dir: &Path) -> Option<(i32, Vec<OsString>)> {
    for entry in fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<OsString> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| std::ffi::OsStr::from_bytes(a).to_os_string())
            .collect();
        let serves_dir = args.get(1).is_some_and(|a| a == "server")
            && args
                .windows(2)
                .any(|w| w[0] == "--data-dir" && Path::new(&w[1]) == dir);
        let zombie = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if serves_dir && !zombie {
            return Some((pid, args));
        }
    }
    None
}

/// The RESP address of every member: `up` prints `redis:  redis-cli -c -p PORT` for member
/// 1; each member's RESP port is at the same offset from its gRPC port.
fn redis_nodes(up: &Up) -> Vec<String> {
    let port: u16 = up
        .text
        .lines()
        .find(|l| l.starts_with("redis:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "-p").nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("up printed no `redis: ... -p PORT` line:\n{}", up.text));
    let grpc: Vec<u16> = up
        .endpoints
        .split(',')
        .map(|a| {
            a.rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .expect("a port")
        })
        .collect();
    let offset = port
        .checked_sub(grpc[0])
        .expect("the RESP port is above the gRPC port");
    grpc.iter()
        .map(|p| format!("redis://127.0.0.1:{}/", p + offset))
        .collect()
}

/// Moves `key`'s shard to `dst`; returns the config that moves it.
fn move_shard(
    rt: &tokio::runtime::Runtime,
    ctrl: &mut CtrlClient,
    key: &str,
    dst: Gid,
) -> ConfigNum {
    let shard = shard_of_key(key.as_bytes(), SHARDS);
    rt.block_on(ctrl.move_shard(shard, dst))
        .expect("the controller answers")
        .expect("the move is accepted")
}

/// Keeps the test's directory, and prints the members' logs, when the test fails.
struct KeepOnPanic(Option<tempfile::TempDir>);

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(tmp) = self.0.take()
        {
            let dir = tmp.keep();
            for id in 1..=3 {
                let log = dir.join("up").join(format!("n{id}.log"));
                eprintln!("---- n{id} log (last 30 lines) ----\n{}", tail(&log, 30));
            }
            eprintln!("---- data and history kept in {} ----", dir.display());
        }
    }
}

/// Goal: a Redis Cluster client library sees linearizable, exactly-once-per-acknowledgement
/// behaviour through a shard move and a leader crash. Method: see the module docs; the
/// faults in order, progress awaited between them.
#[test]
fn redis_cluster_client_history_under_shard_moves_and_a_leader_kill_is_linearizable() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = fs::canonicalize(tmp.path()).expect("canonical temp dir");
    let keep = KeepOnPanic(Some(tmp));
    let up = Up::start(&base.join("up"), &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut members = Members {
        up: &up,
        rt: &rt,
        addrs: up.endpoints.split(',').map(String::from).collect(),
        restarted: Vec::new(),
    };
    let ctrl_opts = ClientOptions {
        op_timeout: LEADER_WAIT,
        ..ClientOptions::default()
    };
    let mut ctrl = CtrlClient::connect_with(std::slice::from_ref(&up.endpoints), ctrl_opts)
        .expect("endpoints");
    let config = rt
        .block_on(ctrl.query(None))
        .expect("the controller answers");
    assert_eq!(config.shards.len(), SHARDS as usize, "{config:?}");
    let keys = Arc::new(Keys {
        strings: keys_of_both_groups(&config, "s", SHARED_KEYS),
        counters: keys_of_both_groups(&config, "c", COUNTER_KEYS),
    });

    let client = ClusterClientBuilder::new(redis_nodes(&up))
        .retries(0)
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(RESPONSE_TIMEOUT)
        .build()
        .expect("a cluster client");
    let shared = Shared::new();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|w| rt.spawn(run_client(client.clone(), w, keys.clone(), shared.clone())))
        .collect();

    // (a) The shard of a group-1 key moves to group 2 under load.
    await_progress(&shared, PROGRESS_OPS, "before the first move");
    let moved = &keys.strings[0];
    let num = move_shard(&rt, &mut ctrl, moved, Gid(2));
    members.wait_settled(Gid(2), num);
    members.wait_settled(Gid(1), num);
    await_progress(&shared, PROGRESS_OPS, "after the move to group 2");

    // (b) The process hosting group 2's leader (which now serves that key too) dies.
    let leader = members.group_leader(Gid(2));
    let args = members.kill(leader);
    let next = members.group_leader(Gid(2));
    assert_ne!(next, leader, "a killed leader is replaced");
    // A Redis client reaches the moved key through the new leader while the old is down.
    let mut probes = Recorded::empty();
    let prober = CLIENTS as u64 + 2;
    let mut conn = rt.block_on(connect(&client));
    let probe = Op::Get {
        key: moved.clone().into_bytes(),
    };
    let (outcome, _) = rt.block_on(record(&mut conn, &shared, &mut probes, prober, probe));
    assert_eq!(
        outcome,
        Outcome::Ok,
        "reading {moved} with group 2's leader down"
    );
    await_progress(&shared, PROGRESS_OPS, "with group 2's leader killed");
    members.restart(leader, &args);
    await_progress(&shared, PROGRESS_OPS, "after the restart");

    // The shard moves back.
    let num = move_shard(&rt, &mut ctrl, moved, Gid(1));
    members.wait_settled(Gid(1), num);
    members.wait_settled(Gid(2), num);
    await_progress(&shared, PROGRESS_OPS, "after the move back to group 1");

    shared.stop.store(true, Ordering::Relaxed);
    let mut recorded: Vec<Recorded> = handles
        .into_iter()
        .map(|h| {
            rt.block_on(async { tokio::time::timeout(CLIENT_STOP_WAIT, h).await })
                .expect("clients stop within their wait")
                .expect("client task")
        })
        .collect();

    // Every own key and shared key read back, recorded too.
    let mut finals = Recorded::empty();
    let reader = CLIENTS as u64 + 1;
    let mut conn = rt.block_on(connect(&client));
    for rec in &recorded {
        let op = Op::Get {
            key: rec.own_key.clone().into_bytes(),
        };
        let (_, out) = rt.block_on(record(&mut conn, &shared, &mut finals, reader, op));
        let Some(Output::Get(value)) = out else {
            panic!("reading {} back failed", rec.own_key);
        };
        let value = String::from_utf8(value.unwrap_or_default()).expect("tokens are UTF-8");
        check_own_key(rec, &value);
    }
    for key in keys.strings.iter().chain(&keys.counters) {
        let op = Op::Get {
            key: key.clone().into_bytes(),
        };
        let (outcome, _) = rt.block_on(record(&mut conn, &shared, &mut finals, reader, op));
        assert_eq!(outcome, Outcome::Ok, "reading {key} back");
    }
    recorded.push(finals);
    recorded.push(probes);

    let history: Vec<_> = recorded.iter().flat_map(|r| r.history.clone()).collect();
    let unknown = history
        .iter()
        .filter(|o| o.result == OpResult::Unknown)
        .count();
    let failed: usize = recorded.iter().map(|r| r.failed).sum();
    println!(
        "redis history: {} operations ({} ok, {unknown} unknown, {failed} failed) on keys \
         {:?} and {:?}; {moved} moved to group 2 and back; n{leader} (group 2's leader) \
         killed and restarted",
        history.len() + failed,
        history.len() - unknown,
        keys.strings,
        keys.counters,
    );
    assert_linearizable_in(&base, &history);
    drop(members);
    drop(up);
    drop(keep);
}
