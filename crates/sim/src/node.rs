//! One simulated node: an app hosted by the production Ready loop (`shardkv-host`) over a
//! simulated disk, with the checker watching through the host's observer hooks.

use crate::app::{App, Outbound};
use crate::checker::Checker;
use crate::config::ClusterConfig;
use crate::disk_store::DiskStore;
use crate::event::Origin;
use crate::group::GroupKind;
use shardkv_host::{Fatal, Host, HostEvent, HostOptions, Observer};
use shardkv_raft::{Anomaly, Config, Message, RawNode, Status};
use shardkv_storage::{CrashMode, SimDisk};
use shardkv_types::{Entry, Gid, NodeId, Term};
use std::collections::BTreeMap;

/// Why processing stopped: a safety violation fails the run; a disk fault crashes the node.
#[derive(Debug)]
pub enum Fault {
    Violation(String),
    Disk(String),
}

impl From<String> for Fault {
    fn from(s: String) -> Fault {
        Fault::Violation(s)
    }
}

/// What one round of processing produced.
#[derive(Debug)]
pub struct Output<Req, R> {
    /// Every message the host handed to the transport, including a leader's early-sent
    /// appends from a Ready whose persistence then failed: those left before the crash.
    pub messages: Vec<Message>,
    pub became_leader: bool,
    /// (who asked, its request id, response).
    pub responses: Vec<(Origin, u64, R)>,
    /// Requests the app sends to other groups' nodes.
    pub outbound: Vec<Outbound<Req>>,
    /// Set when processing stopped early; `messages` are still the ones sent before it.
    pub fault: Option<Fault>,
    /// The disk failed while persisting a Ready whose messages had already left: the node
    /// dies between "sent" and "synced".
    pub crashed_after_early_send: bool,
}

/// The simulator's observer: the checker, and whether the node became leader.
struct SimObserver<'a> {
    checker: &'a mut Checker,
    became_leader: bool,
    /// Events the host reported (stalls), kept for scenario tests.
    events: &'a mut Vec<HostEvent>,
}

impl Observer for SimObserver<'_> {
    fn on_persist(
        &mut self,
        id: NodeId,
        entry: &Entry,
        prev_term: Option<Term>,
    ) -> Result<(), String> {
        let prev_term = prev_term.ok_or_else(|| format!("{id}: no term before {}", entry.index))?;
        self.checker.on_persist(id, entry, prev_term)
    }

    fn on_apply(&mut self, id: NodeId, entry: &Entry) -> Result<(), String> {
        self.checker.on_apply(id, entry)
    }

    fn on_leader(&mut self, raft: &RawNode) -> Result<(), String> {
        self.became_leader = true;
        self.checker.on_leader(raft.id(), raft.term(), raft.log())
    }

    fn on_status(&mut self, status: &Status) -> Result<(), String> {
        self.checker.on_status(status)
    }

    fn on_event(&mut self, _id: NodeId, event: HostEvent) {
        self.events.push(event);
    }
}

/// A node: the app (kept after a crash for inspection, like a dead process's memory, but
/// sent no events), its host while up, and the durable half.
pub struct SimNode<A: App> {
    pub id: NodeId,
    /// The one group this node is a member of.
    pub gid: Gid,
    pub app: Option<A>,
    /// The Ready loop and the store; `Some` exactly while the node is up.
    host: Option<Host<A, SimDisk>>,
    pub store: DiskStore,
    /// Bumped on every restart; events addressed to an older incarnation are dropped.
    pub incarnation: u64,
    /// Requests in progress at this incarnation: node request id -> (who asked, its id).
    requests: BTreeMap<u64, (Origin, u64)>,
    next_request: u64,
    /// What the host reported (stalls, snapshots) over every incarnation, in order.
    pub events: Vec<HostEvent>,
    /// The Raft anomalies counted by earlier incarnations (see [`SimNode::anomaly_count`]).
    anomalies_before: BTreeMap<Anomaly, u64>,
}

impl<A: App + std::fmt::Debug> std::fmt::Debug for SimNode<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("id", &self.id)
            .field("up", &self.is_up())
            .field("stalled", &self.is_stalled())
            .field("app", &self.app)
            .field("store", &self.store)
            .finish()
    }
}

