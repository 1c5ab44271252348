//! The cluster as Redis Cluster clients see it: every server process is a node, a master for
//! the slots of the shards whose group leader it hosts. `CLUSTER SLOTS`, `SHARDS`, `NODES`
//! and `INFO` describe that view, and a key whose slot another process masters is answered
//! `MOVED slot host:port` ([`ClusterView::moved`]).
//!
//! Slots are shardkv's own (DESIGN.md §4): Redis's hash slot of the key, and contiguous slot
//! ranges per shard. The view is built from the controller's config (which group serves each
//! shard) and the leaders the process knows; it can be stale for a moment after a leader
//! change or a move, and a client that follows a stale `MOVED` is answered `MOVED` again by
//! the process it reaches, as in Redis Cluster during a failover.

use crate::reply::Reply;
use bytes::Bytes;
use shardkv_types::{ShardId, slots_of_shard};

/// One server process, as Redis clients address it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// 40 hex digits, stable for the process ([`node_id`]).
    pub id: String,
    /// The host clients connect to (the address it advertises).
    pub host: String,
    /// Its RESP port.
    pub port: u16,
    /// Whether this is the process answering.
    pub myself: bool,
}

/// Redis node ids are 40 hex digits; this one is made of the cluster id and a number that
/// names the process (`crate::survey::node_id_of`: a hash of its RESP address), so it is
/// the same on every process and across restarts.
pub fn node_id(cluster_id: u64, member: u64) -> String {
    // A 64-bit mix, so ids of neighbouring members do not share their first digits (Redis
    // tools shorten ids to a prefix).
    let mix = |x: u64| {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    format!(
        "{:016x}{:016x}{:08x}",
        mix(cluster_id ^ mix(member)),
        mix(member),
        member as u32
    )
}

/// A run of slots one node is master for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
    /// Index into the view's nodes.
    pub node: usize,
}

/// Which node masters which slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    nodes: Vec<Node>,
    /// Sorted, disjoint; slots in none of them are not served right now.
    ranges: Vec<SlotRange>,
    /// The controller's config number: Redis's config epoch.
    epoch: u64,
}

impl ClusterView {
    /// `masters[s]` is the node (an index into `nodes`) hosting the leader of the group that
    /// serves shard `s`, `None` while unknown or unassigned. Adjacent shards of one node are
    /// merged into one range.
    ///
    /// # Panics
    /// If `masters.len()` is not a valid shard count or an index is out of range.
    pub fn new(nodes: Vec<Node>, masters: &[Option<usize>], epoch: u64) -> ClusterView {
        let shards = u32::try_from(masters.len()).expect("shard count fits u32");
        let mut ranges: Vec<SlotRange> = Vec::new();
        for (s, master) in masters.iter().enumerate() {
            let Some(node) = *master else { continue };
            assert!(
                node < nodes.len(),
                "master {node} of shard {s} is not a node"
            );
            let slots = slots_of_shard(ShardId(s as u64), shards);
            let (first, last) = (slots.start, slots.end - 1);
            match ranges.last_mut() {
                Some(r) if r.node == node && r.last + 1 == first => r.last = last,
                _ => ranges.push(SlotRange { first, last, node }),
            }
        }
        ClusterView {
            nodes,
            ranges,
            epoch,
        }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn ranges(&self) -> &[SlotRange] {
        &self.ranges
    }

    /// The node mastering `slot`, if any.
    pub fn master_of(&self, slot: u16) -> Option<&Node> {
        let i = self.ranges.partition_point(|r| r.last < slot);
        let r = self.ranges.get(i).filter(|r| r.first <= slot)?;
        Some(&self.nodes[r.node])
    }

    /// The answer for a key of `slot` asked of this process when another masters it:
    /// `MOVED`, or `CLUSTERDOWN` when no node does; `None` when this process is its master.
    pub fn redirect(&self, slot: u16) -> Option<Reply> {
        match self.master_of(slot) {
            Some(n) if n.myself => None,
            Some(n) => Some(Reply::Error(format!("MOVED {slot} {}:{}", n.host, n.port))),
            None => Some(Reply::Error("CLUSTERDOWN Hash slot not served".to_string())),
        }
    }

    fn myself(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.myself)
    }

