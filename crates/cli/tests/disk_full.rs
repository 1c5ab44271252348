//! A full disk under real `shardkv server` processes. Each member's data directory is its
//! own small tmpfs, mounted by the test (root needed: without it the tests fail saying so,
//! unless `SHARDKV_SKIP_ROOT_TESTS=1`, when they print that they were skipped). A disk is
//! filled by writing a filler file into it until ENOSPC, and freed by deleting the file.
//! The members run with `--disk-reserve 0` (the test default), so what is tested is the WAL
//! write itself failing with ENOSPC (the stall), not the reserve refusing writes early.
//!
//! - One follower's disk full: a client whose endpoint list starts with that follower is
//!   redirected and never gets a definite `NoSpace`; the follower logs its stall, rate
//!   limited; once freed it catches up and nothing acknowledged is lost.
//! - A majority's disks full (the leader among them, or not): reads of acknowledged writes
//!   keep working, writes are never acknowledged; once freed, writes work again and every
//!   acknowledged write is readable.

mod common;

use common::cluster::{Cluster, tail, wait_until};
use shardkv_client::{Client, ClientOptions, NodeStatus};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bound on every wait below (outcomes, never speeds, are checked).
const WAIT: Duration = Duration::from_secs(60);
/// Each member's disk.
const DISK: &str = "size=16m";
/// The log lines of a stall: its start, and the rate-limited "still stalled" ones.
const STALL_LINES: [&str; 2] = [
    "cannot persist raft state",
    "still stalled, or stalled again",
];
/// How many times a stalled follower gets a little room, resumes and stalls again.
const FLAPS: usize = 8;
/// The room it gets each time (about sixty writes).
const FLAP_BYTES: u64 = 16 << 10;
/// How long the stall is kept up while the client works through it, so its rate limit
/// (one line per 10 s) is exercised by many retries.
const STALL_HELD: Duration = Duration::from_secs(3);

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", DISK, "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy: detach it so it goes once its last user does.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// A group of three whose data directories are each their own tmpfs; `None` (printed) when
/// mounting is not allowed and `SHARDKV_SKIP_ROOT_TESTS=1`.
fn cluster_on_tmpfs() -> Option<Cluster> {
    let mut c = Cluster::create(3, &[]);
    for id in 1..=3 {
        let dir = c.member(id).data_dir.clone();
        match Tmpfs::mount(&dir) {
            Ok(m) => c.hold(Box::new(m)),
            Err(why) if std::env::var("SHARDKV_SKIP_ROOT_TESTS").as_deref() == Ok("1") => {
                eprintln!("skipped: mounting a tmpfs needs root ({why})");
                return None;
            }
            Err(why) => panic!(
                "this test needs root to mount a tmpfs per member ({why}); \
                 set SHARDKV_SKIP_ROOT_TESTS=1 to skip it"
            ),
        }
    }
    c.start_all();
    Some(c)
}

/// Fills the filesystem holding `dir` with a file until ENOSPC, down to the last byte of
/// its last page; returns the file, whose removal frees the disk.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = File::create(&path).expect("create the filler");
    let chunk = vec![0xa5u8; 64 << 10];
    for size in [64 << 10, 4 << 10, 1] {
        // Bounded: the disk holds at most 16 MiB.
        for _ in 0..(16 << 20) / size + 2 {
            match f.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", dir.display()),
            }
        }
    }
    path
}

fn log_has(c: &Cluster, id: u64, text: &str) -> bool {
    std::fs::read_to_string(&c.member(id).log).is_ok_and(|l| l.contains(text))
}

/// Member `id` has logged that it stalled.
fn stalled(c: &Cluster, id: u64) -> bool {
    log_has(c, id, STALL_LINES[0])
}

/// How many stall lines member `id` logged.
fn stall_lines(c: &Cluster, id: u64) -> usize {
    let log = std::fs::read_to_string(&c.member(id).log).unwrap_or_default();
    log.lines()
        .filter(|l| STALL_LINES.iter().any(|s| l.contains(s)))
        .count()
}

/// The stall lines of member `id` over `held` are no more than the start, one per 10 s
/// and some slack for stalls that ended and began again.
fn assert_stall_rate_limited(c: &Cluster, id: u64, held: Duration) {
    let lines = stall_lines(c, id);
    let allowed = 3 + held.as_secs() as usize / 10;
    eprintln!("n{id}: {lines} stall lines over {held:?} (at most {allowed})");
    assert!(
        (1..=allowed).contains(&lines),
        "n{id} logged {lines} stall lines over {held:?} (at most {allowed}):\n{}",
        tail(&c.member(id).log, 30)
    );
}

