//! The loopback ports `shardkv up` needs, and who holds them.
//!
//! Before `up` creates or starts anything, [`check_free`] binds every port a member will
//! listen on (its gRPC port and its admin HTTP port, the gRPC port + 1000) and fails naming
//! the first busy one. The ports are released again before the members start, so another
//! program may take one in between; before `up` reads anything from a port (a leader, a
//! shard map) it waits until the listener there is its own member's ([`owner`]), and
//! fails if another process holds it: it never reports another cluster's members as its own.
//!
//! Ownership is read from Linux's `/proc`: the listening sockets of `/proc/net/tcp{,6}` on a
//! port, and the socket inodes among a process's open descriptors. Elsewhere it is
//! [`Owner::Unknown`] and `up` relies on the bind check alone.

use anyhow::{Context, Result, bail};
use shardkv_server::config::ADMIN_PORT_OFFSET;
use std::collections::BTreeSet;

/// A member's ports: its gRPC port and its admin HTTP port.
pub fn member_ports(base: u16, index: u64) -> Result<(u16, u16)> {
    let id = index + 1;
    let grpc = u16::try_from(u64::from(base) + index)
        .ok()
        .with_context(|| format!("--base-port {base}: member n{id}'s port is past 65535"))?;
    let admin = grpc.checked_add(ADMIN_PORT_OFFSET).with_context(|| {
        format!("--base-port {base}: member n{id}'s admin port ({grpc} + {ADMIN_PORT_OFFSET}) is past 65535")
    })?;
    Ok((grpc, admin))
}

/// Fails, naming the port and whose it is, unless every member's gRPC and admin port can be
/// bound on loopback now.
pub fn check_free(base: u16, replicas: u64) -> Result<()> {
    let last = u64::from(base) + replicas - 1;
    for i in 0..replicas {
        let id = i + 1;
        let (grpc, admin) = member_ports(base, i)?;
        for (port, what) in [(grpc, "gRPC"), (admin, "admin HTTP")] {
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                bail!(
                    "port 127.0.0.1:{port} (member n{id}'s {what} port) is not free: {e}; is \
                     another cluster running there? Stop it, or start on other ports with \
                     --base-port (this one needs {base}..={last} and {}..={}); nothing was \
                     started",
                    u64::from(base) + u64::from(ADMIN_PORT_OFFSET),
                    last + u64::from(ADMIN_PORT_OFFSET)
                );
            }
        }
    }
    Ok(())
}

/// Who listens on a TCP port, as far as `pid` is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// Nothing listens there (yet).
    Nobody,
    /// `pid` listens there.
    Pid,
    /// Some other process listens there.
    Other,
    /// Cannot tell (no `/proc`).
    Unknown,
}

/// Who listens on TCP `port` (any local address), seen from process `pid`.
pub fn owner(port: u16, pid: u32) -> Owner {
    let Some(listening) = listening_inodes(port) else {
        return Owner::Unknown;
    };
    if listening.is_empty() {
        return Owner::Nobody;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        // Not ours to read (a restricted /proc) or gone: the caller checks whether its
        // child is alive; this cannot tell who listens.
        return Owner::Unknown;
    };
    let held = fds.filter_map(|fd| {
        let link = std::fs::read_link(fd.ok()?.path()).ok()?;
        let link = link.to_str()?;
        link.strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse::<u64>()
            .ok()
    });
    let mut held = held;
    if held.any(|inode| listening.contains(&inode)) {
        Owner::Pid
    } else {
        Owner::Other
    }
}

/// The inodes of the sockets listening on TCP `port`; `None` without `/proc/net/tcp`.
fn listening_inodes(port: u16) -> Option<BTreeSet<u64>> {
    const LISTEN: &str = "0A";
    let v4 = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let v6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let inodes = v4
        .lines()
        .chain(v6.lines())
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let local_port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            (local_port == port && *state == LISTEN)
                .then(|| inode.parse().ok())
                .flatten()
        })
        .collect();
    Some(inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_owned_by_its_process_and_by_no_other() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if owner(port, std::process::id()) == Owner::Unknown {
            return; // no /proc here
        }
        assert_eq!(owner(port, std::process::id()), Owner::Pid);
        // pid 1 (init) holds no socket of ours.
        assert_eq!(owner(port, 1), Owner::Other);
        drop(listener);
        assert_eq!(owner(port, std::process::id()), Owner::Nobody);
    }

    #[test]
    fn member_ports_are_base_plus_index_and_that_plus_1000() {
        assert_eq!(member_ports(7001, 2).expect("in range"), (7003, 8003));
        assert!(member_ports(65000, 0).is_err(), "admin port past 65535");
        assert!(member_ports(65535, 1).is_err(), "gRPC port past 65535");
    }
}
