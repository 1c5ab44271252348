//! [`ServerBackend`]: what one Redis connection runs its data commands on — its own client
//! session of the cluster (a session of the process's one shared [`Client`], so connections
//! share gRPC connections but not sequence numbers) and the process's current view.
//!
//! A write the session retries internally (a lost answer, a leader change) carries the same
//! sequence number, so it applies at most once. An operation is bounded by the shared
//! client's `op_timeout` ([`super::OP_TIMEOUT`]): a key whose shard is moving is retried
//! (the client refreshes its config on `WrongGroup`) until then, and then answered with the
//! last error — `TRYAGAIN` only when it surely did not apply (`shardkv_redis::session`). A run
//! of pipelined commands (`shardkv_redis::pipeline`) is one such operation, a KV `Pipeline`.

use super::RedisShared;
use shardkv_client::{Client, KvOp, Role};
use shardkv_kv::KvOutput;
use shardkv_redis::{Backend, ClusterView, DataOp, DataOut, ServerInfo};
use shardkv_rsm::Error;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// One connection's backend.
pub struct ServerBackend {
    client: Client,
    view: watch::Receiver<Arc<ClusterView>>,
    shared: Arc<RedisShared>,
}

impl ServerBackend {
    /// A backend running its operations on `session`, a client session of its own.
    pub fn new(shared: Arc<RedisShared>, session: Client) -> ServerBackend {
        ServerBackend {
            client: session,
            view: shared.view.clone(),
            shared,
        }
    }

    /// The client session, for the next connection.
    pub fn into_session(self) -> Client {
        self.client
    }

    /// Runs one KV operation on the connection's session.
    async fn execute(&mut self, op: KvOp) -> Result<KvOutput, Error> {
        let out = self.client.execute(op).await;
        let moved = matches!(
            out,
            Err(Error::NotLeader { .. }
                | Error::LostLeadership { .. }
                | Error::WrongGroup { .. }
                | Error::Timeout { .. }
                | Error::Unavailable { .. })
        );
        if moved {
            // A leader or a shard may have moved: look again now rather than at the next
            // poll, so the next MOVED names where the slot went. (Refusals such as a full
            // disk or a value too large say nothing about where slots are.)
            self.shared.poke.notify_one();
        }
        out
    }
}

impl Backend for ServerBackend {
    fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    fn info(&self) -> ServerInfo {
        let s = &self.shared;
        ServerInfo {
            redis_version: super::REDIS_VERSION.into(),
            shardkv_version: env!("CARGO_PKG_VERSION").into(),
            port: s.port,
            uptime_secs: s.started.elapsed().as_secs(),
            connected_clients: s.connected.load(Ordering::Relaxed),
            max_clients: s.max_clients,
            max_bulk: s.limits.bulk_bytes_max,
            keys: *s.keys.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    async fn run(&mut self, op: DataOp) -> Result<DataOut, Error> {
        DataOut::from_kv(self.execute(op.into_kv()).await?)
    }

    /// One operation for the whole run: one proposal (or one read) of this connection's
    /// session, retried with its sequence number as any write is.
    async fn run_pipeline(&mut self, ops: Vec<DataOp>) -> Result<Vec<DataOut>, Error> {
        let n = ops.len();
        DataOut::from_kv_outputs(self.execute(DataOp::pipeline_into_kv(ops)).await?, n)
    }

    /// The keys of the shard groups whose leader this process hosts (the slots it
    /// masters), as their leaders have applied them: a count at one moment per group, not
    /// one linearizable snapshot of all of them.
    async fn dbsize(&mut self) -> Result<i64, Error> {
        let mut keys = 0u64;
        for group in &self.shared.groups {
            let status = group.status().await?;
            match (status.role, &status.shards) {
                (Role::Leader, Some(held)) => keys += held.keys,
                (Role::Leader, None) => {
                    return Err(Error::Invalid {
                        reason: "DBSIZE counts the keys of shard groups only; this process \
                                 leads an unsharded KV group"
                            .into(),
                    });
                }
                _ => {}
            }
        }
        Ok(i64::try_from(keys).unwrap_or(i64::MAX))
    }
}
