//! How a replica answers a write it proposed when leadership moves before the outcome is
//! known: "may have applied", never "surely not applied".

use shardkv_kv::{KvCommand, KvStore};
use shardkv_raft::{Config, Message, Restored};
use shardkv_rsm::{Replica, ReplicaOptions, RsmError};
use shardkv_types::{ClientId, NodeId};

fn group() -> Vec<Replica<KvStore>> {
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    ids.iter()
        .map(|&id| {
            Replica::new(
                Config::new(id, ids.clone()),
                Restored::default(),
                id.0,
                ReplicaOptions::default(),
            )
            .unwrap()
        })
        .collect()
}

/// Drains every replica's Ready (no persistence needed here) and returns the messages.
fn pump(g: &mut [Replica<KvStore>]) -> Vec<Message> {
    let mut out = Vec::new();
    for r in g.iter_mut() {
        while let Some(mut rd) = r.ready() {
            out.append(&mut rd.messages);
            r.advance(rd, 0).unwrap();
        }
    }
    out
}

fn deliver(g: &mut [Replica<KvStore>], msgs: Vec<Message>) {
    for m in msgs {
        g[(m.to.0 - 1) as usize].step(m);
    }
}

#[test]
fn write_proposed_then_leadership_lost_is_reported_as_maybe_applied() {
    let mut g = group();
    // Elect node 1 with a reliable network.
    for _ in 0..1000 {
        if g[0].raft().is_leader() {
            break;
        }
        g[0].tick();
        let msgs = pump(&mut g);
        deliver(&mut g, msgs);
    }
    assert!(g[0].raft().is_leader());
    for _ in 0..5 {
        let msgs = pump(&mut g);
        deliver(&mut g, msgs);
    }
    // Propose; the append reaches the followers but every answer is lost, so the leader
    // cannot know the write committed.
    g[0].propose(
        7,
        ClientId(1),
        1,
        KvCommand::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        },
    );
    let msgs = pump(&mut g);
    deliver(&mut g, msgs);
    let _lost_answers = pump(&mut g);
    // CheckQuorum: with no answers the leader steps down within an election timeout.
    for _ in 0..200 {
        g[0].tick();
        pump(&mut g);
        if !g[0].raft().is_leader() {
            break;
        }
    }
    assert!(!g[0].raft().is_leader());
    let replies = g[0].take_replies();
    assert_eq!(replies.len(), 1);
    assert!(
        matches!(replies[0], (7, Err(RsmError::LostLeadership { .. }))),
        "a proposed write must be 'may have applied', got {:?}",
        replies[0]
    );
    // Reads, which never change state, still fail definitely.
    g[0].read(8, shardkv_kv::KvQuery::Get { key: b"k".to_vec() });
    assert!(matches!(
        g[0].take_replies()[0],
        (8, Err(RsmError::NotLeader { .. }))
    ));
}
