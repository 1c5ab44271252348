//! A simulated Raft group: nodes, network, clock and checker under one seed, driven by a
//! discrete-event loop. Scenario helpers (the test DSL) live in `dsl.rs`.

use crate::checker::Checker;
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
    /// Each node snapshots every this many applied entries.
    pub snapshot_every: Option<u64>,
    /// Virtual time per Raft tick.
    pub tick_us: Micros,
    /// Adjusts each node's Raft configuration.
    pub raft: fn(&mut Config),
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
            tick_us: 10_000,
            raft: |_| {},
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

#[derive(Debug)]
enum Event {
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    Deliver {
        from: NodeId,
        to: NodeId,
        incarnation: u64,
        bytes: Vec<u8>,
        request: bool,
    },
}

/// A simulated Raft group.
pub struct Cluster {
    pub cfg: ClusterConfig,
    pub now: Micros,
    pub rng: Rng,
    pub net: Network,
    pub nodes: BTreeMap<NodeId, SimNode>,
    pub checker: Checker,
    pub stats: NetStats,
    /// Nodes the lab would call "connected" (not isolated by `disconnect`).
    pub connected: BTreeSet<NodeId>,
    /// (time, node, term) of every election won.
    pub elections: Vec<(Micros, NodeId, shardkv_types::Term)>,
    queue: EventQueue<Event>,
    /// Nodes whose disk will fail after a few more writes.
    disk_faults_armed: BTreeSet<NodeId>,
    /// A running digest of everything that happened: equal seeds give equal traces.
    pub trace: u64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cluster(seed {}, t={}ms)",
            self.cfg.seed,
            self.now / 1000
        )
    }
}

impl Cluster {
    /// Builds and starts every node.
    pub fn new(cfg: ClusterConfig) -> Cluster {
        let mut c = Cluster {
            now: 0,
            rng: Rng::new(cfg.seed),
            net: Network::new(cfg.net.clone()),
            nodes: BTreeMap::new(),
            checker: Checker::default(),
            stats: NetStats::default(),
            connected: BTreeSet::new(),
            elections: Vec::new(),
            queue: EventQueue::default(),
            disk_faults_armed: BTreeSet::new(),
            trace: 0,
            cfg,
        };
        for id in c.ids() {
            let disk_seed = c.rng.next_u64();
            c.nodes
                .insert(id, SimNode::new(id, c.cfg.snapshot_every, disk_seed));
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
        rc
    }

    fn start_node(&mut self, id: NodeId) {
        let rc = self.raft_config(id);
        let seed = self.rng.next_u64();
        let node = self.nodes.get_mut(&id).expect("node");
        if let Err(e) = node.start(rc, seed) {
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

    /// Runs the simulation for `ms` of virtual time.
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
    pub fn run_until(&mut self, ms: u64, mut done: impl FnMut(&Cluster) -> bool) -> bool {
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

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Tick { node, incarnation } => {
                let n = self.nodes.get_mut(&node).expect("node");
                if n.incarnation != incarnation {
                    return;
                }
                let Some(raft) = n.raft.as_mut() else { return };
                raft.tick();
                self.queue.push(
                    self.now + self.cfg.tick_us,
                    Event::Tick { node, incarnation },
                );
                self.process(node);
            }
            Event::Deliver {
                from,
                to,
                incarnation,
                bytes,
                request,
            } => {
                let n = self.nodes.get_mut(&to).expect("node");
                if n.incarnation != incarnation || !n.is_up() || !self.net.connected(from, to) {
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
                self.nodes
                    .get_mut(&to)
                    .and_then(|n| n.raft.as_mut())
                    .expect("up")
                    .step(msg);
                self.process(to);
            }
        }
    }

    /// Lets node `id` drain its Ready batches and puts its messages on the network.
    pub(crate) fn process(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node");
        let (msgs, became_leader) = match node.process(&mut self.checker) {
            Ok(x) => x,
            Err(Fault::Violation(e)) => self.fail(&e),
            Err(Fault::Disk(_)) => {
                // The disk stopped mid-write: the node dies there, before sending anything
                // that depended on the unfinished write.
                self.crash(id);
                return;
            }
        };
        if became_leader {
            let term = node.raft.as_ref().map(|r| r.term()).unwrap_or_default();
            self.elections.push((self.now, id, term));
        }
        for m in msgs {
            self.send(m);
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
            let ev = Event::Deliver {
                from: m.from,
                to: m.to,
                incarnation,
                bytes: bytes.clone(),
                request,
            };
            self.queue.push(self.now + d, ev);
        }
    }
}

/// Mixes a value into a running trace digest.
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(17)
}
