//! The gauge and counter families with one series per group: name, help and how to read
//! the value from a [`GroupReading`]. Counter names get `_total` when encoded.

use super::GroupReading;
use prometheus_client::metrics::MetricType;

/// One family: a series per group.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub value: fn(&GroupReading) -> u64,
}

const fn gauge(name: &'static str, help: &'static str, value: fn(&GroupReading) -> u64) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        value,
    }
}

const fn counter(
    name: &'static str,
    help: &'static str,
    value: fn(&GroupReading) -> u64,
) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        value,
    }
}

/// Every group's families.
pub const GROUP_FAMILIES: [Family; 12] = [
    gauge(
        "shardkv_server_has_leader",
        "1 when this replica knows a leader of its group",
        |r| u64::from(r.has_leader),
    ),
    gauge(
        "shardkv_server_is_leader",
        "1 when this replica is its group's leader",
        |r| u64::from(r.is_leader),
    ),
    gauge(
        "shardkv_server_term",
        "This replica's current Raft term",
        |r| r.term,
    ),
    counter(
        "shardkv_server_leader_changes_seen",
        "Times this replica saw its group's leader change (to a known new one)",
        |r| r.leader_changes,
    ),
    counter(
        "shardkv_server_proposals_committed",
        "The replica's commit index: log entries known committed",
        |r| r.commit,
    ),
    counter(
        "shardkv_server_proposals_applied",
        "The replica's applied index: log entries applied to the state machine",
        |r| r.applied,
    ),
    gauge(
        "shardkv_server_proposals_pending",
        "Client requests taken by this replica and not yet answered",
        |r| r.pending,
    ),
    counter(
        "shardkv_server_proposals_failed",
        "Client requests this replica took and answered with a failure: lost leadership, \
         timeout, busy, no space, unavailable",
        |r| r.failed,
    ),
    gauge(
        "shardkv_server_raft_state_bytes",
        "Bytes of Raft log kept since the last snapshot (compared with --max-raft-state)",
        |r| r.raft_state_bytes,
    ),
    gauge(
        "shardkv_server_sessions",
        "Client sessions in the replica's session table",
        |r| r.sessions,
    ),
    counter(
        "shardkv_network_peer_sent_messages",
        "Raft messages queued to peers",
        |r| r.sent,
    ),
    counter(
        "shardkv_network_peer_received_messages",
        "Raft messages from peers taken into the group's inbox",
        |r| r.received,
    ),
];

/// A shard group's families (not the controller's or a plain KV group's).
pub const SHARD_FAMILIES: [Family; 3] = [
    counter(
        "shardkv_shard_migrations_started",
        "Shards this group started pulling (sampled every 100 ms)",
        |r| r.migrations_started,
    ),
    counter(
        "shardkv_shard_migrations_finished",
        "Shards this group finished pulling",
        |r| r.migrations_finished,
    ),
    counter(
        "shardkv_shard_moved_bytes",
        "Bytes of keys and values this group pulled from other groups",
        |r| r.shard_bytes_moved,
    ),
];
