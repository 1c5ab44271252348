//! A pipeline on the wire: an `OpRequest` whose `pipeline` holds one encoded `OpRequest`
//! per operation (counted before any is decoded), answered with `outputs`. It round-trips
//! exactly, and a frame a hostile client could send (no operations, too many, a pipeline
//! within a pipeline, reads mixed with writes, an answer holding an error) is refused with
//! a reason, never a panic.

use prost::Message;
use shardkv_kv::{ByteBuf, KvCommand, KvOutput, KvQuery, KvRequest, PIPELINE_OPS_MAX, SetWhen};
use shardkv_net::convert::{
    WireRequest, op_from_wire, reply_from_wire, reply_to_wire, request_to_wire,
};
use shardkv_net::pb;
use shardkv_rsm::{Error, Request};
use shardkv_types::{ClientId, Gid, NodeId, Seq};

fn every_command() -> Vec<KvCommand> {
    let k = |s: &str| s.as_bytes().to_vec();
    vec![
        KvCommand::Put {
            key: k("a"),
            value: k("1"),
        },
        KvCommand::Append {
            key: k("a"),
            value: Vec::new(),
        },
        KvCommand::Delete { key: k("a") },
        KvCommand::Cas {
            key: k("a"),
            expected: None,
            new: k("n"),
        },
        KvCommand::Cas {
            key: k("a"),
            expected: Some(Vec::new()),
            new: k("n"),
        },
        KvCommand::Set {
            key: k("a"),
            value: k("v"),
            when: SetWhen::Present,
            get: true,
        },
        KvCommand::GetDel { key: k("a") },
        KvCommand::AppendLen {
            key: k("a"),
            value: k("t"),
        },
        KvCommand::IncrBy {
            key: k("n"),
            by: -3,
        },
        KvCommand::DeleteMany {
            keys: vec![ByteBuf::from(k("a"))],
        },
        KvCommand::PutMany {
            pairs: vec![(ByteBuf::from(k("a")), ByteBuf::from(k("b")))],
        },
    ]
}

