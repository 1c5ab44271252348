//! The sharded cluster as real processes, judged by its history: 3 `shardkv server`
//! processes each host a replica of the shard controller and of shard groups 1, 2 and 3
//! (as `shardkv up` runs them). Sharded library clients record every operation while the
//! test joins a third group, moves shards (killing, with SIGKILL, the process that hosts
//! the leader of the source group during one move and of the destination group during
//! another), drains a group with leave, and kills and restarts every process. Then every
//! acknowledged append must be present exactly once and in order, the whole history must
//! pass the linearizability checker (undecided fails), every group must reach the latest
//! config with no shard left in migration, and the drained group must hold nothing.
//!
//! Outcomes only: every wait is a bounded poll, nothing depends on speed.

mod common;

use common::cluster::{Cluster, LEADER_WAIT, wait_until};
use common::history::{Shared, await_progress, read_back_and_check, run_client, stop_clients};
use shardkv_client::{ClientOptions, Config, ConfigNum, CtrlClient, Gid};
use shardkv_types::shard_of_key;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What every process hosts: the controller and three shard groups.
const GROUPS: &str = "0=ctrl,1=shard,2=shard,3=shard";
/// The shard count (a small one, so every group owns several and moves are quick).
const SHARDS: u32 = 16;
/// Clients running concurrently (the first two impatient).
const CLIENTS: usize = 5;
/// Keys every client reads and writes, besides its own.
const SHARED_KEYS: u64 = 4;
/// Acknowledged operations awaited between faults, so each fault hits a working cluster.
const PROGRESS_OPS: u64 = 100;
/// How long the clients get to finish after being told to stop.
const CLIENT_STOP_WAIT: Duration = Duration::from_secs(60);

fn ctrl_opts() -> ClientOptions {
    ClientOptions {
        op_timeout: LEADER_WAIT,
        ..ClientOptions::default()
    }
}

/// The controller's latest config.
fn latest(c: &Cluster, ctrl: &mut CtrlClient) -> Config {
    c.block_on(ctrl.query(None))
        .expect("the controller answers")
}

/// Moves the shard of `key` to another member group; returns (source, destination, the
/// config that moves it).
fn move_shard_of(c: &Cluster, ctrl: &mut CtrlClient, key: &str) -> (Gid, Gid, ConfigNum) {
    let config = latest(c, ctrl);
    let shard = shard_of_key(key.as_bytes(), SHARDS);
    let src = config.owner(shard).expect("every shard is assigned");
    let dst = *config
        .groups
        .keys()
        .rev()
        .find(|&&g| g != src)
        .expect("another group");
    let num = c
        .block_on(ctrl.move_shard(shard, dst))
        .expect("the controller answers")
        .expect("the move is accepted");
    (src, dst, num)
}

/// Once `group` took config `num` (so its part of the move has begun: a source froze the
/// shard, a destination is pulling or has installed it), kills the process hosting its
/// leader, waits for progress without it, and restarts it.
fn kill_leader_of(c: &mut Cluster, shared: &Shared, group: Gid, num: ConfigNum, what: &str) {
    wait_until(
        &format!("group {} to take config {num}", group.0),
        LEADER_WAIT,
        || {
            let leader = c.group_leader(group);
            c.group_status(leader, group)
                .and_then(|s| s.shards)
                .is_some_and(|h| h.config >= num)
        },
    );
    let host = c.group_leader(group);
    c.kill(host);
    await_progress(shared, PROGRESS_OPS, what);
    c.restart(host);
}

/// Waits until group `gid`, hosted by `c`, reports config `num` (or later) with no shard in
/// migration.
fn wait_settled(c: &Cluster, gid: Gid, num: ConfigNum) {
    c.wait_group_settled(gid, num, LEADER_WAIT);
}

/// Waits until every shard group of `groups` reports the latest config with no shard in
/// migration; returns that config.
fn settle_groups(c: &Cluster, ctrl: &mut CtrlClient, groups: &[Gid]) -> Config {
    let config = latest(c, ctrl);
    for &g in groups {
        wait_settled(c, g, config.num);
    }
    config
}

/// [`settle_groups`] for groups 1, 2 and 3.
fn settle(c: &Cluster, ctrl: &mut CtrlClient) -> Config {
    settle_groups(c, ctrl, &[Gid(1), Gid(2), Gid(3)])
}

