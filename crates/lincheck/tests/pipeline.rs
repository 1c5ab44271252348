//! Pipelines: one operation whose effect is its operations applied in order at one instant.
//! Histories that are linearizable only if the pipeline is atomic and ordered are accepted;
//! ones that split it (another op seeing half of it) or reorder it are refused. Times are
//! small integers in ns, as in `known_histories.rs`.

mod common;

use common::{bytes, done, get};
use shardkv_lincheck::{
    Budget, Op, OpResult, Operation, Output, SetWhen, VALUE_BYTES_MAX, Verdict, check,
    read_history_jsonl, write_op_jsonl,
};

fn linearizable(history: &[Operation]) -> bool {
    match check(history, Budget::default()) {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable { .. } => false,
        Verdict::Unknown { key } => panic!("tiny history ran out of budget on key {key:?}"),
    }
}

fn pipeline(client: u64, ops: Vec<Op>, call: u64, ret: u64, outs: Vec<Output>) -> Operation {
    done(
        client,
        Op::Pipeline { ops },
        call,
        ret,
        Output::Outputs(outs),
    )
}

fn put_op(key: &str, value: &str) -> Op {
    Op::Put {
        key: bytes(key),
        value: bytes(value),
    }
}

fn append_op(key: &str, value: &str) -> Op {
    Op::Append {
        key: bytes(key),
        value: bytes(value),
    }
}

#[test]
fn a_read_sees_a_pipeline_whole_or_not_at_all() {
    // Goal: atomicity on one key; method: put "a" then append "b" in one pipeline, a
    // concurrent get: "ab" and absent are explained, "a" (between the two) is not.
    let p = || {
        pipeline(
            1,
            vec![put_op("k", "a"), append_op("k", "b")],
            0,
            10,
            vec![Output::Put, Output::Append],
        )
    };
    assert!(linearizable(&[p(), get(2, "k", 1, 9, Some("ab"))]));
    assert!(linearizable(&[p(), get(2, "k", 1, 9, None)]));
    assert!(
        !linearizable(&[p(), get(2, "k", 1, 9, Some("a"))]),
        "a read between the pipeline's operations"
    );
}

#[test]
fn a_pipeline_over_two_keys_is_seen_at_one_instant() {
    // Goal: the partition links a pipeline's keys, and a multi-key read sees both of its
    // writes or neither; method: put a, put b in one pipeline, a concurrent GetMany.
    let p = || {
        pipeline(
            1,
            vec![put_op("a", "1"), put_op("b", "1")],
            0,
            10,
            vec![Output::Put, Output::Put],
        )
    };
    let read = |seen: [Option<&str>; 2]| {
        let op = Op::GetMany {
            keys: vec![bytes("a"), bytes("b")],
        };
        let out = Output::Values(seen.iter().map(|v| v.map(bytes)).collect());
        done(2, op, 1, 9, out)
    };
    assert!(linearizable(&[p(), read([Some("1"), Some("1")])]));
    assert!(linearizable(&[p(), read([None, None])]));
    assert!(!linearizable(&[p(), read([Some("1"), None])]), "split");
    // Two single-key reads, one after the other, each seeing a different side of it.
    let split = [p(), get(2, "a", 1, 4, Some("1")), get(2, "b", 5, 9, None)];
    assert!(
        !linearizable(&split),
        "the second read started after a saw it"
    );
}

#[test]
fn a_pipeline_answers_its_operations_in_order() {
    // Goal: order within a pipeline; method: incrby then set-get: outputs that only the
    // reverse order produces are refused, and so is a later read of its end state.
    let ops = || {
        vec![
            Op::IncrBy {
                key: bytes("n"),
                by: 1,
            },
            Op::Set {
                key: bytes("n"),
                value: bytes("10"),
                when: SetWhen::Always,
                get: true,
            },
        ]
    };
    let in_order = vec![
        Output::Int(1),
        Output::Set {
            applied: true,
            old: Some(bytes("1")),
        },
    ];
    let reversed = vec![
        Output::Int(11),
        Output::Set {
            applied: true,
            old: None,
        },
    ];
    assert!(linearizable(&[
        pipeline(1, ops(), 0, 10, in_order),
        get(2, "n", 11, 12, Some("10")),
    ]));
    assert!(!linearizable(&[pipeline(1, ops(), 0, 10, reversed)]));
    assert!(
        !linearizable(&[
            pipeline(
                1,
                ops(),
                0,
                10,
                vec![
                    Output::Int(1),
                    Output::Set {
                        applied: true,
                        old: Some(bytes("1"))
                    }
                ]
            ),
            get(2, "n", 11, 12, Some("11")),
        ]),
        "the end state of the reverse order"
    );
}

