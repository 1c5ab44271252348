//! [`SimClerk`]: one simulated client of any replicated service. It runs the production
//! clerk core ([`ClerkCore`]) over the simulated network and clock: sends each attempt as a
//! client request, sets the attempt timer and the backoff pause as client timers (in clerk
//! ticks of virtual time), and reports how each operation ended. Workloads and history
//! checks live with the service's harness (`kv.rs`, `ctrl.rs`).
//!
//! The clerk is generic over its router `R` (one fixed group, or the sharded store's
//! config) and over the wire service `W` its requests travel as (`SM` itself, or the
//! sharded store carrying KV requests, see [`Carries`]). When the router has no route
//! (`Next::Refresh`) the clerk waits until its owner hands the router a config
//! ([`SimClerk::router_mut`]) and calls [`SimClerk::resume`].

use crate::app::App;
use crate::cluster::Sim;
use crate::event::ClientEvent;
use crate::service_app::{Carries, ServiceApp};
use shardkv_client::{CLERK_TICK_MS, ClerkCore, Next, Op, RetryPolicy, Router, SingleGroup};
use shardkv_rsm::{Error, StateMachine};
use shardkv_types::{Gid, NodeId, Rng};
use std::marker::PhantomData;

/// The simulated clerks' policy: the production policy with a shorter attempt timeout
/// (there is no server-side deadline here: a request to a crashed or cut-off server simply
/// vanishes) and no attempt limit (a clerk gives up only at its deadline, if it has one).
pub const SIM_CLERK_POLICY: RetryPolicy = RetryPolicy {
    attempt_ticks: 25,
    hedge_ticks: 0,
    backoff_ticks_max: 20,
    attempts_max: u32::MAX,
    op_ticks_max: None,
};

/// What a clerk's operation in flight waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    /// The backoff before sending to `to`.
    Pause { to: NodeId },
    /// An answer from `to`.
    Answer { to: NodeId },
    /// A newer config for the router (the owner calls `resume`).
    Refresh,
}

#[derive(Debug)]
struct InFlight<C, Q> {
    op: Op<C, Q>,
    call_ns: u64,
    /// Bumped on every wait, so a timer set for an earlier one is ignored.
    wait_no: u64,
    waiting: Waiting,
}

/// How an operation ended.
#[derive(Debug)]
pub enum Ended<C, Q, O> {
    /// It took effect with this output.
    Done { op: Op<C, Q>, call_ns: u64, out: O },
    /// It may or may not have taken effect (a write enters a history as unknown).
    Unknown { op: Op<C, Q>, call_ns: u64 },
    /// It surely did not take effect.
    Failed {
        op: Op<C, Q>,
        call_ns: u64,
        error: Error,
    },
}

/// The end of an operation of state machine `SM`.
pub type EndedOf<SM> =
    Ended<<SM as StateMachine>::Command, <SM as StateMachine>::Query, <SM as StateMachine>::Output>;

/// One simulated client of a service replicated as `SM`, routed by `R`, whose requests
/// travel as those of service `W`.
pub struct SimClerk<SM: StateMachine, R = SingleGroup, W = SM> {
    /// The network address (and the history's client number).
    pub addr: u64,
    core: ClerkCore<SM, R>,
    /// Numbers operations; a response carries the number of the operation it answers.
    op_no: u64,
    inflight: Option<InFlight<SM::Command, SM::Query>>,
    wire: PhantomData<W>,
    /// Operations that ended with `SessionExpired` (the group had dropped the session).
    pub sessions_expired: u64,
}

impl<SM: StateMachine, R, W> std::fmt::Debug for SimClerk<SM, R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimClerk({}, op {})", self.addr, self.op_no)
    }
}

impl<SM: StateMachine> SimClerk<SM> {
    /// A clerk at network address `addr` for group `gid` of `servers`.
    pub fn new(addr: u64, gid: Gid, servers: Vec<NodeId>, policy: RetryPolicy, rng: Rng) -> Self {
        SimClerk::with_router(addr, SingleGroup::new(gid, servers), policy, rng)
    }
}

