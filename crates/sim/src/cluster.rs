//! A simulated Raft group: nodes running an [`App`], simulated clients, the network, the
//! clock and the checker under one seed, driven by a discrete-event loop. Scenario helpers
//! (the test DSL) live in `dsl.rs` (any app), `raft_dsl.rs` (bare Raft) and `kv.rs`.

use crate::app::{App, RaftApp};
use crate::checker::Checker;
use crate::faults::{FaultSchedule, RaftTweak};
use crate::net::{Fate, NetConfig, Network};
use crate::node::{Fault, SimNode};
use crate::queue::{EventQueue, Micros};
use crate::state_machine::digest;
use shardkv_raft::{Config, Message};
use shardkv_types::{NodeId, Rng};
use std::collections::{BTreeMap, BTreeSet};

/// How to build a simulated group.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nodes: usize,
    pub seed: u64,
    pub net: NetConfig,
    /// Bare Raft ([`RaftApp`]): each node snapshots every this many applied entries.
    pub snapshot_every: Option<u64>,
    /// Services: snapshot when the persisted Raft state exceeds this many bytes.
    pub max_raft_state: Option<u64>,
    /// The cluster's shard count (a power of two, at most 16384), fixed at creation.
    pub shards: u32,
    /// Virtual time per Raft tick.
    pub tick_us: Micros,
    /// Adjusts each node's Raft configuration.
    pub raft: fn(&mut Config),
    /// Applied after `raft`: the fuzzers' per-seed (swarm) overrides.
    pub tweak: RaftTweak,
    /// Printed on failure: the command that replays this run.
    pub replay: String,
}

impl ClusterConfig {
    pub fn new(nodes: usize, seed: u64) -> ClusterConfig {
        ClusterConfig {
            nodes,
            seed,
            net: NetConfig::reliable(),
            snapshot_every: None,
            max_raft_state: None,
            shards: shardkv_types::SHARDS_DEFAULT,
            tick_us: 10_000,
            raft: |_| {},
            tweak: RaftTweak::default(),
            replay: format!("SHARDKV_SEED={seed} cargo test -p shardkv-sim"),
        }
    }

    /// The configuration of a named scenario test: seed from `SHARDKV_SEED` or
    /// `default_seed`, and a replay command that reruns exactly this test.
    pub fn scenario(nodes: usize, test_file: &str, name: &str, default_seed: u64) -> ClusterConfig {
        let seed = crate::seed_or(default_seed);
        let mut cfg = ClusterConfig::new(nodes, seed);
        cfg.replay = format!(
            "SHARDKV_SEED={seed} cargo test -p shardkv-sim --test {test_file} -- {name} --exact"
        );
        cfg
    }
}

/// Message and byte counts, as the lab testers count them: every request sent counts, even
/// if it is later lost; reply bytes count when delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages sent, by kind (see `Message::kind`).
    pub by_kind: BTreeMap<&'static str, u64>,
    pub requests: u64,
    pub request_bytes: u64,
    pub replies: u64,
    pub reply_bytes: u64,
}

impl NetStats {
    pub fn bytes(&self) -> u64 {
        self.request_bytes + self.reply_bytes
    }
}

/// An event in the simulation's queue.
#[derive(Debug)]
enum Event {
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    Raft {
        from: NodeId,
        to: NodeId,
        incarnation: u64,
        bytes: Vec<u8>,
        request: bool,
    },
    ClientRequest {
        client: u64,
        client_req: u64,
        to: NodeId,
        incarnation: u64,
        bytes: Vec<u8>,
    },
    ClientResponse {
        client: u64,
        client_req: u64,
        from: NodeId,
        bytes: Vec<u8>,
    },
    ClientTimer {
        client: u64,
        token: u64,
    },
}

/// Something that happened to a simulated client, for its driver to handle.
#[derive(Debug)]
pub enum ClientEvent<R> {
    Response {
        client: u64,
        client_req: u64,
        from: NodeId,
        response: R,
    },
    Timer {
        client: u64,
        token: u64,
    },
}

