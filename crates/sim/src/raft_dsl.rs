//! The bare-Raft scenario DSL: propose opaque commands, count how many nodes applied an
//! index, the lab's `one` and `wait`. Every wait is in virtual time.

use crate::cluster::Cluster;
use crate::state_machine::digest;
use shardkv_raft::RawNode;
use shardkv_types::{LogIndex, NodeId, Term};

/// Proposes `cmd` to `raft` if it leads; returns (index, term). The caller processes the node.
pub(crate) fn propose(raft: &mut RawNode, cmd: &[u8]) -> Option<(LogIndex, Term)> {
    let index = raft.propose(cmd.to_vec()).ok()?;
    Some((index, raft.term()))
}

impl Cluster {
    /// The app of node `id` (a crashed node's shows its state at the crash).
    ///
    /// # Panics
    /// If the node never started.
    pub fn app(&self, id: NodeId) -> &crate::RaftApp {
        self.nodes[&id].app.as_ref().expect("node started")
    }

    /// Proposes `cmd` on `id` if it is up and believes it leads; returns (index, term).
    pub fn start(&mut self, id: NodeId, cmd: &[u8]) -> Option<(LogIndex, Term)> {
        let proposed = propose(&mut self.nodes.get_mut(&id)?.live()?.raft, cmd)?;
        self.process(id);
        Some(proposed)
    }

    /// How many nodes applied `index`, and the command digest they agree on.
    pub fn n_committed(&self, index: LogIndex) -> (usize, Option<u64>) {
        let mut count = 0;
        let mut value = None;
        for n in self.nodes.values() {
            if let Some(d) = n.app.as_ref().and_then(|a| a.applied_at(index)) {
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
                    .any(|x| x.is_up() && x.app.as_ref().is_some_and(|a| a.raft.term() > t))
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
            .live()?
            .raft
            .read_index(ctx)
            .is_ok();
        if !accepted {
            return Some(None);
        }
        self.process(id);
        let answered = |c: &Cluster| {
            c.nodes[&id]
                .app
                .as_ref()?
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
            .and_then(|n| n.live())
            .is_some_and(|a| a.raft.transfer_leader(to).is_ok());
        self.process(from);
        ok
    }
}
