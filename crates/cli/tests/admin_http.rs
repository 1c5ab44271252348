//! The admin HTTP port of real `shardkv server` processes: `/metrics` names and counters
//! that move with load, `/readyz` before and after the group has a leader, `/health` when a
//! majority is gone, `/status` as JSON. Each member binds its admin port to port 0
//! (`--admin-listen 127.0.0.1:0`) and the test reads the address from its "serving" log
//! line; waits are bounded polls.

mod common;

use common::cluster::{BIN, LEADER_WAIT, free_ports, tail};
use common::wait::wait_until;
use shardkv_client::{Client, ClientOptions, CtrlClient, Gid};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Three processes hosting the controller (group 0) and shard group 1.
struct Procs {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    grpc: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Procs {
    /// Ports for `n` members; none started.
    fn new(n: usize) -> Procs {
        let tmp = tempfile::Builder::new()
            .prefix("shardkv-admin-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(n);
        Procs {
            dir: tmp.path().to_path_buf(),
            _dir: tmp,
            grpc: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            children: (0..n).map(|_| None).collect(),
        }
    }

    fn peers(&self) -> String {
        let peers: Vec<String> = (self.grpc.iter().enumerate())
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        peers.join(",")
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{}.log", i + 1))
    }

    /// Starts member `i` (0-based) for the first time.
    fn start(&mut self, i: usize) {
        let log = File::create(self.log(i)).expect("log");
        let child = Command::new(BIN)
            .args([
                "server",
                "--id",
                &(i + 1).to_string(),
                "--peers",
                &self.peers(),
            ])
            .args([
                "--groups",
                "0=ctrl,1=shard",
                "--bootstrap",
                "--disk-reserve",
                "0",
            ])
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(self.dir.join(format!("n{}", i + 1)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn shardkv server");
        self.children[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Member `i`'s admin address, from its "serving" log line (`None` before it).
    fn admin(&self, i: usize) -> Option<String> {
        let log = std::fs::read_to_string(self.log(i)).ok()?;
        let serving = log.lines().find(|l| l.contains("serving listen="))?;
        let (_, rest) = serving.split_once(" admin=")?;
        rest.split_whitespace().next().map(str::to_string)
    }

    /// `GET path` on member `i`'s admin port: status code and body; `None` when it does
    /// not answer.
    fn get(&self, i: usize, path: &str) -> Option<(u16, String)> {
        http_get(&self.admin(i)?, path)
    }

    /// Waits until member `i`'s `path` answers `code`.
    fn wait_for(&self, i: usize, path: &str, code: u16) -> String {
        let mut body = String::new();
        wait_until(
            &format!("n{} {path} to answer {code}", i + 1),
            LEADER_WAIT,
            || match self.get(i, path) {
                Some((c, b)) if c == code => {
                    body = b;
                    true
                }
                _ => false,
            },
        );
        body
    }

    fn rt(&self) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for i in 0..self.children.len() {
                eprintln!("---- n{} log ----\n{}", i + 1, tail(&self.log(i), 30));
            }
        }
    }
}

/// A minimal HTTP/1.1 GET (`Connection: close`, read to the end), bounded by timeouts.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let sock = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The value of the series `name{labels}` (labels exactly as exposed), if present.
fn series(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(name_and_labels)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// The sum over every member's `/metrics` of one series.
fn total(p: &Procs, name_and_labels: &str) -> f64 {
    (0..p.grpc.len())
        .filter_map(|i| p.get(i, "/metrics"))
        .filter_map(|(_, m)| series(&m, name_and_labels))
        .sum()
}

fn join_group_1(p: &Procs) {
    let opts = ClientOptions {
        op_timeout: LEADER_WAIT,
        ..ClientOptions::default()
    };
    let mut ctrl = CtrlClient::connect_with(&p.grpc, opts).expect("ctrl client");
    let join: BTreeMap<Gid, Vec<String>> = [(Gid(1), p.grpc.clone())].into();
    p.rt()
        .block_on(ctrl.join(join))
        .expect("the controller answers")
        .expect("joined");
}

#[test]
fn metrics_carry_etcd_like_names_with_a_group_label_and_move_with_load() {
    // Goal: the metric names appear per group and counters move with load; method: scrape,
    // 20 puts, scrape.
    let mut p = Procs::new(3);
    for i in 0..3 {
        p.start(i);
    }
    for i in 0..3 {
        p.wait_for(i, "/readyz", 200);
    }
    join_group_1(&p);
    let committed = "shardkv_server_proposals_committed_total{group=\"1\",member=\"1\"}";
    let puts_ok =
        "shardkv_server_client_requests_total{group=\"1\",member=\"1\",op=\"put\",outcome=\"ok\"}";
    let before = p.get(0, "/metrics").expect("n1 scrapes").1;
    let committed_before = series(&before, committed).expect("committed on n1");
    let puts_before: f64 = (1..=3)
        .map(|m| {
            total(
                &p,
                &puts_ok.replace("member=\"1\"", &format!("member=\"{m}\"")),
            )
        })
        .sum();

    const PUTS: usize = 20;
    let mut client = Client::connect_sharded(&p.grpc, ClientOptions::default()).expect("client");
    p.rt().block_on(async {
        for k in 0..PUTS {
            client.put(format!("k{k}"), "v").await.expect("put");
        }
    });

    let puts_after: f64 = (1..=3)
        .map(|m| {
            total(
                &p,
                &puts_ok.replace("member=\"1\"", &format!("member=\"{m}\"")),
            )
        })
        .sum();
    assert!(
        puts_after - puts_before >= PUTS as f64,
        "put requests counted: {puts_before} -> {puts_after}"
    );
    // The controller's requests count too: the join, and the clients' config queries.
    let ctrl = |op: &str| -> f64 {
        (1..=3)
            .map(|m| {
                total(
                    &p,
                    &format!(
                        "shardkv_server_client_requests_total{{group=\"0\",member=\"{m}\",op=\"{op}\",outcome=\"ok\"}}"
                    ),
                )
            })
            .sum()
    };
    assert!(ctrl("join") >= 1.0, "the join counted");
    assert!(ctrl("query") >= 1.0, "the clients' config queries counted");
    // Followers learn the commit index with the next append: poll n1.
    wait_until("n1's commit index to count the puts", LEADER_WAIT, || {
        let m = p.get(0, "/metrics").map(|r| r.1).unwrap_or_default();
        series(&m, committed).is_some_and(|c| c - committed_before >= PUTS as f64)
    });
    let m = p.get(0, "/metrics").expect("n1 scrapes").1;
    for name in [
        "shardkv_server_has_leader",
        "shardkv_server_leader_changes_seen_total",
        "shardkv_server_proposals_committed_total",
        "shardkv_server_proposals_applied_total",
        "shardkv_server_proposals_pending",
        "shardkv_server_proposals_failed_total",
        "shardkv_server_raft_state_bytes",
        "shardkv_server_sessions",
        "shardkv_network_peer_sent_messages_total",
        "shardkv_network_peer_received_messages_total",
        "shardkv_shard_migrations_started_total",
        "shardkv_shard_migrations_finished_total",
        "shardkv_shard_moved_bytes_total",
        "shardkv_disk_wal_fsync_duration_seconds_count",
        "shardkv_disk_snapshot_save_duration_seconds_count",
        "shardkv_server_client_request_duration_seconds_count",
    ] {
        let with_group = format!("{name}{{group=\"1\",member=\"1\"");
        assert!(m.contains(&with_group), "no {with_group} in\n{m}");
    }
    for reason in ["wrong_cluster", "wrong_group", "send_queue", "inbox_full"] {
        let line = format!("reason=\"{reason}\"");
        assert!(m.contains(&line), "no dropped messages by {reason}");
    }
    let fsyncs = "shardkv_disk_wal_fsync_duration_seconds_count{group=\"1\",member=\"1\"}";
    assert!(series(&m, fsyncs).is_some_and(|n| n > 0.0), "fsyncs timed");
    let received = "shardkv_network_peer_received_messages_total{group=\"1\",member=\"1\"}";
    assert!(
        series(&m, received).is_some_and(|n| n > 0.0),
        "peer messages counted"
    );
    let sessions: f64 = (1..=3)
        .map(|i| {
            total(
                &p,
                &format!("shardkv_server_sessions{{group=\"1\",member=\"{i}\"}}"),
            )
        })
        .sum();
    assert!(sessions >= 1.0, "the client's session is in the table");
}

#[test]
fn readyz_waits_for_a_leader_and_health_fails_when_a_majority_is_gone() {
    // Goal: readiness before/after the first leader, health without a majority, /status; method:
    // start 1 then 3 members, kill 2.
    let mut p = Procs::new(3);
    p.start(0);
    p.wait_for(0, "/livez", 200);
    // One member of three can elect no one.
    let (code, body) = p.get(0, "/readyz").expect("n1 answers");
    assert_eq!(code, 503, "{body}");
    let (code, body) = p.get(0, "/health").expect("n1 answers");
    assert_eq!(code, 503, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(h["groups"][0]["has_leader"], false, "{body}");

    p.start(1);
    p.start(2);
    p.wait_for(0, "/readyz", 200);
    let body = p.wait_for(0, "/health", 200);
    let h: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(h["healthy"], true);
    assert_eq!(h["groups"].as_array().map(Vec::len), Some(2), "{body}");

    let status = p.wait_for(0, "/status", 200);
    let s: serde_json::Value = serde_json::from_str(&status).expect("status is JSON");
    assert_eq!(s["member"], 1);
    let groups: Vec<u64> = (s["groups"].as_array().expect("groups").iter())
        .filter_map(|g| g["gid"].as_u64())
        .collect();
    assert_eq!(groups, [0, 1]);
    let me = &s["groups"][1]["members"][0];
    assert_eq!(me["id"], 1);
    assert_eq!(me["address"], p.grpc[0].as_str());
    assert_eq!(me["reachable"], true);
    assert!(
        me["role"].is_string() && me["term"].as_u64() >= Some(1),
        "{status}"
    );
    let ids: Vec<u64> = (me["membership"].as_array().expect("membership").iter())
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [1, 2, 3], "the group's members: {status}");

    p.kill(1);
    p.kill(2);
    let body = p.wait_for(0, "/health", 503);
    let h: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(h["healthy"], false);
    assert_eq!(
        p.get(0, "/livez").map(|r| r.0),
        Some(200),
        "the process is up"
    );
    assert_eq!(p.get(0, "/nothing-here").map(|r| r.0), Some(404));
}

#[test]
fn up_prints_each_members_admin_address_and_it_serves_metrics() {
    // Goal: `shardkv up` prints working admin addresses (gRPC port + 1000); method: scrape each one
    // printed.
    let dir = tempfile::tempdir().expect("temp dir");
    let up = common::up::Up::start(dir.path(), &["--groups", "1"]);
    let admins: Vec<&str> = up
        .text
        .lines()
        .filter_map(|l| {
            l.split_once("admin http://")
                .map(|(_, a)| a.split_whitespace().next())
        })
        .flatten()
        .collect();
    assert_eq!(admins.len(), 3, "{}", up.text);
    for (i, grpc) in up.endpoints.split(',').enumerate() {
        let port: u16 = grpc
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        assert_eq!(
            admins[i],
            format!("127.0.0.1:{}", port + 1000),
            "gRPC port + 1000"
        );
        let (code, m) = http_get(admins[i], "/metrics").expect("the admin port answers");
        assert_eq!(code, 200);
        assert!(m.contains("shardkv_server_has_leader{group=\"1\""), "{m}");
    }
}
