//! The async driver: the one loop that runs a [`ClerkCore`] over gRPC for every client:
//! the KV [`crate::Client`] of one replica group or of a sharded cluster, the
//! [`crate::CtrlClient`].
//!
//! Where requests go is the driver's [`Topology`]: one fixed group ([`Fixed`], with the
//! [`SingleGroup`] router), or the groups of the cluster's current config
//! ([`crate::topology::Sharded`], with the [`crate::ShardRouter`]), which also answers the
//! core's [`Next::Refresh`] by asking the controller for a newer config.
//!
//! The core decides (which server, whether to retry, what "may have applied" means); this
//! loop only executes its decisions against the wall clock: it sleeps the backoff, bounds
//! each attempt and the whole operation, opens and resets connections, maps the servers'
//! node ids in leader hints onto endpoint slots (adding a slot for a hinted leader whose
//! address the endpoints of a fixed group lack, see [`Endpoints::learn_addr`]), and turns transport failures into the
//! core's events (`on_unreachable` when nothing was sent, `on_timeout` when a request may
//! have reached a server, `on_unreadable` when an answer exceeds the frame limit). An
//! attempt silent for the hedge delay stays open (at most one per server, each bounded by
//! the attempt timeout) while the core's next attempt goes out; the first answer from any
//! of them wins, and the rest are dropped when the operation ends. What differs between
//! services is only how one request travels: a [`Service`] sends it on a channel and
//! decodes the answer.

use crate::endpoints::{Dial, Endpoints};
use crate::in_process::Local;
use crate::{CLERK_TICK_MS, ClerkCore, Error, Next, Op, RetryPolicy, Router, SingleGroup};
use shardkv_rsm::{Reply, Request, StateMachine};
use shardkv_types::{ClientId, Gid, NodeId, Rng};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

/// Bounds on one operation.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one attempt may wait for a server's answer. Longer than the server's own
    /// deadline (2 s by default), so a slow leader answers `Timeout` itself.
    pub attempt_timeout: Duration,
    /// How long an attempt may stay silent before the same request is also sent to the
    /// next member (the silent attempt stays open up to `attempt_timeout`; the first
    /// answer wins). A frozen leader then costs this, not `attempt_timeout`. Zero: no
    /// hedging.
    pub hedge_after: Duration,
    /// How long one operation may take over all its attempts.
    pub op_timeout: Duration,
    /// The most attempts of one operation.
    pub attempts_max: u32,
    pub connect_timeout: Duration,
    /// The longest pause between attempts when no leader is known.
    pub backoff_max: Duration,
    /// The group the endpoints serve, sent with every KV request; `Gid(0)`: whatever KV
    /// group the servers host (a server hosting several needs the group named).
    pub group: Gid,
    /// Connect with TLS (`shardkv_net::tls::client_config`); `None`: plaintext.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// The server of the process this client runs in, if any: KV requests for its own
    /// address are handed to it without a connection ([`crate::in_process`]).
    pub in_process: Option<Local>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attempt_timeout: Duration::from_millis(2500),
            hedge_after: Duration::from_millis(300),
            op_timeout: Duration::from_secs(15),
            attempts_max: 200,
            connect_timeout: Duration::from_millis(500),
            backoff_max: Duration::from_millis(200),
            group: Gid(0),
            tls: None,
            in_process: None,
        }
    }
}

impl ClientOptions {
    /// How connections are opened.
    pub fn dial(&self) -> Dial {
        Dial {
            timeout: self.connect_timeout,
            tls: self.tls.clone(),
        }
    }

    /// The clerk core's policy for these options, in clerk ticks.
    fn policy(&self) -> RetryPolicy {
        let ticks = |d: Duration| (d.as_millis() as u64).div_ceil(CLERK_TICK_MS);
        RetryPolicy {
            attempt_ticks: ticks(self.attempt_timeout),
            hedge_ticks: ticks(self.hedge_after),
            backoff_ticks_max: ticks(self.backoff_max),
            attempts_max: self.attempts_max,
            op_ticks_max: Some(ticks(self.op_timeout)),
        }
    }
}

/// The request type of a service's state machine.
pub(crate) type Req<S> = Request<
    <<S as Service>::Machine as StateMachine>::Command,
    <<S as Service>::Machine as StateMachine>::Query,
>;

/// The output type of a service's state machine.
pub(crate) type Out<S> = <<S as Service>::Machine as StateMachine>::Output;

