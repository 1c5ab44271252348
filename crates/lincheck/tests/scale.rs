//! Scale: histories of the size the simulator and `shardkv bench --history` produce check
//! quickly. These assert verdicts only, never times (timing is for the benchmark example).

use shardkv_lincheck::synth::{
    SynthConfig, corrupt_a_read, duplicate_an_append, linearizable_history,
};
use shardkv_lincheck::{Budget, KeyOutcome, Verdict, check, check_report};

/// 10,000 ops over 15 keys by 15 clients, 5% unknown outcomes.
fn fifteen_keys(seed: u64) -> SynthConfig {
    SynthConfig {
        seed,
        clients: 15,
        ops: 10_000,
        keys: 15,
        unknown_percent: 5,
        ..SynthConfig::default()
    }
}

#[test]
fn ten_thousand_ops_over_fifteen_keys_are_linearizable() {
    // Goal: the target workload decides well within the default budget; method: three seeds,
    // and each key must take a small fraction of its step budget.
    for seed in 1..=3 {
        let report = check_report(
            &linearizable_history(&fifteen_keys(seed)),
            Budget::default(),
        );
        assert_eq!(report.verdict, Verdict::Linearizable, "seed {seed}");
        assert_eq!(report.keys.len(), 15);
        let busiest = report.keys.iter().map(|k| k.steps).max().unwrap_or(0);
        assert!(
            busiest < Budget::STEPS_MAX_PER_KEY_DEFAULT / 100,
            "seed {seed}: {busiest} steps"
        );
    }
}

#[test]
fn ten_thousand_ops_with_one_bad_read_name_its_key() {
    // Goal: violations are found at scale; method: corrupt one read, then duplicate an
    // append in another copy.
    let clean = linearizable_history(&fifteen_keys(4));
    let mut never_written = clean.clone();
    let index = corrupt_a_read(&mut never_written, 1234).expect("history has reads");
    match check(&never_written, Budget::default()) {
        Verdict::NotLinearizable { key, explanation } => {
            assert_eq!(key, never_written[index].op.key());
            assert!(
                explanation.contains(&format!("history[{index}]")),
                "{explanation}"
            );
        }
        other => panic!("corrupted read at {index} not caught: {other:?}"),
    }
    let mut duplicated = clean;
    let index = duplicate_an_append(&mut duplicated, 99).expect("history has appends");
    let verdict = check(&duplicated, Budget::default());
    assert!(
        verdict.is_not_linearizable(),
        "duplicate at {index} not caught: {verdict:?}"
    );
}

#[test]
fn five_clients_hammering_one_key() {
    // Goal: one hot key with every op overlapping others still decides; method: 3,000 ops
    // by 5 clients on one key, 5% unknown.
    let config = SynthConfig {
        seed: 7,
        clients: 5,
        ops: 3_000,
        keys: 1,
        unknown_percent: 5,
        ..SynthConfig::default()
    };
    let report = check_report(&linearizable_history(&config), Budget::default());
    assert_eq!(report.keys[0].outcome, KeyOutcome::Linearizable);
}