/// Goal: shards move with their data and sessions while clients keep working, through
/// crashes of both sides of a move and of every process: nothing acknowledged is lost or
/// duplicated, the history is linearizable, moved shards are deleted at the old owner.
/// Method: see the module docs; faults in order, progress awaited between them.
#[test]
fn sharded_history_under_join_moves_kills_and_leave_is_linearizable() {
    let started = Instant::now();
    let shards = SHARDS.to_string();
    let mut c = Cluster::start(
        3,
        &[
            "--groups",
            GROUPS,
            "--shards",
            &shards,
            "--max-raft-state",
            "64KiB",
        ],
    );
    let endpoints = c.endpoints();
    let servers: Vec<String> = endpoints.split(',').map(String::from).collect();
    let mut ctrl = CtrlClient::connect_with(&[endpoints], ctrl_opts()).expect("endpoints");
    let first: BTreeMap<Gid, Vec<String>> =
        [(Gid(1), servers.clone()), (Gid(2), servers.clone())].into();
    c.block_on(ctrl.join(first))
        .expect("the controller answers")
        .expect("groups 1 and 2 join");
    settle(&c, &mut ctrl);

    let shared = Shared::new();
    let patient = ClientOptions {
        op_timeout: Duration::from_secs(15),
        ..ClientOptions::default()
    };
    // Two impatient clients give up during outages, so the history also holds operations
    // that failed and operations whose outcome is unknown.
    let impatient = ClientOptions {
        attempt_timeout: Duration::from_millis(100),
        op_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let handles: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let o = if w < 2 { &impatient } else { &patient };
            let client = c.sharded_client(o.clone());
            c.spawn_task(run_client(client, w, SHARED_KEYS, shared.clone()))
        })
        .collect();

    await_progress(&shared, PROGRESS_OPS, "before the first change");
    let third: BTreeMap<Gid, Vec<String>> = [(Gid(3), servers.clone())].into();
    c.block_on(ctrl.join(third))
        .expect("the controller answers")
        .expect("group 3 joins");
    await_progress(&shared, PROGRESS_OPS, "after group 3 joined");

    let (src, _, num) = move_shard_of(&c, &mut ctrl, "s0");
    kill_leader_of(
        &mut c,
        &shared,
        src,
        num,
        "with the source's leader killed mid-move",
    );
    let (_, dst, num) = move_shard_of(&c, &mut ctrl, "own2");
    kill_leader_of(
        &mut c,
        &shared,
        dst,
        num,
        "with the destination's leader killed",
    );

    c.block_on(ctrl.leave(&[Gid(1)]))
        .expect("the controller answers")
        .expect("group 1 leaves");
    await_progress(&shared, PROGRESS_OPS, "after group 1 left");

    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.restart(id);
    }
    await_progress(&shared, PROGRESS_OPS, "after restarting every process");
    let config = settle(&c, &mut ctrl);

    let recorded = stop_clients(&c, &shared, handles, CLIENT_STOP_WAIT);

    // The drained group gave every shard away and deleted each once its new owner had it.
    assert!(!config.groups.contains_key(&Gid(1)), "{config:?}");
    let g1 = c.group_leader(Gid(1));
    let held = c
        .group_status(g1, Gid(1))
        .and_then(|s| s.shards)
        .expect("group 1 answers");
    assert!(held.shards.is_empty(), "group 1 left yet holds {held:?}");

    let mut reader = c.sharded_client(patient);
    let what = format!(
        "config {} after join, 2 moves with leader kills, leave, full restart, {:?}",
        config.num,
        started.elapsed()
    );
    read_back_and_check(&c, &mut reader, &shared, recorded, SHARED_KEYS, &what);
}

