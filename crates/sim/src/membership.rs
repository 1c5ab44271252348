//! Membership changes in the simulator: a fresh node joins a group (a learner of the group's
//! first membership until its log says otherwise: a change entry carries the whole
//! membership, so the guess is corrected by the first one it receives), and the verb that
//! drives a change through whichever node leads.

use crate::app::App;
use crate::cluster::{Cluster, Sim};
use crate::node::SimNode;
use shardkv_raft::ProposeError;
use shardkv_types::{ConfChange, Gid, LogIndex, Membership, NodeId, Term};

/// How long `change_membership` keeps retrying, in virtual milliseconds.
const CHANGE_MS_MAX: u64 = 30_000;

impl<A: App> Sim<A> {
    /// Starts a new node `id` in group `gid` on an empty disk, connected to every node. It
    /// does nothing until a leader adds it (`ConfChange::add_learner`).
    ///
    /// # Panics
    /// If `id` is taken.
    pub fn join(&mut self, gid: Gid, id: NodeId) {
        assert!(!self.nodes.contains_key(&id), "{id} exists");
        let disk_seed = self.rng.next_u64();
        self.nodes.insert(id, SimNode::new(id, gid, disk_seed));
        self.connect(id);
        self.start_node(id);
    }

    /// The membership in force on node `id` (as of its crash if it is down).
    pub fn conf_of(&self, id: NodeId) -> Membership {
        self.nodes[&id]
            .app
            .as_ref()
            .expect("node started")
            .raft()
            .conf()
    }
}

impl Cluster {
    /// Proposes `cc` to whichever node leads, retrying while the leader is busy with another
    /// change, not ready, or the learner to promote is behind (and after a leader change),
    /// until a node committed it. Returns its index, or the core's refusal if the change
    /// does not apply (e.g. already done). Bounded by 30 s of virtual time.
    pub fn change_membership(&mut self, cc: &ConfChange) -> Result<LogIndex, ProposeError> {
        let deadline = self.now + CHANGE_MS_MAX * 1000;
        while self.now < deadline {
            let Some(l) = self.leader() else {
                self.run_for(50);
                continue;
            };
            let Some(app) = self.nodes.get_mut(&l).and_then(|n| n.live()) else {
                self.run_for(50);
                continue;
            };
            match app.raft.propose_conf_change(cc.clone()) {
                Ok(index) => {
                    let term = app.raft.term();
                    self.process(l);
                    if self.run_until(3_000, |c| c.committed_somewhere(index, term)) {
                        return Ok(index);
                    }
                }
                Err(e @ ProposeError::ConfChange(_)) => return Err(e),
                Err(_) => self.run_for(50),
            }
        }
        self.fail(&format!("membership change {cc:?} not done within 30 s"))
    }

    /// True if some live node committed the entry `index` of `term`.
    pub fn committed_somewhere(&self, index: LogIndex, term: Term) -> bool {
        self.nodes.values().any(|n| {
            n.is_up()
                && n.app.as_ref().is_some_and(|a| {
                    let log = a.raft.log();
                    log.committed() >= index && log.term(index) == Some(term)
                })
        })
    }
}

/// The most nodes the fuzz target adds to a group over a run.
const FUZZ_JOINS_MAX: u64 = 6;

/// The membership faults of the fuzz target: at each step, the change the cycle is at is
/// proposed on whichever node leads, without waiting for it (so changes meet crashes,
/// partitions and loss): add a fresh node as a learner, promote it, remove a random voter
/// (the leader included), and again.
#[derive(Debug)]
pub(crate) struct MembershipFaults {
    rng: shardkv_types::Rng,
    next_id: u64,
    joined: u64,
    /// The voter count to return to after each promotion.
    voters: usize,
    /// A node started but not yet seen in the leader's membership.
    pending_join: Option<NodeId>,
    /// Changes the core accepted.
    pub(crate) proposed: u64,
}

impl MembershipFaults {
    pub(crate) fn new(c: &Cluster, seed: u64) -> MembershipFaults {
        MembershipFaults {
            rng: shardkv_types::Rng::new(seed),
            next_id: c.ids().iter().map(|n| n.0).max().unwrap_or(0) + 1,
            joined: 0,
            voters: c.ids().len(),
            pending_join: None,
            proposed: 0,
        }
    }

    pub(crate) fn step(&mut self, c: &mut Cluster) {
        let Some(l) = c.leader() else { return };
        let conf = c.conf_of(l);
        if let Some(p) = self.pending_join
            && conf.contains(p)
        {
            self.pending_join = None;
        }
        let cc = if let Some(p) = self.pending_join {
            ConfChange::add_learner(p, "")
        } else if let Some(learner) = conf.learners().next() {
            ConfChange::promote(learner)
        } else if conf.voter_count() > self.voters {
            let voters: Vec<NodeId> = conf.voters().collect();
            ConfChange::remove(voters[self.rng.index(voters.len())])
        } else if self.joined < FUZZ_JOINS_MAX {
            let id = NodeId(self.next_id);
            self.next_id += 1;
            self.joined += 1;
            c.join(c.gid(), id);
            self.pending_join = Some(id);
            ConfChange::add_learner(id, "")
        } else {
            return;
        };
        let Some(app) = c.nodes.get_mut(&l).and_then(|n| n.live()) else {
            return;
        };
        if app.raft.propose_conf_change(cc).is_ok() {
            self.proposed += 1;
            c.process(l);
        }
    }
}
