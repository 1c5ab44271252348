//! Runs the Raft fuzz target over a range of seeds.
//!
//! ```text
//! cargo run -p shardkv-sim --release --bin fuzz -- --seeds 0..10000
//! cargo run -p shardkv-sim --release --bin fuzz -- --seed 1234      # replay one seed
//! cargo run -p shardkv-sim --release --bin fuzz -- --kv --seeds 0..1000   # the KV service
//! ```

use shardkv_sim::fuzz::run_seed;
use shardkv_sim::kv_fuzz::run_kv_seed;
use std::time::Instant;

fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once("..")?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let kv = args.first().is_some_and(|a| a == "--kv");
    if kv {
        args.remove(0);
    }
    let (lo, hi) = match args.as_slice() {
        [flag, v] if flag == "--seed" => match v.parse::<u64>() {
            Ok(s) => (s, s + 1),
            Err(_) => usage(),
        },
        [flag, v] if flag == "--seeds" => parse_range(v).unwrap_or_else(|| usage()),
        [] => (0, 200),
        _ => usage(),
    };
    let started = Instant::now();
    let verbose = hi - lo <= 20;
    for seed in lo..hi {
        let line = if kv {
            format!("{:?}", run_kv_seed(seed))
        } else {
            format!("{:?}", run_seed(seed))
        };
        if verbose {
            println!("{line}");
        }
    }
    println!(
        "fuzz: seeds {lo}..{hi} passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn usage() -> ! {
    eprintln!("usage: fuzz [--kv] [--seed N | --seeds A..B]   (default --seeds 0..200)");
    std::process::exit(2);
}
