//! Conversions between wire messages (`pb`) and the core's types. Decoding never panics: a
//! malformed reply is an `Err` naming what was wrong.

use crate::pb::{self, ctrl_reply::Result as PbCtrlResult, kv_reply::Result as PbResult};
use crate::{NodeStatus, ShardPhase, ShardsHeld, status};
use prost::Message as _;
use shardkv_ctrl::{Config, CtrlCommand, CtrlError, CtrlOutput, CtrlQuery, CtrlReply};
use shardkv_kv::{ByteBuf, KvCommand, KvOutput, KvQuery, KvRequest, PIPELINE_OPS_MAX, SetWhen};
use shardkv_raft::Message;
use shardkv_rsm::{Error, Request};
use shardkv_types::{
    ClientId, ConfigNum, Gid, LogIndex, NodeId, Seq, ShardId, Term, check_shard_count,
};
use std::collections::{BTreeMap, HashMap};

/// A client request in wire form: which RPC to call, with its message.
#[derive(Clone, Debug, PartialEq)]
pub enum WireRequest {
    Get(pb::GetRequest),
    Put(pb::PutRequest),
    Append(pb::AppendRequest),
    Delete(pb::DeleteRequest),
    Cas(pb::CasRequest),
    Op(pb::OpRequest),
}

/// The wire form of a request for KV group `group` (`Gid(0)`: the server's only KV group).
pub fn request_to_wire(group: Gid, req: KvRequest) -> WireRequest {
    let group = group.0;
    match req {
        Request::Read(KvQuery::Get { key }) => WireRequest::Get(pb::GetRequest { key, group }),
        Request::Read(q) => WireRequest::Op(pb::OpRequest {
            op: Some(query_op_to_wire(q)),
            group,
            ..Default::default()
        }),
        Request::Write {
            client,
            seq,
            retry,
            cmd,
        } => {
            let (client, seq) = (client.0, seq.0);
            match cmd {
                KvCommand::Put { key, value } => WireRequest::Put(pb::PutRequest {
                    client,
                    seq,
                    first_attempt: !retry,
                    key,
                    value,
                    group,
                }),
                KvCommand::Append { key, value } => WireRequest::Append(pb::AppendRequest {
                    client,
                    seq,
                    first_attempt: !retry,
                    key,
                    value,
                    group,
                }),
                KvCommand::Delete { key } => WireRequest::Delete(pb::DeleteRequest {
                    client,
                    seq,
                    first_attempt: !retry,
                    key,
                    group,
                }),
                KvCommand::Cas { key, expected, new } => WireRequest::Cas(pb::CasRequest {
                    client,
                    seq,
                    first_attempt: !retry,
                    key,
                    expected,
                    new,
                    group,
                }),
                cmd => WireRequest::Op(pb::OpRequest {
                    client,
                    seq,
                    first_attempt: !retry,
                    op: Some(command_op_to_wire(cmd)),
                    group,
                }),
            }
        }
    }
}

fn keys_to_wire(keys: Vec<ByteBuf>) -> pb::Keys {
    pb::Keys {
        keys: keys.into_iter().map(ByteBuf::into_vec).collect(),
    }
}

fn keys_from_wire(keys: pb::Keys) -> Vec<ByteBuf> {
    keys.keys.into_iter().map(ByteBuf::from).collect()
}

/// The wire form of a query (a Get only as a pipeline's operation: alone it travels as a
/// GetRequest).
fn query_op_to_wire(q: KvQuery) -> pb::op_request::Op {
    use pb::op_request::Op;
    match q {
        KvQuery::Get { key } => Op::Get(key),
        KvQuery::GetMany { keys } => Op::GetMany(keys_to_wire(keys)),
        KvQuery::Exists { keys } => Op::Exists(keys_to_wire(keys)),
        KvQuery::StrLen { key } => Op::StrLen(key),
        KvQuery::Pipeline { queries } => {
            pipeline_to_wire(queries.into_iter().map(query_op_to_wire))
        }
    }
}

/// A pipeline's operations, each an `OpRequest` holding only its `op`.
fn pipeline_to_wire(ops: impl Iterator<Item = pb::op_request::Op>) -> pb::op_request::Op {
    pb::op_request::Op::Pipeline(pb::Pipeline {
        ops: ops
            .map(|op| {
                pb::OpRequest {
                    op: Some(op),
                    ..Default::default()
                }
                .encode_to_vec()
            })
            .collect(),
    })
}

/// The wire form of a command (Put, Append, Delete and Cas only as a pipeline's
/// operations: alone each travels as its own request message).
fn command_op_to_wire(cmd: KvCommand) -> pb::op_request::Op {
    use pb::op_request::Op;
    match cmd {
        KvCommand::Set {
            key,
            value,
            when,
            get,
        } => Op::Set(pb::SetOp {
            key,
            value,
            when: match when {
                SetWhen::Always => pb::SetWhen::Always,
                SetWhen::Absent => pb::SetWhen::Absent,
                SetWhen::Present => pb::SetWhen::Present,
            } as i32,
            get,
        }),
        KvCommand::GetDel { key } => Op::GetDel(key),
        KvCommand::AppendLen { key, value } => Op::AppendLen(pb::KeyValue { key, value }),
        KvCommand::IncrBy { key, by } => Op::IncrBy(pb::IncrByOp { key, by }),
        KvCommand::DeleteMany { keys } => Op::DeleteMany(keys_to_wire(keys)),
        KvCommand::PutMany { pairs } => Op::PutMany(pb::Pairs {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| pb::KeyValue {
                    key: k.into_vec(),
                    value: v.into_vec(),
                })
                .collect(),
        }),
        KvCommand::Pipeline { cmds } => pipeline_to_wire(cmds.into_iter().map(command_op_to_wire)),
        KvCommand::Put { key, value } => Op::Put(pb::KeyValue { key, value }),
        KvCommand::Append { key, value } => Op::Append(pb::KeyValue { key, value }),
        KvCommand::Delete { key } => Op::Delete(key),
        KvCommand::Cas { key, expected, new } => Op::Cas(pb::CasOp { key, expected, new }),
    }
}

