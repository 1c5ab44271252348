//! The randomized Raft fuzz target over a fixed seed range (default 0..200, override with
//! SHARDKV_FUZZ_SEEDS=A..B). A failing seed panics with its replay command.

use shardkv_sim::fuzz::run_seed;

#[test]
fn fuzz_fixed_seed_range_keeps_every_invariant_and_stays_live() {
    let (lo, hi) = shardkv_sim::seed_range("SHARDKV_FUZZ_SEEDS", "0..200");
    let mut committed = 0;
    for seed in lo..hi {
        committed += run_seed(seed).commands_committed;
    }
    assert!(
        committed > (hi - lo) * 10,
        "the fuzz made too little progress: {committed} commands"
    );
    println!(
        "fuzz: {} seeds, {committed} client commands committed",
        hi - lo
    );
}
