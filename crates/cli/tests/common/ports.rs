//! Free loopback ports for the servers the tests start.
//!
//! A member started with only `--listen` also listens on its gRPC port + [`ADMIN_PORT_OFFSET`]
//! (admin HTTP), and `shardkv up`'s members on + [`REDIS_PORT_OFFSET`] (Redis). So a port is
//! handed out only when it and those two are free, and the ports of one call never meet each
//! other's offsets (n1's admin port is never n3's gRPC port).
//!
//! Ports come from below the kernel's ephemeral range (32768 and up on Linux), from a random
//! start: an outgoing connection of any process never takes one of them as its local port
//! between the check and the server's bind, and parallel test processes rarely try the same
//! ones. What remains (two tests picking the same free port within the same instant) is as
//! rare as with port 0.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::{SystemTime, UNIX_EPOCH};

/// The offset of a member's admin HTTP port from its gRPC port (`shardkv server`'s default).
pub const ADMIN_PORT_OFFSET: u16 = 1000;
/// The offset of a member's Redis port from its gRPC port (`shardkv up`'s default).
pub const REDIS_PORT_OFFSET: u16 = 2000;

/// Where gRPC ports are drawn: all three of a port's listeners stay below 32768.
const FIRST: u16 = 10_000;
const END: u16 = 32_768 - REDIS_PORT_OFFSET;
/// Candidates tried before giving up (a machine with this many busy ports is broken).
const ATTEMPTS: usize = 20_000;

/// `n` free gRPC ports, each with its admin and Redis ports free, no two overlapping.
pub fn free_ports(n: usize) -> Vec<u16> {
    free_runs(n, 1)
}

/// A base port for `shardkv up`'s `replicas` members: `base..base+replicas` and their admin
/// and Redis ports are all free.
pub fn free_base_port(replicas: u16) -> u16 {
    free_runs(1, replicas)[0]
}

/// `count` starts of runs of `len` consecutive ports, every port of every run free together
/// with its offsets, all of them distinct.
fn free_runs(count: usize, len: u16) -> Vec<u16> {
    let span = usize::from(END - FIRST - len);
    let mut next = start_offset() % span;
    // Held until every port is chosen, so one call never hands out a port twice.
    let mut held: Vec<TcpListener> = Vec::new();
    let mut taken: BTreeSet<u16> = BTreeSet::new();
    let mut starts = Vec::with_capacity(count);
    for _ in 0..ATTEMPTS {
        if starts.len() == count {
            return starts;
        }
        // A stride coprime to the span walks the whole range without repeats.
        next = (next + 7919) % span;
        let base = FIRST + next as u16;
        let wanted: Vec<u16> = (0..len)
            .flat_map(|i| [0, ADMIN_PORT_OFFSET, REDIS_PORT_OFFSET].map(|o| base + i + o))
            .collect();
        if wanted.iter().any(|p| taken.contains(p)) {
            continue;
        }
        let bound: Option<Vec<TcpListener>> = wanted
            .iter()
            .map(|&p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if let Some(listeners) = bound {
            taken.extend(&wanted);
            held.extend(listeners);
            starts.push(base);
        }
    }
    assert_eq!(
        starts.len(),
        count,
        "only {} of {count} free port runs found",
        starts.len()
    );
    starts
}

/// A start that differs between test processes and calls.
fn start_offset() -> usize {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos as usize) ^ (std::process::id() as usize).wrapping_mul(2_654_435_761)
}
