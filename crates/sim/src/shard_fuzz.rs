//! The sharded store's whole-system fuzz target: a controller group and 2–4 shard groups
//! ([`shard_world_groups`]) under one seed. Each seed picks the shard count, the network,
//! the snapshot threshold, the swarm toggles and fault rate (`faults.rs`: crashes,
//! isolations, one-way cuts and partitions on any node of any group, so partitions cut
//! between groups too), the sharded clerks and their workload, then runs:
//!
//! 1. a safety phase: the clerks run while node faults fire, whole shard groups restart,
//!    and the controller is told to join, leave or move (reconfigurations as faults), with
//!    the ownership invariant ([`OwnershipCheck`](crate::OwnershipCheck)) sampled
//!    throughout;
//! 2. a liveness phase: faults stop, every node restarts and reconnects, the network turns
//!    reliable; every clerk must finish, and every shard group member must reach the
//!    controller's latest config with no shard in migration and holding only the shards
//!    that config gives its group (moved shards deleted);
//!
//! then every sharded history must be linearizable (undecided fails) and the world's
//! controller checks pass. Any violation panics with the seed and the replay command.

use crate::config::ClusterConfig;
use crate::ctrl::{CtrlOp, join, leave, move_to};
use crate::faults::{FaultSchedule, Swarm};
use crate::kv::Workload;
use crate::net::NetConfig;
use crate::shard_node::server_name;
use crate::shard_world::{ShardWorld, shard_world_groups};
use crate::world::WorldSim;
use shardkv_ctrl::Config;
use shardkv_lincheck::OpResult;
use shardkv_types::Rng;
use std::collections::BTreeSet;

/// What one seed did.
#[derive(Clone, Debug, Default)]
pub struct ShardFuzzReport {
    pub seed: u64,
    pub swarm: String,
    pub groups: usize,
    pub shards: u32,
    pub faults: u64,
    pub reactions: u64,
    /// Whole shard groups restarted, and controller changes asked for.
    pub group_restarts: u64,
    pub reconfigurations: u64,
    /// The controller's latest config number at the end.
    pub final_config: u64,
    pub operations: usize,
    pub unknown: usize,
    /// Operations that ended with `SessionExpired` (a retry after the session was dropped).
    pub sessions_expired: u64,
    pub virtual_ms: u64,
}

/// The command that replays `seed`.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run -p shardkv-sim --release --bin fuzz -- --sharded --seed {seed}")
}

/// The most operations the clerks start per key (own-key clerks: per clerk), so every
/// history stays decidable.
const OPS_PER_KEY_MAX: u64 = 400;

/// How long clerks and groups may take to finish and converge after faults stop.
const LIVENESS_MS_MAX: u64 = 60_000;

