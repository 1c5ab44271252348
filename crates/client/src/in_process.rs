//! In-process calls: a client that runs inside a server process (the process's Redis front
//! end) hands its requests for that process's own address straight to the process's groups,
//! without a connection.
//!
//! Only how a request travels changes. Everything else stays the driver's, exactly as over
//! gRPC: the session's client id and sequence numbers, retries (a retry may go by
//! connection to another member, or come back here), leader hints, attempt and operation
//! timeouts, hedging. So a write is applied at most once whichever way its attempts went.
//! The server side answers as its Kv service would ([`InProcess::call`]: who answered, the
//! reply, and the leader's address on a leader hint), minus the encoding and the frame.

use shardkv_kv::{KvOutput, KvRequest};
use shardkv_rsm::Reply;
use shardkv_types::{Gid, NodeId};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What an in-process call answers: the answering member, its reply, and the leader (id and
/// address) a `NotLeader` or `LostLeadership` reply hints at, as a gRPC answer carries them.
pub type InProcessAnswer = (NodeId, Reply<KvOutput>, Option<(NodeId, String)>);

/// An in-process call in flight.
pub type InProcessCall = Pin<Box<dyn Future<Output = InProcessAnswer> + Send>>;

/// The server of the process the client runs in.
pub trait InProcess: Send + Sync {
    /// Whether `addr` (an endpoint's `HOST:PORT`, as the client was given it or the
    /// controller's config lists it) reaches this process.
    fn is_me(&self, addr: &str) -> bool;

    /// Serves one KV request for `group` (`Gid(0)`: the only KV group) as this process's Kv
    /// service would serve it.
    fn call(&self, group: Gid, req: KvRequest) -> InProcessCall;
}

/// [`crate::ClientOptions::in_process`]: the server of this process, if the client runs in
/// one.
#[derive(Clone)]
pub struct Local(pub Arc<dyn InProcess>);

impl fmt::Debug for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Local(in-process server)")
    }
}
