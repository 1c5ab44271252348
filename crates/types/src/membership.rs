//! The members of one Raft group and the single-server changes to them (Raft thesis ch. 4).
//!
//! A [`Membership`] is a set of voters and a set of learners (members that receive the log
//! but never vote). It is `Copy` with a fixed capacity of [`MEMBERS_MAX`] so that it can ride
//! in [`crate::SnapshotMeta`] by value. A [`ConfChange`] adds one learner, promotes one
//! learner to voter, or removes one member: one server at a time, so any majority of the old
//! voters and any majority of the new voters overlap.

use crate::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The most members (voters and learners together) one group may have.
pub const MEMBERS_MAX: usize = 16;

/// The longest peer address a [`ConfChange`] may carry.
pub const ADDR_BYTES_MAX: usize = 256;

/// Why a membership or a change of it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfError {
    /// Adding a node that is already a voter or a learner.
    AlreadyMember(NodeId),
    /// Promoting or removing a node that is not a member.
    NotAMember(NodeId),
    /// Promoting a node that is already a voter.
    NotALearner(NodeId),
    /// Removing the only voter: the group could never commit again.
    LastVoter(NodeId),
    /// The group would have more than [`MEMBERS_MAX`] members.
    TooManyMembers { max: usize },
    /// A node listed twice.
    Duplicate(NodeId),
    /// Node id 0 is reserved.
    ReservedId,
    /// An encoded change or membership that does not decode.
    Malformed,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfError::AlreadyMember(n) => write!(f, "{n} is already a member"),
            ConfError::NotAMember(n) => write!(f, "{n} is not a member"),
            ConfError::NotALearner(n) => write!(f, "{n} is not a learner (already a voter?)"),
            ConfError::LastVoter(n) => write!(f, "{n} is the last voter and cannot be removed"),
            ConfError::TooManyMembers { max } => write!(f, "a group has at most {max} members"),
            ConfError::Duplicate(n) => write!(f, "{n} is listed twice"),
            ConfError::ReservedId => write!(f, "node id 0 is reserved"),
            ConfError::Malformed => write!(f, "malformed membership change"),
        }
    }
}

impl std::error::Error for ConfError {}

/// The voters and learners of a group. The empty membership means "unknown" (a snapshot
/// written before membership changes existed); a group always has at least one voter.
///
/// Invariant: `ids[..len]` sorted, distinct and non-zero, `ids[len..]` zero; bit `i` of
/// `learners` set only for `i < len`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "MembershipWire", try_from = "MembershipWire")]
pub struct Membership {
    len: u8,
    ids: [NodeId; MEMBERS_MAX],
    learners: u16,
}

/// How a membership is serialized: two lists, validated on the way in.
#[derive(Serialize, Deserialize)]
struct MembershipWire {
    voters: Vec<NodeId>,
    learners: Vec<NodeId>,
}

impl From<Membership> for MembershipWire {
    fn from(m: Membership) -> Self {
        MembershipWire {
            voters: m.voters().collect(),
            learners: m.learners().collect(),
        }
    }
}

impl TryFrom<MembershipWire> for Membership {
    type Error = ConfError;
    fn try_from(w: MembershipWire) -> Result<Self, ConfError> {
        Membership::new(&w.voters, &w.learners)
    }
}

impl Membership {
    /// The membership with these voters and learners.
    pub fn new(voters: &[NodeId], learners: &[NodeId]) -> Result<Membership, ConfError> {
        if voters.len() + learners.len() > MEMBERS_MAX {
            return Err(ConfError::TooManyMembers { max: MEMBERS_MAX });
        }
        let mut all: Vec<(NodeId, bool)> = voters.iter().map(|&v| (v, false)).collect();
        all.extend(learners.iter().map(|&l| (l, true)));
        all.sort();
        let mut m = Membership::default();
        for (i, &(id, learner)) in all.iter().enumerate() {
            if id.0 == 0 {
                return Err(ConfError::ReservedId);
            }
            if i > 0 && all[i - 1].0 == id {
                return Err(ConfError::Duplicate(id));
            }
            m.ids[i] = id;
            if learner {
                m.learners |= 1 << i;
            }
        }
        m.len = all.len() as u8;
        Ok(m)
    }

    fn slot(&self, id: NodeId) -> Option<usize> {
        self.ids[..self.len as usize].iter().position(|&x| x == id)
    }

    fn is_learner_slot(&self, i: usize) -> bool {
        self.learners & (1 << i) != 0
    }

