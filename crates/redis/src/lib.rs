//! A Redis Cluster front end for shardkv: what lets `redis-cli -c`, `redis-benchmark
//! --cluster` and every Redis client library talk to a shardkv cluster, with shardkv's
//! semantics (every command linearizable, every write replicated to a majority and durable
//! before it is answered).
//!
//! This crate is the protocol, free of any transport or cluster state:
//! - [`request`]: framing requests out of a connection's bytes — RESP arrays of bulk
//!   strings and inline commands, every declared length checked against [`Limits`] before
//!   its bytes are waited for; a protocol error ends the connection, as in Redis.
//! - [`command`]: a request parsed into a [`Command`], with Redis's error texts.
//! - [`reply`]: [`Reply`] values and their RESP2 / RESP3 encodings (`HELLO 3` switches).
//! - [`auth`]: password authentication (`AUTH`, `HELLO ... AUTH`), as Redis's `requirepass`.
//! - [`session`]: one connection's state (protocol, name, id, access) and the dispatch of its
//!   commands; data commands are checked (one slot, mastered here, else `CROSSSLOT` /
//!   `MOVED`) and run by a [`Backend`], which holds the connection's shardkv client session.
//! - [`pipeline`]: the requests a connection has already sent, answered in order, each
//!   run of data commands of one slot and kind as one KV operation (one proposal or one
//!   read).
//! - [`cluster`]: the [`ClusterView`] — each server process a node, master for the slots
//!   whose group leader it hosts — behind `CLUSTER SLOTS | SHARDS | NODES | INFO` and the
//!   `MOVED` redirections; [`survey`] builds it from what a process learned of its cluster.
//! - [`backend`]: the [`Backend`] a connection runs data commands on, and the mapping of each
//!   data command onto one operation of the KV state machine.
//!
//! Slots are shardkv's own (DESIGN.md §4): Redis's CRC16 hash slot of a key or of its hash
//! tag, contiguous slot ranges per shard.

pub mod auth;
pub mod backend;
pub mod cluster;
pub mod command;
pub mod conn;
pub mod pipeline;
pub mod reply;
pub mod request;
pub mod session;
pub mod survey;

pub use auth::{Access, Credentials, Password};
pub use backend::{Backend, DataOp, DataOut, ServerInfo};
pub use cluster::{ClusterView, Node, SlotRange, node_id};
pub use command::{ClusterCmd, Command, CommandCmd, SetAnswer, SetWhen, parse};
pub use conn::{Ended, serve};
pub use reply::{Protocol, Reply};
pub use request::{Limits, ProtocolError, take_request};
pub use session::{After, Session};
pub use survey::{LeaderClaim, RespAddr, Survey, latest_leader, node_id_of};
