//! The closed loop every target shares: `clients` sessions, each issuing one operation,
//! waiting for its end and issuing the next, on keys drawn uniformly from the run's key
//! space; measured after the warmup, until the duration or the operation budget is spent.
//! A fill run ([`Load::fill`]) instead hands out the keys in order, each to one write, and
//! ends when every key was handed out (so a run loads exactly `keys` keys).

use super::report::{ErrorCounts, Report, RunShape};
use super::target::{Op, OpError, OpOk, Session, Target};
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use shardkv_lincheck::{HistoryRecord, OpKind, RecordOutput, RedisFields, Status};
use shardkv_types::Rng;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest latency a histogram records; longer ones are clamped to it.
const LATENCY_NS_MAX: u64 = 120_000_000_000;
/// Significant figures the histograms keep.
const HISTOGRAM_SIGFIGS: u8 = 3;

/// One run: its shape (echoed in the report) and how long it lasts.
pub struct Load {
    pub shape: RunShape,
    pub duration: Duration,
    /// Stop after this many measured operations, if before `duration`.
    pub ops: Option<u64>,
    pub seed: u64,
    /// Write every operation to this file (JSON lines).
    pub history: Option<PathBuf>,
    /// Write each key of the key space once, in order, instead of drawing keys (no reads).
    pub fill: bool,
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
    /// In a fill run: the next key to hand out.
    fill_next: Option<AtomicU64>,
    value_size: usize,
    prefix: String,
    history: Option<mpsc::Sender<HistoryRecord>>,
}

/// What one session measured.
pub struct SessionStats {
    pub reads: Histogram<u64>,
    pub writes: Histogram<u64>,
    pub errors: ErrorCounts,
    /// When its last measured operation ended.
    pub last_end: Option<Instant>,
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, HISTOGRAM_SIGFIGS)
        .expect("constant histogram bounds are valid")
}

/// Runs `load` against `target` on `rt` and merges what the sessions measured.
pub fn run<T: Target>(rt: &tokio::runtime::Runtime, target: &T, load: Load) -> Result<Report> {
    let (history_tx, writer) = match &load.history {
        Some(path) => {
            let (tx, w) = start_history_writer(path.clone())?;
            (Some(tx), Some(w))
        }
        None => (None, None),
    };
    let origin = Instant::now();
    let shape = &load.shape;
    let plan = Arc::new(Plan {
        origin,
        measure_from: origin + shape.warmup,
        deadline: origin + shape.warmup + load.duration,
        ops_left: load
            .ops
            .map(|n| AtomicI64::new(i64::try_from(n).unwrap_or(i64::MAX))),
        read_ratio: shape.read_ratio,
        keys: shape.keys,
        fill_next: load.fill.then(|| AtomicU64::new(0)),
        value_size: shape.value_size,
        prefix: shape.prefix.clone(),
        history: history_tx,
    });
    let stats = rt.block_on(async {
        let mut rng = Rng::new(load.seed);
        let tasks: Vec<_> = (0..shape.clients)
            .map(|i| tokio::spawn(run_session(target.session(i), plan.clone(), rng.fork())))
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
    let history = match (writer, load.history) {
        (Some(w), Some(path)) => {
            let written = w
                .join()
                .map_err(|_| anyhow::anyhow!("the history writer panicked"))?
                .with_context(|| format!("writing the history to {}", path.display()))?;
            Some((path, written))
        }
        _ => None,
    };
    Report::merge(load.shape, plan.measure_from, stats, history)
}

/// One session's closed loop.
async fn run_session<S: Session>(mut session: S, plan: Arc<Plan>, mut rng: Rng) -> SessionStats {
    let mut stats = SessionStats {
        reads: histogram(),
        writes: histogram(),
        errors: ErrorCounts::default(),
        last_end: None,
    };
    let id = session.id();
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
        let Some(index) = plan.next_key(&mut rng) else {
            break;
        };
        let key = key_name(&plan.prefix, index);
        let is_read = plan.fill_next.is_none() && unit_f64(&mut rng) < plan.read_ratio;
        let mut written = None;
        let op = if is_read {
            Op::Get {
                key: key.clone().into_bytes(),
            }
        } else {
            counter += 1;
            let value = unique_value(id, counter, plan.value_size);
            if plan.history.is_some() {
                written = Some(String::from_utf8_lossy(&value).into_owned());
            }
            Op::Put {
                key: key.clone().into_bytes(),
                value,
            }
        };
        let start = Instant::now();
        let result = session.execute(op).await;
        let end = Instant::now();
        if measured {
            stats.record(is_read, &result, end - start);
            stats.last_end = Some(end);
        }
        if let Some(tx) = &plan.history {
            let record = history_record(id, key, is_read, written, &result, &plan, start, end);
            // The writer only goes away on an I/O error, which it reports itself.
            let _ = tx.send(record);
        }
    }
    stats
}

impl Plan {
    /// The index of the next operation's key: the next unwritten one in a fill run (`None`
    /// once all were handed out), else a uniform draw.
    fn next_key(&self, rng: &mut Rng) -> Option<u64> {
        match &self.fill_next {
            Some(next) => Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < self.keys),
            None => Some(rng.range(0, self.keys)),
        }
    }
}

