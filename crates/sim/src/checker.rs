//! Raft's safety properties (Figure 3 of the paper), checked as the simulation runs.
//!
//! - Election safety: at most one leader per term.
//! - Log matching: two logs holding an entry with the same index and term hold the same
//!   command there and the same term before it (checked inductively on every persisted
//!   entry: same (index, term) => same digest and same previous term).
//! - Leader completeness: a new leader's log holds every entry committed before.
//! - State machine safety: no two nodes apply different commands at one index.
//! - Commit index monotonic per incarnation; applied <= committed.
//! - Membership: a leader is a voter of the membership in force on it; every node's
//!   membership is the one its log implies (its latest membership entry's, else its
//!   snapshot's), recomputed here independently whenever it may have changed; a snapshot
//!   point carries the same membership on every node and across restarts. Election
//!   safety above is per term across every membership.

use crate::state_machine::digest;
use shardkv_raft::{RaftLog, RawNode, Status};
use shardkv_types::{ConfEntry, Entry, EntryKind, LogIndex, Membership, NodeId, Term};
use std::collections::BTreeMap;

/// Accumulates what every node did and reports the first violation.
#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term) -> (digest, previous term) of every entry any node persisted.
    entries: BTreeMap<(LogIndex, Term), (u64, Term)>,
    /// index -> (term, digest) of every applied entry.
    applied: BTreeMap<LogIndex, (Term, u64)>,
    /// Per node: the last commit index seen in this incarnation.
    commits: BTreeMap<NodeId, LogIndex>,
    /// Per node: how far its membership was checked.
    conf_checked: BTreeMap<NodeId, ConfChecked>,
    /// The membership recorded with every snapshot point any node held: a snapshot
    /// restored from disk or received must bring the same one.
    snapshot_confs: BTreeMap<(LogIndex, Term), (Membership, NodeId)>,
}

/// A node's log as of its last membership check.
#[derive(Debug)]
struct ConfChecked {
    snapshot: LogIndex,
    last: LogIndex,
    last_term: Term,
    /// The latest membership entry up to `last` (index, membership), else the snapshot's.
    implied: (Option<LogIndex>, Membership),
}

fn entry_digest(e: &Entry) -> u64 {
    match e.kind {
        EntryKind::Normal => digest(&e.data),
        EntryKind::Noop => 0,
        // Told apart from a command with the same bytes.
        EntryKind::ConfChange => digest(&e.data).rotate_left(1),
    }
}

