//! Micro-benchmark of the Raft core alone: a 3-node group in memory, messages handed
//! directly between nodes (encoding skipped), persistence a no-op. Reports proposals
//! committed per second at several batch sizes and the wire bytes per replicated entry.
//!
//! Run: `cargo bench -p shardkv-raft --bench commit`

use shardkv_raft::{Config, Message, RawNode, Restored};
use shardkv_types::NodeId;
use std::collections::VecDeque;
use std::time::Instant;

struct Group {
    nodes: Vec<RawNode>,
    wire: VecDeque<Message>,
    applied: u64,
}

impl Group {
    fn new() -> Group {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let nodes = ids
            .iter()
            .map(|&id| RawNode::new(Config::new(id, ids.clone()), Restored::default(), id.0))
            .collect();
        let mut g = Group {
            nodes,
            wire: VecDeque::new(),
            applied: 0,
        };
        while !g.nodes[0].is_leader() {
            g.nodes[0].tick();
            g.pump();
        }
        g
    }

    /// Drains every Ready and delivers every message until the group is quiet.
    fn pump(&mut self) {
        self.pump_counting(None);
    }

    /// `pump`, adding the encoded size of every message to `bytes` if given.
    fn pump_counting(&mut self, mut bytes: Option<&mut usize>) {
        loop {
            let mut moved = false;
            for n in self.nodes.iter_mut() {
                if n.has_ready() {
                    let rd = n.ready();
                    if let Some(b) = bytes.as_deref_mut() {
                        *b += rd
                            .messages
                            .iter()
                            .map(|m| postcard::to_allocvec(m).map_or(0, |v| v.len()))
                            .sum::<usize>();
                    }
                    self.wire.extend(rd.messages.iter().cloned());
                    if n.is_leader() {
                        self.applied += rd.committed_entries.len() as u64;
                    }
                    n.advance(rd);
                    moved = true;
                }
            }
            while let Some(m) = self.wire.pop_front() {
                self.nodes[(m.to.0 - 1) as usize].step(m);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

fn bench(batch: usize, total: usize, value: &[u8]) -> f64 {
    let mut g = Group::new();
    let start_applied = g.applied;
    let started = Instant::now();
    let mut proposed = 0;
    while proposed < total {
        for _ in 0..batch {
            g.nodes[0].propose(value.to_vec()).expect("leader");
        }
        proposed += batch;
        g.pump();
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(
        g.applied - start_applied >= total as u64,
        "not all committed"
    );
    total as f64 / secs
}

fn bytes_per_entry(value: &[u8]) -> f64 {
    let mut g = Group::new();
    let n = 1000;
    let mut bytes = 0usize;
    for _ in 0..n {
        g.nodes[0].propose(value.to_vec()).expect("leader");
        g.pump_counting(Some(&mut bytes));
    }
    bytes as f64 / n as f64
}

fn main() {
    let value = vec![7u8; 256];
    println!("raft core, 3 nodes in memory, 256-byte commands");
    for batch in [1, 16, 256] {
        let total = 200_000;
        let rates: Vec<f64> = (0..3).map(|_| bench(batch, total, &value)).collect();
        let best = rates.iter().cloned().fold(0.0, f64::max);
        println!(
            "  batch {batch:>3}: {:>10.0} commits/s (best of 3; runs {:.0?})",
            best, rates
        );
    }
    println!(
        "  wire bytes per replicated 256-byte entry (requests + replies, 3 nodes): {:.1}",
        bytes_per_entry(&value)
    );
}