/// Goal: a group on new processes joins a running cluster, takes shards with their data,
/// and the first group drains out with leave, as docs/sharding.md tells an operator to do.
/// Method: processes A host the controller and group 1; processes B (other ports) host
/// only group 2 and are pointed at A's controller with `--ctrl`; keys written before the
/// join read back the same after `admin join 2=B...` and after `admin leave 1`.
#[test]
fn a_group_on_new_processes_joins_a_running_cluster_and_the_first_drains() {
    let (a, b) = Cluster::start_two_sets(SHARDS, &[]);
    let ctrl_endpoints = a.endpoints();
    let mut ctrl = CtrlClient::connect_with(std::slice::from_ref(&ctrl_endpoints), ctrl_opts())
        .expect("endpoints");
    let servers = |c: &Cluster| {
        c.endpoints()
            .split(',')
            .map(String::from)
            .collect::<Vec<_>>()
    };
    a.block_on(ctrl.join([(Gid(1), servers(&a))].into()))
        .expect("the controller answers")
        .expect("group 1 joins");
    let mut client = a.sharded_client(ctrl_opts());
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    for k in &keys {
        a.block_on(client.put(k.as_str(), k.as_str())).expect("put");
    }
    let joined = a
        .block_on(ctrl.join([(Gid(2), servers(&b))].into()))
        .expect("the controller answers")
        .expect("group 2 joins");
    wait_settled(&b, Gid(2), joined);
    wait_settled(&a, Gid(1), joined);
    let read_all = |client: &mut shardkv_client::Client| {
        for k in &keys {
            let got = a.block_on(client.get(k.as_str())).expect("get");
            assert_eq!(got, Some(k.as_bytes().to_vec()), "{k}");
        }
    };
    read_all(&mut client);
    let left = a
        .block_on(ctrl.leave(&[Gid(1)]))
        .expect("the controller answers")
        .expect("group 1 leaves");
    wait_settled(&b, Gid(2), left);
    wait_settled(&a, Gid(1), left);
    read_all(&mut client);
    let g1 = a.group_leader(Gid(1));
    let held = a.group_status(g1, Gid(1)).and_then(|s| s.shards);
    assert!(
        held.is_some_and(|h| h.shards.is_empty()),
        "the drained group deleted every shard it gave away"
    );
    let config = latest(&a, &mut ctrl);
    assert!(
        config.shards.iter().all(|&g| g == Gid(2)),
        "group 2 owns every shard: {config:?}"
    );
    // The CLI, pointed at B's servers and A's controller, is sharded and reads the same.
    let env = [
        ("SHARDKV_ENDPOINTS", b.endpoints()),
        ("SHARDKV_CTRL_ENDPOINTS", ctrl_endpoints),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let got = common::cluster::run_cli(&["get", "key7"], &env, None);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout), "key7\n");
}

/// Goal: `shardkv bench` is sharded against a sharded cluster, and its history stays
/// linearizable while shards move under it. Method: 3 processes hosting the controller and
/// groups 1 and 2, joined; `bench --history` runs as a child process while the test moves
/// three shards back and forth; then `check-history` on the file must say linearizable.
#[test]
fn bench_history_against_a_sharded_cluster_during_moves_passes_check_history() {
    let shards = SHARDS.to_string();
    let c = Cluster::start(
        3,
        &["--groups", "0=ctrl,1=shard,2=shard", "--shards", &shards],
    );
    let endpoints = c.endpoints();
    let servers: Vec<String> = endpoints.split(',').map(String::from).collect();
    let mut ctrl =
        CtrlClient::connect_with(std::slice::from_ref(&endpoints), ctrl_opts()).expect("endpoints");
    let both: BTreeMap<Gid, Vec<String>> = [(Gid(1), servers.clone()), (Gid(2), servers)].into();
    c.block_on(ctrl.join(both))
        .expect("the controller answers")
        .expect("groups 1 and 2 join");
    settle_groups(&c, &mut ctrl, &[Gid(1), Gid(2)]);
    let path = c.dir.join("bench.jsonl");
    let path_arg = path.to_str().expect("UTF-8 temp path");
    let mut bench = std::process::Command::new(common::cluster::BIN)
        .args([
            "bench",
            "--clients",
            "8",
            "--keys",
            "8",
            "--read-ratio",
            "0.5",
        ])
        .args(["--value-size", "16", "--warmup", "0s", "--duration", "3s"])
        .args(["--key-prefix", "b"])
        .args([
            "--history",
            path_arg,
            "-w",
            "json",
            "--endpoints",
            &endpoints,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bench");
    // Bench keys are the prefix and an 8-digit index: move the shards of three of them,
    // there and back.
    let keys = ["b00000000", "b00000003", "b00000006"];
    for key in keys.iter().chain(keys.iter()) {
        move_shard_of(&c, &mut ctrl, key);
    }
    wait_until("bench to finish", LEADER_WAIT, || {
        bench.try_wait().expect("try_wait").is_some()
    });
    let out = bench.wait_with_output().expect("bench output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(text.trim()).expect("bench JSON");
    assert!(report["writes"]["ops"].as_u64() > Some(0), "{report}");
    let check = common::cluster::run_cli(&["check-history", path_arg], &[], None);
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(check.status.success(), "check-history: {said}");
    assert!(said.contains("verdict: linearizable"), "{said}");
    settle_groups(&c, &mut ctrl, &[Gid(1), Gid(2)]);
}
