//! `--log-format`: JSON lines that parse, and a replica's lines carrying its node id,
//! group and term (as spans); the text default shows the same spans. A single-member group
//! elects itself, so one process is enough; waits poll its log with a deadline.

mod common;

use common::cluster::{BIN, LEADER_WAIT, free_ports, tail};
use common::wait::wait_until;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A single-member server logging to `dir/n1.log` with `extra` flags.
fn start(dir: &Path, extra: &[&str]) -> Child {
    let port = free_ports(1)[0];
    let log = File::create(dir.join("n1.log")).expect("log");
    Command::new(BIN)
        .args([
            "server",
            "--id",
            "1",
            "--peers",
            &format!("1=127.0.0.1:{port}"),
        ])
        .args([
            "--bootstrap",
            "--disk-reserve",
            "0",
            "--admin-listen",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir.join("n1"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("spawn shardkv server")
}

/// Waits until the log has a line containing `needle`, then kills the server.
fn run_until_logged(dir: &Path, mut child: Child, needle: &str) -> String {
    let log = dir.join("n1.log");
    let mut seen = false;
    wait_until(&format!("a log line with {needle:?}"), LEADER_WAIT, || {
        seen = std::fs::read_to_string(&log).is_ok_and(|t| t.contains(needle));
        seen || child.try_wait().ok().flatten().is_some()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "the server exited early:\n{}", tail(&log, 30));
    std::fs::read_to_string(&log).expect("read log")
}

/// The span named `name` of a JSON log line.
fn span<'a>(line: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == name)
}

#[test]
fn json_lines_parse_and_a_replicas_lines_carry_node_group_and_term() {
    // Goal: every JSON line parses and a replica's lines carry node, group and term; method: one
    // member elects itself.
    let dir = tempfile::tempdir().expect("temp dir");
    let child = start(dir.path(), &["--log-format", "json"]);
    let text = run_until_logged(dir.path(), child, "raft state changed");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["message"].is_string())
    );
    let changed = lines
        .iter()
        .find(|l| l["message"] == "raft state changed")
        .expect("the election is logged");
    assert_eq!(span(changed, "node").map(|s| &s["id"]), Some(&1.into()));
    assert_eq!(span(changed, "group").map(|s| &s["gid"]), Some(&1.into()));
    let term = span(changed, "raft").and_then(|s| s["term"].as_u64());
    assert!(term >= Some(1), "the elected term: {changed}");
    let logged_term = changed["term"].as_str().map(str::to_string);
    assert_eq!(
        logged_term,
        term.map(|t| format!("t{t}")),
        "the span has the line's term"
    );
    // Every line logged on a replica's thread has all three.
    let replica_lines: Vec<_> = lines.iter().filter(|l| span(l, "raft").is_some()).collect();
    assert!(replica_lines.len() >= 2, "{text}");
    for l in replica_lines {
        assert!(
            span(l, "node").is_some() && span(l, "group").is_some(),
            "{l}"
        );
        assert!(span(l, "raft").is_some_and(|s| s["term"].is_u64()), "{l}");
    }
}

#[test]
fn text_lines_show_node_group_and_term_by_default() {
    // Goal: the text default shows the same spans; method: the election line.
    let dir = tempfile::tempdir().expect("temp dir");
    let child = start(dir.path(), &[]);
    let text = run_until_logged(dir.path(), child, "raft state changed");
    let changed = text
        .lines()
        .find(|l| l.contains("raft state changed"))
        .expect("the election is logged");
    assert!(
        changed.contains("node{id=1}") && changed.contains("group{gid=1"),
        "{changed}"
    );
    assert!(changed.contains("raft{term="), "{changed}");
    assert!(
        serde_json::from_str::<serde_json::Value>(changed).is_err(),
        "text, not JSON"
    );
}