/// A simulated group of nodes running `A`.
pub struct Sim<A: App> {
    pub cfg: ClusterConfig,
    pub now: Micros,
    pub rng: Rng,
    pub net: Network,
    pub nodes: BTreeMap<NodeId, SimNode<A>>,
    pub checker: Checker,
    pub stats: NetStats,
    /// Nodes the lab would call "connected" (not isolated by `disconnect`).
    pub connected: BTreeSet<NodeId>,
    /// (time, node, term) of every election won.
    pub elections: Vec<(Micros, NodeId, shardkv_types::Term)>,
    queue: EventQueue<Event>,
    /// Client events waiting for the client driver.
    client_inbox: Vec<ClientEvent<A::Response>>,
    /// Client-to-node links that are cut (both directions).
    client_cut: BTreeSet<(u64, NodeId)>,
    /// Nodes whose disk will fail after a few more writes.
    disk_faults_armed: BTreeSet<NodeId>,
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
    /// Builds and starts every node.
    pub fn new(cfg: ClusterConfig) -> Sim<A> {
        let mut c = Sim {
            now: 0,
            rng: Rng::new(cfg.seed),
            net: Network::new(cfg.net.clone()),
            nodes: BTreeMap::new(),
            checker: Checker::default(),
            stats: NetStats::default(),
            connected: BTreeSet::new(),
            elections: Vec::new(),
            queue: EventQueue::default(),
            client_inbox: Vec::new(),
            client_cut: BTreeSet::new(),
            disk_faults_armed: BTreeSet::new(),
            trace: 0,
            crashes_after_early_send: 0,
            clock_permille: BTreeMap::new(),
            faults: None,
            cfg,
        };
        for id in c.ids() {
            let disk_seed = c.rng.next_u64();
            c.nodes.insert(id, SimNode::new(id, disk_seed));
            c.connected.insert(id);
            c.start_node(id);
        }
        c
    }

    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.cfg.nodes as u64).map(NodeId).collect()
    }

    fn raft_config(&self, id: NodeId) -> Config {
        let mut rc = Config::new(id, self.ids());
        (self.cfg.raft)(&mut rc);
        self.cfg.tweak.apply(&mut rc);
        rc
    }

    fn start_node(&mut self, id: NodeId) {
        let rc = self.raft_config(id);
        let seed = self.rng.next_u64();
        let node = self.nodes.get_mut(&id).expect("node");
        if let Err(e) = node.start(rc, seed, &self.cfg) {
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

    /// Stops a node: it loses everything it did not persist.
    pub fn crash(&mut self, id: NodeId) {
        self.nodes.get_mut(&id).expect("node").crash();
        self.disk_faults_armed.remove(&id);
    }

    /// Makes `id`'s disk fail after `ops` more write operations, so that the node crashes in
    /// the middle of persisting (a torn or partial write, and nothing after it).
    pub fn crash_mid_write(&mut self, id: NodeId, ops: u64) {
        self.nodes[&id].store.disk.halt_after_ops(ops);
        self.disk_faults_armed.insert(id);
    }

    /// Disarms every pending `crash_mid_write` (the liveness phase of a fuzz run): an armed
    /// node is restarted, which also clears its disk fault.
    pub fn disarm_disk_faults(&mut self) {
        for id in std::mem::take(&mut self.disk_faults_armed) {
            self.restart(id);
        }
    }

    /// Restarts a node from its persisted state (crashing it first if it is up).
    pub fn restart(&mut self, id: NodeId) {
        self.crash(id);
        self.checker.on_restart(id);
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
                let msg: Message = match postcard::from_bytes(&bytes) {
                    Ok(m) => m,
                    Err(e) => self.fail(&format!("undecodable message from {from}: {e}")),
                };
                self.nodes.get_mut(&to).expect("node").step(msg);
                self.process(to);
            }
            Event::ClientRequest {
                client,
                client_req,
                to,
                incarnation,
                bytes,
            } => {
                if !self.deliverable(to, incarnation) || self.client_cut.contains(&(client, to)) {
                    return;
                }
                self.trace = mix(self.trace, self.now ^ digest(&bytes));
                let r: A::Request = match postcard::from_bytes(&bytes) {
                    Ok(r) => r,
                    Err(e) => self.fail(&format!("undecodable request from client {client}: {e}")),
                };
                self.nodes
                    .get_mut(&to)
                    .expect("node")
                    .request(client, client_req, r);
                self.process(to);
            }
            Event::ClientResponse {
                client,
                client_req,
                from,
                bytes,
            } => {
                if self.client_cut.contains(&(client, from)) {
                    return;
                }
                self.trace = mix(self.trace, self.now ^ digest(&bytes));
                match postcard::from_bytes(&bytes) {
                    Ok(response) => self.client_inbox.push(ClientEvent::Response {
                        client,
                        client_req,
                        from,
                        response,
                    }),
                    Err(e) => self.fail(&format!("undecodable response from {from}: {e}")),
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

    /// Lets node `id` run its Ready loop and puts its messages on the network.
    pub(crate) fn process(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node");
        let out = node.process(&mut self.checker);
        match out.fault {
            None => {}
            Some(Fault::Violation(e)) => self.fail(&e),
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
                self.crash(id);
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
        for (client, client_req, resp) in out.responses {
            let bytes = postcard::to_allocvec(&resp).expect("encoding to memory cannot fail");
            if self.client_cut.contains(&(client, id)) {
                continue;
            }
            let Fate::Deliver(delays) = self.net.decide(&mut self.rng, false) else {
                continue;
            };
            for d in delays {
                let ev = Event::ClientResponse {
                    client,
                    client_req,
                    from: id,
                    bytes: bytes.clone(),
                };
                self.queue.push(self.now + d, ev);
            }
        }
        if let Some(mut f) = self.faults.take() {
            f.after_process(self, id);
            self.faults = Some(f);
        }
    }

    fn send(&mut self, m: Message) {
        let bytes = postcard::to_allocvec(&m).expect("encoding to memory cannot fail");
        let request = m.is_request();
        *self.stats.by_kind.entry(m.kind()).or_default() += 1;
        if request {
            self.stats.requests += 1;
            self.stats.request_bytes += bytes.len() as u64;
        } else {
            self.stats.replies += 1;
        }
        if !self.net.connected(m.from, m.to) {
            return;
        }
        let Fate::Deliver(delays) = self.net.decide(&mut self.rng, request) else {
            return;
        };
        let incarnation = self.nodes[&m.to].incarnation;
        for d in delays {
            let ev = Event::Raft {
                from: m.from,
                to: m.to,
                incarnation,
                bytes: bytes.clone(),
                request,
            };
            self.queue.push(self.now + d, ev);
        }
    }

    /// Client `client` sends request `client_req` to node `to` over the simulated network.
    pub fn client_send(&mut self, client: u64, client_req: u64, to: NodeId, r: &A::Request) {
        let bytes = postcard::to_allocvec(r).expect("encoding to memory cannot fail");
        if self.client_cut.contains(&(client, to)) {
            return;
        }
        let Fate::Deliver(delays) = self.net.decide(&mut self.rng, true) else {
            return;
        };
        let incarnation = self.nodes[&to].incarnation;
        for d in delays {
            let ev = Event::ClientRequest {
                client,
                client_req,
                to,
                incarnation,
                bytes: bytes.clone(),
            };
            self.queue.push(self.now + d, ev);
        }
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
