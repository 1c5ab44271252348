//! The clerk core: which server to ask, when, and what an answer means. Deterministic and
//! transport-free, written once and driven by every client: the async library, the CLI, the
//! simulator's clerks, the controller clerk.
//!
//! The core is generic over the request type (`Request<C, Q>` of any state machine) and asks
//! a [`Router`] which group serves a request: one fixed group for the KV service and the
//! controller, the group the cached config names for the sharded store. It keeps a leader
//! cursor per group, one sequence-number stream per client id (valid across groups), and the
//! retry policy: follow leader hints, move on after a silence of
//! [`RetryPolicy::silence_ticks`] (the hedge delay when hedging: the shell keeps the silent
//! attempt open and any answer counts), back off (in ticks) when no leader is known, and end
//! an operation as "may have applied" whenever some attempt might have reached a leader.

use crate::router::Router;
use shardkv_rsm::{Error, Request, StateMachine};
use shardkv_types::{ClientId, Gid, NodeId, Rng, Seq};
use std::collections::BTreeMap;

/// An operation as the user asks for it: a read or a write of the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op<C, Q> {
    Read(Q),
    Write(C),
}

/// The retry policy, counted in ticks of the shell's clock (10 ms in production and in the
/// simulator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long one attempt may wait for an answer at all (the shell's bound on one RPC).
    pub attempt_ticks: u64,
    /// How long an attempt may stay silent before the same request (same client id and
    /// sequence number) is also sent to the next server: a frozen leader costs this, not
    /// `attempt_ticks`. The silent attempt's answer still counts if it comes first (the
    /// sessions keep a write exactly-once whichever member applies it). 0: no hedging.
    pub hedge_ticks: u64,
    /// The longest pause between attempts while no leader is known.
    pub backoff_ticks_max: u64,
    /// The most attempts of one operation.
    pub attempts_max: u32,
    /// How long one operation may take over all its attempts; `None`: no limit.
    pub op_ticks_max: Option<u64>,
}

impl RetryPolicy {
    /// How long the shell waits for the answer to an attempt before it calls
    /// [`ClerkCore::on_timeout`]: `hedge_ticks` when hedging (the shell keeps listening to
    /// the silent attempt), else `attempt_ticks`.
    pub fn silence_ticks(&self) -> u64 {
        match self.hedge_ticks {
            0 => self.attempt_ticks,
            h => h.min(self.attempt_ticks),
        }
    }

    /// The pause before the next attempt after `fruitless` attempts in a row found no
    /// leader: 1, 2, 4, … ticks, capped at `backoff_ticks_max`.
    pub fn backoff_ticks(&self, fruitless: u32) -> u64 {
        if fruitless == 0 {
            return 0;
        }
        (1u64 << (fruitless - 1).min(20)).min(self.backoff_ticks_max)
    }
}

/// What the shell does next with the operation in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next<O> {
    /// Wait `delay_ticks`, then send [`ClerkCore::current`] (the same request, the same
    /// sequence number) to server `to` of group `gid`, and wait up to
    /// [`RetryPolicy::silence_ticks`] for the answer (then call [`ClerkCore::on_timeout`]).
    /// A shell that hedges keeps the earlier attempts open (up to `attempt_ticks` each) and
    /// hands their answers to [`ClerkCore::on_response`] too: the first answer wins.
    Send {
        gid: Gid,
        to: NodeId,
        delay_ticks: u64,
    },
    /// The router knows no group for the request (no config yet, or the cached one was
    /// found stale): fetch a newer config, hand it to the router, then call
    /// [`ClerkCore::resume`].
    Refresh,
    /// The operation finished with this output.
    Done(O),
    /// The operation ended without an output; [`Error::outcome`] says whether it may have
    /// applied.
    Failed(Error),
}

/// The operation in flight.
struct InFlight<C, Q> {
    req: Request<C, Q>,
    started_tick: u64,
    attempts: u32,
    /// Some attempt may have reached a leader that applied it.
    maybe_applied: bool,
    /// Attempts in a row that found no leader; drives the backoff.
    fruitless: u32,
    /// Where the last attempt went.
    to: Option<(Gid, NodeId)>,
    /// The last server this operation could not reach: a hint naming it (a dead leader the
    /// others still believe in) is no progress, so it does not reset the backoff.
    unreachable: Option<NodeId>,
    /// The last refusal or failure, reported if the operation gives up.
    last: Error,
    /// The members that answered `NoSpace`.
    no_space_from: std::collections::BTreeSet<NodeId>,
    /// The leader another member named last.
    hinted: Option<NodeId>,
    /// Attempts in a row that did not end the operation (no answer, or a refusal).
    failed_in_row: u32,
}

