//! [`ServiceApp`]: how a simulator's app carries one replicated service, so that the
//! service's clerks and checks run over any simulator whose nodes can run it: a single
//! service group (`Sim<KvNode>`: the app is the replica) or a world of groups of several
//! kinds (`Sim<GroupApp>`: the service's requests travel wrapped in the world's enum).

use crate::app::App;
use crate::cluster::Sim;
use shardkv_kv::KvStore;
use shardkv_rsm::{Replica, Reply, Request, StateMachine};
use shardkv_shardkv::{ShardKv, ShardOutput};
use shardkv_types::{Gid, NodeId};

/// An app that can carry service `SM`'s requests and answers, and may be one of its
/// replicas.
pub trait ServiceApp<SM: StateMachine>: App {
    /// `SM`'s request as this app's request.
    fn wrap(r: Request<SM::Command, SM::Query>) -> Self::Request;
    /// This app's answer as `SM`'s, if it is one (a node of another kind answers requests
    /// for `SM` with `WrongGroup`, so a clerk normally gets `Some`).
    fn unwrap(r: Self::Response) -> Option<Reply<SM::Output>>;
    /// The replica of `SM`, if this node runs one.
    fn replica(&self) -> Option<&Replica<SM>>;
}

impl<SM: crate::service_node::SimMachine> ServiceApp<SM> for Replica<SM> {
    fn wrap(r: Request<SM::Command, SM::Query>) -> Self::Request {
        r
    }

    fn unwrap(r: Self::Response) -> Option<Reply<SM::Output>> {
        Some(r)
    }

    fn replica(&self) -> Option<&Replica<SM>> {
        Some(self)
    }
}

/// The replicas of `SM` in group `gid` whose nodes are up, by node.
pub fn live_replicas<SM: StateMachine, A: ServiceApp<SM>>(
    sim: &Sim<A>,
    gid: Gid,
) -> Vec<(NodeId, &Replica<SM>)> {
    sim.group(gid)
        .members
        .iter()
        .map(|id| (*id, &sim.nodes[id]))
        .filter(|(_, n)| n.is_up())
        .filter_map(|(id, n)| n.app.as_ref()?.replica().map(|r| (id, r)))
        .collect()
}

/// A service whose requests carry those of `SM`: `SM` itself, or the sharded store carrying
/// the KV service's (a clerk of the KV interface talking to shard groups).
pub trait Carries<SM: StateMachine>: StateMachine {
    /// `SM`'s request as this service's.
    fn request(r: Request<SM::Command, SM::Query>) -> Request<Self::Command, Self::Query>;
    /// This service's answer as `SM`'s; `None` for an answer `SM` has no such output for
    /// (the clerk ignores it, as any unexpected answer).
    fn reply(r: Reply<Self::Output>) -> Option<Reply<SM::Output>>;
}

impl<SM: StateMachine> Carries<SM> for SM {
    fn request(r: Request<SM::Command, SM::Query>) -> Request<SM::Command, SM::Query> {
        r
    }

    fn reply(r: Reply<SM::Output>) -> Option<Reply<SM::Output>> {
        Some(r)
    }
}

/// A KV read travels as `ShardQuery::Kv`; writes are the same commands; only
/// `ShardOutput::Kv` answers a KV request.
impl Carries<KvStore> for ShardKv {
    fn request(
        r: Request<shardkv_kv::KvCommand, shardkv_kv::KvQuery>,
    ) -> shardkv_shardkv::ShardRequest {
        shardkv_shardkv::kv_request(r)
    }

    fn reply(r: Reply<ShardOutput>) -> Option<Reply<shardkv_kv::KvOutput>> {
        match r {
            Ok(ShardOutput::Kv(o)) => Some(Ok(o)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
