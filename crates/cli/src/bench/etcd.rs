//! The etcd target: etcd's v3 KV API (`etcdserverpb.KV`, Put and Range on one key) over
//! gRPC, with the same closed loop as the shardkv target. `--connections` HTTP/2
//! connections are opened to every endpoint and the sessions are spread round-robin over
//! all of them (endpoint first), as etcd's own benchmark spreads its clients; a member that
//! is not the leader forwards a Put to the leader and serves a linearizable Range after a
//! ReadIndex round, as etcd does for any client.
//!
//! Reads are linearizable Ranges (etcd's default), or serializable ones
//! (`--reads serializable`: the member's local state, no round to the leader). No retries:
//! an error is counted in the report by kind. Plaintext only.

use super::target::{Op, OpError, OpOk, Session, Target};
use anyhow::{Context, Result, bail};
use std::time::Duration;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::{PutRequest, RangeRequest};

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most etcd endpoints one bench connects to.
pub const ENDPOINTS_MAX: usize = 64;

pub struct EtcdTarget {
    /// Interleaved by endpoint: connection c to endpoint e is at `c * endpoints + e`.
    channels: Vec<Channel>,
    /// The bound on one operation.
    timeout: Duration,
    serializable: bool,
}

impl EtcdTarget {
    /// Opens `connections` connections to each of `endpoints` (`HOST:PORT`, optionally
    /// `NAME=HOST:PORT` or `http://HOST:PORT`). Fails, naming the endpoint, if one cannot be
    /// reached.
    pub async fn connect(
        endpoints: &[String],
        connections: usize,
        timeout: Duration,
        serializable: bool,
    ) -> Result<EtcdTarget> {
        if endpoints.is_empty() || endpoints.len() > ENDPOINTS_MAX {
            bail!("--target etcd needs 1 to {ENDPOINTS_MAX} --endpoints");
        }
        let mut channels = Vec::with_capacity(connections * endpoints.len());
        for _ in 0..connections {
            for e in endpoints {
                channels.push(connect_one(e).await?);
            }
        }
        Ok(EtcdTarget {
            channels,
            timeout,
            serializable,
        })
    }
}

async fn connect_one(endpoint: &str) -> Result<Channel> {
    let addr = endpoint.split_once('=').map_or(endpoint, |(_, a)| a);
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri)
        .with_context(|| format!("{endpoint:?} is not an endpoint (HOST:PORT)"))?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("cannot connect to etcd at {endpoint}"))
}

impl Target for EtcdTarget {
    type Session = EtcdSession;

    fn session(&self, i: usize) -> EtcdSession {
        EtcdSession {
            kv: KvClient::new(self.channels[i % self.channels.len()].clone()),
            id: i as u64 + 1,
            timeout: self.timeout,
            serializable: self.serializable,
        }
    }
}

/// One session: a KV client on one connection.
pub struct EtcdSession {
    kv: KvClient<Channel>,
    id: u64,
    timeout: Duration,
    serializable: bool,
}

impl Session for EtcdSession {
    fn id(&self) -> u64 {
        self.id
    }

    async fn execute(&mut self, op: Op) -> Result<OpOk, OpError> {
        let kv = &mut self.kv;
        let serializable = self.serializable;
        let call = async move {
            match op {
                Op::Put { key, value } => kv
                    .put(PutRequest {
                        key,
                        value,
                        lease: 0,
                    })
                    .await
                    .map(|_| OpOk::Written),
                Op::Get { key } => kv
                    .range(RangeRequest {
                        key,
                        serializable,
                        ..RangeRequest::default()
                    })
                    .await
                    .map(|r| OpOk::Read(r.into_inner().kvs.into_iter().next().map(|kv| kv.value))),
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(status)) => Err(status_error(&status)),
            Err(_) => Err(OpError {
                kind: "timeout",
                may_have_applied: true,
                message: format!("no answer within {:?}", self.timeout),
            }),
        }
    }
}

/// A gRPC status as a report error kind, and whether the operation may have applied (etcd
/// refuses invalid, unauthorised and rate-limited requests before proposing them).
fn status_error(status: &tonic::Status) -> OpError {
    let (kind, may_have_applied) = match status.code() {
        Code::DeadlineExceeded => ("timeout", true),
        Code::Unavailable => ("unavailable", true),
        Code::Cancelled => ("cancelled", true),
        Code::ResourceExhausted => ("busy", false),
        Code::InvalidArgument | Code::OutOfRange => ("invalid", false),
        Code::PermissionDenied | Code::Unauthenticated => ("denied", false),
        Code::Unimplemented => ("unimplemented", false),
        _ => ("error", true),
    };
    OpError {
        kind,
        may_have_applied,
        message: format!("{:?}: {}", status.code(), status.message()),
    }
}
