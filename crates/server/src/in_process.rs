//! [`OwnKv`]: this process's Kv service as its own clients call it in process
//! (`shardkv_client::in_process`): the Redis front end's client sessions hand requests for
//! this process's address to its groups directly, served and counted exactly as a gRPC
//! request is ([`Handler::request`]), with the leader's address on a leader hint as the
//! Kv service fills it (`shardkv_net::hint`).

use crate::front::KvFront;
use shardkv_client::in_process::{InProcess, InProcessCall};
use shardkv_kv::KvRequest;
use shardkv_net::Handler;
use shardkv_rsm::Error;
use shardkv_types::Gid;
use std::sync::Arc;

/// The Kv front of this process, and the addresses clients reach it at.
pub struct OwnKv {
    front: Arc<KvFront>,
    /// `HOST:PORT` strings that name this process (its `--peers` entry, its listen address).
    addrs: Vec<String>,
}

impl OwnKv {
    /// `addrs`: the `HOST:PORT` strings that name this process's gRPC port.
    pub fn new(front: Arc<KvFront>, addrs: Vec<String>) -> OwnKv {
        OwnKv { front, addrs }
    }

    /// The `HOST:PORT` strings that name this process's gRPC port.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }
}

impl InProcess for OwnKv {
    fn is_me(&self, addr: &str) -> bool {
        self.addrs.iter().any(|a| a == addr)
    }

    /// The request runs in a task of its own, so it is served (and counted in the
    /// group's metrics) to its end even when the caller stops waiting, as the gRPC
    /// service serves a request whose client went away.
    fn call(&self, group: Gid, req: KvRequest) -> InProcessCall {
        let front = self.front.clone();
        Box::pin(async move {
            let serving = {
                let front = front.clone();
                tokio::spawn(async move { front.request(group, req).await })
            };
            // A request that ended without an answer may have been handed to the node:
            // "may have applied", never "surely not".
            let reply = serving.await.unwrap_or_else(|e| {
                Err(Error::Timeout {
                    detail: format!("the in-process request ended without an answer: {e}"),
                })
            });
            let hint = match &reply {
                Err(Error::NotLeader { leader: Some(l) })
                | Err(Error::LostLeadership { leader: Some(l) }) => {
                    front.member_addr(group, *l).map(|addr| (*l, addr))
                }
                _ => None,
            };
            (front.node_id(), reply, hint)
        })
    }
}
