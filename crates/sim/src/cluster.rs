//! [`Sim`]: a simulated world — one or more Raft groups (each with its own voters, Raft
//! configuration and invariant checker), simulated clients, the network, the clock and the
//! fault schedule under one seed, driven by a discrete-event loop. Node ids are unique
//! across the world; every Raft message travels in an [`Envelope`] stamped with its cluster
//! and group, and one that reaches a node of another group or cluster is dropped and
//! counted, never stepped. Scenario helpers (the test DSL) live in `dsl.rs` (any app),
//! `raft_dsl.rs` (bare Raft), `kv.rs`, `ctrl.rs` and `world.rs`.

use crate::app::{App, RaftApp};
use crate::checker::Checker;
use crate::config::ClusterConfig;
use crate::event::{ClientEvent, Event, Origin};
use crate::faults::FaultSchedule;
use crate::group::GroupSpec;
use crate::net::{Fate, Network};
use crate::node::{Fault, SimNode};
use crate::queue::{EventQueue, Micros};
use crate::state_machine::digest;
use crate::stats::NetStats;
use crate::wire::Envelope;
use shardkv_raft::{Config, Message};
use shardkv_storage::CrashMode;
use shardkv_types::{Gid, NodeId, Rng};
use std::collections::{BTreeMap, BTreeSet};

/// A simulated world of groups whose nodes run `A` (one app type per group; a world of
/// several kinds runs [`GroupApp`](crate::GroupApp)).
pub struct Sim<A: App> {
    pub cfg: ClusterConfig,
    pub now: Micros,
    pub rng: Rng,
    pub net: Network,
    /// Every node of every group, by its world-unique id.
    pub nodes: BTreeMap<NodeId, SimNode<A>>,
    /// One invariant checker per group: Raft's properties hold within a group.
    pub checkers: BTreeMap<Gid, Checker>,
    pub stats: NetStats,
    /// Nodes the lab would call "connected" (not isolated by `disconnect`).
    pub connected: BTreeSet<NodeId>,
    /// (time, node, term) of every election won.
    pub elections: Vec<(Micros, NodeId, shardkv_types::Term)>,
    queue: EventQueue<Event>,
    /// Client events waiting for the client driver.
    client_inbox: Vec<ClientEvent<A::Response>>,
    /// Client-to-node links that are cut (both directions).
    /// (Node-to-node requests between groups follow the node links in `net`.)
    client_cut: BTreeSet<(u64, NodeId)>,
    /// Nodes whose disk will fail after a few more writes.
    disk_faults_armed: BTreeMap<NodeId, CrashMode>,
    /// A running digest of everything that happened: equal seeds give equal traces.
    pub trace: u64,
    /// Nodes that crashed between sending a Ready's messages and syncing its entries (a
    /// leader's early send, then a disk fault in the write that followed).
    pub crashes_after_early_send: u64,
    /// Per node: how fast its clock runs, in permille of real (virtual) time; 1000 if absent.
    /// A node at 800 ticks every `tick_us * 1000 / 800`.
    pub clock_permille: BTreeMap<NodeId, u32>,
    /// The fuzzers' fault schedule, told about every node after it processed an event (so it
    /// can crash a node right after it granted a vote or won an election).
    pub faults: Option<FaultSchedule>,
}

/// A simulated bare-Raft group (the Raft scenarios and the fuzz target).
pub type Cluster = Sim<RaftApp>;

impl<A: App> std::fmt::Debug for Sim<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sim(seed {}, t={}ms)", self.cfg.seed, self.now / 1000)
    }
}

impl<A: App> Sim<A> {
    /// Builds and starts every node of every group.
    ///
    /// # Panics
    /// If the configuration breaks an identity invariant or names a group kind `A` cannot
    /// run.
    pub fn new(cfg: ClusterConfig) -> Sim<A> {
        cfg.check();
        for g in &cfg.groups {
            assert!(
                A::runs(g.kind),
                "group {} is {:?}: not this app",
                g.gid,
                g.kind
            );
        }
        let mut c = Sim {
            now: 0,
            rng: Rng::new(cfg.seed),
            net: Network::new(cfg.net.clone()),
            nodes: BTreeMap::new(),
            checkers: BTreeMap::new(),
            stats: NetStats::default(),
            connected: BTreeSet::new(),
            elections: Vec::new(),
            queue: EventQueue::default(),
            client_inbox: Vec::new(),
            client_cut: BTreeSet::new(),
            disk_faults_armed: BTreeMap::new(),
            trace: 0,
            crashes_after_early_send: 0,
            clock_permille: BTreeMap::new(),
            faults: None,
            cfg,
        };
        for g in c.cfg.groups.clone() {
            c.checkers.insert(g.gid, Checker::default());
            for &id in &g.members {
                let disk_seed = c.rng.next_u64();
                c.nodes.insert(id, SimNode::new(id, g.gid, disk_seed));
                c.connected.insert(id);
                c.start_node(id);
            }
        }
        c
    }

