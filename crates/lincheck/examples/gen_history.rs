//! Writes a synthetic linearizable history as JSONL to stdout, for benchmarking the checker.
//!
//! Usage: `gen_history OPS CLIENTS KEYS UNKNOWN_PERCENT SEED [SPREAD_NS THINK_NS] [--corrupt[=N]] [--duplicate=N]`
//!
//! `--corrupt` replaces the output of one completed read (the N-th, default SEED, modulo
//! the number of reads) with a value no write produces: the history is then not
//! linearizable. `--duplicate=N` makes the N-th eligible read see its last append twice.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use shardkv_lincheck::synth::{
    SynthConfig, corrupt_a_read, duplicate_an_append, linearizable_history,
};
use shardkv_lincheck::write_op_jsonl;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let corrupt = args.iter().find(|a| a.starts_with("--corrupt"));
    let duplicate = args.iter().find(|a| a.starts_with("--duplicate="));
    let numbers: Result<Vec<u64>, _> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .collect();
    let Ok(numbers) = numbers else {
        eprintln!("gen_history: arguments must be numbers");
        return ExitCode::FAILURE;
    };
    if numbers.len() != 5 && numbers.len() != 7 {
        eprintln!(
            "usage: gen_history OPS CLIENTS KEYS UNKNOWN_PERCENT SEED [SPREAD_NS THINK_NS] [--corrupt[=N]]"
        );
        return ExitCode::FAILURE;
    }
    let defaults = SynthConfig::default();
    let config = SynthConfig {
        ops: numbers[0] as usize,
        clients: numbers[1],
        keys: numbers[2] as usize,
        unknown_percent: numbers[3] as u32,
        seed: numbers[4],
        spread_ns_max: numbers.get(5).copied().unwrap_or(defaults.spread_ns_max),
        think_ns_max: numbers.get(6).copied().unwrap_or(defaults.think_ns_max),
    };
    let mut history = linearizable_history(&config);
    if let Some(flag) = corrupt {
        let n = match flag.strip_prefix("--corrupt=") {
            Some(n) => match n.parse() {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("gen_history: bad {flag}: {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => config.seed as usize,
        };
        corrupt_a_read(&mut history, n);
    }
    if let Some(flag) = duplicate {
        let Some(Ok(n)) = flag.strip_prefix("--duplicate=").map(str::parse) else {
            eprintln!("gen_history: bad {flag}");
            return ExitCode::FAILURE;
        };
        duplicate_an_append(&mut history, n);
    }
    let mut out = BufWriter::new(io::stdout().lock());
    for operation in &history {
        if let Err(e) = write_op_jsonl(&mut out, operation) {
            eprintln!("gen_history: {e}");
            return ExitCode::FAILURE;
        }
    }
    match out.flush() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_history: {e}");
            ExitCode::FAILURE
        }
    }
}
