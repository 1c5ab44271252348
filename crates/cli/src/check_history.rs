//! `shardkv check-history FILE`: checks a JSON-lines history (as `shardkv bench --history`
//! writes it) for linearizability with `shardkv-lincheck`.
//!
//! Prints a summary per key (operations, unknown outcomes, search steps, verdict; the
//! busiest keys and every key that did not pass) and the overall verdict.
//!
//! Exit status: 0 linearizable; 1 not linearizable (the explanation names the key, the
//! longest linearizable prefix found and the operation that could not be placed); 2 when
//! the file cannot be read or parsed, or when the search ran out of budget and decided
//! nothing (the message says which).

use crate::conn::WriteOut;
use anyhow::Result;
use clap::Args;
use shardkv_lincheck::{Budget, KeyOutcome, KeyReport, OpResult, Verdict, read_history_jsonl};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status for unreadable input or an undecided verdict.
const EXIT_UNDECIDED: u8 = 2;

#[derive(Debug, Args)]
pub struct CheckHistoryArgs {
    /// The history: one JSON object per line (see `shardkv bench --history`).
    pub file: PathBuf,
    /// Search steps allowed per key before giving up (verdict: undecided, exit 2).
    #[arg(long, default_value_t = Budget::STEPS_MAX_PER_KEY_DEFAULT)]
    pub steps_max_per_key: u64,
    /// Keys listed in the summary (the busiest first; keys that fail are always listed).
    #[arg(long, default_value_t = 20)]
    pub keys_shown: usize,
    /// Output format.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = WriteOut::Text)]
    pub write_out: WriteOut,
}

pub fn run(args: CheckHistoryArgs) -> Result<ExitCode> {
    let (history, lines) = match read(&args) {
        Ok(h) => h,
        Err(message) => {
            eprintln!("check-history: unreadable input: {message}");
            return Ok(ExitCode::from(EXIT_UNDECIDED));
        }
    };
    let unknown = history
        .iter()
        .filter(|o| o.result == OpResult::Unknown)
        .count();
    let budget = Budget::steps_per_key(args.steps_max_per_key);
    let report = shardkv_lincheck::check_report(&history, budget);
    let counts = Counts {
        lines,
        checked: history.len(),
        unknown,
    };
    match args.write_out {
        WriteOut::Text => print_text(&args, &counts, &report.keys),
        WriteOut::Json => print_json(&counts, &report),
    }
    Ok(match &report.verdict {
        Verdict::Linearizable => {
            if args.write_out == WriteOut::Text {
                println!("verdict: linearizable");
            }
            ExitCode::SUCCESS
        }
        Verdict::NotLinearizable { key, explanation } => {
            if args.write_out == WriteOut::Text {
                println!("verdict: NOT linearizable (key {})", show(key));
            }
            eprintln!("check-history: not linearizable:\n{explanation}");
            ExitCode::FAILURE
        }
        Verdict::Unknown { key } => {
            if args.write_out == WriteOut::Text {
                println!("verdict: undecided (key {})", show(key));
            }
            eprintln!(
                "check-history: undecided: the search of key {} ran out of budget \
                 ({} steps); no key failed, but this is not a pass (raise --steps-max-per-key)",
                show(key),
                args.steps_max_per_key
            );
            ExitCode::from(EXIT_UNDECIDED)
        }
    })
}

/// Lines and operations of the file.
struct Counts {
    /// Non-blank lines: every operation, failed ones included.
    lines: usize,
    /// Operations checked (failed ones are dropped on reading).
    checked: usize,
    /// Of those, with an unknown outcome.
    unknown: usize,
}

/// The operations of the file and its count of non-blank lines.
fn read(args: &CheckHistoryArgs) -> Result<(Vec<shardkv_lincheck::Operation>, usize), String> {
    let open = || {
        File::open(&args.file)
            .map(BufReader::new)
            .map_err(|e| format!("cannot open {}: {e}", args.file.display()))
    };
    let history =
        read_history_jsonl(open()?).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let mut lines = 0;
    for line in open()?.lines() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
        if !line.trim().is_empty() {
            lines += 1;
        }
    }
    Ok((history, lines))
}

fn print_text(args: &CheckHistoryArgs, counts: &Counts, keys: &[KeyReport]) {
    println!(
        "{}: {} operations ({} failed, dropped; {} with unknown outcome) on {} keys",
        args.file.display(),
        counts.lines,
        counts.lines - counts.checked,
        counts.unknown,
        keys.len()
    );
    let mut order: Vec<&KeyReport> = keys.iter().collect();
    // Keys that did not pass first, then the busiest.
    order.sort_by_key(|k| {
        (
            k.outcome == KeyOutcome::Linearizable,
            std::cmp::Reverse(k.ops),
        )
    });
    let shown: Vec<&KeyReport> = order
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, k)| *i < args.keys_shown || k.outcome != KeyOutcome::Linearizable)
        .map(|(_, k)| k)
        .collect();
    println!(
        "{:<32} {:>8} {:>8} {:>12} verdict",
        "key", "ops", "dropped", "steps"
    );
    for k in &shown {
        println!(
            "{:<32} {:>8} {:>8} {:>12} {}",
            show(&k.key),
            k.ops,
            k.ops_dropped,
            k.steps,
            outcome_name(&k.outcome)
        );
    }
    if shown.len() < keys.len() {
        println!(
            "... {} more keys, all linearizable",
            keys.len() - shown.len()
        );
    }
}

fn print_json(counts: &Counts, report: &shardkv_lincheck::Report) {
    let keys: Vec<serde_json::Value> = report
        .keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "key": show(&k.key),
                "ops": k.ops,
                "dropped": k.ops_dropped,
                "steps": k.steps,
                "verdict": outcome_name(&k.outcome),
            })
        })
        .collect();
    let (verdict, key, explanation) = match &report.verdict {
        Verdict::Linearizable => ("linearizable", None, None),
        Verdict::NotLinearizable { key, explanation } => (
            "not_linearizable",
            Some(show(key)),
            Some(explanation.clone()),
        ),
        Verdict::Unknown { key } => ("undecided", Some(show(key)), None),
    };
    let out = serde_json::json!({
        "operations": counts.lines,
        "failed": counts.lines - counts.checked,
        "unknown": counts.unknown,
        "verdict": verdict,
        "key": key,
        "explanation": explanation,
        "keys": keys,
    });
    println!("{out}");
}

fn outcome_name(o: &KeyOutcome) -> &'static str {
    match o {
        KeyOutcome::Linearizable => "linearizable",
        KeyOutcome::NotLinearizable { .. } => "not_linearizable",
        KeyOutcome::Unknown => "undecided",
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}
