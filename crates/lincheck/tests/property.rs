//! Property tests: histories linearizable by construction pass, corrupted ones fail, and on
//! tiny random histories the checker agrees with brute-force enumeration of all orders.

mod common;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use shardkv_lincheck::synth::{
    SplitMix64, SynthConfig, corrupt_a_read, duplicate_an_append, linearizable_history,
    make_a_read_stale,
};
use shardkv_lincheck::{Budget, Op, OpResult, Operation, Output, SetWhen, Verdict, check};

/// Up to 8 clients and 90 ops over 1-3 keys, up to 20% unknown outcomes.
fn synth_config() -> impl Strategy<Value = SynthConfig> {
    (
        any::<u64>(),
        1..8u64,
        1..90usize,
        1..4usize,
        0..=20u32,
        1..2_000u64,
        0..500u64,
    )
        .prop_map(
            |(seed, clients, ops, keys, unknown_percent, spread_ns_max, think_ns_max)| {
                SynthConfig {
                    seed,
                    clients,
                    ops,
                    keys,
                    unknown_percent,
                    spread_ns_max,
                    think_ns_max,
                }
            },
        )
}

/// Fisher-Yates with the crate's PRNG: the checker must not depend on input order.
fn shuffled(mut history: Vec<Operation>, seed: u64) -> Vec<Operation> {
    let mut rng = SplitMix64::new(seed);
    for i in (1..history.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        history.swap(i, j);
    }
    history
}

