//! Raft scenarios: log compaction, InstallSnapshot, restarts from snapshots; ReadIndex
//! reads; leadership transfer. The test state machine snapshots every 10 entries.

use shardkv_sim::{Cluster, ClusterConfig, NetConfig};
use shardkv_types::{LogIndex, NodeId};

const RAFT_STATE_BYTES_MAX: usize = 2_000;

fn cfg(name: &str, n: usize, seed: u64) -> ClusterConfig {
    let mut cfg = ClusterConfig::scenario(n, "raft_snapshot", name, seed);
    cfg.snapshot_every = Some(10);
    // Small chunks so that every transfer takes several round trips.
    cfg.raft = |r| r.snapshot_chunk_bytes_max = 512;
    cfg
}

#[derive(Clone, Copy)]
enum Victim {
    StaysUp,
    Disconnected,
    Crashed,
}

/// The lab's snapcommon: 30 rounds; a victim falls behind (disconnected or crashed) while
/// 5–14 commands commit; the persisted Raft state stays under 2,000 bytes; the victim
/// catches up (by InstallSnapshot when needed).
fn snapcommon(name: &str, seed: u64, victim_mode: Victim, unreliable: bool) {
    let mut cfg = cfg(name, 3, seed);
    if unreliable {
        cfg.net = NetConfig::unreliable();
    }
    let mut c = Cluster::new(cfg);
    let v = c.rng.next_u64();
    c.one(&Cluster::cmd(v), 3, true);
    let mut leader1 = c.check_one_leader();
    let mut max_state = 0;
    for i in 0..30 {
        let next = |x: NodeId| NodeId(x.0 % 3 + 1);
        let (mut victim, mut sender) = (next(leader1), leader1);
        if i % 3 == 1 {
            (victim, sender) = (leader1, next(leader1));
        }
        match victim_mode {
            Victim::Disconnected => c.disconnect(victim),
            Victim::Crashed => c.crash(victim),
            Victim::StaysUp => {}
        }
        if !matches!(victim_mode, Victim::StaysUp) {
            let v = c.rng.next_u64();
            c.one(&Cluster::cmd(v), 2, true);
        }
        let nn = c.rng.range(5, 15);
        for _ in 0..nn {
            let v = c.rng.next_u64();
            c.start(sender, &Cluster::cmd(v));
        }
        let v = c.rng.next_u64();
        match victim_mode {
            Victim::StaysUp => c.one(&Cluster::cmd(v), 3, true),
            _ => c.one(&Cluster::cmd(v), 2, true),
        };
        let state = c.raft_state_bytes_max();
        max_state = max_state.max(state);
        assert!(
            state < RAFT_STATE_BYTES_MAX,
            "log size too large: {state} bytes"
        );
        match victim_mode {
            Victim::Disconnected => {
                c.connect(victim);
                let v = c.rng.next_u64();
                c.one(&Cluster::cmd(v), 3, true);
                leader1 = c.check_one_leader();
            }
            Victim::Crashed => {
                c.restart(victim);
                let v = c.rng.next_u64();
                c.one(&Cluster::cmd(v), 3, true);
                leader1 = c.check_one_leader();
            }
            Victim::StaysUp => {}
        }
    }
    let chunks = c.stats.by_kind.get("Snapshot").copied().unwrap_or(0);
    if !matches!(victim_mode, Victim::StaysUp) {
        assert!(chunks > 0, "the victim never needed InstallSnapshot");
    }
    println!("{name}: max persisted raft state {max_state} bytes, {chunks} snapshot chunks sent");
}

#[test]
fn snapshot_basic_keeps_raft_state_small() {
    snapcommon(
        "snapshot_basic_keeps_raft_state_small",
        31,
        Victim::StaysUp,
        false,
    );
}

#[test]
fn snapshot_install_to_disconnected_follower() {
    snapcommon(
        "snapshot_install_to_disconnected_follower",
        32,
        Victim::Disconnected,
        false,
    );
}

#[test]
fn snapshot_install_to_disconnected_follower_unreliable() {
    snapcommon(
        "snapshot_install_to_disconnected_follower_unreliable",
        33,
        Victim::Disconnected,
        true,
    );
}

#[test]
fn snapshot_install_to_crashed_follower() {
    snapcommon(
        "snapshot_install_to_crashed_follower",
        34,
        Victim::Crashed,
        false,
    );
}

#[test]
fn snapshot_install_to_crashed_follower_unreliable() {
    snapcommon(
        "snapshot_install_to_crashed_follower_unreliable",
        35,
        Victim::Crashed,
        true,
    );
}

