//! The view builder: from what a server process learned about its cluster (the
//! controller's shard map, each process's RESP address, each group's leader) to the
//! [`ClusterView`] its Redis clients see. Pure, so the rules are tested here and the server
//! only gathers the facts.
//!
//! Processes are known by the gRPC address they were asked at (from this process's
//! `--peers` and from the controller's config, which lists every group's servers), not by
//! member id: member ids are unique only within a group's peer set, and a group added later
//! on other machines may reuse them.
//!
//! Rules: every process whose RESP address is known is a node, once however many gRPC
//! addresses reached it, with an id from its RESP address ([`node_id`] of a hash of it:
//! the same on every process and across restarts); a shard's slots are mastered by the node
//! hosting the leader of the group that serves the shard; a shard that is unassigned, whose
//! group has no known leader, or whose leader's process has no known RESP address has no
//! master (its keys are answered `CLUSTERDOWN`, and Redis clients look again).

use crate::cluster::{ClusterView, Node, node_id};
use shardkv_types::Gid;
use std::collections::BTreeMap;

/// A RESP address: host and port, as clients reach them.
pub type RespAddr = (String, u16);

/// What a process learned about its cluster at one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Survey {
    pub cluster_id: u64,
    /// The RESP address of the process that builds the view.
    pub me: RespAddr,
    /// Every server process asked, by the gRPC address it was asked at, with the RESP
    /// address it advertises; `None` while unknown (down, unreachable, or serving no RESP
    /// port).
    pub processes: BTreeMap<String, Option<RespAddr>>,
    /// The group serving each shard, in shard order (`None`: unassigned). Its length is the
    /// shard count (1 for a process of one unsharded group).
    pub owners: Vec<Option<Gid>>,
    /// The gRPC address of each group's leader, where known.
    pub leaders: BTreeMap<Gid, String>,
    /// The controller's config number (Redis's config epoch).
    pub epoch: u64,
}

/// One member's report of its group's leadership: its term and the leader it knows of, by
/// the leader's gRPC address (the answering member's own address when it leads: `own`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderClaim {
    pub term: u64,
    pub leader: Option<String>,
    /// The answering member leads (its claim names the address it was asked at).
    pub own: bool,
}

/// The leader of the highest term any of `claims` names (Raft has at most one leader per
/// term, so reports of older terms are outdated): a leader's own claim at that term if
/// there is one, else the least address that other members name at that term and `known`
/// accepts (an address the survey asked, so the view can find that process); `None` when
/// there is neither. The answer does not depend on the order of `claims`.
pub fn latest_leader(
    claims: impl IntoIterator<Item = LeaderClaim>,
    known: impl Fn(&str) -> bool,
) -> Option<String> {
    let named: Vec<(u64, String, bool)> = claims
        .into_iter()
        .filter_map(|c| Some((c.term, c.leader?, c.own)))
        .collect();
    let term = named.iter().map(|(t, _, _)| *t).max()?;
    let at_term = named.into_iter().filter(|(t, _, _)| *t == term);
    let (own, others): (Vec<_>, Vec<_>) = at_term.partition(|(_, _, own)| *own);
    if let Some((_, leader, _)) = own.into_iter().min_by(|a, b| a.1.cmp(&b.1)) {
        return Some(leader);
    }
    others
        .into_iter()
        .map(|(_, leader, _)| leader)
        .filter(|l| known(l))
        .min()
}

/// A 64-bit FNV-1a hash: fixed across builds and platforms, unlike std's hasher.
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The node id of the process at RESP address `addr`.
pub fn node_id_of(cluster_id: u64, (host, port): &RespAddr) -> String {
    node_id(cluster_id, stable_hash(format!("{host}:{port}").as_bytes()))
}

