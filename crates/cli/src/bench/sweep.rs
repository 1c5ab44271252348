//! `shardkv bench --sweep DIM=V,V,...`: one closed-loop run per value of one dimension
//! (clients, value size, or read percentage), the other flags as given. Each run is
//! reported as usual; then one CSV row per point (`sweep-DIM.csv` in `--out-dir`) and two
//! SVG plots: throughput, and p50 / p99 latency (reads and writes together), against the
//! swept value. `--compare-csv` adds another sweep's rows (another target, same dimension)
//! to the plots, so both systems share one chart.

use super::report::{Report, us};
use super::{BenchArgs, Point, parse_size, plot};
use crate::conn::WriteOut;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

/// The most points one sweep runs.
pub const POINTS_MAX: usize = 32;
/// The columns of a sweep CSV, in order.
const HEADER: &str = "target,dimension,value,clients,value_size,read_ratio,ops_per_s,\
write_ops_per_s,read_ops_per_s,p50_ms,p99_ms,p999_ms,errors";

/// What a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimension {
    Clients,
    /// Value size in bytes.
    Value,
    /// Read percentage, 0 to 100.
    Reads,
}

impl Dimension {
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Clients => "clients",
            Dimension::Value => "value",
            Dimension::Reads => "reads",
        }
    }

    /// The axis label of the swept value.
    pub fn label(self) -> &'static str {
        match self {
            Dimension::Clients => "concurrent clients",
            Dimension::Value => "value size (bytes)",
            Dimension::Reads => "reads (% of operations)",
        }
    }

    /// `base` with this dimension set to `v`.
    fn apply(self, base: Point, v: u64) -> Point {
        match self {
            Dimension::Clients => Point {
                clients: usize::try_from(v).unwrap_or(usize::MAX),
                ..base
            },
            Dimension::Value => Point {
                value_size: usize::try_from(v).unwrap_or(usize::MAX),
                ..base
            },
            Dimension::Reads => Point {
                read_ratio: v as f64 / 100.0,
                ..base
            },
        }
    }
}

/// `--sweep`'s value: a dimension and its values, in the order given.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub dimension: Dimension,
    pub values: Vec<u64>,
}

impl FromStr for Sweep {
    type Err = String;

    fn from_str(s: &str) -> Result<Sweep, String> {
        let (dim, list) = s
            .split_once('=')
            .ok_or("expected DIM=V,V,... (e.g. clients=1,4,16)")?;
        let dimension = match dim.trim() {
            "clients" => Dimension::Clients,
            "value" | "value-size" => Dimension::Value,
            "reads" => Dimension::Reads,
            other => {
                return Err(format!(
                    "unknown dimension {other:?}: clients, value or reads"
                ));
            }
        };
        let values = list
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| match dimension {
                Dimension::Value => parse_size(v).map(|n| n as u64),
                _ => v.parse::<u64>().map_err(|e| format!("{v:?}: {e}")),
            })
            .collect::<Result<Vec<u64>, String>>()?;
        if values.is_empty() || values.len() > POINTS_MAX {
            return Err(format!("a sweep has 1 to {POINTS_MAX} values"));
        }
        if dimension == Dimension::Reads && values.iter().any(|&v| v > 100) {
            return Err("reads are a percentage, 0 to 100".into());
        }
        Ok(Sweep { dimension, values })
    }
}

/// One point's figures, as in one CSV row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub target: String,
    pub dimension: String,
    pub value: u64,
    pub clients: usize,
    pub value_size: usize,
    pub read_ratio: f64,
    pub ops_per_s: f64,
    pub write_ops_per_s: f64,
    pub read_ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
}

impl Row {
    fn of(report: &Report, dimension: Dimension, value: u64) -> Row {
        let s = report.shape();
        let (total, writes, reads) = report.rates();
        let ms = |q| us(report.latency_ns(q)) / 1000.0;
        Row {
            target: s.target.to_string(),
            dimension: dimension.name().to_string(),
            value,
            clients: s.clients,
            value_size: s.value_size,
            read_ratio: s.read_ratio,
            ops_per_s: total,
            write_ops_per_s: writes,
            read_ops_per_s: reads,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            errors: report.errors().total(),
        }
    }

    fn csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.3},{:.3},{:.3},{}",
            self.target,
            self.dimension,
            self.value,
            self.clients,
            self.value_size,
            self.read_ratio,
            self.ops_per_s,
            self.write_ops_per_s,
            self.read_ops_per_s,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.errors
        )
    }

    /// A row of a sweep CSV (columns by [`HEADER`]).
    fn parse(line: &str) -> Result<Row, String> {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != HEADER.split(',').count() {
            return Err(format!("expected {} columns", HEADER.split(',').count()));
        }
        fn num<T: FromStr>(s: &str) -> Result<T, String> {
            s.parse().map_err(|_| format!("{s:?} is not a number"))
        }
        Ok(Row {
            target: f[0].to_string(),
            dimension: f[1].to_string(),
            value: num(f[2])?,
            clients: num(f[3])?,
            value_size: num(f[4])?,
            read_ratio: num(f[5])?,
            ops_per_s: num(f[6])?,
            write_ops_per_s: num(f[7])?,
            read_ops_per_s: num(f[8])?,
            p50_ms: num(f[9])?,
            p99_ms: num(f[10])?,
            p999_ms: num(f[11])?,
            errors: num(f[12])?,
        })
    }
}

