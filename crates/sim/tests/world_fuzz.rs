//! The randomized world fuzz target (four groups of three kinds under one seed) over a
//! fixed seed range (default 0..100, override with SHARDKV_WORLD_FUZZ_SEEDS=A..B). A failing
//! seed panics with its replay command.

use shardkv_sim::world_fuzz::run_world_seed;

#[test]
fn world_fuzz_fixed_seed_range_keeps_every_group_safe_and_live() {
    let (lo, hi) = shardkv_sim::seed_range("SHARDKV_WORLD_FUZZ_SEEDS", "0..100");
    let (mut kv, mut ctrl, mut raft, mut polls) = (0, 0, 0, 0);
    for seed in lo..hi {
        let r = run_world_seed(seed);
        kv += r.kv_operations;
        ctrl += r.ctrl_operations;
        raft += r.raft_proposals;
        polls += r.polls;
    }
    let seeds = hi - lo;
    assert!(
        kv as u64 > seeds * 20 && ctrl as u64 > seeds * 5 && raft > seeds * 5 && polls > seeds * 10,
        "the fuzz made too little progress: kv {kv}, ctrl {ctrl}, raft {raft}, polls {polls}"
    );
    println!(
        "world fuzz: {seeds} seeds, {kv} kv ops, {ctrl} ctrl ops, {raft} raft commands, {polls} polls"
    );
}
