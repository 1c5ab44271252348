//! `Histogram`: a Prometheus histogram over fixed bucket bounds. Recording is three relaxed
//! atomic adds (no lock), so request handlers and the node thread record on their hot
//! paths; a scrape reads the buckets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds of fsync and snapshot-save durations: 1 ms to 8 s, doubling
/// (etcd's `wal_fsync_duration_seconds` buckets).
pub const DISK_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// Upper bounds in seconds of client request latencies: 100 µs to 3.3 s, doubling.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];

/// Counts of observations per bucket, their number and their sum.
///
/// Invariant: `bounds` is ascending; `buckets[i]` counts observations in
/// `(bounds[i-1], bounds[i]]`; an observation above the last bound is only in `count`.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A histogram as read at one scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    pub sum_seconds: f64,
    pub count: u64,
    /// Upper bound and the observations in that bucket alone (not cumulative).
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The current counts. Observations racing with the read may show in `count` and not
    /// yet in a bucket (or the reverse); `count` is raised to the buckets' total so the
    /// exposition stays monotone.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(self.buckets.iter())
            .map(|(&b, n)| (b, n.load(Ordering::Relaxed)))
            .collect();
        let in_buckets: u64 = buckets.iter().map(|b| b.1).sum();
        HistogramSnapshot {
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed).max(in_buckets),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        // Goal: Prometheus bucket semantics (le is inclusive, +Inf only in count); method: four
        // observations.
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 2), (0.01, 1), (0.1, 0)]);
        assert_eq!(s.count, 4, "the slow one is only in +Inf");
        assert!((s.sum_seconds - 2.0065).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
