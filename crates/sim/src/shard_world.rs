//! [`ShardWorld`]: the sharded store's scenario harness, shaped like the lab's shardkv
//! tester — a controller group (gid 1, nodes 1–3) and shard groups `gi` = 0, 1, 2, …
//! (gid `100 + gi`, nodes `10(gi+1)+1 ..= 10(gi+1)+3`), started but not joined; a
//! controller clerk to join and leave groups; sharded clerks (the production sharded
//! clerk core) whose histories are checked for linearizability; and the ownership
//! invariant ([`OwnershipCheck`]) sampled every [`SAMPLE_EVERY_MS`] of virtual time.

use crate::clients::run_clients;
use crate::config::ClusterConfig;
use crate::ctrl::{CtrlOp, join, leave};
use crate::group::{GroupKind, GroupSpec};
use crate::kv::Workload;
use crate::net::NetConfig;
use crate::ownership::OwnershipCheck;
use crate::shard_node::server_name;
use crate::world::{ShardClients, World};
use shardkv_client::{KvOp, Op};
use shardkv_ctrl::{Config, CtrlReply};
use shardkv_kv::{KvCommand, KvOutput, KvQuery};
use shardkv_types::{Gid, NodeId};

/// The ownership invariant is sampled this often.
pub const SAMPLE_EVERY_MS: u64 = 20;
/// The controller group.
pub const CTRL_GID: Gid = Gid(1);
/// How long one scripted operation may take before the run fails.
pub const OP_MS_MAX: u64 = 60_000;

/// How to build a sharded world.
#[derive(Clone, Debug)]
pub struct ShardWorldOptions {
    /// Shard groups (of 3 servers each).
    pub groups: usize,
    /// The cluster's shard count.
    pub shards: u32,
    /// Snapshot past this many bytes of persisted Raft state (`None`: never).
    pub max_raft_state: Option<u64>,
    /// The lab's unreliable network (10% loss each way, 0–26 ms delay) instead of a
    /// reliable one.
    pub unreliable: bool,
}

impl Default for ShardWorldOptions {
    /// The lab's shape: 3 groups, the default 64 shards, no snapshots, reliable network.
    fn default() -> Self {
        ShardWorldOptions {
            groups: 3,
            shards: shardkv_types::SHARDS_DEFAULT,
            max_raft_state: None,
            unreliable: false,
        }
    }
}

/// A world of a controller and shard groups, with clerks.
pub struct ShardWorld {
    pub world: World,
    pub ownership: OwnershipCheck,
    /// Shard group `gi`'s gid.
    pub gids: Vec<Gid>,
    next_sample_us: u64,
}

impl ShardWorld {
    /// The world of scenario `name` in test file `test_file` (seed from `SHARDKV_SEED` or
    /// `default_seed`; failures print a replay command for exactly this test).
    pub fn new(
        test_file: &str,
        name: &str,
        default_seed: u64,
        opts: &ShardWorldOptions,
    ) -> ShardWorld {
        let seed = crate::seed_or(default_seed);
        let mut cfg = ClusterConfig::world(shard_world_groups(opts.groups), seed);
        cfg.shards = opts.shards;
        cfg.max_raft_state = opts.max_raft_state;
        if opts.unreliable {
            cfg.net = NetConfig::unreliable();
        }
        cfg.replay = format!(
            "SHARDKV_SEED={seed} cargo test -p shardkv-sim --test {test_file} -- {name} --exact"
        );
        ShardWorld::with_config(cfg)
    }

    /// The world of `cfg`, whose groups are [`shard_world_groups`], with one controller
    /// clerk and no sharded clerks yet.
    pub fn with_config(cfg: ClusterConfig) -> ShardWorld {
        let gids = cfg
            .groups
            .iter()
            .filter(|g| g.kind == GroupKind::Shard)
            .map(|g| g.gid)
            .collect();
        let mut world = World::new(cfg);
        world.add_ctrl_clerks(1);
        ShardWorld {
            world,
            ownership: OwnershipCheck::default(),
            gids,
            next_sample_us: 0,
        }
    }

    /// The sharded store's clerks.
    pub fn clerks(&mut self) -> &mut ShardClients {
        self.world
            .clients
            .shard
            .as_mut()
            .expect("a world with shard groups")
    }

    /// Adds `n` sharded clerks with `workload` (not running); returns their indexes.
    pub fn add_clerks(&mut self, n: usize, workload: Workload) -> Vec<usize> {
        let w = &mut self.world;
        let s = w.clients.shard.as_mut().expect("a world with shard groups");
        (0..n)
            .map(|_| s.add_clerk(&mut w.sim, workload.clone()))
            .collect()
    }

    /// Lets every sharded clerk run its workload.
    pub fn start_clerks(&mut self) {
        let w = &mut self.world;
        let s = w.clients.shard.as_mut().expect("a world with shard groups");
        s.start_clients(&mut w.sim);
    }

