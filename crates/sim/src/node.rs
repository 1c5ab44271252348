//! One simulated Raft node: the core, its store, and the test state machine, with the
//! Ready cycle done exactly as the persistence contract says.

use crate::checker::Checker;
use crate::memstore::MemStore;
use crate::state_machine::TestStateMachine;
use shardkv_raft::{Config, Message, RawNode, ReadState, Role};
use shardkv_types::{LogIndex, NodeId, SnapshotMeta};

/// A node's live half (lost on crash) and durable half (kept).
#[derive(Debug)]
pub struct SimNode {
    pub id: NodeId,
    /// `None` while crashed.
    pub raft: Option<RawNode>,
    pub sm: TestStateMachine,
    pub store: MemStore,
    /// Bumped on every restart; events addressed to an older incarnation are dropped.
    pub incarnation: u64,
    /// Take a snapshot every this many applied entries.
    pub snapshot_every: Option<u64>,
    /// Read states answered to this incarnation, in order.
    pub reads: Vec<ReadState>,
}

impl SimNode {
    pub fn new(id: NodeId, snapshot_every: Option<u64>) -> SimNode {
        SimNode {
            id,
            raft: None,
            sm: TestStateMachine::default(),
            store: MemStore::default(),
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
        let restored = self.store.recover();
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
    }

    /// Drains every Ready: persist, collect messages, apply, advance. Returns the messages
    /// to send and whether the node became leader.
    pub fn process(&mut self, checker: &mut Checker) -> Result<(Vec<Message>, bool), String> {
        let mut out = Vec::new();
        let mut became_leader = false;
        let Some(raft) = self.raft.as_mut() else {
            return Ok((out, false));
        };
        while raft.has_ready() {
            let rd = raft.ready();
            // 1. persist
            if let Some(s) = &rd.snapshot {
                self.store.save_snapshot(s.meta, s.data.clone());
            }
            for e in &rd.entries {
                let prev_term = raft
                    .log()
                    .term(e.index.prev())
                    .ok_or_else(|| format!("{}: no term before {}", self.id, e.index))?;
                checker.on_persist(self.id, e, prev_term)?;
            }
            self.store.append(&rd.entries);
            if let Some(hs) = rd.hard_state {
                self.store.set_hard_state(hs);
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
                    self.store.save_snapshot(
                        SnapshotMeta {
                            index: applied,
                            term,
                        },
                        data.clone().into(),
                    );
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
