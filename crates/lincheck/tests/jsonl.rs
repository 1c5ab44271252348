//! The JSONL history format: round trips, dropped failures, unknown outcomes, and errors
//! that name the line.

use shardkv_lincheck::synth::{SynthConfig, linearizable_history};
use shardkv_lincheck::{
    Budget, HistoryRecord, Op, OpKind, OpResult, Operation, Output, ParseErrorKind, RecordOutput,
    RedisFields, Status, Verdict, check, read_history_jsonl, write_op_jsonl, write_record_jsonl,
};

fn read(text: &str) -> Result<Vec<Operation>, shardkv_lincheck::ParseError> {
    read_history_jsonl(text.as_bytes())
}

#[test]
fn written_histories_read_back_identically() {
    // Goal: write / read are inverse for every op kind and outcome; method: a synthetic
    // history with unknown outcomes (end_ns of unknown ops is not kept, by design).
    let history = linearizable_history(&SynthConfig {
        ops: 400,
        unknown_percent: 10,
        ..SynthConfig::default()
    });
    let mut file = Vec::new();
    for operation in &history {
        write_op_jsonl(&mut file, operation).unwrap();
    }
    let back = read_history_jsonl(file.as_slice()).unwrap();
    assert_eq!(back, history);
    assert_eq!(check(&back, Budget::default()), Verdict::Linearizable);
}

#[test]
fn the_documented_example_parses() {
    // Goal: the format in the brief; method: one line per op kind and status.
    let text = r#"
{"client":7,"op":"cas","key":"k","value":"new","expected":null,"output":true,"start_ns":100,"end_ns":250,"status":"ok"}
{"client":7,"op":"get","key":"k","output":"new","start_ns":300,"end_ns":350,"status":"ok"}
{"client":8,"op":"get","key":"k","output":null,"start_ns":1,"end_ns":2,"status":"ok"}
{"client":8,"op":"put","key":"k","value":"x","start_ns":400,"end_ns":500,"status":"failed"}
{"client":8,"op":"append","key":"k","value":"y","start_ns":400,"end_ns":0,"status":"unknown"}
{"client":9,"op":"del","key":"j","output":null,"start_ns":10,"end_ns":20,"status":"ok","latency_us":3}
"#;
    let history = read(text).unwrap();
    assert_eq!(history.len(), 5, "the failed put is dropped");
    assert_eq!(
        history[0].op,
        Op::Cas {
            key: b"k".to_vec(),
            expected: None,
            new: b"new".to_vec()
        }
    );
    assert_eq!(
        history[0].result,
        OpResult::Ok {
            output: Output::Cas { swapped: true },
            return_ns: 250
        }
    );
    assert_eq!(
        history[2].result,
        OpResult::Ok {
            output: Output::Get(None),
            return_ns: 2
        }
    );
    assert_eq!(history[3].result, OpResult::Unknown);
    assert_eq!(history[4].op, Op::Delete { key: b"j".to_vec() });
    assert_eq!(check(&history, Budget::default()), Verdict::Linearizable);
}

#[test]
fn expected_null_differs_from_expected_empty() {
    // Goal: absent vs empty survives the format; method: parse both.
    let line = |expected: &str| {
        format!(
            r#"{{"client":1,"op":"cas","key":"k","value":"v","expected":{expected},"output":false,"start_ns":1,"end_ns":2,"status":"ok"}}"#
        )
    };
    let absent = read(&line("null")).unwrap();
    let empty = read(&line("\"\"")).unwrap();
    assert!(matches!(&absent[0].op, Op::Cas { expected: None, .. }));
    assert!(matches!(&empty[0].op, Op::Cas { expected: Some(e), .. } if e.is_empty()));
}