/// One client session: a random id chosen at creation, a sequence number per write, a
/// leader cursor per group, and at most one operation in flight.
///
/// Invariant: every attempt of one write carries the same sequence number, so the servers'
/// session tables apply it at most once however many times (and to whichever group) it is
/// sent; sequence numbers only grow.
///
/// `SM` is the state machine the servers replicate (only its request and output types are
/// used); `R` picks the group of each request.
pub struct ClerkCore<SM: StateMachine, R> {
    pub id: ClientId,
    router: R,
    policy: RetryPolicy,
    next_seq: Seq,
    /// The next write retries one that may have applied ([`ClerkCore::resume_session`]).
    next_is_retry: bool,
    /// The server last seen acting as leader, per group.
    leaders: BTreeMap<Gid, NodeId>,
    current: Option<InFlight<SM::Command, SM::Query>>,
    rng: Rng,
}

type Out<SM> = Next<<SM as StateMachine>::Output>;

impl<SM: StateMachine, R: std::fmt::Debug> std::fmt::Debug for ClerkCore<SM, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClerkCore")
            .field("id", &self.id)
            .field("router", &self.router)
            .field("next_seq", &self.next_seq)
            .field("leaders", &self.leaders)
            .field("in_flight", &self.current.is_some())
            .finish()
    }
}

impl<SM: StateMachine, R: Router<SM::Command, SM::Query>> ClerkCore<SM, R> {
    /// A clerk routing with `router`; `rng` picks the client id and the first servers.
    pub fn new(router: R, policy: RetryPolicy, mut rng: Rng) -> Self {
        let id = ClientId(rng.next_u64() >> 2);
        ClerkCore {
            id,
            router,
            policy,
            next_seq: Seq(1),
            next_is_retry: false,
            leaders: BTreeMap::new(),
            current: None,
            rng,
        }
    }

    pub fn router(&self) -> &R {
        &self.router
    }

    /// Continues a session kept outside this clerk (the CLI's `--session FILE`): the client
    /// id becomes `id` and the next write gets sequence number `next_seq`. With `retrying`
    /// that write repeats one of this session that may have applied (same `next_seq`, same
    /// command): it is sent as a retry from its first attempt, so the servers answer it from
    /// the session table if it applied (or `SessionExpired` if they no longer can), and it
    /// can end "may have applied" but never "not applied".
    ///
    /// # Panics
    /// If an operation is in flight (its sequence number is taken from the old stream).
    pub fn resume_session(&mut self, id: ClientId, next_seq: Seq, retrying: bool) {
        assert!(
            self.current.is_none(),
            "a session is resumed between operations"
        );
        self.id = id;
        self.next_seq = next_seq;
        self.next_is_retry = retrying;
    }

    /// The router, to hand it a newer config.
    pub fn router_mut(&mut self) -> &mut R {
        &mut self.router
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Changes the policy for the next operations (the one in flight keeps its start tick).
    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.policy = policy;
    }

    /// The server believed to lead `gid`, if any.
    pub fn leader_of(&self, gid: Gid) -> Option<NodeId> {
        self.leaders.get(&gid).copied()
    }

    /// Starts an operation at tick `now`. An operation still in flight (its caller gave
    /// up, e.g. a cancelled future) is abandoned: its outcome stays unknown, and the new one
    /// gets a new sequence number.
    pub fn begin(&mut self, op: Op<SM::Command, SM::Query>, now: u64) -> Out<SM> {
        self.abandon();
        let retrying = matches!(op, Op::Write(_)) && std::mem::take(&mut self.next_is_retry);
        let req = match op {
            Op::Read(q) => Request::Read(q),
            Op::Write(cmd) => {
                let seq = self.next_seq;
                self.next_seq = seq.next();
                Request::Write {
                    client: self.id,
                    seq,
                    retry: false,
                    cmd,
                }
            }
        };
        // A request over the limits never gets better: refused here, before any server
        // sees it (so an over-limit frame from a server is never mistaken for this).
        if let Err(e) = SM::validate(&req) {
            return Next::Failed(e);
        }
        self.current = Some(InFlight {
            req,
            started_tick: now,
            attempts: 0,
            maybe_applied: retrying,
            fruitless: 0,
            to: None,
            unreachable: None,
            last: Error::Unavailable {
                reason: "no attempt made".into(),
            },
            no_space_from: Default::default(),
            hinted: None,
            failed_in_row: 0,
        });
        self.next_attempt(now)
    }

    /// The request in flight, to send on every attempt.
    pub fn current(&self) -> Option<&Request<SM::Command, SM::Query>> {
        self.current.as_ref().map(|f| &f.req)
    }

    /// Gives up on the operation in flight (the caller reports it as "unknown": it may
    /// still apply). The next operation gets a new sequence number.
    pub fn abandon(&mut self) {
        self.current = None;
    }

