//! Redis tools against `shardkv up`'s Redis Cluster ports: the real `redis-cli` and
//! `redis-benchmark` (Debian's redis-tools, which scripts/test.sh installs), bounded in
//! time; the ports `up` printed; who masters which slots; a member's process.

use super::up::Up;
use super::wait::wait_until;
use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one `redis-cli` call may take.
pub const CLI_LIMIT: Duration = Duration::from_secs(30);

/// The Redis ports of `up`'s members, in member order (from its `redis 127.0.0.1:PORT`
/// member lines), and the one of its `redis-cli -c -p PORT` line first among them.
pub fn redis_ports(up: &Up) -> Vec<u16> {
    let ports: Vec<u16> = up
        .text
        .lines()
        .filter_map(|l| l.split("  redis 127.0.0.1:").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(
        ports.len(),
        3,
        "up printed a Redis port per member:\n{}",
        up.text
    );
    let tried = up
        .text
        .lines()
        .find_map(|l| l.strip_prefix("redis:  redis-cli -c -p "))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u16>().ok());
    assert_eq!(tried, Some(ports[0]), "the redis-cli line:\n{}", up.text);
    ports
}

/// Runs `program ARGS` (with `stdin`), killing it past `limit`; its exit success, stdout and
/// stderr. Panics naming the tool when it is not installed.
pub fn run_tool(program: &str, args: &[&str], limit: Duration) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install redis-tools (scripts/test.sh does)")
        });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = out.join().expect("stdout reader");
    let err = err.join().expect("stderr reader");
    (status.success(), out, err)
}

/// The password every later [`redis_cli`] call of this test process gives (`-a`).
static PASSWORD: OnceLock<String> = OnceLock::new();

/// Makes every later [`redis_cli`] call (and so [`master_port`], [`settled_masters`]) of
/// this test process authenticate with `password`.
pub fn use_password(password: &str) {
    PASSWORD
        .set(password.to_string())
        .expect("one password per test process");
}

/// `redis-cli [-c] -p PORT ARGS`: what it printed, without trailing blanks (with `-c` it
/// follows `MOVED` silently). After [`use_password`] it authenticates first.
pub fn redis_cli(port: u16, follow: bool, args: &[&str]) -> String {
    let port = port.to_string();
    let mut all = vec!["-p", port.as_str()];
    if follow {
        all.insert(0, "-c");
    }
    if let Some(p) = PASSWORD.get() {
        all.extend(["-a", p.as_str(), "--no-auth-warning"]);
    }
    all.extend_from_slice(args);
    let (ok, out, err) = run_tool("redis-cli", &all, CLI_LIMIT);
    assert!(ok, "redis-cli {all:?} failed: {err}");
    out.trim_end().to_string()
}

/// The RESP port mastering `slot`, by the `CLUSTER NODES` of the process at `port`.
pub fn master_port(port: u16, slot: u16) -> Option<u16> {
    let nodes = redis_cli(port, false, &["cluster", "nodes"]);
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let covers = fields.iter().skip(8).any(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
        });
        let addr = fields.get(1)?.split('@').next()?;
        covers.then(|| addr.rsplit_once(':')?.1.parse().ok())?
    })
}

/// How long the processes' views may take to settle on the preferred leaders.
pub const VIEW_WAIT: Duration = Duration::from_secs(60);

/// Waits until every process's view serves every slot, mastered by the members that lead
/// `up`'s two shard groups once leadership settles on the preferred members (group g's is
/// its (g mod 3)-th member: n2 and n3, `shardkv_host::leader_preference`); returns their
/// ports. Tools such as `redis-benchmark` fail when the set of masters changes under them.
pub fn settled_masters(ports: &[u16]) -> BTreeSet<u16> {
    let want: BTreeSet<u16> = ports[1..].iter().copied().collect();
    let settled = |p: u16| {
        let info = redis_cli(p, false, &["cluster", "info"]);
        let here: BTreeSet<u16> = [0, 16383]
            .iter()
            .filter_map(|&s| master_port(p, s))
            .collect();
        info.contains("cluster_state:ok") && here == want
    };
    wait_until(
        "every process to see the preferred masters",
        VIEW_WAIT,
        || ports.iter().all(|&p| settled(p)),
    );
    want
}

/// The process of the `shardkv server` serving Redis on `port` (found by its command line
/// in `/proc`).
pub fn server_pid(port: u16) -> u32 {
    let wanted = format!("--redis-listen\0127.0.0.1:{port}\0");
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&wanted) {
            return pid;
        }
    }
    panic!("no process serves Redis on {port}");
}

/// A process's resident memory in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}
