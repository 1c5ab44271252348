//! The loopback ports `shardkv up` needs, and who holds them.
//!
//! Before `up` creates or starts anything, [`check_free`] binds every port a member will
//! listen on (its gRPC port, its admin HTTP port, the gRPC port + 1000, and unless `up` runs
//! without Redis its Redis port, the gRPC port + [`REDIS_PORT_OFFSET`]) and fails naming
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

/// A member's Redis (RESP) port is its gRPC port + this (`up`'s members on 7001-7003 serve
/// Redis on 9001-9003).
pub const REDIS_PORT_OFFSET: u16 = 2000;

/// A member's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberPorts {
    pub grpc: u16,
    pub admin: u16,
    /// `None` past 65535 (an error only where Redis is on: [`check_free`]).
    pub redis: Option<u16>,
}

/// Member `index`'s ports (member n`index+1`).
pub fn member_ports(base: u16, index: u64) -> Result<MemberPorts> {
    let id = index + 1;
    let grpc = u16::try_from(u64::from(base) + index)
        .ok()
        .with_context(|| format!("--base-port {base}: member n{id}'s port is past 65535"))?;
    let admin = grpc.checked_add(ADMIN_PORT_OFFSET).with_context(|| {
        format!("--base-port {base}: member n{id}'s admin port ({grpc} + {ADMIN_PORT_OFFSET}) is past 65535")
    })?;
    Ok(MemberPorts {
        grpc,
        admin,
        redis: grpc.checked_add(REDIS_PORT_OFFSET),
    })
}

/// Fails, naming the port and whose it is, unless every member's gRPC, admin and (with
/// `redis`) Redis port can be bound on loopback now.
pub fn check_free(base: u16, replicas: u64, redis: bool) -> Result<()> {
    let last = u64::from(base) + replicas - 1;
    let range = |offset: u16| {
        let o = u64::from(offset);
        format!("{}..={}", u64::from(base) + o, last + o)
    };
    let mut needs = format!("{base}..={last} and {}", range(ADMIN_PORT_OFFSET));
    if redis {
        needs.push_str(&format!(" and {}", range(REDIS_PORT_OFFSET)));
    }
    for i in 0..replicas {
        let id = i + 1;
        let p = member_ports(base, i)?;
        let mut ports = vec![(p.grpc, "gRPC"), (p.admin, "admin HTTP")];
        if redis {
            let port = p.redis.with_context(|| {
                format!(
                    "--base-port {base}: member n{id}'s redis port ({} + {REDIS_PORT_OFFSET}) is \
                     past 65535; use a lower --base-port or --no-redis",
                    p.grpc
                )
            })?;
            ports.push((port, "redis"));
        }
        for (port, what) in ports {
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                let hint = if what == "redis" {
                    " or --no-redis"
                } else {
                    ""
                };
                bail!(
                    "port 127.0.0.1:{port} (member n{id}'s {what} port) is not free: {e}; is \
                     another cluster running there? Stop it, or start on other ports with \
                     --base-port{hint} (this one needs {needs}); nothing was started"
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
    fn member_ports_are_base_plus_index_and_that_plus_1000_and_2000() {
        let p = member_ports(7001, 2).expect("in range");
        assert_eq!((p.grpc, p.admin, p.redis), (7003, 8003, Some(9003)));
        assert_eq!(member_ports(64000, 0).expect("admin fits").redis, None);
        assert!(member_ports(65000, 0).is_err(), "admin port past 65535");
        assert!(member_ports(65535, 1).is_err(), "gRPC port past 65535");
    }
}