#[test]
fn an_unknown_pipeline_applies_whole_once_or_never() {
    // Goal: an unknown outcome is one operation too: it may apply (whole) or not at all.
    let p = Operation {
        client: 1,
        op: Op::Pipeline {
            ops: vec![put_op("k", "a"), append_op("k", "b")],
        },
        call_ns: 0,
        result: OpResult::Unknown,
    };
    assert!(linearizable(&[p.clone(), get(2, "k", 5, 6, Some("ab"))]));
    assert!(linearizable(&[p.clone(), get(2, "k", 5, 6, None)]));
    assert!(!linearizable(&[p.clone(), get(2, "k", 5, 6, Some("a"))]));
    assert!(
        !linearizable(&[
            p,
            get(2, "k", 5, 6, Some("ab")),
            get(2, "k", 7, 8, Some("abab"))
        ]),
        "applied twice"
    );
}

#[test]
fn pipelines_round_trip_through_jsonl_and_nested_ones_are_refused() {
    // Goal: the JSONL format holds pipelines (ok and unknown) exactly; a pipeline within
    // a pipeline is refused with its line number.
    let ok = pipeline(
        3,
        vec![
            put_op("{t}a", "1"),
            Op::Delete { key: bytes("{t}b") },
            Op::GetDel { key: bytes("{t}a") },
        ],
        5,
        9,
        vec![
            Output::Put,
            Output::Deleted { existed: false },
            Output::Get(Some(bytes("1"))),
        ],
    );
    let unknown = Operation {
        client: 4,
        op: Op::Pipeline {
            ops: vec![Op::Get { key: bytes("x") }, Op::StrLen { key: bytes("x") }],
        },
        call_ns: 1,
        result: OpResult::Unknown,
    };
    let mut file = Vec::new();
    for op in [&ok, &unknown] {
        write_op_jsonl(&mut file, op).unwrap();
    }
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(text.contains("\"op\":\"pipeline\""), "{text}");
    let back = read_history_jsonl(&file[..]).unwrap();
    assert_eq!(back, vec![ok, unknown]);
    let nested = r#"{"client":1,"op":"pipeline","start_ns":0,"end_ns":1,"status":"ok","ops":[{"client":1,"op":"pipeline","start_ns":0,"end_ns":1,"status":"ok","ops":[]}]}"#;
    let e = read_history_jsonl(format!("\n{nested}\n").as_bytes()).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.to_string().contains("pipeline within a pipeline"), "{e}");
}

#[test]
fn an_append_of_a_pipeline_answered_too_large_changed_nothing_and_only_past_the_limit() {
    // Goal: the model's TooLarge: an append of a pipeline whose result would pass
    // VALUE_BYTES_MAX changed nothing while the pipeline's other operations applied, and
    // that answer is admitted only where the value and the appended bytes pass the limit.
    // Method: a nearly full value, pipelines appending one byte too many and one that fits.
    let near = "v".repeat(VALUE_BYTES_MAX - 1);
    let with = |appended: &str, out: Output| {
        let p = pipeline(
            1,
            vec![
                put_op("k", &near),
                Op::AppendLen {
                    key: bytes("k"),
                    value: bytes(appended),
                },
                put_op("j", "1"),
            ],
            0,
            10,
            vec![Output::Put, out, Output::Put],
        );
        vec![
            p,
            get(2, "k", 11, 12, Some(&near)),
            get(2, "j", 13, 14, Some("1")),
        ]
    };
    assert!(linearizable(&with("xy", Output::TooLarge)));
    assert!(
        !linearizable(&with("x", Output::TooLarge)),
        "one byte fits: not too large"
    );
    assert!(
        !linearizable(&with("xy", Output::Int(VALUE_BYTES_MAX as i64 + 1))),
        "past the limit nothing is appended"
    );
    let mut file = Vec::new();
    let history = with("xy", Output::TooLarge);
    write_op_jsonl(&mut file, &history[0]).unwrap();
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(text.contains(r#"{"error":"too large"}"#), "{text}");
    assert_eq!(read_history_jsonl(&file[..]).unwrap(), history[..1]);
}

#[test]
fn a_lone_append_past_the_limit_is_refused_when_acknowledged_and_admitted_answered_too_large() {
    // Goal: one key's fast path (Step::Append) keeps the store's limit: an append whose
    // result would pass VALUE_BYTES_MAX is never acknowledged as applied, one of unknown
    // outcome changed nothing, and one answered TooLarge is checked by the model (no panic).
    // Method: a one-key history on a nearly full value, each kind of answer in turn.
    let near = "v".repeat(VALUE_BYTES_MAX - 1);
    let history = |last: Operation| {
        vec![
            common::put(1, "k", &near, 0, 1),
            last,
            get(3, "k", 20, 21, Some(&near)),
        ]
    };
    assert!(
        !linearizable(&history(common::append(2, "k", "xy", 2, 3))),
        "an acknowledged append past the limit"
    );
    assert!(linearizable(&history(common::unknown(common::append(
        2, "k", "xy", 2, 3
    )))));
    let too_large = done(2, append_op("k", "xy"), 2, 3, Output::TooLarge);
    assert!(linearizable(&history(too_large)));
    let fits = done(2, append_op("k", "x"), 2, 3, Output::TooLarge);
    assert!(
        !linearizable(&history(fits)),
        "one byte fits: not too large"
    );
}
