//! Hand-written histories of the Redis front end's operations, each accepted or rejected
//! for one reason: the sequential semantics of every op, and the partition of multi-key ops
//! into components (a multi-key op sees all its keys at one instant).
//! Times are small integers in ns, as in `known_histories.rs`.

mod common;

use common::{bytes, done, get, put, unknown};
use shardkv_lincheck::{
    Budget, Op, Operation, Output, SetWhen, Verdict, check, read_history_jsonl, write_op_jsonl,
};

fn linearizable(history: &[Operation]) -> bool {
    match check(history, Budget::default()) {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable { .. } => false,
        Verdict::Unknown { key } => panic!("tiny history ran out of budget on key {key:?}"),
    }
}

fn keys(ks: &[&str]) -> Vec<Vec<u8>> {
    ks.iter().map(|k| bytes(k)).collect()
}

fn set(key: &str, value: &str, when: SetWhen, get: bool) -> Op {
    Op::Set {
        key: bytes(key),
        value: bytes(value),
        when,
        get,
    }
}

fn set_out(applied: bool, old: Option<&str>) -> Output {
    Output::Set {
        applied,
        old: old.map(bytes),
    }
}

fn incr(key: &str, by: i64) -> Op {
    Op::IncrBy {
        key: bytes(key),
        by,
    }
}

fn put_many(pairs: &[(&str, &str)]) -> Op {
    Op::PutMany {
        pairs: pairs.iter().map(|(k, v)| (bytes(k), bytes(v))).collect(),
    }
}

fn values(vs: &[Option<&str>]) -> Output {
    Output::Values(vs.iter().map(|v| v.map(bytes)).collect())
}

#[test]
fn set_nx_applies_only_where_the_key_is_missing() {
    // Goal: SetWhen::Absent; method: an NX that applied after a completed put is refuted,
    // one concurrent with the put is accepted, and one that did not apply must see the key.
    let nx = set("k", "n", SetWhen::Absent, false);
    assert!(!linearizable(&[
        put(1, "k", "p", 0, 1),
        done(2, nx.clone(), 2, 3, set_out(true, None)),
    ]));
    assert!(linearizable(&[
        put(1, "k", "p", 0, 10),
        done(2, nx.clone(), 2, 3, set_out(true, None)),
        get(3, "k", 11, 12, Some("p")),
    ]));
    assert!(!linearizable(&[done(2, nx, 0, 1, set_out(false, None))]));
}

#[test]
fn set_xx_and_set_get_answer_the_value_found() {
    // Goal: SetWhen::Present and `get`; method: the old value must be the one in place.
    let xx_get = set("k", "new", SetWhen::Present, true);
    assert!(linearizable(&[
        put(1, "k", "old", 0, 1),
        done(2, xx_get.clone(), 2, 3, set_out(true, Some("old"))),
        get(1, "k", 4, 5, Some("new")),
    ]));
    assert!(!linearizable(&[
        put(1, "k", "old", 0, 1),
        done(2, xx_get.clone(), 2, 3, set_out(true, Some("other"))),
    ]));
    assert!(!linearizable(&[done(2, xx_get, 0, 1, set_out(true, None))]));
    let always = set("k", "v", SetWhen::Always, true);
    assert!(linearizable(&[
        done(1, always.clone(), 0, 1, set_out(true, None)),
        done(1, always, 2, 3, set_out(true, Some("v"))),
    ]));
}

#[test]
fn getdel_answers_the_value_and_removes_it_once() {
    // Goal: GetDel; method: two sequential GetDels cannot both find the value.
    let getdel = Op::GetDel { key: bytes("k") };
    assert!(linearizable(&[
        put(1, "k", "v", 0, 1),
        done(2, getdel.clone(), 2, 3, Output::Get(Some(bytes("v")))),
        done(3, getdel.clone(), 4, 5, Output::Get(None)),
    ]));
    assert!(!linearizable(&[
        put(1, "k", "v", 0, 1),
        done(2, getdel.clone(), 2, 3, Output::Get(Some(bytes("v")))),
        done(3, getdel.clone(), 4, 5, Output::Get(Some(bytes("v")))),
    ]));
    assert!(!linearizable(&[
        put(1, "k", "v", 0, 1),
        done(2, getdel, 2, 3, Output::Get(Some(bytes("v")))),
        get(3, "k", 4, 5, Some("v")),
    ]));
}

