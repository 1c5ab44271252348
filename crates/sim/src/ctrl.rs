//! The shard controller scenario harness: a simulated controller group (`CtrlNode`s: the
//! real `Replica<ShardCtrl>`) and simulated clerks (the production clerk core) running
//! scripts of Join / Leave / Move / Query over the simulated network, every operation
//! recorded with its virtual call and return times, and the checks every controller run
//! ends with: replicas hold byte-identical state, every answer agrees with the one history
//! of configs, and a Query of the latest config sees every change completed before it.

use crate::app::App;
use crate::clerk::{Ended, SIM_CLERK_POLICY, SimClerk};
use crate::clients::{Clients, run_clients};
use crate::cluster::Sim;
use crate::config::ClusterConfig;
use crate::event::ClientEvent;
use crate::group::GroupKind;
use crate::service_app::{ServiceApp, live_replicas};
use crate::service_node::CtrlNode;
use shardkv_client::{CLERK_TICK_MS, Op, RetryPolicy};
use shardkv_ctrl::{Config, CtrlCommand, CtrlError, CtrlOutput, CtrlQuery, CtrlReply, ShardCtrl};
use shardkv_types::{ConfigNum, Gid, NodeId, ShardId};
use std::collections::{BTreeMap, VecDeque};

/// A simulated controller group.
pub type CtrlSim = Sim<CtrlNode>;

/// A controller operation.
pub type CtrlOp = Op<CtrlCommand, CtrlQuery>;

/// One completed operation.
#[derive(Clone, Debug)]
pub struct CtrlRecord {
    pub clerk: usize,
    pub op: CtrlOp,
    pub call_ns: u64,
    pub return_ns: u64,
    pub out: CtrlOutput,
}

/// A clerk and the operations it still has to run.
#[derive(Debug)]
pub struct CtrlClient {
    pub clerk: SimClerk<ShardCtrl>,
    pub script: VecDeque<CtrlOp>,
}

/// The clerks of one controller group and what they recorded, over any simulator whose
/// nodes can run the controller (a lone controller group, or one group of a world), and
/// the checks every controller run ends with.
pub struct CtrlClients {
    /// The group the clerks talk to, and its members.
    pub gid: Gid,
    pub servers: Vec<NodeId>,
    /// Clerk `i` has network address `addr_base + i`.
    addr_base: u64,
    pub clients: Vec<CtrlClient>,
    pub completed: Vec<CtrlRecord>,
    /// Operations whose outcome is unknown (the clerk gave up after its deadline).
    pub unknown: Vec<CtrlOp>,
    /// If set, a clerk gives up on an operation this long after starting it. Set before
    /// adding clerks.
    pub op_deadline_ms: Option<u64>,
}

/// A lone controller group plus its clerks ([`CtrlClients`], reached through `Deref`).
pub struct CtrlCluster {
    pub sim: CtrlSim,
    pub ctrl: CtrlClients,
}

impl std::ops::Deref for CtrlCluster {
    type Target = CtrlClients;
    fn deref(&self) -> &CtrlClients {
        &self.ctrl
    }
}

impl std::ops::DerefMut for CtrlCluster {
    fn deref_mut(&mut self) -> &mut CtrlClients {
        &mut self.ctrl
    }
}

/// `Join` of groups `(gid, servers)`.
pub fn join(groups: &[(u64, &[&str])]) -> CtrlOp {
    let groups = groups
        .iter()
        .map(|(g, s)| (Gid(*g), s.iter().map(|x| x.to_string()).collect()))
        .collect();
    Op::Write(CtrlCommand::Join { groups })
}

/// `Leave` of `gids`.
pub fn leave(gids: &[u64]) -> CtrlOp {
    Op::Write(CtrlCommand::Leave {
        gids: gids.iter().map(|g| Gid(*g)).collect(),
    })
}

/// `Move` of `shard` to `gid`.
pub fn move_to(shard: u64, gid: u64) -> CtrlOp {
    Op::Write(CtrlCommand::Move {
        shard: ShardId(shard),
        gid: Gid(gid),
    })
}

/// `Query` of config `num` (`None`: the latest).
pub fn query(num: Option<u64>) -> CtrlOp {
    Op::Read(CtrlQuery {
        num: num.map(ConfigNum),
    })
}

impl CtrlClients {
    /// No clerks yet for group `gid` of `servers`; clerk addresses start at `addr_base`.
    pub fn new(gid: Gid, servers: Vec<NodeId>, addr_base: u64) -> CtrlClients {
        CtrlClients {
            gid,
            servers,
            addr_base,
            clients: Vec::new(),
            completed: Vec::new(),
            unknown: Vec::new(),
            op_deadline_ms: None,
        }
    }

