//! The scenario DSL: the verbs Raft scenario tests are written in. Every wait is in virtual
//! time; nothing here sleeps.

use crate::app::App;
use crate::cluster::Sim;
use shardkv_raft::Role;
use shardkv_types::{Gid, NodeId, Term};

impl<A: App> Sim<A> {
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
        let n = &self.nodes[&id];
        let app = n.app.as_ref().filter(|_| n.is_up())?;
        Some((app.raft().term(), app.raft().role() == Role::Leader))
    }

    /// The leader of the highest term among connected live nodes of the only group; panics
    /// if one term has two (see [`Sim::leader_of`] for a world's groups).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader_of(self.gid())
    }

    /// The leader of the highest term among connected live nodes of group `gid` (those it
    /// started with and those that joined); panics if one term has two.
    pub fn leader_of(&self, gid: Gid) -> Option<NodeId> {
        let mut by_term: std::collections::BTreeMap<Term, Vec<NodeId>> = Default::default();
        let nodes = self.nodes.values().filter(|n| n.gid == gid).map(|n| n.id);
        for id in nodes.filter(|id| self.connected.contains(id)) {
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

    /// The largest persisted Raft state (hard state + log) over all nodes, in bytes.
    pub fn raft_state_bytes_max(&self) -> usize {
        self.nodes
            .values()
            .map(|n| n.store.raft_state_bytes())
            .max()
            .unwrap_or(0)
    }
}