    /// Shard group `gi`'s nodes.
    pub fn members(&self, gi: usize) -> Vec<NodeId> {
        self.world.sim.members(self.gids[gi])
    }

    /// Shard group `gi` as a Join names it: its gid and its servers' names.
    pub fn join_entry(&self, gi: usize) -> (u64, Vec<String>) {
        let names = self.members(gi).into_iter().map(server_name).collect();
        (self.gids[gi].0, names)
    }

    /// Joins shard groups `gis` in one Join; waits for the controller to accept it.
    pub fn join(&mut self, gis: &[usize]) {
        let entries: Vec<(u64, Vec<String>)> = gis.iter().map(|&gi| self.join_entry(gi)).collect();
        let refs: Vec<Vec<&str>> = entries
            .iter()
            .map(|(_, n)| n.iter().map(String::as_str).collect())
            .collect();
        let groups: Vec<(u64, &[&str])> = entries
            .iter()
            .zip(&refs)
            .map(|((g, _), n)| (*g, &n[..]))
            .collect();
        self.ctrl(join(&groups));
    }

    /// Shard groups `gis` leave in one Leave; waits for the controller to accept it.
    pub fn leave(&mut self, gis: &[usize]) {
        let gids: Vec<u64> = gis.iter().map(|&gi| self.gids[gi].0).collect();
        self.ctrl(leave(&gids));
    }

    /// Runs a controller operation to its answer (the sharded clerks keep running); a
    /// refusal fails the run.
    pub fn ctrl(&mut self, op: CtrlOp) -> CtrlReply {
        // After whatever the clerk was asked before, so the answer read is this one's.
        if !self.run_until(OP_MS_MAX, |w| w.ctrl[0].idle()) {
            self.world.sim.fail("the controller clerk stayed busy");
        }
        let before = self.world.clients.ctrl[0].completed.len();
        let w = &mut self.world;
        w.clients.ctrl[0].queue(&mut w.sim, 0, [op.clone()]);
        if !self.run_until(OP_MS_MAX, |w| w.ctrl[0].idle()) {
            self.world.sim.fail(&format!("{op:?} was not answered"));
        }
        let out = self.world.clients.ctrl[0]
            .completed
            .get(before)
            .map(|r| &r.out);
        match out {
            Some(Ok(reply)) => reply.clone(),
            other => self.world.sim.fail(&format!("{op:?} answered {other:?}")),
        }
    }

    /// The controller's latest config.
    pub fn latest_config(&mut self) -> Config {
        match self.ctrl(crate::ctrl::query(None)) {
            CtrlReply::Config(c) => c,
            other => self.world.sim.fail(&format!("query answered {other:?}")),
        }
    }

    /// Crashes every member of shard group `gi` (the lab's ShutdownGroup).
    pub fn shutdown_group(&mut self, gi: usize) {
        for id in self.members(gi) {
            self.world.sim.crash(id);
        }
    }

    /// Restarts every member of shard group `gi` from what it persisted (StartGroup).
    pub fn start_group(&mut self, gi: usize) {
        for id in self.members(gi) {
            self.world.sim.restart(id);
        }
    }

    /// Crashes member `i` of shard group `gi` (ShutdownServer).
    pub fn shutdown_server(&mut self, gi: usize, i: usize) {
        let id = self.members(gi)[i];
        self.world.sim.crash(id);
    }

    /// Restarts member `i` of shard group `gi` (StartServer).
    pub fn start_server(&mut self, gi: usize, i: usize) {
        let id = self.members(gi)[i];
        self.world.sim.restart(id);
    }

