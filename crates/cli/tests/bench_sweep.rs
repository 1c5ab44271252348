//! `shardkv bench --sweep` against a fresh `shardkv up`: the CSV has one row per point with
//! the swept value in it, the plots are SVG documents, and `--compare-csv` puts another
//! sweep's rows on the same charts. Outcomes only; no figure is asserted.

mod common;

use common::cluster::run_cli;
use common::up::Up;
use std::path::Path;

fn sweep(up: &Up, out_dir: &Path, extra: &[&str]) {
    let out_dir = out_dir.to_str().expect("UTF-8 temp path");
    let mut args = vec!["bench", "--endpoints", &up.endpoints, "--out-dir", out_dir];
    args.extend("--sweep clients=1,2 --duration 500ms --warmup 100ms --value-size 32".split(' '));
    args.extend_from_slice(extra);
    let out = run_cli(&args, &[], None);
    assert!(
        out.status.success(),
        "sweep failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert!(
        text.starts_with("<svg"),
        "{path:?} is not SVG: {:.200}",
        text
    );
    assert!(text.trim_end().ends_with("</svg>"), "{path:?} is cut short");
    text
}

/// Goal: a sweep writes what it says. Method: `--sweep clients=1,2` against a fresh 1-group
/// `shardkv up`; the CSV must have the header and exactly two rows, target shardkv,
/// dimension clients, values 1 and 2 (also in the clients column), each with operations and
/// no errors; both SVGs must be whole SVG documents naming the series. A second sweep with
/// `--compare-csv` of the first must draw both sweeps on its charts.
#[test]
fn a_clients_sweep_writes_one_csv_row_per_point_and_svg_plots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Up::start(&dir.path().join("up"), &["--groups", "1"]);
    let first = dir.path().join("first");
    sweep(&up, &first, &[]);
    let csv = std::fs::read_to_string(first.join("sweep-clients.csv")).expect("the CSV");
    let lines: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    let header = &lines[0];
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column: {csv}"))
    };
    for (row, value) in lines[1..].iter().zip(["1", "2"]) {
        assert_eq!(row.len(), header.len(), "{csv}");
        assert_eq!(row[col("target")], "shardkv", "{csv}");
        assert_eq!(row[col("dimension")], "clients", "{csv}");
        assert_eq!(row[col("value")], value, "{csv}");
        assert_eq!(row[col("clients")], value, "{csv}");
        assert_eq!(row[col("errors")], "0", "{csv}");
        let ops: f64 = row[col("ops_per_s")].parse().expect("ops/s is a number");
        assert!(ops > 0.0, "{csv}");
    }
    assert!(svg(&first.join("sweep-clients-throughput.svg")).contains("shardkv ops/s"));
    assert!(svg(&first.join("sweep-clients-latency.svg")).contains("shardkv p99"));

    let second = dir.path().join("second");
    let compare = first.join("sweep-clients.csv");
    sweep(
        &up,
        &second,
        &["--compare-csv", compare.to_str().expect("UTF-8")],
    );
    let both = svg(&second.join("sweep-clients-throughput.svg"));
    assert!(
        both.contains("shardkv (compared) ops/s") && both.contains("shardkv ops/s"),
        "both sweeps are on the chart"
    );
}