/// Why one call produced no answer.
pub(crate) enum CallFailure {
    /// The RPC failed (transport error, deadline, a refused frame, no such service).
    Status(tonic::Status),
    /// An answer came but does not decode.
    Malformed(String),
}

/// How one request of a service travels: the only part of a client that knows its RPCs.
pub(crate) trait Service {
    /// The state machine the group replicates (for its request and output types).
    type Machine: StateMachine<Command: Send, Query: Send, Output: Send>;
    /// What the service is, for messages: "the KV service".
    const WHAT: &'static str;
    /// The largest request frame the servers accept (an over-limit one is refused before
    /// it is decoded: surely not applied).
    const FRAME_BYTES_MAX: usize;

    /// Sends `req` for `group` on `channel`, the connection of `endpoints`' `slot`, once;
    /// on an answer, who answered, what, and the leader (id and address) a `NotLeader` or
    /// `LostLeadership` answer hints at when it carries an address (`shardkv_net::hint`).
    fn call(
        endpoints: &Endpoints,
        slot: usize,
        channel: Channel,
        group: Gid,
        req: Req<Self>,
    ) -> impl Future<Output = Result<Hinted<Out<Self>>, CallFailure>> + Send;

    /// Serves `req` in this process when `endpoints`' `slot` is this process's own address
    /// ([`crate::in_process`]); `Err(req)` hands it back to travel by connection. By
    /// default every request travels.
    fn call_in_process(
        _endpoints: &Endpoints,
        _slot: usize,
        _group: Gid,
        req: Req<Self>,
    ) -> Result<LocalAnswer<Out<Self>>, Req<Self>> {
        Err(req)
    }
}

/// An in-process call's answer, in flight.
pub(crate) type LocalAnswer<O> = Pin<Box<dyn Future<Output = Hinted<O>> + Send>>;

/// Who answered, the answer, and the leader it names with its address (see
/// [`Service::call`]).
pub(crate) type Hinted<O> = (NodeId, Reply<O>, Option<(NodeId, String)>);

/// Where a driver's requests go, for its router `R`.
pub(crate) trait Topology<R>: Sized + Send {
    /// The endpoints of group `gid`, as `router` knows it now; slot `i` is the clerk's
    /// `NodeId(i + 1)`. `Err`: the group cannot be reached (nothing was sent).
    fn endpoints(&mut self, router: &R, gid: Gid) -> Result<Arc<Endpoints>, Error>;

    /// The core asked for a newer config ([`Next::Refresh`]): hand `router` one, within
    /// `within`. `Err` when none could be had (the driver backs off and asks again while
    /// the operation has time).
    fn refresh(
        &mut self,
        router: &mut R,
        within: Duration,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The same topology for another session (sharing connections).
    fn session(&self) -> Self;

    /// `endpoints` may have grown (a leader hint named an address they lacked): make
    /// `router` route to their new slots too. By default nothing (a topology whose
    /// endpoints do not learn).
    fn learned(&self, _router: &mut R, _endpoints: &Endpoints) {}
}

/// One fixed group at known endpoints.
pub(crate) struct Fixed(pub(crate) Arc<Endpoints>);

impl Topology<SingleGroup> for Fixed {
    fn endpoints(&mut self, _: &SingleGroup, _: Gid) -> Result<Arc<Endpoints>, Error> {
        Ok(self.0.clone())
    }

    /// A single group always has a route: the core never asks.
    async fn refresh(&mut self, _: &mut SingleGroup, _: Duration) -> Result<(), Error> {
        Err(Error::Unavailable {
            reason: "no group serves this request".into(),
        })
    }

    fn session(&self) -> Self {
        Fixed(self.0.clone())
    }

    /// Slot `i` is the clerk's `NodeId(i + 1)`: the group's servers are all the slots.
    fn learned(&self, router: &mut SingleGroup, endpoints: &Endpoints) {
        let servers = &mut router.0.servers;
        if servers.len() < endpoints.len() {
            *servers = (1..=endpoints.len() as u64).map(NodeId).collect();
        }
    }
}

/// What one attempt came to.
enum Attempt<O> {
    /// A server answered.
    Reply(Reply<O>),
    /// Nothing was sent (no connection could be made, or the server does not serve this
    /// service). Surely not applied there.
    NotSent(String),
    /// The request may have reached a server, but no answer came.
    Lost(String),
    /// An answer came but exceeds the frame limit (the request itself was within the
    /// limits: the clerk core checked it), so it cannot be read. A write may have applied.
    Unreadable(String),
}

/// An attempt sent and not yet answered.
struct Flight<'a, O> {
    gid: Gid,
    to: NodeId,
    endpoints: Arc<Endpoints>,
    fut: Pin<Box<dyn Future<Output = Attempt<O>> + Send + 'a>>,
}

