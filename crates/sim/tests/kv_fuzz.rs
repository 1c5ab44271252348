//! The randomized KV service fuzz target over a fixed seed range (default 0..60, override
//! with SHARDKV_KV_FUZZ_SEEDS=A..B). A failing seed panics with its replay command.

use shardkv_sim::kv_fuzz::run_kv_seed;

#[test]
fn kv_fuzz_fixed_seed_range_is_linearizable_and_live() {
    let (lo, hi) = shardkv_sim::seed_range("SHARDKV_KV_FUZZ_SEEDS", "0..60");
    let mut ops = 0;
    let mut unknown = 0;
    let (mut expired, mut dropped) = (0, 0);
    for seed in lo..hi {
        let r = run_kv_seed(seed);
        ops += r.operations;
        unknown += r.unknown;
        expired += r.sessions_expired;
        dropped += u64::from(r.sessions_dropped);
    }
    assert!(
        ops as u64 > (hi - lo) * 20,
        "the fuzz made too little progress: {ops} operations"
    );
    assert!(
        hi - lo < 20 || unknown > 0,
        "no clerk ever gave up: unknown outcomes went untested"
    );
    assert!(
        hi - lo < 20 || dropped > 0,
        "no member ever dropped a session: expiry and eviction went untested"
    );
    println!(
        "kv fuzz: {} seeds, {ops} operations ({unknown} of unknown outcome, {expired} ended \
         by an expired session; {dropped} seeds dropped sessions) (every history decided \
         linearizable)",
        hi - lo
    );
}