    /// Every member, voters and learners, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.ids[..self.len as usize].iter().copied()
    }

    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members()
            .enumerate()
            .filter(|&(i, _)| !self.is_learner_slot(i))
            .map(|(_, id)| id)
    }

    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members()
            .enumerate()
            .filter(|&(i, _)| self.is_learner_slot(i))
            .map(|(_, id)| id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.slot(id).is_some()
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.slot(id).is_some_and(|i| !self.is_learner_slot(i))
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.slot(id).is_some_and(|i| self.is_learner_slot(i))
    }

    /// True for the "unknown" membership of an old snapshot.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// The number of voters that makes a majority.
    pub fn quorum(&self) -> usize {
        self.voter_count() / 2 + 1
    }

    /// The membership after `cc`, or why `cc` does not apply to this one.
    pub fn apply(&self, cc: &ConfChange) -> Result<Membership, ConfError> {
        let n = cc.node;
        let mut voters: Vec<NodeId> = self.voters().collect();
        let mut learners: Vec<NodeId> = self.learners().collect();
        match cc.kind {
            ConfChangeKind::AddLearner => {
                if self.contains(n) {
                    return Err(ConfError::AlreadyMember(n));
                }
                learners.push(n);
            }
            ConfChangeKind::Promote => {
                if !self.contains(n) {
                    return Err(ConfError::NotAMember(n));
                }
                if !self.is_learner(n) {
                    return Err(ConfError::NotALearner(n));
                }
                learners.retain(|&l| l != n);
                voters.push(n);
            }
            ConfChangeKind::Remove => {
                if !self.contains(n) {
                    return Err(ConfError::NotAMember(n));
                }
                if self.is_voter(n) && voters.len() == 1 {
                    return Err(ConfError::LastVoter(n));
                }
                voters.retain(|&v| v != n);
                learners.retain(|&l| l != n);
            }
        }
        Membership::new(&voters, &learners)
    }

    /// A compact, self-delimiting encoding: voter count, voter ids, learner count, learner
    /// ids (counts one byte, ids u64 little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 8 * self.len as usize);
        for list in [
            self.voters().collect::<Vec<_>>(),
            self.learners().collect::<Vec<_>>(),
        ] {
            out.push(list.len() as u8);
            for id in list {
                out.extend_from_slice(&id.0.to_le_bytes());
            }
        }
        out
    }

    /// Decodes [`Membership::to_bytes`]; returns the membership and the bytes it used.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Membership, usize), ConfError> {
        let mut at = 0;
        let mut lists: [Vec<NodeId>; 2] = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let count = *bytes.get(at).ok_or(ConfError::Malformed)? as usize;
            at += 1;
            if count > MEMBERS_MAX {
                return Err(ConfError::Malformed);
            }
            for _ in 0..count {
                let raw = bytes.get(at..at + 8).ok_or(ConfError::Malformed)?;
                list.push(NodeId(u64::from_le_bytes(raw.try_into().expect("8 bytes"))));
                at += 8;
            }
        }
        Ok((Membership::new(&lists[0], &lists[1])?, at))
    }
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let voters: Vec<u64> = self.voters().map(|n| n.0).collect();
        let learners: Vec<u64> = self.learners().map(|n| n.0).collect();
        write!(f, "voters {voters:?} learners {learners:?}")
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a [`ConfChange`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChangeKind {
    /// Add a new member as a learner: it receives the log but does not vote.
    AddLearner,
    /// Make a learner a voter.
    Promote,
    /// Remove a voter or a learner (a leader may remove itself).
    Remove,
}

/// One single-server membership change, carried by an `EntryKind::ConfChange` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfChange {
    pub kind: ConfChangeKind,
    pub node: NodeId,
    /// The peer address of an added node (empty when not known or not needed), so that
    /// every member's transport learns where to reach it.
    pub addr: String,
}

impl ConfChange {
    pub fn add_learner(node: NodeId, addr: impl Into<String>) -> ConfChange {
        ConfChange {
            kind: ConfChangeKind::AddLearner,
            node,
            addr: addr.into(),
        }
    }

    pub fn promote(node: NodeId) -> ConfChange {
        ConfChange {
            kind: ConfChangeKind::Promote,
            node,
            addr: String::new(),
        }
    }

    pub fn remove(node: NodeId) -> ConfChange {
        ConfChange {
            kind: ConfChangeKind::Remove,
            node,
            addr: String::new(),
        }
    }

    /// The change's encoding: kind byte (1 add learner, 2 promote, 3 remove), node id u64
    /// little-endian, address length u16 little-endian, the address in UTF-8.
    pub fn encode(&self) -> Vec<u8> {
        let kind = match self.kind {
            ConfChangeKind::AddLearner => 1u8,
            ConfChangeKind::Promote => 2,
            ConfChangeKind::Remove => 3,
        };
        let mut out = Vec::with_capacity(11 + self.addr.len());
        out.push(kind);
        out.extend_from_slice(&self.node.0.to_le_bytes());
        out.extend_from_slice(&(self.addr.len() as u16).to_le_bytes());
        out.extend_from_slice(self.addr.as_bytes());
        out
    }

