//! A replicated service as a simulated node's app: the real `Replica<SM>` (rsm + a state
//! machine), hosted by the same `shardkv-host` loop as the production server and fed client
//! requests through the host's refusal policy. `KvNode` and `CtrlNode` are its two
//! instances today.

use crate::app::App;
use crate::config::ClusterConfig;
use crate::group::GroupKind;
use shardkv_ctrl::ShardCtrl;
use shardkv_kv::KvStore;
use shardkv_raft::{Config, Restored};
use shardkv_rsm::{Replica, ReplicaOptions, StateMachine};

/// A state machine the simulator can start: its state before the first entry, from the
/// cluster's configuration (the same on every member).
pub trait SimMachine: StateMachine {
    /// The kind of group that runs it.
    const KIND: GroupKind;
    fn initial(sim: &ClusterConfig) -> Self;
}

impl SimMachine for KvStore {
    const KIND: GroupKind = GroupKind::Kv;

    fn initial(_: &ClusterConfig) -> KvStore {
        KvStore::default()
    }
}

impl SimMachine for ShardCtrl {
    const KIND: GroupKind = GroupKind::Ctrl;

    fn initial(sim: &ClusterConfig) -> ShardCtrl {
        ShardCtrl::new(sim.shards).expect("the simulated cluster's shard count is valid")
    }
}

/// One replica of a service: the production replica itself (its `HostedApp` impl lives in
/// `shardkv-host`).
pub type ServiceNode<SM> = Replica<SM>;
/// A replica of the KV service.
pub type KvNode = ServiceNode<KvStore>;
/// A replica of the shard controller.
pub type CtrlNode = ServiceNode<ShardCtrl>;

impl<SM: SimMachine> App for Replica<SM> {
    fn start(
        cfg: Config,
        restored: Restored,
        seed: u64,
        sim: &ClusterConfig,
        _kind: GroupKind,
    ) -> Result<Self, String> {
        let opts = ReplicaOptions {
            raft_state_bytes_max: sim.max_raft_state,
            sessions: sim.sessions,
            ..ReplicaOptions::default()
        };
        Replica::new(cfg, restored, seed, opts, SM::initial(sim))
    }

    fn runs(kind: GroupKind) -> bool {
        kind == SM::KIND
    }
}