/// An operation from the wire: a read or a write.
enum WireOp {
    Read(KvQuery),
    Write(KvCommand),
}

/// The request an `OpRequest` carries; `Err` names what is malformed (an unknown or missing
/// operation, an unknown `SetWhen`, a pipeline of no or more than [`PIPELINE_OPS_MAX`]
/// operations, one within a pipeline, one mixing reads and writes).
pub fn op_from_wire(r: pb::OpRequest) -> Result<KvRequest, String> {
    let op = r.op.ok_or("an OpRequest without an operation")?;
    Ok(match wire_op(op, false)? {
        WireOp::Read(q) => Request::Read(q),
        WireOp::Write(cmd) => write(r.client, r.seq, !r.first_attempt, cmd),
    })
}

/// One operation from the wire; `in_pipeline` for a pipeline's operation (which may be one
/// of the operations with their own request message, and not a pipeline).
fn wire_op(op: pb::op_request::Op, in_pipeline: bool) -> Result<WireOp, String> {
    use pb::op_request::Op;
    let own_message = matches!(
        op,
        Op::Put(_) | Op::Append(_) | Op::Delete(_) | Op::Cas(_) | Op::Get(_)
    );
    if own_message && !in_pipeline {
        return Err(
            "an OpRequest carries a Put, Append, Delete, Cas or Get only within a pipeline".into(),
        );
    }
    let cmd = match op {
        Op::GetMany(keys) => {
            return Ok(WireOp::Read(KvQuery::GetMany {
                keys: keys_from_wire(keys),
            }));
        }
        Op::Exists(keys) => {
            return Ok(WireOp::Read(KvQuery::Exists {
                keys: keys_from_wire(keys),
            }));
        }
        Op::StrLen(key) => return Ok(WireOp::Read(KvQuery::StrLen { key })),
        Op::Get(key) => return Ok(WireOp::Read(KvQuery::Get { key })),
        Op::Pipeline(_) if in_pipeline => return Err("a pipeline within a pipeline".into()),
        Op::Pipeline(p) => return pipeline_from_wire(p),
        Op::Set(s) => KvCommand::Set {
            when: match pb::SetWhen::try_from(s.when) {
                Ok(pb::SetWhen::Always) => SetWhen::Always,
                Ok(pb::SetWhen::Absent) => SetWhen::Absent,
                Ok(pb::SetWhen::Present) => SetWhen::Present,
                Err(_) => return Err(format!("unknown SetWhen {}", s.when)),
            },
            key: s.key,
            value: s.value,
            get: s.get,
        },
        Op::GetDel(key) => KvCommand::GetDel { key },
        Op::AppendLen(kv) => KvCommand::AppendLen {
            key: kv.key,
            value: kv.value,
        },
        Op::IncrBy(i) => KvCommand::IncrBy {
            key: i.key,
            by: i.by,
        },
        Op::DeleteMany(keys) => KvCommand::DeleteMany {
            keys: keys_from_wire(keys),
        },
        Op::PutMany(p) => KvCommand::PutMany {
            pairs: p
                .pairs
                .into_iter()
                .map(|kv| (ByteBuf::from(kv.key), ByteBuf::from(kv.value)))
                .collect(),
        },
        Op::Put(kv) => KvCommand::Put {
            key: kv.key,
            value: kv.value,
        },
        Op::Append(kv) => KvCommand::Append {
            key: kv.key,
            value: kv.value,
        },
        Op::Delete(key) => KvCommand::Delete { key },
        Op::Cas(c) => KvCommand::Cas {
            key: c.key,
            expected: c.expected,
            new: c.new,
        },
    };
    Ok(WireOp::Write(cmd))
}

/// A pipeline from the wire: its count checked before any operation is decoded.
fn pipeline_from_wire(p: pb::Pipeline) -> Result<WireOp, String> {
    let n = p.ops.len();
    if n == 0 || n > PIPELINE_OPS_MAX {
        return Err(format!(
            "a pipeline of {n} operations; 1 to {PIPELINE_OPS_MAX} are accepted"
        ));
    }
    let (mut queries, mut cmds) = (Vec::new(), Vec::new());
    for bytes in p.ops {
        let r = pb::OpRequest::decode(bytes.as_slice())
            .map_err(|e| format!("a pipeline operation does not decode: {e}"))?;
        match wire_op(
            r.op.ok_or("a pipeline operation without an operation")?,
            true,
        )? {
            WireOp::Read(q) => queries.push(q),
            WireOp::Write(c) => cmds.push(c),
        }
    }
    match (queries.is_empty(), cmds.is_empty()) {
        (false, true) => Ok(WireOp::Read(KvQuery::Pipeline { queries })),
        (true, false) => Ok(WireOp::Write(KvCommand::Pipeline { cmds })),
        _ => Err("a pipeline mixing reads and writes".into()),
    }
}

pub fn get_from_wire(r: pb::GetRequest) -> KvRequest {
    Request::Read(KvQuery::Get { key: r.key })
}

fn write(client: u64, seq: u64, retry: bool, cmd: KvCommand) -> KvRequest {
    Request::Write {
        client: ClientId(client),
        seq: Seq(seq),
        retry,
        cmd,
    }
}

pub fn put_from_wire(r: pb::PutRequest) -> KvRequest {
    let cmd = KvCommand::Put {
        key: r.key,
        value: r.value,
    };
    write(r.client, r.seq, !r.first_attempt, cmd)
}

pub fn append_from_wire(r: pb::AppendRequest) -> KvRequest {
    let cmd = KvCommand::Append {
        key: r.key,
        value: r.value,
    };
    write(r.client, r.seq, !r.first_attempt, cmd)
}