#[test]
fn appendlen_answers_the_new_length() {
    // Goal: AppendLen's answer pins how much was appended before it; method: lengths.
    let app = |v: &str| Op::AppendLen {
        key: bytes("k"),
        value: bytes(v),
    };
    assert!(linearizable(&[
        done(1, app("ab"), 0, 10, Output::Int(2)),
        done(2, app("c"), 0, 10, Output::Int(3)),
        get(3, "k", 11, 12, Some("abc")),
    ]));
    assert!(!linearizable(&[
        done(1, app("ab"), 0, 10, Output::Int(2)),
        done(2, app("c"), 0, 10, Output::Int(3)),
        get(3, "k", 11, 12, Some("cab")),
    ]));
}

#[test]
fn incrby_results_never_skip_or_repeat_a_value() {
    // Goal: IncrBy sums; method: concurrent increments in any order, but a result that
    // skips a value (a lost or doubled increment) is refuted.
    assert!(linearizable(&[
        done(1, incr("n", 1), 0, 10, Output::Int(2)),
        done(2, incr("n", 1), 0, 10, Output::Int(1)),
        get(3, "n", 11, 12, Some("2")),
    ]));
    assert!(!linearizable(&[
        done(1, incr("n", 1), 0, 1, Output::Int(1)),
        done(2, incr("n", 1), 2, 3, Output::Int(3)),
    ]));
    assert!(!linearizable(&[
        done(1, incr("n", 1), 0, 10, Output::Int(1)),
        done(2, incr("n", 1), 0, 10, Output::Int(1)),
    ]));
    // An unknown increment may have applied once, not twice.
    let maybe = unknown(done(1, incr("n", 5), 0, 1, Output::Int(5)));
    assert!(linearizable(&[
        maybe.clone(),
        done(2, incr("n", 1), 2, 3, Output::Int(6))
    ]));
    assert!(linearizable(&[
        maybe.clone(),
        done(2, incr("n", 1), 2, 3, Output::Int(1))
    ]));
    assert!(!linearizable(&[
        maybe,
        done(2, incr("n", 1), 2, 3, Output::Int(11))
    ]));
}

#[test]
fn incrby_errors_follow_redis_and_change_nothing() {
    // Goal: NotAnInteger and Overflow; method: a non-canonical value, and i64::MAX.
    for not_canonical in ["01", "+1", " 1", "-0", "x", ""] {
        assert!(linearizable(&[
            put(1, "n", not_canonical, 0, 1),
            done(2, incr("n", 1), 2, 3, Output::NotAnInteger),
            get(3, "n", 4, 5, Some(not_canonical)),
        ]));
    }
    assert!(!linearizable(&[
        put(1, "n", "7", 0, 1),
        done(2, incr("n", 1), 2, 3, Output::NotAnInteger),
    ]));
    let max = i64::MAX.to_string();
    assert!(linearizable(&[
        put(1, "n", &max, 0, 1),
        done(2, incr("n", 1), 2, 3, Output::Overflow),
        done(2, incr("n", -1), 4, 5, Output::Int(i64::MAX - 1)),
    ]));
    assert!(!linearizable(&[
        put(1, "n", "-9223372036854775808", 0, 1),
        done(2, incr("n", -1), 2, 3, Output::Int(i64::MAX)),
    ]));
    assert!(!linearizable(&[
        put(1, "n", "0", 0, 1),
        done(2, incr("n", i64::MAX), 2, 3, Output::Overflow),
    ]));
}

