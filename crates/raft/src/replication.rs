//! Log replication: AppendEntries and heartbeats on both sides, with pipelining, fast
//! conflict backup and commit propagation.

use crate::anomaly::{Anomaly, INDEX_MAX};
use crate::progress::{ProgressState, Rejection};
use crate::{Body, ConflictHint, Message, RawNode, ReadState};
use shardkv_types::{LogIndex, NodeId};

/// True if `entries` could come from an honest leader of `term`: contiguous after `prev`,
/// terms non-decreasing from `prev_term` and not above `term`, no index past `u64::MAX`.
/// Anything else is dropped.
fn well_formed(
    term: shardkv_types::Term,
    prev: LogIndex,
    prev_term: shardkv_types::Term,
    entries: &[shardkv_types::Entry],
) -> bool {
    let mut last_term = prev_term;
    for (i, e) in entries.iter().enumerate() {
        let expected = (i as u64).checked_add(1).and_then(|n| prev.checked_add(n));
        if expected != Some(e.index) || e.index.0 > INDEX_MAX || e.term < last_term || e.term > term
        {
            return false;
        }
        last_term = e.term;
    }
    prev_term <= term
}

/// How many heartbeat intervals the oldest in-flight append may go unanswered before the
/// leader assumes it was lost and probes again.
const INFLIGHT_STALE_HEARTBEATS: u64 = 3;

