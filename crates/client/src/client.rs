//! `Client`: the async Rust client library. Each operation runs the [`ClerkCore`] loop over
//! gRPC: send to the remembered leader, follow hints, retry elsewhere on timeouts, every
//! attempt of a write carrying the same sequence number.

use crate::endpoints::Endpoints;
use crate::{CLERK_TICK_MS, Error, KvClerk, KvOp, Next, Op, RetryPolicy, SingleGroup};
use shardkv_kv::{KvCommand, KvOutput, KvQuery, KvRequest};
use shardkv_net::convert::{self, WireRequest};
use shardkv_net::pb;
use shardkv_types::{ClientId, Gid, NodeId, Rng};
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

/// One client session of a replica group: a random client id, one operation at a time.
/// For concurrency make more sessions with [`Client::session`]; they share connections.
pub struct Client {
    endpoints: Arc<Endpoints>,
    opts: ClientOptions,
    clerk: KvClerk,
    /// The clerk's clock: ticks count from here.
    epoch: Instant,
}

/// What one attempt came to.
enum Attempt {
    /// A server answered.
    Reply(Result<KvOutput, Error>),
    /// Nothing was sent (no connection could be made).
    NotSent(String),
    /// The request may have reached a server, but no answer came.
    Lost(String),
    /// The server refused the frame (over its size limit). Surely not applied.
    Refused(Error),
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
        let router = SingleGroup::new(Gid(1), servers);
        Client {
            clerk: KvClerk::new(router, opts.policy(), Rng::new(seed)),
            endpoints,
            opts,
            epoch: Instant::now(),
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
        match self
            .execute(Op::Read(KvQuery::Get { key: key.into() }))
            .await?
        {
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
        match self.execute(Op::Write(cmd)).await? {
            KvOutput::Cas { swapped, current } => Ok(CasResult { swapped, current }),
            other => Err(unexpected(&other)),
        }
    }

    async fn write(&mut self, cmd: KvCommand) -> Result<(), Error> {
        match self.execute(Op::Write(cmd)).await? {
            KvOutput::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs one operation to its end: an output, or an error whose
    /// [`Error::outcome`] says whether it may have applied.
    pub async fn execute(&mut self, op: KvOp) -> Result<KvOutput, Error> {
        let started = Instant::now();
        let mut next = self.clerk.begin(op, self.now_ticks());
        loop {
            let (to, delay_ticks) = match next {
                Next::Done(out) => return Ok(out),
                Next::Failed(e) => return Err(e),
                // A single group always has a route.
                Next::Refresh => {
                    self.clerk.abandon();
                    return Err(Error::Unavailable {
                        reason: "no group serves this request".into(),
                    });
                }
                Next::Send {
                    to, delay_ticks, ..
                } => (to, delay_ticks),
            };
            if delay_ticks > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ticks * CLERK_TICK_MS)).await;
            }
            let Some(left) = self.opts.op_timeout.checked_sub(started.elapsed()) else {
                next = self
                    .clerk
                    .on_timeout(self.now_ticks(), "out of time".into());
                continue;
            };
            let req = self
                .clerk
                .current()
                .cloned()
                .expect("an operation in flight");
            let slot = (to.0 - 1) as usize;
            let attempt = self.attempt(slot, &req, left.min(self.opts.attempt_timeout));
            let attempt = attempt.await;
            let now = self.now_ticks();
            next = match attempt {
                Attempt::Reply(reply) => {
                    let reply = reply.map_err(|e| self.clerk_hint(e));
                    self.clerk.on_response(now, to, reply)
                }
                Attempt::NotSent(reason) => self.clerk.on_unreachable(now, reason),
                Attempt::Lost(reason) => self.clerk.on_timeout(now, reason),
                Attempt::Refused(e) => {
                    self.clerk.abandon();
                    return Err(e);
                }
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