    /// Adds an idle clerk; returns its index.
    pub fn add_clerk<A: ServiceApp<ShardCtrl>>(&mut self, sim: &mut Sim<A>) -> usize {
        let index = self.clients.len();
        let policy = RetryPolicy {
            op_ticks_max: self.op_deadline_ms.map(|ms| ms.div_ceil(CLERK_TICK_MS)),
            ..SIM_CLERK_POLICY
        };
        let rng = sim.rng.fork();
        let addr = self.addr_base + index as u64;
        let clerk = SimClerk::new(addr, self.gid, self.servers.clone(), policy, rng);
        self.clients.push(CtrlClient {
            clerk,
            script: VecDeque::new(),
        });
        index
    }

    /// True when no clerk has an operation in flight or queued.
    pub fn idle(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.clerk.is_idle() && c.script.is_empty())
    }

    /// Queues `ops` on clerk `c` (run in order, one at a time, concurrently with the other
    /// clerks).
    pub fn queue<A: ServiceApp<ShardCtrl>>(
        &mut self,
        sim: &mut Sim<A>,
        c: usize,
        ops: impl IntoIterator<Item = CtrlOp>,
    ) {
        self.clients[c].script.extend(ops);
        self.kick(sim, c);
    }

    fn kick<A: ServiceApp<ShardCtrl>>(&mut self, sim: &mut Sim<A>, c: usize) {
        if !self.clients[c].clerk.is_idle() {
            return;
        }
        if let Some(op) = self.clients[c].script.pop_front() {
            let ended = self.clients[c].clerk.begin(sim, op);
            self.ended(sim, c, ended);
        }
    }

    fn ended<A: ServiceApp<ShardCtrl>>(
        &mut self,
        sim: &mut Sim<A>,
        c: usize,
        ended: Option<Ended<CtrlCommand, CtrlQuery, CtrlOutput>>,
    ) {
        match ended {
            None => return,
            Some(Ended::Done { op, call_ns, out }) => self.completed.push(CtrlRecord {
                clerk: c,
                op,
                call_ns,
                return_ns: sim.now * 1000,
                out,
            }),
            Some(Ended::Unknown { op, .. }) => self.unknown.push(op),
            // Only a clerk with a deadline gives up, or a leader whose disk is full (the
            // fuzzers' `disk-full` faults); a surely-failed operation is no part of the
            // history. Nothing else the controller says ends an operation so.
            Some(Ended::Failed { op, error, .. })
                if self.op_deadline_ms.is_none() && error != shardkv_rsm::Error::NoSpace =>
            {
                sim.fail(&format!("{op:?} failed definitely: {error}"));
            }
            Some(Ended::Failed { .. }) => {}
        }
        self.kick(sim, c);
    }

    /// Gives up on every operation in flight and drops the queued ones.
    pub fn abandon_all(&mut self) {
        for c in &mut self.clients {
            c.script.clear();
            if let Some(Ended::Unknown { op, .. }) = c.clerk.give_up() {
                self.unknown.push(op);
            }
        }
    }

    /// Runs until every live replica applied the same index (bounded); returns whether
    /// they did.
    pub fn converge<A: ServiceApp<ShardCtrl>>(&self, sim: &mut Sim<A>, ms: u64) -> bool {
        sim.run_until(ms, |s| {
            let applied: Vec<_> = live_replicas(s, self.gid)
                .into_iter()
                .map(|(_, a)| (a.applied(), a.raft().log().committed()))
                .collect();
            applied.windows(2).all(|w| w[0].0 == w[1].0) && applied.iter().all(|(a, c)| a == c)
        })
    }

    /// The state of every live replica, postcard-encoded, by node.
    pub fn replica_states<A: ServiceApp<ShardCtrl>>(
        &self,
        sim: &Sim<A>,
    ) -> BTreeMap<NodeId, Vec<u8>> {
        live_replicas(sim, self.gid)
            .into_iter()
            .map(|(id, a)| {
                let sm = a.state_machine();
                (id, postcard::to_allocvec(sm).expect("encodes"))
            })
            .collect()
    }

    /// Fails unless every live replica holds byte-identical controller state.
    pub fn check_replicas_agree<A: ServiceApp<ShardCtrl>>(&self, sim: &Sim<A>) {
        let states = self.replica_states(sim);
        let mut distinct: Vec<&Vec<u8>> = states.values().collect();
        distinct.dedup();
        if distinct.len() > 1 {
            let sizes: Vec<_> = states.iter().map(|(id, s)| (*id, s.len())).collect();
            sim.fail(&format!(
                "controller replicas disagree after converging (node, state bytes): {sizes:?}"
            ));
        }
    }

    /// The history of configs as the first live replica holds it.
    pub fn history<A: ServiceApp<ShardCtrl>>(&self, sim: &Sim<A>) -> Vec<Config> {
        match live_replicas(sim, self.gid).first() {
            Some((_, a)) => a.state_machine().configs().to_vec(),
            None => sim.fail("no live controller replica"),
        }
    }

    /// Checks every completed operation against the one history of configs:
    /// - each accepted command names a config that exists, no two accepted commands name the
    ///   same one, and the config differs from its predecessor as the command says;
    /// - each query's config equals the history's config of that number, and a query of the
    ///   latest config returns one at least as new as every command completed before the
    ///   query was called (linearizable reads of the latest config);
    /// - every config passes the controller's own invariants.
    pub fn check_history<A: ServiceApp<ShardCtrl>>(&self, sim: &Sim<A>) {
        let h = self.history(sim);
        for (i, c) in h.iter().enumerate() {
            if c.num != ConfigNum(i as u64) {
                sim.fail(&format!("config at {i} is numbered {}", c.num));
            }
            if let Err(e) = c.check() {
                sim.fail(&format!("config {} is broken: {e}", c.num));
            }
        }
        let mut claimed: BTreeMap<ConfigNum, &CtrlRecord> = BTreeMap::new();
        for r in &self.completed {
            match (&r.op, &r.out) {
                (Op::Write(cmd), Ok(CtrlReply::Applied { num })) => {
                    if let Some(prev) = claimed.insert(*num, r) {
                        sim.fail(&format!(
                            "two commands made config {num}: {:?} and {:?}",
                            prev.op, r.op
                        ));
                    }
                    self.check_effect(sim, &h, cmd, *num);
                }
                (Op::Read(q), Ok(CtrlReply::Config(got))) => {
                    let Some(want) = h.get(got.num.0 as usize) else {
                        sim.fail(&format!("a query returned {} past the history", got.num));
                    };
                    if got != want {
                        sim.fail(&format!(
                            "a query returned a config {} that differs from the history's",
                            got.num
                        ));
                    }
                    // A number past the latest at the time is answered with the latest.
                    match q.num {
                        Some(n) if n == got.num => {}
                        Some(n) if n < got.num => {
                            sim.fail(&format!("query {n} returned the newer config {}", got.num))
                        }
                        _ => self.check_latest(sim, r, got.num),
                    }
                }
                (Op::Write(_), Err(_)) => {}
                (op, out) => sim.fail(&format!("{op:?} answered {out:?}")),
            }
        }
    }

    /// A query of the latest config, called after a command completed, must see it.
    fn check_latest<A: App>(&self, sim: &Sim<A>, q: &CtrlRecord, got: ConfigNum) {
        for r in &self.completed {
            if let (true, Ok(CtrlReply::Applied { num })) = (r.return_ns < q.call_ns, &r.out)
                && *num > got
            {
                sim.fail(&format!(
                    "stale read: a query of the latest config returned {got} after config \
                     {num} was acknowledged"
                ));
            }
        }
    }

    /// Config `num` differs from `num - 1` as `cmd` says.
    fn check_effect<A: App>(&self, sim: &Sim<A>, h: &[Config], cmd: &CtrlCommand, num: ConfigNum) {
        let (Some(before), Some(after)) = (
            num.0.checked_sub(1).and_then(|i| h.get(i as usize)),
            h.get(num.0 as usize),
        ) else {
            sim.fail(&format!(
                "{cmd:?} acknowledged config {num}, not in the history"
            ));
        };
        let ok = match cmd {
            CtrlCommand::Join { groups } => {
                groups.iter().all(|(g, s)| after.groups.get(g) == Some(s))
                    && groups.keys().all(|g| !before.has_group(*g))
                    && after.groups.len() == before.groups.len() + groups.len()
            }
            CtrlCommand::Leave { gids } => {
                gids.iter()
                    .all(|g| before.has_group(*g) && !after.has_group(*g))
                    && after.groups.len() + gids.len() == before.groups.len()
            }
            CtrlCommand::Move { shard, gid } => {
                after.owner(*shard) == Some(*gid) && after.groups == before.groups
            }
            CtrlCommand::Servers { gid, servers } => {
                before.has_group(*gid)
                    && after.groups.get(gid) == Some(servers)
                    && after.shards == before.shards
            }
        };
        if !ok {
            sim.fail(&format!("config {num} does not show the effect of {cmd:?}"));
        }
    }
}

