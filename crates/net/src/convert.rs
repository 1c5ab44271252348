//! Conversions between wire messages (`pb`) and the core's types. Decoding never panics: a
//! malformed reply is an `Err` naming what was wrong.

use crate::pb::{self, kv_reply::Result as PbResult};
use crate::{NodeStatus, status};
use shardkv_kv::{KvCommand, KvOutput, KvQuery, KvRequest};
use shardkv_raft::Message;
use shardkv_rsm::{Error, Request};
use shardkv_types::{ClientId, Gid, LogIndex, NodeId, Seq, Term};

/// A client request in wire form: which RPC to call, with its message.
#[derive(Clone, Debug, PartialEq)]
pub enum WireRequest {
    Get(pb::GetRequest),
    Put(pb::PutRequest),
    Append(pb::AppendRequest),
    Delete(pb::DeleteRequest),
    Cas(pb::CasRequest),
}

/// The wire form of a request.
pub fn request_to_wire(req: KvRequest) -> WireRequest {
    match req {
        Request::Read(KvQuery::Get { key }) => WireRequest::Get(pb::GetRequest { key }),
        Request::Write { client, seq, cmd } => {
            let (client, seq) = (client.0, seq.0);
            match cmd {
                KvCommand::Put { key, value } => WireRequest::Put(pb::PutRequest {
                    client,
                    seq,
                    key,
                    value,
                }),
                KvCommand::Append { key, value } => WireRequest::Append(pb::AppendRequest {
                    client,
                    seq,
                    key,
                    value,
                }),
                KvCommand::Delete { key } => {
                    WireRequest::Delete(pb::DeleteRequest { client, seq, key })
                }
                KvCommand::Cas { key, expected, new } => WireRequest::Cas(pb::CasRequest {
                    client,
                    seq,
                    key,
                    expected,
                    new,
                }),
            }
        }
    }
}

pub fn get_from_wire(r: pb::GetRequest) -> KvRequest {
    Request::Read(KvQuery::Get { key: r.key })
}

fn write(client: u64, seq: u64, cmd: KvCommand) -> KvRequest {
    Request::Write {
        client: ClientId(client),
        seq: Seq(seq),
        cmd,
    }
}

pub fn put_from_wire(r: pb::PutRequest) -> KvRequest {
    let cmd = KvCommand::Put {
        key: r.key,
        value: r.value,
    };
    write(r.client, r.seq, cmd)
}

pub fn append_from_wire(r: pb::AppendRequest) -> KvRequest {
    let cmd = KvCommand::Append {
        key: r.key,
        value: r.value,
    };
    write(r.client, r.seq, cmd)
}

pub fn delete_from_wire(r: pb::DeleteRequest) -> KvRequest {
    write(r.client, r.seq, KvCommand::Delete { key: r.key })
}

pub fn cas_from_wire(r: pb::CasRequest) -> KvRequest {
    let cmd = KvCommand::Cas {
        key: r.key,
        expected: r.expected,
        new: r.new,
    };
    write(r.client, r.seq, cmd)
}

/// The wire form of a server's answer.
pub fn reply_to_wire(server: NodeId, reply: Result<KvOutput, Error>) -> pb::KvReply {
    let result = match reply {
        Ok(KvOutput::Value(value)) => PbResult::Value(pb::Value { value }),
        Ok(KvOutput::Done) => PbResult::Done(pb::Done {}),
        Ok(KvOutput::Cas { swapped, current }) => PbResult::Cas(pb::CasResult { swapped, current }),
        Err(e) => PbResult::Error(error_to_wire(&e)),
    };
    pb::KvReply {
        server: server.0,
        result: Some(result),
    }
}

fn error_to_wire(e: &Error) -> pb::Error {
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
        Error::Timeout { .. } => C::Timeout,
        Error::NoSpace => C::NoSpace,
        Error::Unavailable { .. } => C::Unavailable,
    };
    out.code = code as i32;
    out
}

fn error_from_wire(e: pb::Error) -> Result<Error, String> {
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
        C::Timeout => Error::Timeout { detail: e.message },
        C::NoSpace => Error::NoSpace,
        C::Unavailable => Error::Unavailable { reason: e.message },
        C::Unspecified => return Err("error without a code".to_string()),
    })
}

/// A server's answer from the wire: who answered, and what. `Err` for a malformed reply.
pub fn reply_from_wire(r: pb::KvReply) -> Result<(NodeId, Result<KvOutput, Error>), String> {
    let server = NodeId(r.server);
    let reply = match r.result.ok_or("reply without a result")? {
        PbResult::Value(v) => Ok(KvOutput::Value(v.value)),
        PbResult::Done(_) => Ok(KvOutput::Done),
        PbResult::Cas(c) => Ok(KvOutput::Cas {
            swapped: c.swapped,
            current: c.current,
        }),
        PbResult::Error(e) => Err(error_from_wire(e)?),
    };
    Ok((server, reply))
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
            cmd: KvCommand::Cas {
                key: b"k".to_vec(),
                expected: None,
                new: b"v".to_vec(),
            },
        };
        let WireRequest::Cas(wire) = request_to_wire(req.clone()) else {
            panic!("a cas travels as Cas");
        };
        assert_eq!(cas_from_wire(wire), req);
    }
}
