//! [`ShardKvClerk`]: a simulated client of the sharded store. Its KV operations run on the
//! production sharded clerk core (`ClerkCore<KvStore, ShardRouter>`, i.e. `ShardClerk`),
//! sent to shard groups as `ShardRequest`s; whenever the core has no route
//! (`Next::Refresh`: no config yet, an unassigned shard, or a group answered `WrongGroup`)
//! a controller clerk over the same network fetches the latest config, the router gets it,
//! and the operation resumes. Config queries are paced: at most one per
//! [`REFRESH_EVERY_MS`], the first at once.

use crate::clerk::{Ended, EndedOf, SIM_CLERK_POLICY, SimClerk};
use crate::cluster::Sim;
use crate::ctrl::query;
use crate::event::ClientEvent;
use crate::kv_clerk::{KvClerk, KvClerkIn};
use crate::service_app::ServiceApp;
use shardkv_client::{KvOp, Naming, RetryPolicy, ShardRouter};
use shardkv_ctrl::{CtrlReply, ShardCtrl};
use shardkv_kv::KvStore;
use shardkv_shardkv::ShardKv;
use shardkv_types::{Gid, NodeId, Rng};

/// The controller clerk of the sharded clerk at `a` has address `a | CTRL_ADDR`.
pub const CTRL_ADDR: u64 = 1 << 40;
/// The least time between two config queries of one clerk.
pub const REFRESH_EVERY_MS: u64 = 50;
/// The timer token of a paced config query (the controller clerk's own tokens are below).
const REFRESH_TIMER: u64 = 1 << 62;

/// A client of the sharded store: a KV clerk routed by config, and the controller clerk
/// that fetches configs for it.
#[derive(Debug)]
pub struct ShardKvClerk {
    kv: SimClerk<KvStore, ShardRouter, ShardKv>,
    ctrl: SimClerk<ShardCtrl>,
    /// When the last config query started (µs of virtual time), if any.
    last_query_us: Option<u64>,
    /// A paced query waits for its timer.
    query_pending: bool,
    /// Config queries made so far.
    pub refreshes: u64,
}

impl ShardKvClerk {
    /// The config the clerk routes by, if it has one.
    pub fn config(&self) -> Option<&shardkv_ctrl::Config> {
        self.kv.router().config()
    }

    /// Hands the clerk a config (e.g. one from another controller: the rejection test's
    /// forged view). It is used until the clerk fetches a newer one.
    pub fn set_config(&mut self, c: shardkv_ctrl::Config) {
        self.kv.router_mut().set_config(c);
    }

    /// After any event: if the KV operation waits for a config and no query is running,
    /// start one (at once, or when the pacing allows).
    fn refresh_if_wanted<A>(&mut self, sim: &mut Sim<A>) -> Option<EndedOf<KvStore>>
    where
        A: ServiceApp<ShardKv> + ServiceApp<ShardCtrl>,
    {
        if !self.kv.wants_config() || !self.ctrl.is_idle() || self.query_pending {
            return None;
        }
        let due = self
            .last_query_us
            .map_or(0, |t| t + REFRESH_EVERY_MS * 1000);
        if sim.now < due {
            self.query_pending = true;
            let ms = (due - sim.now).div_ceil(1000);
            sim.client_timer(self.ctrl.addr, REFRESH_TIMER, ms);
            return None;
        }
        self.query(sim)
    }

    fn query<A>(&mut self, sim: &mut Sim<A>) -> Option<EndedOf<KvStore>>
    where
        A: ServiceApp<ShardKv> + ServiceApp<ShardCtrl>,
    {
        self.last_query_us = Some(sim.now);
        self.refreshes += 1;
        let ended = self.ctrl.begin(sim, query(None));
        self.on_config(sim, ended)
    }

    /// The config query ended: a config resumes the KV operation; anything else asks again.
    fn on_config<A>(
        &mut self,
        sim: &mut Sim<A>,
        ended: Option<EndedOf<ShardCtrl>>,
    ) -> Option<EndedOf<KvStore>>
    where
        A: ServiceApp<ShardKv> + ServiceApp<ShardCtrl>,
    {
        match ended? {
            Ended::Done {
                out: Ok(CtrlReply::Config(c)),
                ..
            } => {
                self.kv.router_mut().set_config(c);
                let ended = self.kv.resume(sim);
                ended.or_else(|| self.refresh_if_wanted(sim))
            }
            _ => self.refresh_if_wanted(sim),
        }
    }
}

impl KvClerk for ShardKvClerk {
    /// `gid` and `servers` are the controller group's.
    fn create(
        addr: u64,
        gid: Gid,
        servers: Vec<NodeId>,
        policy: RetryPolicy,
        mut rng: Rng,
    ) -> Self {
        let router = ShardRouter::new(Naming::NodeIds);
        let kv = SimClerk::with_router(addr, router, policy, rng.fork());
        let ctrl = SimClerk::new(addr | CTRL_ADDR, gid, servers, SIM_CLERK_POLICY, rng);
        ShardKvClerk {
            kv,
            ctrl,
            last_query_us: None,
            query_pending: false,
            refreshes: 0,
        }
    }

    fn home(addr: u64) -> u64 {
        addr & !CTRL_ADDR
    }

    fn sessions_expired(&self) -> u64 {
        self.kv.sessions_expired
    }

    fn is_idle(&self) -> bool {
        self.kv.is_idle()
    }

    fn set_policy(&mut self, policy: RetryPolicy) {
        self.kv.set_policy(policy);
    }

    fn give_up(&mut self) -> Option<EndedOf<KvStore>> {
        self.ctrl.give_up();
        self.kv.give_up()
    }
}

impl<A> KvClerkIn<A> for ShardKvClerk
where
    A: ServiceApp<ShardKv> + ServiceApp<ShardCtrl>,
{
    fn begin(&mut self, sim: &mut Sim<A>, op: KvOp) -> Option<EndedOf<KvStore>> {
        let ended = self.kv.begin(sim, op);
        ended.or_else(|| self.refresh_if_wanted(sim))
    }

    fn on_event(
        &mut self,
        sim: &mut Sim<A>,
        ev: ClientEvent<A::Response>,
    ) -> Option<EndedOf<KvStore>> {
        if ev.client() & CTRL_ADDR == 0 {
            let ended = self.kv.on_event(sim, ev);
            return ended.or_else(|| self.refresh_if_wanted(sim));
        }
        if let ClientEvent::Timer {
            token: REFRESH_TIMER,
            ..
        } = ev
        {
            self.query_pending = false;
            return self.refresh_if_wanted(sim);
        }
        let ended = self.ctrl.on_event(sim, ev);
        self.on_config(sim, ended)
    }
}