    /// Runs `ms` of virtual time with every clerk active, sampling the invariant.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(ms, |_| false);
    }

    /// Runs until `done` holds for the clerks (checked after every batch of client events)
    /// or `ms` pass, sampling the invariant; returns whether `done` held.
    pub fn run_until(&mut self, ms: u64, done: impl Fn(&crate::WorldClients) -> bool) -> bool {
        let end = self.world.sim.now + ms * 1000;
        loop {
            if self.world.sim.now >= self.next_sample_us {
                self.ownership.sample(&self.world.sim);
                self.next_sample_us = self.world.sim.now + SAMPLE_EVERY_MS * 1000;
            }
            let slice = end.min(self.next_sample_us);
            let w = &mut self.world;
            if run_clients(&mut w.sim, &mut w.clients, slice, &done) {
                return true;
            }
            if self.world.sim.now >= end {
                return false;
            }
        }
    }

    /// Runs `op` on sharded clerk `c` for at most `ms`; its output, or `None` if it did not
    /// complete (it stays in flight).
    pub fn try_op(&mut self, c: usize, op: KvOp, ms: u64) -> Option<KvOutput> {
        let before = self.clerks().clerks[c].results.len();
        let w = &mut self.world;
        let s = w.clients.shard.as_mut().expect("a world with shard groups");
        s.begin(&mut w.sim, c, op);
        self.run_until(ms, |w| {
            w.shard.as_ref().is_some_and(|s| s.clerks[c].is_idle())
        });
        let results = &self.clerks().clerks[c].results;
        results.get(before).map(|(_, o)| o.clone())
    }

    /// Runs `op` on sharded clerk `c` to completion; fails the run if it takes longer than
    /// [`OP_MS_MAX`].
    pub fn op(&mut self, c: usize, op: KvOp) -> KvOutput {
        match self.try_op(c, op.clone(), OP_MS_MAX) {
            Some(o) => o,
            None => {
                let state = self.describe();
                let clerk = &self.clerks().clerks[c];
                let msg =
                    format!("{op:?} did not complete in {OP_MS_MAX} ms; clerk {clerk:?}\n{state}");
                self.world.sim.fail(&msg)
            }
        }
    }

    /// Puts `value` at `key` through clerk `c`.
    pub fn put(&mut self, c: usize, key: &str, value: &str) {
        let op = Op::Write(KvCommand::Put {
            key: key.into(),
            value: value.into(),
        });
        self.op(c, op);
    }

    /// Appends `value` to `key` through clerk `c`.
    pub fn append(&mut self, c: usize, key: &str, value: &str) {
        let op = Op::Write(KvCommand::Append {
            key: key.into(),
            value: value.into(),
        });
        self.op(c, op);
    }

    /// Reads `key` through clerk `c` and checks it holds exactly `want`.
    pub fn check(&mut self, c: usize, key: &str, want: &str) {
        let got = self.op(c, get(key));
        if got != KvOutput::Value(Some(want.as_bytes().to_vec())) {
            self.world
                .sim
                .fail(&format!("Get({key:?}): wanted {want:?}, got {got:?}"));
        }
    }

    /// One line per shard group member: up, leader, config, applied index, the shards in
    /// migration and the duties (printed when a run fails).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (id, n) in &self.world.sim.nodes {
            let Some(g) = n.app.as_ref().and_then(|a| a.shard_group()) else {
                continue;
            };
            let sm = g.state_machine();
            let moving: Vec<_> = sm
                .shards()
                .iter()
                .filter(|(_, s)| s.in_migration())
                .map(|(k, s)| (k.0, s.state))
                .collect();
            out += &format!(
                "  {id} of {}: up {}, leader {}, config {}, applied {}, moving {moving:?}, {:?}\n",
                sm.gid(),
                n.is_up(),
                g.replica.raft().is_leader(),
                sm.config().num,
                g.replica.applied(),
                g.duties
            );
        }
        out
    }

    /// Samples the invariant once more and checks every sharded history is linearizable
    /// (undecided fails).
    pub fn check_history(&mut self) {
        self.ownership.sample(&self.world.sim);
        let w = &self.world;
        if let Some(s) = &w.clients.shard {
            s.check_linearizable(&w.sim);
        }
    }

    /// The persisted Raft state plus snapshot bytes of every shard group server, summed.
    pub fn shard_storage_bytes(&self) -> usize {
        let sim = &self.world.sim;
        let ids = self.gids.iter().flat_map(|&g| sim.members(g));
        ids.map(|id| {
            let s = &sim.nodes[&id].store;
            s.raft_state_bytes() + s.snapshot_bytes()
        })
        .sum()
    }

    /// The largest persisted Raft state of any shard group server, in bytes.
    pub fn raft_state_bytes_max(&self) -> usize {
        let sim = &self.world.sim;
        let ids = self.gids.iter().flat_map(|&g| sim.members(g));
        ids.map(|id| sim.nodes[&id].store.raft_state_bytes())
            .max()
            .unwrap_or(0)
    }
}

/// A scenario's own assertions (not only the simulator's checks) name the seed and the
/// replay command: a world dropped while its thread panics prints them.
impl Drop for ShardWorld {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let cfg = &self.world.sim.cfg;
            eprintln!(
                "  (shard world at virtual time {} ms, seed {})\n  replay: {}",
                self.world.sim.now / 1000,
                cfg.seed,
                cfg.replay
            );
        }
    }
}

/// A controller group (gid 1, nodes 1–3) and `groups` shard groups of three: group `gi`
/// is gid `100 + gi` on nodes `10(gi+1)+1 ..= 10(gi+1)+3`.
pub fn shard_world_groups(groups: usize) -> Vec<GroupSpec> {
    let mut out = vec![GroupSpec::new(CTRL_GID, GroupKind::Ctrl, 1..=3)];
    for gi in 0..groups as u64 {
        let base = 10 * (gi + 1);
        out.push(GroupSpec::new(
            Gid(100 + gi),
            GroupKind::Shard,
            base + 1..=base + 3,
        ));
    }
    out
}

/// `Get(key)`.
pub fn get(key: &str) -> KvOp {
    Op::Read(KvQuery::Get { key: key.into() })
}
