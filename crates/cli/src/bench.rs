//! `shardkv bench`: closed-loop load against a running group.
//!
//! `--clients` sessions (each its own client id, so each has its own exactly-once sequence)
//! run concurrently over `--connections` HTTP/2 connections per member. Each session issues
//! one operation, waits for its end, and issues the next: a linearizable Get with
//! probability `--read-ratio`, else a Put of a value unique to (session, counter), padded to
//! `--value-size`. Keys are drawn uniformly from `--keys` keys under a per-run prefix, so a
//! run never reads another run's data and its history starts from missing keys.
//!
//! Operations in the first `--warmup` are not measured (but are in the history). The run
//! ends after `--duration` of measurement or `--ops` measured operations, whichever first.
//! The report: per kind (read / write) the successful operations, ops/s and latency
//! percentiles from an HdrHistogram; failed operations counted by error kind.
//!
//! `--history FILE` writes every operation (warmup included) as one JSON line in
//! `shardkv-lincheck`'s format, on one monotonic clock, for `shardkv check-history`.
//!
//! What it is not: an open-loop load generator (latency under a fixed arrival rate), or a
//! timed test: nothing here asserts a figure.

mod moves;
mod report;

use crate::conn::{ConnArgs, WriteOut};
use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use report::{ErrorCounts, Report, RunShape, error_kind};
use shardkv_client::{Client, ClientOptions, Error, KvOp, Outcome};
use shardkv_kv::{KvCommand, KvOutput, KvQuery};
use shardkv_lincheck::{HistoryRecord, OpKind, RecordOutput, Status};
use shardkv_types::Rng;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest latency a histogram records; longer ones are clamped to it.
const LATENCY_NS_MAX: u64 = 120_000_000_000;
/// Significant figures the histograms keep.
const HISTOGRAM_SIGFIGS: u8 = 3;
/// The most concurrent sessions one bench runs.
const CLIENTS_MAX: usize = 16 * 1024;
/// The most connections per member.
const CONNECTIONS_MAX: usize = 256;

#[derive(Debug, Args)]
pub struct BenchArgs {
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
    /// Fraction of operations that are (linearizable) reads, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0)]
    pub read_ratio: f64,
    /// Size of the key space; keys are drawn uniformly.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
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
    /// Key prefix (default: `bench-` and a random tag, new for each run).
    #[arg(long)]
    pub key_prefix: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let n = shardkv_server::units::parse_bytes(s)?;
    usize::try_from(n).map_err(|_| format!("{s:?} is too large"))
}

/// What every session of one run shares.
struct Plan {
    /// The origin of the history clock.
    origin: Instant,
    measure_from: Instant,
    deadline: Instant,
    /// Measured operations still allowed; `None`: no limit.
    ops_left: Option<AtomicI64>,
    read_ratio: f64,
    keys: u64,
    value_size: usize,
    prefix: String,
    history: Option<mpsc::Sender<HistoryRecord>>,
}

/// What one session measured.
struct SessionStats {
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    errors: ErrorCounts,
    /// When its last measured operation ended.
    last_end: Option<Instant>,
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
    let connections = args
        .connections
        .unwrap_or_else(|| args.clients.div_ceil(32).clamp(1, 8));
    if connections == 0 || connections > CONNECTIONS_MAX {
        bail!("--connections must be 1 to {CONNECTIONS_MAX}");
    }
    let seed = RandomState::new().hash_one(Instant::now());
    let prefix = args
        .key_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{:06x}-", seed & 0xff_ffff));
    let (history_tx, writer) = match &args.history {
        Some(path) => {
            let (tx, w) = start_history_writer(path.clone())?;
            (Some(tx), Some(w))
        }
        None => (None, None),
    };
    let opts = ClientOptions {
        op_timeout: args.conn.timeout,
        ..ClientOptions::default()
    };
    let roots = (0..connections)
        .map(|_| args.conn.client_with(opts.clone()))
        .collect::<Result<Vec<Client>>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let origin = Instant::now();
    let plan = Arc::new(Plan {
        origin,
        measure_from: origin + args.warmup,
        deadline: origin + args.warmup + args.duration,
        ops_left: args
            .ops
            .map(|n| AtomicI64::new(i64::try_from(n).unwrap_or(i64::MAX))),
        read_ratio: args.read_ratio,
        keys: args.keys,
        value_size: args.value_size,
        prefix,
        history: history_tx,
    });
    let stats = rt.block_on(async {
        let mut rng = Rng::new(seed);
        let tasks: Vec<_> = (0..args.clients)
            .map(|i| {
                let session = roots[i % roots.len()].session();
                tokio::spawn(run_session(session, plan.clone(), rng.fork()))
            })
            .collect();
        let mut stats = Vec::with_capacity(tasks.len());
        for t in tasks {
            stats.push(t.await.context("a bench session panicked")?);
        }
        anyhow::Ok(stats)
    })?;
    let plan = Arc::into_inner(plan).context("sessions still hold the plan")?;
    // Closing the channel lets the writer finish.
    drop(plan.history);
    let history = match (writer, &args.history) {
        (Some(w), Some(path)) => {
            let written = w
                .join()
                .map_err(|_| anyhow::anyhow!("the history writer panicked"))?
                .with_context(|| format!("writing the history to {}", path.display()))?;
            Some((path.clone(), written))
        }
        _ => None,
    };
    let shape = RunShape {
        clients: args.clients,
        connections,
        value_size: args.value_size,
        read_ratio: args.read_ratio,
        keys: args.keys,
        warmup: args.warmup,
        prefix: plan.prefix,
    };
    let report = Report::merge(shape, plan.measure_from, stats, history)?;
    match args.conn.write_out {
        WriteOut::Text => report.print_text(),
        WriteOut::Json => println!("{}", report.json()),
    }
    if report.successes() == 0 {
        eprintln!("bench: no operation succeeded (is the group up at the given --endpoints?)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn check_args(args: &BenchArgs) -> Result<()> {
    if args.clients == 0 || args.clients > CLIENTS_MAX {
        bail!("--clients must be 1 to {CLIENTS_MAX}");
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        bail!("--read-ratio must be between 0.0 and 1.0");
    }
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if args.value_size > shardkv_kv::VALUE_BYTES_MAX {
        bail!(
            "--value-size must be at most {} bytes",
            shardkv_kv::VALUE_BYTES_MAX
        );
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive (--ops can end the run earlier)");
    }
    Ok(())
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, HISTOGRAM_SIGFIGS)
        .expect("constant histogram bounds are valid")
}

/// One session's closed loop.
async fn run_session(mut client: Client, plan: Arc<Plan>, mut rng: Rng) -> SessionStats {
    let mut stats = SessionStats {
        reads: histogram(),
        writes: histogram(),
        errors: ErrorCounts::default(),
        last_end: None,
    };
    let id = client.id().0;
    let mut counter: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= plan.deadline {
            break;
        }
        let measured = now >= plan.measure_from;
        if measured
            && let Some(left) = &plan.ops_left
            && left.fetch_sub(1, Ordering::Relaxed) <= 0
        {
            break;
        }
        let key = format!("{}{:08}", plan.prefix, rng.range(0, plan.keys));
        let is_read = unit_f64(&mut rng) < plan.read_ratio;
        let op = if is_read {
            KvOp::Read(KvQuery::Get {
                key: key.clone().into_bytes(),
            })
        } else {
            counter += 1;
            KvOp::Write(KvCommand::Put {
                key: key.clone().into_bytes(),
                value: unique_value(id, counter, plan.value_size),
            })
        };
        let value = match (&op, &plan.history) {
            (KvOp::Write(KvCommand::Put { value, .. }), Some(_)) => {
                Some(String::from_utf8_lossy(value.as_slice()).into_owned())
            }
            _ => None,
        };
        let start = Instant::now();
        let result = client.execute(op).await;
        let end = Instant::now();
        if measured {
            stats.record(is_read, &result, end - start);
            stats.last_end = Some(end);
        }
        if let Some(tx) = &plan.history {
            let record = history_record(id, key, value, &result, &plan, start, end);
            // The writer only goes away on an I/O error, which it reports itself.
            let _ = tx.send(record);
        }
    }
    stats
}