    fn node_entry(n: &Node) -> Reply {
        Reply::Array(vec![
            Reply::text_bulk(n.host.clone()),
            Reply::Int(i64::from(n.port)),
            Reply::text_bulk(n.id.clone()),
            Reply::Array(Vec::new()),
        ])
    }

    /// `CLUSTER SLOTS`: `[first, last, [host, port, id, {}]]` per range.
    pub fn slots_reply(&self) -> Reply {
        Reply::Array(
            self.ranges
                .iter()
                .map(|r| {
                    Reply::Array(vec![
                        Reply::Int(i64::from(r.first)),
                        Reply::Int(i64::from(r.last)),
                        Self::node_entry(&self.nodes[r.node]),
                    ])
                })
                .collect(),
        )
    }

    /// `CLUSTER SHARDS`: one entry per node that masters slots, with its ranges.
    pub fn shards_reply(&self) -> Reply {
        let shard = |i: usize, n: &Node| {
            let slots = self
                .ranges
                .iter()
                .filter(|r| r.node == i)
                .flat_map(|r| {
                    [
                        Reply::Int(i64::from(r.first)),
                        Reply::Int(i64::from(r.last)),
                    ]
                })
                .collect();
            let node = Reply::Map(vec![
                (Reply::text_bulk("id"), Reply::text_bulk(n.id.clone())),
                (Reply::text_bulk("port"), Reply::Int(i64::from(n.port))),
                (Reply::text_bulk("ip"), Reply::text_bulk(n.host.clone())),
                (
                    Reply::text_bulk("endpoint"),
                    Reply::text_bulk(n.host.clone()),
                ),
                (Reply::text_bulk("role"), Reply::text_bulk("master")),
                (Reply::text_bulk("replication-offset"), Reply::Int(0)),
                (Reply::text_bulk("health"), Reply::text_bulk("online")),
            ]);
            Reply::Map(vec![
                (Reply::text_bulk("slots"), Reply::Array(slots)),
                (Reply::text_bulk("nodes"), Reply::Array(vec![node])),
            ])
        };
        Reply::Array(
            self.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| self.ranges.iter().any(|r| r.node == *i))
                .map(|(i, n)| shard(i, n))
                .collect(),
        )
    }

    /// `CLUSTER NODES`: a line per node in the format `redis-benchmark --cluster` parses:
    /// `id host:port@cport flags master ping pong epoch link slots...`. The bus port
    /// `cport` is Redis's convention, port + 10000 (nothing listens there: nodes do not
    /// gossip), or 0 where that is past 65535.
    pub fn nodes_text(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let flags = if n.myself { "myself,master" } else { "master" };
            out.push_str(&format!(
                "{} {}:{}@{} {flags} - 0 0 {} connected",
                n.id,
                n.host,
                n.port,
                n.port.checked_add(10000).unwrap_or(0),
                self.epoch
            ));
            for r in self.ranges.iter().filter(|r| r.node == i) {
                if r.first == r.last {
                    out.push_str(&format!(" {}", r.first));
                } else {
                    out.push_str(&format!(" {}-{}", r.first, r.last));
                }
            }
            out.push('\n');
        }
        out
    }

    /// `CLUSTER INFO`.
    pub fn info_text(&self) -> String {
        let served: u64 = self
            .ranges
            .iter()
            .map(|r| u64::from(r.last - r.first) + 1)
            .sum();
        let masters = (0..self.nodes.len())
            .filter(|i| self.ranges.iter().any(|r| r.node == *i))
            .count();
        let state = if served == u64::from(shardkv_types::SLOTS) {
            "ok"
        } else {
            "fail"
        };
        [
            "cluster_enabled:1".into(),
            format!("cluster_state:{state}"),
            format!("cluster_slots_assigned:{served}"),
            format!("cluster_slots_ok:{served}"),
            "cluster_slots_pfail:0".into(),
            "cluster_slots_fail:0".into(),
            format!("cluster_known_nodes:{}", self.nodes.len()),
            format!("cluster_size:{masters}"),
            format!("cluster_current_epoch:{}", self.epoch),
            format!("cluster_my_epoch:{}", self.epoch),
            "cluster_stats_messages_sent:0".into(),
            "cluster_stats_messages_received:0".into(),
            "total_cluster_links_buffer_limit_exceeded:0".into(),
        ]
        .join("\r\n")
            + "\r\n"
    }

    /// `CLUSTER MYID`.
    pub fn my_id(&self) -> Reply {
        Reply::maybe(self.myself().map(|n| Bytes::from(n.id.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardkv_types::key_slot;

    fn view(masters: &[Option<usize>]) -> ClusterView {
        let nodes = (0..3)
            .map(|i| Node {
                id: node_id(7, i + 1),
                host: "127.0.0.1".into(),
                port: 7101 + i as u16,
                myself: i == 0,
            })
            .collect();
        ClusterView::new(nodes, masters, 4)
    }

    #[test]
    fn node_ids_are_40_hex_digits_and_distinct() {
        let ids: Vec<String> = (1..=5).map(|m| node_id(42, m)).collect();
        for id in &ids {
            assert_eq!(id.len(), 40);
            assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        }
        let mut prefixes: Vec<&str> = ids.iter().map(|i| &i[..8]).collect();
        prefixes.dedup();
        assert_eq!(prefixes.len(), 5);
        assert_ne!(node_id(1, 1), node_id(2, 1));
    }

    #[test]
    fn adjacent_shards_of_one_node_merge_and_moved_names_the_master() {
        let v = view(&[Some(0), Some(0), Some(1), None]);
        assert_eq!(
            v.ranges(),
            [
                SlotRange {
                    first: 0,
                    last: 8191,
                    node: 0
                },
                SlotRange {
                    first: 8192,
                    last: 12287,
                    node: 1
                },
            ]
        );
        assert_eq!(v.redirect(5), None);
        assert_eq!(
            v.redirect(9000),
            Some(Reply::Error("MOVED 9000 127.0.0.1:7102".into()))
        );
        assert_eq!(
            v.redirect(16383),
            Some(Reply::Error("CLUSTERDOWN Hash slot not served".into()))
        );
        assert!(v.info_text().contains("cluster_state:fail\r\n"));
        assert!(v.info_text().contains("cluster_slots_assigned:12288\r\n"));
        // The key "foo" is in slot 12182 (Redis's own example).
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(v.master_of(12182).map(|n| n.port), Some(7102));
    }

    #[test]
    fn nodes_lines_carry_what_redis_benchmark_parses() {
        let v = view(&[Some(0), Some(1), Some(2), Some(1)]);
        let text = v.nodes_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let first: Vec<&str> = lines[0].split(' ').collect();
        assert_eq!(first[0].len(), 40);
        assert_eq!(first[1], "127.0.0.1:7101@17101");
        assert_eq!(first[2], "myself,master");
        assert_eq!(first[3], "-");
        assert_eq!(first[7], "connected");
        assert_eq!(first[8], "0-4095");
        assert!(lines[1].ends_with(" 4096-8191 12288-16383"), "{}", lines[1]);
        assert!(v.info_text().contains("cluster_state:ok"));
        assert!(v.info_text().contains("cluster_size:3"));
    }

    #[test]
    fn a_port_whose_bus_port_would_pass_65535_shows_bus_port_0() {
        let node = Node {
            id: node_id(7, 1),
            host: "127.0.0.1".into(),
            port: 60000,
            myself: true,
        };
        let v = ClusterView::new(vec![node], &[Some(0)], 1);
        assert!(
            v.nodes_text().contains(" 127.0.0.1:60000@0 "),
            "{}",
            v.nodes_text()
        );
    }

    #[test]
    fn slots_and_shards_replies_list_every_range() {
        let v = view(&[Some(1), Some(1)]);
        let Reply::Array(slots) = v.slots_reply() else {
            panic!()
        };
        assert_eq!(slots.len(), 1);
        let Reply::Array(shards) = v.shards_reply() else {
            panic!()
        };
        assert_eq!(shards.len(), 1);
        assert_eq!(v.my_id(), Reply::bulk(node_id(7, 1)));
    }
}
