//! An in-memory group of replicas on a perfect network, for rsm's own tests: no storage (a
//! Ready is "persisted" as soon as it is taken), messages delivered in order.

use shardkv_raft::{Config, Message, Restored};
use shardkv_rsm::{Replica, ReplicaOptions, StateMachine};
use shardkv_types::NodeId;

/// `n` replicas, ids 1..=n, each starting from `initial`.
pub fn group<SM: StateMachine + Clone>(n: u64, initial: SM) -> Vec<Replica<SM>> {
    group_with(n, initial, ReplicaOptions::default())
}

/// `n` replicas with options `opts`, ids 1..=n, each starting from `initial`.
pub fn group_with<SM: StateMachine + Clone>(
    n: u64,
    initial: SM,
    opts: ReplicaOptions,
) -> Vec<Replica<SM>> {
    let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
    ids.iter()
        .map(|&id| {
            let cfg = Config::new(id, ids.clone());
            Replica::new(cfg, Restored::default(), id.0, opts, initial.clone()).expect("starts")
        })
        .collect()
}

/// Drains every replica's Ready and returns the messages.
pub fn pump<SM: StateMachine>(g: &mut [Replica<SM>]) -> Vec<Message> {
    let mut out = Vec::new();
    for r in g.iter_mut() {
        while let Some(mut rd) = r.ready() {
            out.append(&mut rd.messages);
            r.advance(rd, 0).expect("advances");
        }
    }
    out
}

pub fn deliver<SM: StateMachine>(g: &mut [Replica<SM>], msgs: Vec<Message>) {
    for m in msgs {
        g[(m.to.0 - 1) as usize].step(m);
    }
}

/// Delivers messages until the group is quiet (bounded).
fn quiesce<SM: StateMachine>(g: &mut [Replica<SM>]) {
    for _ in 0..100 {
        let msgs = pump(g);
        if msgs.is_empty() {
            return;
        }
        deliver(g, msgs);
    }
    panic!("the group did not quiesce within 100 rounds");
}

/// Delivers messages until the group is quiet and, if replica 1 leads, ticks it until every
/// replica applied what it applied (followers learn the commit index from the next append or
/// heartbeat). Bounded.
pub fn settle<SM: StateMachine>(g: &mut [Replica<SM>]) {
    quiesce(g);
    for _ in 0..1000 {
        let applied = g[0].applied();
        if !g[0].raft().is_leader() || g.iter().all(|r| r.applied() == applied) {
            return;
        }
        g[0].tick();
        quiesce(g);
    }
    panic!("followers did not catch up within 1000 ticks");
}

/// Ticks replica 1 until it leads (bounded), then lets the group settle.
pub fn elect_first<SM: StateMachine>(g: &mut [Replica<SM>]) {
    for _ in 0..1000 {
        if g[0].raft().is_leader() {
            settle(g);
            return;
        }
        g[0].tick();
        let msgs = pump(g);
        deliver(g, msgs);
    }
    panic!("replica 1 was not elected within 1000 ticks");
}
