//! Real processes: one `shardkv server` process hosts replicas of several groups (the shard
//! controller, group 0, and KV groups 1 and 2), each in its own directory with its own
//! Raft state, behind one port. `shardkv admin` changes and reads the controller's configs,
//! the KV service keeps serving next to it, and both survive `kill -9` of every process.
//!
//! Outcomes only: every wait is a bounded poll, nothing depends on speed.

mod common;

use common::cluster::{Cluster, LEADER_WAIT, run_cli, wait_until};
use shardkv_client::ClientOptions;
use shardkv_types::Gid;
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Client options for KV group `gid`, with a deadline long enough for a restart's election.
fn group(gid: u64) -> ClientOptions {
    ClientOptions {
        group: Gid(gid),
        op_timeout: LEADER_WAIT,
        ..ClientOptions::default()
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `shardkv admin ARGS` against the cluster's controller, in JSON.
fn admin(c: &Cluster, args: &[&str]) -> Output {
    let endpoints = c.endpoints();
    let mut argv = vec!["admin"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--endpoints", &endpoints, "-w", "json"]);
    run_cli(&argv, &[], None)
}

/// Retries an admin command until it exits 0 (the controller group may still be electing),
/// bounded by the leader wait.
fn admin_ok(c: &Cluster, args: &[&str]) -> String {
    let mut last = None;
    wait_until("an admin command to succeed", LEADER_WAIT, || {
        let out = admin(c, args);
        let ok = out.status.success();
        last = Some(out);
        ok
    });
    stdout(&last.expect("ran"))
}

#[test]
fn one_process_hosts_the_controller_and_two_kv_groups_each_in_its_own_directory() {
    // Goal: a process hosts replicas of several groups routed by group id on one port, each
    // persisted on its own. Method: 3 processes with --groups 0=ctrl,1=kv,2=kv; admin joins
    // and queries, KV puts and gets, then kill -9 and restart of every process, then the
    // same configs and values are read back.
    let mut c = Cluster::start(3, &["--groups", "0=ctrl,1=kv,2=kv", "--shards", "16"]);
    c.leader();
    let joined = json(&admin_ok(
        &c,
        &["join", "1=127.0.0.1:1,127.0.0.1:2", "2=127.0.0.1:3"],
    ));
    assert_eq!(joined["config"], 1, "{joined}");
    let refused = admin(&c, &["join", "1=127.0.0.1:9"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("already a member"),
        "{}",
        stderr(&refused)
    );
    let config = json(&admin_ok(&c, &["query"]));
    assert_eq!(config["num"], 1, "{config}");
    assert_eq!(config["groups"]["2"][0], "127.0.0.1:3", "{config}");
    let shards = config["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 16);
    for g in [1, 2] {
        let owned = shards.iter().filter(|s| **s == g).count();
        assert_eq!(owned, 8, "balanced: {config}");
    }
    // Each KV group keeps its own data: the same key in groups 1 and 2.
    let mut g1 = c.client_with(group(1));
    let mut g2 = c.client_with(group(2));
    c.block_on(async {
        g1.put("k", "v1").await.expect("put in group 1");
        g2.put("k", "v2").await.expect("put in group 2");
    });
    // A request that names no group is refused when the servers host several.
    let unnamed = c.cli(&["get", "k"], None);
    assert!(!unnamed.status.success());
    assert!(
        stderr(&unnamed).contains("name one"),
        "{}",
        stderr(&unnamed)
    );
    // A group the servers do not host is WrongGroup (the client's view is stale).
    let mut g9 = c.client_with(group(9));
    let wrong = c.block_on(async { g9.get("k").await });
    assert!(wrong.is_err(), "group 9 is not hosted: {wrong:?}");
    for m in &c.members {
        for g in ["g0", "g1", "g2"] {
            let dir = m.data_dir.join(g);
            assert!(
                dir.join("identity").exists(),
                "no identity in {}",
                dir.display()
            );
        }
    }
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.restart(id);
    }
    c.leader();
    let after = json(&admin_ok(&c, &["query"]));
    assert_eq!(
        after, config,
        "the controller's config survives kill -9 of every process"
    );
    let old = json(&admin_ok(&c, &["query", "0"]));
    assert_eq!(old["num"], 0, "{old}");
    for (gid, want) in [(1, "v1"), (2, "v2")] {
        let mut client = c.client_with(group(gid));
        let got = c.block_on(async { client.get("k").await });
        assert_eq!(
            got.expect("get after restart"),
            Some(want.as_bytes().to_vec())
        );
    }
}

#[test]
fn a_server_refuses_a_single_group_data_directory_and_says_how_to_migrate() {
    // Goal: a data directory in the old single-group layout is refused, never shadowed by a
    // new empty group. Method: plant a file of the old layout and start a member on it.
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("node-id"), b"1").expect("write");
    let port = common::cluster::free_ports(1)[0];
    let peers = format!("1=127.0.0.1:{port}");
    let dir = tmp.path().to_str().expect("utf-8");
    let out = run_cli(
        &["server", "--id", "1", "--peers", &peers, "--data-dir", dir],
        &[],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("single-group data directory"),
        "{}",
        stderr(&out)
    );
}