impl SessionStats {
    fn record(&mut self, is_read: bool, result: &Result<KvOutput, Error>, took: Duration) {
        match result {
            Ok(_) => {
                let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
                let h = if is_read {
                    &mut self.reads
                } else {
                    &mut self.writes
                };
                h.saturating_record(ns.clamp(1, LATENCY_NS_MAX));
            }
            Err(e) => self.errors.add(error_kind(e)),
        }
    }
}

/// A uniform draw from [0, 1).
fn unit_f64(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// `CLIENT.COUNTER.` padded with `x` to `size` bytes (longer if `size` is too small to be
/// unique): a value no other write of any session produces.
fn unique_value(client: u64, counter: u64, size: usize) -> Vec<u8> {
    let mut v = format!("{client:x}.{counter}.").into_bytes();
    if v.len() < size {
        v.resize(size, b'x');
    }
    v
}

fn history_record(
    client: u64,
    key: String,
    value: Option<String>,
    result: &Result<KvOutput, Error>,
    plan: &Plan,
    start: Instant,
    end: Instant,
) -> HistoryRecord {
    let ns = |t: Instant| u64::try_from((t - plan.origin).as_nanos()).unwrap_or(u64::MAX);
    let (status, output) = match result {
        Ok(KvOutput::Value(v)) => (
            Status::Ok,
            Some(RecordOutput::Value(
                v.as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            )),
        ),
        Ok(KvOutput::Cas { swapped, .. }) => (Status::Ok, Some(RecordOutput::Swapped(*swapped))),
        Ok(KvOutput::Done) => (Status::Ok, None),
        // Only a session record holds it (a failed CAS, which changed nothing).
        Ok(KvOutput::CasFailed { .. }) => (Status::Failed, None),
        Err(e) => match e.outcome() {
            Outcome::Unknown => (Status::Unknown, None),
            Outcome::Failed | Outcome::Ok => (Status::Failed, None),
        },
    };
    HistoryRecord {
        client,
        // Only puts carry a value.
        op: if value.is_some() {
            OpKind::Put
        } else {
            OpKind::Get
        },
        key,
        value,
        expected: None,
        output,
        start_ns: ns(start),
        end_ns: ns(end),
        status,
    }
}

/// Starts the thread that writes history records as they come; it returns how many it
/// wrote once every sender is gone.
fn start_history_writer(
    path: PathBuf,
) -> Result<(
    mpsc::Sender<HistoryRecord>,
    std::thread::JoinHandle<std::io::Result<u64>>,
)> {
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create the history file {}", path.display()))?;
    let (tx, rx) = mpsc::channel::<HistoryRecord>();
    let handle = std::thread::Builder::new()
        .name("bench-history".into())
        .spawn(move || {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let mut written = 0u64;
            for record in rx {
                shardkv_lincheck::write_record_jsonl(&mut out, &record)?;
                written += 1;
            }
            out.flush()?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            Ok(written)
        })
        .context("cannot start the history writer")?;
    Ok((tx, handle))
}
