//! `Pipeline`: a client's pipelined writes applied at one index in order, or its pipelined
//! reads answered at one index, within the limits of a multi-key operation.

use shardkv_kv::{
    ByteBuf, KvCommand, KvOutput, KvQuery, KvStore, MANY_BYTES_MAX, MANY_KEYS_MAX,
    PIPELINE_OPS_MAX, VALUE_BYTES_MAX, validate_command, validate_query,
};
use shardkv_rsm::Error;

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn put(key: &str, value: &[u8]) -> KvCommand {
    KvCommand::Put {
        key: k(key),
        value: value.to_vec(),
    }
}

fn get(key: &str) -> KvQuery {
    KvQuery::Get { key: k(key) }
}

#[test]
fn a_pipeline_answers_each_command_as_it_alone_would_in_order() {
    // Goal: sub-commands see each other's effects in order; method: one store, then the
    // same commands one at a time on another, outputs compared.
    let cmds = vec![
        KvCommand::IncrBy { key: k("n"), by: 1 },
        KvCommand::AppendLen {
            key: k("n"),
            value: k("0"),
        },
        KvCommand::IncrBy { key: k("n"), by: 1 },
        KvCommand::GetDel { key: k("n") },
        KvCommand::Delete { key: k("n") },
    ];
    let mut one = KvStore::default();
    let out = one.execute(&KvCommand::Pipeline { cmds: cmds.clone() });
    let mut each = KvStore::default();
    let want: Vec<KvOutput> = cmds.iter().map(|c| each.execute(c)).collect();
    assert_eq!(out, KvOutput::Outputs(want));
    assert_eq!(
        out,
        KvOutput::Outputs(vec![
            KvOutput::Int(1),
            KvOutput::Int(2),
            KvOutput::Int(11),
            KvOutput::Value(Some(k("11"))),
            KvOutput::Deleted { existed: false },
        ])
    );
    assert_eq!(one, each);
}

#[test]
fn an_append_of_a_pipeline_past_the_limit_answers_too_large_and_the_others_apply() {
    // Goal: a pipeline is not refused as a whole (Redis's pipelines are not transactions):
    // an append onto what an earlier command of it wrote is held to the limit as it
    // executes, answers TooLarge and changes nothing, and the commands around it apply.
    // Method: check_growth then execute, as apply does.
    let mut s = KvStore::default();
    let half = vec![b'x'; VALUE_BYTES_MAX / 2 + 1];
    let append = |value: &[u8]| KvCommand::AppendLen {
        key: k("a"),
        value: value.to_vec(),
    };
    let cmds = vec![
        put("a", &half),
        append(&half),
        put("b", b"1"),
        KvCommand::Delete { key: k("a") },
        append(&half),
    ];
    let pipeline = KvCommand::Pipeline { cmds };
    assert_eq!(
        s.check_growth(&pipeline),
        Ok(()),
        "never refused as a whole"
    );
    assert_eq!(
        s.execute(&pipeline),
        KvOutput::Outputs(vec![
            KvOutput::Done,
            KvOutput::TooLarge {
                bytes: 2 * half.len() as u64,
                max: VALUE_BYTES_MAX as u64
            },
            KvOutput::Done,
            KvOutput::Deleted { existed: true },
            KvOutput::Int(half.len() as i64),
        ])
    );
    assert_eq!(s.get(b"a"), Some(&half), "the delete made room");
    assert_eq!(s.get(b"b"), Some(&k("1")));
}