pub fn delete_from_wire(r: pb::DeleteRequest) -> KvRequest {
    write(
        r.client,
        r.seq,
        !r.first_attempt,
        KvCommand::Delete { key: r.key },
    )
}

pub fn cas_from_wire(r: pb::CasRequest) -> KvRequest {
    let cmd = KvCommand::Cas {
        key: r.key,
        expected: r.expected,
        new: r.new,
    };
    write(r.client, r.seq, !r.first_attempt, cmd)
}

/// The wire form of a server's answer.
pub fn reply_to_wire(server: NodeId, reply: Result<KvOutput, Error>) -> pb::KvReply {
    let result = match reply {
        Ok(KvOutput::Value(value)) => PbResult::Value(pb::Value { value }),
        Ok(KvOutput::Done) => PbResult::Done(pb::Done { existed: None }),
        Ok(KvOutput::Deleted { existed }) => PbResult::Done(pb::Done {
            existed: Some(existed),
        }),
        Ok(KvOutput::Cas { swapped, current }) => PbResult::Cas(pb::CasResult { swapped, current }),
        Ok(KvOutput::Int(value)) => PbResult::Int(pb::Int { value }),
        Ok(KvOutput::Values(values)) => PbResult::Values(pb::Values {
            values: values
                .into_iter()
                .map(|v| pb::Value {
                    value: v.map(ByteBuf::into_vec),
                })
                .collect(),
        }),
        Ok(KvOutput::Set { applied, old }) => PbResult::Set(pb::SetResult { applied, old }),
        Ok(KvOutput::NotAnInteger) => PbResult::NotAnInteger(pb::NotAnInteger { overflow: false }),
        Ok(KvOutput::Overflow) => PbResult::NotAnInteger(pb::NotAnInteger { overflow: true }),
        Ok(KvOutput::TooLarge { bytes, max }) => {
            PbResult::TooLarge(pb::TooLargeResult { bytes, max })
        }
        Ok(KvOutput::Outputs(outs)) => PbResult::Outputs(pb::Outputs {
            replies: outs
                .into_iter()
                .map(|o| reply_to_wire(NodeId(0), Ok(o)))
                .collect(),
        }),
        // Only a session record holds it; answered as the error a retry gets.
        Ok(KvOutput::CasFailed { bytes }) => {
            PbResult::Error(error_to_wire(&Error::CasFailed { bytes }))
        }
        Err(e) => PbResult::Error(error_to_wire(&e)),
    };
    pb::KvReply {
        server: server.0,
        result: Some(result),
    }
}

pub(crate) fn error_to_wire(e: &Error) -> pb::Error {
    use pb::ErrorCode as C;
    let message = match e {
        Error::Unavailable { reason } | Error::Invalid { reason } => reason.clone(),
        Error::Timeout { detail } => detail.clone(),
        _ => e.to_string(),
    };
    let mut out = pb::Error {
        message,
        ..Default::default()
    };
    let code = match e {
        Error::NotLeader { leader } => {
            out.leader = leader.map_or(0, |l| l.0);
            C::NotLeader
        }
        Error::LostLeadership { leader } => {
            out.leader = leader.map_or(0, |l| l.0);
            C::LostLeadership
        }
        Error::WrongGroup { gid } => {
            out.group = gid.0;
            C::WrongGroup
        }
        Error::Busy => C::Busy,
        Error::TooLarge { bytes, max } => {
            (out.bytes, out.max) = (*bytes, *max);
            C::TooLarge
        }
        Error::Invalid { .. } => C::Invalid,
        Error::Stale => C::Stale,
        Error::SessionExpired => C::SessionExpired,
        Error::CasFailed { bytes } => {
            out.bytes = *bytes;
            C::CasFailed
        }
        Error::Timeout { .. } => C::Timeout,
        Error::NoSpace => C::NoSpace,
        Error::Unavailable { .. } => C::Unavailable,
    };
    out.code = code as i32;
    out
}

pub(crate) fn error_from_wire(e: pb::Error) -> Result<Error, String> {
    use pb::ErrorCode as C;
    let code = C::try_from(e.code).map_err(|_| format!("unknown error code {}", e.code))?;
    let leader = (e.leader != 0).then_some(NodeId(e.leader));
    Ok(match code {
        C::NotLeader => Error::NotLeader { leader },
        C::LostLeadership => Error::LostLeadership { leader },
        C::WrongGroup => Error::WrongGroup { gid: Gid(e.group) },
        C::Busy => Error::Busy,
        C::TooLarge => Error::TooLarge {
            bytes: e.bytes,
            max: e.max,
        },
        C::Invalid => Error::Invalid { reason: e.message },
        C::Stale => Error::Stale,
        C::SessionExpired => Error::SessionExpired,
        C::CasFailed => Error::CasFailed { bytes: e.bytes },
        C::Timeout => Error::Timeout { detail: e.message },
        C::NoSpace => Error::NoSpace,
        C::Unavailable => Error::Unavailable { reason: e.message },
        C::Unspecified => return Err("error without a code".to_string()),
    })
}

/// A server's answer from the wire: who answered, and what. `Err` for a malformed reply
/// (among them a pipeline's answer of more than [`PIPELINE_OPS_MAX`] outputs, or holding
/// an error or another pipeline's answer, and a `too_large` result outside one).
pub fn reply_from_wire(r: pb::KvReply) -> Result<(NodeId, Result<KvOutput, Error>), String> {
    let server = NodeId(r.server);
    let result = r.result.ok_or("reply without a result")?;
    let reply = match result {
        PbResult::Error(e) => Err(error_from_wire(e)?),
        PbResult::Outputs(o) => {
            if o.replies.len() > PIPELINE_OPS_MAX {
                return Err(format!(
                    "a pipeline's answer of {} outputs; at most {PIPELINE_OPS_MAX}",
                    o.replies.len()
                ));
            }
            let outs = o
                .replies
                .into_iter()
                .map(|r| match r.result {
                    Some(PbResult::Error(_) | PbResult::Outputs(_)) => {
                        Err("a pipeline's output that is an error or a pipeline's answer".into())
                    }
                    Some(result) => output_from_wire(result),
                    None => Err("a pipeline's output without a result".into()),
                })
                .collect::<Result<_, String>>()?;
            Ok(KvOutput::Outputs(outs))
        }
        PbResult::TooLarge(_) => {
            return Err("a too_large result outside a pipeline's answer".into());
        }
        result => Ok(output_from_wire(result)?),
    };
    Ok((server, reply))
}

