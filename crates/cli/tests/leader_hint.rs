//! "Any member will do": a client given the address of one follower only finds the
//! leader, because a `NotLeader` answer carries the leader's address as well as its id.
//! Before, the client knew the leader's id but not where to reach it, and failed however
//! long it waited.
//!
//! Outcomes only: the follower is found with bounded polls, and the commands get a
//! generous timeout (the old behaviour fails regardless of it).

mod common;

use common::cluster::{Cluster, LEADER_WAIT, run_cli, wait_until};
use common::up::Up;
use shardkv_client::{Client, ClientOptions, Gid, Role, fetch_group_status};
use std::process::Output;
use std::time::Duration;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The address of a member of `endpoints` that follows a leader of `group` (`None`: the
/// servers' default group), once one is elected.
fn a_follower(endpoints: &str, group: Option<Gid>) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut found = String::new();
    wait_until("a follower of an elected leader", LEADER_WAIT, || {
        for addr in endpoints.split(',') {
            let status = rt.block_on(fetch_group_status(addr, group, Duration::from_secs(1)));
            if let Ok(s) = status
                && s.role == Role::Follower
                && s.leader.is_some()
            {
                found = addr.to_string();
                return true;
            }
        }
        false
    });
    found
}

/// Runs `shardkv ARGS --endpoints ENDPOINTS --timeout 20s`.
fn cli_at(endpoints: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut all = args.to_vec();
    all.extend(["--endpoints", endpoints, "--timeout", "20s"]);
    run_cli(&all, &[], stdin)
}

/// Goal: the CLI and the library, given one follower of a replica group, write and read.
#[test]
fn one_follower_endpoint_of_a_group_is_enough() {
    let c = Cluster::start(3, &[]);
    c.leader();
    let follower = a_follower(&c.endpoints(), None);

    let put = cli_at(&follower, &["put", "k", "v1"], None);
    assert!(put.status.success(), "put via {follower}: {}", stderr(&put));
    let get = cli_at(&follower, &["get", "k"], None);
    assert!(get.status.success(), "get via {follower}: {}", stderr(&get));
    assert!(stdout(&get).starts_with("v1"), "{}", stdout(&get));

    let opts = ClientOptions {
        op_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    };
    let mut client = Client::connect_with(std::slice::from_ref(&follower), opts).expect("valid");
    c.block_on(client.put(b"lib", b"v2"))
        .expect("a put through one follower");
    let got = c.block_on(client.get(b"lib")).expect("a get");
    assert_eq!(got.as_deref(), Some(&b"v2"[..]));
}

/// Goal: the sharded client reaches the controller through one follower of it (the groups'
/// addresses then come from the controller's config, as before).
#[test]
fn one_follower_endpoint_of_a_sharded_cluster_is_enough() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = Up::start(tmp.path(), &[]);
    let follower = a_follower(&up.endpoints, Some(Gid(0)));

    let put = cli_at(&follower, &["put", "k", "sharded"], None);
    assert!(put.status.success(), "put via {follower}: {}", stderr(&put));
    let get = cli_at(&follower, &["get", "k"], None);
    assert!(get.status.success(), "get via {follower}: {}", stderr(&get));
    assert!(stdout(&get).starts_with("sharded"), "{}", stdout(&get));
}
