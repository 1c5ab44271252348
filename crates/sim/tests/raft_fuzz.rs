//! The randomized Raft fuzz target over a fixed seed range (default 0..200, override with
//! SHARDKV_FUZZ_SEEDS=A..B). A failing seed panics with its replay command.

use shardkv_sim::fuzz::run_seed;

#[test]
fn fuzz_fixed_seed_range_keeps_every_invariant_and_stays_live() {
    let (lo, hi) = shardkv_sim::seed_range("SHARDKV_FUZZ_SEEDS", "0..200");
    let (mut committed, mut holes, mut conf_changes) = (0, 0, 0);
    for seed in lo..hi {
        let r = run_seed(seed);
        committed += r.commands_committed;
        holes += r.holes_cut;
        conf_changes += r.conf_changes;
    }
    // Membership changes must be among the faults (over the default range).
    assert!(
        hi - lo < 100 || conf_changes > 0,
        "no membership change was proposed: the fuzz does not exercise them"
    );
    assert!(
        committed > (hi - lo) * 10,
        "the fuzz made too little progress: {committed} commands"
    );
    // The power-cut crash mode must reach recovery's hole cutting (over the default range).
    assert!(
        hi - lo < 100 || holes > 0,
        "no recovery cut a hole left by a power cut: the power-cut faults do not reach the WAL"
    );
    println!(
        "fuzz: {} seeds, {committed} client commands committed, {holes} recoveries cut a \
         power-cut hole, {conf_changes} membership changes",
        hi - lo
    );
}
