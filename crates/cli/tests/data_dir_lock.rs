//! Two processes on one data directory: the second `shardkv server` is refused with a
//! message naming the directory and the holder, before it touches the live member's files,
//! whether it asks for the same port or another one; the live group keeps serving.

mod common;

use common::cluster::{BIN, CLI_LIMIT, Cluster, free_ports};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every file under `dir` (recursively) with its length.
fn files(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                let name = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, meta.len());
            }
        }
    }
    out
}

/// Runs a second server for member 1 on its data directory, listening on `listen`; bounded
/// by [`CLI_LIMIT`].
fn second_server(c: &Cluster, listen: &str) -> Output {
    let peers = c
        .members
        .iter()
        .map(|m| format!("{}={}", m.id, m.addr))
        .collect::<Vec<_>>()
        .join(",");
    let mut child = Command::new(BIN)
        .args(["server", "--id", "1", "--peers", &peers, "--listen", listen])
        .arg("--data-dir")
        .arg(&c.member(1).data_dir)
        .args(["--disk-reserve", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the second server");
    let deadline = Instant::now() + CLI_LIMIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the second server on a locked data directory kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Goal: a second server on a live member's data directory exits non-zero with a message
/// naming the directory and the live pid, on another port and on the same port, and the
/// live member keeps its files and keeps serving. Method: a 3-member group with snapshots;
/// write; start the second server twice; compare the member's files (names) and write and
/// read again through the group.
#[test]
fn a_second_server_on_a_live_data_dir_is_refused_and_the_first_keeps_serving() {
    let c = Cluster::start(3, &["--max-raft-state", "4KiB"]);
    c.leader();
    let mut client = c.client();
    c.block_on(async {
        for i in 0..50 {
            client
                .put(format!("k{i}"), "v".repeat(200))
                .await
                .expect("put");
        }
    });
    let dir = c.member(1).data_dir.clone();
    let before = files(&dir);
    let other_port = format!("127.0.0.1:{}", free_ports(1)[0]);
    let own_port = c.member(1).addr.clone();
    for listen in [other_port.as_str(), own_port.as_str()] {
        let out = second_server(&c, listen);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "second server on {listen} must fail");
        assert!(
            stderr.contains("in use by another process")
                && stderr.contains(&dir.display().to_string()),
            "the refusal names the data directory: {stderr}"
        );
        assert!(
            stderr.contains("pid "),
            "the refusal names the holder: {stderr}"
        );
    }
    // Nothing of the live member's vanished (files may grow, none disappears).
    let after = files(&dir);
    for name in before.keys().filter(|n| !n.ends_with(".tmp")) {
        assert!(after.contains_key(name), "{name} vanished: {after:?}");
    }
    c.block_on(async {
        for i in 50..60 {
            client.put(format!("k{i}"), "w").await.expect("put after");
        }
        assert_eq!(client.get("k59").await.expect("get"), Some(b"w".to_vec()));
    });
    assert!(
        c.status(1).is_some(),
        "the first member still answers status"
    );
}
