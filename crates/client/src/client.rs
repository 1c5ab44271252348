//! `Client`: the async Rust client library. Each operation runs the [`ClerkCore`] loop over
//! gRPC: send to the remembered leader, follow hints, retry elsewhere on timeouts, every
//! attempt of a write carrying the same sequence number.

use crate::endpoints::Endpoints;
use crate::{ClerkCore, Error, KvOp, Next};
use shardkv_kv::{KvCommand, KvOutput, KvRequest};
use shardkv_net::convert::{self, WireRequest};
use shardkv_net::{ReplyError, pb};
use shardkv_rsm::RsmError;
use shardkv_types::{ClientId, NodeId, Rng};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attempt_timeout: Duration::from_millis(2500),
            op_timeout: Duration::from_secs(15),
            attempts_max: 200,
            connect_timeout: Duration::from_millis(500),
            backoff_max: Duration::from_millis(200),
        }
    }
}

/// The result of a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasResult {
    pub swapped: bool,
    /// The value found (and compared), `None` if the key was absent.
    pub current: Option<Vec<u8>>,
}

/// One client session of a replica group: a random client id, one operation at a time.
/// For concurrency make more sessions with [`Client::session`]; they share connections.
pub struct Client {
    endpoints: Arc<Endpoints>,
    opts: ClientOptions,
    clerk: ClerkCore,
}

/// What one attempt came to.
enum Attempt {
    /// A server answered.
    Reply(Result<KvOutput, ReplyError>),
    /// Nothing was sent (no connection could be made).
    NotSent(String),
    /// The request may have reached a server, but no answer came.
    Lost(String),
    /// The server refused the frame (over its size limit). Surely not applied.
    Refused(Error),
}

/// Where an operation stands between attempts.
struct Progress {
    started: Instant,
    maybe_applied: bool,
    /// Attempts in a row that found no leader; drives the backoff.
    fruitless: u32,
    /// The last server this operation could not reach: a hint naming it (a dead leader the
    /// others still believe in) is no progress, so it does not reset the backoff.
    unreachable: Option<NodeId>,
    last: Error,
}

impl Progress {
    /// Counts a NotLeader-style answer: progress only if it names a reachable leader.
    fn hinted(&mut self, leader: Option<NodeId>) {
        let useful = leader.is_some() && leader != self.unreachable;
        self.fruitless = if useful { 0 } else { self.fruitless + 1 };
    }
}

impl Client {
    /// A client for the group at `endpoints` (`HOST:PORT` or `ID=HOST:PORT`, items or
    /// comma-separated) with default options. Connects lazily: an error here means the
    /// endpoints are invalid, not that servers are down.
    pub fn connect(endpoints: &[String]) -> Result<Client, Error> {
        Client::connect_with(endpoints, ClientOptions::default())
    }

    pub fn connect_with(endpoints: &[String], opts: ClientOptions) -> Result<Client, Error> {
        let endpoints = Arc::new(Endpoints::parse(endpoints, opts.connect_timeout)?);
        Ok(Client::on(endpoints, opts))
    }

    fn on(endpoints: Arc<Endpoints>, opts: ClientOptions) -> Client {
        let servers = (1..=endpoints.len() as u64).map(NodeId).collect();
        let seed = RandomState::new().hash_one(Instant::now());
        Client {
            clerk: ClerkCore::new(servers, Rng::new(seed)),
            endpoints,
            opts,
        }
    }

    /// Another session (new client id) over the same connections.
    pub fn session(&self) -> Client {
        Client::on(self.endpoints.clone(), self.opts.clone())
    }

    /// This session's client id.
    pub fn id(&self) -> ClientId {
        self.clerk.id
    }