fn status(c: &Cluster, id: u64) -> NodeStatus {
    let mut found = None;
    wait_until(&format!("n{id} to answer its status"), WAIT, || {
        found = c.status(id);
        found.is_some()
    });
    found.expect("found")
}

fn client_for(c: &Cluster, order: &[u64], opts: ClientOptions) -> Client {
    let endpoints: Vec<String> = order.iter().map(|&i| c.member(i).addr.clone()).collect();
    Client::connect_with(&[endpoints.join(",")], opts).expect("client")
}

/// A value big enough that a few writes fill a WAL page.
fn value(i: usize) -> String {
    format!("v{i}-{}", "x".repeat(200))
}

/// Every key of `acked` reads back its value through `client`.
fn assert_all_readable(c: &Cluster, client: &mut Client, acked: &BTreeMap<String, String>) {
    c.block_on(async {
        for (k, v) in acked {
            let got = client.get(k.clone()).await;
            assert_eq!(
                got.as_ref().ok(),
                Some(&Some(v.clone().into_bytes())),
                "acknowledged {k} reads back: {got:?}"
            );
        }
    });
}

/// Goal: with one follower's WAL at ENOSPC, a client whose endpoint list starts with that
/// follower completes every write and read (it is redirected, never failed with
/// `NoSpace`); the follower logs its stall a handful of times, not on every retry nor on
/// every stall of a disk at its edge; freed, it catches up and nothing acknowledged is
/// lost. Method: fill the follower's disk, write until it logs the stall, keep writing and
/// reading through it for a while; then eight times free a little room, wait for it to
/// resume and write until it stalls again; count its stall lines; delete the filler, wait
/// for it to resume with the leader's applied index, kill the other follower (so writes
/// need this one), write, and read everything back.
#[test]
fn a_follower_with_a_full_disk_redirects_clients_logs_its_stall_rate_limited_and_catches_up() {
    let Some(mut c) = cluster_on_tmpfs() else {
        return;
    };
    let leader = c.settled_leader();
    let follower = (1..=3).find(|&i| i != leader).expect("a follower");
    let other = (1..=3)
        .find(|&i| i != leader && i != follower)
        .expect("the other follower");
    let mut client = client_for(&c, &[follower, leader, other], ClientOptions::default());
    let mut acked = BTreeMap::new();
    let mut i = 0;
    let mut put = |c: &Cluster, client: &mut Client, acked: &mut BTreeMap<String, String>| {
        let (k, v) = (format!("k{i}"), value(i));
        i += 1;
        let r = c.block_on(client.put(k.clone(), v.clone()));
        assert!(r.is_ok(), "put {k} through the full follower first: {r:?}");
        acked.insert(k, v);
    };
    for _ in 0..10 {
        put(&c, &mut client, &mut acked);
    }
    let filler = fill(&c.member(follower).data_dir);
    let mut puts = 0;
    wait_until(&format!("n{follower} to log its stall"), WAIT, || {
        puts += 1;
        assert!(puts < 2000, "n{follower} never stalled after {puts} writes");
        put(&c, &mut client, &mut acked);
        stalled(&c, follower)
    });
    // Through the stall: writes, then reads for a while (reads do not grow the disks).
    let stall_seen = Instant::now();
    for _ in 0..50 {
        put(&c, &mut client, &mut acked);
    }
    let mut reads = 0;
    while reads < 50 || stall_seen.elapsed() < STALL_HELD {
        assert!(reads < 1_000_000, "bounded");
        reads += 1;
        let k = format!("k{}", reads % acked.len());
        let got = c.block_on(client.get(k.clone()));
        assert_eq!(
            got.ok(),
            Some(Some(acked[&k].clone().into_bytes())),
            "get {k}"
        );
    }
    assert!(
        status(&c, follower).no_space,
        "n{follower} is still stalled"
    );
    // At the edge of its disk: room for a few writes freed again and again, so the stall
    // ends and begins again each time (each checked on its status page).
    let mut room = std::fs::metadata(&filler).expect("filler").len();
    for flap in 0..FLAPS {
        room = room.saturating_sub(FLAP_BYTES);
        let f = File::options()
            .write(true)
            .open(&filler)
            .expect("open the filler");
        f.set_len(room).expect("shrink the filler");
        wait_until(&format!("n{follower} to resume ({flap})"), WAIT, || {
            c.status(follower).is_some_and(|s| !s.no_space)
        });
        let mut puts = 0;
        wait_until(
            &format!("n{follower} to stall again ({flap})"),
            WAIT,
            || {
                puts += 1;
                assert!(puts < 5000, "n{follower} never stalled again");
                put(&c, &mut client, &mut acked);
                c.status(follower).is_some_and(|s| s.no_space)
            },
        );
    }
    assert_stall_rate_limited(&c, follower, stall_seen.elapsed());
    // Freed: its stall ends and it catches up (a stalled member applies what the others
    // commit, so the applied index alone does not show it persists again).
    std::fs::remove_file(&filler).expect("free the disk");
    let target = status(&c, leader).applied;
    wait_until(&format!("n{follower} to resume and catch up"), WAIT, || {
        c.status(follower)
            .is_some_and(|s| !s.no_space && s.applied >= target)
    });
    // It persists again: with the other follower gone, writes need it; nothing was lost.
    c.kill(other);
    put(&c, &mut client, &mut acked);
    assert_all_readable(&c, &mut client, &acked);
}