#[test]
fn strlen_and_exists_count_what_is_there() {
    // Goal: StrLen and Exists; method: counts possible at some point pass, others fail.
    let strlen = Op::StrLen { key: bytes("a") };
    let exists = Op::Exists {
        keys: keys(&["a", "b", "a"]),
    };
    let history = |count| {
        [
            put(1, "a", "xyz", 0, 1),
            put(1, "b", "", 2, 10),
            done(2, strlen.clone(), 3, 4, Output::Int(3)),
            done(2, exists.clone(), 5, 6, Output::Int(count)),
        ]
    };
    assert!(linearizable(&history(2)), "before b is put");
    assert!(linearizable(&history(3)), "after b is put: a counts twice");
    assert!(!linearizable(&history(1)), "impossible at any point");
    assert!(!linearizable(&[done(2, strlen, 0, 1, Output::Int(1))]));
}

#[test]
fn getmany_never_sees_half_of_a_putmany() {
    // Goal: PutMany is atomic across keys; method: a GetMany concurrent with it sees all
    // or nothing of it.
    let pm = put_many(&[("a", "1"), ("b", "1")]);
    let gm = Op::GetMany {
        keys: keys(&["a", "b"]),
    };
    let history = |seen: &[Option<&str>]| {
        [
            done(1, pm.clone(), 0, 10, Output::Put),
            done(2, gm.clone(), 1, 9, values(seen)),
        ]
    };
    assert!(linearizable(&history(&[None, None])));
    assert!(linearizable(&history(&[Some("1"), Some("1")])));
    assert!(!linearizable(&history(&[Some("1"), None])));
    assert!(!linearizable(&history(&[None, Some("1")])));
}

#[test]
fn single_key_reads_join_the_component_of_a_multi_key_write() {
    // Goal: components: single-key reads of a and b are ordered against one PutMany;
    // method: a read of a new b followed by a read of an old a is refuted.
    let pm = put_many(&[("a", "1"), ("b", "1")]);
    assert!(!linearizable(&[
        done(1, pm.clone(), 0, 10, Output::Put),
        get(2, "b", 1, 2, Some("1")),
        get(2, "a", 3, 4, None),
    ]));
    assert!(linearizable(&[
        done(1, pm, 0, 10, Output::Put),
        get(2, "a", 1, 2, None),
        get(2, "b", 3, 4, Some("1")),
    ]));
}

#[test]
fn deletemany_counts_each_existing_key_once() {
    // Goal: DeleteMany's count; method: a key named twice is removed (and counted) once.
    let dm = Op::DeleteMany {
        keys: keys(&["a", "a", "b"]),
    };
    let history = |count| {
        [
            put(1, "a", "1", 0, 1),
            done(2, dm.clone(), 2, 3, Output::Int(count)),
            get(3, "a", 4, 5, None),
        ]
    };
    assert!(linearizable(&history(1)));
    assert!(!linearizable(&history(2)));
    assert!(!linearizable(&history(0)));
}

#[test]
fn putmany_with_a_repeated_key_keeps_the_last_value() {
    // Goal: pairs apply in order; method: read the key back.
    let pm = put_many(&[("a", "1"), ("a", "2")]);
    assert!(linearizable(&[
        done(1, pm.clone(), 0, 1, Output::Put),
        get(2, "a", 2, 3, Some("2")),
    ]));
    assert!(!linearizable(&[
        done(1, pm, 0, 1, Output::Put),
        get(2, "a", 2, 3, Some("1")),
    ]));
}

