//! The async driver: the one loop that runs a [`ClerkCore`] over gRPC for every client of
//! one replica group (the KV [`crate::Client`], the [`crate::CtrlClient`]).
//!
//! The core decides (which server, whether to retry, what "may have applied" means); this
//! loop only executes its decisions against the wall clock: it sleeps the backoff, bounds
//! each attempt and the whole operation, opens and resets connections, maps the servers'
//! node ids in leader hints onto endpoint slots, and turns transport failures into the
//! core's events (`on_unreachable` when nothing was sent, `on_timeout` when a request may
//! have reached a server). What differs between services is only how one request travels:
//! a [`Service`] sends it on a channel and decodes the answer.

use crate::endpoints::Endpoints;
use crate::{CLERK_TICK_MS, ClerkCore, Error, Next, Op, RetryPolicy, SingleGroup};
use shardkv_rsm::{Reply, Request, StateMachine};
use shardkv_types::{ClientId, Gid, NodeId, Rng};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

/// Bounds on one operation.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one attempt may wait for a server's answer. Longer than the server's own
    /// deadline (2 s by default), so a slow leader answers `Timeout` itself.
    pub attempt_timeout: Duration,
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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attempt_timeout: Duration::from_millis(2500),
            op_timeout: Duration::from_secs(15),
            attempts_max: 200,
            connect_timeout: Duration::from_millis(500),
            backoff_max: Duration::from_millis(200),
            group: Gid(0),
        }
    }
}

