//! The bench report: per-session measurements merged into ops/s and latency percentiles per
//! kind, error counts by kind, printed as text or JSON.

use super::load::{SessionStats, histogram};
use super::target::OpError;
use anyhow::Result;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Failed operations by error kind (the target's names, e.g. `shardkv_client::Error::kind`),
/// and the kinds of which some may have applied.
#[derive(Debug, Default)]
pub struct ErrorCounts {
    counts: BTreeMap<&'static str, u64>,
    may_have_applied: BTreeSet<&'static str>,
    /// The first message of each kind (one per kind: the report stays small).
    first: BTreeMap<&'static str, String>,
}

impl ErrorCounts {
    pub fn add(&mut self, e: &OpError) {
        *self.counts.entry(e.kind).or_default() += 1;
        if e.may_have_applied {
            self.may_have_applied.insert(e.kind);
        }
        self.first
            .entry(e.kind)
            .or_insert_with(|| e.message.clone());
    }

    fn merge(&mut self, other: &ErrorCounts) {
        for (k, n) in &other.counts {
            *self.counts.entry(k).or_default() += n;
        }
        self.may_have_applied
            .extend(other.may_have_applied.iter().copied());
        for (k, m) in &other.first {
            self.first.entry(k).or_insert_with(|| m.clone());
        }
    }

    /// Failed operations of every kind.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// The parameters of a run, echoed in the report.
#[derive(Debug)]
pub struct RunShape {
    /// `shardkv` or `etcd`.
    pub target: &'static str,
    /// `linearizable` or `serializable`.
    pub reads: &'static str,
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

    pub fn shape(&self) -> &RunShape {
        &self.shape
    }

    pub fn errors(&self) -> &ErrorCounts {
        &self.errors
    }

    /// Successful measured operations per second: total, writes, reads.
    pub fn rates(&self) -> (f64, f64, f64) {
        (
            self.rate(self.successes()),
            self.rate(self.writes.len()),
            self.rate(self.reads.len()),
        )
    }

    /// The latency of every successful measured operation (reads and writes together) at
    /// quantile `q`, in nanoseconds (0 if none succeeded).
    pub fn latency_ns(&self, q: f64) -> u64 {
        let mut all = self.writes.clone();
        // Both come from `histogram()`, so they have the same bounds.
        all.add(&self.reads)
            .expect("histograms with the same bounds add");
        all.value_at_quantile(q)
    }

    fn rate(&self, n: u64) -> f64 {
        let secs = self.measured.as_secs_f64();
        if secs > 0.0 { n as f64 / secs } else { 0.0 }
    }

    pub fn print_text(&self) {
        let s = &self.shape;
        println!(
            "shardkv bench: target {}, {} clients over {} connection(s) per member, {} B values, \
             read ratio {:.2} ({} reads), {} keys ({}*)",
            s.target,
            s.clients,
            s.connections,
            s.value_size,
            s.read_ratio,
            s.reads,
            s.keys,
            s.prefix
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
        let e = &self.errors;
        if e.counts.is_empty() {
            println!("errors: none");
        } else {
            let list: Vec<String> = e.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let maybe: Vec<&str> = e.may_have_applied.iter().copied().collect();
            let maybe = if maybe.is_empty() {
                "none".to_string()
            } else {
                maybe.join(", ")
            };
            println!(
                "errors: {} (may have applied: {maybe}; the others did not)",
                list.join(", ")
            );
            for (kind, message) in &e.first {
                println!("  first {kind}: {message}");
            }
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
        let mut total = serde_json::json!({ "ops": self.successes(), "ops_per_s": self.rate(self.successes()) });
        if self.successes() > 0 {
            // Reads and writes together.
            total["latency_us"] = serde_json::json!({
                "p50": us(self.latency_ns(0.5)),
                "p99": us(self.latency_ns(0.99)),
                "p999": us(self.latency_ns(0.999)),
                "max": us(self.latency_ns(1.0)),
            });
        }
        let mut out = serde_json::json!({
            "target": s.target,
            "reads_kind": s.reads,
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
            "total": total,
            "errors": self.errors.counts,
            "error_examples": self.errors.first,
        });
        if let Some((path, n)) = &self.history {
            out["history"] =
                serde_json::json!({ "file": path.display().to_string(), "operations": n });
        }
        out
    }
}

/// Nanoseconds as microseconds with one decimal.
pub fn us(ns: u64) -> f64 {
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