impl RawNode {
    /// Follower: a message from the current leader.
    pub(crate) fn handle_leader_message(&mut self, m: Message) {
        match m.body {
            Body::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                seq,
            } => {
                if well_formed(m.term, prev_log_index, prev_log_term, &entries) {
                    self.handle_append(
                        m.from,
                        prev_log_index,
                        prev_log_term,
                        entries,
                        leader_commit,
                        seq,
                    );
                } else {
                    let n = entries.len();
                    self.note(
                        Anomaly::MalformedAppend,
                        m.from,
                        format_args!("{n} entries after {prev_log_index}"),
                    );
                }
            }
            Body::Heartbeat { commit, read_seq } => {
                // The leader sends at most what this follower acknowledged: a commit past
                // our log means the leader believes in entries we do not hold (our log was
                // lost, or the message is forged). Committing our own unrelated tail on its
                // word could apply entries the group never chose.
                let last = self.log.last_index();
                if commit > last {
                    self.note(
                        Anomaly::CommitBeyondLog,
                        m.from,
                        format_args!("commit {commit}, last index {last}"),
                    );
                } else {
                    self.log.commit_to(commit);
                }
                self.send(m.from, self.term, Body::HeartbeatResponse { read_seq });
            }
            Body::InstallSnapshot {
                meta,
                offset,
                data,
                done,
            } => self.handle_snapshot_chunk(m.from, meta, offset, data, done),
            _ => unreachable!("not a leader message: {}", m.kind()),
        }
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: shardkv_types::Term,
        mut entries: Vec<shardkv_types::Entry>,
        leader_commit: LogIndex,
        seq: u64,
    ) {
        if self.storage_full {
            // Nothing past our last index while the disk is full: the log held in memory
            // for want of space stays bounded, and the leader resends later.
            let last = self.log.last_index();
            entries.retain(|e| e.index <= last);
        }
        let body = match self
            .log
            .maybe_append(prev_log_index, prev_log_term, entries)
        {
            Some(last_new) => {
                // Raft Figure 2: commit up to the leader's commit, but only within what is
                // known to match the leader's log.
                self.log.commit_to(leader_commit.min(last_new));
                Body::AppendEntriesResponse {
                    success: true,
                    index: last_new,
                    hint: None,
                    seq,
                }
            }
            None if prev_log_index <= self.log.last_index()
                && self.log.term(prev_log_index).is_none() =>
            {
                // `prev` is inside our snapshot, so committed: an honest leader's entries
                // agree with every committed one and are never refused there. This append
                // contradicts committed entries; there is no term to hint at.
                let snap = self.log.snapshot_meta().index;
                self.note(
                    Anomaly::MalformedAppend,
                    from,
                    format_args!("refused after {prev_log_index}, inside the snapshot at {snap}"),
                );
                return;
            }
            None => {
                let hint = if prev_log_index > self.log.last_index() {
                    ConflictHint {
                        conflict_term: None,
                        conflict_index: self.log.last_index().next(),
                    }
                } else {
                    ConflictHint {
                        conflict_term: self.log.term(prev_log_index),
                        conflict_index: self.log.first_index_of_term_at(prev_log_index),
                    }
                };
                Body::AppendEntriesResponse {
                    success: false,
                    index: prev_log_index,
                    hint: Some(hint),
                    seq,
                }
            }
        };
        self.send(from, self.term, body);
    }

    /// Leader: answers from followers.
    pub(crate) fn step_leader(&mut self, m: Message) {
        let Some(pr) = self.progress.get_mut(&m.from) else {
            return;
        };
        pr.last_active_tick = self.ticks;
        match m.body {
            Body::AppendEntriesResponse {
                success: true,
                index,
                ..
            } => {
                let sent = self.progress[&m.from].sent_max;
                if index > sent {
                    // A follower can only acknowledge what it was sent; counting this would
                    // commit entries stored nowhere but here.
                    self.note(
                        Anomaly::AckBeyondSent,
                        m.from,
                        format_args!("acknowledged {index}, sent up to {sent}"),
                    );
                    return;
                }
                self.handle_append_success(m.from, index)
            }
            Body::AppendEntriesResponse {
                success: false,
                index,
                hint: Some(hint),
                seq,
            } => self.handle_append_reject(m.from, index, hint, seq),
            Body::HeartbeatResponse { read_seq } => {
                self.handle_heartbeat_response(m.from, read_seq)
            }
            Body::InstallSnapshotResponse {
                meta,
                next_offset,
                installed,
            } => self.handle_snapshot_response(m.from, meta, next_offset, installed),
            _ => {}
        }
    }

    fn handle_append_success(&mut self, from: NodeId, index: LogIndex) {
        let pr = self.progress.get_mut(&from).expect("peer");
        if !pr.maybe_update(index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot => {
                if pr
                    .snapshot
                    .as_ref()
                    .is_some_and(|t| pr.match_index >= t.meta.index)
                {
                    pr.become_probe();
                }
            }
            ProgressState::Replicate => {}
        }
        self.maybe_commit();
        self.maybe_finish_transfer(from);
    }

    fn handle_append_reject(
        &mut self,
        from: NodeId,
        rejected: LogIndex,
        hint: ConflictHint,
        seq: u64,
    ) {
        // A follower rejects a `prev_log_index` it was sent, and its hint never points past
        // it (its last index + 1 when shorter, else the start of a term it holds there).
        let sent = self.progress[&from].sent_max;
        if rejected > sent || hint.conflict_index > rejected {
            let at = hint.conflict_index;
            self.note(
                Anomaly::ImpossibleReject,
                from,
                format_args!("rejected {rejected} (sent up to {sent}), hint {at}"),
            );
            return;
        }
        // Fast backup: skip every entry of the conflicting term at once.
        let hint_next = match hint.conflict_term {
            Some(t) => match self.log.last_index_of_term(t).filter(|&i| i <= rejected) {
                Some(i) => i.next(),
                None => hint.conflict_index,
            },
            None => hint.conflict_index,
        };
        let pr = self.progress.get_mut(&from).expect("peer");
        let matched = pr.match_index;
        let short = hint.conflict_term.is_none();
        if pr.on_reject(rejected, hint_next, short, seq) == Rejection::LogLost {
            let next = pr.next_index;
            self.note(
                Anomaly::FollowerLogLost,
                from,
                format_args!(
                    "it acknowledged {matched}, now rejects {rejected}; resending from {next}"
                ),
            );
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, read_seq: u64) {
        let last = self.log.last_index();
        let stale_ticks = INFLIGHT_STALE_HEARTBEATS * u64::from(self.cfg.heartbeat_ticks);
        let pr = self.progress.get_mut(&from).expect("peer");
        let ticks = self.ticks;
        // An append may have been lost: if the oldest one in flight is long overdue, fall
        // back to probing from the last known match.
        let overdue = |pr: &crate::Progress| {
            pr.inflight
                .front()
                .is_some_and(|f| ticks - f.sent_tick >= stale_ticks)
        };
        match pr.state {
            ProgressState::Probe => pr.probe_sent = false,
            ProgressState::Replicate if pr.match_index < last && overdue(pr) => {
                pr.become_probe();
                pr.next_index = pr.match_index.next();
            }
            _ => {}
        }
        // A lost TimeoutNow is sent again: proposals are refused during a transfer, so no
        // append acknowledgement would trigger it.
        self.maybe_finish_transfer(from);
        let (conf, id) = (self.log.conf(), self.cfg.id);
        let released = self.reads.ack(from, read_seq, &conf, id);
        self.read_states
            .extend(released.into_iter().map(|(ctx, i)| ReadState {
                ctx,
                index: Some(i),
            }));
    }

    /// Leader: sends `to` the entries it lacks if its progress allows one more message.
    pub(crate) fn maybe_send_append(&mut self, to: NodeId) {
        let last = self.log.last_index();
        let inflight_max = self.cfg.inflight_appends_max;
        let pr = self.progress.get(&to).expect("peer");
        if pr.is_paused(inflight_max) {
            return;
        }
        let probing = pr.state == ProgressState::Probe && pr.match_index < last;
        if pr.next_index > last && !probing {
            return;
        }
        if pr.next_index <= self.log.snapshot_meta().index {
            self.start_snapshot_transfer(to);
            return;
        }
        let next = pr.next_index;
        let prev_log_index = next.prev();
        let prev_log_term = self
            .log
            .term(prev_log_index)
            .expect("prev is at or after the snapshot");
        let entries = if next <= last {
            self.log
                .slice(next, self.cfg.append_entries_max, self.cfg.append_bytes_max)
        } else {
            Vec::new()
        };
        let sent_last = entries.last().map_or(prev_log_index, |e| e.index);
        let count = entries.len();
        let leader_commit = self.log.committed();
        let ticks = self.ticks;
        let pr = self.progress.get_mut(&to).expect("peer");
        let seq = pr.sent_append(prev_log_index, sent_last, count, ticks);
        self.send(
            to,
            self.term,
            Body::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                seq,
            },
        );
    }

    /// Leader: one heartbeat to every follower, confirming read round `read_seq` (0 if
    /// none), and a resend of any snapshot chunk left unanswered.
    pub(crate) fn bcast_heartbeat(&mut self, read_seq: u64) {
        for p in self.peers() {
            let pr = &self.progress[&p];
            let commit = pr.match_index.min(self.log.committed());
            self.send(p, self.term, Body::Heartbeat { commit, read_seq });
            self.maybe_resend_snapshot_chunk(p);
        }
    }

    fn maybe_finish_transfer(&mut self, from: NodeId) {
        if let Some((to, _)) = self.transferee
            && to == from
            && self.progress[&from].match_index == self.log.last_index()
        {
            self.send(to, self.term, Body::TimeoutNow);
        }
    }
}
