//! The view builder: from what a server process learned about its cluster (the
//! controller's shard map, each process's RESP address, each group's leader) to the
//! [`ClusterView`] its Redis clients see. Pure, so the rules are tested here and the server
//! only gathers the facts.
//!
//! Rules: every server process whose RESP address is known is a node (ids from
//! [`node_id`], stable across restarts); a shard's slots are mastered by the node hosting
//! the leader of the group that serves the shard; a shard that is unassigned, whose group
//! has no known leader, or whose leader's process has no known RESP address has no master
//! (its keys are answered `CLUSTERDOWN`, and Redis clients look again).

use crate::cluster::{ClusterView, Node, node_id};
use shardkv_types::{Gid, NodeId};
use std::collections::BTreeMap;

/// What a process learned about its cluster at one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Survey {
    pub cluster_id: u64,
    /// The member id of the process that builds the view.
    pub me: NodeId,
    /// Every server process of the cluster by member id, with the RESP address (host, port)
    /// it advertises; `None` while unknown (down, unreachable, or serving no RESP port).
    pub processes: BTreeMap<NodeId, Option<(String, u16)>>,
    /// The group serving each shard, in shard order (`None`: unassigned). Its length is the
    /// shard count (1 for a process of one unsharded group).
    pub owners: Vec<Option<Gid>>,
    /// The member hosting each group's leader, where known.
    pub leaders: BTreeMap<Gid, NodeId>,
    /// The controller's config number (Redis's config epoch).
    pub epoch: u64,
}

/// One member's report of its group's leadership: its term and the leader it knows of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderClaim {
    pub term: u64,
    pub leader: Option<NodeId>,
}

/// The leader named in the highest term among `claims` (Raft has at most one leader per
/// term, so reports of older terms are outdated); `None` when no report names one.
pub fn latest_leader(claims: impl IntoIterator<Item = LeaderClaim>) -> Option<NodeId> {
    claims
        .into_iter()
        .filter_map(|c| Some((c.term, c.leader?)))
        .max_by_key(|&(term, _)| term)
        .map(|(_, leader)| leader)
}

impl Survey {
    /// The view Redis clients of process `me` see.
    ///
    /// # Panics
    /// If `owners.len()` is not a valid shard count.
    pub fn view(&self) -> ClusterView {
        let mut index = BTreeMap::new();
        let mut nodes = Vec::new();
        for (&id, addr) in &self.processes {
            let Some((host, port)) = addr else { continue };
            index.insert(id, nodes.len());
            nodes.push(Node {
                id: node_id(self.cluster_id, id.0),
                host: host.clone(),
                port: *port,
                myself: id == self.me,
            });
        }
        let masters: Vec<Option<usize>> = self
            .owners
            .iter()
            .map(|owner| {
                let leader = self.leaders.get(&(*owner)?)?;
                index.get(leader).copied()
            })
            .collect();
        ClusterView::new(nodes, &masters, self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;

    fn survey() -> Survey {
        let addr = |p: u16| Some(("127.0.0.1".to_string(), p));
        Survey {
            cluster_id: 9,
            me: NodeId(1),
            processes: [
                (NodeId(1), addr(9001)),
                (NodeId(2), addr(9002)),
                (NodeId(3), addr(9003)),
            ]
            .into(),
            owners: vec![Some(Gid(1)), Some(Gid(1)), Some(Gid(2)), Some(Gid(2))],
            leaders: [(Gid(1), NodeId(2)), (Gid(2), NodeId(3))].into(),
            epoch: 5,
        }
    }

    #[test]
    fn slots_are_mastered_by_the_process_hosting_their_groups_leader() {
        // Goal: `up`'s shape (3 processes, 2 groups led by 2 of them) maps to 2 masters.
        let v = survey().view();
        assert_eq!(v.nodes().len(), 3);
        assert!(v.nodes()[0].myself && !v.nodes()[1].myself);
        assert_eq!(v.nodes()[1].id, node_id(9, 2));
        assert_eq!(v.master_of(0).map(|n| n.port), Some(9002));
        assert_eq!(v.master_of(8191).map(|n| n.port), Some(9002));
        assert_eq!(v.master_of(8192).map(|n| n.port), Some(9003));
        assert_eq!(v.ranges().len(), 2);
        assert_eq!(
            v.redirect(100),
            Some(Reply::Error("MOVED 100 127.0.0.1:9002".into()))
        );
        assert!(v.info_text().contains("cluster_size:2\r\n"));
        assert!(v.info_text().contains("cluster_current_epoch:5\r\n"));
    }

    #[test]
    fn unknown_leaders_addresses_and_owners_leave_slots_unserved() {
        // Goal: a slot is never handed to a guessed master; method: remove one fact each.
        let mut s = survey();
        s.leaders.remove(&Gid(2));
        assert!(s.view().master_of(16383).is_none());
        let mut s = survey();
        s.processes.insert(NodeId(3), None);
        let v = s.view();
        assert_eq!(v.nodes().len(), 2);
        assert!(v.master_of(16383).is_none());
        assert_eq!(
            v.redirect(16383),
            Some(Reply::Error("CLUSTERDOWN Hash slot not served".into()))
        );
        let mut s = survey();
        s.owners[0] = None;
        assert!(s.view().master_of(0).is_none());
        assert!(s.view().master_of(4096).is_some());
    }

    #[test]
    fn one_unsharded_group_masters_every_slot_at_its_leader() {
        let mut s = survey();
        s.owners = vec![Some(Gid(1))];
        s.leaders = [(Gid(1), NodeId(1))].into();
        let v = s.view();
        assert_eq!(v.redirect(0), None);
        assert_eq!(v.redirect(16383), None);
        assert!(v.info_text().contains("cluster_state:ok"));
    }

    #[test]
    fn the_leader_of_the_highest_term_wins() {
        let claim = |term, leader: Option<u64>| LeaderClaim {
            term,
            leader: leader.map(NodeId),
        };
        assert_eq!(
            latest_leader([claim(3, Some(1)), claim(5, Some(2)), claim(6, None)]),
            Some(NodeId(2))
        );
        assert_eq!(latest_leader([claim(1, None)]), None);
        assert_eq!(latest_leader([]), None);
    }
}
