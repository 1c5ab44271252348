//! The in-memory Raft log: a snapshot point followed by contiguous entries, with the commit,
//! apply and persistence marks, and the group membership each membership change in it
//! implies.

use shardkv_types::{ConfEntry, Entry, EntryKind, LogIndex, Membership, SnapshotMeta, Term};

/// The log of one node.
///
/// Invariants:
/// - `entries[i].index == snapshot.index + 1 + i`, terms non-decreasing;
/// - `snapshot.index <= applied <= committed <= last_index()`;
/// - `stable <= last_index()`: entries up to `stable` were handed to storage;
/// - `confs` holds one item per valid `ConfChange` entry in `entries`, in index order, each
///   the membership after it; the membership before the first is `snapshot.conf`.
#[derive(Debug)]
pub struct RaftLog {
    snapshot: SnapshotMeta,
    entries: Vec<Entry>,
    /// (index of a membership change entry held, the membership after it).
    confs: Vec<(LogIndex, Membership)>,
    committed: LogIndex,
    applied: LogIndex,
    /// Entries with index <= stable have been handed out for persistence.
    stable: LogIndex,
}

impl RaftLog {
    /// A log restored from storage: `entries` follow `snapshot` contiguously; everything
    /// restored is already stable. `committed` is clamped into the valid range.
    ///
    /// # Panics
    /// If `entries` are not contiguous after `snapshot`.
    pub fn restore(snapshot: SnapshotMeta, entries: Vec<Entry>, committed: LogIndex) -> RaftLog {
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index.0,
                snapshot.index.0 + 1 + i as u64,
                "restored entries not contiguous"
            );
        }
        let mut log = RaftLog {
            snapshot,
            entries: Vec::new(),
            confs: Vec::new(),
            committed: snapshot.index,
            applied: snapshot.index,
            stable: snapshot.index,
        };
        log.extend(entries);
        log.stable = log.last_index();
        log.committed = committed.clamp(snapshot.index, log.last_index());
        log
    }

    pub fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot
    }

    /// The membership this log implies: that of its latest membership change, committed or
    /// not (Raft thesis §4.1), else the snapshot's.
    pub fn conf(&self) -> Membership {
        self.confs.last().map_or(self.snapshot.conf, |&(_, c)| c)
    }

    /// The index of the latest membership change held as an entry (`None` if the log holds
    /// none after its snapshot).
    pub fn conf_index(&self) -> Option<LogIndex> {
        self.confs.last().map(|&(i, _)| i)
    }

    /// The membership as of `index` (the latest change at or before it).
    ///
    /// # Panics
    /// If `index` is before the snapshot (that history is gone).
    pub fn conf_at(&self, index: LogIndex) -> Membership {
        assert!(
            index >= self.snapshot.index,
            "conf at {index} before the snapshot"
        );
        self.confs
            .iter()
            .rev()
            .find(|&&(i, _)| i <= index)
            .map_or(self.snapshot.conf, |&(_, c)| c)
    }

    /// Appends `entries` (contiguous after the last) and follows their membership changes:
    /// each carries the whole membership it leads to. One that does not decode changes
    /// nothing, on every node alike.
    fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            if e.kind == EntryKind::ConfChange
                && let Ok(conf) = ConfEntry::decode(&e.data)
            {
                self.confs.push((e.index, conf.next));
            }
            self.entries.push(e);
        }
    }
    /// The first index still held as an entry.
    pub fn first_index(&self) -> LogIndex {
        self.snapshot.index.next()
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.index.0 + self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    pub fn committed(&self) -> LogIndex {
        self.committed
    }

    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    pub fn stable(&self) -> LogIndex {
        self.stable
    }

    /// The term of the entry at `index`, if this log knows it (the snapshot point counts).
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries
            .get((index.0 - self.snapshot.index.0 - 1) as usize)
    }

    /// True if the log holds an entry at `index` with `term`.
    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Raft §5.4.1: a candidate's log is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries from `lo` on, at most `count_max` of them and about `bytes_max` bytes (at least
    /// one if any exist).
    ///
    /// # Panics
    /// If `lo` is compacted away.
    pub fn slice(&self, lo: LogIndex, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        assert!(lo >= self.first_index(), "slice from compacted index {lo}");
        let start = (lo.0 - self.first_index().0) as usize;
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.entries.iter().skip(start).take(count_max) {
            if !out.is_empty() && bytes + e.size_bytes() > bytes_max {
                break;
            }
            bytes += e.size_bytes();
            out.push(e.clone());
        }
        out
    }

    /// Appends an entry a leader created.
    pub fn append_new(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index().next(),
            "leader append out of order"
        );
        assert!(entry.term >= self.last_term(), "term went backwards");
        self.extend([entry]);
    }

    /// The follower side of AppendEntries (Raft Figure 2, receiver steps 2–4): if our log
    /// matches at `prev`, deletes conflicting entries and appends the new ones. Returns the
    /// index of the last entry now known to match the leader's, or `None` on mismatch.
    pub fn maybe_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
    ) -> Option<LogIndex> {
        if prev_index < self.snapshot.index {
            // The prefix is compacted and therefore committed; skip what we already hold.
            let skip = (self.snapshot.index.0 - prev_index.0) as usize;
            if entries.len() <= skip {
                // Only what the leader sent is acknowledged: it refuses an acknowledgement
                // of more, even of entries our snapshot covers.
                return Some(LogIndex(prev_index.0 + entries.len() as u64));
            }
            let rest: Vec<Entry> = entries.into_iter().skip(skip).collect();
            let snap = self.snapshot;
            return self.maybe_append(snap.index, snap.term, rest);
        }
        if !self.matches(prev_index, prev_term) {
            return None;
        }
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        // The first entry we do not already hold with the same term.
        let Some(first_new) = entries
            .iter()
            .position(|e| self.term(e.index) != Some(e.term))
        else {
            return Some(last_new);
        };
        let at = entries[first_new].index;
        if at <= self.committed {
            // Only a faulty leader asks to overwrite a committed entry: refuse.
            return None;
        }
        if at <= self.last_index() {
            self.truncate_from(at);
        }
        self.extend(entries.into_iter().skip(first_new));
        Some(last_new)
    }

    /// Drops entries from `index` on (they conflict with the leader's log).
    fn truncate_from(&mut self, index: LogIndex) {
        let keep = (index.0 - self.first_index().0) as usize;
        self.entries.truncate(keep);
        // An uncommitted membership change cut off here no longer counts (thesis §4.1).
        self.confs.retain(|&(i, _)| i < index);
        self.stable = self.stable.min(index.prev());
    }

    /// The first index of the term of the entry at `index`, scanning back no further than the
    /// snapshot. Used to build a conflict hint.
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let term = self.term(index).expect("index must be held");
        let mut i = index;
        while i > self.first_index() && self.term(i.prev()) == Some(term) {
            i = i.prev();
        }
        i
    }

    /// The last index holding an entry of `term`, if any entry of that term is held.
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.term == term)
            .map(|e| e.index)
    }

    /// Advances the commit index to `index` (never backwards, never past the last entry).
    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Entries persisted-or-not that are newer than what storage has been handed.
    pub fn unstable(&self) -> &[Entry] {
        let start = (self.stable.0.max(self.snapshot.index.0) - self.snapshot.index.0) as usize;
        &self.entries[start..]
    }

    /// Records that storage has been handed entries up to `index`.
    pub fn stable_to(&mut self, index: LogIndex) {
        self.stable = self.stable.max(index).min(self.last_index());
    }

    /// Committed entries not yet handed out for applying, about `bytes_max` bytes of them (at
    /// least one if any).
    pub fn next_committed(&self, bytes_max: usize) -> Vec<Entry> {
        if self.committed <= self.applied {
            return Vec::new();
        }
        let count = (self.committed.0 - self.applied.0) as usize;
        self.slice(self.applied.next(), count, bytes_max)
    }

    /// Records that entries up to `index` were applied.
    ///
    /// # Panics
    /// If `index` is beyond the commit index.
    pub fn applied_to(&mut self, index: LogIndex) {
        assert!(
            index <= self.committed,
            "applied {index} beyond committed {}",
            self.committed
        );
        self.applied = self.applied.max(index);
    }

    /// Drops entries up to `meta.index`, which the application's snapshot now covers.
    ///
    /// # Panics
    /// If `meta.index` was not applied yet or its term does not match.
    pub fn compact(&mut self, index: LogIndex) -> SnapshotMeta {
        assert!(
            index <= self.applied,
            "compact {index} beyond applied {}",
            self.applied
        );
        if index <= self.snapshot.index {
            return self.snapshot;
        }
        let term = self.term(index).expect("applied index must be held");
        let conf = self.conf_at(index);
        let drop = (index.0 - self.snapshot.index.0) as usize;
        self.entries.drain(..drop);
        self.confs.retain(|&(i, _)| i > index);
        self.snapshot = SnapshotMeta { index, term, conf };
        self.stable = self.stable.max(index);
        self.snapshot
    }

    /// Replaces the whole log by a snapshot received from the leader. A snapshot without a
    /// membership (from a node that predates membership changes) keeps the current one.
    pub fn install_snapshot(&mut self, mut meta: SnapshotMeta) {
        assert!(
            meta.index > self.committed,
            "snapshot {} not newer than commit {}",
            meta.index,
            self.committed
        );
        if meta.conf.is_empty() {
            meta.conf = self.conf();
        }
        self.entries.clear();
        self.confs.clear();
        self.snapshot = meta;
        self.committed = meta.index;
        self.applied = meta.index;
        self.stable = meta.index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(term: u64, index: u64) -> Entry {
        Entry::normal(Term(term), LogIndex(index), vec![index as u8])
    }

    fn log_of(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| e(*t, i as u64 + 1))
            .collect();
        RaftLog::restore(SnapshotMeta::default(), entries, LogIndex(0))
    }

    #[test]
    fn maybe_append_truncates_conflicting_suffix_only() {
        let mut log = log_of(&[1, 1, 2, 2]);
        assert_eq!(
            log.maybe_append(LogIndex(2), Term(1), vec![e(1, 3), e(3, 4)]),
            Some(LogIndex(4))
        );
        // Entry 3 had term 2: conflict, so 3 and 4 are replaced.
        assert_eq!(log.term(LogIndex(3)), Some(Term(1)));
        let mut log2 = log_of(&[1, 1, 2, 2]);
        assert_eq!(
            log2.maybe_append(LogIndex(2), Term(1), vec![e(3, 3)]),
            Some(LogIndex(3))
        );
        assert_eq!(log2.last_index(), LogIndex(3));
        assert_eq!(log2.term(LogIndex(3)), Some(Term(3)));
        assert_eq!(log2.stable(), LogIndex(2));
        // A stale, shorter append that matches does not truncate.
        assert_eq!(
            log2.maybe_append(LogIndex(1), Term(1), vec![]),
            Some(LogIndex(1))
        );
        assert_eq!(log2.last_index(), LogIndex(3));
    }

    #[test]
    fn mismatch_rejects_and_compaction_keeps_terms() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        assert_eq!(log.maybe_append(LogIndex(5), Term(2), vec![]), None);
        assert_eq!(log.first_index_of_term_at(LogIndex(4)), LogIndex(3));
        assert_eq!(log.last_index_of_term(Term(2)), Some(LogIndex(4)));
        log.commit_to(LogIndex(4));
        log.applied_to(LogIndex(4));
        log.compact(LogIndex(3));
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.term(LogIndex(3)), Some(Term(2)));
        assert_eq!(log.term(LogIndex(2)), None);
        assert!(log.is_up_to_date(LogIndex(5), Term(3)));
        assert!(!log.is_up_to_date(LogIndex(4), Term(3)));
    }

    #[test]
    fn append_behind_snapshot_skips_compacted_prefix() {
        let mut log = log_of(&[1, 1, 1]);
        log.commit_to(LogIndex(3));
        log.applied_to(LogIndex(3));
        log.compact(LogIndex(3));
        let got = log.maybe_append(LogIndex(1), Term(1), vec![e(1, 2), e(1, 3), e(1, 4)]);
        assert_eq!(got, Some(LogIndex(4)));
        assert_eq!(log.last_index(), LogIndex(4));
    }
}
