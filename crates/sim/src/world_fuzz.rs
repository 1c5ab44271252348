//! The randomized world fuzz target: one world of four groups of three kinds (a controller
//! group, two KV groups, a bare Raft group whose members poll the controller; see
//! [`four_groups`]) under one seed. Each seed picks the network faults, the snapshot
//! policies, the shard count, the clerks of each service and their workloads, the fault
//! rate and its swarm toggles (`faults.rs`, shared with the other fuzzers: here crashes,
//! isolations, one-way cuts and partitions fall on any node of any group, so partitions
//! cut across groups and the traffic between them), then runs:
//!
//! 1. a safety phase: KV clerks, controller clerks (random Join / Leave / Move / Query) and
//!    a Raft proposer run concurrently while faults fire;
//! 2. a liveness phase: faults stop, everything restarts and reconnects, every clerk
//!    finishes;
//!
//! then the checks of [`World::check`]. Each group's own Raft checker runs throughout. Any
//! violation panics with the seed and the replay command.

use crate::config::ClusterConfig;
use crate::faults::{FaultSchedule, Swarm};
use crate::kv::Workload;
use crate::net::NetConfig;
use crate::world::{World, four_groups};
use shardkv_lincheck::OpResult;
use shardkv_types::Rng;

/// What one seed did.
#[derive(Clone, Debug, Default)]
pub struct WorldFuzzReport {
    pub seed: u64,
    pub swarm: String,
    pub faults: u64,
    pub reactions: u64,
    /// KV operations in the histories (over both KV groups), and those of unknown outcome.
    pub kv_operations: usize,
    pub kv_unknown: usize,
    pub ctrl_operations: usize,
    pub raft_proposals: u64,
    /// Config polls the bare Raft group's members sent to the controller group.
    pub polls: u64,
    pub virtual_ms: u64,
}

/// The command that replays `seed`.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run -p shardkv-sim --release --bin fuzz -- --world --seed {seed}")
}

/// The most operations the clerks of one KV group start per key (own-key clerks: per
/// clerk), so every history stays decidable.
const OPS_PER_KEY_MAX: u64 = 600;

/// How long clerks and groups may take to finish and converge after faults stop.
const LIVENESS_MS_MAX: u64 = 30_000;

/// Runs one seed; panics (with the replay command) on any violation.
pub fn run_world_seed(seed: u64) -> WorldFuzzReport {
    let mut pick = Rng::new(seed ^ 0x0077_0e1d);
    let swarm = Swarm::pick(&mut pick);
    let mut cfg = ClusterConfig::world(four_groups(), seed);
    cfg.replay = format!("{}   (swarm: {})", replay_command(seed), swarm.describe());
    cfg.tweak = swarm.tweak();
    cfg.shards = [4, 16, 64][pick.index(3)];
    cfg.net = Swarm::pick_net(&mut pick);
    cfg.max_raft_state = [None, Some(2_000), Some(8_000)][pick.index(3)];
    cfg.snapshot_every = [None, Some(10), Some(50)][pick.index(3)];
    let kv_clerks = pick.range(1, 4) as usize;
    let ctrl_clerks = pick.range(1, 4) as usize;
    let keys = pick.range(1, 6);
    let random_keys = pick.chance(500);
    let deadline_ms = pick.chance(500).then(|| pick.range(300, 3_000));
    let fault_every_ms = pick.range(300, 2_000);
    let safety_ms = pick.range(3_000, 8_000);

    let schedule = FaultSchedule::new(pick.next_u64(), swarm);
    let mut w = World::new(cfg);
    schedule.install(&mut w.sim);
    for k in &mut w.clients.kv {
        k.op_deadline_ms = deadline_ms;
        k.ops_per_clerk_max = Some(if random_keys {
            OPS_PER_KEY_MAX * keys / kv_clerks as u64
        } else {
            OPS_PER_KEY_MAX
        });
    }
    for c in &mut w.clients.ctrl {
        c.op_deadline_ms = deadline_ms;
    }
    let workload = if random_keys {
        Workload::fuzz_random_keys(seed, keys)
    } else {
        Workload::OwnKey
    };
    w.start_kv_clerks(kv_clerks, workload);
    w.add_ctrl_clerks(ctrl_clerks);

    let end = w.sim.now + safety_ms * 1000;
    while w.sim.now < end {
        let ms = pick.range(fault_every_ms / 2, fault_every_ms * 3 / 2 + 1);
        w.run_for(ms, true, &mut pick);
        FaultSchedule::inject(&mut w.sim);
    }
    w.sim.net.config = NetConfig::reliable();
    let (faults, reactions) = FaultSchedule::stop(&mut w.sim);
    if !w.finish(LIVENESS_MS_MAX) {
        w.sim.fail(&format!(
            "liveness: clerks still busy {LIVENESS_MS_MAX} ms after faults stopped"
        ));
    }
    w.check(LIVENESS_MS_MAX);
    let histories = || w.clients.kv.iter().flat_map(|k| k.history.iter());
    WorldFuzzReport {
        seed,
        swarm: swarm.describe(),
        faults,
        reactions,
        kv_operations: histories().count(),
        kv_unknown: histories()
            .filter(|o| o.result == OpResult::Unknown)
            .count(),
        ctrl_operations: w.clients.ctrl.iter().map(|c| c.completed.len()).sum(),
        raft_proposals: w.raft_proposals,
        polls: w.sim.stats.outbound,
        virtual_ms: w.sim.now / 1000,
    }
}