/// Goal: crash all nodes after snapshots; they resume at the right index and the next index
/// is higher than any before.
#[test]
fn snapshot_all_crash_resumes_and_index_never_goes_back() {
    let mut c = Cluster::new(cfg(
        "snapshot_all_crash_resumes_and_index_never_goes_back",
        3,
        36,
    ));
    let v = c.rng.next_u64();
    c.one(&Cluster::cmd(v), 3, true);
    for _ in 0..5 {
        let nn = c.rng.range(5, 15);
        for _ in 0..nn {
            let v = c.rng.next_u64();
            c.one(&Cluster::cmd(v), 3, true);
        }
        let v = c.rng.next_u64();
        let index1 = c.one(&Cluster::cmd(v), 3, true);
        for id in c.ids() {
            c.restart(id);
        }
        let v = c.rng.next_u64();
        let index2 = c.one(&Cluster::cmd(v), 3, true);
        assert!(index2 > index1, "index decreased from {index1} to {index2}");
    }
}

/// Goal: a restart after compaction persists and re-reads the existing snapshot; two
/// whole-cluster restarts in a row still work.
#[test]
fn snapshot_survives_repeated_full_restarts() {
    let mut c = Cluster::new(cfg("snapshot_survives_repeated_full_restarts", 3, 37));
    c.one(&Cluster::cmd(1), 3, true);
    for v in 0..11 {
        c.one(&Cluster::cmd(100 + v), 3, true);
    }
    for round in 0..2 {
        for id in c.ids() {
            c.restart(id);
        }
        c.one(&Cluster::cmd(200 + round), 3, true);
    }
}

/// Goal: a node restarting from a snapshot hands the state machine the snapshot first, then
/// exactly the entries after it (the state machine rejects any gap or repeat).
#[test]
fn restart_delivers_snapshot_before_later_entries() {
    let mut c = Cluster::new(cfg("restart_delivers_snapshot_before_later_entries", 3, 38));
    for v in 0..25 {
        c.one(&Cluster::cmd(v), 3, true);
    }
    let id = NodeId(2);
    let snap = c.app(id).raft.log().snapshot_meta().index;
    assert!(snap >= LogIndex(20), "expected a snapshot, have {snap}");
    c.restart(id);
    assert_eq!(
        c.app(id).sm.applied,
        snap,
        "state machine starts at the snapshot"
    );
    let i = c.one(&Cluster::cmd(99), 3, true);
    assert_eq!(
        c.app(id).sm.applied,
        i,
        "then applies every later entry in order"
    );
}

/// Goal: a leader isolated in a minority never completes a ReadIndex read.
#[test]
fn read_index_on_isolated_leader_never_completes() {
    let mut c = Cluster::new(ClusterConfig::scenario(
        5,
        "raft_snapshot",
        "read_index_on_isolated_leader_never_completes",
        39,
    ));
    c.one(&Cluster::cmd(1), 5, true);
    let leader = c.check_one_leader();
    let buddy = NodeId(leader.0 % 5 + 1);
    let majority: Vec<NodeId> = c
        .ids()
        .into_iter()
        .filter(|&i| i != leader && i != buddy)
        .collect();
    c.partition(&[&[leader, buddy], &majority]);
    let answer = c.read_index(leader, 7, 5_000);
    assert!(
        matches!(answer, None | Some(None)),
        "a minority leader confirmed a read: {answer:?}"
    );
    let l2 = c.check_one_leader();
    assert!(majority.contains(&l2));
}

/// Goal: a read at a freshly elected leader, asked before it committed anything, still sees
/// every write committed before the read started.
#[test]
fn read_after_leader_change_sees_prior_writes() {
    let mut c = Cluster::new(ClusterConfig::scenario(
        3,
        "raft_snapshot",
        "read_after_leader_change_sees_prior_writes",
        40,
    ));
    let mut last = LogIndex(0);
    for v in 0..5 {
        last = c.one(&Cluster::cmd(v), 2, true);
    }
    let l1 = c.check_one_leader();
    c.disconnect(l1);
    let l2 = c.run_until(5_000, |c| c.leader().is_some_and(|l| l != l1));
    assert!(l2);
    let l2 = c.leader().unwrap();
    let index = c
        .read_index(l2, 1, 2_000)
        .flatten()
        .expect("read confirmed");
    assert!(index >= last, "read index {index} misses write at {last}");
    c.run_until(1_000, |c| c.app(l2).sm.applied >= index);
    assert!(c.app(l2).applied_at(last).is_some());
}

/// Goal: leadership transfer hands over within an election timeout and loses nothing.
#[test]
fn leadership_transfer_hands_over_without_losing_entries() {
    let mut c = Cluster::new(ClusterConfig::scenario(
        3,
        "raft_snapshot",
        "leadership_transfer_hands_over_without_losing_entries",
        41,
    ));
    let i = c.one(&Cluster::cmd(5), 3, true);
    let l1 = c.check_one_leader();
    let target = NodeId(l1.0 % 3 + 1);
    assert!(c.transfer_leader(l1, target));
    assert!(
        c.run_until(500, |c| c.leader() == Some(target)),
        "transfer did not complete"
    );
    let j = c.one(&Cluster::cmd(6), 3, true);
    assert!(j > i);
}