    /// Continues after [`Next::Refresh`], once the router has a newer config.
    pub fn resume(&mut self, now: u64) -> Out<SM> {
        self.next_attempt(now)
    }

    /// The shell's own deadline for the whole operation passed between attempts (its wall
    /// clock may run a little ahead of the tick count): ends the operation as running out
    /// of `op_ticks_max` would, with the last error, or `Timeout` if an earlier attempt may
    /// have applied. Nothing new is assumed about the request.
    pub fn expire(&mut self, now: u64) -> Out<SM> {
        let last = match self.current.as_ref() {
            Some(f) => f.last.clone(),
            None => Error::Unavailable {
                reason: "no operation in flight".into(),
            },
        };
        self.give_up(now, last)
    }

    /// Ends the operation in flight with `e` (a failure the shell saw itself, such as a
    /// frame the server refused before decoding it). Like every end, it is reported as
    /// `Timeout` if an earlier attempt may have applied.
    pub fn end(&mut self, now: u64, e: Error) -> Out<SM> {
        self.give_up(now, e)
    }

    /// The attempt was sent but no answer came within [`RetryPolicy::silence_ticks`] (or
    /// the connection broke mid-request): it may have reached a leader. Try the next
    /// server; a hint naming the silent one is no progress until it answers.
    pub fn on_timeout(&mut self, now: u64, reason: String) -> Out<SM> {
        let Some(f) = self.current.as_mut() else {
            return Next::Failed(Error::Unavailable { reason });
        };
        f.maybe_applied |= f.req.is_write();
        f.unreachable = f.to.map(|(_, to)| to);
        f.last = Error::Unavailable { reason };
        self.move_on();
        self.attempt_failed();
        self.next_attempt(now)
    }

    /// An answer came but cannot be read (it exceeds the client's frame limit): a write
    /// may have applied, and every retry would get the same stored answer, so the
    /// operation ends: "may have applied" for a write, a failure for a read.
    pub fn on_unreadable(&mut self, now: u64, reason: String) -> Out<SM> {
        if let Some(f) = self.current.as_mut() {
            f.maybe_applied |= f.req.is_write();
        }
        self.give_up(now, Error::Unavailable { reason })
    }

    /// The attempt could not be sent (no connection): surely not applied there. Try the
    /// next server, backing off.
    pub fn on_unreachable(&mut self, now: u64, reason: String) -> Out<SM> {
        let Some(f) = self.current.as_mut() else {
            return Next::Failed(Error::Unavailable { reason });
        };
        f.fruitless += 1;
        f.unreachable = f.to.map(|(_, to)| to);
        f.last = Error::Unavailable { reason };
        self.move_on();
        self.attempt_failed();
        self.next_attempt(now)
    }

    /// An attempt did not end the operation (no answer, or a refusal). Once as many
    /// attempts in a row failed as the group has servers, the group may no longer serve
    /// the request (it gave the shard away, and is gone or its leader is out of the
    /// clerk's reach): the router is told its config may be stale, so the sharded clerk
    /// asks for a newer one, as the lab's clerk does after trying every server of a group.
    /// A fixed group ignores it.
    fn attempt_failed(&mut self) {
        let Some(f) = self.current.as_mut() else {
            return;
        };
        f.failed_in_row += 1;
        let servers = self.router.route(&f.req).map_or(0, |r| r.servers.len());
        if f.failed_in_row as usize >= servers {
            f.failed_in_row = 0;
            self.router.stale();
        }
    }

