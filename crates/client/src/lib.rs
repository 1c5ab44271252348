//! Clients of shardkv.
//!
//! [`ClerkCore`] is the transport-free clerk logic every client shares: a random client id
//! chosen at creation, a sequence number per write that every retry reuses (so the servers'
//! session tables apply it at most once), a remembered leader, leader hints followed on
//! `NotLeader`, the next server tried on a timeout. The simulator drives it with virtual time;
//! the async library drives it over gRPC.

mod clerk;

pub use clerk::{ClerkCore, KvOp, Next};
