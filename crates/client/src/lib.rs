//! Clients of shardkv.
//!
//! [`ClerkCore`] is the transport-free clerk logic every client shares, generic over the
//! request type: a random client id chosen at creation (or a session continued from outside
//! the process, [`ClerkCore::resume_session`]), one sequence-number stream per client
//! (valid across groups) that every retry of a write reuses (so the servers' session tables
//! apply it at most once), a leader cursor per group, leader hints followed on `NotLeader`,
//! the next server tried after a silence (with hedging, [`RetryPolicy::hedge_ticks`], the
//! silent attempt stays open and the first answer wins: a frozen leader costs the hedge
//! delay, not the attempt timeout), a backoff counted in ticks while no leader is known,
//! requests over the state machine's limits refused before they are sent, and "may have
//! applied" kept across attempts (once an attempt may have applied, the operation ends
//! applied or "may have applied", never "not applied"). A [`Router`] picks the group for each
//! request ([`SingleGroup`] for one replica group). The simulator drives the core with
//! virtual time; the async library drives it over gRPC with one loop for every service:
//! [`Client`] over the Kv service, [`CtrlClient`] over the shard controller's Ctrl service.
//!
//! # The async library
//! [`Client::connect`] takes the group's endpoints ([`Client::connect_sharded`] the shard
//! controller's, for a sharded cluster); `get`, `put`, `append`, `delete` and
//! `cas` run one operation each, bounded by [`ClientOptions`] (per-attempt timeout, total
//! time, attempt count, hedge delay). An operation ends with its output or an [`Error`] (one error type
//! from the servers' state machines to here) whose [`Error::outcome`] is [`Outcome::Failed`]
//! (surely not applied) or [`Outcome::Unknown`] (may have applied: `Timeout`, `Stale`,
//! `LostLeadership`). A history recorder maps `Ok` to [`Outcome::Ok`] and each error through
//! `outcome()`. `delete` answers whether the key existed (`Some(bool)`; `None` only from
//! servers of a build before Delete said so).
//!
//! Any one member of a group is enough: a `NotLeader` or `LostLeadership` answer carries the
//! leader's address (`shardkv_net::hint`), and a client of a fixed endpoint list
//! ([`Client::connect`], [`CtrlClient`]) adds an address it lacks as a new endpoint, at most
//! [`LEARNED_ENDPOINTS_MAX`] of them, and tries it next. A sharded client's
//! groups come with every member from the controller's config and learn nothing.
//!
//! Sessions share one connection per server and one Batch stream on it
//! (`batcher`): every request waiting when the connection can send goes in one message, no
//! timer; a broken stream fails its requests as lost answers (a write may have applied and
//! is resent with its sequence number); a server without Batch is called unary.
//!
//! A client that runs inside a server process (the process's Redis front end) may set
//! [`ClientOptions::in_process`]: its KV requests for that process's own address are then
//! handed to the process's groups directly ([`in_process`]), with the same sessions,
//! retries and hints as over a connection.
//!
//! Connections are plaintext unless [`ClientOptions::tls`] is set (from
//! [`tls::client_config`]: the cluster CA and a client certificate; a server with TLS on
//! refuses a client without one). A failed call's message carries its causes (a refused
//! connection, a TLS alert) and, for a broken or refused connection, a hint about TLS.
//!
//! [`CtrlClient`] is the same loop over the shard controller: `join`, `leave`,
//! `move_shard` and `query`. A change ends with the new config's number or the
//! controller's refusal ([`CtrlError`], an answer: nothing changed), inside the same
//! [`Error`] for requests that were not served.
//!
//! ```no_run
//! # #[cfg(feature = "grpc")]
//! # async fn demo() -> Result<(), shardkv_client::Error> {
//! let mut c = shardkv_client::Client::connect(&["127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into()])?;
//! c.put("k", "v").await?;
//! assert_eq!(c.get("k").await?, Some(b"v".to_vec()));
//! # Ok(()) }
//! ```
//!
//! A sharded cluster (`shardkv up`) is reached through its shard controller; the same
//! calls then go to whichever group serves each key's shard, following moves:
//!
//! ```no_run
//! # #[cfg(feature = "grpc")]
//! # async fn demo() -> Result<(), shardkv_client::Error> {
//! use shardkv_client::{Client, ClientOptions};
//! let ctrl = ["127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".to_string()];
//! let mut c = Client::connect_sharded(&ctrl, ClientOptions::default())?;
//! c.put("{user42}:name", "Ada").await?; // one hash tag, one shard, one group
//! # Ok(()) }
//! ```

#[cfg(feature = "grpc")]
mod batcher;
#[cfg(feature = "grpc")]
mod cause;
mod clerk;
#[cfg(feature = "grpc")]
mod client;
#[cfg(feature = "grpc")]
mod ctrl_client;
#[cfg(feature = "grpc")]
mod driver;
#[cfg(feature = "grpc")]
mod endpoints;
#[cfg(feature = "grpc")]
pub mod in_process;
mod router;
mod shard_router;
#[cfg(feature = "grpc")]
mod topology;

pub use clerk::{ClerkCore, Next, Op, RetryPolicy};
#[cfg(feature = "grpc")]
pub use client::{CasResult, Client};
#[cfg(feature = "grpc")]
pub use ctrl_client::CtrlClient;
#[cfg(feature = "grpc")]
pub use driver::ClientOptions;
#[cfg(feature = "grpc")]
pub use endpoints::{
    Dial, Endpoints, LEARNED_ENDPOINTS_MAX, change_membership_with, fetch_group_status,
    fetch_group_status_with, fetch_status,
};
pub use router::{Route, Router, SingleGroup};
pub use shard_router::{Naming, ShardRouter};
pub use shardkv_ctrl::{
    Config, CtrlCommand, CtrlError, CtrlOutput, CtrlQuery, CtrlReply, GID_NONE,
};
/// TLS for clients: [`tls::client_config`] builds [`ClientOptions::tls`] from PEM files.
#[cfg(feature = "grpc")]
pub use shardkv_net::tls;
#[cfg(feature = "grpc")]
pub use shardkv_net::{
    MemberInfo, MembershipDone, NodeStatus, Role, ShardPhase, ShardsHeld, role_name,
};
pub use shardkv_rsm::{Error, Outcome};
pub use shardkv_types::{
    ClientId, ConfChange, ConfChangeKind, ConfigNum, Gid, NodeId, Seq, ShardId,
};
#[cfg(feature = "grpc")]
pub use tonic::transport::ClientTlsConfig;

use shardkv_ctrl::ShardCtrl;
use shardkv_kv::{KvCommand, KvQuery, KvStore};

/// A KV operation as the user asks for it.
pub type KvOp = Op<KvCommand, KvQuery>;

/// The clerk core of one KV replica group.
pub type KvClerk = ClerkCore<KvStore, SingleGroup>;

/// A shard controller operation as the user asks for it.
pub type CtrlOp = Op<CtrlCommand, CtrlQuery>;

/// The clerk core of the shard controller group.
pub type CtrlClerk = ClerkCore<ShardCtrl, SingleGroup>;

/// The sharded clerk: KV operations routed by the cached config.
pub type ShardClerk = ClerkCore<KvStore, ShardRouter>;

/// The clerk policy's tick: both shells count the clerk's timeouts and backoff in these.
pub const CLERK_TICK_MS: u64 = 10;
