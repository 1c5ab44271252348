//! A frozen leader and the clerks' hedging: a leader that stops answering (a SIGSTOPped
//! process: requests reach it and vanish, it sends nothing) costs each client the hedge
//! delay plus the election, not its whole attempt timeout. Virtual time throughout;
//! histories are checked for linearizability.

use shardkv_client::{KvOp, RetryPolicy};
use shardkv_kv::{KvCommand, KvOutput, KvQuery};
use shardkv_sim::{ClusterConfig, KvCluster, SIM_CLERK_POLICY, Workload};

/// The production client's policy in clerk ticks: 2.5 s attempts, a hedge after 300 ms of
/// silence, no deadline.
const PRODUCTION: RetryPolicy = RetryPolicy {
    attempt_ticks: 250,
    hedge_ticks: 30,
    ..SIM_CLERK_POLICY
};

/// Virtual time the clerks get once the leader froze: longer than an election (0.5–1 s
/// of election timeout, then a vote), shorter than one attempt timeout (2.5 s).
const BOUND_MS: u64 = 2_000;

const CLERKS: usize = 3;

fn put(k: &str, v: &str) -> KvOp {
    KvOp::Write(KvCommand::Put {
        key: k.into(),
        value: v.into(),
    })
}

fn get(k: &str) -> KvOp {
    KvOp::Read(KvQuery::Get { key: k.into() })
}

/// A 3-member group and clerks that all know its leader (each completed a write there).
fn group_with_clerks(name: &str, seed: u64, policy: RetryPolicy) -> KvCluster {
    let mut k = KvCluster::new(ClusterConfig::scenario(3, "client_hedging", name, seed));
    for c in 0..CLERKS {
        let c2 = k.add_clerk(Workload::Script(Default::default()));
        assert_eq!(c, c2);
        k.set_policy(c, policy);
        let done = k.op(c, put(&format!("k{c}"), "0"), 5_000);
        assert_eq!(done, Some(KvOutput::Done), "seed {seed}");
    }
    k
}

/// Freezes the leader: cut from its peers and from every clerk, both ways.
fn freeze_leader(k: &mut KvCluster) -> shardkv_types::NodeId {
    let leader = k.sim.leader().expect("a leader");
    k.sim.disconnect(leader);
    let others: Vec<_> = k.sim.ids().into_iter().filter(|&i| i != leader).collect();
    let addrs: Vec<u64> = k.clerks.iter().map(|c| c.addr).collect();
    for a in addrs {
        k.sim.client_reach(a, &others);
    }
    leader
}

/// Starts one write and one read per clerk right after the leader froze; true if every
/// clerk finished both within `BOUND_MS` of virtual time.
fn ops_finish_within_bound(k: &mut KvCluster) -> bool {
    for c in 0..CLERKS {
        k.begin(c, put(&format!("k{c}"), "1"));
    }
    if !k.run_until_idle(BOUND_MS) {
        return false;
    }
    for c in 0..CLERKS {
        k.begin(c, get(&format!("k{c}")));
    }
    k.run_until_idle(BOUND_MS)
}

/// Goal: clients of a frozen leader reach the new one within an election plus a few hedge
/// delays, well under their attempt timeout, and the history stays linearizable. Method:
/// clerks with the production policy know the leader; it freezes; each clerk writes and
/// reads, and all must finish within 2 s of virtual time (one attempt is 2.5 s).
#[test]
fn clients_of_a_frozen_leader_finish_well_within_one_attempt_timeout() {
    let name = "clients_of_a_frozen_leader_finish_well_within_one_attempt_timeout";
    for seed in [1, 2, 3] {
        let mut k = group_with_clerks(name, seed, PRODUCTION);
        let frozen = freeze_leader(&mut k);
        assert!(
            ops_finish_within_bound(&mut k),
            "clerks waited on the frozen leader {frozen} (seed {seed})"
        );
        let new = k.sim.leader().expect("a new leader");
        assert_ne!(new, frozen, "seed {seed}");
        for c in 0..CLERKS {
            let last = k.clerks[c].results.last().map(|(_, o)| o.clone());
            assert_eq!(
                last,
                Some(KvOutput::Value(Some(b"1".to_vec()))),
                "seed {seed}"
            );
        }
        k.check_linearizable();
    }
}

/// The control: without hedging the same clerks wait out the attempt timeout on the frozen
/// leader, so the bound above is a real test of hedging.
#[test]
fn without_hedging_clients_wait_out_the_attempt_timeout() {
    let name = "without_hedging_clients_wait_out_the_attempt_timeout";
    let policy = RetryPolicy {
        hedge_ticks: 0,
        ..PRODUCTION
    };
    let mut k = group_with_clerks(name, 1, policy);
    freeze_leader(&mut k);
    assert!(!ops_finish_within_bound(&mut k));
}
