//! shardkv's wire protocol and peer transport.
//!
//! One gRPC port per server carries two or three services (`proto/shardkv.proto`):
//! - **Kv**, for clients: Get, Put, Append, Delete, Cas (writes carry the client's session id,
//!   sequence number and `first_attempt`; unset, a write is taken as a possible retry),
//!   Status, and Batch, a bidirectional stream carrying many of those requests per message
//!   each way, each served as its unary call is ([`batch`], bounded per stream);
//! - **Ctrl**, the shard controller's, only on a server that hosts a controller replica:
//!   Join, Leave, Move (with session id and sequence number) and Query, over a
//!   [`CtrlHandler`] ([`with_ctrl`] adds it to the [`router`]); elsewhere it is
//!   `UNIMPLEMENTED`;
//! - **Shard**, between shard groups, only on a server that hosts one: a new owner pulls a
//!   shard from the old one, an old owner asks whether the new one installed it, over a
//!   [`ShardHandler`] ([`with_shard`]). Request and reply are postcard-encoded core types
//!   (`ShardRequest`, `ShardOutput`) in `bytes` fields, like Raft messages: they are
//!   server-to-server only, every server of a cluster runs the same build, and a shard
//!   carries the state machine's own data and session table, which a protobuf mirror would
//!   have to duplicate field by field;
//! - **Raft**, for peers: a client-streaming `Send` on which a member pushes batches of Raft
//!   messages, each a postcard-encoded [`shardkv_raft::Message`] in a `bytes` field. Every
//!   batch names its cluster id and group id ([`PeerIdentity`]).
//!
//! What this crate is: the schema (generated at build time with `protox` + `tonic-prost-build`,
//! no system `protoc`), conversions between wire and core types ([`convert`]), the server
//! side of the services over the handlers the server implements ([`services`]), and the
//! outbound [`PeerTransport`]. What it is not: it owns no Raft state and makes no decision
//! about requests; that is `shardkv-server`'s job.
//!
//! Contract:
//! - Identity: the receiver checks a batch's cluster id against its own, then asks its
//!   [`RaftRouter`] whether it hosts the batch's group, both before decoding anything. A
//!   batch that fails either check is dropped whole and counted ([`RaftDrops`]), with at
//!   most one warning per reason per [`services::DROP_LOG_INTERVAL`] naming the expected
//!   and received ids; it is never stepped.
//! - Every incoming frame is size-checked by tonic before it is decoded: at most
//!   [`KV_FRAME_BYTES_MAX`] on the Kv service, [`CTRL_FRAME_BYTES_MAX`] on the Ctrl service,
//!   [`SHARD_FRAME_BYTES_MAX`] on the Shard service and [`RAFT_FRAME_BYTES_MAX`] on the Raft service. A Raft message that does not decode is dropped with a log line, never a panic.
//! - A Batch stream ([`batch`]) holds at most [`batch::BATCH_IN_FLIGHT_MAX`] requests in
//!   flight: the server reads its next message only while that message (at most
//!   [`batch::BATCH_ENTRIES_MAX`] requests; a message with more ends the stream with
//!   `INVALID_ARGUMENT`) cannot pass the bound, and stops reading while the client does not
//!   read answers. A bad entry (no request, an id already in flight) is answered
//!   `INVALID`; the stream goes on.
//! - The peer transport never blocks the caller: each peer has a queue of at most
//!   [`PEER_QUEUE_MESSAGES_MAX`] messages and a full queue drops the message (Raft tolerates
//!   loss). A broken stream is reopened with exponential backoff, dialling the peer's
//!   `HOST:PORT` anew (a name is resolved again on every attempt); failed attempts are
//!   counted and logged at most once per [`UNREACHABLE_LOG_INTERVAL`] per peer, never
//!   fatal.
//! - Authentication (TLS on, [`tls`]): every connection presents a certificate signed by the
//!   cluster CA (the TLS layer refuses others). The Raft and Shard services refuse a
//!   connection whose certificate names no member (`shardkv://node/<id>`, PERMISSION_DENIED),
//!   and the Raft service drops every batch whose `from` is not that member
//!   ([`DropReason::ForgedSender`]), before the cluster and group checks. Refusals are
//!   counted in [`RaftDrops`] and logged like the other drops. Without TLS anyone who
//!   reaches the port is trusted ([`tls::PeerAuth::Open`]).
//! - A reply's error is `shardkv_rsm::Error`, the one error type from the replica to the
//!   client; [`convert`] maps it to the wire's `Error` message and back without loss.
//! - Leader hints carry an address ([`hint`]): a `NotLeader` or `LostLeadership` answer on
//!   the Kv and Ctrl services names the leader's node id and, when the answering server's
//!   handler knows it ([`Handler::member_addr`], [`CtrlHandler::member_addr`]), the
//!   `HOST:PORT` its clients reach it at, so a client given one member finds the leader.