impl ClientOptions {
    /// The clerk core's policy for these options, in clerk ticks.
    fn policy(&self) -> RetryPolicy {
        let ticks = |d: Duration| (d.as_millis() as u64).div_ceil(CLERK_TICK_MS);
        RetryPolicy {
            attempt_ticks: ticks(self.attempt_timeout),
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
    type Machine: StateMachine;
    /// What the service is, for messages: "the KV service".
    const WHAT: &'static str;
    /// The largest request frame the servers accept (an over-limit one is refused before
    /// it is decoded: surely not applied).
    const FRAME_BYTES_MAX: usize;

    /// Sends `req` for `group` on `channel` once; on an answer, who answered and what.
    fn call(
        channel: Channel,
        group: Gid,
        req: Req<Self>,
    ) -> impl Future<Output = Result<(NodeId, Reply<Out<Self>>), CallFailure>> + Send;
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
    /// The server refused the frame (over its size limit). Surely not applied.
    Refused(Error),
}

/// One client session of one group over one [`Service`]: a [`ClerkCore`] with a random
/// client id, one operation at a time, and the shared connections.
pub(crate) struct Driver<S: Service> {
    endpoints: Arc<Endpoints>,
    opts: ClientOptions,
    clerk: ClerkCore<S::Machine, SingleGroup>,
    /// The clerk's clock: ticks count from here.
    epoch: Instant,
}

impl<S: Service> Driver<S> {
    /// A session for the group at `endpoints` (parsed; connections open lazily).
    pub(crate) fn connect(endpoints: &[String], opts: ClientOptions) -> Result<Self, Error> {
        let endpoints = Arc::new(Endpoints::parse(endpoints, opts.connect_timeout)?);
        Ok(Driver::on(endpoints, opts))
    }

    fn on(endpoints: Arc<Endpoints>, opts: ClientOptions) -> Self {
        let servers = (1..=endpoints.len() as u64).map(NodeId).collect();
        let seed = RandomState::new().hash_one(Instant::now());
        let router = SingleGroup::new(opts.group, servers);
        Driver {
            clerk: ClerkCore::new(router, opts.policy(), Rng::new(seed)),
            endpoints,
            opts,
            epoch: Instant::now(),
        }
    }

    /// Another session (new client id) over the same connections.
    pub(crate) fn session(&self) -> Self {
        Driver::on(self.endpoints.clone(), self.opts.clone())
    }

    pub(crate) fn id(&self) -> ClientId {
        self.clerk.id
    }

    /// Runs one operation to its end: an output, or an error whose [`Error::outcome`] says
    /// whether it may have applied.
    pub(crate) async fn execute(
        &mut self,
        op: Op<<S::Machine as StateMachine>::Command, <S::Machine as StateMachine>::Query>,
    ) -> Result<Out<S>, Error> {
        let started = Instant::now();
        let mut next = self.clerk.begin(op, self.now_ticks());
        loop {
            let (group, to, delay_ticks) = match next {
                Next::Done(out) => return Ok(out),
                Next::Failed(e) => return Err(e),
                // A single group always has a route.
                Next::Refresh => {
                    let e = Error::Unavailable {
                        reason: "no group serves this request".into(),
                    };
                    next = self.clerk.end(self.now_ticks(), e);
                    continue;
                }
                Next::Send {
                    gid,
                    to,
                    delay_ticks,
                } => (gid, to, delay_ticks),
            };
            if delay_ticks > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ticks * CLERK_TICK_MS)).await;
            }
            let left = self.opts.op_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                // Out of time before this attempt was sent: the operation ends with what
                // the attempts so far came to.
                next = self.clerk.expire(self.now_ticks());
                continue;
            }
            let req = self
                .clerk
                .current()
                .cloned()
                .expect("an operation in flight");
            assert!(to.0 >= 1 && to.0 as usize <= self.endpoints.len());
            let slot = (to.0 - 1) as usize;
            let attempt = self.attempt(slot, group, req, left.min(self.opts.attempt_timeout));
            let attempt = attempt.await;
            let now = self.now_ticks();
            next = match attempt {
                Attempt::Reply(reply) => {
                    let reply = reply.map_err(|e| self.clerk_hint(e));
                    self.clerk.on_response(now, to, reply)
                }
                Attempt::NotSent(reason) => self.clerk.on_unreachable(now, reason),
                Attempt::Lost(reason) => self.clerk.on_timeout(now, reason),
                Attempt::Refused(e) => self.clerk.end(now, e),
            };
        }
    }

    /// Ticks of the clerk's clock since this session started.
    fn now_ticks(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 / CLERK_TICK_MS
    }

    /// Rewrites a leader hint (a server's node id) into the clerk's id for that member
    /// (endpoint slot + 1); an unknown member becomes no hint.
    fn clerk_hint(&self, e: Error) -> Error {
        let map = |leader: Option<NodeId>| {
            let slot = leader.and_then(|l| self.endpoints.slot_of(l))?;
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
    async fn attempt(
        &self,
        slot: usize,
        group: Gid,
        req: Req<S>,
        timeout: Duration,
    ) -> Attempt<Out<S>> {
        let addr = self.endpoints.addr(slot);
        let connect = tokio::time::timeout(timeout, self.endpoints.channel(slot)).await;
        let channel = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(reason)) => return Attempt::NotSent(reason),
            Err(_) => return Attempt::NotSent(format!("connecting to {addr} timed out")),
        };
        match tokio::time::timeout(timeout, S::call(channel, group, req)).await {
            Ok(Ok((from, reply))) => {
                self.endpoints.learn(slot, from);
                Attempt::Reply(reply)
            }
            Ok(Err(CallFailure::Malformed(e))) => {
                Attempt::Lost(format!("malformed reply from {addr}: {e}"))
            }
            Ok(Err(CallFailure::Status(status))) => self.on_status(slot, status),
            Err(_) => Attempt::Lost(format!("{addr} did not answer within {timeout:?}")),
        }
    }

    fn on_status(&self, slot: usize, status: tonic::Status) -> Attempt<Out<S>> {
        let addr = self.endpoints.addr(slot);
        match status.code() {
            // The server's frame limit: the request was refused before it was decoded.
            Code::ResourceExhausted | Code::OutOfRange => Attempt::Refused(Error::TooLarge {
                bytes: 0,
                max: S::FRAME_BYTES_MAX as u64,
            }),
            // No such service on that port: nothing was applied, the connection is fine.
            Code::Unimplemented => Attempt::NotSent(format!(
                "{addr} does not serve {} (is it the right address?)",
                S::WHAT
            )),
            _ => {
                self.endpoints.reset(slot);
                Attempt::Lost(format!("{addr}: {}", status.message()))
            }
        }
    }
}