    /// Every node of every group, in id order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Every group's id, in order.
    pub fn gids(&self) -> Vec<Gid> {
        self.checkers.keys().copied().collect()
    }

    /// The one group of a single-group simulator.
    ///
    /// # Panics
    /// If the world has several groups.
    pub fn gid(&self) -> Gid {
        match self.cfg.groups.as_slice() {
            [g] => g.gid,
            gs => panic!("a world of {} groups has no one gid", gs.len()),
        }
    }

    /// The group `gid`'s spec.
    pub fn group(&self, gid: Gid) -> &GroupSpec {
        self.cfg.group(gid)
    }

    /// The voters of group `gid`.
    pub fn members(&self, gid: Gid) -> Vec<NodeId> {
        self.group(gid).members.clone()
    }

    /// The group node `id` belongs to.
    pub fn gid_of(&self, id: NodeId) -> Gid {
        self.nodes[&id].gid
    }

    /// The checker of the only group (see [`Sim::gid`]).
    pub fn checker(&self) -> &Checker {
        &self.checkers[&self.gid()]
    }

    fn raft_config(&self, id: NodeId) -> Config {
        let g = self.group(self.gid_of(id));
        let mut rc = Config::new(id, g.members.clone());
        if !g.members.contains(&id) {
            // A node that joined later (`Sim::join`): a learner of the first membership
            // until the log tells it better (see membership.rs).
            rc.learners = vec![id];
        }
        (self.cfg.raft)(&mut rc);
        (g.raft)(&mut rc);
        self.cfg.tweak.apply(&mut rc);
        rc
    }

    pub(crate) fn start_node(&mut self, id: NodeId) {
        let rc = self.raft_config(id);
        let kind = self.group(self.gid_of(id)).kind;
        let seed = self.rng.next_u64();
        let node = self.nodes.get_mut(&id).expect("node");
        if let Err(e) = node.start(rc, seed, &self.cfg, kind) {
            self.fail(&e);
        }
        let incarnation = self.nodes[&id].incarnation;
        // A random phase so that nodes do not tick in lockstep.
        let phase = self.rng.range(1, self.cfg.tick_us + 1);
        self.queue.push(
            self.now + phase,
            Event::Tick {
                node: id,
                incarnation,
            },
        );
    }

    /// Stops a node: it loses everything it did not persist (unsynced writes survive as a
    /// prefix, the last possibly torn: [`CrashMode::Prefix`]).
    pub fn crash(&mut self, id: NodeId) {
        self.crash_with(id, CrashMode::Prefix);
    }

    /// Stops a node with power loss of the given kind: [`CrashMode::Pages`] persists any
    /// subset of the pages its unsynced writes touched (holes before later pages).
    pub fn crash_with(&mut self, id: NodeId, mode: CrashMode) {
        self.nodes.get_mut(&id).expect("node").crash(mode);
        self.disk_faults_armed.remove(&id);
    }

    /// Makes `id`'s disk fail after `ops` more write operations, so that the node crashes in
    /// the middle of persisting (a torn or partial write, and nothing after it).
    /// The crash that follows treats the writes left unsynced as `mode` says.
    pub fn crash_mid_write(&mut self, id: NodeId, ops: u64, mode: CrashMode) {
        self.nodes[&id].store.disk.halt_after_ops(ops);
        self.disk_faults_armed.insert(id, mode);
    }

    /// Disarms every pending `crash_mid_write` (the liveness phase of a fuzz run): an armed
    /// node is restarted, which also clears its disk fault.
    pub fn disarm_disk_faults(&mut self) {
        for id in std::mem::take(&mut self.disk_faults_armed).into_keys() {
            self.restart(id);
        }
    }

    /// Restarts a node from its persisted state (crashing it first if it is up).
    pub fn restart(&mut self, id: NodeId) {
        self.crash(id);
        let gid = self.gid_of(id);
        self.checkers.get_mut(&gid).expect("checker").on_restart(id);
        self.start_node(id);
    }

