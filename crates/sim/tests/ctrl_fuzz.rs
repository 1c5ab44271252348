//! The randomized shard controller fuzz target over a fixed seed range (default 0..60,
//! override with SHARDKV_CTRL_FUZZ_SEEDS=A..B). A failing seed panics with its replay command.

use shardkv_sim::ctrl_fuzz::run_ctrl_seed;

#[test]
fn ctrl_fuzz_fixed_seed_range_agrees_and_is_live() {
    let (lo, hi) = shardkv_sim::seed_range("SHARDKV_CTRL_FUZZ_SEEDS", "0..60");
    let (mut ops, mut configs, mut unknown) = (0, 0, 0);
    for seed in lo..hi {
        let r = run_ctrl_seed(seed);
        ops += r.operations;
        configs += r.configs;
        unknown += r.unknown;
    }
    assert!(
        ops as u64 > (hi - lo) * 10,
        "the fuzz made too little progress: {ops} operations"
    );
    assert!(
        configs as u64 > (hi - lo) * 2,
        "too few configs made: {configs}"
    );
    println!(
        "ctrl fuzz: {} seeds, {ops} operations ({unknown} of unknown outcome), {configs} configs",
        hi - lo
    );
}
