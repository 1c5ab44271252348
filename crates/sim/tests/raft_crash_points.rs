//! Crash points of the host loop that only the shared (production) Ready loop has: a
//! leader that sent its appends before its own sync and died in the write that followed.

use shardkv_sim::{Cluster, ClusterConfig, digest};

/// Goal: "sent but not synced" is safe. A leader sends its next entry early, then its disk
/// dies before the entry is durable there; the followers that persisted it elect a new
/// leader, which commits it; the old leader restarts without it and converges. The checker
/// (log matching, leader completeness, state machine safety) watches throughout.
#[test]
fn leader_crash_between_early_send_and_sync_keeps_the_entry_through_followers() {
    let name = "leader_crash_between_early_send_and_sync_keeps_the_entry_through_followers";
    let mut c = Cluster::new(ClusterConfig::scenario(3, "raft_crash_points", name, 41));
    let l = c.check_one_leader();
    c.one(&Cluster::cmd(1), 3, false);
    c.crash_mid_write(l, 0, shardkv_storage::CrashMode::Prefix);
    let (index, _) = c.start(l, &Cluster::cmd(2)).expect("the leader accepts");
    assert!(
        !c.is_up(l),
        "the leader died in the write after its early send"
    );
    assert_eq!(c.crashes_after_early_send, 1);
    let d = c.wait(index, 2, None);
    assert_eq!(
        d,
        Some(digest(&Cluster::cmd(2))),
        "the followers committed it"
    );
    c.restart(l);
    c.one(&Cluster::cmd(3), 3, true);
    assert_eq!(c.n_committed(index), (3, Some(digest(&Cluster::cmd(2)))));
}
