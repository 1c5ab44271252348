//! [`Router`]: the clerk core's hook for choosing the group that serves a request.

use shardkv_rsm::Request;
use shardkv_types::{Gid, NodeId};

/// A group and its servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub gid: Gid,
    /// Invariant: not empty.
    pub servers: Vec<NodeId>,
}

/// Chooses the group that serves a request now. The sharded clerk routes by its cached
/// config and refreshes it when a server answers `WrongGroup`.
pub trait Router<C, Q> {
    /// The group serving `req` now, or `None` when a newer config is needed first.
    fn route(&self, req: &Request<C, Q>) -> Option<Route>;

    /// A server answered `WrongGroup`: the cached config is out of date. Until the shell
    /// hands the router a newer config, `route` should answer `None` for the requests the
    /// stale config routed there.
    fn stale(&mut self);
}

/// One fixed group: the KV service of one replica group, the shard controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SingleGroup(pub Route);

impl SingleGroup {
    /// # Panics
    /// If `servers` is empty.
    pub fn new(gid: Gid, servers: Vec<NodeId>) -> SingleGroup {
        assert!(!servers.is_empty(), "a group has at least one server");
        SingleGroup(Route { gid, servers })
    }
}

impl<C, Q> Router<C, Q> for SingleGroup {
    fn route(&self, _: &Request<C, Q>) -> Option<Route> {
        Some(self.0.clone())
    }

    fn stale(&mut self) {}
}
