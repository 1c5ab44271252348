//! Hand-written histories whose verdict is known, one behaviour per test.
//! Times are small integers in ns; `put(client, key, value, call, return)`.

mod common;

use common::{append, cas, del, deleted, get, put, unknown};
use shardkv_lincheck::{Budget, KeyOutcome, Operation, Verdict, check, check_report};

fn linearizable(history: &[Operation]) -> bool {
    match check(history, Budget::default()) {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable { .. } => false,
        Verdict::Unknown { key } => panic!("tiny history ran out of budget on key {key:?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    // Goal: the trivial case; method: check no ops.
    assert!(linearizable(&[]));
}

#[test]
fn read_of_fresh_key_sees_missing_not_empty() {
    // Goal: missing and empty are different states; method: read a never-written key.
    assert!(linearizable(&[get(1, "k", 0, 1, None)]));
    assert!(!linearizable(&[get(1, "k", 0, 1, Some(""))]));
}

#[test]
fn empty_value_is_not_missing() {
    // Goal: Put("") creates the key with an empty value; method: read it back both ways.
    assert!(linearizable(&[
        put(1, "k", "", 0, 1),
        get(1, "k", 2, 3, Some(""))
    ]));
    assert!(!linearizable(&[
        put(1, "k", "", 0, 1),
        get(1, "k", 2, 3, None)
    ]));
}

#[test]
fn stale_read_after_completed_write_fails() {
    // Goal: a read that starts after a write returned must see it; method: read the old value.
    assert!(!linearizable(&[
        put(1, "k", "1", 0, 10),
        get(2, "k", 20, 30, None)
    ]));
    let overwritten = [
        put(1, "k", "1", 0, 10),
        put(1, "k", "2", 20, 30),
        get(2, "k", 40, 50, Some("1")),
    ];
    assert!(!linearizable(&overwritten));
}

#[test]
fn read_concurrent_with_write_may_see_either_value() {
    // Goal: overlap allows both orders; method: a read inside the write's interval.
    assert!(linearizable(&[
        put(1, "k", "1", 0, 10),
        get(2, "k", 5, 8, None)
    ]));
    assert!(linearizable(&[
        put(1, "k", "1", 0, 10),
        get(2, "k", 5, 8, Some("1"))
    ]));
}

#[test]
fn reads_cannot_go_back_in_time_during_a_write() {
    // Goal: once a read saw the new value, a later read must too; method: new then old.
    let history = [
        put(1, "k", "1", 0, 100),
        get(2, "k", 10, 20, Some("1")),
        get(3, "k", 30, 40, None),
    ];
    assert!(!linearizable(&history));
}

#[test]
fn touching_intervals_count_as_concurrent() {
    // Goal: porcupine's tie rule (call before return at equal times); method: read called at
    // the instant the write returned sees the old value.
    assert!(linearizable(&[
        put(1, "k", "1", 0, 10),
        get(2, "k", 10, 20, None)
    ]));
}

#[test]
fn read_of_a_value_never_written_fails() {
    // Goal: reads only see written values; method: read "z" with only "a" written.
    assert!(!linearizable(&[
        put(1, "k", "a", 0, 10),
        get(2, "k", 5, 15, Some("z"))
    ]));
}

#[test]
fn concurrent_appends_may_land_in_either_order() {
    // Goal: overlapping appends commute freely; method: read both orders after both return.
    for seen in ["ab", "ba"] {
        let history = [
            append(1, "k", "a", 0, 100),
            append(2, "k", "b", 0, 100),
            get(3, "k", 200, 210, Some(seen)),
        ];
        assert!(linearizable(&history), "{seen} should be allowed");
    }
    for seen in ["a", "aab", "abb", ""] {
        let history = [
            append(1, "k", "a", 0, 100),
            append(2, "k", "b", 0, 100),
            get(3, "k", 200, 210, Some(seen)),
        ];
        assert!(!linearizable(&history), "{seen} should be rejected");
    }
}

#[test]
fn sequential_appends_keep_their_order() {
    // Goal: real-time order of appends is kept; method: a then b sequentially, read "ba".
    let history = [
        append(1, "k", "a", 0, 10),
        append(1, "k", "b", 20, 30),
        get(2, "k", 40, 50, Some("ba")),
    ];
    assert!(!linearizable(&history));
}

#[test]
fn cas_swaps_only_when_the_value_matches() {
    // Goal: both CAS outcomes; method: CAS with matching and non-matching expectations.
    let base = put(1, "k", "1", 0, 10);
    let ok = [
        base.clone(),
        cas(2, "k", Some("1"), "2", 20, 30, true),
        cas(2, "k", Some("1"), "3", 40, 50, false),
        get(3, "k", 60, 70, Some("2")),
    ];
    assert!(linearizable(&ok));
    assert!(!linearizable(&[
        base.clone(),
        cas(2, "k", Some("0"), "2", 20, 30, true)
    ]));
    assert!(!linearizable(&[
        base.clone(),
        cas(2, "k", Some("1"), "2", 20, 30, false)
    ]));
    let swapped_but_not_visible = [
        base,
        cas(2, "k", Some("1"), "2", 20, 30, true),
        get(3, "k", 40, 50, Some("1")),
    ];
    assert!(!linearizable(&swapped_but_not_visible));
}

#[test]
fn cas_expecting_missing_creates_the_key_only_if_missing() {
    // Goal: `expected: None` matches only a missing key, not an empty value.
    assert!(linearizable(&[
        cas(1, "k", None, "x", 0, 10, true),
        get(1, "k", 20, 30, Some("x")),
    ]));
    assert!(!linearizable(&[
        put(1, "k", "", 0, 10),
        cas(1, "k", None, "x", 20, 30, true)
    ]));
    assert!(linearizable(&[
        put(1, "k", "", 0, 10),
        cas(1, "k", None, "x", 20, 30, false)
    ]));
    assert!(linearizable(&[
        put(1, "k", "", 0, 10),
        cas(1, "k", Some(""), "x", 20, 30, true)
    ]));
}

#[test]
fn two_concurrent_cas_from_the_same_value_cannot_both_win() {
    // Goal: CAS is atomic; method: two overlapping CAS "0"->x, both or one reporting success.
    let both = [
        put(1, "k", "0", 0, 10),
        cas(2, "k", Some("0"), "a", 20, 40, true),
        cas(3, "k", Some("0"), "b", 20, 40, true),
    ];
    assert!(!linearizable(&both));
    let one = [
        put(1, "k", "0", 0, 10),
        cas(2, "k", Some("0"), "a", 20, 40, false),
        cas(3, "k", Some("0"), "b", 20, 40, true),
        get(1, "k", 50, 60, Some("b")),
    ];
    assert!(linearizable(&one));
}

#[test]
fn delete_removes_the_key_and_append_recreates_it() {
    // Goal: Delete semantics; method: put, delete, read, append, read.
    let history = [
        put(1, "k", "v", 0, 10),
        del(1, "k", 20, 30),
        get(2, "k", 40, 50, None),
        append(1, "k", "a", 60, 70),
        get(2, "k", 80, 90, Some("a")),
    ];
    assert!(linearizable(&history));
    assert!(!linearizable(&[
        put(1, "k", "v", 0, 10),
        del(1, "k", 20, 30),
        get(2, "k", 40, 50, Some("v"))
    ]));
    assert!(linearizable(&[
        del(1, "k", 0, 10),
        get(2, "k", 20, 30, None)
    ]));
}

#[test]
fn unknown_write_that_applied_explains_a_later_read() {
    // Goal: a timed-out write may have taken effect; method: a later read sees its value.
    let history = [
        unknown(put(1, "k", "1", 0, 0)),
        get(2, "k", 50, 60, Some("1")),
    ];
    assert!(linearizable(&history));
}

#[test]
fn unknown_write_that_did_not_apply_is_fine() {
    // Goal: a timed-out write may never take effect; method: reads never see it.
    let history = [
        put(1, "k", "0", 0, 5),
        unknown(put(1, "k", "1", 10, 0)),
        get(2, "k", 50, 60, Some("0")),
        get(2, "k", 70, 80, Some("0")),
    ];
    assert!(linearizable(&history));
}

#[test]
fn unknown_write_may_take_effect_long_after_its_call() {
    // Goal: an unknown op's return is +infinity; method: its effect appears after later ops.
    let history = [
        unknown(append(1, "k", "x", 0, 0)),
        get(2, "k", 50, 60, None),
        put(2, "k", "a", 70, 80),
        get(2, "k", 90, 100, Some("ax")),
    ];
    assert!(linearizable(&history));
}

#[test]
fn unknown_op_that_must_have_applied_cannot_be_undone() {
    // Goal: once a read saw an unknown write, it applied, exactly once; method: read it,
    // then read as if it had not applied, or as if it had applied twice.
    let vanished = [
        unknown(put(1, "k", "1", 0, 0)),
        get(2, "k", 10, 20, Some("1")),
        get(2, "k", 30, 40, None),
    ];
    assert!(!linearizable(&vanished));
    let twice = [
        unknown(append(1, "k", "a", 0, 0)),
        get(2, "k", 10, 20, Some("aa")),
    ];
    assert!(!linearizable(&twice));
}

#[test]
fn unknown_op_cannot_take_effect_before_its_call() {
    // Goal: an unknown write starts at its call; method: a read that returned earlier saw it.
    let history = [
        get(2, "k", 0, 10, Some("1")),
        unknown(put(1, "k", "1", 20, 0)),
    ];
    assert!(!linearizable(&history));
}

#[test]
fn unknown_cas_may_or_may_not_swap() {
    // Goal: an unknown CAS follows the model if applied; method: read with and without swap,
    // and a read the CAS could never produce.
    let base = put(1, "k", "0", 0, 10);
    let cas_op = unknown(cas(2, "k", Some("0"), "1", 20, 30, false));
    for (seen, ok) in [("1", true), ("0", true), ("2", false)] {
        let history = [
            base.clone(),
            cas_op.clone(),
            get(3, "k", 100, 110, Some(seen)),
        ];
        assert_eq!(linearizable(&history), ok, "read {seen}");
    }
    let mismatched = unknown(cas(2, "k", Some("9"), "1", 20, 30, false));
    assert!(!linearizable(&[
        base,
        mismatched,
        get(3, "k", 100, 110, Some("1"))
    ]));
}

#[test]
fn unknown_reads_are_dropped() {
    // Goal: a read with unknown outcome constrains nothing; method: its output is ignored.
    let history = [
        put(1, "k", "1", 0, 10),
        unknown(get(2, "k", 20, 30, Some("zzz"))),
    ];
    assert!(linearizable(&history));
}

#[test]
fn keys_are_independent_and_the_first_failing_key_is_named() {
    // Goal: per-key partitioning with a deterministic verdict; method: two bad keys, one good.
    let history = [
        put(1, "b", "1", 0, 10),
        get(1, "b", 20, 30, None),
        put(1, "a", "1", 0, 10),
        get(1, "a", 20, 30, Some("1")),
        get(1, "c", 0, 1, Some("x")),
    ];
    match check(&history, Budget::default()) {
        Verdict::NotLinearizable { key, explanation } => {
            assert_eq!(key, b"b");
            assert!(explanation.contains("history[1]"), "{explanation}");
        }
        other => panic!("expected a violation on key b, got {other:?}"),
    }
    // A value on another key does not explain a read.
    assert!(!linearizable(&[
        put(1, "a", "1", 0, 10),
        get(1, "b", 20, 30, Some("1"))
    ]));
}

#[test]
fn explanation_shows_the_longest_prefix_and_the_blocked_op() {
    // Goal: the message helps a human; method: check its parts on a stale read.
    let history = [
        put(1, "k", "1", 0, 10),
        put(2, "k", "2", 20, 30),
        get(3, "k", 40, 50, Some("1")),
    ];
    let Verdict::NotLinearizable { explanation, .. } = check(&history, Budget::default()) else {
        panic!("stale read accepted");
    };
    assert!(
        explanation.contains("(2 ops, 2 of them completed"),
        "{explanation}"
    );
    assert!(
        explanation.contains("State after the prefix: \"2\""),
        "{explanation}"
    );
    assert!(
        explanation.contains("Could not place: history[2] client 3 get -> \"1\""),
        "{explanation}"
    );
}

#[test]
fn exhausted_budget_yields_unknown_never_a_verdict() {
    // Goal: the step budget bounds work without lying; method: 1 step, then enough steps,
    // on a linearizable history and on a stale read (which only the search can refute).
    let history = [put(1, "k", "1", 0, 10), get(2, "k", 20, 30, Some("1"))];
    assert_eq!(
        check(&history, Budget::steps_per_key(1)),
        Verdict::Unknown { key: b"k".to_vec() }
    );
    assert_eq!(
        check(&history, Budget::steps_per_key(100)),
        Verdict::Linearizable
    );
    let stale = [
        put(1, "k", "1", 0, 10),
        put(1, "k", "2", 20, 30),
        get(2, "k", 40, 50, Some("1")),
    ];
    assert_eq!(
        check(&stale, Budget::steps_per_key(1)),
        Verdict::Unknown { key: b"k".to_vec() }
    );
    assert!(check(&stale, Budget::steps_per_key(100)).is_not_linearizable());
}

#[test]
fn a_violation_wins_over_an_unknown_key() {
    // Goal: a definite violation is reported even if an earlier key ran out of budget;
    // method: key "a" needs many steps, key "b" fails in a few.
    let mut history: Vec<Operation> = (0..20)
        .map(|i| put(1, "a", "v", i * 10, i * 10 + 5))
        .collect();
    history.push(get(1, "b", 0, 1, Some("x")));
    let budget = Budget::steps_per_key(10);
    let report = check_report(&history, budget);
    assert_eq!(report.keys[0].outcome, KeyOutcome::Unknown);
    assert!(report.verdict.is_not_linearizable(), "{:?}", report.verdict);
}

#[test]
fn a_read_of_an_append_applied_twice_is_refuted_by_counting() {
    // Goal: exactly-once violations are caught even when the search would be slow; method:
    // a tiny budget, so the verdict comes from counting pieces of the value.
    let history = [
        append(1, "k", "x;", 0, 10),
        get(2, "k", 20, 30, Some("x;x;")),
    ];
    let Verdict::NotLinearizable { explanation, .. } = check(&history, Budget::steps_per_key(1))
    else {
        panic!("duplicate append accepted");
    };
    assert!(
        explanation.contains("Impossible value: history[1]"),
        "{explanation}"
    );
}

#[test]
fn memory_budget_yields_unknown() {
    // Goal: the memo's byte limit bounds memory without lying; method: a limit of 0 bytes.
    let history = [put(1, "k", "1", 0, 10), get(2, "k", 20, 30, Some("1"))];
    let budget = Budget {
        cache_bytes_max_per_key: 0,
        ..Budget::default()
    };
    assert_eq!(
        check(&history, budget),
        Verdict::Unknown { key: b"k".to_vec() }
    );
}

#[test]
#[should_panic(expected = "history[0] is malformed")]
fn malformed_operation_is_a_programmer_error() {
    // Goal: bad input is named, not silently judged; method: return before call.
    check(&[put(1, "k", "1", 10, 5)], Budget::default());
}

#[test]
fn an_append_called_early_but_shown_after_a_later_put_goes_after_it() {
    // Goal: the whole-value look-ahead cuts the append placed before the Put that a read
    // shows it after, and refutes when real time forces that order; method: a long
    // append "x." around a put "p." and a read of "p.x.", then the append ending first.
    let history = [
        append(1, "k", "x.", 0, 100),
        put(2, "k", "p.", 10, 20),
        get(2, "k", 110, 120, Some("p.x.")),
    ];
    assert!(linearizable(&history));
    let mut forced = history.clone();
    forced[0] = append(1, "k", "x.", 0, 5);
    assert!(!linearizable(&forced));
    let swapping = [
        append(1, "k", "x.", 0, 100),
        put(2, "k", "p.", 10, 20),
        cas(3, "k", Some("p.x."), "q.", 110, 120, true),
    ];
    assert!(linearizable(&swapping));
}

#[test]
fn a_value_that_splits_two_ways_is_not_pinned_to_one_split() {
    // Goal: a value with two splits into appends ("a" + "b", or "ab") is not judged by
    // one of them; method: "a" is used up before a delete, and the read of "ab" is made
    // of the append "ab" alone.
    let history = [
        append(1, "k", "a", 0, 1),
        del(1, "k", 2, 3),
        append(1, "k", "ab", 4, 5),
        get(1, "k", 6, 7, Some("ab")),
        append(2, "k", "b", 8, 9),
    ];
    assert!(linearizable(&history));
    let mut without_ab = history.clone();
    without_ab[2] = append(1, "k", "c", 4, 5);
    assert!(!linearizable(&without_ab));
}

#[test]
fn a_delete_must_say_whether_the_key_existed_where_it_linearizes() {
    // Goal: the answer of a Delete is checked like a read of presence. Method: deletes that
    // claim a key existed when it cannot have (never written, or deleted before), and one
    // that claims it did not when it must have; then the same where a concurrent write
    // makes either answer possible.
    assert!(
        !linearizable(&[deleted(1, "k", 0, 1, true)]),
        "never written"
    );
    assert!(linearizable(&[deleted(1, "k", 0, 1, false)]));
    assert!(!linearizable(&[
        put(1, "k", "v", 0, 1),
        deleted(2, "k", 2, 3, false)
    ]));
    assert!(linearizable(&[
        put(1, "k", "v", 0, 1),
        deleted(2, "k", 2, 3, true)
    ]));
    // Two deletes of one value in a row: only the first can have found it.
    assert!(!linearizable(&[
        put(1, "k", "v", 0, 1),
        deleted(2, "k", 2, 3, true),
        deleted(3, "k", 4, 5, true),
    ]));
    // Concurrent with the put: either answer.
    for existed in [true, false] {
        assert!(linearizable(&[
            put(1, "k", "v", 0, 10),
            deleted(2, "k", 5, 6, existed)
        ]));
    }
    // Concurrent with each other: one of the two found it, not both, and not neither.
    let both = |a, b| {
        linearizable(&[
            put(1, "k", "v", 0, 1),
            deleted(2, "k", 2, 10, a),
            deleted(3, "k", 2, 10, b),
        ])
    };
    assert!(both(true, false) && both(false, true));
    assert!(!both(true, true) && !both(false, false));
    // An answer that does not say (older servers) constrains nothing.
    assert!(linearizable(&[del(1, "k", 0, 1), del(2, "k", 2, 3)]));
}