impl Survey {
    /// The view Redis clients of this process see.
    ///
    /// # Panics
    /// If `owners.len()` is not a valid shard count.
    pub fn view(&self) -> ClusterView {
        // One node per RESP address, in address order.
        let mut addrs: Vec<&RespAddr> = self.processes.values().flatten().collect();
        addrs.push(&self.me);
        addrs.sort();
        addrs.dedup();
        let nodes: Vec<Node> = addrs
            .iter()
            .map(|addr| Node {
                id: node_id_of(self.cluster_id, addr),
                host: addr.0.clone(),
                port: addr.1,
                myself: *addr == &self.me,
            })
            .collect();
        let masters: Vec<Option<usize>> = self
            .owners
            .iter()
            .map(|owner| {
                let leader = self.leaders.get(&(*owner)?)?;
                let resp = self.processes.get(leader)?.as_ref()?;
                addrs.iter().position(|a| *a == resp)
            })
            .collect();
        ClusterView::new(nodes, &masters, self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;

    fn resp(p: u16) -> Option<RespAddr> {
        Some(("127.0.0.1".to_string(), p))
    }

    fn survey() -> Survey {
        Survey {
            cluster_id: 9,
            me: ("127.0.0.1".to_string(), 9001),
            processes: [
                ("127.0.0.1:7001".to_string(), resp(9001)),
                ("127.0.0.1:7002".to_string(), resp(9002)),
                ("127.0.0.1:7003".to_string(), resp(9003)),
            ]
            .into(),
            owners: vec![Some(Gid(1)), Some(Gid(1)), Some(Gid(2)), Some(Gid(2))],
            leaders: [
                (Gid(1), "127.0.0.1:7002".to_string()),
                (Gid(2), "127.0.0.1:7003".to_string()),
            ]
            .into(),
            epoch: 5,
        }
    }

    #[test]
    fn slots_are_mastered_by_the_process_hosting_their_groups_leader() {
        // Goal: `up`'s shape (3 processes, 2 groups led by 2 of them) maps to 2 masters.
        let v = survey().view();
        assert_eq!(v.nodes().len(), 3);
        assert!(v.nodes()[0].myself && !v.nodes()[1].myself);
        assert_eq!(v.nodes()[1].id, node_id_of(9, &("127.0.0.1".into(), 9002)));
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
        s.processes.insert("127.0.0.1:7003".into(), None);
        let v = s.view();
        assert_eq!(v.nodes().len(), 2);
        assert!(v.master_of(16383).is_none());
        assert_eq!(
            v.redirect(16383),
            Some(Reply::Error("CLUSTERDOWN Hash slot not served".into()))
        );
        let mut s = survey();
        s.leaders.insert(Gid(2), "127.0.0.1:7999".into());
        assert!(s.view().master_of(16383).is_none(), "a leader nobody asked");
        let mut s = survey();
        s.owners[0] = None;
        assert!(s.view().master_of(0).is_none());
        assert!(s.view().master_of(4096).is_some());
    }

    #[test]
    fn a_group_on_other_machines_with_the_same_member_ids_gets_its_own_nodes() {
        // Goal: a group added on other machines, whose members reuse ids 1-3, is mastered by
        // its own processes, and a process reached by two names is one node.
        let mut s = survey();
        s.processes
            .insert("10.0.0.4:7001".into(), Some(("10.0.0.4".into(), 9001)));
        s.processes
            .insert("10.0.0.5:7001".into(), Some(("10.0.0.5".into(), 9001)));
        s.processes.insert("localhost:7002".into(), resp(9002));
        s.owners = [1, 1, 2, 2, 3, 3, 3, 3].map(|g| Some(Gid(g))).to_vec();
        s.leaders.insert(Gid(3), "10.0.0.5:7001".into());
        let v = s.view();
        assert_eq!(v.nodes().len(), 5, "{:?}", v.nodes());
        let ids: std::collections::BTreeSet<&str> =
            v.nodes().iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids.len(), 5, "node ids are distinct");
        let last = v.master_of(16383).expect("group 3's slots are served");
        assert_eq!((last.host.as_str(), last.port), ("10.0.0.5", 9001));
    }

    #[test]
    fn one_unsharded_group_masters_every_slot_at_its_leader() {
        let mut s = survey();
        s.owners = vec![Some(Gid(1))];
        s.leaders = [(Gid(1), "127.0.0.1:7001".to_string())].into();
        let v = s.view();
        assert_eq!(v.redirect(0), None);
        assert_eq!(v.redirect(16383), None);
        assert!(v.info_text().contains("cluster_state:ok"));
    }

    #[test]
    fn the_leader_of_the_highest_term_wins_and_its_own_claim_first() {
        let claim = |term, leader: Option<&str>, own| LeaderClaim {
            term,
            leader: leader.map(String::from),
            own,
        };
        let any = |_: &str| true;
        assert_eq!(
            latest_leader(
                [
                    claim(3, Some("a:1"), true),
                    claim(5, Some("b:1"), false),
                    claim(6, None, false)
                ],
                any
            ),
            Some("b:1".to_string())
        );
        assert_eq!(latest_leader([claim(1, None, false)], any), None);
        assert_eq!(latest_leader([], any), None);
        // Followers name the leader by another spelling of its address: the leader's own
        // claim wins, in whatever order the claims came.
        let claims = [
            claim(7, Some("10.0.0.4:7001"), false),
            claim(7, Some("host1:7001"), true),
            claim(7, Some("10.0.0.4:7001"), false),
        ];
        for order in [[0, 1, 2], [1, 0, 2], [2, 0, 1]] {
            let c = order.map(|i| claims[i].clone());
            assert_eq!(latest_leader(c, any), Some("host1:7001".to_string()));
        }
        // Without the leader's own claim, only an address the survey knows is named.
        let known = |a: &str| a == "host1:7001";
        assert_eq!(
            latest_leader([claim(7, Some("10.0.0.4:7001"), false)], known),
            None
        );
        assert_eq!(
            latest_leader(
                [
                    claim(7, Some("10.0.0.4:7001"), false),
                    claim(7, Some("host1:7001"), false)
                ],
                known
            ),
            Some("host1:7001".to_string())
        );
    }

    #[test]
    fn node_ids_depend_on_the_cluster_and_the_address_only() {
        let a = ("127.0.0.1".to_string(), 9001);
        assert_eq!(node_id_of(9, &a), node_id_of(9, &a.clone()));
        assert_ne!(node_id_of(9, &a), node_id_of(8, &a));
        assert_ne!(
            node_id_of(9, &a),
            node_id_of(9, &("127.0.0.1".into(), 9002))
        );
        assert_eq!(node_id_of(9, &a).len(), 40);
    }
}