/// The majority scenario: `with_leader` says whether the leader is one of the two members
/// whose disks fill. Goal: reads of acknowledged writes keep succeeding, writes are never
/// acknowledged; freed, writes succeed again and every acknowledged write is readable.
fn majority_full(with_leader: bool) {
    let Some(c) = cluster_on_tmpfs() else {
        return;
    };
    let leader = c.settled_leader();
    let followers: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let full = if with_leader {
        vec![leader, followers[0]]
    } else {
        followers.clone()
    };
    let opts = ClientOptions {
        op_timeout: Duration::from_secs(6),
        ..ClientOptions::default()
    };
    let mut client = client_for(&c, &[1, 2, 3], opts.clone());
    let mut acked = BTreeMap::new();
    c.block_on(async {
        for i in 0..20 {
            let (k, v) = (format!("k{i}"), value(i));
            client.put(k.clone(), v.clone()).await.expect("put before");
            acked.insert(k, v);
        }
    });
    let fillers: Vec<PathBuf> = full
        .iter()
        .map(|&id| fill(&c.member(id).data_dir))
        .collect();
    // Writes go on until both full members stalled; those acknowledged meanwhile count.
    let mut i = 20;
    wait_until("both full members to log their stall", WAIT, || {
        assert!(i < 2000, "bounded");
        let (k, v) = (format!("k{i}"), value(i));
        i += 1;
        if c.block_on(client.put(k.clone(), v.clone())).is_ok() {
            acked.insert(k, v);
        }
        full.iter().all(|&id| stalled(&c, id))
    });
    let stall_seen = Instant::now();
    // No write is acknowledged now.
    for _ in 0..3 {
        let k = format!("k{i}");
        i += 1;
        let r = c.block_on(client.put(k.clone(), "never"));
        assert!(r.is_err(), "a write with a majority's disks full: {r:?}");
        eprintln!("a write with a majority's disks full ended with {r:?}");
    }
    // Reads of acknowledged writes keep working.
    assert_all_readable(&c, &mut client, &acked);
    for &id in &full {
        assert_stall_rate_limited(&c, id, stall_seen.elapsed());
    }
    // Freed: writes work again, and nothing acknowledged was lost.
    for f in &fillers {
        std::fs::remove_file(f).expect("free the disk");
    }
    let mut tries = 0;
    wait_until("a write to succeed after freeing", WAIT, || {
        tries += 1;
        let (k, v) = (format!("after{tries}"), value(tries));
        let ok = c.block_on(client.put(k.clone(), v.clone())).is_ok();
        if ok {
            acked.insert(k, v);
        }
        ok
    });
    let mut fresh = client_for(&c, &[1, 2, 3], opts);
    assert_all_readable(&c, &mut fresh, &acked);
}

/// See [`majority_full`]: the leader and one follower fill.
#[test]
fn with_the_leader_and_a_follower_full_reads_keep_working_and_writes_are_never_acknowledged() {
    majority_full(true);
}

/// See [`majority_full`]: both followers fill; the leader has room.
#[test]
fn with_both_followers_full_reads_keep_working_and_writes_are_never_acknowledged() {
    majority_full(false);
}