impl<A: ServiceApp<ShardCtrl>> Clients<A> for CtrlClients {
    fn on_event(&mut self, sim: &mut Sim<A>, ev: ClientEvent<A::Response>) {
        let c = (ev.client() - self.addr_base) as usize;
        let ended = self.clients[c].clerk.on_event(sim, ev);
        self.ended(sim, c, ended);
    }
}

impl CtrlClients {
    /// True if client address `addr` is one of these clerks'.
    pub fn owns(&self, addr: u64) -> bool {
        (self.addr_base..self.addr_base + self.clients.len() as u64).contains(&addr)
    }
}

impl CtrlCluster {
    /// A lone controller group (every group of `cfg` runs the controller; clerks talk to
    /// the first).
    pub fn new(cfg: ClusterConfig) -> CtrlCluster {
        let sim = Sim::new(cfg.with_kind(GroupKind::Ctrl));
        let gid = sim.gid();
        let ctrl = CtrlClients::new(gid, sim.members(gid), 2000);
        CtrlCluster { sim, ctrl }
    }

    /// Adds an idle clerk; returns its index.
    pub fn add_clerk(&mut self) -> usize {
        self.ctrl.add_clerk(&mut self.sim)
    }

    /// Queues `ops` on clerk `c` (run in order, one at a time, concurrently with the other
    /// clerks).
    pub fn queue(&mut self, c: usize, ops: impl IntoIterator<Item = CtrlOp>) {
        self.ctrl.queue(&mut self.sim, c, ops);
    }