/// The key of index `i` under `prefix`.
pub fn key_name(prefix: &str, i: u64) -> String {
    format!("{prefix}{i:08}")
}

impl SessionStats {
    fn record(&mut self, is_read: bool, result: &Result<OpOk, OpError>, took: Duration) {
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
            Err(e) => self.errors.add(e),
        }
    }
}

/// A uniform draw from [0, 1).
fn unit_f64(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// `CLIENT.COUNTER.` padded with `x` to `size` bytes (longer if `size` is too small to be
/// unique): a value no other write of any session produces.
pub fn unique_value(client: u64, counter: u64, size: usize) -> Vec<u8> {
    let mut v = format!("{client:x}.{counter}.").into_bytes();
    if v.len() < size {
        v.resize(size, b'x');
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn history_record(
    client: u64,
    key: String,
    is_read: bool,
    value: Option<String>,
    result: &Result<OpOk, OpError>,
    plan: &Plan,
    start: Instant,
    end: Instant,
) -> HistoryRecord {
    let ns = |t: Instant| u64::try_from((t - plan.origin).as_nanos()).unwrap_or(u64::MAX);
    let (status, output) = match result {
        Ok(OpOk::Read(v)) => (
            Status::Ok,
            Some(RecordOutput::Value(
                v.as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            )),
        ),
        Ok(OpOk::Written) => (Status::Ok, None),
        Err(e) if e.may_have_applied => (Status::Unknown, None),
        Err(_) => (Status::Failed, None),
    };
    HistoryRecord {
        client,
        op: if is_read { OpKind::Get } else { OpKind::Put },
        key,
        value,
        expected: None,
        output,
        start_ns: ns(start),
        end_ns: ns(end),
        status,
        redis: RedisFields::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(keys: u64, fill: bool) -> Plan {
        let now = Instant::now();
        Plan {
            origin: now,
            measure_from: now,
            deadline: now,
            ops_left: None,
            read_ratio: 0.5,
            keys,
            fill_next: fill.then(|| AtomicU64::new(0)),
            value_size: 8,
            prefix: "p-".into(),
            history: None,
        }
    }

    #[test]
    fn a_fill_hands_out_every_key_once_then_stops() {
        let plan = plan(5, true);
        let mut rng = Rng::new(7);
        let keys: Vec<u64> = std::iter::from_fn(|| plan.next_key(&mut rng)).collect();
        assert_eq!(keys, [0, 1, 2, 3, 4]);
        assert_eq!(plan.next_key(&mut rng), None, "stays done");
        assert_eq!(key_name("p-", 4), "p-00000004");
    }

    #[test]
    fn without_fill_keys_are_drawn_from_the_key_space() {
        let plan = plan(3, false);
        let mut rng = Rng::new(7);
        for _ in 0..100 {
            assert!(plan.next_key(&mut rng).is_some_and(|i| i < 3));
        }
    }

    #[test]
    fn unique_values_are_padded_and_distinct() {
        assert_eq!(unique_value(0xa, 7, 8), b"a.7.xxxx");
        assert_eq!(unique_value(0xa, 12345, 2), b"a.12345.");
        assert_ne!(unique_value(1, 11, 16), unique_value(11, 1, 16));
    }
}
