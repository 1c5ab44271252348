//! Descriptor exhaustion and silent connections against real `shardkv server` processes.
//! A member is put at its descriptor limit from outside (prlimit(2) on the running process,
//! to the lowest descriptor number it does not use, so every new descriptor fails with
//! EMFILE) — as when something else in the process or a flood of connections took them.
//!
//! - A leader that cannot accept connections says so (rate-limited), does not spin, and
//!   hands leadership to another member; the group keeps serving; once descriptors are
//!   back it accepts again.
//! - A follower at the limit survives its snapshot (the file cannot be created): it logs it,
//!   keeps applying, and saves a snapshot once descriptors are back.
//! - A connection that never sends anything is closed by the server.

mod common;

use common::cluster::{Cluster, tail, wait_until};
use rustix::process::{Pid, Resource, Rlimit, prlimit};
use shardkv_client::{Client, Role};
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Bound on every wait below (outcomes, never speeds, are checked).
const WAIT: Duration = Duration::from_secs(60);

/// The pid of the server holding `data_dir` (its lock file records it).
fn pid_of(data_dir: &Path) -> Pid {
    let text = std::fs::read_to_string(data_dir.join("LOCK")).expect("read the lock file");
    let raw: i32 = text.trim().parse().expect("a pid in the lock file");
    Pid::from_raw(raw).expect("a positive pid")
}

/// Sets `pid`'s descriptor limit so that no new descriptor can be opened; returns the old
/// limit.
fn exhaust_descriptors(pid: Pid) -> Rlimit {
    let fds = std::fs::read_dir(format!("/proc/{}/fd", pid.as_raw_nonzero()))
        .expect("list the server's descriptors");
    let used: std::collections::BTreeSet<u64> = fds
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|n| !used.contains(n)).expect("a free number");
    // Only the soft limit: a lowered hard limit could not be raised again without
    // privileges. The server inherited the hard limit of this process.
    let hard = rustix::process::getrlimit(Resource::Nofile).maximum;
    let tight = Rlimit {
        current: Some(lowest_free),
        maximum: hard,
    };
    let old = prlimit(Some(pid), Resource::Nofile, tight).expect("prlimit the server");
    Rlimit {
        current: old.current,
        maximum: hard,
    }
}

fn restore_descriptors(pid: Pid, old: Rlimit) {
    prlimit(Some(pid), Resource::Nofile, old).expect("restore the server's limit");
}

fn log_has(c: &Cluster, id: u64, text: &str) -> bool {
    std::fs::read_to_string(&c.member(id).log).is_ok_and(|l| l.contains(text))
}

/// The highest index among the snapshot files of member `id`'s group 1.
fn newest_snapshot(c: &Cluster, id: u64) -> u64 {
    let dir = c.member(id).data_dir.join("g1");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
                    rest.split('-').next()?.parse().ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Goal: a leader that cannot accept connections (EMFILE) logs why, hands leadership to
/// another member, keeps running, and the group keeps serving; with descriptors back, it
/// accepts again. Method: put the leader at its descriptor limit, connect to it (the
/// connection waits in the backlog, so accept fails), wait for another member to lead,
/// write through the others, restore the limit and ask the old leader for its status.
#[test]
fn a_leader_out_of_descriptors_hands_leadership_off_and_the_group_keeps_serving() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let pid = pid_of(&c.member(leader).data_dir);
    let old = exhaust_descriptors(pid);
    // Connections the leader cannot accept wait in its listen backlog; one more each poll
    // (bounded), so one accepted through a descriptor freed meanwhile still leaves some.
    let leader_addr = c.member(leader).addr.clone();
    let mut waiting: Vec<TcpStream> = Vec::new();
    let others: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    wait_until("another member to lead", WAIT, || {
        if waiting.len() < 64
            && let Ok(s) = TcpStream::connect(&leader_addr)
        {
            waiting.push(s);
        }
        others.iter().any(|&i| {
            c.status(i)
                .is_some_and(|s| s.role == Role::Leader && s.leader.map(|l| l.0) == Some(i))
        })
    });
    assert!(c.is_running(leader), "the old leader keeps running");
    assert!(
        log_has(&c, leader, "cannot accept client connections"),
        "the old leader says why it steps down:\n{}",
        tail(&c.member(leader).log, 20)
    );
    assert!(log_has(&c, leader, "handing leadership off"));
    // The group serves through the other members.
    let endpoints: Vec<String> = others.iter().map(|&i| c.member(i).addr.clone()).collect();
    let mut client = Client::connect(&[endpoints.join(",")]).expect("client");
    c.block_on(async {
        for i in 0..20 {
            client.put(format!("k{i}"), "v").await.expect("put");
        }
        assert_eq!(client.get("k19").await.expect("get"), Some(b"v".to_vec()));
    });
    restore_descriptors(pid, old);
    wait_until("the old leader to answer again", WAIT, || {
        c.status(leader).is_some()
    });
    assert!(c.is_running(leader));
}

/// Goal: a follower at its descriptor limit does not die at its next snapshot: it logs
/// that the snapshot was not saved, keeps applying, and saves one once descriptors are
/// back. Method: a small snapshot threshold; exhaust a follower's descriptors; write
/// through the leader until the follower logs the failed snapshot; restore; write until a
/// newer snapshot file appears in the follower's directory.
#[test]
fn a_follower_out_of_descriptors_survives_its_snapshot_and_saves_one_later() {
    let mut c = Cluster::start(3, &["--max-raft-state", "8KiB"]);
    let leader = c.leader();
    let follower = (1..=3).find(|&i| i != leader).expect("a follower");
    let pid = pid_of(&c.member(follower).data_dir);
    let before = newest_snapshot(&c, follower);
    let old = exhaust_descriptors(pid);
    let mut client = Client::connect(&[c.member(leader).addr.clone()]).expect("client");
    let value = "x".repeat(500);
    let mut n = 0;
    wait_until("the follower to fail a snapshot", WAIT, || {
        c.block_on(async {
            for _ in 0..20 {
                client.put(format!("k{n}"), value.clone()).await.expect("put");
                n += 1;
            }
        });
        log_has(&c, follower, "snapshot not saved")
    });
    assert!(c.is_running(follower), "the follower survives a failed snapshot");
    assert_eq!(newest_snapshot(&c, follower), before);
    restore_descriptors(pid, old);
    wait_until("the follower to save a snapshot", WAIT, || {
        c.block_on(async {
            for _ in 0..20 {
                client.put(format!("k{n}"), value.clone()).await.expect("put");
                n += 1;
            }
        });
        newest_snapshot(&c, follower) > before
    });
    assert!(c.is_running(follower));
    let applied = c.status(leader).expect("leader status").applied.0;
    c.wait_applied(follower, applied);
}

/// Goal: a connection that never sends a byte is closed by the server (the handshake
/// timeout) instead of holding a descriptor forever. Method: connect, send nothing, read
/// until the server closes (bounded).
#[test]
fn a_silent_connection_is_closed_by_the_server() {
    let c = Cluster::start(1, &[]);
    c.leader();
    let mut s = TcpStream::connect(&c.member(1).addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut buf = [0u8; 64];
    // HTTP/2 may send its own preface first; the connection must then end.
    let mut closed = false;
    for _ in 0..100 {
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            // Still open when the read timed out.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the server closed the silent connection");
    assert!(c.status(1).is_some(), "and keeps serving");
}