/// An output from the wire, other than an error or a pipeline's answer.
fn output_from_wire(result: PbResult) -> Result<KvOutput, String> {
    Ok(match result {
        PbResult::Value(v) => KvOutput::Value(v.value),
        PbResult::Done(pb::Done { existed: None }) => KvOutput::Done,
        PbResult::Done(pb::Done {
            existed: Some(existed),
        }) => KvOutput::Deleted { existed },
        PbResult::Cas(c) => KvOutput::Cas {
            swapped: c.swapped,
            current: c.current,
        },
        PbResult::Int(i) => KvOutput::Int(i.value),
        PbResult::Values(v) => KvOutput::Values(
            v.values
                .into_iter()
                .map(|v| v.value.map(ByteBuf::from))
                .collect(),
        ),
        PbResult::Set(s) => KvOutput::Set {
            applied: s.applied,
            old: s.old,
        },
        PbResult::NotAnInteger(pb::NotAnInteger { overflow: false }) => KvOutput::NotAnInteger,
        PbResult::NotAnInteger(pb::NotAnInteger { overflow: true }) => KvOutput::Overflow,
        PbResult::TooLarge(t) => KvOutput::TooLarge {
            bytes: t.bytes,
            max: t.max,
        },
        PbResult::Error(_) | PbResult::Outputs(_) => {
            return Err("an error or a pipeline's answer where an output was expected".into());
        }
    })
}

/// The wire form of a shard group's answer on the Shard service: a postcard-encoded
/// `ShardOutput` (encoded by the caller) or the shared error.
pub fn shard_reply_to_wire(server: NodeId, reply: Result<Vec<u8>, Error>) -> pb::ShardCallReply {
    use pb::shard_call_reply::Result as R;
    let result = match reply {
        Ok(bytes) => R::Output(bytes),
        Err(e) => R::Error(error_to_wire(&e)),
    };
    pb::ShardCallReply {
        server: server.0,
        result: Some(result),
    }
}

/// A Shard service answer from the wire: who answered, and the encoded output or the
/// error. `Err` for a malformed reply.
pub fn shard_reply_from_wire(
    r: pb::ShardCallReply,
) -> Result<(NodeId, Result<Vec<u8>, Error>), String> {
    use pb::shard_call_reply::Result as R;
    let reply = match r.result.ok_or("reply without a result")? {
        R::Output(bytes) => Ok(bytes),
        R::Error(e) => Err(error_from_wire(e)?),
    };
    Ok((NodeId(r.server), reply))
}

/// A request to the shard controller.
pub type CtrlRequest = Request<CtrlCommand, CtrlQuery>;

/// A controller request in wire form: which Ctrl RPC to call, with its message.
#[derive(Clone, Debug, PartialEq)]
pub enum WireCtrlRequest {
    Join(pb::JoinRequest),
    Leave(pb::LeaveRequest),
    Move(pb::MoveRequest),
    Query(pb::QueryRequest),
    Servers(pb::ServersRequest),
}

/// The wire form of a controller request.
pub fn ctrl_request_to_wire(req: CtrlRequest) -> WireCtrlRequest {
    match req {
        Request::Read(CtrlQuery { num }) => WireCtrlRequest::Query(pb::QueryRequest {
            num: num.map(|n| n.0),
        }),
        Request::Write {
            client,
            seq,
            retry,
            cmd,
        } => {
            let (client, seq) = (client.0, seq.0);
            match cmd {
                CtrlCommand::Join { groups } => WireCtrlRequest::Join(pb::JoinRequest {
                    client,
                    seq,
                    first_attempt: !retry,
                    groups: groups_to_wire(&groups),
                }),
                CtrlCommand::Leave { gids } => WireCtrlRequest::Leave(pb::LeaveRequest {
                    client,
                    seq,
                    first_attempt: !retry,
                    gids: gids.iter().map(|g| g.0).collect(),
                }),
                CtrlCommand::Move { shard, gid } => WireCtrlRequest::Move(pb::MoveRequest {
                    client,
                    seq,
                    first_attempt: !retry,
                    shard: shard.0,
                    gid: gid.0,
                }),
                CtrlCommand::Servers { gid, servers } => {
                    WireCtrlRequest::Servers(pb::ServersRequest {
                        client,
                        seq,
                        first_attempt: !retry,
                        gid: gid.0,
                        servers,
                    })
                }
            }
        }
    }
}

fn ctrl_write(client: u64, seq: u64, retry: bool, cmd: CtrlCommand) -> CtrlRequest {
    Request::Write {
        client: ClientId(client),
        seq: Seq(seq),
        retry,
        cmd,
    }
}

pub fn join_from_wire(r: pb::JoinRequest) -> CtrlRequest {
    let groups = groups_from_wire(r.groups);
    ctrl_write(
        r.client,
        r.seq,
        !r.first_attempt,
        CtrlCommand::Join { groups },
    )
}

pub fn leave_from_wire(r: pb::LeaveRequest) -> CtrlRequest {
    let gids = r.gids.into_iter().map(Gid).collect();
    ctrl_write(
        r.client,
        r.seq,
        !r.first_attempt,
        CtrlCommand::Leave { gids },
    )
}

pub fn move_from_wire(r: pb::MoveRequest) -> CtrlRequest {
    let cmd = CtrlCommand::Move {
        shard: ShardId(r.shard),
        gid: Gid(r.gid),
    };
    ctrl_write(r.client, r.seq, !r.first_attempt, cmd)
}