    /// Server `from` answered the attempt in flight.
    pub fn on_response(
        &mut self,
        now: u64,
        from: NodeId,
        resp: Result<SM::Output, Error>,
    ) -> Out<SM> {
        let Some(f) = self.current.as_mut() else {
            return Next::Failed(Error::Unavailable {
                reason: "no operation in flight".into(),
            });
        };
        let gid = f.to.map_or(Gid(0), |(g, _)| g);
        let e = match resp {
            Ok(out) => {
                self.leaders.insert(gid, from);
                self.current = None;
                return Next::Done(out);
            }
            Err(e) => e,
        };
        let is_write = f.req.is_write();
        match &e {
            Error::NotLeader { leader } | Error::LostLeadership { leader } => {
                f.maybe_applied |= is_write && matches!(e, Error::LostLeadership { .. });
                let useful = leader.is_some_and(|l| l != from && Some(l) != f.unreachable);
                f.fruitless = if useful { 0 } else { f.fruitless + 1 };
                if let Some(l) = leader.filter(|&l| l != from) {
                    f.hinted = Some(l);
                }
                match leader {
                    Some(l) if useful => {
                        self.leaders.insert(gid, *l);
                    }
                    _ => self.move_on(),
                }
            }
            Error::WrongGroup { .. } => {
                // The cached config is out of date; the request did not apply there. Back
                // off: the group named in a newer config may not have caught up yet.
                f.fruitless += 1;
                self.router.stale();
            }
            Error::Busy => {
                f.fruitless += 1;
                // A busy leader is still the leader: stay half the time.
                if self.rng.chance(500) {
                    self.move_on();
                }
            }
            Error::Timeout { .. } | Error::Unavailable { .. } => {
                f.maybe_applied |= is_write && matches!(e, Error::Timeout { .. });
                f.fruitless += 1;
                self.move_on();
            }
            // Only a member that believes it leads answers NoSpace. If another member
            // confirmed it as the leader, or every member said so, the group cannot take
            // writes now (a full disk does not clear in milliseconds): give up. Otherwise it
            // may be a stalled old leader the others already replaced: try them.
            Error::NoSpace => {
                f.no_space_from.insert(from);
                f.fruitless += 1;
                let members = self.router.route(&f.req).map_or(1, |r| r.servers.len());
                if f.hinted == Some(from) || f.no_space_from.len() >= members {
                    return self.give_up(now, e);
                }
                self.move_on();
            }
            // A bad request never gets better; a stale answer means a later request of
            // this session was already seen; an expired session cannot tell any more.
            Error::TooLarge { .. }
            | Error::Invalid { .. }
            | Error::Stale
            | Error::SessionExpired => {
                return self.give_up(now, e);
            }
            // The group's answer about the applied write itself (a failed CAS): final.
            Error::CasFailed { .. } => {
                self.current = None;
                return Next::Failed(e);
            }
        }
        if let Some(f) = self.current.as_mut() {
            f.last = e;
        }
        self.attempt_failed();
        self.next_attempt(now)
    }

    /// Picks where the next attempt goes, or ends the operation.
    fn next_attempt(&mut self, now: u64) -> Out<SM> {
        let Some(f) = self.current.as_ref() else {
            return Next::Failed(Error::Unavailable {
                reason: "no operation in flight".into(),
            });
        };
        let out_of_time = self
            .policy
            .op_ticks_max
            .is_some_and(|max| now.saturating_sub(f.started_tick) >= max);
        if out_of_time || f.attempts >= self.policy.attempts_max {
            let last = f.last.clone();
            return self.give_up(now, last);
        }
        let Some(route) = self.router.route(&f.req) else {
            return Next::Refresh;
        };
        assert!(
            !route.servers.is_empty(),
            "a route names at least one server"
        );
        let to = match self.leaders.get(&route.gid) {
            Some(l) if route.servers.contains(l) => *l,
            _ => {
                let first = route.servers[self.rng.index(route.servers.len())];
                self.leaders.insert(route.gid, first);
                first
            }
        };
        let delay_ticks = self.policy.backoff_ticks(f.fruitless);
        let f = self.current.as_mut().expect("in flight");
        f.attempts += 1;
        // The server refuses a retry it cannot tell from a new write (its session is gone).
        let maybe_applied = f.maybe_applied;
        if let Request::Write { retry, .. } = &mut f.req {
            *retry = maybe_applied;
        }
        f.to = Some((route.gid, to));
        Next::Send {
            gid: route.gid,
            to,
            delay_ticks,
        }
    }

    /// Moves the leader cursor of the last attempt's group to the next server.
    fn move_on(&mut self) {
        let Some((gid, to)) = self.current.as_ref().and_then(|f| f.to) else {
            return;
        };
        let Some(route) = self
            .current
            .as_ref()
            .and_then(|f| self.router.route(&f.req))
        else {
            return;
        };
        if route.gid != gid || route.servers.is_empty() {
            return;
        }
        let next = match route.servers.iter().position(|&s| s == to) {
            Some(i) => route.servers[(i + 1) % route.servers.len()],
            None => route.servers[0],
        };
        self.leaders.insert(gid, next);
    }

    /// Ends the operation with `last`, or with `Timeout` if an earlier attempt may have
    /// applied (a definite failure must never be reported for a write that might apply).
    fn give_up(&mut self, now: u64, last: Error) -> Out<SM> {
        let Some(f) = self.current.take() else {
            return Next::Failed(last);
        };
        if f.maybe_applied && !last.may_have_applied() {
            let ticks = now.saturating_sub(f.started_tick);
            return Next::Failed(Error::Timeout {
                detail: format!(
                    "gave up after {} attempts and {ticks} ticks (last: {})",
                    f.attempts,
                    cause(&last)
                ),
            });
        }
        Next::Failed(last)
    }
}

/// What went wrong in `e`, without its verdict on the outcome: an operation that may have
/// applied must not quote an attempt's "not applied" (the whole message would say both).
fn cause(e: &Error) -> String {
    let text = e.to_string();
    match text.strip_suffix("; not applied") {
        Some(c) => c.to_string(),
        None => text,
    }
}