/// What one open attempt came to.
struct Landed<O> {
    to: NodeId,
    endpoints: Arc<Endpoints>,
    attempt: Attempt<O>,
}

/// Waits up to `within` for an open attempt to land: any attempt's answer, or the failure
/// of the `latest` one (an earlier attempt that fails without an answer was already given
/// up as silent, so it is dropped quietly). `None` when nothing landed in time.
async fn wait_any<O>(
    flights: &mut Vec<Flight<'_, O>>,
    latest: Option<(Gid, NodeId)>,
    within: Duration,
) -> Option<Landed<O>> {
    let landed = std::future::poll_fn(|cx| {
        let mut i = 0;
        while i < flights.len() {
            let Poll::Ready(attempt) = flights[i].fut.as_mut().poll(cx) else {
                i += 1;
                continue;
            };
            let f = flights.swap_remove(i);
            if matches!(attempt, Attempt::Reply(_)) || latest == Some((f.gid, f.to)) {
                return Poll::Ready(Landed {
                    to: f.to,
                    endpoints: f.endpoints,
                    attempt,
                });
            }
        }
        Poll::Pending
    });
    tokio::time::timeout(within, landed).await.ok()
}

/// One client session over one [`Service`]: a [`ClerkCore`] with a random client id (one
/// sequence stream, whatever group a request goes to), one operation at a time, routed by
/// `R` to the groups of the topology `T`.
pub(crate) struct Driver<S: Service, R = SingleGroup, T = Fixed> {
    topology: T,
    opts: ClientOptions,
    clerk: ClerkCore<S::Machine, R>,
    /// The clerk's clock: ticks count from here.
    epoch: Instant,
}

impl<S: Service> Driver<S> {
    /// A session for the group at `endpoints` (parsed; connections open lazily).
    pub(crate) fn connect(endpoints: &[String], opts: ClientOptions) -> Result<Self, Error> {
        // A leader hint naming a member not in `endpoints` adds it (see `Fixed::learned`).
        let endpoints = Endpoints::parse(endpoints, opts.dial())?.learning();
        let endpoints = Arc::new(endpoints.in_process(opts.in_process.clone()));
        let servers = (1..=endpoints.len() as u64).map(NodeId).collect();
        let router = SingleGroup::new(opts.group, servers);
        Ok(Driver::on(Fixed(endpoints), router, opts))
    }
}

type Cmd<S> = <<S as Service>::Machine as StateMachine>::Command;
type Qry<S> = <<S as Service>::Machine as StateMachine>::Query;

