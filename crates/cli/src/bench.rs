//! `shardkv bench`: closed-loop load against a running group, or against etcd.
//!
//! `--clients` sessions run concurrently over `--connections` HTTP/2 connections per
//! member. Each session issues one operation, waits for its end, and issues the next: a
//! read with probability `--read-ratio`, else a Put of a value unique to (session,
//! counter), padded to `--value-size`. Keys are drawn uniformly from `--keys` keys under a
//! per-run prefix, so a run never reads another run's data and its history starts from
//! missing keys. The loop ([`load`]) is the same for every target ([`target::Target`]):
//!
//! - `--target shardkv` (default): sessions of `shardkv-client`, each its own client id (so
//!   its own exactly-once sequence); reads are linearizable Gets.
//! - `--target etcd`: etcd's v3 KV API at `--endpoints` ([`etcd`]): Put, and Range reads,
//!   linearizable or (`--reads serializable`) serializable.
//!
//! Operations in the first `--warmup` are not measured (but are in the history). The run
//! ends after `--duration` of measurement or `--ops` measured operations, whichever first.
//! The report: per kind (read / write) the successful operations, ops/s and latency
//! percentiles from an HdrHistogram; failed operations counted by error kind.
//!
//! `--history FILE` writes every operation (warmup included) as one JSON line in
//! `shardkv-lincheck`'s format, on one monotonic clock, for `shardkv check-history`.
//!
//! `--fill` loads data instead: each key of `--keys` is written once, in order (shared by
//! the sessions), and the run ends when all are written (or at `--duration` / `--ops`).
//!
//! `--sweep clients=1,4,16` (or `value=256,4KiB`, `reads=0,50,95` in percent) runs one such
//! run per value and writes a CSV row per point and SVG plots ([`sweep`]).
//!
//! What it is not: an open-loop load generator (latency under a fixed arrival rate), or a
//! timed test: nothing here asserts a figure.

mod etcd;
mod load;
mod moves;
mod plot;
mod report;
mod shardkv_target;
mod sweep;
mod target;

use crate::conn::{ConnArgs, WriteOut};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use report::{Report, RunShape};
use shardkv_client::{Client, ClientOptions};
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The most concurrent sessions one bench runs.
const CLIENTS_MAX: usize = 16 * 1024;
/// The most connections per member.
const CONNECTIONS_MAX: usize = 256;

/// The system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// A shardkv group or sharded cluster.
    Shardkv,
    /// An etcd cluster (v3 API, plaintext).
    Etcd,
}

impl TargetKind {
    fn name(self) -> &'static str {
        match self {
            TargetKind::Shardkv => "shardkv",
            TargetKind::Etcd => "etcd",
        }
    }
}

/// Which reads the bench issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadKind {
    /// Linearizable: the result reflects every write acknowledged before the read began.
    Linearizable,
    /// Served from one member's local state, possibly stale (etcd only).
    Serializable,
}

