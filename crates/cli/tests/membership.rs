//! Membership change with real processes (issue 12, item 2): a member whose data directory
//! was deleted is replaced by a new member under a new id — started with `--join`, added as
//! a learner, promoted, the dead one removed — with `shardkv member`, while clients write;
//! nothing acknowledged is lost, the history is linearizable, the new member counts in the
//! quorum, and the survivors restart with the new member list.

mod common;

use common::cluster::{Cluster, run_cli};
use common::history::{Shared, await_progress, read_back_and_check, run_client, stop_clients};
use shardkv_client::{ClientOptions, CtrlClient, Gid};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Clients writing throughout.
const CLIENTS: usize = 3;
/// Keys every client reads and writes (each also appends to a key of its own).
const SHARED_KEYS: u64 = 3;
/// Acknowledged operations awaited between steps, so each step happens under load.
const PROGRESS_OPS: u64 = 30;
/// How long the clients get to finish after being told to stop.
const CLIENT_STOP_WAIT: Duration = Duration::from_secs(60);

/// Runs `shardkv member ARGS` against `endpoints` and returns its stdout; panics with its
/// output if it fails.
fn member(endpoints: &str, args: &[&str]) -> String {
    let mut all = vec!["member"];
    all.extend_from_slice(args);
    let out = run_cli(&all, &[("SHARDKV_ENDPOINTS", endpoints)], None);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "shardkv {all:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The members `member list -w json` reports, per group: (id, learner), sorted.
fn listed_groups(endpoints: &str) -> Vec<(u64, Vec<(u64, bool)>)> {
    let out = member(endpoints, &["list", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            let mut members: Vec<(u64, bool)> = g["members"]
                .as_array()
                .expect("members")
                .iter()
                .map(|m| {
                    let id = m["id"].as_u64().expect("id");
                    (id, m["learner"].as_bool().expect("learner"))
                })
                .collect();
            members.sort_unstable();
            (g["group"].as_u64().expect("group"), members)
        })
        .collect()
}

/// The members of the one group `member list` reports.
fn listed(endpoints: &str) -> Vec<(u64, bool)> {
    let groups = listed_groups(endpoints);
    assert_eq!(groups.len(), 1, "one group: {groups:?}");
    groups.into_iter().next().expect("one").1
}

/// How the cluster under test is laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One KV group per process.
    Single,
    /// Every process hosts the shard controller and shard groups 1 and 2 (as `shardkv up`).
    Sharded,
}

/// Starts the cluster; for the sharded layout joins groups 1 and 2 and waits until a key
/// can be written.
fn start(layout: Layout) -> Cluster {
    let mut args = vec!["--max-raft-state", "64KiB"];
    if layout == Layout::Sharded {
        args.extend(["--groups", "0=ctrl,1=shard,2=shard", "--shards", "16"]);
    }
    let c = Cluster::start(3, &args);
    if layout == Layout::Sharded {
        let eps = c.endpoints();
        let servers: Vec<String> = eps.split(',').map(String::from).collect();
        let mut ctrl = CtrlClient::connect_with(&[eps], patient()).expect("endpoints");
        let groups: BTreeMap<Gid, Vec<String>> =
            [(Gid(1), servers.clone()), (Gid(2), servers)].into();
        c.block_on(ctrl.join(groups))
            .expect("the controller answers")
            .expect("groups 1 and 2 join");
        let mut client = c.sharded_client(patient());
        c.block_on(client.put("warm", "up")).expect("a first write");
    }
    c
}

fn patient() -> ClientOptions {
    ClientOptions {
        op_timeout: Duration::from_secs(15),
        ..ClientOptions::default()
    }
}

fn client(c: &Cluster, layout: Layout) -> shardkv_client::Client {
    match layout {
        Layout::Single => c.client_with(patient()),
        Layout::Sharded => c.sharded_client(patient()),
    }
}