#[test]
fn a_pipeline_naming_a_full_value_many_times_is_executed_without_copies() {
    // Goal: the review's repro (a full value, an append onto it and 63 deletes naming it
    // 1024 times each) answers at once: the append TooLarge, the first delete 1, the others
    // 0 (it used to copy the value once per key named, ~63 GiB). Method: execute it.
    let mut s = KvStore::default();
    s.insert(k("a"), vec![b'v'; VALUE_BYTES_MAX]);
    let mut cmds = vec![KvCommand::Append {
        key: k("a"),
        value: k("x"),
    }];
    let many = KvCommand::DeleteMany {
        keys: vec![ByteBuf::from(k("a")); MANY_KEYS_MAX],
    };
    cmds.extend(std::iter::repeat_n(many, PIPELINE_OPS_MAX - 1));
    let pipeline = KvCommand::Pipeline { cmds };
    assert_eq!(validate_command(&pipeline), Ok(()));
    assert_eq!(s.check_growth(&pipeline), Ok(()));
    let KvOutput::Outputs(outs) = s.execute(&pipeline) else {
        panic!("a pipeline answers Outputs");
    };
    assert_eq!(
        outs[0],
        KvOutput::TooLarge {
            bytes: VALUE_BYTES_MAX as u64 + 1,
            max: VALUE_BYTES_MAX as u64
        }
    );
    assert_eq!(outs[1], KvOutput::Int(1));
    assert!(outs[2..].iter().all(|o| *o == KvOutput::Int(0)));
    assert!(s.is_empty());
}

#[test]
fn a_write_pipeline_counts_the_values_it_may_answer_within_many_bytes_max() {
    // Goal: a write pipeline's answer fits a reply: each GetDel, Set with get and Cas counts
    // VALUE_BYTES_MAX (the most it may find), as the Redis front end's runs do. Method:
    // one such command fits, two are refused TooLarge.
    let getdel = |key: &str| KvCommand::GetDel { key: k(key) };
    let set_get = |key: &str| KvCommand::Set {
        key: k(key),
        value: k("v"),
        when: shardkv_kv::SetWhen::Always,
        get: true,
    };
    let pipeline = |cmds| KvCommand::Pipeline { cmds };
    assert_eq!(
        validate_command(&pipeline(vec![getdel("a"), put("b", b"1")])),
        Ok(())
    );
    let cas = |key: &str| KvCommand::Cas {
        key: k(key),
        expected: None,
        new: k("x"),
    };
    assert_eq!(
        validate_command(&pipeline(vec![cas("a"), put("b", b"1")])),
        Ok(())
    );
    // A Cas that does not swap answers the value it found.
    for two in [
        vec![getdel("a"), getdel("b")],
        vec![set_get("a"), getdel("b")],
        vec![set_get("a"), set_get("b")],
        vec![cas("a"), cas("b")],
        vec![cas("a"), getdel("b")],
    ] {
        assert!(
            matches!(
                validate_command(&pipeline(two.clone())),
                Err(Error::TooLarge { max, .. }) if max == MANY_BYTES_MAX as u64
            ),
            "{two:?}"
        );
    }
    let set_no_get = KvCommand::Set {
        key: k("a"),
        value: k("v"),
        when: shardkv_kv::SetWhen::Always,
        get: false,
    };
    assert_eq!(
        validate_command(&pipeline(vec![set_no_get.clone(), set_no_get])),
        Ok(()),
        "a Set without get answers no value"
    );
}

#[test]
fn a_read_pipeline_answers_at_one_point_within_the_answer_bound() {
    // Goal: reads answer in order; the values a read pipeline would answer are bounded by
    // MANY_BYTES_MAX over the whole answer; method: a store with three 1 MiB values.
    let mut s = KvStore::default();
    let big = vec![b'v'; VALUE_BYTES_MAX];
    for key in ["a", "b", "c"] {
        s.insert(k(key), big.clone());
    }
    let two = KvQuery::Pipeline {
        queries: vec![
            get("a"),
            KvQuery::StrLen { key: k("b") },
            KvQuery::Exists {
                keys: vec![ByteBuf::from(k("c")), ByteBuf::from(k("none"))],
            },
            get("none"),
            get("b"),
        ],
    };
    assert_eq!(
        s.read(&two),
        Ok(KvOutput::Outputs(vec![
            KvOutput::Value(Some(big.clone())),
            KvOutput::Int(VALUE_BYTES_MAX as i64),
            KvOutput::Int(1),
            KvOutput::Value(None),
            KvOutput::Value(Some(big)),
        ]))
    );
    let three = KvQuery::Pipeline {
        queries: vec![get("a"), get("b"), get("c")],
    };
    assert_eq!(
        s.read(&three),
        Err(Error::TooLarge {
            bytes: 3 * VALUE_BYTES_MAX as u64,
            max: MANY_BYTES_MAX as u64
        })
    );
}

