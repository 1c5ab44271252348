//! Real Redis clients nobody here wrote against `shardkv up`'s Redis Cluster ports:
//! `redis-cli -c` (Debian's redis-tools) runs every supported string command on keys of
//! every shard group, each time connected to a process that does NOT master the key's slot,
//! so every command first follows a `MOVED`; `redis-benchmark --cluster` runs SET, GET and
//! INCR to completion with no errors.
//!
//! Outcomes only: the waits are bounded polls; no timing is asserted.

mod common;

use common::redis::{master_port, redis_cli, redis_ports, run_tool, settled_masters};
use common::up::Up;
use shardkv_types::key_slot;
use std::io::{Read, Write};
use std::time::Duration;

/// A key whose slot `master` masters, as the process at `master` sees it.
fn key_mastered_by(master: u16) -> String {
    (0..10_000)
        .map(|i| format!("key{i}"))
        .find(|k| master_port(master, key_slot(k.as_bytes())) == Some(master))
        .expect("a key in the master's slots")
}

/// Every command and the exact reply `redis-cli` prints, for key `k` (nil prints empty).
fn script(k: &str) -> Vec<(Vec<String>, String)> {
    let tag = |s: &str| format!("{{{k}}}{s}");
    let steps: Vec<(Vec<String>, &str)> = vec![
        (vec!["set".into(), k.into(), "10".into()], "OK"),
        (vec!["get".into(), k.into()], "10"),
        (vec!["incr".into(), k.into()], "11"),
        (vec!["incrby".into(), k.into(), "5".into()], "16"),
        (vec!["decr".into(), k.into()], "15"),
        (vec!["decrby".into(), k.into(), "20".into()], "-5"),
        (vec!["append".into(), k.into(), "x".into()], "3"),
        (vec!["get".into(), k.into()], "-5x"),
        (
            vec!["incr".into(), k.into()],
            "ERR value is not an integer or out of range",
        ),
        (vec!["strlen".into(), k.into()], "3"),
        (vec!["setnx".into(), k.into(), "y".into()], "0"),
        (vec!["getset".into(), k.into(), "z".into()], "-5x"),
        (vec!["getdel".into(), k.into()], "z"),
        (vec!["exists".into(), k.into()], "0"),
        (vec!["setnx".into(), k.into(), "y".into()], "1"),
        (vec!["set".into(), k.into(), "w".into(), "nx".into()], ""),
        (
            vec![
                "set".into(),
                k.into(),
                "w".into(),
                "xx".into(),
                "get".into(),
            ],
            "y",
        ),
        (vec!["get".into(), k.into()], "w"),
        (
            vec!["mset".into(), tag("a"), "1".into(), tag("b"), "2".into()],
            "OK",
        ),
        (vec!["mget".into(), tag("a"), tag("c"), tag("b")], "1\n\n2"),
        (vec!["exists".into(), tag("a"), tag("c"), tag("a")], "2"),
        (
            vec!["del".into(), k.into(), tag("a"), tag("b"), tag("c")],
            "3",
        ),
        (vec!["del".into(), k.into()], "0"),
        (vec!["get".into(), k.into()], ""),
    ];
    steps.into_iter().map(|(a, r)| (a, r.to_string())).collect()
}

/// Sends `input` on one raw connection to `port` and reads until `replies` CRLF-ended
/// lines came back (bounded).
fn raw_exchange(port: u16, input: &[u8], lines: usize) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(input).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(2).filter(|w| w == b"\r\n").count() < lines {
        let n = s.read(&mut buf).expect("read within the timeout");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn redis_cli_follows_moved_and_answers_as_redis_for_keys_of_every_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Up::start(dir.path(), &[]);
    let ports = redis_ports(&up);
    let masters = settled_masters(&ports);
    for &master in &masters {
        let k = key_mastered_by(master);
        let slot = key_slot(k.as_bytes());
        let elsewhere = *ports.iter().find(|&&p| p != master).expect("a non-master");
        // Without -c, the non-master names the master; with -c every command starts there
        // and follows that MOVED.
        let moved = redis_cli(elsewhere, false, &["get", &k]);
        assert_eq!(moved, format!("MOVED {slot} 127.0.0.1:{master}"));
        for (args, want) in script(&k) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let got = redis_cli(elsewhere, true, &args);
            assert_eq!(got, want, "redis-cli -c -p {elsewhere} {args:?}");
        }
    }
    // Keys of different slots in one command: refused as Redis Cluster does.
    let keys: Vec<String> = masters.iter().map(|&m| key_mastered_by(m)).collect();
    let crossslot = redis_cli(ports[0], true, &["mset", &keys[0], "1", &keys[1], "2"]);
    assert_eq!(
        crossslot,
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    // An unknown command is answered and the same connection keeps serving.
    let text = raw_exchange(ports[0], b"CLIENT ID\r\nFLUSHALL\r\nCLIENT ID\r\n", 3);
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines[0].starts_with(':'), "{text}");
    assert_eq!(
        lines[1],
        "-ERR unknown command 'FLUSHALL', with args beginning with: "
    );
    assert_eq!(lines[2], lines[0], "the same connection: {text}");
}

#[test]
fn redis_benchmark_cluster_completes_without_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Up::start(dir.path(), &[]);
    let ports = redis_ports(&up);
    let masters = settled_masters(&ports);
    let port = ports[0].to_string();
    let args = [
        "--cluster",
        "-p",
        &port,
        "-t",
        "set,get,incr",
        "-n",
        "20000",
        "-q",
    ];
    let (ok, out, err) = run_tool("redis-benchmark", &args, Duration::from_secs(600));
    assert!(ok, "redis-benchmark failed:\n{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(
        !all.to_ascii_lowercase().contains("error"),
        "redis-benchmark reported errors:\n{all}"
    );
    for test in ["SET", "GET", "INCR"] {
        // With -q each test ends with `TEST: N requests per second, p50=...` (after the
        // progress lines, which end in carriage returns).
        let done = all
            .split(['\r', '\n'])
            .find(|l| l.starts_with(&format!("{test}: ")) && l.contains("requests per second"));
        let rps: f64 = done
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {test} result in:\n{all}"));
        assert!(rps > 0.0, "{test}: {rps}");
    }
    // The keys it wrote are there: each master counts keys in its slots (a SET key and an
    // INCR counter per hash tag redis-benchmark picked).
    let keys: i64 = masters
        .iter()
        .map(|&m| {
            let n = redis_cli(m, false, &["dbsize"]);
            n.parse::<i64>()
                .unwrap_or_else(|_| panic!("DBSIZE at {m}: {n}"))
        })
        .sum();
    assert!(keys >= 2, "the benchmark's keys exist: {keys}");
}