impl<S, R, T> Driver<S, R, T>
where
    S: Service,
    R: Router<Cmd<S>, Qry<S>> + Clone,
    T: Topology<R>,
{
    /// A session routed by `router` over `topology`.
    pub(crate) fn on(topology: T, router: R, opts: ClientOptions) -> Self {
        let seed = RandomState::new().hash_one(Instant::now());
        Driver {
            clerk: ClerkCore::new(router, opts.policy(), Rng::new(seed)),
            topology,
            opts,
            epoch: Instant::now(),
        }
    }

    /// Another session (new client id) over the same connections, starting from this
    /// one's routes.
    pub(crate) fn session(&self) -> Self {
        let router = self.clerk.router().clone();
        Driver::on(self.topology.session(), router, self.opts.clone())
    }

    pub(crate) fn id(&self) -> ClientId {
        self.clerk.id
    }

    /// See [`ClerkCore::resume_session`].
    pub(crate) fn resume_session(
        &mut self,
        id: ClientId,
        next_seq: shardkv_types::Seq,
        retrying: bool,
    ) {
        self.clerk.resume_session(id, next_seq, retrying);
    }

    /// Runs one operation to its end: an output, or an error whose [`Error::outcome`] says
    /// whether it may have applied.
    pub(crate) async fn execute(&mut self, op: Op<Cmd<S>, Qry<S>>) -> Result<Out<S>, Error> {
        let started = Instant::now();
        let mut next = self.clerk.begin(op, self.now_ticks());
        // Refreshes in a row without an attempt in between: a config that does not route the
        // request yet (its shard unassigned, its group not reachable by name) is asked for
        // again after a growing pause, not in a tight loop.
        let mut refreshes: u32 = 0;
        // The attempts sent and not yet answered: with hedging, a silent one stays open
        // while the next server is tried. Dropped (cancelled) when the operation ends.
        let mut flights: Vec<Flight<'_, Out<S>>> = Vec::new();
        loop {
            let left = self.opts.op_timeout.saturating_sub(started.elapsed());
            let (group, to, delay_ticks) = match next {
                Next::Done(out) => return Ok(out),
                Next::Failed(e) => return Err(e),
                Next::Refresh => {
                    if refreshes > 0 {
                        let pause = Duration::from_millis(CLERK_TICK_MS << refreshes.min(6));
                        tokio::time::sleep(pause.min(self.opts.backoff_max).min(left)).await;
                    }
                    refreshes += 1;
                    let left = self.opts.op_timeout.saturating_sub(started.elapsed());
                    next = self.refresh(left).await;
                    continue;
                }
                Next::Send {
                    gid,
                    to,
                    delay_ticks,
                } => (gid, to, delay_ticks),
            };
            refreshes = 0;
            // The backoff pause; an earlier attempt's answer may end it.
            if delay_ticks > 0 {
                let pause = Duration::from_millis(delay_ticks * CLERK_TICK_MS);
                if let Some(landed) = wait_any(&mut flights, None, pause).await {
                    next = self.land(landed);
                    continue;
                }
            }
            let left = self.opts.op_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                // Out of time before this attempt was sent: the operation ends with what
                // the attempts so far came to.
                next = self.clerk.expire(self.now_ticks());
                continue;
            }
            let endpoints = match self.topology.endpoints(self.clerk.router(), group) {
                Ok(e) => e,
                Err(e) => {
                    next = self.clerk.on_unreachable(self.now_ticks(), e.to_string());
                    continue;
                }
            };
            // The config's server list and the endpoints parsed from it disagree (a
            // malformed name in the config): that server cannot be reached.
            if to.0 == 0 || to.0 as usize > endpoints.len() {
                let reason = format!("group {group} has no usable address for member {to}");
                next = self.clerk.on_unreachable(self.now_ticks(), reason);
                continue;
            }
            let slot = (to.0 - 1) as usize;
            let addr = endpoints.addr(slot).to_string();
            // An attempt to `to` still open (a silent server named again) is waited for,
            // not repeated: at most one attempt per server is open.
            if !flights.iter().any(|f| f.gid == group && f.to == to) {
                let req = self
                    .clerk
                    .current()
                    .cloned()
                    .expect("an operation in flight");
                let timeout = left.min(self.opts.attempt_timeout);
                let ep = endpoints.clone();
                let fut = async move { attempt::<S>(&ep, slot, group, req, timeout).await };
                flights.push(Flight {
                    gid: group,
                    to,
                    endpoints,
                    fut: Box::pin(fut),
                });
            }
            let silence = self.clerk.policy().silence_ticks() * CLERK_TICK_MS;
            let silence = Duration::from_millis(silence).min(left);
            next = match wait_any(&mut flights, Some((group, to)), silence).await {
                Some(landed) => self.land(landed),
                // Silent so far: the core tries the next server; this attempt stays open
                // (when hedging) and its answer still counts.
                None => {
                    let reason = format!("{addr} did not answer within {silence:?}");
                    self.clerk.on_timeout(self.now_ticks(), reason)
                }
            };
        }
    }

    /// Hands what an attempt came to to the core.
    fn land(&mut self, landed: Landed<Out<S>>) -> Next<Out<S>> {
        let now = self.now_ticks();
        match landed.attempt {
            Attempt::Reply(reply) => {
                self.topology
                    .learned(self.clerk.router_mut(), &landed.endpoints);
                let reply = reply.map_err(|e| clerk_hint(&landed.endpoints, e));
                self.clerk.on_response(now, landed.to, reply)
            }
            Attempt::NotSent(reason) => self.clerk.on_unreachable(now, reason),
            Attempt::Lost(reason) => self.clerk.on_timeout(now, reason),
            Attempt::Unreadable(reason) => self.clerk.on_unreadable(now, reason),
        }
    }

    /// Answers [`Next::Refresh`]: a newer config from the topology, then the core resumes.
    /// When none can be had, waits the longest backoff and lets the core ask again, until
    /// the operation's time (`left`) is up.
    async fn refresh(&mut self, left: Duration) -> Next<Out<S>> {
        if left.is_zero() {
            return self.clerk.expire(self.now_ticks());
        }
        let started = tokio::time::Instant::now();
        let refreshed = self.topology.refresh(self.clerk.router_mut(), left).await;
        if let Err(e) = refreshed {
            // The refresh may have used all the time left: then its error is the
            // operation's (not the core's "no attempt made").
            let left = left.saturating_sub(started.elapsed());
            let pause = self.opts.backoff_max.min(left);
            tokio::time::sleep(pause).await;
            if pause >= left {
                return self.clerk.end(self.now_ticks(), e);
            }
        }
        self.clerk.resume(self.now_ticks())
    }

    /// Ticks of the clerk's clock since this session started.
    fn now_ticks(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 / CLERK_TICK_MS
    }
}

