//! Runs the Raft fuzz target over a range of seeds.
//!
//! ```text
//! cargo run -p shardkv-sim --release --bin fuzz -- --seeds 0..10000
//! cargo run -p shardkv-sim --release --bin fuzz -- --seed 1234      # replay one seed
//! cargo run -p shardkv-sim --release --bin fuzz -- --kv --seeds 0..1000   # the KV service
//! cargo run -p shardkv-sim --release --bin fuzz -- --ctrl --seeds 0..1000 # the controller
//! cargo run -p shardkv-sim --release --bin fuzz -- --world --seeds 0..500 # a world of groups
//! cargo run -p shardkv-sim --release --bin fuzz -- --sharded --seeds 0..200 # the sharded store
//! ```
//!
//! The run stops at the first failing seed and exits with status 1 after printing
//! `fuzz: FAILED seed N after K seeds` (the panic message above it has the replay command);
//! `scripts/mutants.sh` reads that line.

use shardkv_sim::ctrl_fuzz::run_ctrl_seed;
use shardkv_sim::fuzz::run_seed;
use shardkv_sim::kv_fuzz::run_kv_seed;
use shardkv_sim::shard_fuzz::run_shard_seed;
use shardkv_sim::world_fuzz::run_world_seed;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// Which fuzz target runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Raft,
    Kv,
    Ctrl,
    World,
    Sharded,
}

fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once("..")?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let target = match args.first().map(String::as_str) {
        Some("--kv") => Target::Kv,
        Some("--ctrl") => Target::Ctrl,
        Some("--world") => Target::World,
        Some("--sharded") => Target::Sharded,
        _ => Target::Raft,
    };
    if target != Target::Raft {
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
        // Any panic is a failure of this seed: a checker violation (which names the seed)
        // or an assertion in the code under test (which does not).
        let run = catch_unwind(AssertUnwindSafe(|| match target {
            Target::Raft => format!("{:?}", run_seed(seed)),
            Target::Kv => format!("{:?}", run_kv_seed(seed)),
            Target::Ctrl => format!("{:?}", run_ctrl_seed(seed)),
            Target::World => format!("{:?}", run_world_seed(seed)),
            Target::Sharded => format!("{:?}", run_shard_seed(seed)),
        }));
        match run {
            Ok(line) if verbose => println!("{line}"),
            Ok(_) => {}
            Err(_) => {
                println!(
                    "fuzz: FAILED seed {seed} after {} seeds in {:.1} s",
                    seed - lo + 1,
                    started.elapsed().as_secs_f64()
                );
                std::process::exit(1);
            }
        }
    }
    println!(
        "fuzz: seeds {lo}..{hi} passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn usage() -> ! {
    eprintln!(
        "usage: fuzz [--kv | --ctrl | --world | --sharded] [--seed N | --seeds A..B]   (default --seeds 0..200)"
    );
    std::process::exit(2);
}