fn pipeline_op(ops: Vec<pb::op_request::Op>) -> pb::OpRequest {
    pb::OpRequest {
        client: 7,
        seq: 1,
        first_attempt: true,
        op: Some(pb::op_request::Op::Pipeline(pb::Pipeline {
            ops: ops
                .into_iter()
                .map(|op| {
                    pb::OpRequest {
                        op: Some(op),
                        ..Default::default()
                    }
                    .encode_to_vec()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

#[test]
fn pipelines_of_every_command_and_query_round_trip_through_the_wire() {
    let write = KvRequest::Write {
        client: ClientId(7),
        seq: Seq(3),
        retry: true,
        cmd: KvCommand::Pipeline {
            cmds: every_command(),
        },
    };
    let read = Request::Read(KvQuery::Pipeline {
        queries: vec![
            KvQuery::Get { key: b"a".to_vec() },
            KvQuery::StrLen { key: b"a".to_vec() },
            KvQuery::GetMany {
                keys: vec![ByteBuf::from(&b"a"[..])],
            },
            KvQuery::Exists {
                keys: vec![ByteBuf::from(&b"a"[..])],
            },
        ],
    });
    for req in [write, read] {
        let WireRequest::Op(wire) = request_to_wire(Gid(4), req.clone()) else {
            panic!("a pipeline travels as an OpRequest");
        };
        assert_eq!(wire.group, 4);
        assert_eq!(op_from_wire(wire), Ok(req));
    }
    let answer = Ok(KvOutput::Outputs(vec![
        KvOutput::Done,
        KvOutput::Deleted { existed: true },
        KvOutput::Value(None),
        KvOutput::Int(-1),
        KvOutput::Values(vec![None]),
        KvOutput::Set {
            applied: false,
            old: Some(b"o".to_vec()),
        },
        KvOutput::Cas {
            swapped: true,
            current: None,
        },
        KvOutput::Overflow,
        KvOutput::TooLarge {
            bytes: 1 << 21,
            max: 1 << 20,
        },
    ]));
    let (from, back) = reply_from_wire(reply_to_wire(NodeId(2), answer.clone())).expect("decodes");
    assert_eq!((from, back), (NodeId(2), answer));
}

#[test]
fn malformed_pipelines_are_refused_with_a_reason() {
    use pb::op_request::Op;
    let put = || {
        Op::Put(pb::KeyValue {
            key: b"a".to_vec(),
            value: Vec::new(),
        })
    };
    let refused = |r: pb::OpRequest, why: &str| {
        let e = op_from_wire(r).expect_err("refused");
        assert!(e.contains(why), "{e:?} should say {why:?}");
    };
    refused(pipeline_op(Vec::new()), "a pipeline of 0 operations");
    refused(
        pipeline_op((0..=PIPELINE_OPS_MAX).map(|_| put()).collect()),
        "a pipeline of 65 operations",
    );
    assert!(op_from_wire(pipeline_op((0..PIPELINE_OPS_MAX).map(|_| put()).collect())).is_ok());
    let inner = pipeline_op(vec![put()]).op.expect("an op");
    refused(
        pipeline_op(vec![put(), inner]),
        "a pipeline within a pipeline",
    );
    refused(
        pipeline_op(vec![put(), Op::Get(b"a".to_vec())]),
        "mixing reads and writes",
    );
    let mut empty = pipeline_op(vec![put()]);
    if let Some(Op::Pipeline(p)) = &mut empty.op {
        p.ops[0] = pb::OpRequest::default().encode_to_vec();
    }
    refused(empty, "without an operation");
    let mut garbage = pipeline_op(vec![put()]);
    if let Some(Op::Pipeline(p)) = &mut garbage.op {
        p.ops[0] = vec![0xff];
    }
    refused(garbage, "does not decode");
    let alone = pb::OpRequest {
        op: Some(put()),
        ..Default::default()
    };
    refused(alone, "only within a pipeline");
}

#[test]
fn a_pipeline_answer_holding_an_error_or_too_many_outputs_is_malformed() {
    let output = |r| pb::KvReply {
        server: 0,
        result: Some(r),
    };
    let done = || output(pb::kv_reply::Result::Done(pb::Done { existed: None }));
    let answer = |replies| pb::KvReply {
        server: 1,
        result: Some(pb::kv_reply::Result::Outputs(pb::Outputs { replies })),
    };
    let error = reply_to_wire(NodeId(0), Err(Error::Busy));
    assert!(reply_from_wire(answer(vec![done(), error])).is_err());
    assert!(reply_from_wire(answer(vec![answer(vec![done()])])).is_err());
    assert!(reply_from_wire(answer(vec![pb::KvReply::default()])).is_err());
    assert!(reply_from_wire(answer((0..=PIPELINE_OPS_MAX).map(|_| done()).collect())).is_err());
    assert!(reply_from_wire(answer((0..PIPELINE_OPS_MAX).map(|_| done()).collect())).is_ok());
    let too_large = reply_to_wire(NodeId(1), Ok(KvOutput::TooLarge { bytes: 2, max: 1 }));
    assert!(
        reply_from_wire(too_large).is_err(),
        "an append answers too_large only within a pipeline"
    );
}

#[test]
fn a_pipeline_is_counted_before_its_operations_are_decoded() {
    // Goal: a pipeline of more operations than accepted is refused for its count without
    // decoding them (each is only bytes until then), and the bytes form reads what the
    // nested-message form wrote. Method: raw wire bytes of 65 operations that would not
    // decode; a pipeline written as nested OpRequest messages by hand.
    let mut pipeline = Vec::new();
    for _ in 0..=PIPELINE_OPS_MAX {
        pipeline.extend([0x0a, 0x01, 0xff]); // field 1, length 1, an invalid byte
    }
    let mut raw = vec![0x62]; // field 12 (pipeline), length-delimited
    prost::encoding::encode_varint(pipeline.len() as u64, &mut raw);
    raw.extend(pipeline);
    let r = pb::OpRequest::decode(raw.as_slice()).expect("the operations stay bytes");
    let e = op_from_wire(r).expect_err("refused");
    assert!(e.contains("a pipeline of 65 operations"), "{e}");
    let get = pb::OpRequest {
        op: Some(pb::op_request::Op::Get(b"k".to_vec())),
        ..Default::default()
    }
    .encode_to_vec();
    let mut nested = Vec::new();
    for _ in 0..2 {
        nested.push(0x0a);
        prost::encoding::encode_varint(get.len() as u64, &mut nested);
        nested.extend(&get);
    }
    let mut raw = vec![0x62];
    prost::encoding::encode_varint(nested.len() as u64, &mut raw);
    raw.extend(nested);
    let r = pb::OpRequest::decode(raw.as_slice()).expect("decodes");
    let get = || KvQuery::Get { key: b"k".to_vec() };
    assert_eq!(
        op_from_wire(r),
        Ok(KvRequest::Read(KvQuery::Pipeline {
            queries: vec![get(), get()]
        }))
    );
}
