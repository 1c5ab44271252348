//! The production shell of a shardkv replica group member.
//!
//! It wires the deterministic core (`shardkv-rsm` with `shardkv-kv`, `shardkv-ctrl` and
//! `shardkv-shardkv`) to the real world: storage on the filesystem with fdatasync
//! (`shardkv-storage`), gRPC for clients and peers (`shardkv-net`), and the wall clock. What it is not: it holds no protocol logic; every
//! decision about requests and Raft is the core's.
//!
//! # Shape
//! - One OS thread (the *node thread*, [`driver`]) owns the replica and the store. It turns
//!   10 ms of wall-clock time into one Raft tick and takes items from a bounded inbox
//!   ([`handler::INBOX_ITEMS_MAX`]): peer messages, client requests (each with a oneshot for
//!   its answer), status queries. After each batch it runs the Ready loop of
//!   `shardkv-host` — the one the simulator also runs: persist snapshot, entries and hard
//!   state with ONE fdatasync (group commit: every request that arrived since the last
//!   batch shares it), send the messages, advance, hand the snapshot the rsm took to a
//!   writer thread (the log is compacted once its file is durable), answer clients. Two
//!   latency exceptions (see the host crate docs): a leader whose term and vote are
//!   unchanged sends its appends before its own sync (Raft thesis §10.2.1), and a Ready
//!   that only moves the commit index is written without a sync.
//! - gRPC handlers ([`handler::NodeHandler`]) only enqueue and wait, with a server-side
//!   deadline (`request_timeout`, default 2 s) after which the client is told `Timeout`:
//!   the request may have applied and the client retries with the same sequence number.
//! - The peer transport keeps one stream per peer with a bounded queue (drop when full).
//! - TLS (`--cert`, `--key`, `--cacert`; docs/security.md): the port serves mutual TLS, and
//!   the same certificate, which must name this node (`shardkv://node/<id>`, checked before
//!   storage is opened), is the client certificate of the peer streams and the outbox. The
//!   Raft and Shard services then accept only member certificates (`shardkv-net`).
//! - The admin port ([`admin`], `--admin-listen`, default the gRPC port + 1000): HTTP/1.1
//!   with `/metrics` (Prometheus, [`metrics`]), `/health`, `/livez`, `/readyz`, `/status`,
//!   bounded in connections and time. Each node thread publishes its Raft view to its
//!   group's [`metrics::GroupMetrics`] after every drive (atomic stores, no lock); the KV
//!   front counts and times client requests; the store's disk ([`metrics::TimedDisk`])
//!   times each fdatasync. Health and readiness read only what was published.
//! - The Redis Cluster port ([`redis`], `--redis-listen`, off by default): RESP for Redis
//!   clients, each connection its own client session of the cluster, bounded like the gRPC
//!   port's connections.
//! - Log lines of a node thread are inside the spans `node{id}`, `group{gid}` and
//!   `raft{term}` (a new span when the term changes: see [`driver`]).
//! - A shard group's node ([`member::Member`] for `ShardGroup`) drains its duties' requests
//!   to other groups after every Ready loop into its [`outbox::Outbox`], which sends each
//!   one as a tokio task (bounded in flight, bounded per attempt) and puts the answer back
//!   into the node's inbox; the duties retry on their own clock whatever is lost.
//!
//! # Memory a peer or client can make a member hold, per hosted group
//! - The inbox: [`handler::INBOX_ITEMS_MAX`] items and [`handler::INBOX_BYTES_MAX`] bytes of
//!   peer messages and client requests; past either, messages are dropped and requests
//!   answered `Busy`.
//! - Peer send queues: `shardkv_net::PEER_QUEUE_MESSAGES_MAX` messages and
//!   `PEER_QUEUE_BYTES_MAX` bytes per peer; past either, messages are dropped.
//! - Requests to other groups: [`outbox::OUTBOUND_IN_FLIGHT_MAX`] requests and
//!   [`outbox::OUTBOUND_BYTES_MAX`] bytes of the largest answers they may bring, held until
//!   the answer is handled; past either, requests are dropped (the duties retry).
//! - Client requests waiting for their outcome: [`node::PENDING_REQUESTS_MAX`] (the host's
//!   bound); a write's bytes live in the Raft log meanwhile, bounded by the Raft core's
//!   uncommitted-entry limit (a count; see `shardkv-raft`'s `Config`).
//!
//! # Failure policy
//! - fsync of the WAL (or any other non-`NoSpace` WAL) storage error: logged, the node thread stops and
//!   [`run`] returns `Err`; the process exits non-zero. Never retried.
//! - Disk full: writes are answered `NoSpace`, reads keep working (see [`node`]).
//! - Descriptors and slow clients (see [`listen`]): a connection limit kept below the
//!   descriptor limit (raised to the hard limit at start), silent connections closed
//!   (handshake and idle timeouts), HTTP/2 streams and windows bounded per connection,
//!   accept errors logged (rate-limited) with a back-off, and a process that cannot accept
//!   for a while has its leaders hand leadership to another member.
//! - One process per data directory: a `LOCK` file held for the process's life; the port is
//!   bound before storage is touched.
//! - A snapshot that cannot be saved (EMFILE, EACCES, no space) is logged and tried again
//!   later; the full log is still on disk (see `shardkv-host`).
//! - Bad input from the network never panics: frames are size-checked by tonic, undecodable
//!   Raft messages are dropped with a log line, oversized requests get `TooLarge`.
//!
//! # Configuration
//! [`ConfigLayer`] (flags, `SHARDKV_*` environment, TOML file; flags win) resolved into a
//! [`ServerConfig`]; sizes and durations in human units (`64MiB`, `100ms`).

pub mod admin;
pub mod config;
pub mod driver;
mod front;
pub mod handler;
mod in_process;
pub mod listen;
pub mod member;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod redis;
mod server;
mod snapshot_writer;
mod stall_log;
pub mod units;

pub use config::{AdminListen, CTRL_GID, ConfigLayer, LogFormat, ServerConfig, Service};
pub use server::run;