    /// Decodes [`ConfChange::encode`]; returns the change and the bytes it used. Refuses
    /// unknown kinds, id 0, addresses longer than [`ADDR_BYTES_MAX`] or not UTF-8.
    pub fn decode(bytes: &[u8]) -> Result<(ConfChange, usize), ConfError> {
        if bytes.len() < 11 {
            return Err(ConfError::Malformed);
        }
        let kind = match bytes[0] {
            1 => ConfChangeKind::AddLearner,
            2 => ConfChangeKind::Promote,
            3 => ConfChangeKind::Remove,
            _ => return Err(ConfError::Malformed),
        };
        let node = NodeId(u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes")));
        if node.0 == 0 {
            return Err(ConfError::ReservedId);
        }
        let len = u16::from_le_bytes([bytes[9], bytes[10]]) as usize;
        if len > ADDR_BYTES_MAX || bytes.len() < 11 + len {
            return Err(ConfError::Malformed);
        }
        let addr = std::str::from_utf8(&bytes[11..11 + len])
            .map_err(|_| ConfError::Malformed)?
            .to_string();
        Ok((ConfChange { kind, node, addr }, 11 + len))
    }
}

/// The payload of an `EntryKind::ConfChange` entry: the change and the whole membership it
/// leads to. Carrying the result, not only the delta, makes every node's reading of the
/// entry independent of what it believed before: a member that joined with a guess of the
/// membership (it cannot know the group's first one) is exact after any change entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfEntry {
    pub change: ConfChange,
    /// The membership once the change is in the log.
    pub next: Membership,
}

impl ConfEntry {
    /// [`ConfChange::encode`] followed by [`Membership::to_bytes`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.change.encode();
        out.extend_from_slice(&self.next.to_bytes());
        out
    }

    /// Decodes [`ConfEntry::encode`]: no trailing bytes, a valid membership with a voter.
    pub fn decode(bytes: &[u8]) -> Result<ConfEntry, ConfError> {
        let (change, used) = ConfChange::decode(bytes)?;
        let (next, more) = Membership::from_bytes(&bytes[used..])?;
        if used + more != bytes.len() || next.voter_count() == 0 {
            return Err(ConfError::Malformed);
        }
        Ok(ConfEntry { change, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn single_server_changes_apply_in_order() {
        let m = Membership::new(&ids(&[1, 2, 3]), &[]).unwrap();
        assert_eq!(m.quorum(), 2);
        let m = m.apply(&ConfChange::add_learner(NodeId(4), "x:1")).unwrap();
        assert!(m.is_learner(NodeId(4)) && !m.is_voter(NodeId(4)));
        assert_eq!(m.quorum(), 2, "a learner does not count");
        let m = m.apply(&ConfChange::promote(NodeId(4))).unwrap();
        assert!(m.is_voter(NodeId(4)));
        assert_eq!(m.quorum(), 3);
        let m = m.apply(&ConfChange::remove(NodeId(1))).unwrap();
        assert_eq!(m.voters().collect::<Vec<_>>(), ids(&[2, 3, 4]));
    }

    #[test]
    fn invalid_changes_are_refused() {
        let m = Membership::new(&ids(&[1]), &ids(&[2])).unwrap();
        let refuse = |cc: ConfChange| m.apply(&cc).unwrap_err();
        assert_eq!(
            refuse(ConfChange::add_learner(NodeId(2), "")),
            ConfError::AlreadyMember(NodeId(2))
        );
        assert_eq!(
            refuse(ConfChange::promote(NodeId(1))),
            ConfError::NotALearner(NodeId(1))
        );
        assert_eq!(
            refuse(ConfChange::promote(NodeId(9))),
            ConfError::NotAMember(NodeId(9))
        );
        assert_eq!(
            refuse(ConfChange::remove(NodeId(1))),
            ConfError::LastVoter(NodeId(1))
        );
        assert_eq!(
            Membership::new(&ids(&[1, 1]), &[]).unwrap_err(),
            ConfError::Duplicate(NodeId(1))
        );
        let many: Vec<NodeId> = (1..=MEMBERS_MAX as u64 + 1).map(NodeId).collect();
        assert!(matches!(
            Membership::new(&many, &[]),
            Err(ConfError::TooManyMembers { .. })
        ));
    }

    #[test]
    fn encodings_round_trip_and_refuse_garbage() {
        let m = Membership::new(&ids(&[3, 1]), &ids(&[7])).unwrap();
        let bytes = m.to_bytes();
        assert_eq!(Membership::from_bytes(&bytes), Ok((m, bytes.len())));
        assert!(Membership::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let cc = ConfChange::add_learner(NodeId(9), "127.0.0.1:7000");
        let entry = ConfEntry {
            next: m.apply(&cc).unwrap(),
            change: cc,
        };
        assert_eq!(ConfEntry::decode(&entry.encode()), Ok(entry.clone()));
        let mut long = entry.encode();
        long.push(0);
        assert_eq!(ConfEntry::decode(&long), Err(ConfError::Malformed));
        assert_eq!(ConfChange::decode(&[9; 11]), Err(ConfError::Malformed));
        assert_eq!(ConfChange::decode(&[1]), Err(ConfError::Malformed));
        let mut zero = ConfChange::remove(NodeId(1)).encode();
        zero[1] = 0;
        assert_eq!(ConfChange::decode(&zero), Err(ConfError::ReservedId));
    }
}
