//! [`World`]: one seeded world of several groups of different kinds — a controller group,
//! KV groups, bare Raft groups, shard groups — with the clerks of every service (the
//! sharded store's clerks enter through the controller) running concurrently over
//! the one simulated network, and the checks a world run ends with: each group's Raft
//! invariants (checked throughout by its own checker), every KV group's history
//! linearizable, the sharded store's history linearizable, the controller's replicas byte-identical and its answers consistent with
//! its history, every bare Raft group's members agreeing on one log, and every config
//! poller's answers never going back.

use crate::clients::{Clients, run_clients};
use crate::cluster::Sim;
use crate::config::ClusterConfig;
use crate::ctrl::{CtrlClients, query};
use crate::ctrl_fuzz::random_op;
use crate::event::ClientEvent;
use crate::group::{GroupKind, GroupSpec};
use crate::group_app::{GroupApp, GroupResponse};
use crate::kv::{KvClients, Workload};
use crate::raft_dsl::propose;
use crate::shard_clerk::ShardKvClerk;
use shardkv_types::{Gid, LogIndex, NodeId, Rng};

/// A simulated world of groups of several kinds.
pub type WorldSim = Sim<GroupApp>;

/// Client addresses: KV group `i`'s clerks from `KV_ADDR_BASE + i * ADDR_STRIDE`, the
/// controller groups' likewise from `CTRL_ADDR_BASE`.
const KV_ADDR_BASE: u64 = 10_000;
const CTRL_ADDR_BASE: u64 = 100_000;
/// The sharded store's clerks' addresses start here.
const SHARD_ADDR_BASE: u64 = 200_000;

/// The clerks of the sharded store: the KV harness over sharded clerks.
pub type ShardClients = KvClients<ShardKvClerk>;
const ADDR_STRIDE: u64 = 1_000;

/// The clerks of every service group of a world, each set over its own group.
pub struct WorldClients {
    /// One per KV group, in gid order.
    pub kv: Vec<KvClients>,
    /// One per controller group, in gid order.
    pub ctrl: Vec<CtrlClients>,
    /// The sharded store's clerks, if the world has shard groups (entering through the
    /// world's controller group).
    pub shard: Option<ShardClients>,
}

impl Clients<GroupApp> for WorldClients {
    fn on_event(&mut self, sim: &mut WorldSim, ev: ClientEvent<GroupResponse>) {
        let addr = ev.client();
        if let Some(k) = self.kv.iter_mut().find(|k| k.owns(addr)) {
            k.on_event(sim, ev);
        } else if let Some(c) = self.ctrl.iter_mut().find(|c| c.owns(addr)) {
            c.on_event(sim, ev);
        } else if let Some(s) = self.shard.as_mut().filter(|s| s.owns(addr)) {
            s.on_event(sim, ev);
        } else {
            sim.fail(&format!("an event for unknown client {addr}"));
        }
    }
}

impl WorldClients {
    /// True when no clerk of any service has an operation in flight or queued.
    pub fn idle(&self) -> bool {
        self.kv.iter().all(|k| k.idle())
            && self.ctrl.iter().all(|c| c.idle())
            && self.shard.as_ref().is_none_or(|s| s.idle())
    }
}

/// A world and its clerks.
pub struct World {
    pub sim: WorldSim,
    pub clients: WorldClients,
    /// Commands proposed to the bare Raft groups so far (each distinct).
    pub raft_proposals: u64,
}

impl World {
    /// Builds the world of `cfg` with no clerks yet; every KV and controller group gets its
    /// (empty) set of clerks, and so does the sharded store if the world has shard groups.
    pub fn new(cfg: ClusterConfig) -> World {
        let sim = Sim::new(cfg);
        let of_kind = |kind| -> Vec<Gid> {
            let groups = sim.cfg.groups.iter();
            groups.filter(|g| g.kind == kind).map(|g| g.gid).collect()
        };
        let kv = of_kind(GroupKind::Kv)
            .into_iter()
            .zip(0..)
            .map(|(g, i)| KvClients::new(g, sim.members(g), KV_ADDR_BASE + i * ADDR_STRIDE))
            .collect();
        let ctrl = of_kind(GroupKind::Ctrl)
            .into_iter()
            .zip(0..)
            .map(|(g, i)| CtrlClients::new(g, sim.members(g), CTRL_ADDR_BASE + i * ADDR_STRIDE))
            .collect();
        let shard = match (of_kind(GroupKind::Shard).is_empty(), sim.cfg.controller()) {
            (false, Some(c)) => Some(ShardClients::new(c, sim.members(c), SHARD_ADDR_BASE)),
            _ => None,
        };
        World {
            sim,
            clients: WorldClients { kv, ctrl, shard },
            raft_proposals: 0,
        }
    }

    /// The bare Raft groups' ids.
    pub fn raft_gids(&self) -> Vec<Gid> {
        let groups = self.sim.cfg.groups.iter();
        groups
            .filter(|g| g.kind == GroupKind::Raft)
            .map(|g| g.gid)
            .collect()
    }

    /// Adds `clerks` running `workload` to every KV group and starts them.
    pub fn start_kv_clerks(&mut self, clerks: usize, workload: Workload) {
        for k in &mut self.clients.kv {
            for _ in 0..clerks {
                k.add_clerk(&mut self.sim, workload.clone());
            }
            k.start_clients(&mut self.sim);
        }
    }

    /// Adds `clerks` to every controller group (fed random operations by `run_for`).
    pub fn add_ctrl_clerks(&mut self, clerks: usize) {
        for c in &mut self.clients.ctrl {
            for _ in 0..clerks {
                c.add_clerk(&mut self.sim);
            }
        }
    }

