//! Clients of shardkv.
//!
//! [`ClerkCore`] is the transport-free clerk logic every client shares: a random client id
//! chosen at creation, a sequence number per write that every retry reuses (so the servers'
//! session tables apply it at most once), a remembered leader, leader hints followed on
//! `NotLeader`, the next server tried on a timeout. The simulator drives it with virtual time;
//! the async library ([`Client`]) drives it over gRPC.
//!
//! # The async library
//! [`Client::connect`] takes the group's endpoints; `get`, `put`, `append`, `delete` and
//! `cas` run one operation each, bounded by [`ClientOptions`] (per-attempt timeout, total
//! time, attempt count). An operation ends with its output or an [`Error`] whose
//! [`Error::outcome`] is [`Outcome::Failed`] (surely not applied) or [`Outcome::Unknown`]
//! (may have applied: only [`Error::Timeout`]). A history recorder maps `Ok` to
//! [`Outcome::Ok`] and each error through `outcome()`.
//!
//! ```no_run
//! # #[cfg(feature = "grpc")]
//! # async fn demo() -> Result<(), shardkv_client::Error> {
//! let mut c = shardkv_client::Client::connect(&["127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into()])?;
//! c.put("k", "v").await?;
//! assert_eq!(c.get("k").await?, Some(b"v".to_vec()));
//! # Ok(()) }
//! ```

mod clerk;
#[cfg(feature = "grpc")]
mod client;
#[cfg(feature = "grpc")]
mod endpoints;
#[cfg(feature = "grpc")]
mod error;

pub use clerk::{ClerkCore, KvOp, Next};
#[cfg(feature = "grpc")]
pub use client::{CasResult, Client, ClientOptions};
#[cfg(feature = "grpc")]
pub use endpoints::{Endpoints, fetch_status};
#[cfg(feature = "grpc")]
pub use error::{Error, Outcome};
#[cfg(feature = "grpc")]
pub use shardkv_net::{NodeStatus, Role, role_name};