pub fn servers_from_wire(r: pb::ServersRequest) -> CtrlRequest {
    let cmd = CtrlCommand::Servers {
        gid: Gid(r.gid),
        servers: r.servers,
    };
    ctrl_write(r.client, r.seq, !r.first_attempt, cmd)
}

pub fn query_from_wire(r: pb::QueryRequest) -> CtrlRequest {
    Request::Read(CtrlQuery {
        num: r.num.map(ConfigNum),
    })
}

fn groups_to_wire(groups: &BTreeMap<Gid, Vec<String>>) -> HashMap<u64, pb::Servers> {
    groups
        .iter()
        .map(|(gid, servers)| {
            let servers = servers.clone();
            (gid.0, pb::Servers { servers })
        })
        .collect()
}

fn groups_from_wire(groups: HashMap<u64, pb::Servers>) -> BTreeMap<Gid, Vec<String>> {
    groups
        .into_iter()
        .map(|(gid, s)| (Gid(gid), s.servers))
        .collect()
}

pub fn config_to_wire(c: &Config) -> pb::ShardConfig {
    pb::ShardConfig {
        num: c.num.0,
        shards: c.shards.iter().map(|g| g.0).collect(),
        groups: groups_to_wire(&c.groups),
    }
}

/// A config from the wire, checked: a valid shard count and [`Config::check`]'s invariants.
pub fn config_from_wire(c: pb::ShardConfig) -> Result<Config, String> {
    let count = u32::try_from(c.shards.len())
        .map_err(|_| format!("config with {} shards", c.shards.len()))?;
    check_shard_count(count).map_err(|e| format!("config c{}: {e}", c.num))?;
    let config = Config {
        num: ConfigNum(c.num),
        shards: c.shards.into_iter().map(Gid).collect(),
        groups: groups_from_wire(c.groups),
    };
    config.check()?;
    Ok(config)
}

/// The wire form of a controller's answer.
pub fn ctrl_reply_to_wire(server: NodeId, reply: Result<CtrlOutput, Error>) -> pb::CtrlReply {
    let result = match reply {
        Ok(Ok(CtrlReply::Applied { num })) => PbCtrlResult::Applied(pb::Applied { num: num.0 }),
        Ok(Ok(CtrlReply::Config(c))) => PbCtrlResult::Config(config_to_wire(&c)),
        Ok(Err(refused)) => PbCtrlResult::Refused(ctrl_error_to_wire(&refused)),
        Err(e) => PbCtrlResult::Error(error_to_wire(&e)),
    };
    pb::CtrlReply {
        server: server.0,
        result: Some(result),
    }
}

/// A controller's answer from the wire: who answered, and what. `Err` for a malformed reply
/// (no result, an unknown code, a config that breaks its invariants).
pub fn ctrl_reply_from_wire(
    r: pb::CtrlReply,
) -> Result<(NodeId, Result<CtrlOutput, Error>), String> {
    let server = NodeId(r.server);
    let reply = match r.result.ok_or("controller reply without a result")? {
        PbCtrlResult::Applied(a) => Ok(Ok(CtrlReply::Applied {
            num: ConfigNum(a.num),
        })),
        PbCtrlResult::Config(c) => Ok(Ok(CtrlReply::Config(config_from_wire(c)?))),
        PbCtrlResult::Refused(r) => Ok(Err(ctrl_error_from_wire(r)?)),
        PbCtrlResult::Error(e) => Err(error_from_wire(e)?),
    };
    Ok((server, reply))
}

fn ctrl_error_to_wire(e: &CtrlError) -> pb::Refused {
    use pb::CtrlErrorCode as C;
    let mut out = pb::Refused {
        message: e.to_string(),
        ..Default::default()
    };
    let code = match e {
        CtrlError::JoinEmpty => C::JoinEmpty,
        CtrlError::ReservedGid => C::ReservedGid,
        CtrlError::AlreadyMember(g) => {
            out.gid = g.0;
            C::AlreadyMember
        }
        CtrlError::NoServers(g) => {
            out.gid = g.0;
            C::NoServers
        }
        CtrlError::LeaveEmpty => C::LeaveEmpty,
        CtrlError::DuplicateGid(g) => {
            out.gid = g.0;
            C::DuplicateGid
        }
        CtrlError::NotMember(g) => {
            out.gid = g.0;
            C::NotMember
        }
        CtrlError::ShardOutOfRange { shard, shards } => {
            (out.shard, out.shards) = (shard.0, *shards);
            C::ShardOutOfRange
        }
    };
    out.code = code as i32;
    out
}

fn ctrl_error_from_wire(r: pb::Refused) -> Result<CtrlError, String> {
    use pb::CtrlErrorCode as C;
    let code =
        C::try_from(r.code).map_err(|_| format!("unknown controller refusal code {}", r.code))?;
    let gid = Gid(r.gid);
    Ok(match code {
        C::JoinEmpty => CtrlError::JoinEmpty,
        C::ReservedGid => CtrlError::ReservedGid,
        C::AlreadyMember => CtrlError::AlreadyMember(gid),
        C::NoServers => CtrlError::NoServers(gid),
        C::LeaveEmpty => CtrlError::LeaveEmpty,
        C::DuplicateGid => CtrlError::DuplicateGid(gid),
        C::NotMember => CtrlError::NotMember(gid),
        C::ShardOutOfRange => CtrlError::ShardOutOfRange {
            shard: ShardId(r.shard),
            shards: r.shards,
        },
        C::Unspecified => return Err("controller refusal without a code".to_string()),
    })
}

