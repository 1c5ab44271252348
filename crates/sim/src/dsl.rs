//! The scenario DSL: the verbs Raft scenario tests are written in. Every wait is in virtual
//! time; nothing here sleeps.

use crate::cluster::Cluster;
use crate::state_machine::digest;
use shardkv_raft::Role;
use shardkv_types::{LogIndex, NodeId, Term};

impl Cluster {
    /// Cuts `id` off from every other node, both ways.
    pub fn disconnect(&mut self, id: NodeId) {
        self.connected.remove(&id);
        for other in self.ids() {
            self.net.set_link(id, other, false);
            self.net.set_link(other, id, false);
        }
    }

    /// Reconnects `id` to every connected node.
    pub fn connect(&mut self, id: NodeId) {
        self.connected.insert(id);
        for other in self.connected.clone() {
            self.net.set_link(id, other, true);
            self.net.set_link(other, id, true);
        }
    }

    /// Connects every node to every other.
    pub fn connect_all(&mut self) {
        self.net.heal();
        self.connected = self.ids().into_iter().collect();
    }

    /// Splits the group: nodes talk only within their own part.
    pub fn partition(&mut self, parts: &[&[NodeId]]) {
        self.net.heal();
        for a in self.ids() {
            for b in self.ids() {
                let same = parts.iter().any(|p| p.contains(&a) && p.contains(&b));
                self.net.set_link(a, b, same);
            }
        }
    }

