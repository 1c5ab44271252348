//! One simulated node: an app over the Raft core, its disk, and the Ready cycle done exactly
//! as the persistence contract says, with the checker watching.

use crate::app::App;
use crate::checker::Checker;
use crate::cluster::ClusterConfig;
use crate::disk_store::DiskStore;
use shardkv_raft::{Config, Message, Role};
use shardkv_types::NodeId;
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

fn disk(e: shardkv_storage::StorageError) -> Fault {
    Fault::Disk(e.to_string())
}

/// What one round of processing produced.
#[derive(Debug)]
pub struct Output<R> {
    pub messages: Vec<Message>,
    pub became_leader: bool,
    /// (client, client's request id, response).
    pub responses: Vec<(u64, u64, R)>,
}

/// A node: the app (kept after a crash for inspection, like a dead process's memory, but
/// sent no events) and the durable half.
#[derive(Debug)]
pub struct SimNode<A> {
    pub id: NodeId,
    pub app: Option<A>,
    up: bool,
    pub store: DiskStore,
    /// Bumped on every restart; events addressed to an older incarnation are dropped.
    pub incarnation: u64,
    /// Client requests in progress at this incarnation: node request id -> (client, client's id).
    requests: BTreeMap<u64, (u64, u64)>,
    next_request: u64,
}

impl<A: App> SimNode<A> {
    pub fn new(id: NodeId, disk_seed: u64) -> SimNode<A> {
        SimNode {
            id,
            app: None,
            up: false,
            store: DiskStore::new(id, disk_seed),
            incarnation: 0,
            requests: BTreeMap::new(),
            next_request: 1,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The live app, if the node is up.
    pub fn live(&mut self) -> Option<&mut A> {
        if self.up { self.app.as_mut() } else { None }
    }

    /// Starts (or restarts) the node from its durable state.
    pub fn start(&mut self, cfg: Config, seed: u64, sim: &ClusterConfig) -> Result<(), String> {
        let restored = self
            .store
            .open(self.id)
            .map_err(|e| format!("{}: recovery failed: {e}", self.id))?;
        self.app = Some(A::start(cfg, restored, seed, sim)?);
        self.up = true;
        self.incarnation += 1;
        self.requests.clear();
        Ok(())
    }

    pub fn crash(&mut self) {
        self.up = false;
        self.store.crash();
    }

    /// Hands a client's request to the app.
    pub fn request(&mut self, client: u64, client_req: u64, r: A::Request) {
        let Some(app) = self.app.as_mut().filter(|_| self.up) else {
            return;
        };
        let id = self.next_request;
        self.next_request += 1;
        self.requests.insert(id, (client, client_req));
        app.request(id, r);
    }

    /// Drains every Ready: persist, collect messages, apply, persist any snapshot; then
    /// collects the responses to clients.
    pub fn process(&mut self, checker: &mut Checker) -> Result<Output<A::Response>, Fault> {
        let mut out = Output {
            messages: Vec::new(),
            became_leader: false,
            responses: Vec::new(),
        };
        let Some(app) = self.app.as_mut().filter(|_| self.up) else {
            return Ok(out);
        };
        while let Some(mut rd) = app.ready() {
            // 1. persist
            for e in &rd.entries {
                let prev_term = app
                    .raft()
                    .log()
                    .term(e.index.prev())
                    .ok_or_else(|| format!("{}: no term before {}", self.id, e.index))?;
                checker.on_persist(self.id, e, prev_term)?;
            }
            if rd.must_persist() {
                self.store
                    .persist(rd.snapshot.as_ref(), &rd.entries, rd.hard_state)
                    .map_err(disk)?;
            }
            // 2. send
            out.messages.append(&mut rd.messages);
            // 3. apply
            for e in &rd.committed_entries {
                checker.on_apply(self.id, e)?;
            }
            if rd.soft_state.is_some_and(|ss| ss.role == Role::Leader) {
                out.became_leader = true;
                checker.on_leader(self.id, app.raft().term(), app.raft().log())?;
            }
            let snapshot = app.advance(rd, self.store.raft_state_bytes() as u64)?;
            if let Some(s) = snapshot {
                self.store.save_snapshot(s.meta, &s.data).map_err(disk)?;
            }
            checker.on_status(&app.raft().status())?;
        }
        for (id, resp) in app.take_responses() {
            if let Some((client, client_req)) = self.requests.remove(&id) {
                out.responses.push((client, client_req, resp));
            }
        }
        Ok(out)
    }
}