impl Checker {
    pub fn on_leader(&mut self, id: NodeId, term: Term, log: &RaftLog) -> Result<(), String> {
        if !log.conf().is_voter(id) {
            return Err(format!(
                "membership: {id} leads {term} but is no voter of {}",
                log.conf()
            ));
        }
        if let Some(prev) = self.leaders.insert(term, id)
            && prev != id
        {
            return Err(format!("election safety: {prev} and {id} both lead {term}"));
        }
        // Leader completeness over every applied (hence committed) index this log should hold.
        let from = log.snapshot_meta().index;
        for (&i, &(t, d)) in self.applied.range(from.next()..) {
            match log.entry(i) {
                Some(e) if e.term == t && entry_digest(e) == d => {}
                Some(e) => {
                    return Err(format!(
                        "leader completeness: new leader {id} of {term} has {}@{i}, committed was {t}@{i}",
                        e.term
                    ));
                }
                None => {
                    return Err(format!(
                        "leader completeness: new leader {id} of {term} lacks committed index {i}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// A node persisted `e`, whose predecessor in its log has term `prev_term`.
    pub fn on_persist(&mut self, id: NodeId, e: &Entry, prev_term: Term) -> Result<(), String> {
        let d = entry_digest(e);
        match self.entries.insert((e.index, e.term), (d, prev_term)) {
            Some((d0, p0)) if d0 != d || p0 != prev_term => Err(format!(
                "log matching: {id} persisted {}@{} with digest {d:x} after term {prev_term}, \
                 another node has digest {d0:x} after term {p0}",
                e.term, e.index
            )),
            _ => Ok(()),
        }
    }

    pub fn on_apply(&mut self, id: NodeId, e: &Entry) -> Result<(), String> {
        let d = entry_digest(e);
        match self.applied.insert(e.index, (e.term, d)) {
            Some((t0, d0)) if t0 != e.term || d0 != d => Err(format!(
                "state machine safety: {id} applied {}@{} ({d:x}), another node applied {t0}@{} ({d0:x})",
                e.term, e.index, e.index
            )),
            _ => Ok(()),
        }
    }

    /// Checks commit monotonicity and applied <= committed after a node processed an event.
    pub fn on_status(&mut self, s: &Status) -> Result<(), String> {
        if s.applied > s.commit {
            return Err(format!(
                "{}: applied {} > committed {}",
                s.id, s.applied, s.commit
            ));
        }
        let prev = self.commits.insert(s.id, s.commit).unwrap_or_default();
        if s.commit < prev {
            return Err(format!(
                "{}: commit index went back from {prev} to {}",
                s.id, s.commit
            ));
        }
        Ok(())
    }

    /// Checks that `raft`'s membership is the one its log implies. Incremental: only the
    /// entries appended since the last check are read, unless the log was cut or replaced.
    pub fn on_conf(&mut self, raft: &RawNode) -> Result<(), String> {
        let log = raft.log();
        let snap = log.snapshot_meta();
        if snap.index > LogIndex(0) {
            let (seen, first) = *self
                .snapshot_confs
                .entry((snap.index, snap.term))
                .or_insert((snap.conf, raft.id()));
            // A node that joined starts out assuming the group's voters and itself as a
            // learner; a snapshot it takes of entries from before the change that added it
            // lists it as a learner already. Only that difference is allowed: the voters
            // (what quorums are made of) must agree exactly.
            let holders = [raft.id(), first];
            let learners_but = |c: &Membership| -> Vec<NodeId> {
                c.learners().filter(|l| !holders.contains(l)).collect()
            };
            let same = seen.voters().eq(snap.conf.voters())
                && learners_but(&seen) == learners_but(&snap.conf);
            if !same {
                return Err(format!(
                    "membership: {} holds the snapshot at {} with {}, it was taken with {seen}",
                    raft.id(),
                    snap.index,
                    snap.conf
                ));
            }
        }
        let (last, last_term) = (log.last_index(), log.last_term());
        let base = match self.conf_checked.get(&raft.id()) {
            Some(c) if c.snapshot == snap.index && log.term(c.last) == Some(c.last_term) => {
                if c.last == last {
                    return Ok(());
                }
                (c.last, c.implied)
            }
            // First look, a new snapshot, or the checked tail was cut: from the snapshot.
            _ => (snap.index, (None, snap.conf)),
        };
        let (mut i, mut implied) = base;
        while i < last {
            i = i.next();
            let e = log.entry(i).expect("held");
            if e.kind == EntryKind::ConfChange
                && let Ok(c) = ConfEntry::decode(&e.data)
            {
                implied = (Some(i), c.next);
            }
        }
        self.conf_checked.insert(
            raft.id(),
            ConfChecked {
                snapshot: snap.index,
                last,
                last_term,
                implied,
            },
        );
        if (log.conf_index(), raft.conf()) != implied {
            return Err(format!(
                "membership: {} uses {} (change at {:?}), its log implies {} (change at {:?})",
                raft.id(),
                raft.conf(),
                log.conf_index(),
                implied.1,
                implied.0
            ));
        }
        Ok(())
    }

    /// A node restarted: its in-memory commit index may restart lower.
    pub fn on_restart(&mut self, id: NodeId) {
        self.commits.remove(&id);
        self.conf_checked.remove(&id);
    }

    /// The highest applied index any node reached.
    pub fn max_applied(&self) -> LogIndex {
        self.applied.keys().next_back().copied().unwrap_or_default()
    }

    /// The (term, digest) applied at `index`, if any node applied it.
    pub fn applied_at(&self, index: LogIndex) -> Option<(Term, u64)> {
        self.applied.get(&index).copied()
    }

    /// The indexes at which a command with digest `d` was applied.
    pub fn indexes_of(&self, d: u64) -> Vec<LogIndex> {
        self.applied
            .iter()
            .filter(|(_, (_, x))| *x == d)
            .map(|(i, _)| *i)
            .collect()
    }
}