#[test]
fn bad_lines_are_named_by_number() {
    // Goal: clear errors with the line number; method: one bad line after good ones each.
    let good =
        r#"{"client":1,"op":"put","key":"k","value":"v","start_ns":1,"end_ns":2,"status":"ok"}"#;
    let cases = [
        ("{not json", "bad JSON"),
        (
            r#"{"client":1,"op":"gte","key":"k","start_ns":1,"end_ns":2,"status":"ok"}"#,
            "bad JSON",
        ),
        (
            r#"{"client":1,"op":"cas","key":"k","value":"v","output":true,"start_ns":1,"end_ns":2,"status":"ok"}"#,
            "cas needs \"expected\"",
        ),
        (
            r#"{"client":1,"op":"get","key":"k","start_ns":1,"end_ns":2,"status":"ok"}"#,
            "ok get needs \"output\"",
        ),
        (
            r#"{"client":1,"op":"put","key":"k","start_ns":1,"end_ns":2,"status":"ok"}"#,
            "put needs a \"value\"",
        ),
        (
            r#"{"client":1,"op":"cas","key":"k","value":"v","expected":"a","output":"x","start_ns":1,"end_ns":2,"status":"ok"}"#,
            "ok cas needs \"output\"",
        ),
        (
            r#"{"client":1,"op":"put","key":"k","value":"v","output":"x","start_ns":1,"end_ns":2,"status":"ok"}"#,
            "put has no output",
        ),
        (
            r#"{"client":1,"op":"put","key":"k","value":"v","start_ns":5,"end_ns":2,"status":"ok"}"#,
            "before its call",
        ),
        (
            r#"{"client":1,"op":"put","key":"k","value":"v","start_ns":1,"end_ns":2,"status":"maybe"}"#,
            "bad JSON",
        ),
    ];
    for (bad, message) in cases {
        let text = format!("{good}\n\n{good}\n{bad}\n{good}\n");
        let error = read(&text).expect_err(bad);
        assert_eq!(error.line, 4, "{bad}");
        let shown = error.to_string();
        assert!(shown.starts_with("history line 4: "), "{shown}");
        assert!(shown.contains(message), "{bad}: {shown}");
    }
}

#[test]
fn io_errors_are_reported_with_their_line() {
    // Goal: read failures are not mistaken for bad JSON; method: invalid UTF-8 on line 2.
    let mut bytes =
        br#"{"client":1,"op":"del","key":"k","start_ns":1,"end_ns":2,"status":"ok"}"#.to_vec();
    bytes.extend_from_slice(b"\n\xff\xfe\n");
    let error = read_history_jsonl(bytes.as_slice()).unwrap_err();
    assert_eq!(error.line, 2);
    assert!(matches!(error.kind, ParseErrorKind::Io(_)));
}

#[test]
fn records_written_by_a_bench_tool_read_back() {
    // Goal: the record type is the writer's API, failures included; method: write records.
    let record = HistoryRecord {
        client: 3,
        op: OpKind::Get,
        key: "k".into(),
        value: None,
        expected: None,
        output: Some(RecordOutput::Value(None)),
        start_ns: 10,
        end_ns: 20,
        status: Status::Ok,
        redis: RedisFields::default(),
    };
    let failed = HistoryRecord {
        op: OpKind::Put,
        value: Some("v".into()),
        output: None,
        status: Status::Failed,
        ..record.clone()
    };
    let mut file = Vec::new();
    write_record_jsonl(&mut file, &record).unwrap();
    write_record_jsonl(&mut file, &failed).unwrap();
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"client":3,"op":"get","key":"k","output":null,"start_ns":10"#),
        "{text}"
    );
    let history = read_history_jsonl(file.as_slice()).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].result,
        OpResult::Ok {
            output: Output::Get(None),
            return_ns: 20
        }
    );
}

#[test]
fn non_utf8_bytes_cannot_be_written() {
    // Goal: the text format refuses binary values instead of corrupting them.
    let operation = Operation {
        client: 1,
        op: Op::Put {
            key: b"k".to_vec(),
            value: vec![0xff],
        },
        call_ns: 0,
        result: OpResult::Unknown,
    };
    let error = write_op_jsonl(Vec::new(), &operation).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
}
