//! Handing leadership off from a leader that cannot write its own disk.

use crate::{RawNode, Role};
use shardkv_types::{Entry, NodeId};

impl RawNode {
    /// Leader whose disk is full (the host calls this every so often while its Readys
    /// cannot be persisted): starts a transfer to a peer the group can elect without this
    /// node and returns it, or returns `None`.
    ///
    /// A transfer starts only when a quorum of the *other* voters has acknowledged entries
    /// this node could not write (`match_index == last_index > stable`): they wrote their
    /// disks since this one filled, so one of them can win an election without this node,
    /// whose vote for a new term it may not be able to store. With fewer, handing off could
    /// leave the group with no leader at all, while a stalled leader that keeps its place
    /// still serves linearizable reads. When this node holds no entry it could not write, it
    /// appends a no-op for the others to acknowledge (at most one uncommitted at a time).
    /// The peer is the caught-up one heard from most recently (lowest id on a tie).
    pub fn hand_off_unwritten(&mut self) -> Option<NodeId> {
        assert!(
            !self.ready_outstanding,
            "hand_off_unwritten between ready and advance"
        );
        if self.role != Role::Leader || self.transferee.is_some() {
            return None;
        }
        let last = self.log.last_index();
        if last == self.log.stable() {
            if self.log.committed() == last {
                self.log.append_new(Entry::noop(self.term, last.next()));
            }
            return None;
        }
        let conf = self.log.conf();
        let caught_up: Vec<(NodeId, u64)> = self
            .progress
            .iter()
            .filter(|(id, p)| conf.is_voter(**id) && p.match_index == last)
            .map(|(&id, p)| (id, p.last_active_tick))
            .collect();
        if caught_up.len() < self.quorum() {
            return None;
        }
        let (to, _) = caught_up
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?;
        self.transfer_leader(to).ok()?;
        Some(to)
    }
}

impl RawNode {
    /// Tells the core whether the application can persist (false while its disk is full
    /// and Readys go on without their entries and hard state; see [`crate::Ready`]). While
    /// full, the node does not campaign — neither on its election timeout nor on a leader's
    /// `TimeoutNow` — since a vote for itself it cannot store would only silence it, and as
    /// a follower it takes no entry past its last index, so the log it holds in memory for
    /// want of space does not grow.
    pub fn set_storage_full(&mut self, full: bool) {
        self.storage_full = full;
    }

    /// See [`RawNode::set_storage_full`].
    pub fn storage_full(&self) -> bool {
        self.storage_full
    }

    /// Tells the core to ignore (or again obey) a leader's `TimeoutNow`: a member that should
    /// not lead right now (its disk is low, its process cannot take clients) declines
    /// leadership transfers, and the transferring leader's attempt times out after an
    /// election timeout. Ordinary elections are unaffected: a group whose leader is gone
    /// still elects this member if it must.
    pub fn set_declines_transfers(&mut self, decline: bool) {
        self.declines_transfers = decline;
    }

    /// Whether a leadership transfer this leader started is still in flight.
    pub fn transfer_in_flight(&self) -> bool {
        self.transferee.is_some()
    }
}