pub fn status_to_wire(s: &NodeStatus) -> pb::StatusReply {
    pb::StatusReply {
        id: s.id.0,
        role: status::role_name(s.role).to_string(),
        term: s.term.0,
        leader: s.leader.map_or(0, |l| l.0),
        commit: s.commit.0,
        applied: s.applied.0,
        last_index: s.last_index.0,
        snapshot_index: s.snapshot_index.0,
        raft_state_bytes: s.raft_state_bytes,
        no_space: s.no_space,
        group: s.group.0,
        sharded: s.shards.is_some(),
        config_num: s.shards.as_ref().map_or(0, |h| h.config.0),
        shards: s.shards.as_ref().map_or_else(Vec::new, |h| {
            h.shards
                .iter()
                .map(|&(shard, phase)| pb::ShardHeld {
                    shard: shard.0,
                    state: phase.name().to_string(),
                })
                .collect()
        }),
        members: s
            .members
            .iter()
            .map(crate::members::member_to_wire)
            .collect(),
        hosted_groups: s.hosted.iter().map(|g| g.0).collect(),
        redis_addr: s.redis_addr.clone().unwrap_or_default(),
        shard_keys: s.shards.as_ref().map_or(0, |h| h.keys),
    }
}

pub fn status_from_wire(s: pb::StatusReply) -> NodeStatus {
    NodeStatus {
        id: NodeId(s.id),
        role: status::role_from_name(&s.role),
        term: Term(s.term),
        leader: (s.leader != 0).then_some(NodeId(s.leader)),
        commit: LogIndex(s.commit),
        applied: LogIndex(s.applied),
        last_index: LogIndex(s.last_index),
        snapshot_index: LogIndex(s.snapshot_index),
        raft_state_bytes: s.raft_state_bytes,
        no_space: s.no_space,
        group: Gid(s.group),
        shards: s.sharded.then(|| ShardsHeld {
            config: ConfigNum(s.config_num),
            keys: s.shard_keys,
            shards: s
                .shards
                .iter()
                .filter_map(|h| Some((ShardId(h.shard), ShardPhase::from_name(&h.state)?)))
                .collect(),
        }),
        members: s
            .members
            .into_iter()
            .map(crate::members::member_from_wire)
            .collect(),
        hosted: s.hosted_groups.into_iter().map(Gid).collect(),
        redis_addr: (!s.redis_addr.is_empty()).then_some(s.redis_addr),
    }
}

/// Encodes one Raft message for a [`pb::RaftBatch`].
pub fn encode_message(m: &Message) -> Vec<u8> {
    postcard::to_allocvec(m).expect("encoding to memory cannot fail")
}

