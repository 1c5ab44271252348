//! `shardkv bench --move-sizes 1MiB,16MiB,64MiB`: what a user sees while a shard moves under
//! load. For each size, one shard is filled with that much data, then moved to another group
//! (`admin move`) while the usual closed-loop sessions run on keys of every *other* shard and
//! one probe session reads a key of the moving shard in a loop. Reported per size:
//!
//! - the move's duration: from the `move` command until the old owner deleted its copy and the
//!   new owner serves the shard (both read from the groups' status);
//! - the moving shard's unavailability: the longest gap between two successful probe reads
//!   around the move;
//! - the unaffected keys' throughput and p99 latency during the move against the same length
//!   of time right before it (same run, same sessions).

use crate::conn::ConnArgs;
use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use shardkv_client::{
    Client, ClientOptions, Config, CtrlClient, GID_NONE, Gid, KvOp, Role, ShardPhase,
    fetch_group_status,
};
use shardkv_kv::{KvCommand, KvQuery};
use shardkv_types::{Rng, ShardId, shard_of_key};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The value size the moving shard is filled with.
const FILL_VALUE_BYTES: usize = 64 << 10;
/// Sessions that fill the moving shard.
const FILL_SESSIONS: usize = 8;
/// How long the load runs before the move (the "before" window is the last part of it).
const BEFORE: Duration = Duration::from_secs(3);
/// How long the load runs on after the move completed.
const AFTER: Duration = Duration::from_secs(1);
/// The longest a move may take before the run gives up on it.
const MOVE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the groups' status is read while the move runs.
const POLL: Duration = Duration::from_millis(20);

/// What the move bench needs from `shardkv bench`'s flags.
pub struct MoveBench<'a> {
    pub conn: &'a ConnArgs,
    pub clients: usize,
    pub value_size: usize,
    pub read_ratio: f64,
    pub keys: u64,
    pub sizes: Vec<u64>,
}

/// One successful operation of the load: when it ended (since the run's origin) and how long
/// it took.
type Sample = (Duration, Duration);

/// What one size's run measured.
struct MoveFigures {
    size: u64,
    shard: ShardId,
    from: Gid,
    to: Gid,
    move_took: Duration,
    unavailable: Duration,
    before: Window,
    during: Window,
}

/// Throughput and p99 of the unaffected keys over one window.
struct Window {
    ops_per_s: f64,
    p99: Duration,
}