    pub async fn get(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>, Error> {
        match self.execute(KvOp::Get { key: key.into() }).await? {
            KvOutput::Value(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn put(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), Error> {
        let (key, value) = (key.into(), value.into());
        self.write(KvCommand::Put { key, value }).await
    }

    pub async fn append(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), Error> {
        let (key, value) = (key.into(), value.into());
        self.write(KvCommand::Append { key, value }).await
    }

    pub async fn delete(&mut self, key: impl Into<Vec<u8>>) -> Result<(), Error> {
        self.write(KvCommand::Delete { key: key.into() }).await
    }

    /// Sets `key` to `new` iff its current value is `expected` (`None`: iff absent).
    pub async fn cas(
        &mut self,
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
        new: impl Into<Vec<u8>>,
    ) -> Result<CasResult, Error> {
        let cmd = KvCommand::Cas {
            key: key.into(),
            expected,
            new: new.into(),
        };
        match self.execute(KvOp::Write(cmd)).await? {
            KvOutput::Cas { swapped, current } => Ok(CasResult { swapped, current }),
            other => Err(unexpected(&other)),
        }
    }

    async fn write(&mut self, cmd: KvCommand) -> Result<(), Error> {
        match self.execute(KvOp::Write(cmd)).await? {
            KvOutput::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs one operation to its end: an output, or an error whose
    /// [`Error::outcome`] says whether it may have applied.
    pub async fn execute(&mut self, op: KvOp) -> Result<KvOutput, Error> {
        let is_write = matches!(op, KvOp::Write(_));
        let (req, mut server) = self.clerk.begin(op);
        let mut p = Progress {
            started: Instant::now(),
            maybe_applied: false,
            fruitless: 0,
            unreachable: None,
            last: Error::Unavailable {
                reason: "no attempt made".into(),
            },
        };
        for _ in 0..self.opts.attempts_max {
            let Some(left) = self.opts.op_timeout.checked_sub(p.started.elapsed()) else {
                break;
            };
            let slot = (server.0 - 1) as usize;
            let attempt = self.attempt(slot, &req, left.min(self.opts.attempt_timeout));
            let next = match attempt.await {
                Attempt::Reply(reply) => match self.on_reply(server, reply, is_write, &mut p) {
                    Ok(next) => next,
                    Err(e) => {
                        self.clerk.abandon();
                        return Err(self.give_up_with(e, &p));
                    }
                },
                Attempt::NotSent(reason) => {
                    p.fruitless += 1;
                    p.unreachable = Some(server);
                    p.last = Error::Unavailable { reason };
                    Next::Retry(self.clerk.on_timeout())
                }
                Attempt::Lost(reason) => {
                    p.maybe_applied |= is_write;
                    p.unreachable = Some(server);
                    p.last = Error::Unavailable { reason };
                    Next::Retry(self.clerk.on_timeout())
                }
                Attempt::Refused(e) => {
                    self.clerk.abandon();
                    return Err(e);
                }
            };
            match next {
                Next::Done(out) => return Ok(out),
                Next::Failed(e) | Next::Unknown(e) => return Err(self.failed(e, &p)),
                Next::Retry(s) => server = s,
            }
            self.backoff(&p).await;
        }
        self.clerk.abandon();
        Err(self.give_up(p))
    }

    /// Feeds a server's answer to the clerk; `Err` ends the operation at once.
    fn on_reply(
        &mut self,
        server: NodeId,
        reply: Result<KvOutput, ReplyError>,
        is_write: bool,
        p: &mut Progress,
    ) -> Result<Next, Error> {
        let rsm = match reply {
            Ok(out) => return Ok(self.clerk.on_response(server, Ok(out))),
            Err(ReplyError::NotLeader { leader }) => {
                p.last = Error::WrongLeader { leader };
                let hint = self.clerk_id_of(leader);
                p.hinted(hint);
                RsmError::NotLeader { leader: hint }
            }
            Err(ReplyError::LostLeadership { leader }) => {
                // Proposed, then leadership moved: the write may still apply.
                p.maybe_applied |= is_write;
                p.last = Error::WrongLeader { leader };
                let hint = self.clerk_id_of(leader);
                p.hinted(hint);
                RsmError::LostLeadership { leader: hint }
            }
            Err(ReplyError::Busy) => {
                p.fruitless += 1;
                RsmError::Busy
            }
            Err(ReplyError::TooLarge { bytes, max }) => RsmError::TooLarge {
                bytes: bytes as usize,
                max: max as usize,
            },
            Err(ReplyError::Stale) => RsmError::Stale,
            // A full disk does not clear in milliseconds: report it rather than retry.
            Err(ReplyError::NoSpace) => return Err(Error::NoSpace),
            Err(e @ (ReplyError::Timeout | ReplyError::Unavailable { .. })) => {
                p.maybe_applied |= is_write && e == ReplyError::Timeout;
                p.fruitless += 1;
                p.last = Error::Unavailable {
                    reason: e.to_string(),
                };
                return Ok(Next::Retry(self.clerk.on_timeout()));
            }
        };
        Ok(self.clerk.on_response(server, Err(rsm)))
    }

    /// The clerk's id (endpoint slot + 1) of the member a server named as leader.
    fn clerk_id_of(&self, leader: Option<NodeId>) -> Option<NodeId> {
        let slot = leader.and_then(|l| self.endpoints.slot_of(l))?;
        Some(NodeId(slot as u64 + 1))
    }

    /// The error for a definite failure.
    fn failed(&self, e: RsmError, p: &Progress) -> Error {
        match e {
            RsmError::TooLarge { bytes, max } => Error::TooLarge {
                bytes: bytes as u64,
                max: max as u64,
            },
            // Stale: a later request of this session was seen, so this one's fate is unknown.
            other => Error::Timeout {
                elapsed: p.started.elapsed(),
                last: other.to_string(),
            },
        }
    }

    /// The error when attempts or time ran out.
    fn give_up(&self, p: Progress) -> Error {
        self.give_up_with(p.last.clone(), &p)
    }

    /// `last`, unless an earlier attempt may have applied: then `Timeout`.
    fn give_up_with(&self, last: Error, p: &Progress) -> Error {
        if p.maybe_applied {
            return Error::Timeout {
                elapsed: p.started.elapsed(),
                last: last.to_string(),
            };
        }
        last
    }

    async fn backoff(&self, p: &Progress) {
        if p.fruitless == 0 {
            return;
        }
        let ms = 5u64.saturating_mul(1 << p.fruitless.min(10));
        let pause = Duration::from_millis(ms).min(self.opts.backoff_max);
        tokio::time::sleep(pause).await;
    }

    /// Sends `req` to `slot` once and waits up to `timeout`.
    async fn attempt(&self, slot: usize, req: &KvRequest, timeout: Duration) -> Attempt {
        let connect = tokio::time::timeout(timeout, self.endpoints.client(slot)).await;
        let mut client = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(reason)) => return Attempt::NotSent(reason),
            Err(_) => {
                return Attempt::NotSent(format!(
                    "connecting to {} timed out",
                    self.endpoints.addr(slot)
                ));
            }
        };
        let call = async {
            let reply = match convert::request_to_wire(req.clone()) {
                WireRequest::Get(r) => client.get(r).await,
                WireRequest::Put(r) => client.put(r).await,
                WireRequest::Append(r) => client.append(r).await,
                WireRequest::Delete(r) => client.delete(r).await,
                WireRequest::Cas(r) => client.cas(r).await,
            };
            reply.map(tonic::Response::into_inner)
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(reply)) => self.decode(slot, reply),
            Ok(Err(status)) => self.on_status(slot, status),
            Err(_) => Attempt::Lost(format!(
                "{} did not answer within {timeout:?}",
                self.endpoints.addr(slot)
            )),
        }
    }

    fn decode(&self, slot: usize, reply: pb::KvReply) -> Attempt {
        match convert::reply_from_wire(reply) {
            Ok((from, reply)) => {
                self.endpoints.learn(slot, from);
                Attempt::Reply(reply)
            }
            Err(e) => Attempt::Lost(format!(
                "malformed reply from {}: {e}",
                self.endpoints.addr(slot)
            )),
        }
    }

    fn on_status(&self, slot: usize, status: tonic::Status) -> Attempt {
        let addr = self.endpoints.addr(slot);
        match status.code() {
            // The server's frame limit: the request was refused before it was decoded.
            Code::ResourceExhausted | Code::OutOfRange => Attempt::Refused(Error::TooLarge {
                bytes: 0,
                max: shardkv_net::KV_FRAME_BYTES_MAX as u64,
            }),
            _ => {
                self.endpoints.reset(slot);
                Attempt::Lost(format!("{addr}: {}", status.message()))
            }
        }
    }
}

fn unexpected(out: &KvOutput) -> Error {
    Error::Unavailable {
        reason: format!("server answered with an output of the wrong kind: {out:?}"),
    }
}
