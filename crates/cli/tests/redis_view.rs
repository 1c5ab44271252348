//! The Redis Cluster view across process sets: a shard group on processes that are not in
//! the other processes' `--peers` (added later on other machines, as docs/deploy.md shows,
//! reusing member ids 1-3) is seen by every process through the controller's config, and
//! its slots are mastered by its own processes, which count its keys (`DBSIZE`, `INFO
//! keyspace`).
//!
//! Outcomes only: the waits are bounded polls; no timing is asserted.

mod common;

use common::cluster::{Cluster, LEADER_WAIT, wait_until};
use common::redis::{VIEW_WAIT, master_port, redis_cli};
use shardkv_client::{ClientOptions, CtrlClient, Gid};
use shardkv_types::{key_slot, shard_of_key};
use std::collections::BTreeSet;
use std::time::Duration;

const SHARDS: u32 = 16;

/// The RESP port each member of `c` advertises in its status of `gid`.
fn resp_ports(c: &Cluster, gid: Gid) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    wait_until(
        "every member to answer with its RESP address",
        LEADER_WAIT,
        || {
            ports = (1..=3)
                .filter_map(|id| c.group_status(id, gid)?.redis_addr)
                .filter_map(|a| a.rsplit_once(':')?.1.parse().ok())
                .collect();
            ports.len() == 3
        },
    );
    ports
}

/// Goal: processes A (controller, group 1) and B (group 2 only, `--ctrl` at A, member ids
/// 1-3 again) each list all six processes as nodes, group 2's slots are mastered by a
/// process of B as seen from A, and `redis-cli -c` through A's port writes and reads a key
/// of group 2. Before the view was built from the config, A's processes asked only their
/// own peers and named one of their own as group 2's master (same member id as B's leader).
#[test]
fn a_group_outside_the_peers_is_mastered_by_its_own_processes() {
    let (a, b) = Cluster::start_two_sets(SHARDS, &["--redis-listen", "127.0.0.1:0"]);
    let ctrl_endpoints = a.endpoints();
    let opts = ClientOptions {
        op_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    let mut ctrl =
        CtrlClient::connect_with(std::slice::from_ref(&ctrl_endpoints), opts).expect("endpoints");
    let servers = |c: &Cluster| c.endpoints().split(',').map(String::from).collect();
    a.block_on(ctrl.join([(Gid(1), servers(&a))].into()))
        .expect("the controller answers")
        .expect("group 1 joins");
    a.block_on(ctrl.join([(Gid(2), servers(&b))].into()))
        .expect("the controller answers")
        .expect("group 2 joins");
    let config = a.block_on(ctrl.query(None)).expect("config");
    let key = (0..10_000)
        .map(|i| format!("key{i}"))
        .find(|k| config.shards[shard_of_key(k.as_bytes(), SHARDS).0 as usize] == Gid(2))
        .expect("a key of group 2");
    let slot = key_slot(key.as_bytes());
    let a_ports = resp_ports(&a, Gid(1));
    let b_ports = resp_ports(&b, Gid(2));
    let a_port = *a_ports.first().expect("a port of A");

    // Group 2 takes its shards (a move, after the join).
    b.wait_group_settled(Gid(2), config.num, VIEW_WAIT);
    // Every process's view converges (each polls on its own): six nodes with six distinct
    // ids, and the same process of B as the slot's master.
    let all: Vec<u16> = a_ports.iter().chain(&b_ports).copied().collect();
    let converged = || {
        let master = master_port(a_port, slot).filter(|p| b_ports.contains(p))?;
        all.iter()
            .all(|&p| {
                let nodes = redis_cli(p, false, &["cluster", "nodes"]);
                let ids: BTreeSet<&str> =
                    nodes.lines().filter_map(|l| l.split(' ').next()).collect();
                ids.len() == 6 && nodes.lines().count() == 6 && master_port(p, slot) == Some(master)
            })
            .then_some(master)
    };
    wait_until(
        "every view to list the six processes and name one of B's as the slot's master",
        VIEW_WAIT,
        || converged().is_some(),
    );
    let b_port = *b_ports.first().expect("a port of B");

    assert_eq!(redis_cli(a_port, true, &["set", &key, "from-a"]), "OK");
    assert_eq!(redis_cli(a_port, true, &["get", &key]), "from-a");
    assert_eq!(redis_cli(b_port, true, &["get", &key]), "from-a");

    // The master of group 2 counts the key in DBSIZE (asked of its groups at once) and in
    // its INFO keyspace (its groups' keys, as its last poll of their statuses said). The
    // master is asked again each time: leadership may still move to group 2's preferred
    // member (shardkv_host::leader_preference), and a process that no longer leads the
    // group counts none of its keys.
    let counted = |command: &[&str], ok: fn(&str) -> bool| {
        master_port(b_port, slot).is_some_and(|m| ok(&redis_cli(m, false, command)))
    };
    wait_until(
        "group 2's master to count the key in DBSIZE",
        VIEW_WAIT,
        || counted(&["dbsize"], |n| n == "1"),
    );
    wait_until(
        "group 2's master to count the key in INFO keyspace",
        VIEW_WAIT,
        || {
            counted(&["info", "keyspace"], |t| {
                t.contains("db0:keys=1,expires=0")
            })
        },
    );
}