    /// Runs until every clerk finished its script, for at most `ms`; returns whether they did.
    pub fn run_until_idle(&mut self, ms: u64) -> bool {
        let end = self.sim.now + ms * 1000;
        run_clients(&mut self.sim, &mut self.ctrl, end, |k| k.idle())
    }

    /// Runs `ms` of virtual time.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.sim.now + ms * 1000;
        run_clients(&mut self.sim, &mut self.ctrl, end, |_| false);
    }

    /// Runs one operation on clerk `c` to completion (failing the run after `ms`).
    pub fn op(&mut self, c: usize, op: CtrlOp, ms: u64) -> CtrlOutput {
        assert!(self.idle(), "op() runs one operation alone");
        let before = self.completed.len();
        self.queue(c, [op]);
        if !self.run_until_idle(ms) {
            self.sim.fail(&format!(
                "a controller operation did not complete within {ms} ms"
            ));
        }
        match self.completed.get(before) {
            Some(r) => r.out.clone(),
            None => self
                .sim
                .fail("a controller operation ended without an answer"),
        }
    }

    /// Runs a command that must be accepted; returns the config it made.
    pub fn change(&mut self, c: usize, op: CtrlOp) -> ConfigNum {
        match self.op(c, op.clone(), 20_000) {
            Ok(CtrlReply::Applied { num }) => num,
            other => self.sim.fail(&format!("{op:?} answered {other:?}")),
        }
    }

    /// Runs a command that must be refused; returns the refusal.
    pub fn refused(&mut self, c: usize, op: CtrlOp) -> CtrlError {
        match self.op(c, op.clone(), 20_000) {
            Err(e) => e,
            other => self
                .sim
                .fail(&format!("{op:?} should be refused, answered {other:?}")),
        }
    }

    /// Queries config `num` (`None`: the latest).
    pub fn config(&mut self, c: usize, num: Option<u64>) -> Config {
        match self.op(c, query(num), 20_000) {
            Ok(CtrlReply::Config(config)) => config,
            other => self.sim.fail(&format!("query answered {other:?}")),
        }
    }

    /// See [`CtrlClients::converge`].
    pub fn converge(&mut self, ms: u64) -> bool {
        self.ctrl.converge(&mut self.sim, ms)
    }

    /// See [`CtrlClients::replica_states`].
    pub fn replica_states(&self) -> BTreeMap<NodeId, Vec<u8>> {
        self.ctrl.replica_states(&self.sim)
    }

    /// See [`CtrlClients::check_replicas_agree`].
    pub fn check_replicas_agree(&self) {
        self.ctrl.check_replicas_agree(&self.sim);
    }

    /// See [`CtrlClients::history`].
    pub fn history(&self) -> Vec<Config> {
        self.ctrl.history(&self.sim)
    }

    /// See [`CtrlClients::check_history`].
    pub fn check_history(&self) {
        self.ctrl.check_history(&self.sim);
    }
}
