//! [`KvClerk`]: what the KV harness ([`KvClients`](crate::KvClients)) drives — a clerk of
//! the key-value interface, whatever stands behind it: one KV group ([`SimClerk`]), or the
//! sharded store reached through the controller's configs
//! ([`ShardKvClerk`](crate::ShardKvClerk)). Workloads, histories and checks are the same
//! for both.

use crate::app::App;
use crate::clerk::{EndedOf, SimClerk};
use crate::cluster::Sim;
use crate::event::ClientEvent;
use crate::service_app::ServiceApp;
use shardkv_client::{KvOp, RetryPolicy};
use shardkv_kv::KvStore;
use shardkv_types::{Gid, NodeId, Rng};

/// A KV clerk's state, independent of the simulator it runs in.
pub trait KvClerk: Sized {
    /// A clerk at network address `addr` entering through group `gid` of `servers`: the KV
    /// group itself, or the controller group of the sharded store.
    fn create(addr: u64, gid: Gid, servers: Vec<NodeId>, policy: RetryPolicy, rng: Rng) -> Self;
    /// The address of the clerk that uses network address `addr` (a clerk may use more
    /// than one); every address a clerk at `a` uses maps to `a`.
    fn home(addr: u64) -> u64;
    fn is_idle(&self) -> bool;
    /// Changes the retry policy of its KV operations (e.g. drops the deadline).
    fn set_policy(&mut self, policy: RetryPolicy);
    /// Gives up on the operation in flight, if any: it ends as unknown.
    fn give_up(&mut self) -> Option<EndedOf<KvStore>>;
    /// Operations that ended with `SessionExpired`.
    fn sessions_expired(&self) -> u64;
}

/// A KV clerk driven in a simulator of app `A`.
pub trait KvClerkIn<A: App>: KvClerk {
    /// Starts `op` (abandoning one in flight, whose end is then not reported).
    fn begin(&mut self, sim: &mut Sim<A>, op: KvOp) -> Option<EndedOf<KvStore>>;
    /// Handles an event addressed to any of this clerk's addresses; returns how the
    /// operation ended, if it did.
    fn on_event(
        &mut self,
        sim: &mut Sim<A>,
        ev: ClientEvent<A::Response>,
    ) -> Option<EndedOf<KvStore>>;
}

impl KvClerk for SimClerk<KvStore> {
    fn create(addr: u64, gid: Gid, servers: Vec<NodeId>, policy: RetryPolicy, rng: Rng) -> Self {
        SimClerk::new(addr, gid, servers, policy, rng)
    }

    fn home(addr: u64) -> u64 {
        addr
    }

    fn is_idle(&self) -> bool {
        SimClerk::is_idle(self)
    }

    fn set_policy(&mut self, policy: RetryPolicy) {
        SimClerk::set_policy(self, policy);
    }

    fn give_up(&mut self) -> Option<EndedOf<KvStore>> {
        SimClerk::give_up(self)
    }

    fn sessions_expired(&self) -> u64 {
        self.sessions_expired
    }
}

impl<A: ServiceApp<KvStore>> KvClerkIn<A> for SimClerk<KvStore> {
    fn begin(&mut self, sim: &mut Sim<A>, op: KvOp) -> Option<EndedOf<KvStore>> {
        SimClerk::begin(self, sim, op)
    }

    fn on_event(
        &mut self,
        sim: &mut Sim<A>,
        ev: ClientEvent<A::Response>,
    ) -> Option<EndedOf<KvStore>> {
        SimClerk::on_event(self, sim, ev)
    }
}