impl ReadKind {
    fn name(self) -> &'static str {
        match self {
            ReadKind::Linearizable => "linearizable",
            ReadKind::Serializable => "serializable",
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The system to load: shardkv, or etcd at --endpoints (HOST:PORT of its client URLs).
    #[arg(long, value_enum, default_value_t = TargetKind::Shardkv)]
    pub target: TargetKind,
    /// Which reads to issue (serializable: etcd only).
    #[arg(long, value_enum, default_value_t = ReadKind::Linearizable)]
    pub reads: ReadKind,
    /// Concurrent sessions, each with its own client id and one operation in flight.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// HTTP/2 connections per member, shared round-robin by the sessions
    /// (default: one per 32 sessions, at least 1, at most 8).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Bytes per written value (e.g. 256, 1KiB); each value is unique, padded to this size.
    #[arg(long, default_value = "256", value_parser = parse_size)]
    pub value_size: usize,
    /// Fraction of operations that are reads, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0)]
    pub read_ratio: f64,
    /// Size of the key space; keys are drawn uniformly.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Load data: write each of the --keys keys once, in order, then stop (puts only; still
    /// bounded by --duration and --ops). Use --key-prefix to read the keys afterwards.
    #[arg(long)]
    pub fill: bool,
    /// How long to measure, after the warmup (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop after this many measured operations (successful or not), if before --duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Run this long before measuring (e.g. 1s, 0s).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Write every operation to FILE as JSON lines (check with `shardkv check-history`).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Instead of the plain run: for each size (e.g. 1MiB,16MiB,64MiB), fill one shard with
    /// that much data and move it to another group under load; report the move's duration,
    /// the shard's unavailability, and the other keys' throughput and p99 before and during
    /// the move (a sharded cluster with at least two groups).
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    pub move_sizes: Vec<usize>,
    /// One run per value of one dimension: `clients=1,4,16,64`, `value=256,4KiB,64KiB` or
    /// `reads=0,50,95` (read percentage); writes a CSV and SVG plots to --out-dir.
    #[arg(long, value_name = "DIM=V,V,...")]
    pub sweep: Option<sweep::Sweep>,
    /// Where --sweep writes `sweep-DIM.csv`, `sweep-DIM-throughput.svg` and
    /// `sweep-DIM-latency.svg`.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// With --sweep: also plot the rows of this CSV (another target's sweep of the same
    /// dimension), both systems on one chart.
    #[arg(long, value_name = "FILE", requires = "sweep")]
    pub compare_csv: Option<PathBuf>,
    /// Key prefix (default: `bench-` and a random tag, new for each run).
    #[arg(long)]
    pub key_prefix: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// The parameters a sweep varies.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub clients: usize,
    pub value_size: usize,
    pub read_ratio: f64,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let n = shardkv_server::units::parse_bytes(s)?;
    usize::try_from(n).map_err(|_| format!("{s:?} is too large"))
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    check_args(&args)?;
    if !args.move_sizes.is_empty() {
        moves::run(moves::MoveBench {
            conn: &args.conn,
            clients: args.clients,
            value_size: args.value_size,
            read_ratio: args.read_ratio,
            keys: args.keys,
            sizes: args.move_sizes.iter().map(|&s| s as u64).collect(),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(sweep) = &args.sweep {
        return sweep::run(&args, sweep);
    }
    let point = Point {
        clients: args.clients,
        value_size: args.value_size,
        read_ratio: args.read_ratio,
    };
    let report = run_point(&args, point, args.key_prefix.clone(), args.history.clone())?;
    match args.conn.write_out {
        WriteOut::Text => report.print_text(),
        WriteOut::Json => println!("{}", report.json()),
    }
    if report.successes() == 0 {
        eprintln!(
            "bench: no operation succeeded (is the {} cluster up at the given --endpoints?)",
            args.target.name()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One closed-loop run at `point` against `--target`; `prefix`: the key prefix (`None`: a
/// fresh random one).
fn run_point(
    args: &BenchArgs,
    point: Point,
    prefix: Option<String>,
    history: Option<PathBuf>,
) -> Result<Report> {
    check_point(point)?;
    let connections = args
        .connections
        .unwrap_or_else(|| point.clients.div_ceil(32).clamp(1, 8));
    if connections == 0 || connections > CONNECTIONS_MAX {
        bail!("--connections must be 1 to {CONNECTIONS_MAX}");
    }
    let seed = RandomState::new().hash_one(Instant::now());
    let prefix = prefix.unwrap_or_else(|| format!("bench-{:06x}-", seed & 0xff_ffff));
    let load = load::Load {
        shape: RunShape {
            target: args.target.name(),
            reads: args.reads.name(),
            clients: point.clients,
            connections,
            value_size: point.value_size,
            read_ratio: point.read_ratio,
            keys: args.keys,
            warmup: args.warmup,
            prefix,
        },
        duration: args.duration,
        ops: args.ops,
        seed,
        history,
        fill: args.fill,
    };
    match args.target {
        TargetKind::Shardkv => {
            let opts = ClientOptions {
                op_timeout: args.conn.timeout,
                ..ClientOptions::default()
            };
            // Built before the runtime: connecting may run a runtime of its own.
            let roots = (0..connections)
                .map(|_| args.conn.client_with(opts.clone()))
                .collect::<Result<Vec<Client>>>()?;
            let rt = bench_runtime()?;
            load::run(&rt, &shardkv_target::ShardkvTarget::new(roots), load)
        }
        TargetKind::Etcd => {
            let rt = bench_runtime()?;
            let target = rt.block_on(etcd::EtcdTarget::connect(
                &args.conn.endpoint_list(),
                connections,
                args.conn.timeout,
                args.reads == ReadKind::Serializable,
            ))?;
            load::run(&rt, &target, load)
        }
    }
}

fn bench_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn check_args(args: &BenchArgs) -> Result<()> {
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive (--ops can end the run earlier)");
    }
    let etcd = args.target == TargetKind::Etcd;
    if !etcd && args.reads == ReadKind::Serializable {
        bail!("--reads serializable is for --target etcd (shardkv's reads are linearizable)");
    }
    if etcd && args.conn.tls.cacert.is_some() {
        bail!("--target etcd speaks plaintext only (no --cacert)");
    }
    if etcd && !args.move_sizes.is_empty() {
        bail!("--move-sizes moves shardkv shards: not with --target etcd");
    }
    if args.fill && (args.read_ratio > 0.0 || !args.move_sizes.is_empty()) {
        bail!("--fill writes every key once: not with --read-ratio or --move-sizes");
    }
    if args.sweep.is_some() && (args.history.is_some() || !args.move_sizes.is_empty()) {
        bail!("--sweep runs many points: not with --history or --move-sizes");
    }
    check_point(Point {
        clients: args.clients,
        value_size: args.value_size,
        read_ratio: args.read_ratio,
    })
}

fn check_point(p: Point) -> Result<()> {
    if p.clients == 0 || p.clients > CLIENTS_MAX {
        bail!("--clients must be 1 to {CLIENTS_MAX}");
    }
    if !(0.0..=1.0).contains(&p.read_ratio) {
        bail!("--read-ratio must be between 0.0 and 1.0");
    }
    if p.value_size > shardkv_kv::VALUE_BYTES_MAX {
        bail!(
            "--value-size must be at most {} bytes",
            shardkv_kv::VALUE_BYTES_MAX
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> BenchArgs {
        let argv = ["shardkv", "bench"].iter().chain(args);
        match Cli::try_parse_from(argv).expect("valid flags").command {
            Command::Bench(b) => b,
            other => panic!("parsed as {other:?}"),
        }
    }

    /// Goal: `--fill` loads data; reads or shard moves alongside it are refused up front.
    #[test]
    fn fill_is_writes_only() {
        let fill = parse(&["--fill", "--keys", "10", "--key-prefix", "f-"]);
        assert!(fill.fill);
        check_args(&fill).expect("a plain fill is fine");
        let err = check_args(&parse(&["--fill", "--read-ratio", "0.5"])).unwrap_err();
        assert!(err.to_string().contains("--fill"), "{err}");
        let err = check_args(&parse(&["--fill", "--move-sizes", "1MiB"])).unwrap_err();
        assert!(err.to_string().contains("--fill"), "{err}");
    }
}
