//! The `shardkv` KV commands against real server processes: get / put / append / del / cas /
//! status through the CLI, `shardkv up` start, stop and restart with data intact, and a
//! server refusing another node's data directory.

mod common;

use common::cluster::{Cluster, LEADER_WAIT, free_ports, run_cli, wait_until};
use common::up::{Up, free_base_port};
use std::process::{Command, Stdio};
use std::time::Duration;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Goal: every KV command does what it says, in text and JSON, with the documented exit
/// codes. Method: a 3-member group; commands run as separate processes.
#[test]
fn cli_commands_read_and_write_a_three_member_group() {
    let c = Cluster::start(3, &[]);
    c.leader();
    let ok = |args: &[&str]| {
        let o = c.cli(args, None);
        assert!(
            o.status.success(),
            "shardkv {args:?} failed: {}",
            stderr(&o)
        );
        stdout(&o)
    };
    assert_eq!(ok(&["put", "greeting", "hello"]), "OK\n");
    assert_eq!(ok(&["get", "greeting"]), "hello\n");
    ok(&["append", "greeting", " world"]);
    assert_eq!(
        ok(&["get", "greeting", "-w", "json"]).trim(),
        r#"{"found":true,"key":"greeting","value":"hello world"}"#
    );
    let piped = c.cli(&["put", "raw"], Some(b"from\nstdin"));
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(
        ok(&["get", "raw"]),
        "from\nstdin\n",
        "a value from stdin is kept exactly"
    );

    assert_eq!(ok(&["cas", "greeting", "hello world", "bye"]), "OK\n");
    let lost = c.cli(
        &["cas", "greeting", "hello world", "again", "-w", "json"],
        None,
    );
    assert!(
        !lost.status.success(),
        "a cas that does not swap exits non-zero"
    );
    assert_eq!(stdout(&lost).trim(), r#"{"current":"bye","swapped":false}"#);
    assert!(stderr(&lost).contains("not swapped"));
    assert_eq!(ok(&["cas", "--absent", "fresh", "new"]), "OK\n");

    assert_eq!(ok(&["del", "greeting"]), "1\n");
    let missing = c.cli(&["get", "greeting"], None);
    assert!(
        !missing.status.success(),
        "get of a missing key exits non-zero"
    );
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );

    // Followers learn the commit index with the leader's next message: poll, bounded.
    wait_until(
        "every member to report the writes committed",
        LEADER_WAIT,
        || {
            let status = ok(&["status", "-w", "json"]);
            let members: serde_json::Value = serde_json::from_str(&status).expect("status json");
            let members = members.as_array().expect("an array");
            members.len() == 3
                && members.iter().filter(|m| m["role"] == "leader").count() == 1
                && members
                    .iter()
                    .all(|m| m["reachable"] == true && m["commit"].as_u64() >= Some(6))
        },
    );
    let table = ok(&["status"]);
    assert!(
        table.contains("ROLE") && table.contains("leader"),
        "{table}"
    );

    let usage = c.cli(
        &["cas", "k", "only-two-args-without-absent", "x", "y"],
        None,
    );
    assert!(!usage.status.success());
}

/// Goal: the CLI fails loudly when no server is reachable. Method: endpoints on ports that
/// nothing listens on.
#[test]
fn cli_reports_unreachable_servers_with_a_non_zero_exit() {
    let ports = free_ports(2);
    let endpoints = format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]);
    let env = [("SHARDKV_ENDPOINTS", endpoints.as_str())];
    let put = run_cli(&["put", "k", "v"], &env, None);
    assert!(!put.status.success());
    assert!(stderr(&put).contains("error"), "{}", stderr(&put));
    let status = run_cli(&["status"], &env, None);
    assert!(
        !status.status.success(),
        "status with no member reachable exits non-zero"
    );
    assert!(stdout(&status).contains("no ("), "{}", stdout(&status));
}

/// Goal: `shardkv up` is the one command to run a local sharded cluster (the controller and
/// two shard groups, joined), and a second run on the same directory keeps the data and the
/// shard map without joining again. Method: start it, write through the CLI, change the
/// map with a move, SIGTERM it, check that its members are gone, start it again, read, and
/// compare the shard map.
#[test]
fn up_starts_a_sharded_cluster_and_a_restart_on_the_same_dir_keeps_data_and_map() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = free_base_port();
    let first = Up::start_at(tmp.path(), base, &[]);
    let (endpoints, text) = (first.endpoints.clone(), first.text.clone());
    let env = [
        ("SHARDKV_ENDPOINTS", endpoints.as_str()),
        ("SHARDKV_CTRL_ENDPOINTS", endpoints.as_str()),
    ];
    assert!(text.contains(&format!("127.0.0.1:{base}")), "{text}");
    assert!(text.contains("(leader)") && text.contains("try:"), "{text}");
    assert!(
        text.contains("config 1 (64 shards)"),
        "joined on the first start: {text}"
    );
    let put = run_cli(&["put", "kept", "across restarts"], &env, None);
    assert!(put.status.success(), "{}", stderr(&put));
    let moved = run_cli(&["admin", "move", "0", "2"], &env, None);
    assert!(moved.status.success(), "{}", stderr(&moved));
    let map = run_cli(&["admin", "query", "-w", "json"], &env, None);
    assert!(map.status.success(), "{}", stderr(&map));
    let status = run_cli(&["status"], &env, None);
    assert!(
        stdout(&status).contains("0/ctrl") && stdout(&status).contains("GROUP"),
        "status shows every group:\n{}",
        stdout(&status)
    );
    drop(first);
    let status = run_cli(&["status"], &env, None);
    assert!(
        !status.status.success(),
        "every member stopped with up:\n{}",
        stdout(&status)
    );

    let second = Up::start_at(tmp.path(), base, &[]);
    let get = run_cli(&["get", "kept"], &env, None);
    let map_after = run_cli(&["admin", "query", "-w", "json"], &env, None);
    drop(second);
    assert!(get.status.success(), "{}", stderr(&get));
    assert_eq!(stdout(&get), "across restarts\n");
    assert_eq!(
        stdout(&map_after),
        stdout(&map),
        "the shard map is kept and nothing is joined again"
    );
}

/// Goal: a member refuses a data directory that belongs to another node id. Method: run
/// node 2 on node 1's directory and expect a prompt non-zero exit naming the problem.
#[test]
fn a_server_refuses_another_nodes_data_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ports = free_ports(2);
    let peers = format!("1=127.0.0.1:{},2=127.0.0.1:{}", ports[0], ports[1]);
    let dir = tmp.path().join("n1");
    let run = |id: &str| {
        let mut child = Command::new(common::cluster::BIN)
            .args([
                "server",
                "--id",
                id,
                "--peers",
                &peers,
                "--disk-reserve",
                "0",
                "--bootstrap",
            ])
            .arg("--data-dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        (child.stderr.take(), child)
    };
    // Node 1 creates the directory, then stops.
    let (_, mut first) = run("1");
    wait_until(
        "node 1 to create its directory",
        Duration::from_secs(20),
        || dir.join("g1").join("node-id").exists(),
    );
    let pid = rustix::process::Pid::from_child(&first);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal");
    let _ = first.wait();
    let (err, mut second) = run("2");
    wait_until("node 2 to exit", Duration::from_secs(20), || {
        second.try_wait().expect("try_wait").is_some()
    });
    assert!(!second.wait().expect("status").success());
    let mut msg = String::new();
    std::io::Read::read_to_string(&mut err.expect("stderr"), &mut msg).expect("read");
    assert!(msg.contains("belongs to"), "{msg}");
}
