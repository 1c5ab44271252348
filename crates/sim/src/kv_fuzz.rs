//! The randomized KV service fuzz target: each seed picks the group size (3, 5 or 7), the
//! number of clerks and their workload, the network faults, the snapshot policy, the fault
//! rate and its swarm toggles (see `faults.rs`, shared with the Raft fuzz), then runs the real
//! service (rsm + kv + clerks) through:
//!
//! 1. a safety phase: clerks run while nodes crash (also in the middle of a disk write),
//!    restart, get isolated, partitioned or cut one way, and the seed's swarm patterns fire;
//! 2. a liveness phase: faults stop, everything restarts and reconnects, and every clerk's
//!    operation in flight must complete;
//!
//! then checks the whole history for linearizability. A third of the random-keys seeds run
//! the Redis front end's operations instead (`Workload::fuzz_random_keys`). In half the seeds clerks give up on
//! operations after a deadline, so the history holds writes of unknown outcome. The Raft invariant checker runs
//! throughout. Any violation panics with the seed and the replay command.

use crate::config::ClusterConfig;
use crate::faults::{FaultSchedule, Swarm};
use crate::kv::{KvCluster, Workload};
use crate::net::NetConfig;
use shardkv_types::Rng;

/// What one seed did.
#[derive(Clone, Debug, Default)]
pub struct KvFuzzReport {
    pub seed: u64,
    pub nodes: usize,
    pub clerks: usize,
    /// The swarm toggles this seed enabled.
    pub swarm: String,
    pub faults: u64,
    /// Faults the swarm patterns injected in reaction to an election, vote or commit.
    pub reactions: u64,
    pub operations: usize,
    /// Writes whose clerk gave up: their outcome is unknown to the checker.
    pub unknown: usize,
    pub virtual_ms: u64,
    /// Operations that ended with `SessionExpired` (a retry after the session was dropped).
    pub sessions_expired: u64,
    /// Whether some member dropped a session (the seed's limits were reached).
    pub sessions_dropped: bool,
}

/// The command that replays `seed`.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run -p shardkv-sim --release --bin fuzz -- --kv --seed {seed}")
}

/// The most operations the clerks of one seed start per key (own-key clerks: per clerk).
const OPS_PER_KEY_MAX: u64 = 3_000;

/// How long clerks may take to finish after faults stop, in virtual milliseconds.
const LIVENESS_MS_MAX: u64 = 30_000;

/// Runs one seed; panics (with the replay command) on any violation.
pub fn run_kv_seed(seed: u64) -> KvFuzzReport {
    let mut pick = Rng::new(seed ^ 0x00c0_ffee);
    let nodes = [3, 5, 7][pick.index(3)];
    let swarm = Swarm::pick(&mut pick);
    let mut cfg = ClusterConfig::new(nodes, seed);
    cfg.replay = format!("{}   (swarm: {})", replay_command(seed), swarm.describe());
    cfg.tweak = swarm.tweak();
    cfg.net = Swarm::pick_net(&mut pick);
    cfg.max_raft_state = [None, Some(1_000), Some(5_000)][pick.index(3)];
    cfg.sessions = crate::config::fuzz_session_limits(seed);
    crate::config::fuzz_host_options(&mut cfg);
    let clerks = pick.range(1, 9) as usize;
    let random_keys = pick.chance(500);
    let fault_every_ms = pick.range(300, 2_000);
    let safety_ms = pick.range(3_000, 10_000);

    let schedule = FaultSchedule::new(pick.next_u64(), swarm);
    let mut k = KvCluster::new(cfg);
    schedule.install(&mut k.sim);
    // Half the seeds have clerks that give up after a deadline, leaving unknown writes.
    k.op_deadline_ms = pick.chance(500).then(|| pick.range(300, 3_000));
    let keys = pick.range(1, 6);
    // At most this many operations per key, so every history stays decidable.
    k.ops_per_clerk_max = Some(if random_keys {
        OPS_PER_KEY_MAX * keys / clerks as u64
    } else {
        OPS_PER_KEY_MAX
    });
    for _ in 0..clerks {
        k.add_clerk(if random_keys {
            Workload::fuzz_random_keys(seed, keys)
        } else {
            Workload::OwnKey
        });
    }
    let mut report = KvFuzzReport {
        seed,
        nodes,
        clerks,
        swarm: swarm.describe(),
        ..Default::default()
    };
    k.start_clients();
    let end = k.sim.now + safety_ms * 1000;
    while k.sim.now < end {
        let ms = pick.range(fault_every_ms / 2, fault_every_ms * 3 / 2 + 1);
        k.run_for(ms);
        FaultSchedule::inject(&mut k.sim);
    }
    k.stop_clients();
    k.sim.net.config = NetConfig::reliable();
    (report.faults, report.reactions) = FaultSchedule::stop(&mut k.sim);
    if !k.run_until_idle(LIVENESS_MS_MAX) {
        k.sim.fail(&format!(
            "liveness: clerks still busy {LIVENESS_MS_MAX} ms after faults stopped"
        ));
    }
    k.check_linearizable();
    report.sessions_expired = k.kv.sessions_expired();
    report.sessions_dropped = k
        .sim
        .nodes
        .values()
        .filter_map(|n| n.app.as_ref())
        .any(|r| r.sessions().dropped_any());
    report.operations = k.history.len();
    report.unknown = k
        .history
        .iter()
        .filter(|o| o.result == shardkv_lincheck::OpResult::Unknown)
        .count();
    report.virtual_ms = k.sim.now / 1000;
    report
}