pub fn run(b: MoveBench<'_>) -> Result<()> {
    let rt = crate::conn::runtime()?;
    let ctrl_endpoints = crate::conn::split_list(
        b.conn
            .ctrl_endpoints
            .as_deref()
            .unwrap_or(&b.conn.endpoints),
    );
    let opts = ClientOptions {
        op_timeout: b.conn.timeout.max(Duration::from_secs(30)),
        ..b.conn.options()?
    };
    let ctrl = CtrlClient::connect_with(&ctrl_endpoints, opts.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client =
        Client::connect_sharded(&ctrl_endpoints, opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut figures = Vec::new();
    for (i, &size) in b.sizes.iter().enumerate() {
        let f = rt.block_on(one_size(&b, &ctrl, &client, size, i))?;
        eprintln!(
            "bench: {} moved {} → {} in {:.2} s",
            mib(size),
            f.from,
            f.to,
            f.move_took.as_secs_f64()
        );
        figures.push(f);
    }
    print_table(&figures, b.clients);
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Fills a shard with `size` bytes, moves it under load, and measures.
async fn one_size(
    b: &MoveBench<'_>,
    ctrl: &CtrlClient,
    client: &Client,
    size: u64,
    round: usize,
) -> Result<MoveFigures> {
    let mut admin = ctrl.session();
    let config = admin
        .query(None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (shard, from, to) = pick_move(&config, round)?;
    let shards = config.shard_count();
    let seed = RandomState::new().hash_one(Instant::now());
    let run_tag = format!("{:06x}", seed & 0xff_ffff);
    let tag = tag_in(shard, shards, &format!("mv{run_tag}-{round}-"));
    fill(client, &tag, size).await?;

    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng::new(seed);
    let prefix = format!("bm{run_tag}-{round}-");
    let load: Vec<_> = (0..b.clients)
        .map(|_| {
            let l = Load {
                client: client.session(),
                prefix: prefix.clone(),
                keys: b.keys,
                shards,
                moving: shard,
                read_ratio: b.read_ratio,
                value_size: b.value_size,
            };
            tokio::spawn(l.run(origin, stop.clone(), rng.fork()))
        })
        .collect();
    let probe_key = format!("{{{tag}}}fill-{:06}", 0).into_bytes();
    let probe = tokio::spawn(probe(client.session(), probe_key, origin, stop.clone()));

    tokio::time::sleep(BEFORE).await;
    let move_start = origin.elapsed();
    match admin.move_shard(shard, to).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => bail!("the controller refused the move: {e}"),
        Err(e) => bail!("the move command failed: {e}"),
    }
    wait_moved(&config, shard, from, to).await?;
    let move_end = origin.elapsed();
    tokio::time::sleep(AFTER).await;
    stop.store(true, Ordering::Relaxed);

    let mut samples = Vec::new();
    for t in load {
        samples.extend(t.await.context("a load session panicked")?);
    }
    let probes = probe.await.context("the probe panicked")?;
    let took = move_end - move_start;
    let before_from = move_start.saturating_sub(took.max(Duration::from_secs(1)).min(BEFORE));
    Ok(MoveFigures {
        size,
        shard,
        from,
        to,
        move_took: took,
        unavailable: longest_gap(&probes, move_start, move_end + AFTER),
        before: window(&samples, before_from, move_start),
        during: window(&samples, move_start, move_end),
    })
}

/// The shard to move in round `round` and its source and destination groups.
fn pick_move(config: &Config, round: usize) -> Result<(ShardId, Gid, Gid)> {
    let gids: Vec<Gid> = config.groups.keys().copied().collect();
    if gids.len() < 2 {
        bail!("a move needs at least two shard groups joined (see `shardkv admin join`)");
    }
    let owned: Vec<usize> = (0..config.shards.len())
        .filter(|&i| config.shards[i] != GID_NONE)
        .collect();
    let i = owned
        .get(round * 7 % owned.len().max(1))
        .copied()
        .context("no shard is assigned")?;
    let from = config.shards[i];
    let to = *gids.iter().find(|&&g| g != from).expect("two groups");
    Ok((ShardId(i as u64), from, to))
}

/// A hash tag, starting with `stem`, whose keys land in `shard`.
fn tag_in(shard: ShardId, shards: u32, stem: &str) -> String {
    (0u64..)
        .map(|i| format!("{stem}{i}"))
        .find(|t| shard_of_key(format!("{{{t}}}").as_bytes(), shards) == shard)
        .expect("some tag lands in every shard")
}

/// Writes about `size` bytes into keys `{tag}fill-NNNNNN`.
async fn fill(client: &Client, tag: &str, size: u64) -> Result<()> {
    let count = size.div_ceil(FILL_VALUE_BYTES as u64).max(1);
    let tasks: Vec<_> = (0..FILL_SESSIONS as u64)
        .map(|s| {
            let mut c = client.session();
            let tag = tag.to_string();
            tokio::spawn(async move {
                for i in (s..count).step_by(FILL_SESSIONS) {
                    let key = format!("{{{tag}}}fill-{i:06}").into_bytes();
                    c.put(key, vec![b'f'; FILL_VALUE_BYTES])
                        .await
                        .map_err(|e| anyhow::anyhow!("filling the shard: {e}"))?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await.context("a fill session panicked")??;
    }
    Ok(())
}

/// A closed-loop session on keys of every shard but the moving one.
struct Load {
    client: Client,
    prefix: String,
    keys: u64,
    shards: u32,
    moving: ShardId,
    read_ratio: f64,
    value_size: usize,
}

impl Load {
    async fn run(mut self, origin: Instant, stop: Arc<AtomicBool>, mut rng: Rng) -> Vec<Sample> {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let key = loop {
                let k = format!("{}{:08}", self.prefix, rng.range(0, self.keys)).into_bytes();
                if shard_of_key(&k, self.shards) != self.moving {
                    break k;
                }
            };
            let read = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= self.read_ratio;
            let op = if read {
                KvOp::Read(KvQuery::Get { key })
            } else {
                KvOp::Write(KvCommand::Put {
                    key,
                    value: vec![b'v'; self.value_size],
                })
            };
            let start = Instant::now();
            if self.client.execute(op).await.is_ok() {
                samples.push((origin.elapsed(), start.elapsed()));
            }
        }
        samples
    }
}

/// Reads `key` in a loop; returns when each successful read ended.
async fn probe(
    mut client: Client,
    key: Vec<u8>,
    origin: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let mut ends = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if client.get(key.clone()).await.is_ok() {
            ends.push(origin.elapsed());
        }
    }
    ends
}

/// Waits until `to` serves `shard` and `from` holds nothing of it, on every member that
/// answers (read from the groups' status).
async fn wait_moved(config: &Config, shard: ShardId, from: Gid, to: Gid) -> Result<()> {
    let deadline = Instant::now() + MOVE_TIMEOUT;
    let servers = |g: Gid| config.groups.get(&g).cloned().unwrap_or_default();
    loop {
        if Instant::now() > deadline {
            bail!("shard {shard} did not move from {from} to {to} within {MOVE_TIMEOUT:?}");
        }
        let served = group_phase(&servers(to), to, shard).await == Some(Some(ShardPhase::Serving));
        let gone = group_phase(&servers(from), from, shard).await == Some(None);
        if served && gone {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The phase of `shard` at the leader of group `gid` (`Some(None)`: not held), or `None` if
/// no leader answered.
async fn group_phase(addrs: &[String], gid: Gid, shard: ShardId) -> Option<Option<ShardPhase>> {
    for a in addrs {
        let Ok(s) = fetch_group_status(a, Some(gid), POLL * 10).await else {
            continue;
        };
        if s.role != Role::Leader {
            continue;
        }
        let held = s.shards?;
        return Some(held.shards.iter().find(|h| h.0 == shard).map(|h| h.1));
    }
    None
}

/// The longest time without a successful probe read within [from, to]: between two
/// successes, or from the last success to `to`.
fn longest_gap(ends: &[Duration], from: Duration, to: Duration) -> Duration {
    let mut last = ends.iter().copied().rfind(|&e| e <= from).unwrap_or(from);
    let mut longest = Duration::ZERO;
    for &e in ends.iter().filter(|&&e| e > from && e <= to) {
        longest = longest.max(e - last);
        last = e;
    }
    longest.max(to.saturating_sub(last))
}

/// Throughput and p99 of the samples that ended within [from, to).
fn window(samples: &[Sample], from: Duration, to: Duration) -> Window {
    let mut h = Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3).expect("valid bounds");
    for (_, took) in samples.iter().filter(|(e, _)| *e >= from && *e < to) {
        h.saturating_record((took.as_nanos() as u64).max(1));
    }
    let secs = (to - from).as_secs_f64().max(1e-9);
    Window {
        ops_per_s: h.len() as f64 / secs,
        p99: Duration::from_nanos(h.value_at_quantile(0.99)),
    }
}

fn print_table(figures: &[MoveFigures], clients: usize) {
    println!(
        "moving one shard under load ({clients} sessions on the other shards, one probe on the moving one)"
    );
    println!(
        "{:>9} {:>6} {:>9} {:>9} {:>12} {:>12} {:>6} {:>10} {:>10}",
        "shard",
        "id",
        "move",
        "unavail",
        "ops/s before",
        "ops/s during",
        "ratio",
        "p99 before",
        "p99 during"
    );
    for f in figures {
        let ratio = f.during.ops_per_s / f.before.ops_per_s.max(1e-9);
        println!(
            "{:>9} {:>6} {:>8.2}s {:>8.2}s {:>12.0} {:>12.0} {:>6.2} {:>8.1}ms {:>8.1}ms",
            mib(f.size),
            f.shard.0,
            f.move_took.as_secs_f64(),
            f.unavailable.as_secs_f64(),
            f.before.ops_per_s,
            f.during.ops_per_s,
            ratio,
            f.before.p99.as_secs_f64() * 1e3,
            f.during.p99.as_secs_f64() * 1e3,
        );
    }
}