    /// Runs `ms` of virtual time in slices of at most 50 ms; after each slice, when
    /// `feeding`, every idle controller clerk gets a random operation from `rng` and every
    /// bare Raft group's leader (if any) a new command.
    pub fn run_for(&mut self, ms: u64, feeding: bool, rng: &mut Rng) {
        let end = self.sim.now + ms * 1000;
        while self.sim.now < end {
            let slice_end = end.min(self.sim.now + 50_000);
            run_clients(&mut self.sim, &mut self.clients, slice_end, |_| false);
            if feeding {
                self.feed(rng);
            }
        }
    }

    fn feed(&mut self, rng: &mut Rng) {
        let shards = self.sim.cfg.shards;
        for c in &mut self.clients.ctrl {
            for i in 0..c.clients.len() {
                if c.clients[i].clerk.is_idle() && c.clients[i].script.is_empty() {
                    c.queue(&mut self.sim, i, [random_op(rng, shards)]);
                }
            }
        }
        for gid in self.raft_gids() {
            let v = self.raft_proposals + 1;
            if self.propose_raft(gid, &v.to_le_bytes()).is_some() {
                self.raft_proposals = v;
            }
        }
    }

    /// Proposes `cmd` to bare Raft group `gid` at whichever live member leads; returns
    /// (node, index) if one took it.
    pub fn propose_raft(&mut self, gid: Gid, cmd: &[u8]) -> Option<(NodeId, LogIndex)> {
        for id in self.sim.members(gid) {
            let raft = self
                .sim
                .nodes
                .get_mut(&id)
                .and_then(|n| n.live())
                .and_then(|a| a.raft_app_mut());
            if let Some((index, _)) = raft.and_then(|a| propose(&mut a.raft, cmd)) {
                self.sim.process(id);
                return Some((id, index));
            }
        }
        None
    }

    /// Runs until every clerk is idle, for at most `ms`; returns whether they are.
    pub fn run_until_idle(&mut self, ms: u64) -> bool {
        let end = self.sim.now + ms * 1000;
        run_clients(&mut self.sim, &mut self.clients, end, |w| w.idle())
    }

    /// Clerks finish what they do and take no more work; runs until every clerk is idle,
    /// for at most `ms`; returns whether they are.
    pub fn finish(&mut self, ms: u64) -> bool {
        for k in &mut self.clients.kv {
            k.stop_clients();
        }
        if let Some(s) = &mut self.clients.shard {
            s.stop_clients();
        }
        for c in &mut self.clients.ctrl {
            for x in &mut c.clients {
                x.script.clear();
            }
        }
        if !self.run_until_idle(ms) {
            return false;
        }
        // A fresh query of the latest config through each controller group: answered only
        // once a leader of the healed group committed an entry of its term, so every
        // command acknowledged before is committed (and `check` may compare histories).
        for c in &mut self.clients.ctrl {
            for i in 0..c.clients.len() {
                c.queue(&mut self.sim, i, [query(None)]);
            }
        }
        self.run_until_idle(ms)
    }

    /// The checks a world run ends with (after `finish`, with faults stopped): every KV
    /// group's history and the sharded store's linearizable (undecided fails), each controller group's replicas
    /// converged and byte-identical and its answers consistent with its history, every
    /// bare Raft group's members converged on one applied index, and every config poller
    /// saw configs in order. Waits up to `ms` for groups to converge.
    pub fn check(&mut self, ms: u64) {
        for k in &self.clients.kv {
            k.check_linearizable(&self.sim);
        }
        if let Some(s) = &self.clients.shard {
            s.check_linearizable(&self.sim);
        }
        for c in &self.clients.ctrl {
            if !c.converge(&mut self.sim, ms) {
                self.sim
                    .fail(&format!("controller group {} did not converge", c.gid));
            }
            c.check_replicas_agree(&self.sim);
            c.check_history(&self.sim);
        }
        for gid in self.raft_gids() {
            if !self.sim.run_until(ms, |s| raft_converged(s, gid)) {
                self.sim
                    .fail(&format!("bare Raft group {gid} did not converge"));
            }
        }
        for (id, n) in &self.sim.nodes {
            let Some(p) = n.app.as_ref().and_then(|a| a.poller.as_ref()) else {
                continue;
            };
            if p.seen.windows(2).any(|w| w[1] < w[0]) {
                self.sim.fail(&format!(
                    "{id}'s config polls went back: {:?} (a stale read of the latest config)",
                    p.seen
                ));
            }
        }
    }
}

/// The world of the world scenario and the world fuzz: a controller group (gid 1, nodes
/// 1–3), two KV groups (gids 100 and 101, nodes 11–13 and 21–23) and a bare Raft group
/// (gid 200, nodes 31–33) whose members poll the controller; node ids are unique across
/// the world and not contiguous.
pub fn four_groups() -> Vec<GroupSpec> {
    let mut raft = GroupSpec::new(Gid(200), GroupKind::Raft, 31..=33);
    raft.polls = Some(Gid(1));
    vec![
        GroupSpec::new(Gid(1), GroupKind::Ctrl, 1..=3),
        GroupSpec::new(Gid(100), GroupKind::Kv, 11..=13),
        GroupSpec::new(Gid(101), GroupKind::Kv, 21..=23),
        raft,
    ]
}

/// True when every member of bare Raft group `gid` is up and applied the group's highest
/// applied index.
pub fn raft_converged(s: &WorldSim, gid: Gid) -> bool {
    let max = s.checkers[&gid].max_applied();
    s.members(gid).iter().all(|id| {
        let n = &s.nodes[id];
        n.is_up()
            && n.app
                .as_ref()
                .and_then(|a| a.raft_app())
                .is_some_and(|a| a.sm.applied == max)
    })
}
