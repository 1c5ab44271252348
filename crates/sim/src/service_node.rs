//! A replicated service as a simulated node's app: the real `Replica<SM>` (rsm + a state
//! machine), fed client requests through `Replica::submit` exactly as the production server
//! does. `KvNode` and `CtrlNode` are its two instances today.

use crate::app::App;
use crate::cluster::ClusterConfig;
use shardkv_ctrl::ShardCtrl;
use shardkv_kv::KvStore;
use shardkv_raft::{Config, Message, RawNode, Ready, Restored, Snapshot};
use shardkv_rsm::{Replica, ReplicaOptions, Reply, Request, StateMachine};

/// A state machine the simulator can start: its state before the first entry, from the
/// cluster's configuration (the same on every member).
pub trait SimMachine: StateMachine {
    fn initial(sim: &ClusterConfig) -> Self;
}

impl SimMachine for KvStore {
    fn initial(_: &ClusterConfig) -> KvStore {
        KvStore::default()
    }
}

impl SimMachine for ShardCtrl {
    fn initial(sim: &ClusterConfig) -> ShardCtrl {
        ShardCtrl::new(sim.shards).expect("the simulated cluster's shard count is valid")
    }
}

/// One replica of a service.
pub struct ServiceNode<SM: StateMachine> {
    pub replica: Replica<SM>,
}

/// A replica of the KV service.
pub type KvNode = ServiceNode<KvStore>;
/// A replica of the shard controller.
pub type CtrlNode = ServiceNode<ShardCtrl>;

impl<SM: StateMachine> std::fmt::Debug for ServiceNode<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceNode({:?})", self.replica.raft().status())
    }
}

impl<SM: SimMachine> App for ServiceNode<SM> {
    type Request = Request<SM::Command, SM::Query>;
    type Response = Reply<SM::Output>;

    fn start(
        cfg: Config,
        restored: Restored,
        seed: u64,
        sim: &ClusterConfig,
    ) -> Result<Self, String> {
        let opts = ReplicaOptions {
            raft_state_bytes_max: sim.max_raft_state,
            ..ReplicaOptions::default()
        };
        let initial = SM::initial(sim);
        Ok(ServiceNode {
            replica: Replica::new(cfg, restored, seed, opts, initial)?,
        })
    }

    fn raft(&self) -> &RawNode {
        self.replica.raft()
    }

    fn tick(&mut self) {
        self.replica.tick();
    }

    fn step(&mut self, m: Message) {
        self.replica.step(m);
    }

    fn ready(&mut self) -> Option<Ready> {
        self.replica.ready()
    }

    fn advance(&mut self, rd: Ready, raft_state_bytes: u64) -> Result<Option<Snapshot>, String> {
        self.replica.advance(rd, raft_state_bytes)
    }

    fn request(&mut self, req: u64, r: Self::Request) {
        self.replica.submit(req, r);
    }

    fn take_responses(&mut self) -> Vec<(u64, Self::Response)> {
        self.replica.take_replies()
    }
}
