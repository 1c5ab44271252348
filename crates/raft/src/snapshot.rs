//! InstallSnapshot: a leader streams its snapshot in bounded chunks, one in flight at a time,
//! to a follower that needs entries the leader has compacted away.

use crate::anomaly::{Anomaly, INDEX_MAX};
use crate::{Body, RawNode, Snapshot};
use shardkv_types::{NodeId, SnapshotMeta};
use std::sync::Arc;

/// Heartbeat intervals after which an unanswered chunk is sent again.
const CHUNK_RESEND_HEARTBEATS: u64 = 2;

impl RawNode {
    /// Leader: `to` needs entries before our snapshot point; start streaming the snapshot.
    pub(crate) fn start_snapshot_transfer(&mut self, to: NodeId) {
        let snap = self
            .snapshot
            .clone()
            .expect("a compacted log always has a snapshot");
        assert_eq!(
            snap.meta,
            self.log.snapshot_meta(),
            "held snapshot matches the log"
        );
        let ticks = self.ticks;
        self.progress
            .get_mut(&to)
            .expect("peer")
            .become_snapshot(snap.meta, snap.data, ticks);
        self.send_snapshot_chunk(to);
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let chunk_max = self.cfg.snapshot_chunk_bytes_max as u64;
        let ticks = self.ticks;
        let pr = self.progress.get_mut(&to).expect("peer");
        let t = pr.snapshot.as_mut().expect("in snapshot state");
        t.sent_tick = ticks;
        let len = t.data.len() as u64;
        let offset = t.acked.min(len);
        let end = (offset + chunk_max).min(len);
        let data = t.data[offset as usize..end as usize].to_vec();
        let meta = t.meta;
        self.send(
            to,
            self.term,
            Body::InstallSnapshot {
                meta,
                offset,
                data,
                done: end == len,
            },
        );
    }

    /// Leader, on a heartbeat: resend the current chunk if its answer is overdue (lost).
    pub(crate) fn maybe_resend_snapshot_chunk(&mut self, to: NodeId) {
        let overdue = CHUNK_RESEND_HEARTBEATS * u64::from(self.cfg.heartbeat_ticks);
        let due = self.progress[&to]
            .snapshot
            .as_ref()
            .is_some_and(|t| self.ticks - t.sent_tick >= overdue);
        if due {
            self.send_snapshot_chunk(to);
        }
    }

    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        next_offset: u64,
        installed: bool,
    ) {
        let sent = self.progress[&from].sent_max;
        if installed && meta.index > sent {
            let at = meta.index;
            self.note(
                Anomaly::AckBeyondSent,
                from,
                format_args!("installed a snapshot at {at}, sent up to {sent}"),
            );
            return;
        }
        let pr = self.progress.get_mut(&from).expect("peer");
        let Some(t) = pr.snapshot.as_mut().filter(|t| t.meta == meta) else {
            if installed {
                // An answer to an earlier transfer that completed: the follower has it.
                if pr.maybe_update(meta.index) {
                    self.maybe_commit();
                }
            }
            return;
        };
        if installed {
            pr.maybe_update(meta.index);
            pr.become_probe();
            self.maybe_commit();
            return;
        }
        if next_offset == t.acked {
            return; // a duplicate answer; the resend timer covers a lost chunk
        }
        t.acked = next_offset; // may go back if the follower restarted mid-transfer
        self.send_snapshot_chunk(from);
    }

    fn answer_chunk(&mut self, to: NodeId, meta: SnapshotMeta, next_offset: u64, installed: bool) {
        let body = Body::InstallSnapshotResponse {
            meta,
            next_offset,
            installed,
        };
        self.send(to, self.term, body);
    }

    /// Follower: one chunk of the leader's snapshot.
    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) {
        if meta.index.0 > INDEX_MAX || meta.term > self.term {
            let (index, term) = (meta.index, meta.term);
            self.note(
                Anomaly::MalformedSnapshot,
                from,
                format_args!("snapshot at {index} of {term}"),
            );
            return;
        }
        if meta.index <= self.log.committed() || self.log.matches(meta.index, meta.term) {
            // We already hold everything the snapshot covers (Raft §7: keep the log). A
            // transfer of a newer snapshot in progress is kept.
            self.log.commit_to(meta.index);
            let covered = self.log.committed();
            if self
                .incoming_snapshot
                .as_ref()
                .is_some_and(|(m, _)| m.index <= covered)
            {
                self.incoming_snapshot = None;
            }
            self.answer_chunk(from, meta, 0, true);
            return;
        }
        // A first chunk starts a transfer, unless it is a duplicate of the one in progress.
        let same_in_progress = self
            .incoming_snapshot
            .as_ref()
            .is_some_and(|(m, buf)| *m == meta && !buf.is_empty());
        if offset == 0 && !same_in_progress {
            self.incoming_snapshot = Some((meta, Vec::new()));
        }
        let expected = match &self.incoming_snapshot {
            Some((m, buf)) if *m == meta => buf.len() as u64,
            _ => 0,
        };
        if offset != expected {
            self.answer_chunk(from, meta, expected, false);
            return;
        }
        let (_, buf) = self.incoming_snapshot.as_mut().expect("checked above");
        buf.extend_from_slice(&data);
        let next_offset = buf.len() as u64;
        if !done {
            self.answer_chunk(from, meta, next_offset, false);
            return;
        }
        let (_, data) = self.incoming_snapshot.take().expect("checked above");
        self.log.install_snapshot(meta);
        // The log's meta: a snapshot without a membership keeps the one in force.
        let snap = Snapshot {
            meta: self.log.snapshot_meta(),
            data: Arc::new(data),
        };
        self.snapshot = Some(snap.clone());
        self.pending_snapshot = Some(snap);
        self.answer_chunk(from, meta, next_offset, true);
    }
}
