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
}

impl InProcess for OwnKv {
    fn is_me(&self, addr: &str) -> bool {
        self.addrs.iter().any(|a| a == addr)
    }

    fn call(&self, group: Gid, req: KvRequest) -> InProcessCall {
        let front = self.front.clone();
        Box::pin(async move {
            let reply = front.request(group, req).await;
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