/// Goal: the documented replacement of a member whose disk is gone loses nothing
/// acknowledged and leaves working 3-voter groups. Method: 3 members (small
/// max-raft-state, so the new member catches up from a snapshot), 3 clients recording a
/// history; a follower is killed and its data directory deleted; member 4 starts with
/// `--join` and is added, promoted, and the dead member removed, each through `shardkv
/// member` (every group the processes host; for shard groups the controller then lists
/// the new servers); then another original member is killed, so the groups can only go
/// on with the new member's vote; the survivors restart with the new `--peers`; finally
/// every own key is read back and the whole history checked.
fn replace_under_load(layout: Layout) {
    let mut c = start(layout);
    let newcomer = c.add_member();
    let leader = c.leader();
    let shared = Shared::new();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let client = client(&c, layout);
            c.spawn_task(run_client(client, w, SHARED_KEYS, shared.clone()))
        })
        .collect();
    await_progress(&shared, PROGRESS_OPS, "before the member is lost");

    // A follower's disk is gone.
    let dead = (1..=3).find(|&id| id != leader).expect("a follower");
    c.kill(dead);
    std::fs::remove_dir_all(&c.member(dead).data_dir).expect("delete its data");
    await_progress(&shared, PROGRESS_OPS, "with one member dead");

    // Its replacement, under a new id.
    c.restart(newcomer);
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != dead).collect();
    let eps = |ids: &[u64]| {
        ids.iter()
            .map(|&id| c.member(id).addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    };
    let old = eps(&survivors);
    let started = Instant::now();
    let addr = c.member(newcomer).addr.clone();
    let id = newcomer.to_string();
    member(&old, &["add", &id, &addr]);
    for (g, members) in listed_groups(&old) {
        assert!(members.contains(&(newcomer, true)), "group {g}: a learner");
    }
    member(&old, &["promote", &id, "--timeout", "60s"]);
    let promoted = started.elapsed();
    await_progress(&shared, PROGRESS_OPS, "with the new member a voter");
    member(&old, &["remove", &dead.to_string()]);
    let replaced = started.elapsed();
    let now: Vec<u64> = survivors.iter().copied().chain([newcomer]).collect();
    let want: Vec<(u64, bool)> = now.iter().map(|&id| (id, false)).collect();
    let groups = listed_groups(&eps(&now));
    let hosted = if layout == Layout::Sharded { 3 } else { 1 };
    assert_eq!(groups.len(), hosted, "{groups:?}");
    for (g, members) in groups {
        assert_eq!(members, want, "group {g}: three voters, the dead one gone");
    }
    // Removing it again is a no-op that succeeds.
    member(&old, &["remove", &dead.to_string()]);
    println!(
        "membership change under load: add + promote took {promoted:?}, with the removal \
         {replaced:?}"
    );
    if layout == Layout::Sharded {
        // The controller lists each shard group's voters under their ids.
        let mut ctrl = CtrlClient::connect_with(&[eps(&now)], patient()).expect("endpoints");
        let config = c.block_on(ctrl.query(None)).expect("a config");
        let want: Vec<String> = now
            .iter()
            .map(|&id| format!("{id}={}", c.member(id).addr))
            .collect();
        for g in [Gid(1), Gid(2)] {
            assert_eq!(config.groups.get(&g), Some(&want), "group {}", g.0);
        }
    }
    await_progress(&shared, PROGRESS_OPS, "after the replacement");

    // The groups now need the new member: with one original member down, the other and
    // the newcomer are the quorum.
    let down = survivors[0];
    c.kill(down);
    await_progress(&shared, PROGRESS_OPS, "with the new member in the quorum");
    // Every member restarts with the new member list (the identity file followed the log).
    c.set_peers(&now);
    c.restart(down);
    for &id in &[survivors[1], newcomer] {
        c.kill(id);
        c.restart(id);
        await_progress(
            &shared,
            PROGRESS_OPS,
            "after restarting with the new members",
        );
    }

    let recorded = stop_clients(&c, &shared, handles, CLIENT_STOP_WAIT);
    let mut reader = client(&c, layout);
    read_back_and_check(
        &c,
        &mut reader,
        &shared,
        recorded,
        SHARED_KEYS,
        "member replaced under load",
    );
}

#[test]
fn a_member_whose_disk_is_gone_is_replaced_under_load_losing_nothing() {
    replace_under_load(Layout::Single);
}

#[test]
fn a_sharded_cluster_member_is_replaced_in_every_group_under_load_losing_nothing() {
    replace_under_load(Layout::Sharded);
}

/// Goal: the refusals an operator meets say what to do, and leave the group unchanged.
/// Method: promote a node that is not a member, add a member that exists, remove a voter
/// while a learner is unpromoted, start a
/// member with `--join` and `--bootstrap` together, restart a member with a member list
/// that is not the group's, and bring a wiped member back with `--join` under its old id.
#[test]
fn membership_refusals_are_clear_and_change_nothing() {
    let mut c = Cluster::start(3, &[]);
    c.leader();
    let eps = c.endpoints();
    let fails = |args: &[&str], want: &str| {
        let mut all = vec!["member"];
        all.extend_from_slice(args);
        let out = run_cli(&all, &[("SHARDKV_ENDPOINTS", eps.as_str())], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    };
    fails(&["promote", "9"], "not a member");
    fails(&["add", "2", "127.0.0.1:1"], "already");
    assert_eq!(
        listed(&eps),
        vec![(1, false), (2, false), (3, false)],
        "unchanged"
    );
    // With a learner not promoted yet, removing a voter is refused; the learner itself
    // may go.
    member(&eps, &["add", "9", "127.0.0.1:1"]);
    fails(&["remove", "3"], "not yet promoted");
    member(&eps, &["remove", "9"]);
    assert_eq!(listed(&eps), vec![(1, false), (2, false), (3, false)]);

    let dir = c.dir.join("both");
    let dir = dir.to_str().expect("utf-8");
    let peers = format!("1={},4=127.0.0.1:1", c.member(1).addr);
    let out = run_cli(
        &[
            "server",
            "--id",
            "4",
            "--peers",
            &peers,
            "--data-dir",
            dir,
            "--join",
            "--bootstrap",
        ],
        &[],
        None,
    );
    assert!(!out.status.success(), "--join with --bootstrap is refused");

    // A member restarted with a member list that is not the group's refuses, naming it.
    c.kill(3);
    let m = c.member(3);
    let peers = format!("1={},3={}", c.member(1).addr, m.addr);
    let dir = m.data_dir.to_str().expect("utf-8");
    let out = run_cli(
        &["server", "--id", "3", "--peers", &peers, "--data-dir", dir],
        &[],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("members: stored 1="), "{stderr}");

    // Its disk is gone; coming back with --join under its old id is refused (it would
    // vote having forgotten its votes), naming the way back.
    std::fs::remove_dir_all(&m.data_dir).expect("wipe");
    let peers = c.endpoints_with_ids();
    let out = run_cli(
        &[
            "server",
            "--id",
            "3",
            "--peers",
            &peers,
            "--data-dir",
            dir,
            "--join",
        ],
        &[],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("already a voter") && stderr.contains("NEW id"),
        "{stderr}"
    );
    assert!(
        !m.data_dir.join("g1").join("identity").exists(),
        "nothing created"
    );
}
