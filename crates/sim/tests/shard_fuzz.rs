//! The sharded store's whole-system fuzz target (a controller and 2–4 shard groups under
//! one seed, with node faults, partitions between groups, whole-group restarts and
//! reconfigurations) over a fixed small seed range (default 0..64, override with
//! SHARDKV_SHARD_FUZZ_SEEDS=A..B). A failing seed panics with its replay command.

use shardkv_sim::shard_fuzz::run_shard_seed;

#[test]
fn shard_fuzz_fixed_seed_range_keeps_the_sharded_store_safe_and_live() {
    let (lo, hi) = shardkv_sim::seed_range("SHARDKV_SHARD_FUZZ_SEEDS", "0..64");
    let (mut ops, mut reconfigs, mut expired) = (0, 0, 0);
    for seed in lo..hi {
        let r = run_shard_seed(seed);
        println!("{r:?}");
        ops += r.operations;
        reconfigs += r.reconfigurations;
        expired += r.sessions_expired;
    }
    let seeds = hi - lo;
    assert!(
        ops as u64 > seeds * 10,
        "the fuzz made too little progress: {ops} operations over seeds {lo}..{hi} (rerun: SHARDKV_SHARD_FUZZ_SEEDS={lo}..{hi} cargo test -p shardkv-sim --test shard_fuzz)"
    );
    println!(
        "shard fuzz: {seeds} seeds, {ops} operations ({expired} ended by an expired session), \
         {reconfigs} reconfigurations"
    );
}