proptest! {
    // A fixed seed: the same cases every run (no flaky CI); change it to explore more.
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5EED_11C4),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn simulated_atomic_register_histories_are_linearizable(config in synth_config(), order in any::<u64>()) {
        // Goal: no false alarms; method: histories with linearization points inside each
        // op's interval, in shuffled input order.
        let history = shuffled(linearizable_history(&config), order);
        prop_assert_eq!(check(&history, Budget::default()), Verdict::Linearizable);
    }

    #[test]
    fn a_read_of_a_never_written_value_is_caught(config in synth_config(), n in any::<usize>()) {
        // Goal: no missed violations; method: corrupt one read to a value no write produces.
        let mut history = linearizable_history(&config);
        if let Some(index) = corrupt_a_read(&mut history, n) {
            let key = history[index].op.key().to_vec();
            match check(&history, Budget::default()) {
                Verdict::NotLinearizable { key: failed, explanation } => {
                    prop_assert_eq!(failed, key);
                    prop_assert!(explanation.contains(&format!("history[{index}]")), "{}", explanation);
                }
                other => prop_assert!(false, "corrupted read at {} not caught: {:?}", index, other),
            }
        }
    }

    #[test]
    fn a_read_of_an_append_applied_twice_is_caught(config in synth_config(), n in any::<usize>()) {
        // Goal: exactly-once violations are caught; method: make one read see its last
        // append twice.
        let mut history = linearizable_history(&config);
        if let Some(index) = duplicate_an_append(&mut history, n) {
            let verdict = check(&history, Budget::default());
            prop_assert!(verdict.is_not_linearizable(), "duplicate at {} not caught: {:?}", index, verdict);
        }
    }

    #[test]
    fn a_stale_read_is_caught(config in synth_config(), n in any::<usize>()) {
        // Goal: the search itself refutes (the stale value was once really there, so the
        // time-free check cannot); method: make a read return a value overwritten before
        // its call. No unknown outcomes, which could explain the value by a late write.
        let config = SynthConfig { unknown_percent: 0, ..config };
        let mut history = linearizable_history(&config);
        if let Some(index) = make_a_read_stale(&mut history, n) {
            let verdict = check(&history, Budget::default());
            prop_assert!(verdict.is_not_linearizable(), "stale read at {} not caught: {:?}", index, verdict);
        }
    }

    #[test]
    fn agrees_with_brute_force_on_tiny_histories(ops in prop::collection::vec(tiny_op(), 0..7)) {
        // Goal: exactness in both directions, including unknown outcomes; method: compare
        // with an enumeration of every order of every subset of the unknown writes.
        let expected = brute_force_linearizable(&ops);
        let verdict = check(&ops, Budget::default());
        prop_assert_eq!(verdict.is_linearizable(), expected, "{:?}", verdict);
        prop_assert!(!matches!(verdict, Verdict::Unknown { .. }), "out of budget");
    }

    #[test]
    fn agrees_with_brute_force_on_tiny_redis_histories(ops in prop::collection::vec(redis_op(), 0..7)) {
        // Goal: exactness for the Redis ops, single- and multi-key (components of two
        // keys), with unknown outcomes; method: compare with enumeration over a map.
        let expected = brute_force_linearizable(&ops);
        let verdict = check(&ops, Budget::default());
        prop_assert_eq!(verdict.is_linearizable(), expected, "{:?}", verdict);
        prop_assert!(!matches!(verdict, Verdict::Unknown { .. }), "out of budget");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        rng_seed: RngSeed::Fixed(0x0A99_E4D5),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn agrees_with_brute_force_on_tiny_append_histories(ops in prop::collection::vec(append_op(), 0..7)) {
        // Goal: the look-ahead over pending reads (src/reach.rs) never cuts a configuration
        // that has a completion; method: unique self-delimiting appends, puts and deletes,
        // reads and CAS of prefixes and concatenations of them (the shapes it prunes), some
        // unknown outcomes, compared with brute-force enumeration.
        let expected = brute_force_linearizable(&ops);
        let verdict = check(&ops, Budget::default());
        prop_assert_eq!(verdict.is_linearizable(), expected, "{:?}", verdict);
        prop_assert!(!matches!(verdict, Verdict::Unknown { .. }), "out of budget");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4096,
        rng_seed: RngSeed::Fixed(0x5EED_0521),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn agrees_with_brute_force_on_chained_value_histories(
        ops in prop::collection::vec(chained_op(), 0..8),
    ) {
        // Goal: the whole-value look-ahead (chains in src/reach.rs) never cuts a
        // configuration with a completion, and refutes; method: puts of one or two tokens
        // (bases ending inside a value), appends of tokens that may split a value two ways
        // ("a" + "b" or "ab"), duplicated appends, reads and CAS of concatenations, some
        // unknown outcomes, compared with brute-force enumeration.
        let expected = brute_force_linearizable(&ops);
        let verdict = check(&ops, Budget::default());
        prop_assert_eq!(verdict.is_linearizable(), expected, "{:?}", verdict);
        prop_assert!(!matches!(verdict, Verdict::Unknown { .. }), "out of budget");
    }
}

/// A random op on key "k" whose values are concatenations of the tokens `p.`, `q.`, `a`,
/// `b`, `ab`: puts of one or two tokens, appends of one, reads and CAS of up to four.
fn chained_op() -> impl Strategy<Value = Operation> {
    let token = prop::sample::select(vec!["p.", "q.", "a", "b", "ab"]);
    let written = prop::collection::vec(token.clone(), 1..3).prop_map(|t| t.concat());
    let seen =
        prop::option::of(prop::collection::vec(token.clone(), 0..5).prop_map(|t| t.concat()));
    (
        0..8u8,
        token,
        written,
        seen,
        any::<bool>(),
        0..7u64,
        0..4u64,
        0..6u8,
    )
        .prop_map(
            |(kind, token, written, seen, swapped, call, length, unknown)| {
                let key = b"k".to_vec();
                let (op, output) = match kind {
                    0..=2 => (Op::Get { key }, Output::Get(seen.map(String::into_bytes))),
                    3 | 4 => (
                        Op::Append {
                            key,
                            value: token.as_bytes().to_vec(),
                        },
                        Output::Append,
                    ),
                    5 => (
                        Op::Put {
                            key,
                            value: written.into_bytes(),
                        },
                        Output::Put,
                    ),
                    6 if swapped => (Op::Delete { key }, Output::Delete),
                    _ => (
                        Op::Cas {
                            key,
                            expected: seen.map(String::into_bytes),
                            new: written.into_bytes(),
                        },
                        Output::Cas { swapped },
                    ),
                };
                let result = if unknown == 0 && op.is_write() {
                    OpResult::Unknown
                } else {
                    OpResult::Ok {
                        output,
                        return_ns: call + length,
                    }
                };
                Operation {
                    client: 0,
                    op,
                    call_ns: call,
                    result,
                }
            },
        )
}

/// A random op on key "k" in the style of the simulator's fuzz: appends and puts of tokens
/// `p.`, `q.`, `r.`, `s.` (self-delimiting, so values split one way), reads and CAS of
/// short concatenations of them.
fn append_op() -> impl Strategy<Value = Operation> {
    let token = prop::sample::select(vec!["p.", "q.", "r.", "s."]);
    let seen =
        prop::option::of(prop::collection::vec(token.clone(), 0..4).prop_map(|t| t.concat()));
    (0..7u8, token, seen, any::<bool>(), 0..6u64, 0..4u64, 0..6u8).prop_map(
        |(kind, value, seen, swapped, call, length, unknown)| {
            let key = b"k".to_vec();
            let value = value.as_bytes().to_vec();
            let (op, output) = match kind {
                0..=2 => (Op::Get { key }, Output::Get(seen.map(|s| s.into_bytes()))),
                3 | 4 => (Op::Append { key, value }, Output::Append),
                5 => (Op::Put { key, value }, Output::Put),
                6 if swapped => (Op::Delete { key }, Output::Delete),
                _ => (
                    Op::Cas {
                        key,
                        expected: seen.map(|s| s.into_bytes()),
                        new: value,
                    },
                    Output::Cas { swapped },
                ),
            };
            let result = if unknown == 0 && op.is_write() {
                OpResult::Unknown
            } else {
                OpResult::Ok {
                    output,
                    return_ns: call + length,
                }
            };
            Operation {
                client: 0,
                op,
                call_ns: call,
                result,
            }
        },
    )
}

/// A random op on key "k" with values and outputs from a small alphabet, so that both
/// verdicts are common.
fn tiny_op() -> impl Strategy<Value = Operation> {
    let value = prop::sample::select(vec!["", "a", "b"]);
    let seen = prop::option::of(prop::sample::select(vec!["", "a", "b", "ab", "ba", "aa"]));
    (
        0..6u8,
        value.clone(),
        seen.clone(),
        any::<bool>(),
        0..8u64,
        0..5u64,
        0..4u8,
    )
        .prop_map(|(kind, value, seen, swapped, call, length, unknown)| {
            let key = b"k".to_vec();
            let value = value.as_bytes().to_vec();
            let (op, output) = match kind {
                0 | 1 => (
                    Op::Get { key },
                    Output::Get(seen.map(|s| s.as_bytes().to_vec())),
                ),
                2 => (Op::Put { key, value }, Output::Put),
                3 => (Op::Append { key, value }, Output::Append),
                // A delete that says whether the key existed, or (older servers) not.
                4 if unknown == 1 => (Op::Delete { key }, Output::Delete),
                4 => (Op::Delete { key }, Output::Deleted { existed: swapped }),
                _ => (
                    Op::Cas {
                        key,
                        expected: seen.map(|s| s.as_bytes().to_vec()),
                        new: value,
                    },
                    Output::Cas { swapped },
                ),
            };
            let result = if unknown == 0 {
                OpResult::Unknown
            } else {
                OpResult::Ok {
                    output,
                    return_ns: call + length,
                }
            };
            Operation {
                client: 0,
                op,
                call_ns: call,
                result,
            }
        })
}

/// A random Redis-era op (or Get) on keys "a" and "b", with values and outputs from small
/// alphabets, so that both verdicts are common.
fn redis_op() -> impl Strategy<Value = Operation> {
    let value = || prop::sample::select(vec!["", "1", "x"]);
    let seen = || prop::option::of(value());
    let key = || prop::sample::select(vec!["a", "b"]);
    let keys = || prop::collection::vec(key(), 1..3);
    (
        (0..10u8, key(), keys(), value(), value()),
        (seen(), seen(), any::<bool>(), 0..3i64, 0..3u8),
        (0..8u64, 0..5u64, 0..4u8),
    )
        .prop_map(|(op_args, out_args, times)| {
            let (kind, key, keys, value, value2) = op_args;
            let (seen, seen2, flag, int, when) = out_args;
            let (call, length, unknown) = times;
            let b = |s: &str| s.as_bytes().to_vec();
            let key = b(key);
            let keys: Vec<Vec<u8>> = keys.into_iter().map(b).collect();
            let seen = seen.map(b);
            let (op, output) = match kind {
                0 => (Op::Get { key }, Output::Get(seen)),
                1 => {
                    let when = [SetWhen::Always, SetWhen::Absent, SetWhen::Present][when as usize];
                    let get = int > 0;
                    let op = Op::Set {
                        key,
                        value: b(value),
                        when,
                        get,
                    };
                    (
                        op,
                        Output::Set {
                            applied: flag,
                            old: seen.filter(|_| get),
                        },
                    )
                }
                2 => (Op::GetDel { key }, Output::Get(seen)),
                3 => (
                    Op::AppendLen {
                        key,
                        value: b(value),
                    },
                    Output::Int(int),
                ),
                4 => {
                    let by = [1, -1, i64::MAX][when as usize];
                    let output = match (flag, int) {
                        (true, 0) => Output::NotAnInteger,
                        (true, _) => Output::Overflow,
                        (false, n) => Output::Int(n),
                    };
                    (Op::IncrBy { key, by }, output)
                }
                5 => (Op::StrLen { key }, Output::Int(int)),
                6 => (Op::DeleteMany { keys }, Output::Int(int)),
                7 => {
                    let values = [value, value2];
                    let pairs = keys.into_iter().zip(values.into_iter().map(b)).collect();
                    (Op::PutMany { pairs }, Output::Put)
                }
                8 => {
                    let seen = [seen, seen2.map(b)];
                    let values = seen.into_iter().take(keys.len()).collect();
                    (Op::GetMany { keys }, Output::Values(values))
                }
                _ => (Op::Exists { keys }, Output::Int(int)),
            };
            let result = if unknown == 0 {
                OpResult::Unknown
            } else {
                OpResult::Ok {
                    output,
                    return_ns: call + length,
                }
            };
            Operation {
                client: 0,
                op,
                call_ns: call,
                result,
            }
        })
}

/// Reference oracle: tries every subset of unknown ops and every order of the chosen ops.
fn brute_force_linearizable(history: &[Operation]) -> bool {
    let unknown: Vec<usize> = (0..history.len())
        .filter(|i| history[*i].result == OpResult::Unknown)
        .collect();
    (0..1u32 << unknown.len()).any(|mask| {
        let chosen: Vec<usize> = (0..history.len())
            .filter(|i| match unknown.iter().position(|u| u == i) {
                Some(bit) => mask & (1 << bit) != 0,
                None => true,
            })
            .collect();
        some_order_works(history, &chosen, &mut Vec::new())
    })
}

fn some_order_works(history: &[Operation], remaining: &[usize], order: &mut Vec<usize>) -> bool {
    if remaining.is_empty() {
        return replays(history, order);
    }
    for (position, &next) in remaining.iter().enumerate() {
        // Real time: `next` may go first only if no remaining op returned before its call.
        let blocked = remaining.iter().any(|&o| {
            history[o]
                .return_ns()
                .is_some_and(|r| r < history[next].call_ns)
        });
        if blocked {
            continue;
        }
        let mut rest = remaining.to_vec();
        rest.remove(position);
        order.push(next);
        let works = some_order_works(history, &rest, order);
        order.pop();
        if works {
            return true;
        }
    }
    false
}

fn replays(history: &[Operation], order: &[usize]) -> bool {
    let mut state = std::collections::BTreeMap::new();
    order.iter().all(|&i| {
        let output = history[i].op.apply_to(&mut state);
        match &history[i].result {
            // A delete whose answer does not say whether the key existed fits either.
            OpResult::Ok {
                output: Output::Delete,
                ..
            } => matches!(output, Output::Deleted { .. }),
            OpResult::Ok {
                output: recorded, ..
            } => *recorded == output,
            OpResult::Unknown => true,
        }
    })
}
