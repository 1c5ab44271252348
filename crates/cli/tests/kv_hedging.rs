//! Clients of a frozen leader, as real processes: a SIGSTOPped leader keeps its sockets
//! open, so requests reach it and get no answer. A client hedges (the same request to
//! another member after a short silence) instead of waiting out its attempt timeout, and
//! the history stays linearizable.

mod common;

use common::cluster::Cluster;
use common::history::{Recorded, Shared, assert_linearizable, record};
use shardkv_client::{ClientOptions, Outcome};
use shardkv_lincheck::{Op, Output};
use std::time::Duration;

const CLIENTS: usize = 4;

/// Goal: a frozen leader does not cost its clients their attempt timeout: each client's
/// first operation after the freeze completes once the group elects another leader.
/// Method: clients whose attempts may take 60 s but whose operations end at 8 s (an
/// operation that waited on the frozen leader would end unknown) each complete a put at the
/// leader, the leader is SIGSTOPped, every client then puts and reads again: every one of
/// those must complete; then the history, with final reads, must be linearizable.
#[test]
fn clients_of_a_frozen_leader_complete_their_operations_before_the_attempt_timeout() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let opts = ClientOptions {
        attempt_timeout: Duration::from_secs(60),
        op_timeout: Duration::from_secs(8),
        ..ClientOptions::default()
    };
    let shared = Shared::new();
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| c.client_with(opts.clone())).collect();
    let mut recs: Vec<Recorded> = (0..CLIENTS).map(|_| Recorded::empty()).collect();
    for (w, (client, rec)) in clients.iter_mut().zip(&mut recs).enumerate() {
        let put = Op::Put {
            key: format!("k{w}").into_bytes(),
            value: b"before".to_vec(),
        };
        let (outcome, _) = c.block_on(record(client, &shared, rec, put));
        assert_eq!(outcome, Outcome::Ok, "client {w} found the leader");
    }

    c.stop(leader);
    let handles: Vec<_> = clients
        .into_iter()
        .zip(recs)
        .enumerate()
        .map(|(w, (mut client, mut rec))| {
            let shared = shared.clone();
            c.spawn_task(async move {
                let key = format!("k{w}").into_bytes();
                let put = Op::Put {
                    key: key.clone(),
                    value: b"after".to_vec(),
                };
                let (wrote, _) = record(&mut client, &shared, &mut rec, put).await;
                let (read, out) = record(&mut client, &shared, &mut rec, Op::Get { key }).await;
                (rec, wrote, read, out)
            })
        })
        .collect();
    let mut history = Vec::new();
    let mut completed = 0;
    for h in handles {
        let (rec, wrote, read, out) = c.block_on(h).expect("client task");
        completed += usize::from(wrote == Outcome::Ok) + usize::from(read == Outcome::Ok);
        if (wrote, read) == (Outcome::Ok, Outcome::Ok) {
            assert_eq!(out, Some(Output::Get(Some(b"after".to_vec()))));
        }
        history.extend(rec.history);
    }
    c.cont(leader);
    assert_eq!(
        completed,
        2 * CLIENTS,
        "every operation after the freeze completed within its 8 s (an attempt may take 60 s)"
    );

    let mut reader = c.client_with(opts);
    let mut finals = Recorded::empty();
    for w in 0..CLIENTS {
        let get = Op::Get {
            key: format!("k{w}").into_bytes(),
        };
        let (outcome, _) = c.block_on(record(&mut reader, &shared, &mut finals, get));
        assert_eq!(outcome, Outcome::Ok);
    }
    history.extend(finals.history);
    assert_linearizable(&c, &history);
}