/// A sweep CSV's text.
pub fn csv(rows: &[Row]) -> String {
    let mut out = format!("{HEADER}\n");
    for r in rows {
        let _ = writeln!(out, "{}", r.csv_line());
    }
    out
}

/// Reads a CSV that [`csv`] wrote; errors name the line.
pub fn read_csv(path: &Path) -> Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == HEADER => {}
        _ => bail!("{} is not a sweep CSV (header: {HEADER})", path.display()),
    }
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            Row::parse(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

pub fn run(args: &BenchArgs, sweep: &Sweep) -> Result<ExitCode> {
    let dim = sweep.dimension;
    let compare = match &args.compare_csv {
        Some(path) => {
            let rows = read_csv(path)?;
            if let Some(r) = rows.iter().find(|r| r.dimension != dim.name()) {
                bail!(
                    "{} sweeps {:?}, this sweep {:?}: compare sweeps of one dimension",
                    path.display(),
                    r.dimension,
                    dim.name()
                );
            }
            // Told apart from this run's rows on the charts.
            let this = args.target.name();
            rows.into_iter()
                .map(|r| {
                    if r.target == this {
                        Row {
                            target: format!("{this} (compared)"),
                            ..r
                        }
                    } else {
                        r
                    }
                })
                .collect()
        }
        None => Vec::new(),
    };
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let base = Point {
        clients: args.clients,
        value_size: args.value_size,
        read_ratio: args.read_ratio,
    };
    let mut rows = Vec::with_capacity(sweep.values.len());
    let mut json = Vec::new();
    for &v in &sweep.values {
        // A given prefix is every point's (reads then find the earlier points' values).
        let report = super::run_point(args, dim.apply(base, v), args.key_prefix.clone(), None)
            .with_context(|| format!("sweep point {}={v}", dim.name()))?;
        match args.conn.write_out {
            WriteOut::Text => {
                report.print_text();
                println!();
            }
            WriteOut::Json => json.push(report.json()),
        }
        rows.push(Row::of(&report, dim, v));
    }
    let csv_path = args.out_dir.join(format!("sweep-{}.csv", dim.name()));
    std::fs::write(&csv_path, csv(&rows))
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let mut all = compare;
    all.extend(rows.iter().cloned());
    let throughput = args
        .out_dir
        .join(format!("sweep-{}-throughput.svg", dim.name()));
    let latency = args
        .out_dir
        .join(format!("sweep-{}-latency.svg", dim.name()));
    plot::throughput(&throughput, dim, &all)?;
    plot::latency(&latency, dim, &all)?;
    let files = [&csv_path, &throughput, &latency].map(|p| p.display().to_string());
    match args.conn.write_out {
        WriteOut::Text => {
            print_table(&rows);
            println!("wrote {}", files.join(", "));
        }
        WriteOut::Json => println!("{}", serde_json::json!({ "points": json, "files": files })),
    }
    if rows.iter().any(|r| r.ops_per_s == 0.0) {
        eprintln!("bench: a sweep point had no successful operation");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<8} {:<8} {:>9} {:>10} {:>9} {:>9} {:>7}",
        "target", "dim", "value", "ops/s", "p50 ms", "p99 ms", "errors"
    );
    for r in rows {
        println!(
            "{:<8} {:<8} {:>9} {:>10.1} {:>9.3} {:>9.3} {:>7}",
            r.target, r.dimension, r.value, r.ops_per_s, r.p50_ms, r.p99_ms, r.errors
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_parse_each_dimension_and_refuse_bad_lists() {
        let s: Sweep = "clients=1,4, 16".parse().unwrap();
        assert_eq!(
            (s.dimension, s.values),
            (Dimension::Clients, vec![1, 4, 16])
        );
        let s: Sweep = "value=256,4KiB".parse().unwrap();
        assert_eq!((s.dimension, s.values), (Dimension::Value, vec![256, 4096]));
        let s: Sweep = "reads=0,50,95".parse().unwrap();
        assert_eq!((s.dimension, s.values), (Dimension::Reads, vec![0, 50, 95]));
        for bad in ["clients", "keys=1,2", "clients=", "clients=a", "reads=101"] {
            assert!(bad.parse::<Sweep>().is_err(), "{bad} parsed");
        }
        let many = format!("clients={}", vec!["1"; POINTS_MAX + 1].join(","));
        assert!(many.parse::<Sweep>().is_err());
    }

    #[test]
    fn a_csv_reads_back_the_rows_it_was_written_from() {
        let row = Row {
            target: "etcd".into(),
            dimension: "clients".into(),
            value: 4,
            clients: 4,
            value_size: 256,
            read_ratio: 0.5,
            ops_per_s: 1234.5,
            write_ops_per_s: 600.0,
            read_ops_per_s: 634.5,
            p50_ms: 0.125,
            p99_ms: 2.5,
            p999_ms: 3.25,
            errors: 2,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        std::fs::write(&path, csv(std::slice::from_ref(&row))).unwrap();
        assert_eq!(read_csv(&path).unwrap(), vec![row]);
        std::fs::write(&path, "not,a,sweep\n").unwrap();
        assert!(read_csv(&path).is_err());
    }
}
