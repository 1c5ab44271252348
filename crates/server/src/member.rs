//! [`Member`]: what a node thread needs of the app it hosts beyond the shared host loop —
//! the requests the app sends to other groups (a shard
//! group's duties) and the answers to them, and the shard view of the status page.

use shardkv_host::HostedApp;
use shardkv_net::{ShardPhase, ShardsHeld};
use shardkv_rsm::{Replica, StateMachine};
use shardkv_shardkv::{DutyAnswer, Outbound, ShardGroup, ShardState};
use shardkv_types::{ConfEntry, LogIndex, NodeId};

/// A hosted app as the node thread drives it.
pub trait Member: HostedApp<Request: Send, Response: Send> + Send + 'static {
    /// True when the app asks other groups things ([`Member::take_outbound`]): the node
    /// then gets an outbox that carries the requests and feeds the answers back.
    const ASKS_OTHER_GROUPS: bool = false;

    /// Requests to other groups, drained after every Ready loop.
    fn take_outbound(&mut self) -> Vec<Outbound> {
        Vec::new()
    }

    /// The answer to a request of [`Member::take_outbound`].
    fn on_answer(&mut self, _token: u64, _from: NodeId, _answer: DutyAnswer) {}

    /// A shard group's config number and shards, for the status page.
    fn shards_held(&self) -> Option<ShardsHeld> {
        None
    }

    /// Why the app cannot make progress on its own, if it cannot (logged when it changes).
    fn stuck(&self) -> Option<String> {
        None
    }

    /// Client sessions in the replica's session table (a metric).
    fn sessions(&self) -> usize;

    /// The membership changes applied since the last call (see
    /// `Replica::take_applied_conf_changes`).
    fn take_applied_conf_changes(&mut self) -> Vec<(LogIndex, ConfEntry)>;

    /// Whether an answer means a proposal this member took failed (a metric; see
    /// [`crate::metrics::proposal_failed`]).
    fn proposal_failed(resp: &Self::Response) -> bool;
}

impl<SM> Member for Replica<SM>
where
    SM: StateMachine + Send + 'static,
    SM::Command: Send,
    SM::Query: Send,
    SM::Output: Send,
{
    fn sessions(&self) -> usize {
        Replica::sessions(self).len()
    }

    fn take_applied_conf_changes(&mut self) -> Vec<(LogIndex, ConfEntry)> {
        Replica::take_applied_conf_changes(self)
    }

    fn proposal_failed(resp: &Self::Response) -> bool {
        crate::metrics::proposal_failed(resp)
    }
}

impl Member for ShardGroup {
    const ASKS_OTHER_GROUPS: bool = true;

    fn take_outbound(&mut self) -> Vec<Outbound> {
        ShardGroup::take_outbound(self)
    }

    fn on_answer(&mut self, token: u64, from: NodeId, answer: DutyAnswer) {
        ShardGroup::on_answer(self, token, from, answer);
    }

    fn stuck(&self) -> Option<String> {
        self.duties.stuck().map(str::to_string)
    }

    fn sessions(&self) -> usize {
        self.replica.sessions().len()
    }

    fn take_applied_conf_changes(&mut self) -> Vec<(LogIndex, ConfEntry)> {
        self.replica.take_applied_conf_changes()
    }

    fn proposal_failed(resp: &Self::Response) -> bool {
        crate::metrics::proposal_failed(resp)
    }

    fn shards_held(&self) -> Option<ShardsHeld> {
        let sm = self.state_machine();
        let phase = |s: ShardState| match s {
            ShardState::Serving => ShardPhase::Serving,
            ShardState::Pulling => ShardPhase::Pulling,
            ShardState::BePulled => ShardPhase::BePulled,
            ShardState::Parked => ShardPhase::Parked,
        };
        let keys = sm
            .shards()
            .values()
            .filter(|s| s.state == ShardState::Serving)
            .map(|s| s.store.len() as u64)
            .sum();
        Some(ShardsHeld {
            config: sm.config().num,
            keys,
            shards: sm
                .shards()
                .iter()
                .map(|(&id, s)| (id, phase(s.state)))
                .collect(),
        })
    }
}