/// Rewrites a leader hint (a server's node id) into the clerk's id for that member
/// (endpoint slot + 1); an unknown member becomes no hint.
fn clerk_hint(endpoints: &Endpoints, e: Error) -> Error {
    let map = |leader: Option<NodeId>| {
        let slot = leader.and_then(|l| endpoints.slot_of(l))?;
        Some(NodeId(slot as u64 + 1))
    };
    match e {
        Error::NotLeader { leader } => Error::NotLeader {
            leader: map(leader),
        },
        Error::LostLeadership { leader } => Error::LostLeadership {
            leader: map(leader),
        },
        other => other,
    }
}

/// Sends `req` to `slot` once and waits up to `timeout`.
async fn attempt<S: Service>(
    endpoints: &Endpoints,
    slot: usize,
    group: Gid,
    req: Req<S>,
    timeout: Duration,
) -> Attempt<Out<S>> {
    let addr = endpoints.addr(slot);
    let req = match S::call_in_process(endpoints, slot, group, req) {
        Ok(call) => {
            return match tokio::time::timeout(timeout, call).await {
                Ok(hinted) => answered(endpoints, slot, hinted),
                Err(_) => Attempt::Lost(format!(
                    "this process ({addr}) did not answer within {timeout:?}"
                )),
            };
        }
        Err(req) => req,
    };
    let connect = tokio::time::timeout(timeout, endpoints.channel(slot)).await;
    let channel = match connect {
        Ok(Ok(c)) => c,
        Ok(Err(reason)) => return Attempt::NotSent(reason),
        Err(_) => return Attempt::NotSent(format!("connecting to {addr} timed out")),
    };
    match tokio::time::timeout(timeout, S::call(endpoints, slot, channel, group, req)).await {
        Ok(Ok(hinted)) => answered(endpoints, slot, hinted),
        Ok(Err(CallFailure::Malformed(e))) => {
            Attempt::Lost(format!("malformed reply from {addr}: {e}"))
        }
        Ok(Err(CallFailure::Status(status))) => on_status::<S>(endpoints, slot, status),
        Err(_) => Attempt::Lost(format!("{addr} did not answer within {timeout:?}")),
    }
}

/// A server's answer: who answered (and the leader it hints at) is learned.
fn answered<O>(endpoints: &Endpoints, slot: usize, (from, reply, hint): Hinted<O>) -> Attempt<O> {
    endpoints.learn(slot, from);
    if let Some((leader, leader_addr)) = hint {
        endpoints.learn_addr(leader, &leader_addr);
    }
    Attempt::Reply(reply)
}

fn on_status<S: Service>(
    endpoints: &Endpoints,
    slot: usize,
    status: tonic::Status,
) -> Attempt<Out<S>> {
    let addr = endpoints.addr(slot);
    match status.code() {
        // A frame over the limit. The request was within the limits (the clerk core
        // refuses any other before sending), so it is the answer that did not fit.
        Code::ResourceExhausted | Code::OutOfRange => Attempt::Unreadable(format!(
            "the answer from {addr} exceeds the limit of {} bytes ({})",
            S::FRAME_BYTES_MAX,
            status.message()
        )),
        // No such service on that port: nothing was applied, the connection is fine.
        Code::Unimplemented => Attempt::NotSent(format!(
            "{addr} does not serve {} (is it the right address?)",
            S::WHAT
        )),
        _ => {
            endpoints.reset(slot);
            Attempt::Lost(endpoints.explain(slot, &status))
        }
    }
}

/// The status's message and the errors under it (see [`crate::cause`]).
pub(crate) fn status_cause(status: &tonic::Status) -> String {
    let message = status.message();
    let Some(source) = std::error::Error::source(status) else {
        return message.to_string();
    };
    let below = crate::cause::chain(source);
    if message.is_empty() || below.starts_with(message) {
        below
    } else {
        format!("{message}: {below}")
    }
}