impl<SM, R, W> SimClerk<SM, R, W>
where
    SM: StateMachine,
    R: Router<SM::Command, SM::Query>,
    W: Carries<SM>,
{
    /// A clerk at network address `addr` routing with `router`.
    pub fn with_router(addr: u64, router: R, policy: RetryPolicy, rng: Rng) -> Self {
        SimClerk {
            addr,
            core: ClerkCore::new(router, policy, rng),
            op_no: 0,
            inflight: None,
            wire: PhantomData,
            sessions_expired: 0,
        }
    }

    /// The router.
    pub fn router(&self) -> &R {
        self.core.router()
    }

    /// The router, to hand it a newer config.
    pub fn router_mut(&mut self) -> &mut R {
        self.core.router_mut()
    }

    /// True when the operation in flight waits for a newer config (then call
    /// [`SimClerk::resume`] after handing one to the router).
    pub fn wants_config(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|f| f.waiting == Waiting::Refresh)
    }

    /// Goes on with the operation that waited for a config.
    pub fn resume<A: ServiceApp<W>>(&mut self, sim: &mut Sim<A>) -> Option<EndedOf<SM>> {
        if !self.wants_config() {
            return None;
        }
        let next = self.core.resume(ticks(sim));
        self.follow(sim, next)
    }

    /// Changes the clerk's retry policy (e.g. drops its deadline).
    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.core.set_policy(policy);
    }

    pub fn is_idle(&self) -> bool {
        self.inflight.is_none()
    }

    /// Starts `op` (abandoning one in flight, whose end is then not reported).
    pub fn begin<A>(
        &mut self,
        sim: &mut Sim<A>,
        op: Op<SM::Command, SM::Query>,
    ) -> Option<EndedOf<SM>>
    where
        A: ServiceApp<W>,
    {
        self.op_no += 1;
        self.inflight = Some(InFlight {
            op: op.clone(),
            call_ns: sim.now * 1000,
            wait_no: 0,
            waiting: Waiting::Pause { to: NodeId(0) },
        });
        let next = self.core.begin(op, ticks(sim));
        self.follow(sim, next)
    }

    /// Handles an event addressed to this clerk; returns how the operation ended, if it did.
    pub fn on_event<A>(
        &mut self,
        sim: &mut Sim<A>,
        ev: ClientEvent<A::Response>,
    ) -> Option<EndedOf<SM>>
    where
        A: ServiceApp<W>,
    {
        let now = ticks(sim);
        match ev {
            ClientEvent::Response {
                client_req,
                from,
                response,
                ..
            } => {
                if self.op_no != client_req || self.inflight.is_none() {
                    return None; // an answer to an earlier operation
                }
                let response = W::reply(A::unwrap(response)?)?;
                // Any attempt's answer is an answer to the same request.
                let next = self.core.on_response(now, from, response);
                self.follow(sim, next)
            }
            ClientEvent::Timer { token, .. } => {
                let f = self.inflight.as_ref()?;
                if token != self.op_no << 20 | f.wait_no {
                    return None;
                }
                match f.waiting {
                    Waiting::Pause { to } => {
                        self.send(sim, to);
                        None
                    }
                    Waiting::Answer { to } => {
                        let reason = format!("{to} did not answer in time");
                        let next = self.core.on_timeout(now, reason);
                        self.follow(sim, next)
                    }
                    Waiting::Refresh => None,
                }
            }
        }
    }

    /// Gives up on the operation in flight, if any: it ends as unknown.
    pub fn give_up(&mut self) -> Option<EndedOf<SM>> {
        let f = self.inflight.take()?;
        self.core.abandon();
        Some(Ended::Unknown {
            op: f.op,
            call_ns: f.call_ns,
        })
    }

    /// Does what the clerk core says next.
    fn follow<A>(&mut self, sim: &mut Sim<A>, next: Next<SM::Output>) -> Option<EndedOf<SM>>
    where
        A: ServiceApp<W>,
    {
        match next {
            Next::Send {
                to, delay_ticks, ..
            } if delay_ticks > 0 => {
                self.wait(sim, Waiting::Pause { to }, delay_ticks);
                None
            }
            Next::Send { to, .. } => {
                self.send(sim, to);
                None
            }
            Next::Done(out) => {
                let f = self.inflight.take().expect("in flight");
                Some(Ended::Done {
                    op: f.op,
                    call_ns: f.call_ns,
                    out,
                })
            }
            Next::Failed(error) => {
                let f = self.inflight.take().expect("in flight");
                if error == Error::SessionExpired {
                    self.sessions_expired += 1;
                }
                Some(if error.may_have_applied() {
                    Ended::Unknown {
                        op: f.op,
                        call_ns: f.call_ns,
                    }
                } else {
                    Ended::Failed {
                        op: f.op,
                        call_ns: f.call_ns,
                        error,
                    }
                })
            }
            Next::Refresh => {
                let f = self.inflight.as_mut().expect("in flight");
                f.wait_no += 1;
                f.waiting = Waiting::Refresh;
                None
            }
        }
    }

    /// Sets a timer for the next step.
    fn wait<A: App>(&mut self, sim: &mut Sim<A>, waiting: Waiting, ticks: u64) {
        let f = self.inflight.as_mut().expect("in flight");
        f.wait_no += 1;
        f.waiting = waiting;
        let token = self.op_no << 20 | f.wait_no;
        sim.client_timer(self.addr, token, ticks * CLERK_TICK_MS);
    }

    /// Sends the request in flight to `to` and waits for the answer.
    fn send<A>(&mut self, sim: &mut Sim<A>, to: NodeId)
    where
        A: ServiceApp<W>,
    {
        let req = self.core.current().expect("an operation in flight").clone();
        sim.client_send(self.addr, self.op_no, to, &A::wrap(W::request(req)));
        let ticks = self.core.policy().silence_ticks();
        self.wait(sim, Waiting::Answer { to }, ticks);
    }
}

/// The clerks' clock, in clerk ticks of virtual time.
fn ticks<A: App>(sim: &Sim<A>) -> u64 {
    sim.now / (CLERK_TICK_MS * 1000)
}
