//! A replica group of real `shardkv server` processes on loopback for tests: free ports, a
//! temporary data directory, and per-member start / kill (SIGKILL) / terminate (SIGTERM) /
//! stop (SIGSTOP) / cont (SIGCONT) / restart, plus status and leader lookup through the
//! client library. Every child is killed when the `Cluster` is dropped, also on panic (then
//! the tail of each member's log is printed and the directory is kept for inspection).
//!
//! Waits are bounded in time and say what they waited for; nothing here depends on timing
//! to be correct.

use shardkv_client::{
    Client, ClientOptions, ConfigNum, Gid, NodeStatus, Role, fetch_group_status, fetch_status,
};
use std::fs::{self, File};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shardkv");
pub const POLL: Duration = Duration::from_millis(50);
/// A generous bound for a group to elect a leader (elections take 0.5-1 s).
pub const LEADER_WAIT: Duration = Duration::from_secs(20);
/// The longest a CLI command may run.
pub const CLI_LIMIT: Duration = Duration::from_secs(30);

/// One member process.
pub struct Member {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// Started once: later starts do not pass `--bootstrap`, as an operator would not.
    bootstrapped: bool,
    /// Added to the running group ([`Cluster::add_member`]): its first start passes `--join`
    /// instead of `--bootstrap`.
    joins: bool,
}

/// A group of `n` members, ids 1..=n.
pub struct Cluster {
    pub dir: PathBuf,
    pub members: Vec<Member>,
    peers: String,
    extra_args: Vec<String>,
    rt: tokio::runtime::Runtime,
    /// Dropped after the members are killed and before the directory is removed (e.g.
    /// filesystems mounted on data directories, see [`Cluster::hold`]).
    held: Vec<Box<dyn std::any::Any>>,
    tmp: Option<tempfile::TempDir>,
}

pub use super::ports::free_ports;
pub use super::wait::wait_until;

impl Cluster {
    /// Two process sets of one sharded cluster, as docs/deploy.md adds a group on other
    /// machines: A hosts the controller and group 1, B only group 2, pointed at A's
    /// controller with `--ctrl` (member ids 1-3 in both). Every member gets `--shards
    /// shards` (the cluster's: a group started with another count never takes a config)
    /// and `extra`. Nothing is joined yet.
    pub fn start_two_sets(shards: u32, extra: &[&str]) -> (Cluster, Cluster) {
        let shards = shards.to_string();
        let with = |own: &[&str]| -> Vec<String> {
            own.iter().chain(extra).map(|s| s.to_string()).collect()
        };
        let a_args = with(&["--groups", "0=ctrl,1=shard", "--shards", &shards]);
        let a = Cluster::start(3, &a_args.iter().map(String::as_str).collect::<Vec<_>>());
        let ctrl = a.endpoints();
        let b_args = with(&["--groups", "2=shard", "--shards", &shards, "--ctrl", &ctrl]);
        let b = Cluster::start(3, &b_args.iter().map(String::as_str).collect::<Vec<_>>());
        (a, b)
    }

    /// Waits, at most `limit`, until group `gid` (hosted here) reports config `num` or
    /// later with no shard in migration.
    pub fn wait_group_settled(&self, gid: Gid, num: ConfigNum, limit: Duration) {
        wait_until(
            &format!("group {} to take config {num} and finish moving", gid.0),
            limit,
            || {
                let leader = self.group_leader(gid);
                self.group_status(leader, gid)
                    .and_then(|s| s.shards)
                    .is_some_and(|h| h.config >= num && h.moving().next().is_none())
            },
        );
    }

    /// Starts `n` members with the test defaults (no disk reserve, 2 s request deadline)
    /// plus `extra_args` for every member.
    pub fn start(n: usize, extra_args: &[&str]) -> Cluster {
        let mut c = Cluster::create(n, extra_args);
        for id in 1..=n as u64 {
            c.spawn(id);
        }
        c
    }

