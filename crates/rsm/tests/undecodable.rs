//! A committed entry this build cannot decode (written by an incompatible version) stops
//! the replica with an error naming it: skipping it would let replicas diverge silently.

use shardkv_raft::{Config, Restored};
use shardkv_rsm::testing::Counters;
use shardkv_rsm::{Replica, ReplicaOptions};
use shardkv_types::{Entry, Gid, HardState, LogIndex, NodeId, Term};

/// Goal: `advance` refuses a committed Normal entry it cannot decode, with an error that
/// names its index and the version mismatch. Method: a single member restored with a
/// committed log whose second entry holds bytes no `Proposal` decodes from; drain its
/// Readys.
#[test]
fn a_committed_entry_that_cannot_be_decoded_is_an_error_naming_it() {
    let restored = Restored {
        hard_state: HardState {
            term: Term(1),
            vote: Some(NodeId(1)),
            commit: LogIndex(2),
        },
        snapshot: None,
        entries: vec![
            Entry::noop(Term(1), LogIndex(1)),
            Entry::normal(Term(1), LogIndex(2), vec![0xff; 12]),
        ],
    };
    let cfg = Config::new(NodeId(1), vec![NodeId(1)]);
    let initial = Counters::owning(Gid(1), &[0].into());
    let mut r = Replica::new(cfg, restored, 1, ReplicaOptions::default(), initial).expect("starts");
    let mut error = None;
    for _ in 0..10 {
        let Some(rd) = r.ready() else { break };
        if let Err(e) = r.advance(rd, 0) {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("applying the undecodable entry is an error, not a skip");
    assert!(error.contains("index 2"), "{error}");
    assert!(error.contains("incompatible version"), "{error}");
    assert!(
        r.applied() < LogIndex(2),
        "the entry was not applied as a no-op"
    );
}
