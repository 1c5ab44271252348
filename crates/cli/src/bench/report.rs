//! The bench report: per-session measurements merged into ops/s and latency percentiles per
//! kind, error counts by kind, printed as text or JSON.

use super::{SessionStats, histogram};
use anyhow::Result;
use hdrhistogram::Histogram;
use shardkv_client::Error;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Failed operations by error kind (see [`error_kind`]).
#[derive(Debug, Default)]
pub struct ErrorCounts(BTreeMap<&'static str, u64>);

impl ErrorCounts {
    pub fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, other: &ErrorCounts) {
        for (k, n) in &other.0 {
            *self.0.entry(k).or_default() += n;
        }
    }
}

/// A stable name for an error kind; `timeout`, `stale` and `lost_leadership` may have
/// applied.
pub fn error_kind(e: &Error) -> &'static str {
    e.kind()
}

/// The parameters of a run, echoed in the report.
#[derive(Debug)]
pub struct RunShape {
    pub clients: usize,
    pub connections: usize,
    pub value_size: usize,
    pub read_ratio: f64,
    pub keys: u64,
    pub warmup: Duration,
    pub prefix: String,
}

/// A whole run's result.
pub struct Report {
    shape: RunShape,
    /// From the end of the warmup to the end of the last measured operation.
    measured: Duration,
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    errors: ErrorCounts,
    history: Option<(PathBuf, u64)>,
}

impl Report {
    pub fn merge(
        shape: RunShape,
        measure_from: Instant,
        sessions: Vec<SessionStats>,
        history: Option<(PathBuf, u64)>,
    ) -> Result<Report> {
        let mut reads = histogram();
        let mut writes = histogram();
        let mut errors = ErrorCounts::default();
        let mut last_end = measure_from;
        for s in &sessions {
            reads.add(&s.reads)?;
            writes.add(&s.writes)?;
            errors.merge(&s.errors);
            if let Some(t) = s.last_end {
                last_end = last_end.max(t);
            }
        }
        Ok(Report {
            shape,
            measured: last_end - measure_from,
            reads,
            writes,
            errors,
            history,
        })
    }

    /// Successful measured operations.
    pub fn successes(&self) -> u64 {
        self.reads.len() + self.writes.len()
    }

    fn rate(&self, n: u64) -> f64 {
        let secs = self.measured.as_secs_f64();
        if secs > 0.0 { n as f64 / secs } else { 0.0 }
    }

    pub fn print_text(&self) {
        let s = &self.shape;
        println!(
            "shardkv bench: {} clients over {} connection(s) per member, {} B values, \
             read ratio {:.2}, {} keys ({}*)",
            s.clients, s.connections, s.value_size, s.read_ratio, s.keys, s.prefix
        );
        println!(
            "measured {:.2} s after {:.2} s of warmup",
            self.measured.as_secs_f64(),
            s.warmup.as_secs_f64()
        );
        println!(
            "{:<6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "kind", "ops", "ops/s", "p50", "p99", "p999", "max"
        );
        for (name, h) in [("write", &self.writes), ("read", &self.reads)] {
            if h.is_empty() {
                println!("{name:<6} {:>10} {:>10}", 0, "-");
                continue;
            }
            println!(
                "{name:<6} {:>10} {:>10.1} {:>9} {:>9} {:>9} {:>9}",
                h.len(),
                self.rate(h.len()),
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
            );
        }
        println!(
            "{:<6} {:>10} {:>10.1}",
            "total",
            self.successes(),
            self.rate(self.successes())
        );
        if self.errors.0.is_empty() {
            println!("errors: none");
        } else {
            let list: Vec<String> = self
                .errors
                .0
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            println!(
                "errors: {} (timeout, stale, lost_leadership: may have applied; others: not applied)",
                list.join(", ")
            );
        }
        if let Some((path, n)) = &self.history {
            println!("history: {n} operations written to {}", path.display());
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let s = &self.shape;
        let kind = |h: &Histogram<u64>| {
            let mut v = serde_json::json!({ "ops": h.len(), "ops_per_s": self.rate(h.len()) });
            if !h.is_empty() {
                v["latency_us"] = serde_json::json!({
                    "p50": us(h.value_at_quantile(0.5)),
                    "p99": us(h.value_at_quantile(0.99)),
                    "p999": us(h.value_at_quantile(0.999)),
                    "max": us(h.max()),
                });
            }
            v
        };
        let mut out = serde_json::json!({
            "clients": s.clients,
            "connections": s.connections,
            "value_size": s.value_size,
            "read_ratio": s.read_ratio,
            "keys": s.keys,
            "key_prefix": s.prefix,
            "warmup_s": s.warmup.as_secs_f64(),
            "measured_s": self.measured.as_secs_f64(),
            "writes": kind(&self.writes),
            "reads": kind(&self.reads),
            "total": { "ops": self.successes(), "ops_per_s": self.rate(self.successes()) },
            "errors": self.errors.0,
        });
        if let Some((path, n)) = &self.history {
            out["history"] =
                serde_json::json!({ "file": path.display().to_string(), "operations": n });
        }
        out
    }
}

/// Nanoseconds as microseconds with one decimal.
fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

/// Nanoseconds as a short human figure (`0.42ms`, `12.3ms`, `1.20s`).
fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}
