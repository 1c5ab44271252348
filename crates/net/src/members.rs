//! Membership change over the wire: the `ChangeMembership` call of the Kv service and the
//! member list of a status reply, converted to and from the crate's types without loss.

use crate::convert::{error_from_wire, error_to_wire};
use crate::pb;
use crate::status::MemberInfo;
use shardkv_rsm::Error;
use shardkv_types::{ConfChange, ConfChangeKind, Gid, LogIndex, NodeId};

/// A membership change that applied: its log index and the members once it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipDone {
    pub index: LogIndex,
    pub members: Vec<MemberInfo>,
}

pub fn member_to_wire(m: &MemberInfo) -> pb::MemberInfo {
    pb::MemberInfo {
        id: m.id.0,
        addr: m.addr.clone(),
        learner: m.learner,
        match_index: m.matched.map(|i| i.0),
    }
}

pub fn member_from_wire(m: pb::MemberInfo) -> MemberInfo {
    MemberInfo {
        id: NodeId(m.id),
        addr: m.addr,
        learner: m.learner,
        matched: m.match_index.map(LogIndex),
    }
}

/// A change of `group` (`None`: the server's default group) as the client sends it.
pub fn change_to_wire(group: Option<Gid>, cc: &ConfChange) -> pb::MembershipChange {
    let kind = match cc.kind {
        ConfChangeKind::AddLearner => pb::MemberChangeKind::AddLearner,
        ConfChangeKind::Promote => pb::MemberChangeKind::Promote,
        ConfChangeKind::Remove => pb::MemberChangeKind::Remove,
    };
    pb::MembershipChange {
        group: group.map(|g| g.0),
        kind: kind as i32,
        node: cc.node.0,
        addr: cc.addr.clone(),
    }
}

/// The group and change a request names, or why it is invalid (no kind, node 0, an added
/// member without an address).
pub fn change_from_wire(r: pb::MembershipChange) -> Result<(Option<Gid>, ConfChange), Error> {
    let invalid = |reason: String| Error::Invalid { reason };
    if r.node == 0 {
        return Err(invalid("node id 0 is reserved".into()));
    }
    let node = NodeId(r.node);
    let cc = match pb::MemberChangeKind::try_from(r.kind) {
        Ok(pb::MemberChangeKind::AddLearner) => {
            if r.addr.trim().is_empty() {
                return Err(invalid("adding a member needs its peer address".into()));
            }
            ConfChange::add_learner(node, r.addr.trim())
        }
        Ok(pb::MemberChangeKind::Promote) => ConfChange::promote(node),
        Ok(pb::MemberChangeKind::Remove) => ConfChange::remove(node),
        Ok(pb::MemberChangeKind::Unspecified) | Err(_) => {
            return Err(invalid(format!(
                "unknown membership change kind {}",
                r.kind
            )));
        }
    };
    Ok((r.group.map(Gid), cc))
}

pub fn membership_reply_to_wire(
    server: NodeId,
    reply: &Result<MembershipDone, Error>,
) -> pb::MembershipReply {
    let result = match reply {
        Ok(done) => pb::membership_reply::Result::Done(pb::MembershipDone {
            index: done.index.0,
            members: done.members.iter().map(member_to_wire).collect(),
        }),
        Err(e) => pb::membership_reply::Result::Error(error_to_wire(e)),
    };
    pb::MembershipReply {
        server: server.0,
        result: Some(result),
    }
}

/// The server that answered and its answer; `Err` for a reply that carries neither.
pub fn membership_reply_from_wire(
    r: pb::MembershipReply,
) -> Result<(NodeId, Result<MembershipDone, Error>), String> {
    let answer = match r.result {
        Some(pb::membership_reply::Result::Done(d)) => Ok(MembershipDone {
            index: LogIndex(d.index),
            members: d.members.into_iter().map(member_from_wire).collect(),
        }),
        Some(pb::membership_reply::Result::Error(e)) => Err(error_from_wire(e)?),
        None => return Err("a membership reply with no result".into()),
    };
    Ok((NodeId(r.server), answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_replies_round_trip_and_bad_requests_are_invalid() {
        for cc in [
            ConfChange::add_learner(NodeId(4), "127.0.0.1:7004"),
            ConfChange::promote(NodeId(4)),
            ConfChange::remove(NodeId(3)),
        ] {
            let back = change_from_wire(change_to_wire(Some(Gid(2)), &cc)).expect("valid");
            assert_eq!(back, (Some(Gid(2)), cc));
        }
        let bad = [
            pb::MembershipChange {
                kind: 1,
                node: 4,
                ..Default::default()
            },
            pb::MembershipChange {
                kind: 2,
                node: 0,
                ..Default::default()
            },
            pb::MembershipChange {
                kind: 9,
                node: 4,
                ..Default::default()
            },
        ];
        for r in bad {
            let e = change_from_wire(r.clone()).unwrap_err();
            assert!(matches!(e, Error::Invalid { .. }), "{r:?}: {e:?}");
        }
        let done = MembershipDone {
            index: LogIndex(12),
            members: vec![
                MemberInfo {
                    id: NodeId(1),
                    addr: "a:1".into(),
                    learner: false,
                    matched: Some(LogIndex(12)),
                },
                MemberInfo {
                    id: NodeId(4),
                    addr: String::new(),
                    learner: true,
                    matched: None,
                },
            ],
        };
        for reply in [
            Ok(done),
            Err(Error::NotLeader {
                leader: Some(NodeId(2)),
            }),
        ] {
            let wire = membership_reply_to_wire(NodeId(1), &reply);
            assert_eq!(
                membership_reply_from_wire(wire).expect("decodes"),
                (NodeId(1), reply)
            );
        }
        assert!(membership_reply_from_wire(pb::MembershipReply::default()).is_err());
    }
}
