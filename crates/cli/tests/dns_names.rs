//! Peers by name: a 3-member group whose `--peers` and `--listen` name `localhost`, not an
//! IP address, elects a leader and serves a client that also names `localhost`; the
//! members keep the names as given. Before, `--peers 1=localhost:7001` was refused at
//! start.
//!
//! Outcomes only: every wait is a bounded poll.

mod common;

use common::cluster::{BIN, LEADER_WAIT, free_ports, run_cli, wait_until};
use shardkv_client::{Role, fetch_status};
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Kills the members when dropped (also on panic).
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(dir: &Path, id: usize, peers: &str, listen: &str) -> Child {
    let log = File::create(dir.join(format!("n{id}.log"))).expect("log");
    Command::new(BIN)
        .args(["server", "--id", &id.to_string(), "--peers", peers])
        .args(["--listen", listen, "--disk-reserve", "0", "--bootstrap"])
        .arg("--data-dir")
        .arg(dir.join(format!("n{id}")))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("spawn shardkv server")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_group_whose_peers_are_named_by_dns_serves_clients() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ports = free_ports(3);
    let addrs: Vec<String> = ports.iter().map(|p| format!("localhost:{p}")).collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let _members = Members(
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| start(tmp.path(), i + 1, &peers, a))
            .collect(),
    );
    let endpoints = addrs.join(",");
    let env = [("SHARDKV_ENDPOINTS", endpoints.as_str())];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    wait_until("a leader elected over named peers", LEADER_WAIT, || {
        addrs.iter().any(|a| {
            let status = rt.block_on(fetch_status(a, Duration::from_secs(1)));
            status.is_ok_and(|s| s.role == Role::Leader)
        })
    });
    let put = run_cli(&["put", "k", "by name", "--timeout", "20s"], &env, None);
    assert!(put.status.success(), "{}", text(&put));
    let get = run_cli(&["get", "k", "--timeout", "20s"], &env, None);
    assert!(get.status.success(), "{}", text(&get));
    assert!(
        String::from_utf8_lossy(&get.stdout).starts_with("by name"),
        "{}",
        text(&get)
    );
    let members = run_cli(&["member", "list", "-w", "json"], &env, None);
    assert!(
        String::from_utf8_lossy(&members.stdout).contains(&addrs[1]),
        "the members know each other by the names given: {}",
        text(&members)
    );
}
