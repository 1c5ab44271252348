//! The KV service as a simulated node's app: the real `KvReplica` (rsm + kv), fed client
//! requests through `Replica::submit` exactly as the production server does.

use crate::app::App;
use crate::cluster::ClusterConfig;
use shardkv_kv::{KvReplica, KvRequest, KvResponse, KvStore};
use shardkv_raft::{Config, Message, RawNode, Ready, Restored, Snapshot};
use shardkv_rsm::ReplicaOptions;

/// A KV replica.
pub struct KvNode {
    pub replica: KvReplica,
}

impl std::fmt::Debug for KvNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KvNode({:?})", self.replica.raft().status())
    }
}

impl App for KvNode {
    type Request = KvRequest;
    type Response = KvResponse;

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
        Ok(KvNode {
            replica: KvReplica::new(cfg, restored, seed, opts, KvStore::default())?,
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

    fn request(&mut self, req: u64, r: KvRequest) {
        self.replica.submit(req, r);
    }

    fn take_responses(&mut self) -> Vec<(u64, KvResponse)> {
        self.replica.take_replies()
    }
}
