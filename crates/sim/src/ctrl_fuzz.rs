//! The randomized shard controller fuzz target: each seed picks the group size (3 or 5),
//! the shard count, the clerks, the network faults, the snapshot policy and the fault
//! schedule with its swarm toggles (`faults.rs`, shared with the Raft and KV fuzzers), then
//! runs the real controller (rsm + ctrl + clerks) through a safety phase (clerks issue
//! random Join / Leave / Move / Query — many refused — while nodes crash, restart and get
//! cut off) and a liveness phase (faults stop; every clerk finishes). It ends with the
//! checks of [`CtrlCluster`]: replicas converge to byte-identical state, every answer
//! agrees with the one history of configs, queries of the latest config are not stale,
//! every config is balanced and minimal (the controller asserts that itself on apply).

use crate::config::ClusterConfig;
use crate::ctrl::{CtrlCluster, CtrlOp, join, leave, move_to, query};
use crate::faults::{FaultSchedule, Swarm};
use crate::net::NetConfig;
use shardkv_types::Rng;

/// What one seed did.
#[derive(Clone, Debug, Default)]
pub struct CtrlFuzzReport {
    pub seed: u64,
    pub nodes: usize,
    pub shards: u32,
    pub clerks: usize,
    pub swarm: String,
    pub faults: u64,
    pub operations: usize,
    pub unknown: usize,
    pub configs: usize,
    pub virtual_ms: u64,
}

/// The command that replays `seed`.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run -p shardkv-sim --release --bin fuzz -- --ctrl --seed {seed}")
}

/// How long clerks may take to finish after faults stop, in virtual milliseconds.
const LIVENESS_MS_MAX: u64 = 30_000;

/// Group ids the clerks draw from: few, so joins and leaves collide.
const GIDS_MAX: u64 = 8;

/// A random operation; many are refused on purpose (joining a member, leaving a stranger).
pub(crate) fn random_op(rng: &mut Rng, shards: u32) -> CtrlOp {
    let gid = |rng: &mut Rng| rng.range(1, GIDS_MAX + 1);
    match rng.range(0, 100) {
        0..30 => {
            let n = rng.range(1, 4);
            let gids: Vec<u64> = (0..n).map(|_| gid(rng)).collect();
            let names = [&["a"][..], &["b", "c"][..], &["d", "e", "f"][..]];
            let groups: Vec<(u64, &[&str])> =
                gids.iter().map(|g| (*g, names[rng.index(3)])).collect();
            join(&groups)
        }
        30..50 => {
            let n = rng.range(1, 3);
            let gids: Vec<u64> = (0..n).map(|_| gid(rng)).collect();
            leave(&gids)
        }
        50..65 => move_to(rng.range(0, u64::from(shards) + 1), gid(rng)),
        65..85 => query(None),
        _ => query(Some(rng.range(0, 30))),
    }
}

/// Runs one seed; panics (with the replay command) on any violation.
pub fn run_ctrl_seed(seed: u64) -> CtrlFuzzReport {
    let mut pick = Rng::new(seed ^ 0x0c7a_1000);
    let nodes = [3, 5][pick.index(2)];
    let swarm = Swarm::pick(&mut pick);
    let mut cfg = ClusterConfig::new(nodes, seed);
    cfg.replay = format!("{}   (swarm: {})", replay_command(seed), swarm.describe());
    cfg.tweak = swarm.tweak();
    cfg.shards = [1, 4, 16, 64][pick.index(4)];
    cfg.net = Swarm::pick_net(&mut pick);
    cfg.max_raft_state = [None, Some(2_000), Some(8_000)][pick.index(3)];
    let shards = cfg.shards;
    let clerks = pick.range(1, 7) as usize;
    let fault_every_ms = pick.range(300, 2_000);
    let safety_ms = pick.range(3_000, 10_000);

    let schedule = FaultSchedule::new(pick.next_u64(), swarm);
    let mut k = CtrlCluster::new(cfg);
    schedule.install(&mut k.sim);
    k.op_deadline_ms = pick.chance(500).then(|| pick.range(300, 3_000));
    for _ in 0..clerks {
        k.add_clerk();
    }
    let mut report = CtrlFuzzReport {
        seed,
        nodes,
        shards,
        clerks,
        swarm: swarm.describe(),
        ..Default::default()
    };
    let end = k.sim.now + safety_ms * 1000;
    while k.sim.now < end {
        for c in 0..clerks {
            if k.clients[c].script.is_empty() {
                let op = random_op(&mut pick, shards);
                k.queue(c, [op]);
            }
        }
        let ms = pick.range(fault_every_ms / 2, fault_every_ms * 3 / 2 + 1);
        run_feeding(&mut k, &mut pick, shards, ms);
        FaultSchedule::inject(&mut k.sim);
    }
    k.sim.net.config = NetConfig::reliable();
    report.faults = FaultSchedule::stop(&mut k.sim).0;
    for c in &mut k.clients {
        c.script.clear();
    }
    if !k.run_until_idle(LIVENESS_MS_MAX) {
        k.sim.fail(&format!(
            "liveness: clerks still busy {LIVENESS_MS_MAX} ms after faults stopped"
        ));
    }
    // Every clerk must get a fresh change and a query through the healed group.
    for c in 0..clerks {
        k.queue(c, [query(None)]);
    }
    if !k.run_until_idle(LIVENESS_MS_MAX) {
        k.sim
            .fail("liveness: queries after healing did not complete");
    }
    if !k.converge(LIVENESS_MS_MAX) {
        k.sim
            .fail("liveness: replicas did not converge after healing");
    }
    k.check_replicas_agree();
    k.check_history();
    report.operations = k.completed.len();
    report.unknown = k.unknown.len();
    report.configs = k.history().len();
    report.virtual_ms = k.sim.now / 1000;
    report
}

/// Runs `ms` of virtual time, giving each clerk that finished its operation a new one.
fn run_feeding(k: &mut CtrlCluster, pick: &mut Rng, shards: u32, ms: u64) {
    let end = k.sim.now + ms * 1000;
    while k.sim.now < end {
        let step = (end - k.sim.now).min(50_000) / 1000;
        k.run_for(step.max(1));
        for c in 0..k.clients.len() {
            if k.clients[c].clerk.is_idle() && k.clients[c].script.is_empty() {
                let op = random_op(pick, shards);
                k.queue(c, [op]);
            }
        }
    }
}
