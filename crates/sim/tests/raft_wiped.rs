//! A member whose data directory was emptied (issue 10, item 2). Seeded, virtual time; the
//! checker fails the run on any lost committed entry (leader completeness, state machine
//! safety).

use shardkv_sim::{Cluster, ClusterConfig};
use shardkv_storage::StorageError;
use shardkv_types::NodeId;

fn cluster(name: &str, default_seed: u64) -> Cluster {
    Cluster::new(ClusterConfig::scenario(3, "raft_wiped", name, default_seed))
}

/// Goal: a wiped member restarted without `--bootstrap` stays down, and the group keeps
/// every acknowledged write while another member lags. Method: n-lag is cut off while
/// writes commit on the other two; then the follower of those two is wiped and restarted
/// without bootstrap (refused: it stays down); n-lag comes back and the only member holding
/// every write is cut off for a while. Had the wiped member come back empty, it and n-lag
/// would form a majority and elect n-lag, missing the acknowledged writes (the checker's
/// leader completeness fails: seen with `restart_checked(.., true)`). Then the survivor
/// returns and the group, one member short, keeps committing.
#[test]
fn wiped_member_without_bootstrap_stays_down_and_no_write_is_lost() {
    let mut c = cluster(
        "wiped_member_without_bootstrap_stays_down_and_no_write_is_lost",
        61,
    );
    c.one(&Cluster::cmd(1), 3, true);
    let leader = c.check_one_leader();
    let ids = c.ids();
    let lag = *ids.iter().find(|&&i| i != leader).unwrap();
    let wiped = *ids.iter().find(|&&i| i != leader && i != lag).unwrap();
    c.disconnect(lag);
    let mut acknowledged = Vec::new();
    for v in 2..12 {
        acknowledged.push(c.one(&Cluster::cmd(v), 2, true));
    }
    c.wipe(wiped);
    let refused = c.restart_checked(wiped, false);
    assert!(
        matches!(refused, Err(StorageError::NotBootstrapped { .. })),
        "{refused:?}"
    );
    assert!(!c.is_up(wiped), "the wiped member stays down");
    c.connect(lag);
    c.disconnect(leader);
    c.run_for(3_000);
    c.check_no_leader();
    c.connect(leader);
    let last = c.one(&Cluster::cmd(100), 2, true);
    c.wait(last, 2, None);
    for index in acknowledged {
        let applied = c.app(lag).applied_at(index);
        assert!(
            applied.is_some(),
            "the lagging member applied acknowledged {index}"
        );
        assert_eq!(applied, c.app(leader).applied_at(index));
    }
    assert!(!c.is_up(wiped));
}

/// Goal: a follower whose log got shorter than the leader believes (wiped, then started
/// anyway with `--bootstrap`) gets the log sent again, so the group survives the other
/// follower dying. Before, the leader kept its old `match_index` for it, never resent the
/// log, and with the other follower down nothing could commit.
#[test]
fn leader_resends_the_log_to_a_follower_that_lost_it() {
    let mut c = cluster("leader_resends_the_log_to_a_follower_that_lost_it", 62);
    for v in 1..10 {
        c.one(&Cluster::cmd(v), 3, true);
    }
    let leader = c.check_one_leader();
    let ids = c.ids();
    let wiped = *ids.iter().find(|&&i| i != leader).unwrap();
    let other = *ids.iter().find(|&&i| i != leader && i != wiped).unwrap();
    c.wipe(wiped);
    c.restart_checked(wiped, true)
        .expect("bootstrap allows an empty directory");
    c.run_for(1_000);
    assert_eq!(c.check_one_leader(), leader, "the leader stays");
    c.one(&Cluster::cmd(50), 3, true);
    c.crash(other);
    let last = c.one(&Cluster::cmd(51), 2, true);
    c.wait(last, 2, None);
    let holds_all = |c: &Cluster, id: NodeId| {
        c.app(id).raft.log().last_index() >= last && c.app(id).raft.log().committed() >= last
    };
    assert!(
        holds_all(&c, wiped),
        "the wiped follower has the whole log again"
    );
}