    /// Like [`Cluster::start`] but starts nothing: the caller prepares the members' data
    /// directories (which do not exist yet), then calls [`Cluster::start_all`].
    pub fn create(n: usize, extra_args: &[&str]) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("shardkv-test-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let ports = free_ports(n);
        let members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| Member {
                id: i as u64 + 1,
                addr: format!("127.0.0.1:{port}"),
                data_dir: dir.join(format!("n{}", i + 1)),
                log: dir.join(format!("n{}.log", i + 1)),
                child: None,
                bootstrapped: false,
                joins: false,
            })
            .collect();
        let peers = members
            .iter()
            .map(|m| format!("{}={}", m.id, m.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec!["--disk-reserve".to_string(), "0".to_string()];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Cluster {
            dir,
            members,
            peers,
            extra_args: args,
            rt,
            held: Vec::new(),
            tmp: Some(tmp),
        }
    }

    /// Starts every member of a [`Cluster::create`]d group.
    pub fn start_all(&mut self) {
        for id in 1..=self.members.len() as u64 {
            self.spawn(id);
        }
    }

    /// Keeps `guard` until the cluster is dropped: it is dropped after every member was
    /// killed, before the directory is removed (an unmount guard, say).
    pub fn hold(&mut self, guard: Box<dyn std::any::Any>) {
        self.held.push(guard);
    }

    pub fn member(&self, id: u64) -> &Member {
        &self.members[(id - 1) as usize]
    }

    fn member_mut(&mut self, id: u64) -> &mut Member {
        &mut self.members[(id - 1) as usize]
    }

    /// `HOST:PORT,...` of every member, in id order.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `1=HOST:PORT,2=...` of every member (the `--peers` syntax).
    pub fn endpoints_with_ids(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.id, m.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, id: u64) {
        let peers = self.peers.clone();
        let extra = self.extra_args.clone();
        let m = self.member_mut(id);
        assert!(m.child.is_none(), "n{id} is already running");
        // Only the first start creates the member (`--bootstrap`, or `--join` for one added
        // to the running group), like `shardkv up`.
        let first = !std::mem::replace(&mut m.bootstrapped, true);
        let create = if m.joins { "--join" } else { "--bootstrap" };
        let log = File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("open log");
        let child = Command::new(BIN)
            .args(["server", "--id", &id.to_string(), "--peers", &peers])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(first.then_some(create))
            .args(&extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn shardkv server");
        m.child = Some(child);
    }

    /// A new member (id n+1, on a free port, not started) for a membership change: its first
    /// start passes `--join`; every start from now on names it in `--peers`.
    pub fn add_member(&mut self) -> u64 {
        let id = self.members.len() as u64 + 1;
        let port = free_ports(1)[0];
        self.members.push(Member {
            id,
            addr: format!("127.0.0.1:{port}"),
            data_dir: self.dir.join(format!("n{id}")),
            log: self.dir.join(format!("n{id}.log")),
            child: None,
            bootstrapped: false,
            joins: true,
        });
        self.set_peers(&(1..=id).collect::<Vec<_>>());
        id
    }

    /// The members that starts from now on name in `--peers`.
    pub fn set_peers(&mut self, ids: &[u64]) {
        self.peers = ids
            .iter()
            .map(|&id| format!("{id}={}", self.member(id).addr))
            .collect::<Vec<_>>()
            .join(",");
    }

    /// Starts member `id` again on its data directory.
    pub fn restart(&mut self, id: u64) {
        self.spawn(id);
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        let m = self.member_mut(id);
        match &mut m.child {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    fn signal(&mut self, id: u64, sig: rustix::process::Signal) {
        let m = self.member_mut(id);
        let child = m.child.as_ref().expect("member is running");
        let pid = rustix::process::Pid::from_child(child);
        rustix::process::kill_process(pid, sig).expect("send signal");
    }

    /// SIGKILL: the process dies at once, keeping only what it fsynced.
    pub fn kill(&mut self, id: u64) {
        let m = self.member_mut(id);
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, id: u64) -> bool {
        self.signal(id, rustix::process::Signal::TERM);
        let m = self.member_mut(id);
        let mut child = m.child.take().expect("member is running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.success();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGSTOP: the process freezes (its sockets stay open).
    pub fn stop(&mut self, id: u64) {
        self.signal(id, rustix::process::Signal::STOP);
    }

    /// SIGCONT: a stopped process resumes.
    pub fn cont(&mut self, id: u64) {
        self.signal(id, rustix::process::Signal::CONT);
    }

    /// Runs a future on the cluster's runtime (for library calls).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Runs a future in the background on the cluster's runtime (concurrent clients).
    pub fn spawn_task<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(f)
    }

    /// A library client for the group with default options.
    pub fn client(&self) -> Client {
        Client::connect(&[self.endpoints()]).expect("valid endpoints")
    }

    pub fn client_with(&self, opts: ClientOptions) -> Client {
        Client::connect_with(&[self.endpoints()], opts).expect("valid endpoints")
    }

    /// A sharded library client: the controller is hosted by these members.
    pub fn sharded_client(&self, opts: ClientOptions) -> Client {
        Client::connect_sharded(&[self.endpoints()], opts).expect("valid endpoints")
    }

    /// Member `id`'s status of its replica of `group` (0: the controller), `None` if it
    /// does not answer within a second.
    pub fn group_status(&self, id: u64, group: Gid) -> Option<NodeStatus> {
        let addr = self.member(id).addr.clone();
        self.block_on(fetch_group_status(
            &addr,
            Some(group),
            Duration::from_secs(1),
        ))
        .ok()
    }

    /// Waits for a leader of `group` (hosted by every member) that the answering members
    /// agree on, and returns the member that hosts it.
    pub fn group_leader(&self, group: Gid) -> u64 {
        let mut found = 0;
        wait_until(
            &format!("a leader of group {}", group.0),
            LEADER_WAIT,
            || {
                let all: Vec<NodeStatus> = (1..=self.members.len() as u64)
                    .filter_map(|id| self.group_status(id, group))
                    .collect();
                agreed_leader(&all).inspect(|&l| found = l).is_some()
            },
        );
        found
    }

    /// Member `id`'s status, `None` if it does not answer within a second.
    pub fn status(&self, id: u64) -> Option<NodeStatus> {
        let addr = self.member(id).addr.clone();
        self.block_on(fetch_status(&addr, Duration::from_secs(1)))
            .ok()
    }

    /// The leader once leadership has settled on the group's preferred member (the server
    /// hands leadership to it a few election timeouts after an election:
    /// `shardkv_host::leader_preference`), for tests whose own steps must cause the next
    /// leader change. Group 1, voters 1..=n.
    pub fn settled_leader(&self) -> u64 {
        let ids = (1..=self.members.len() as u64).map(shardkv_types::NodeId);
        let preferred = shardkv_host::leader_preference::preferred_leader(1, ids)
            .expect("a group has voters")
            .0;
        wait_until(
            "leadership to settle on the preferred member",
            LEADER_WAIT,
            || {
                self.status(preferred).is_some_and(|s| {
                    s.role == Role::Leader && s.leader.map(|l| l.0) == Some(preferred)
                })
            },
        );
        self.leader()
    }

    /// Waits for a leader that every answering member agrees on (same term) and returns it.
    pub fn leader(&self) -> u64 {
        let mut found = 0;
        wait_until("a leader", LEADER_WAIT, || {
            let all: Vec<NodeStatus> = (1..=self.members.len() as u64)
                .filter_map(|id| self.status(id))
                .collect();
            agreed_leader(&all).inspect(|&l| found = l).is_some()
        });
        found
    }

    /// Waits until member `id` has applied at least `index`.
    pub fn wait_applied(&self, id: u64, index: u64) {
        wait_until(&format!("n{id} to apply {index}"), LEADER_WAIT, || {
            self.status(id).is_some_and(|s| s.applied.0 >= index)
        });
    }

    /// Runs the CLI against this group with `args` and `stdin`, bounded by [`CLI_LIMIT`].
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_cli(args, &[("SHARDKV_ENDPOINTS", &self.endpoints())], stdin)
    }
}

/// The leader that the answering members of a group agree on: the only one reporting
/// itself leader, in the highest term any of them reports; `None` while there is none.
pub fn agreed_leader(all: &[NodeStatus]) -> Option<u64> {
    let top = all.iter().map(|s| s.term).max();
    let leaders: Vec<&NodeStatus> = all.iter().filter(|s| s.role == Role::Leader).collect();
    match leaders.as_slice() {
        [l] if Some(l.term) == top => Some(l.id.0),
        _ => None,
    }
}

/// Runs `shardkv ARGS` with extra environment, killing it past [`CLI_LIMIT`].
pub fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn shardkv");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(bytes).expect("write stdin");
    }
    let deadline = Instant::now() + CLI_LIMIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("shardkv {args:?} ran past {CLI_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// The last `n` lines of a file, for failure reports.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            for m in &self.members {
                eprintln!(
                    "---- n{} log (last 30 lines) ----\n{}",
                    m.id,
                    tail(&m.log, 30)
                );
            }
        }
        self.held.clear();
        if std::thread::panicking()
            && let Some(tmp) = self.tmp.take()
        {
            eprintln!("---- data kept in {} ----", tmp.keep().display());
        }
    }
}
