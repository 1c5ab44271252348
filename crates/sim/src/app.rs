//! What runs on a simulated node above the Raft core. The Ready loop itself is the
//! production one (`shardkv-host`); an [`App`] is a [`HostedApp`] the simulator can start:
//! the bare-Raft test harness ([`RaftApp`]) or a real replicated service (`Replica<SM>`,
//! see `service_node.rs`).

use crate::config::ClusterConfig;
use crate::group::GroupKind;
use crate::state_machine::TestStateMachine;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shardkv_host::HostedApp;
use shardkv_raft::{Config, Message, RawNode, ReadState, Ready, Restored, Snapshot};
use shardkv_rsm::{Error, ReqId};
use shardkv_types::{LogIndex, NodeId};
use std::fmt::Debug;
use std::sync::Arc;

/// A node's application as the simulator sees it: a hosted app whose requests and
/// responses cross the simulated wire, started from what the simulated disk recovered.
pub trait App:
    HostedApp<
        Request: Serialize + DeserializeOwned + Debug,
        Response: Serialize + DeserializeOwned + Debug + Clone,
    > + Sized
{
    /// Starts a member of a group of `kind` from what storage recovered (restoring any
    /// snapshot first).
    fn start(
        cfg: Config,
        restored: Restored,
        seed: u64,
        sim: &ClusterConfig,
        kind: GroupKind,
    ) -> Result<Self, String>;

    /// True if this app can run a group of `kind` (checked when the simulator builds).
    fn runs(kind: GroupKind) -> bool;

    /// Requests this node sends to nodes of other groups, as a client would (config polls,
    /// shard pulls). The simulator drains them after every round of processing and sends
    /// them over the same faulty network as everything else; answers come back through
    /// [`App::on_answer`]. None by default.
    fn take_outbound(&mut self) -> Vec<Outbound<Self::Request>> {
        Vec::new()
    }

    /// The answer from `from` to the outbound request `token` (dropped while the node is
    /// down or stalled; the app retries on its own clock).
    fn on_answer(&mut self, _token: u64, _from: NodeId, _r: Self::Response) {}
}

/// A request a node sends to another group's node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound<R> {
    /// Names the request in the answer.
    pub token: u64,
    pub to: NodeId,
    pub request: R,
}

/// The bare Raft core with the test state machine: commands are opaque bytes proposed
/// directly, applied entries are checked to arrive contiguously, and a snapshot is taken
/// every `ClusterConfig::snapshot_every` entries.
#[derive(Debug)]
pub struct RaftApp {
    pub raft: RawNode,
    pub sm: TestStateMachine,
    snapshot_every: Option<u64>,
    /// Read states answered to this incarnation, in order.
    pub reads: Vec<ReadState>,
}

impl App for RaftApp {
    fn start(
        cfg: Config,
        restored: Restored,
        seed: u64,
        sim: &ClusterConfig,
        _kind: GroupKind,
    ) -> Result<Self, String> {
        let sm = match &restored.snapshot {
            Some(s) => TestStateMachine::restore(&s.data, s.meta.index)?,
            None => TestStateMachine::default(),
        };
        Ok(RaftApp {
            raft: RawNode::new(cfg, restored, seed),
            sm,
            snapshot_every: sim.snapshot_every,
            reads: Vec::new(),
        })
    }

    fn runs(kind: GroupKind) -> bool {
        kind == GroupKind::Raft
    }
}

impl HostedApp for RaftApp {
    type Request = ();
    type Response = ();

    fn raft(&self) -> &RawNode {
        &self.raft
    }

    fn tick(&mut self) {
        self.raft.tick();
    }

    fn step(&mut self, m: Message) {
        self.raft.step(m);
    }

    fn ready(&mut self) -> Option<Ready> {
        self.raft.has_ready().then(|| self.raft.ready())
    }

    fn advance(&mut self, rd: Ready, raft_state_bytes: u64) -> Result<Option<Snapshot>, String> {
        let id = self.raft.id();
        if let Some(s) = &rd.snapshot {
            self.sm = TestStateMachine::restore(&s.data, s.meta.index)?;
        }
        for e in &rd.committed_entries {
            self.sm.apply(e).map_err(|err| format!("{id}: {err}"))?;
        }
        self.reads.extend(rd.read_states.iter().copied());
        self.raft.advance(rd);
        // The host passes 0 while snapshots are held back or could not be saved (a full
        // disk); as production's replica does, take none then.
        let Some(every) = self.snapshot_every.filter(|_| raft_state_bytes > 0) else {
            return Ok(None);
        };
        let applied = self.sm.applied;
        if applied.0 < self.raft.log().snapshot_meta().index.0 + every {
            return Ok(None);
        }
        let term = self
            .raft
            .log()
            .term(applied)
            .ok_or("applied index not in log")?;
        let data = Arc::new(self.sm.snapshot());
        self.raft.compact(applied, data.clone());
        let meta = self.raft.log().snapshot_meta();
        debug_assert_eq!((meta.index, meta.term), (applied, term));
        Ok(Some(Snapshot { meta, data }))
    }

    fn request(&mut self, _req: ReqId, _r: ()) {}

    fn take_responses(&mut self) -> Vec<(ReqId, ())> {
        Vec::new()
    }

    fn is_write(_: &()) -> bool {
        false
    }

    fn refusal(_: Error) {}

    fn raft_mut(&mut self) -> &mut RawNode {
        &mut self.raft
    }
}

impl RaftApp {
    /// The digest this node applied at `index`, if any.
    pub fn applied_at(&self, index: LogIndex) -> Option<u64> {
        self.sm.values.get(&index).copied()
    }
}