#[test]
fn a_violation_in_a_component_names_its_first_key() {
    // Goal: the verdict names the component by its smallest key; method: a bad Exists on
    // {b, c} joined with a, next to an independent good key.
    let history = [
        put(1, "z", "ok", 0, 1),
        done(
            2,
            Op::Exists {
                keys: keys(&["c", "b"]),
            },
            0,
            1,
            Output::Int(1),
        ),
        done(
            3,
            Op::GetMany {
                keys: keys(&["b", "a"]),
            },
            0,
            1,
            values(&[None, None]),
        ),
    ];
    match check(&history, Budget::default()) {
        Verdict::NotLinearizable { key, explanation } => {
            assert_eq!(key, b"a", "{explanation}");
            assert!(explanation.contains("exists"), "{explanation}");
        }
        other => panic!("wanted a violation, got {other:?}"),
    }
}

#[test]
fn every_new_op_survives_the_jsonl_format() {
    // Goal: the history file carries the new ops exactly; method: write and read back.
    let history = vec![
        done(
            1,
            set("k", "v", SetWhen::Absent, true),
            0,
            1,
            set_out(false, Some("x")),
        ),
        done(1, Op::GetDel { key: bytes("k") }, 2, 3, Output::Get(None)),
        done(
            1,
            Op::AppendLen {
                key: bytes("k"),
                value: bytes("ab"),
            },
            4,
            5,
            Output::Int(2),
        ),
        done(1, incr("n", -3), 6, 7, Output::Int(-3)),
        done(1, incr("k", 1), 6, 7, Output::NotAnInteger),
        done(1, incr("n", i64::MIN), 6, 7, Output::Overflow),
        done(1, Op::StrLen { key: bytes("k") }, 8, 9, Output::Int(2)),
        done(
            1,
            Op::DeleteMany {
                keys: keys(&["a", "b"]),
            },
            8,
            9,
            Output::Int(0),
        ),
        done(1, put_many(&[("a", "1"), ("b", "")]), 8, 9, Output::Put),
        done(
            1,
            Op::GetMany {
                keys: keys(&["a", "b", "c"]),
            },
            10,
            11,
            values(&[Some("1"), Some(""), None]),
        ),
        unknown(done(
            1,
            Op::Exists { keys: keys(&["a"]) },
            12,
            13,
            Output::Int(1),
        )),
        unknown(done(1, put_many(&[("a", "2")]), 12, 13, Output::Put)),
    ];
    let mut file = Vec::new();
    for operation in &history {
        write_op_jsonl(&mut file, operation).unwrap();
    }
    let read = read_history_jsonl(file.as_slice()).unwrap();
    assert_eq!(read, history, "{}", String::from_utf8_lossy(&file));
}

#[test]
fn malformed_redis_records_are_refused_with_their_line() {
    // Goal: bad records name what is wrong; method: one bad line at a time.
    for (line, wanted) in [
        (
            r#"{"client":1,"op":"incrby","key":"n","start_ns":0,"end_ns":1,"status":"ok","output":1}"#,
            "by",
        ),
        (
            r#"{"client":1,"op":"getmany","start_ns":0,"end_ns":1,"status":"ok","output":[]}"#,
            "keys",
        ),
        (
            r#"{"client":1,"op":"getmany","keys":["a"],"start_ns":0,"end_ns":1,"status":"ok","output":[]}"#,
            "getmany",
        ),
        (
            r#"{"client":1,"op":"exists","keys":[],"start_ns":0,"end_ns":1,"status":"ok","output":0}"#,
            "no key",
        ),
        (
            r#"{"client":1,"op":"putmany","keys":["a"],"values":[],"start_ns":0,"end_ns":1,"status":"ok"}"#,
            "values",
        ),
        (
            r#"{"client":1,"op":"set","key":"k","value":"v","start_ns":0,"end_ns":1,"status":"ok","output":{"applied":true,"old":"x"}}"#,
            "set",
        ),
        (
            r#"{"client":1,"op":"incrby","key":"n","by":1,"start_ns":0,"end_ns":1,"status":"ok","output":{"error":"nope"}}"#,
            "nope",
        ),
    ] {
        let error = read_history_jsonl(line.as_bytes()).unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.to_string().contains(wanted), "{line}: {error}");
    }
}