#[test]
fn pipelines_hold_one_to_pipeline_ops_max_operations_none_nested_within_many_bytes_max() {
    // Goal: validate's limits on pipelines; method: each limit at and past it.
    let invalid = |r: Result<(), Error>| matches!(r, Err(Error::Invalid { .. }));
    let cmds = |n: usize| -> Vec<KvCommand> { (0..n).map(|_| put("a", b"1")).collect() };
    assert!(invalid(validate_command(&KvCommand::Pipeline {
        cmds: cmds(0)
    })));
    assert_eq!(
        validate_command(&KvCommand::Pipeline {
            cmds: cmds(PIPELINE_OPS_MAX)
        }),
        Ok(())
    );
    assert!(invalid(validate_command(&KvCommand::Pipeline {
        cmds: cmds(PIPELINE_OPS_MAX + 1)
    })));
    let nested = KvCommand::Pipeline {
        cmds: vec![KvCommand::Pipeline { cmds: cmds(1) }],
    };
    assert!(invalid(validate_command(&nested)));
    let queries = |n: usize| -> Vec<KvQuery> { (0..n).map(|_| get("a")).collect() };
    assert!(invalid(validate_query(&KvQuery::Pipeline {
        queries: queries(0)
    })));
    assert!(invalid(validate_query(&KvQuery::Pipeline {
        queries: queries(PIPELINE_OPS_MAX + 1)
    })));
    assert!(invalid(validate_query(&KvQuery::Pipeline {
        queries: vec![KvQuery::Pipeline {
            queries: queries(1)
        }]
    })));
    assert_eq!(
        validate_query(&KvQuery::Pipeline {
            queries: queries(PIPELINE_OPS_MAX)
        }),
        Ok(())
    );
    // Three values of 1 MiB: each within its own limit, together past MANY_BYTES_MAX.
    let mib = vec![0; VALUE_BYTES_MAX];
    let large = KvCommand::Pipeline {
        cmds: vec![put("a", &mib), put("b", &mib), put("c", &mib)],
    };
    assert_eq!(
        validate_command(&large),
        Err(Error::TooLarge {
            bytes: 3 * (VALUE_BYTES_MAX as u64 + 1),
            max: MANY_BYTES_MAX as u64
        })
    );
    let one_too_large = KvCommand::Pipeline {
        cmds: vec![put("a", b"1"), put("b", &vec![0; VALUE_BYTES_MAX + 1])],
    };
    assert!(
        matches!(
            validate_command(&one_too_large),
            Err(Error::TooLarge { max, .. }) if max == VALUE_BYTES_MAX as u64
        ),
        "each command within its own limits"
    );
}

#[test]
fn a_pipeline_names_every_key_of_its_operations_in_order() {
    // Goal: keys() covers every sub-operation (so a sharded store refuses a pipeline
    // spanning shards) and key() is the first (the client routes by it).
    let cmd = KvCommand::Pipeline {
        cmds: vec![
            put("a", b"1"),
            KvCommand::DeleteMany {
                keys: vec![ByteBuf::from(k("b")), ByteBuf::from(k("c"))],
            },
        ],
    };
    assert_eq!(cmd.keys().collect::<Vec<_>>(), [b"a", b"b", b"c"]);
    assert_eq!(cmd.key(), b"a");
    let q = KvQuery::Pipeline {
        queries: vec![get("x"), get("y")],
    };
    assert_eq!(q.keys().collect::<Vec<_>>(), [b"x", b"y"]);
}