pub mod batch;
mod connect_log;
pub mod convert;
pub mod hint;
pub mod members;
pub mod services;
mod status;
pub mod tls;
mod transport;

pub use connect_log::UNREACHABLE_LOG_INTERVAL;

/// The generated protobuf messages, clients and servers.
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("shardkv.v1");
}

pub use members::MembershipDone;
pub use services::{
    Answer, CtrlHandler, CtrlService, DropReason, Handler, OneGroup, RaftDropCounts, RaftDrops,
    RaftRouter, RaftService, ShardHandler, ShardService, ctrl_service, router, with_ctrl,
    with_shard,
};
/// The Raft types of this crate's API ([`Handler`], [`RaftRouter`], [`convert`]).
pub use shardkv_raft::{Body, Message, Role};
use shardkv_types::Gid;
pub use status::{MemberInfo, NodeStatus, ShardPhase, ShardsHeld, role_name};
/// The gRPC library of this crate's API, so users build servers and channels with the same
/// version (`tonic::transport::Server::builder()` for [`router`] and [`with_ctrl`]).
pub use tonic;
pub use transport::{PeerTransport, TransportOptions, message_bytes};

/// The largest Kv request or reply frame accepted, in bytes: the largest key plus the
/// largest value plus room for the rest, so any request within the KV limits fits and the
/// server can answer an over-limit one with `TooLarge` itself.
pub const KV_FRAME_BYTES_MAX: usize =
    shardkv_kv::KEY_BYTES_MAX + 2 * shardkv_kv::VALUE_BYTES_MAX + (64 << 10);

/// The largest Ctrl request or reply frame accepted, in bytes: room for a config of
/// `SHARDS_MAX` shards (at most 10 bytes each) and a directory of groups and their servers.
pub const CTRL_FRAME_BYTES_MAX: usize = 4 << 20;

/// The largest Raft batch frame accepted, in bytes.
pub const RAFT_FRAME_BYTES_MAX: usize = 16 << 20;

/// The largest Shard service request or reply frame, in bytes: a shard travels in chunks of
/// about 256 KiB (each then one log entry; answers are capped at 4 MiB), so a frame the size of a Raft batch leaves room
/// for a chunk whose last item is large.
pub const SHARD_FRAME_BYTES_MAX: usize = RAFT_FRAME_BYTES_MAX;

/// The most messages queued for one peer; more are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;

/// The most payload bytes (entries, snapshot chunks: [`message_bytes`]) queued for one
/// peer; a message that would pass it is dropped (Raft resends). A few full batches: a peer
/// that cannot keep up holds at most this much of the sender's memory.
pub const PEER_QUEUE_BYTES_MAX: u64 = 64 << 20;

/// The most encoded bytes a sender puts into one batch (a single larger message still goes
/// alone, if it fits in [`RAFT_FRAME_BYTES_MAX`]).
pub const RAFT_BATCH_BYTES_MAX: usize = 4 << 20;

/// The most messages in one batch.
pub const RAFT_BATCH_MESSAGES_MAX: usize = 1024;

/// The cluster token of a server that is not given one.
pub const CLUSTER_TOKEN_DEFAULT: &str = "shardkv";

/// Which cluster and group a stream of Raft traffic belongs to: the sender stamps it on
/// every batch, the receiver drops batches whose identity it does not share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Never 0 (0 is what a sender from before identities sends).
    pub cluster_id: u64,
    pub group_id: Gid,
}

/// The cluster id of a cluster token (like etcd's `--initial-cluster-token`): 64-bit FNV-1a
/// of its UTF-8 bytes, stable across builds and platforms, never 0.
pub fn cluster_id_from_token(token: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = token.bytes().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    hash.max(1)
}

/// `0x…`, the way cluster ids are shown to operators.
pub fn cluster_hex(id: u64) -> String {
    format!("{id:#018x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_stable_and_distinct() {
        // Goal: the derivation never changes (ids are persisted) and separates tokens.
        assert_eq!(cluster_id_from_token(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(cluster_id_from_token("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(
            cluster_id_from_token(CLUSTER_TOKEN_DEFAULT),
            cluster_id_from_token("shardkv2")
        );
    }
}