/// Decodes one Raft message from a [`pb::RaftBatch`].
pub fn decode_message(bytes: &[u8]) -> Result<Message, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_through_the_wire() {
        let cases = vec![
            Ok(KvOutput::Value(None)),
            Ok(KvOutput::Value(Some(vec![]))),
            Ok(KvOutput::Done),
            Ok(KvOutput::Deleted { existed: true }),
            Ok(KvOutput::Deleted { existed: false }),
            Ok(KvOutput::Cas {
                swapped: false,
                current: Some(b"x".to_vec()),
            }),
            Err(Error::NotLeader {
                leader: Some(NodeId(2)),
            }),
            Err(Error::NotLeader { leader: None }),
            Err(Error::LostLeadership {
                leader: Some(NodeId(1)),
            }),
            Err(Error::WrongGroup { gid: Gid(4) }),
            Err(Error::Busy),
            Err(Error::TooLarge { bytes: 9, max: 5 }),
            Err(Error::Invalid {
                reason: "bad".into(),
            }),
            Err(Error::Stale),
            Err(Error::Timeout {
                detail: "server deadline passed".into(),
            }),
            Err(Error::NoSpace),
            Err(Error::Unavailable {
                reason: "shutting down".into(),
            }),
        ];
        for c in cases {
            let wire = reply_to_wire(NodeId(3), c.clone());
            let (from, back) = reply_from_wire(wire).expect("decodes");
            assert_eq!(from, NodeId(3));
            assert_eq!(back, c);
        }
    }

    /// Every command and query added for the Redis front end, with edge values.
    fn redis_era_requests() -> Vec<KvRequest> {
        let bufs = |ks: &[&[u8]]| ks.iter().map(|k| ByteBuf::from(k.to_vec())).collect();
        let mut commands = Vec::new();
        for when in [SetWhen::Always, SetWhen::Absent, SetWhen::Present] {
            for get in [false, true] {
                commands.push(KvCommand::Set {
                    key: b"s".to_vec(),
                    value: Vec::new(),
                    when,
                    get,
                });
            }
        }
        commands.extend([
            KvCommand::GetDel { key: b"g".to_vec() },
            KvCommand::AppendLen {
                key: b"a".to_vec(),
                value: b"tail".to_vec(),
            },
            KvCommand::DeleteMany {
                keys: bufs(&[b"{t}a", b"{t}a", b""]),
            },
            KvCommand::PutMany {
                pairs: vec![
                    (ByteBuf::from(&b"{t}a"[..]), ByteBuf::new()),
                    (ByteBuf::from(&b"{t}a"[..]), ByteBuf::from(&b"2"[..])),
                ],
            },
        ]);
        for by in [-1, 0, i64::MAX, i64::MIN] {
            commands.push(KvCommand::IncrBy {
                key: b"n".to_vec(),
                by,
            });
        }
        let mut requests: Vec<KvRequest> = commands
            .into_iter()
            .enumerate()
            .map(|(i, cmd)| KvRequest::Write {
                client: ClientId(7),
                seq: Seq(i as u64 + 1),
                retry: i % 2 == 1,
                cmd,
            })
            .collect();
        requests.extend(
            [
                KvQuery::GetMany {
                    keys: bufs(&[b"a", b"b", b"a"]),
                },
                KvQuery::Exists {
                    keys: bufs(&[b"a"]),
                },
                KvQuery::StrLen { key: b"s".to_vec() },
            ]
            .map(Request::Read),
        );
        requests
    }

    /// Goal: every Redis-era command and query travels as an `OpRequest` and comes back
    /// unchanged, with its group, client, sequence number and retry flag.
    #[test]
    fn redis_era_requests_round_trip_through_the_wire() {
        for req in redis_era_requests() {
            let WireRequest::Op(wire) = request_to_wire(Gid(5), req.clone()) else {
                panic!("{req:?} travels as an OpRequest");
            };
            assert_eq!(wire.group, 5, "the group travels with the request");
            assert_eq!(op_from_wire(wire), Ok(req));
        }
    }

    /// Goal: every Redis-era answer survives the wire; a session record's `Unrecorded`
    /// is answered as the error its retry gets.
    #[test]
    fn redis_era_replies_round_trip_through_the_wire() {
        let cases = vec![
            Ok(KvOutput::Int(0)),
            Ok(KvOutput::Int(i64::MIN)),
            Ok(KvOutput::Int(i64::MAX)),
            Ok(KvOutput::Values(Vec::new())),
            Ok(KvOutput::Values(vec![
                Some(ByteBuf::from(&b"v"[..])),
                None,
                Some(ByteBuf::new()),
            ])),
            Ok(KvOutput::Set {
                applied: true,
                old: None,
            }),
            Ok(KvOutput::Set {
                applied: false,
                old: Some(Vec::new()),
            }),
            Ok(KvOutput::Set {
                applied: true,
                old: Some(b"old".to_vec()),
            }),
            Ok(KvOutput::NotAnInteger),
            Ok(KvOutput::Overflow),
            Err(Error::SessionExpired),
        ];
        for c in cases {
            let (from, back) =
                reply_from_wire(reply_to_wire(NodeId(3), c.clone())).expect("decodes");
            assert_eq!(from, NodeId(3));
            assert_eq!(back, c);
        }
    }

    /// Goal: a malformed `OpRequest` is refused with a reason, never a panic or a guess.
    #[test]
    fn an_op_request_without_an_op_or_with_an_unknown_set_when_is_refused() {
        let none = pb::OpRequest {
            client: 7,
            seq: 1,
            op: None,
            ..Default::default()
        };
        assert!(
            op_from_wire(none)
                .unwrap_err()
                .contains("without an operation")
        );
        let unknown_when = pb::OpRequest {
            client: 7,
            seq: 1,
            op: Some(pb::op_request::Op::Set(pb::SetOp {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                when: 7,
                get: false,
            })),
            ..Default::default()
        };
        assert!(
            op_from_wire(unknown_when)
                .unwrap_err()
                .contains("SetWhen 7")
        );
    }

    #[test]
    fn malformed_replies_and_messages_are_errors_not_panics() {
        let empty = pb::KvReply {
            server: 1,
            result: None,
        };
        assert!(reply_from_wire(empty).is_err());
        let bad_code = pb::KvReply {
            server: 1,
            result: Some(PbResult::Error(pb::Error {
                code: 99,
                ..Default::default()
            })),
        };
        assert!(reply_from_wire(bad_code).is_err());
        for garbage in [&[][..], &[0xff; 7][..], &[1, 2, 3, 200, 200, 200][..]] {
            assert!(decode_message(garbage).is_err());
        }
    }

    #[test]
    fn writes_keep_client_and_sequence_number() {
        let req = KvRequest::Write {
            client: ClientId(7),
            seq: Seq(9),
            retry: false,
            cmd: KvCommand::Cas {
                key: b"k".to_vec(),
                expected: None,
                new: b"v".to_vec(),
            },
        };
        let WireRequest::Cas(wire) = request_to_wire(Gid(3), req.clone()) else {
            panic!("a cas travels as Cas");
        };
        assert_eq!(wire.group, 3, "the group travels with the request");
        assert_eq!(cas_from_wire(wire), req);
    }

    #[test]
    fn a_write_that_does_not_say_it_is_a_first_attempt_may_be_a_retry() {
        let unset = pb::PutRequest {
            client: 7,
            seq: 9,
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        let Request::Write { retry, .. } = put_from_wire(unset) else {
            panic!("a put is a write");
        };
        assert!(
            retry,
            "an older or third-party client's resend is not applied twice"
        );
        let unset = pb::MoveRequest {
            client: 7,
            seq: 9,
            ..Default::default()
        };
        assert!(matches!(
            move_from_wire(unset),
            Request::Write { retry: true, .. }
        ));
        for retry in [false, true] {
            let req = KvRequest::Write {
                client: ClientId(7),
                seq: Seq(9),
                retry,
                cmd: KvCommand::Delete { key: b"k".to_vec() },
            };
            let WireRequest::Delete(wire) = request_to_wire(Gid(3), req.clone()) else {
                panic!("a delete travels as Delete");
            };
            assert_eq!(wire.first_attempt, !retry);
            assert_eq!(delete_from_wire(wire), req);
        }
    }

    fn sample_config() -> Config {
        Config {
            num: ConfigNum(3),
            shards: [1, 1, 2, 2].map(Gid).to_vec(),
            groups: [
                (Gid(1), vec!["a:1".to_string(), "b:1".to_string()]),
                (Gid(2), vec!["c:1".to_string()]),
            ]
            .into(),
        }
    }

    fn every_ctrl_error() -> Vec<CtrlError> {
        vec![
            CtrlError::JoinEmpty,
            CtrlError::ReservedGid,
            CtrlError::AlreadyMember(Gid(4)),
            CtrlError::NoServers(Gid(5)),
            CtrlError::LeaveEmpty,
            CtrlError::DuplicateGid(Gid(6)),
            CtrlError::NotMember(Gid(7)),
            CtrlError::ShardOutOfRange {
                shard: ShardId(99),
                shards: 64,
            },
        ]
    }

    /// Goal: every controller answer (applied, config, each refusal, each shared error)
    /// survives the wire unchanged, and a refusal carries its message.
    #[test]
    fn ctrl_replies_round_trip_through_the_wire() {
        let mut cases: Vec<Result<CtrlOutput, Error>> = vec![
            Ok(Ok(CtrlReply::Applied { num: ConfigNum(7) })),
            Ok(Ok(CtrlReply::Config(sample_config()))),
            Ok(Ok(CtrlReply::Config(Config::initial(16)))),
            Err(Error::NotLeader {
                leader: Some(NodeId(2)),
            }),
            Err(Error::LostLeadership { leader: None }),
            Err(Error::Timeout {
                detail: "deadline".into(),
            }),
            Err(Error::Unavailable {
                reason: "down".into(),
            }),
        ];
        cases.extend(every_ctrl_error().into_iter().map(|e| Ok(Err(e))));
        for c in cases {
            let wire = ctrl_reply_to_wire(NodeId(9), c.clone());
            if let Some(PbCtrlResult::Refused(r)) = &wire.result {
                let Ok(Err(e)) = &c else {
                    panic!("refused only for a CtrlError")
                };
                assert_eq!(r.message, e.to_string(), "a refusal carries its reason");
            }
            let (from, back) = ctrl_reply_from_wire(wire).expect("decodes");
            assert_eq!(from, NodeId(9));
            assert_eq!(back, c);
        }
    }

    /// Goal: every controller request keeps its command, client and sequence number.
    #[test]
    fn ctrl_requests_round_trip_through_the_wire() {
        let write = |cmd| CtrlRequest::Write {
            client: ClientId(7),
            seq: Seq(9),
            retry: false,
            cmd,
        };
        let cases = vec![
            write(CtrlCommand::Join {
                groups: sample_config().groups,
            }),
            write(CtrlCommand::Leave {
                gids: vec![Gid(2), Gid(1)],
            }),
            write(CtrlCommand::Servers {
                gid: Gid(2),
                servers: vec!["4=127.0.0.1:7004".into(), "1=127.0.0.1:7001".into()],
            }),
            write(CtrlCommand::Move {
                shard: ShardId(3),
                gid: Gid(1),
            }),
            CtrlRequest::Read(CtrlQuery { num: None }),
            CtrlRequest::Read(CtrlQuery {
                num: Some(ConfigNum(0)),
            }),
        ];
        for req in cases {
            let back = match ctrl_request_to_wire(req.clone()) {
                WireCtrlRequest::Join(r) => join_from_wire(r),
                WireCtrlRequest::Leave(r) => leave_from_wire(r),
                WireCtrlRequest::Move(r) => move_from_wire(r),
                WireCtrlRequest::Query(r) => query_from_wire(r),
                WireCtrlRequest::Servers(r) => servers_from_wire(r),
            };
            assert_eq!(back, req);
        }
    }

    /// Goal: a malformed controller reply is an `Err`, never a panic or a bad config.
    #[test]
    fn malformed_ctrl_replies_are_errors_not_panics() {
        let reply = |result| pb::CtrlReply { server: 1, result };
        let config = |shards: Vec<u64>, groups: &[u64]| {
            let groups = groups
                .iter()
                .map(|&g| {
                    (
                        g,
                        pb::Servers {
                            servers: vec!["a:1".into()],
                        },
                    )
                })
                .collect();
            Some(PbCtrlResult::Config(pb::ShardConfig {
                num: 1,
                shards,
                groups,
            }))
        };
        let refused = |code| {
            Some(PbCtrlResult::Refused(pb::Refused {
                code,
                ..Default::default()
            }))
        };
        let bad = [
            reply(None),
            reply(refused(0)),
            reply(refused(77)),
            reply(Some(PbCtrlResult::Error(pb::Error::default()))),
            // No shards; a shard count that is not a power of two; a shard owned by a
            // non-member; a group named 0; unassigned shards while groups exist.
            reply(config(vec![], &[])),
            reply(config(vec![1, 1, 1], &[1])),
            reply(config(vec![1, 2], &[1])),
            reply(config(vec![0, 0], &[0])),
            reply(config(vec![0, 1], &[1])),
        ];
        for r in bad {
            let shown = format!("{r:?}");
            assert!(ctrl_reply_from_wire(r).is_err(), "accepted {shown}");
        }
    }

    #[test]
    fn shard_replies_and_statuses_round_trip_through_the_wire() {
        // Goal: what shard groups tell each other and the status page loses nothing.
        for c in [
            Ok(vec![1, 2, 3]),
            Ok(vec![]),
            Err(Error::WrongGroup { gid: Gid(7) }),
        ] {
            let (from, back) =
                shard_reply_from_wire(shard_reply_to_wire(NodeId(2), c.clone())).expect("decodes");
            assert_eq!((from, back), (NodeId(2), c));
        }
        assert!(shard_reply_from_wire(pb::ShardCallReply::default()).is_err());
        let mut s = NodeStatus {
            id: NodeId(1),
            role: shardkv_raft::Role::Leader,
            term: Term(3),
            leader: Some(NodeId(1)),
            commit: LogIndex(9),
            applied: LogIndex(8),
            last_index: LogIndex(9),
            snapshot_index: LogIndex(2),
            raft_state_bytes: 100,
            no_space: false,
            group: Gid(2),
            shards: Some(ShardsHeld {
                config: ConfigNum(4),
                keys: 12,
                shards: vec![
                    (ShardId(0), ShardPhase::Serving),
                    (ShardId(5), ShardPhase::Pulling),
                    (ShardId(9), ShardPhase::BePulled),
                ],
            }),
            members: vec![crate::MemberInfo {
                id: NodeId(4),
                addr: "h:4".into(),
                learner: true,
                matched: Some(LogIndex(7)),
            }],
            hosted: vec![Gid(0), Gid(2)],
            redis_addr: Some("h:9001".into()),
        };
        assert_eq!(status_from_wire(status_to_wire(&s)), s);
        s.shards = None;
        s.redis_addr = None;
        assert_eq!(
            status_from_wire(status_to_wire(&s)),
            s,
            "not a shard group, no RESP"
        );
    }
}
