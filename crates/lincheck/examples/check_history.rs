//! Checks a JSONL history file and prints the verdict, per-key work and the time taken.
//!
//! Usage: `check_history FILE [STEPS_MAX_PER_KEY]`. Exit code: 0 linearizable,
//! 1 not linearizable, 2 unknown (out of budget), 3 bad input.

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;
use std::time::Instant;

use shardkv_lincheck::{Budget, Verdict, check_report, read_history_jsonl};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: check_history FILE [STEPS_MAX_PER_KEY]");
        return ExitCode::from(3);
    };
    let budget = match args.get(1).map(|s| s.parse::<u64>()) {
        None => Budget::default(),
        Some(Ok(steps)) => Budget::steps_per_key(steps),
        Some(Err(e)) => {
            eprintln!("check_history: bad step limit: {e}");
            return ExitCode::from(3);
        }
    };
    let history = match File::open(path).map(BufReader::new) {
        Ok(reader) => match read_history_jsonl(reader) {
            Ok(history) => history,
            Err(e) => {
                eprintln!("check_history: {path}: {e}");
                return ExitCode::from(3);
            }
        },
        Err(e) => {
            eprintln!("check_history: {path}: {e}");
            return ExitCode::from(3);
        }
    };
    let started = Instant::now();
    let report = check_report(&history, budget);
    let elapsed = started.elapsed();
    let busiest = report.keys.iter().map(|k| k.steps).max().unwrap_or(0);
    println!(
        "{} ops, {} keys, {} steps (busiest key {busiest}), {} configurations, checked in {:.3} ms",
        history.len(),
        report.keys.len(),
        report.steps(),
        report.keys.iter().map(|k| k.configurations).sum::<usize>(),
        elapsed.as_secs_f64() * 1e3
    );
    match report.verdict {
        Verdict::Linearizable => {
            println!("linearizable");
            ExitCode::SUCCESS
        }
        Verdict::NotLinearizable { explanation, .. } => {
            println!("NOT linearizable\n{explanation}");
            ExitCode::from(1)
        }
        Verdict::Unknown { key } => {
            println!(
                "unknown: key {:?} ran out of budget",
                String::from_utf8_lossy(&key)
            );
            ExitCode::from(2)
        }
    }
}