    /// Panics with the seed and the replay command.
    pub fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\n  at virtual time {} ms, seed {}\n  replay: {}",
            self.now / 1000,
            self.cfg.seed,
            self.cfg.replay
        );
    }

    /// Runs the simulation for `ms` of virtual time. Client events pile up in the inbox
    /// (see `run_clients_until` for driving clients).
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + ms * 1000;
        while let Some((t, ev)) = self.queue.pop_until(end) {
            self.now = t;
            self.handle(ev);
        }
        self.now = end;
    }

    /// Runs until `done` holds (checked after every event) or `ms` pass. Returns whether
    /// `done` held.
    pub fn run_until(&mut self, ms: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + ms * 1000;
        if done(self) {
            return true;
        }
        while let Some((t, ev)) = self.queue.pop_until(end) {
            self.now = t;
            self.handle(ev);
            if done(self) {
                return true;
            }
        }
        self.now = end;
        false
    }

    /// Runs until a client event is waiting or virtual time `until` is reached; returns the
    /// waiting client events (empty at `until`).
    pub fn next_client_events(&mut self, until: Micros) -> Vec<ClientEvent<A::Response>> {
        while self.client_inbox.is_empty() {
            match self.queue.pop_until(until) {
                Some((t, ev)) => {
                    self.now = t;
                    self.handle(ev);
                }
                None => {
                    self.now = self.now.max(until);
                    break;
                }
            }
        }
        std::mem::take(&mut self.client_inbox)
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Tick { node, incarnation } => {
                let n = self.nodes.get_mut(&node).expect("node");
                if n.incarnation != incarnation || !n.is_up() {
                    return;
                }
                // The host drops the tick while the node is stalled; processing then
                // retries the stalled Ready (the disk may have space again).
                n.tick();
                let tick_us = match self.clock_permille.get(&node) {
                    Some(&p) => self.cfg.tick_us * 1000 / Micros::from(p.max(1)),
                    None => self.cfg.tick_us,
                };
                self.queue
                    .push(self.now + tick_us, Event::Tick { node, incarnation });
                self.process(node);
            }
            Event::Raft {
                from,
                to,
                incarnation,
                bytes,
                request,
            } => {
                if !self.deliverable(to, incarnation) || !self.net.connected(from, to) {
                    return;
                }
                if !request {
                    self.stats.reply_bytes += bytes.len() as u64;
                }
                self.trace = mix(self.trace, self.now ^ digest(&bytes));
                let env: Envelope = match postcard::from_bytes(&bytes) {
                    Ok(m) => m,
                    Err(e) => self.fail(&format!("undecodable message from {from}: {e}")),
                };
                if env.cluster != self.cfg.cluster_id || env.gid != self.gid_of(to) {
                    // Identity: never step another group's (or cluster's) message.
                    self.stats.misdirected += 1;
                    return;
                }
                self.nodes.get_mut(&to).expect("node").step(env.msg);
                self.process(to);
            }
            Event::Request {
                origin,
                req,
                to,
                incarnation,
                bytes,
            } => {
                if !self.deliverable(to, incarnation) || !self.reachable(origin, to) {
                    return;
                }
                self.trace = mix(self.trace, self.now ^ digest(&bytes));
                let r: A::Request = match postcard::from_bytes(&bytes) {
                    Ok(r) => r,
                    Err(e) => self.fail(&format!("undecodable request from {origin:?}: {e}")),
                };
                self.nodes
                    .get_mut(&to)
                    .expect("node")
                    .request(origin, req, r);
                self.process(to);
            }
            Event::Response {
                origin,
                req,
                from,
                bytes,
            } => {
                if !self.reachable(origin, from) {
                    return;
                }
                self.trace = mix(self.trace, self.now ^ digest(&bytes));
                let response: A::Response = match postcard::from_bytes(&bytes) {
                    Ok(r) => r,
                    Err(e) => self.fail(&format!("undecodable response from {from}: {e}")),
                };
                match origin {
                    Origin::Client(client) => self.client_inbox.push(ClientEvent::Response {
                        client,
                        client_req: req,
                        from,
                        response,
                    }),
                    Origin::Node { id, incarnation } => {
                        if self.deliverable(id, incarnation) {
                            self.nodes
                                .get_mut(&id)
                                .expect("node")
                                .answer(req, from, response);
                            self.process(id);
                        }
                    }
                }
            }
            Event::ClientTimer { client, token } => {
                self.client_inbox.push(ClientEvent::Timer { client, token })
            }
        }
    }

    fn deliverable(&self, to: NodeId, incarnation: u64) -> bool {
        let n = &self.nodes[&to];
        n.incarnation == incarnation && n.is_up()
    }

    /// True if `origin` and node `node` can talk both ways now: a client through its client
    /// links, a node through the node links (partitions cut traffic between groups too).
    fn reachable(&self, origin: Origin, node: NodeId) -> bool {
        match origin {
            Origin::Client(client) => !self.client_cut.contains(&(client, node)),
            Origin::Node { id, .. } => self.net.connected(id, node) && self.net.connected(node, id),
        }
    }

    /// Lets node `id` run its Ready loop and puts its messages, answers and outbound
    /// requests on the network.
    pub(crate) fn process(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node");
        let checker = self.checkers.get_mut(&node.gid).expect("checker");
        let out = node.process(checker);
        let conf_view = match node.app.as_ref().filter(|_| node.is_up()) {
            Some(app) => checker.on_conf(app.raft()),
            None => Ok(()),
        };
        if let Err(e) = conf_view {
            self.fail(&format!("group {}: {e}", self.gid_of(id)));
        }
        match out.fault {
            None => {}
            Some(Fault::Violation(e)) => self.fail(&format!("group {}: {e}", self.gid_of(id))),
            Some(Fault::Disk(_)) => {
                // The disk stopped mid-write: the node dies there. What the host sent before
                // (a leader's early-sent appends, the messages of Readys fully persisted
                // before) already left; nothing after the failed write does.
                for m in out.messages {
                    self.send(m);
                }
                if out.crashed_after_early_send {
                    self.crashes_after_early_send += 1;
                }
                let mode = self.disk_faults_armed.get(&id).copied();
                self.crash_with(id, mode.unwrap_or(CrashMode::Prefix));
                return;
            }
        }
        if out.became_leader {
            let term = node
                .app
                .as_ref()
                .map(|a| a.raft().term())
                .unwrap_or_default();
            self.elections.push((self.now, id, term));
        }
        for m in out.messages {
            self.send(m);
        }
        for (origin, req, resp) in out.responses {
            let bytes = postcard::to_allocvec(&resp).expect("encoding to memory cannot fail");
            let ev = || Event::Response {
                origin,
                req,
                from: id,
                bytes: bytes.clone(),
            };
            self.transmit(origin, id, false, ev);
        }
        let incarnation = self.nodes[&id].incarnation;
        for o in out.outbound {
            self.stats.outbound += 1;
            self.request(Origin::Node { id, incarnation }, o.token, o.to, &o.request);
        }
        if let Some(mut f) = self.faults.take() {
            f.after_process(self, id);
            self.faults = Some(f);
        }
    }

    /// Puts one client-style message between `origin` and node `node` on the network:
    /// dropped if their link is cut, else as the network decides (`make` builds the event
    /// for each delivery).
    fn transmit(&mut self, origin: Origin, node: NodeId, request: bool, make: impl Fn() -> Event) {
        if !self.reachable(origin, node) {
            return;
        }
        let Fate::Deliver(delays) = self.net.decide(&mut self.rng, request) else {
            return;
        };
        for d in delays {
            self.queue.push(self.now + d, make());
        }
    }

    fn send(&mut self, m: Message) {
        let env = Envelope {
            cluster: self.cfg.cluster_id,
            gid: self.gid_of(m.from),
            msg: m,
        };
        self.send_envelope(env);
    }

    /// Puts a Raft message on the wire as it is, whatever its cluster and group say: tests
    /// forge misaddressed messages with it (the receiver must drop them).
    pub fn send_envelope(&mut self, env: Envelope) {
        let m = &env.msg;
        let bytes = postcard::to_allocvec(&env).expect("encoding to memory cannot fail");
        let request = m.is_request();
        *self.stats.by_kind.entry(m.kind()).or_default() += 1;
        if request {
            self.stats.requests += 1;
            self.stats.request_bytes += bytes.len() as u64;
        } else {
            self.stats.replies += 1;
        }
        let (from, to) = (m.from, m.to);
        if !self.net.connected(from, to) {
            return;
        }
        let Fate::Deliver(delays) = self.net.decide(&mut self.rng, request) else {
            return;
        };
        let incarnation = self.nodes[&to].incarnation;
        for d in delays {
            let ev = Event::Raft {
                from,
                to,
                incarnation,
                bytes: bytes.clone(),
                request,
            };
            self.queue.push(self.now + d, ev);
        }
    }

    /// Sends request `req` of `origin` to node `to` over the simulated network.
    fn request(&mut self, origin: Origin, req: u64, to: NodeId, r: &A::Request) {
        let bytes = postcard::to_allocvec(r).expect("encoding to memory cannot fail");
        let incarnation = self.nodes[&to].incarnation;
        let ev = || Event::Request {
            origin,
            req,
            to,
            incarnation,
            bytes: bytes.clone(),
        };
        self.transmit(origin, to, true, ev);
    }

    /// Client `client` sends request `client_req` to node `to` over the simulated network.
    pub fn client_send(&mut self, client: u64, client_req: u64, to: NodeId, r: &A::Request) {
        self.request(Origin::Client(client), client_req, to, r);
    }

    /// Wakes client `client` with `token` after `ms`.
    pub fn client_timer(&mut self, client: u64, token: u64, ms: u64) {
        self.queue
            .push(self.now + ms * 1000, Event::ClientTimer { client, token });
    }

    /// Lets `client` reach only `servers` (both directions); the others are cut.
    pub fn client_reach(&mut self, client: u64, servers: &[NodeId]) {
        for id in self.ids() {
            if servers.contains(&id) {
                self.client_cut.remove(&(client, id));
            } else {
                self.client_cut.insert((client, id));
            }
        }
    }
}

/// Mixes a value into a running trace digest.
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(17)
}