    /// Cuts only the direction `from -> to`.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.net.set_link(from, to, false);
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes[&id].is_up()
    }

    /// (term, is_leader) of a live node.
    pub fn state(&self, id: NodeId) -> Option<(Term, bool)> {
        self.nodes[&id]
            .raft
            .as_ref()
            .map(|r| (r.term(), r.role() == Role::Leader))
    }

    /// The leader of the highest term among connected live nodes; panics if one term has two.
    pub fn leader(&self) -> Option<NodeId> {
        let mut by_term: std::collections::BTreeMap<Term, Vec<NodeId>> = Default::default();
        for &id in &self.connected {
            if let Some((t, true)) = self.state(id) {
                by_term.entry(t).or_default().push(id);
            }
        }
        if let Some((t, ls)) = by_term.iter().find(|(_, ls)| ls.len() > 1) {
            self.fail(&format!("term {t} has {} leaders: {ls:?}", ls.len()));
        }
        by_term.values().next_back().map(|ls| ls[0])
    }

    /// Like the lab's checkOneLeader: up to 10 rounds of ~0.5 s for a leader to emerge.
    pub fn check_one_leader(&mut self) -> NodeId {
        for _ in 0..10 {
            let ms = self.rng.range(450, 550);
            self.run_for(ms);
            if let Some(l) = self.leader() {
                return l;
            }
        }
        self.fail("expected one leader, got none")
    }

    /// Every connected live node agrees on the term; returns it.
    pub fn check_terms(&self) -> Term {
        let terms: Vec<Term> = self
            .connected
            .iter()
            .filter_map(|&id| self.state(id).map(|s| s.0))
            .collect();
        if terms.windows(2).any(|w| w[0] != w[1]) {
            self.fail(&format!("servers disagree on term: {terms:?}"));
        }
        terms.first().copied().unwrap_or_default()
    }

    /// No connected live node believes it leads.
    pub fn check_no_leader(&self) {
        for &id in &self.connected {
            if let Some((t, true)) = self.state(id) {
                self.fail(&format!(
                    "expected no leader among connected servers, but {id} leads {t}"
                ));
            }
        }
    }

    /// Proposes `cmd` on `id` if it is up and believes it leads; returns (index, term).
    pub fn start(&mut self, id: NodeId, cmd: &[u8]) -> Option<(LogIndex, Term)> {
        let raft = self.nodes.get_mut(&id)?.raft.as_mut()?;
        let index = raft.propose(cmd.to_vec()).ok()?;
        let term = raft.term();
        self.process(id);
        Some((index, term))
    }

    /// How many nodes applied `index`, and the command digest they agree on.
    pub fn n_committed(&self, index: LogIndex) -> (usize, Option<u64>) {
        let mut count = 0;
        let mut value = None;
        for n in self.nodes.values() {
            if let Some(d) = n.applied_at(index) {
                if value.is_some_and(|v| v != d) {
                    self.fail(&format!("committed values differ at {index}"));
                }
                value = Some(d);
                count += 1;
            }
        }
        (count, value)
    }

    /// Like the lab's `one`: submits `cmd` to a leader and waits until `expected` nodes applied
    /// it. With `retry`, re-submits for up to 10 s if a leader fails. Returns the index.
    pub fn one(&mut self, cmd: &[u8], expected: usize, retry: bool) -> LogIndex {
        let want = digest(cmd);
        let deadline = self.now + 10_000_000;
        let mut start_at = 0usize;
        while self.now < deadline {
            let ids: Vec<NodeId> = self.connected.iter().copied().collect();
            let mut index = None;
            for k in 0..ids.len() {
                let id = ids[(start_at + k) % ids.len()];
                if let Some((i, _)) = self.start(id, cmd) {
                    index = Some(i);
                    start_at = (start_at + k + 1) % ids.len().max(1);
                    break;
                }
            }
            if let Some(index) = index {
                let ok = self.run_until(2_000, |c| {
                    let (n, d) = c.n_committed(index);
                    n >= expected && d == Some(want)
                });
                if ok {
                    return index;
                }
                if !retry {
                    self.fail(&format!(
                        "one({} bytes) failed to reach agreement on {index}",
                        cmd.len()
                    ));
                }
            } else {
                self.run_for(50);
            }
        }
        self.fail(&format!(
            "one({} bytes) failed to reach agreement within 10 s",
            cmd.len()
        ))
    }

    /// Waits (up to ~30 s, like the lab) until at least `n` nodes applied `index`; returns
    /// `None` early if some node's term passed `start_term`.
    pub fn wait(&mut self, index: LogIndex, n: usize, start_term: Option<Term>) -> Option<u64> {
        let mut pause = 10;
        for _ in 0..30 {
            let (count, d) = self.n_committed(index);
            if count >= n {
                return d;
            }
            self.run_for(pause);
            if pause < 1000 {
                pause *= 2;
            }
            let term_moved = |t: Term| {
                self.nodes
                    .values()
                    .any(|x| x.raft.as_ref().is_some_and(|r| r.term() > t))
            };
            if start_term.is_some_and(term_moved) {
                return None;
            }
        }
        self.fail(&format!(
            "only {} decided for index {index}; wanted {n}",
            self.n_committed(index).0
        ))
    }

    /// The largest persisted Raft state (hard state + log) over all nodes, in bytes.
    pub fn raft_state_bytes_max(&self) -> usize {
        self.nodes
            .values()
            .map(|n| n.store.raft_state_bytes())
            .max()
            .unwrap_or(0)
    }

    /// A command that encodes `v`, for scenarios that need many distinct commands.
    pub fn cmd(v: u64) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }
}

impl Cluster {
    /// Asks `id` for a ReadIndex read point and waits up to `ms` for the answer:
    /// `Some(Some(index))` confirmed, `Some(None)` refused or dropped, `None` no answer yet.
    pub fn read_index(&mut self, id: NodeId, ctx: u64, ms: u64) -> Option<Option<LogIndex>> {
        let accepted = self
            .nodes
            .get_mut(&id)?
            .raft
            .as_mut()?
            .read_index(ctx)
            .is_ok();
        if !accepted {
            return Some(None);
        }
        self.process(id);
        let answered = |c: &Cluster| {
            c.nodes[&id]
                .reads
                .iter()
                .find(|r| r.ctx == ctx)
                .map(|r| r.index)
        };
        self.run_until(ms, |c| answered(c).is_some());
        answered(self)
    }

    /// Hands leadership from the current leader `from` to `to`.
    pub fn transfer_leader(&mut self, from: NodeId, to: NodeId) -> bool {
        let ok = self
            .nodes
            .get_mut(&from)
            .and_then(|n| n.raft.as_mut())
            .is_some_and(|r| r.transfer_leader(to).is_ok());
        self.process(from);
        ok
    }
}
