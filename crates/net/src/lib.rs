//! shardkv's wire protocol and peer transport.
//!
//! One gRPC port per server carries two services (`proto/shardkv.proto`):
//! - **Kv**, for clients: Get, Put, Append, Delete, Cas (writes carry the client's session id
//!   and sequence number) and Status;
//! - **Raft**, for peers: a client-streaming `Send` on which a member pushes batches of Raft
//!   messages, each a postcard-encoded [`shardkv_raft::Message`] in a `bytes` field.
//!
//! What this crate is: the schema (generated at build time with `protox` + `tonic-prost-build`,
//! no system `protoc`), conversions between wire and core types ([`convert`]), the server
//! side of both services over a [`Handler`] the server implements ([`services`]), and the
//! outbound [`PeerTransport`]. What it is not: it owns no Raft state and makes no decision
//! about requests; that is `shardkv-server`'s job.
//!
//! Contract:
//! - Every incoming frame is size-checked by tonic before it is decoded: at most
//!   [`KV_FRAME_BYTES_MAX`] on the Kv service and [`RAFT_FRAME_BYTES_MAX`] on the Raft
//!   service. A Raft message that does not decode is dropped with a log line, never a panic.
//! - The peer transport never blocks the caller: each peer has a queue of at most
//!   [`PEER_QUEUE_MESSAGES_MAX`] messages and a full queue drops the message (Raft tolerates
//!   loss). A broken stream is reopened with exponential backoff.
//! - A reply's error is `shardkv_rsm::Error`, the one error type from the replica to the
//!   client; [`convert`] maps it to the wire's `Error` message and back without loss.

pub mod convert;
pub mod services;
mod status;
mod transport;

/// The generated protobuf messages, clients and servers.
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("shardkv.v1");
}

pub use services::{Handler, router};
pub use shardkv_raft::Role;
pub use status::{NodeStatus, role_name};
pub use transport::{PeerTransport, TransportOptions};

/// The largest Kv request or reply frame accepted, in bytes: the largest key plus the
/// largest value plus room for the rest, so any request within the KV limits fits and the
/// server can answer an over-limit one with `TooLarge` itself.
pub const KV_FRAME_BYTES_MAX: usize =
    shardkv_kv::KEY_BYTES_MAX + 2 * shardkv_kv::VALUE_BYTES_MAX + (64 << 10);

/// The largest Raft batch frame accepted, in bytes.
pub const RAFT_FRAME_BYTES_MAX: usize = 16 << 20;

/// The most messages queued for one peer; more are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;

/// The most encoded bytes a sender puts into one batch (a single larger message still goes
/// alone, if it fits in [`RAFT_FRAME_BYTES_MAX`]).
pub const RAFT_BATCH_BYTES_MAX: usize = 4 << 20;

/// The most messages in one batch.
pub const RAFT_BATCH_MESSAGES_MAX: usize = 1024;