/// Runs one seed; panics (with the replay command) on any violation.
pub fn run_shard_seed(seed: u64) -> ShardFuzzReport {
    let mut pick = Rng::new(seed ^ 0x5a4d_f022);
    let swarm = Swarm::pick(&mut pick);
    let groups = pick.range(2, 5) as usize;
    let mut cfg = ClusterConfig::world(shard_world_groups(groups), seed);
    cfg.replay = format!("{}   (swarm: {})", replay_command(seed), swarm.describe());
    cfg.tweak = swarm.tweak();
    cfg.shards = [4, 16, 64][pick.index(3)];
    cfg.net = Swarm::pick_net(&mut pick);
    cfg.max_raft_state = [None, Some(1_000), Some(4_000)][pick.index(3)];
    cfg.sessions = crate::config::fuzz_session_limits(seed);
    crate::config::fuzz_host_options(&mut cfg);
    let clerks = pick.range(1, 5) as usize;
    let keys = pick.range(1, 8);
    let random_keys = pick.chance(500);
    let deadline_ms = pick.chance(300).then(|| pick.range(500, 3_000));
    let fault_every_ms = pick.range(300, 2_000);
    let safety_ms = pick.range(3_000, 8_000);

    let schedule = FaultSchedule::new(pick.next_u64(), swarm);
    let mut w = ShardWorld::with_config(cfg);
    schedule.install(&mut w.world.sim);
    let workload = if random_keys {
        Workload::fuzz_random_keys(seed, keys)
    } else {
        Workload::OwnKey
    };
    {
        let s = w.clerks();
        s.op_deadline_ms = deadline_ms;
        s.ops_per_clerk_max = Some(if random_keys {
            OPS_PER_KEY_MAX * keys / clerks as u64
        } else {
            OPS_PER_KEY_MAX
        });
    }
    w.add_clerks(clerks, workload);
    let mut joined: BTreeSet<usize> = BTreeSet::new();
    let first = pick.index(groups);
    joined.insert(first);
    w.join(&[first]);
    w.start_clerks();

    let (mut group_restarts, mut reconfigurations) = (0, 0);
    let end = w.world.sim.now + safety_ms * 1000;
    while w.world.sim.now < end {
        let ms = pick.range(fault_every_ms / 2, fault_every_ms * 3 / 2 + 1);
        w.run_for(ms);
        match pick.index(5) {
            0 => {
                group_restarts += 1;
                let gi = pick.index(groups);
                w.shutdown_group(gi);
                w.start_group(gi);
            }
            // One change at a time: the joined set tracks what the controller applied.
            1 | 2 if w.world.clients.ctrl[0].idle() => {
                let op = reconfiguration(&w, &mut joined, &mut pick);
                reconfigurations += 1;
                let sw = &mut w.world;
                sw.clients.ctrl[0].queue(&mut sw.sim, 0, [op]);
            }
            1 | 2 => {}
            _ => FaultSchedule::inject(&mut w.world.sim),
        }
    }

    w.world.sim.net.config = NetConfig::reliable();
    let (faults, reactions) = FaultSchedule::stop(&mut w.world.sim);
    w.clerks().stop_clients();
    let idle = w.run_until(LIVENESS_MS_MAX, |c| c.idle());
    if !idle {
        let state = w.describe();
        w.world.sim.fail(&format!(
            "liveness: clerks still busy {LIVENESS_MS_MAX} ms after faults stopped\n{state}"
        ));
    }
    let latest = w.latest_config();
    let settled = |s: &WorldSim| settled(s, &latest).is_none();
    if !w.world.sim.run_until(LIVENESS_MS_MAX, settled) {
        let why = settled_why(&w.world.sim, &latest);
        let state = w.describe();
        w.world.sim.fail(&format!(
            "liveness: shard groups did not settle on config {} within {LIVENESS_MS_MAX} ms \
             after faults stopped: {why}\n{state}",
            latest.num
        ));
    }
    w.check_history();
    w.world.check(LIVENESS_MS_MAX);
    let clients = w.world.clients.shard.as_ref().expect("shard clerks");
    let history = &clients.history;
    ShardFuzzReport {
        seed,
        swarm: swarm.describe(),
        groups,
        shards: w.world.sim.cfg.shards,
        faults,
        reactions,
        group_restarts,
        reconfigurations,
        final_config: latest.num.0,
        operations: history.len(),
        unknown: history
            .iter()
            .filter(|o| o.result == OpResult::Unknown)
            .count(),
        sessions_expired: clients.sessions_expired(),
        virtual_ms: w.world.sim.now / 1000,
    }
}

/// A controller change for the safety phase: a group joins, one leaves (at least one
/// stays), or a shard moves to a joined group. Tracks the joined set as the controller
/// will apply the changes (one clerk, in order).
fn reconfiguration(w: &ShardWorld, joined: &mut BTreeSet<usize>, pick: &mut Rng) -> CtrlOp {
    let groups = w.gids.len();
    let out: Vec<usize> = (0..groups).filter(|g| !joined.contains(g)).collect();
    match pick.index(3) {
        0 if !out.is_empty() => {
            let gi = out[pick.index(out.len())];
            joined.insert(gi);
            let names: Vec<String> = w.members(gi).into_iter().map(server_name).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            join(&[(w.gids[gi].0, &refs)])
        }
        1 if joined.len() > 1 => {
            let v: Vec<usize> = joined.iter().copied().collect();
            let gi = v[pick.index(v.len())];
            joined.remove(&gi);
            leave(&[w.gids[gi].0])
        }
        _ => {
            let v: Vec<usize> = joined.iter().copied().collect();
            let gi = v[pick.index(v.len())];
            let shard = pick.range(0, u64::from(w.world.sim.cfg.shards));
            move_to(shard, w.gids[gi].0)
        }
    }
}

/// True (`None`) when every shard group member is up, in config `latest`, with no shard in
/// migration, holding only shards `latest` gives its group; else what is not so yet.
fn settled(s: &WorldSim, latest: &Config) -> Option<String> {
    for (id, n) in &s.nodes {
        let Some(app) = n.app.as_ref() else {
            continue;
        };
        let Some(g) = app.shard_group() else {
            continue;
        };
        if !n.is_up() {
            return Some(format!("{id} is down"));
        }
        let sm = g.state_machine();
        if sm.config().num != latest.num {
            return Some(format!("{id} is in config {}", sm.config().num));
        }
        if sm.in_migration() {
            return Some(format!("{id} has shards in migration"));
        }
        let foreign = sm
            .shards()
            .keys()
            .find(|&&sh| latest.owner(sh) != Some(sm.gid()));
        if let Some(sh) = foreign {
            return Some(format!(
                "{id} still holds {sh}, given to {:?}",
                latest.owner(*sh)
            ));
        }
    }
    None
}

fn settled_why(s: &WorldSim, latest: &Config) -> String {
    settled(s, latest).unwrap_or_default()
}
