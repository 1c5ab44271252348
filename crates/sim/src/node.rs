//! One simulated Raft node: the core, its store, and the test state machine, with the
//! Ready cycle done exactly as the persistence contract says.

use crate::checker::Checker;
use crate::disk_store::DiskStore;
use crate::state_machine::TestStateMachine;
use shardkv_raft::{Config, Message, RawNode, ReadState, Role};
use shardkv_types::{LogIndex, NodeId, SnapshotMeta};

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

impl From<&str> for Fault {
    fn from(s: &str) -> Fault {
        Fault::Violation(s.to_string())
    }
}

fn disk(e: shardkv_storage::StorageError) -> Fault {
    Fault::Disk(e.to_string())
}

/// A node's live half (lost on crash) and durable half (kept).
#[derive(Debug)]
pub struct SimNode {
    pub id: NodeId,
    /// `None` while crashed.
    pub raft: Option<RawNode>,
    pub sm: TestStateMachine,
    pub store: DiskStore,
    /// Bumped on every restart; events addressed to an older incarnation are dropped.
    pub incarnation: u64,
    /// Take a snapshot every this many applied entries.
    pub snapshot_every: Option<u64>,
    /// Read states answered to this incarnation, in order.
    pub reads: Vec<ReadState>,
}

impl SimNode {
    pub fn new(id: NodeId, snapshot_every: Option<u64>, disk_seed: u64) -> SimNode {
        SimNode {
            id,
            raft: None,
            sm: TestStateMachine::default(),
            store: DiskStore::new(id, disk_seed),
            incarnation: 0,
            snapshot_every,
            reads: Vec::new(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.raft.is_some()
    }

    /// Starts (or restarts) the node from its durable state, the state machine first
    /// restored from the snapshot so that later entries follow it.
    pub fn start(&mut self, cfg: Config, seed: u64) -> Result<(), String> {
        let restored = self
            .store
            .open(self.id)
            .map_err(|e| format!("{}: recovery failed: {e}", self.id))?;
        self.sm = match &restored.snapshot {
            Some(s) => TestStateMachine::restore(&s.data, s.meta.index)?,
            None => TestStateMachine::default(),
        };
        self.raft = Some(RawNode::new(cfg, restored, seed));
        self.incarnation += 1;
        self.reads.clear();
        Ok(())
    }

    pub fn crash(&mut self) {
        self.raft = None;
        self.store.crash();
    }

    /// Drains every Ready: persist, collect messages, apply, advance. Returns the messages
    /// to send and whether the node became leader.
    pub fn process(&mut self, checker: &mut Checker) -> Result<(Vec<Message>, bool), Fault> {
        let mut out = Vec::new();
        let mut became_leader = false;
        let Some(raft) = self.raft.as_mut() else {
            return Ok((out, false));
        };
        while raft.has_ready() {
            let rd = raft.ready();
            // 1. persist
            for e in &rd.entries {
                let prev_term = raft
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
            out.extend(rd.messages.iter().cloned());
            // 3. apply
            if let Some(s) = &rd.snapshot {
                self.sm = TestStateMachine::restore(&s.data, s.meta.index)?;
            }
            for e in &rd.committed_entries {
                checker.on_apply(self.id, e)?;
                self.sm
                    .apply(e)
                    .map_err(|err| format!("{}: {err}", self.id))?;
            }
            self.reads.extend(rd.read_states.iter().copied());
            if rd.soft_state.is_some_and(|ss| ss.role == Role::Leader) {
                became_leader = true;
                checker.on_leader(self.id, raft.term(), raft.log())?;
            }
            raft.advance(rd);
            checker.on_status(&raft.status())?;
            // The application's snapshot policy.
            if let Some(every) = self.snapshot_every {
                let applied = self.sm.applied;
                if applied.0 >= raft.log().snapshot_meta().index.0 + every {
                    let term = raft.log().term(applied).ok_or("applied index not in log")?;
                    let data = self.sm.snapshot();
                    let meta = SnapshotMeta {
                        index: applied,
                        term,
                    };
                    self.store.save_snapshot(meta, &data).map_err(disk)?;
                    raft.compact(applied, data);
                }
            }
        }
        Ok((out, became_leader))
    }

    /// The digest this node applied at `index`, if any.
    pub fn applied_at(&self, index: LogIndex) -> Option<u64> {
        self.sm.values.get(&index).copied()
    }
}