impl<A: App> SimNode<A> {
    pub fn new(id: NodeId, gid: Gid, disk_seed: u64) -> SimNode<A> {
        SimNode {
            id,
            gid,
            app: None,
            host: None,
            store: DiskStore::new(id, disk_seed),
            incarnation: 0,
            requests: BTreeMap::new(),
            next_request: 1,
            events: Vec::new(),
            anomalies_before: BTreeMap::new(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.host.is_some()
    }

    /// True while the node's disk is full and its Ready loop waits for space.
    pub fn is_stalled(&self) -> bool {
        self.host.as_ref().is_some_and(|h| h.is_stalled())
    }

    /// Sets whether the live node's free space is below its reserve (writes refused at a
    /// leader before they are proposed), as the server's disk check does.
    pub fn set_disk_low(&mut self, low: bool) {
        if let Some(h) = self.host.as_mut() {
            h.set_disk_low(low);
        }
    }

    /// The host of a live node.
    pub fn host(&self) -> Option<&Host<A, SimDisk>> {
        self.host.as_ref()
    }

    /// The live app, if the node is up and not frozen (a frozen node's Raft core has a
    /// Ready outstanding and must not be called).
    pub fn live(&mut self) -> Option<&mut A> {
        if self.is_up() && !self.host.as_ref().is_some_and(|h| h.is_frozen()) {
            self.app.as_mut()
        } else {
            None
        }
    }

    /// Starts (or restarts) the node from its durable state.
    pub fn start(
        &mut self,
        cfg: Config,
        seed: u64,
        sim: &ClusterConfig,
        kind: GroupKind,
    ) -> Result<(), String> {
        let (store, restored) = self
            .store
            .open(self.id)
            .map_err(|e| format!("{}: recovery failed: {e}", self.id))?;
        if let Some(old) = &self.app {
            for kind in Anomaly::ALL {
                *self.anomalies_before.entry(kind).or_default() += old.raft().anomaly_count(kind);
            }
        }
        self.app = Some(A::start(cfg, restored, seed, sim, kind)?);
        let opts = HostOptions {
            leader_rank: sim.leader_preference.then_some(self.gid.0),
            log_grows_with_state_up_to: sim.log_grows_with_state.then_some(u64::MAX),
            ..HostOptions::default()
        };
        self.host = Some(Host::new(self.id, store, opts));
        self.incarnation += 1;
        self.requests.clear();
        Ok(())
    }

    /// How many times this node's Raft core met `kind`, over every incarnation.
    pub fn anomaly_count(&self, kind: Anomaly) -> u64 {
        let now = self
            .app
            .as_ref()
            .map_or(0, |a| a.raft().anomaly_count(kind));
        self.anomalies_before.get(&kind).copied().unwrap_or(0) + now
    }

    /// Power loss: the host (with its store and any stalled Ready) is gone; the disk keeps
    /// what was synced, and of the rest what `mode` lets survive.
    pub fn crash(&mut self, mode: CrashMode) {
        self.host = None;
        self.store.crash(mode);
    }

    /// One tick of the node's clock (the host drops it while stalled).
    pub fn tick(&mut self) {
        if let (Some(host), Some(app)) = (self.host.as_mut(), self.app.as_mut()) {
            host.tick(app);
        }
    }

    /// A message from a peer (the host drops it while stalled).
    pub fn step(&mut self, m: Message) {
        if let (Some(host), Some(app)) = (self.host.as_mut(), self.app.as_mut()) {
            host.step(app, m);
        }
    }

    /// Hands a request (a client's, or another group's node's) to the host's refusal
    /// policy and then the app.
    pub fn request(&mut self, origin: Origin, origin_req: u64, r: A::Request) {
        let (Some(host), Some(app)) = (self.host.as_mut(), self.app.as_mut()) else {
            return;
        };
        let id = self.next_request;
        self.next_request += 1;
        self.requests.insert(id, (origin, origin_req));
        host.submit(app, id, r);
    }

    /// The answer to this node's outbound request `token` (dropped unless the node is up and
    /// not stalled).
    pub fn answer(&mut self, token: u64, from: NodeId, r: A::Response) {
        if let Some(app) = self.live() {
            app.on_answer(token, from, r);
        }
    }

    /// Runs the host's Ready loop (the production one) with the checker as observer, then
    /// collects the responses to clients. Messages the host sent before a disk fault stay
    /// in the output: they left before the crash.
    pub fn process(&mut self, checker: &mut Checker) -> Output<A::Request, A::Response> {
        let mut out = Output {
            messages: Vec::new(),
            became_leader: false,
            responses: Vec::new(),
            outbound: Vec::new(),
            fault: None,
            crashed_after_early_send: false,
        };
        let (Some(host), Some(app)) = (self.host.as_mut(), self.app.as_mut()) else {
            return out;
        };
        let mut observer = SimObserver {
            checker,
            became_leader: false,
            events: &mut self.events,
        };
        let fatal_after_early_send = host.counters().fatal_after_early_send;
        let driven = host.drive(app, &mut out.messages, &mut observer);
        out.crashed_after_early_send =
            host.counters().fatal_after_early_send > fatal_after_early_send;
        out.became_leader = observer.became_leader;
        let snapshot_bytes = Some(host.snapshot_bytes()).filter(|&b| b > 0);
        self.store
            .note_sizes(host.raft_state_bytes(), snapshot_bytes);
        if let Err(e) = driven {
            out.fault = Some(match e {
                // The disk stopped mid-write (`crash_mid_write`) or failed a sync: the node
                // dies here.
                Fatal::Storage { .. } => Fault::Disk(e.to_string()),
                Fatal::App { .. } | Fatal::Observer(_) => Fault::Violation(e.to_string()),
            });
            return out;
        }
        for (id, resp) in host.take_responses(app) {
            if let Some((origin, origin_req)) = self.requests.remove(&id) {
                out.responses.push((origin, origin_req, resp));
            }
        }
        out.outbound = app.take_outbound();
        out
    }
}
