//! The simulated network: per-direction loss, delay, long reordering of replies,
//! duplication, and symmetric or one-way partitions.

use crate::queue::Micros;
use shardkv_types::{NodeId, Rng};
use std::collections::BTreeSet;

/// How the network misbehaves. Loss rates are per mille.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Chance that a request (vote, append, heartbeat, snapshot chunk) is dropped.
    pub request_loss_permille: u32,
    /// Chance that a reply is dropped.
    pub reply_loss_permille: u32,
    /// Every message is delayed uniformly within `[delay_min_us, delay_max_us]`.
    pub delay_min_us: Micros,
    pub delay_max_us: Micros,
    /// Long reordering: 2/3 of replies arrive 200–2200 ms late (skewed toward short).
    pub long_reordering: bool,
    /// Chance that a delivered message is delivered twice.
    pub duplicate_permille: u32,
}

impl NetConfig {
    /// No loss, no duplication, 0.1–1 ms of latency.
    pub fn reliable() -> NetConfig {
        NetConfig {
            request_loss_permille: 0,
            reply_loss_permille: 0,
            delay_min_us: 100,
            delay_max_us: 1_000,
            long_reordering: false,
            duplicate_permille: 0,
        }
    }

    /// The MIT labs' unreliable network: 10% of requests and 10% of replies lost, 0–26 ms
    /// of delay.
    pub fn unreliable() -> NetConfig {
        NetConfig {
            request_loss_permille: 100,
            reply_loss_permille: 100,
            delay_min_us: 0,
            delay_max_us: 26_000,
            long_reordering: false,
            duplicate_permille: 0,
        }
    }
}

/// What the network decided for one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    Dropped,
    /// Deliver after each of these delays (two for a duplicate).
    Deliver(Vec<Micros>),
}

/// Link state and fault decisions. Decisions draw from the simulator's RNG in a fixed
/// order, so they are reproducible.
#[derive(Debug)]
pub struct Network {
    pub config: NetConfig,
    /// Directed links that are cut: (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    pub fn new(config: NetConfig) -> Network {
        Network {
            config,
            cut: BTreeSet::new(),
        }
    }

    /// True if a message from `from` can currently reach `to`.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Cuts or restores the directed link `from -> to`.
    pub fn set_link(&mut self, from: NodeId, to: NodeId, up: bool) {
        if up {
            self.cut.remove(&(from, to));
        } else {
            self.cut.insert((from, to));
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Decides the fate of one message.
    pub fn decide(&self, rng: &mut Rng, is_request: bool) -> Fate {
        let c = &self.config;
        let loss = if is_request {
            c.request_loss_permille
        } else {
            c.reply_loss_permille
        };
        if loss > 0 && rng.chance(loss) {
            return Fate::Dropped;
        }
        let delay = |rng: &mut Rng| {
            let mut d = rng.range(c.delay_min_us, c.delay_max_us + 1);
            if c.long_reordering && !is_request && rng.range(0, 900) < 600 {
                // 200 ms + a value skewed toward short, up to 2 s.
                let inner = rng.range(0, 2001);
                d += 200_000 + rng.range(0, inner + 1) * 1000;
            }
            d
        };
        let first = delay(rng);
        let mut out = vec![first];
        if c.duplicate_permille > 0 && rng.chance(c.duplicate_permille) {
            out.push(delay(rng));
        }
        Fate::Deliver(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_cut_blocks_one_direction_only() {
        let mut n = Network::new(NetConfig::reliable());
        n.set_link(NodeId(1), NodeId(2), false);
        assert!(!n.connected(NodeId(1), NodeId(2)));
        assert!(n.connected(NodeId(2), NodeId(1)));
        n.heal();
        assert!(n.connected(NodeId(1), NodeId(2)));
    }

    #[test]
    fn unreliable_loses_about_ten_percent() {
        let n = Network::new(NetConfig::unreliable());
        let mut rng = Rng::new(1);
        let dropped = (0..10_000)
            .filter(|_| n.decide(&mut rng, true) == Fate::Dropped)
            .count();
        assert!((800..1200).contains(&dropped), "dropped {dropped}");
    }
}
