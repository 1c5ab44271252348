//! What rsm offers every state machine, checked on its test machine (`Counters`) in a
//! 3-replica in-memory group: internal commands apply on every replica without a session;
//! a refusal is answered but not recorded, so the same request can apply later; sessions
//! that arrive with a slot are merged, so a retry of a request applied by the old owner is
//! answered, not re-applied; limits are checked before proposing.

mod common;

use common::{elect_first, settle};
use shardkv_rsm::testing::{CounterCommand, CounterInternal, CounterQuery, Counters, SLOT_MAX};
use shardkv_rsm::{Error, Replica, ReplicaOptions, Request, SessionLimits, Sessions};
use shardkv_types::{ClientId, Gid, LogIndex, Seq};

fn add(client: u64, seq: u64, slot: u32, n: u64) -> Request<CounterCommand, CounterQuery> {
    Request::Write {
        client: ClientId(client),
        seq: Seq(seq),
        retry: false,
        cmd: CounterCommand::Add { slot, n },
    }
}

/// Submits `r` at the leader (replica 1), lets the group settle, returns the answer.
fn call(
    g: &mut [Replica<Counters>],
    req: u64,
    r: Request<CounterCommand, CounterQuery>,
) -> Result<u64, Error> {
    g[0].submit(req, r);
    settle(g);
    let replies = g[0].take_replies();
    assert_eq!(replies.len(), 1, "one answer per request: {replies:?}");
    assert_eq!(replies[0].0, req);
    replies[0].1.clone()
}

fn group() -> Vec<Replica<Counters>> {
    let mut g = common::group(3, Counters::owning(Gid(7), &[1].into()));
    elect_first(&mut g);
    g
}

#[test]
fn internal_commands_apply_on_every_replica_without_a_session() {
    let mut g = group();
    let cmd = CounterInternal::Acquire {
        slot: 2,
        value: 40,
        sessions: Sessions::default(),
    };
    let index = g[0].propose_internal(cmd.clone()).expect("leader proposes");
    settle(&mut g);
    for r in &g {
        assert!(r.applied() >= index);
        assert_eq!(r.state_machine().values.get(&2), Some(&40));
        assert_eq!(r.state_machine().internal_applied, vec![cmd.clone()]);
        assert!(
            r.sessions().is_empty(),
            "no session for an internal command"
        );
    }
    assert!(
        g[0].take_replies().is_empty(),
        "nobody waits on an internal command"
    );
    assert!(matches!(
        g[1].propose_internal(CounterInternal::Release { slot: 2 }),
        Err(Error::NotLeader { .. })
    ));
}

#[test]
fn a_refusal_is_answered_but_not_recorded_so_the_request_can_apply_later() {
    let mut g = group();
    assert_eq!(
        call(&mut g, 1, add(9, 1, 3, 5)),
        Err(Error::WrongGroup { gid: Gid(7) })
    );
    for r in &g {
        assert!(
            r.sessions().get(ClientId(9)).is_none(),
            "refusal not recorded"
        );
    }
    // The slot arrives; the same request (same client, same seq) now applies.
    g[0].propose_internal(CounterInternal::Acquire {
        slot: 3,
        value: 100,
        sessions: Sessions::default(),
    })
    .expect("leader");
    settle(&mut g);
    assert_eq!(call(&mut g, 2, add(9, 1, 3, 5)), Ok(105));
    assert_eq!(
        call(&mut g, 3, add(9, 1, 3, 5)),
        Ok(105),
        "a retry is answered"
    );
    assert_eq!(
        call(&mut g, 4, Request::Read(CounterQuery::Get { slot: 3 })),
        Ok(105),
        "and not applied twice"
    );
    assert_eq!(
        call(&mut g, 5, Request::Read(CounterQuery::Get { slot: 4 })),
        Err(Error::WrongGroup { gid: Gid(7) }),
        "reads are refused the same way"
    );
}

#[test]
fn sessions_arriving_with_a_slot_are_merged_by_highest_sequence_number() {
    let mut g = group();
    // The old owner applied client 9's request 4 (answer 12) before the slot moved.
    let mut old_owner = Sessions::default();
    let limits = SessionLimits::default();
    old_owner.record(ClientId(9), Seq(4), 12, LogIndex(1), &limits);
    old_owner.record(ClientId(5), Seq(1), 1, LogIndex(2), &limits);
    // Here client 9 is at request 2 (older), client 6 only exists here.
    assert_eq!(call(&mut g, 1, add(9, 2, 1, 1)), Ok(1));
    assert_eq!(call(&mut g, 2, add(6, 8, 1, 1)), Ok(2));
    g[0].propose_internal(CounterInternal::Acquire {
        slot: 3,
        value: 12,
        sessions: old_owner,
    })
    .expect("leader");
    settle(&mut g);
    for r in &g {
        let s = r.sessions();
        assert_eq!(
            s.get(ClientId(9)).map(|s| s.seq),
            Some(Seq(4)),
            "higher wins"
        );
        assert_eq!(s.get(ClientId(6)).map(|s| s.seq), Some(Seq(8)), "kept");
        assert_eq!(s.get(ClientId(5)).map(|s| s.seq), Some(Seq(1)), "added");
    }
    // Client 9 retries request 4 here (its answer was lost at the old owner): answered
    // from the merged session, not applied again.
    assert_eq!(call(&mut g, 3, add(9, 4, 3, 1000)), Ok(12));
    assert_eq!(
        call(&mut g, 4, Request::Read(CounterQuery::Get { slot: 3 })),
        Ok(12)
    );
    assert_eq!(call(&mut g, 5, add(9, 3, 3, 1)), Err(Error::Stale));
    // Installing the same slot again (a duplicate install) changes nothing.
    g[0].propose_internal(CounterInternal::Acquire {
        slot: 3,
        value: 0,
        sessions: Sessions::default(),
    })
    .expect("leader");
    settle(&mut g);
    assert_eq!(
        call(&mut g, 6, Request::Read(CounterQuery::Get { slot: 3 })),
        Ok(12)
    );
}

#[test]
fn limits_are_checked_before_proposing() {
    let mut g = group();
    let last = g[0].raft().log().last_index();
    let err = call(&mut g, 1, add(1, 1, SLOT_MAX + 1, 1)).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert_eq!(g[0].raft().log().last_index(), last, "nothing proposed");
}

fn retried(client: u64, seq: u64, slot: u32, n: u64) -> Request<CounterCommand, CounterQuery> {
    match add(client, seq, slot, n) {
        Request::Write {
            client, seq, cmd, ..
        } => Request::Write {
            client,
            seq,
            retry: true,
            cmd,
        },
        r => r,
    }
}

fn bounded_group(limits: SessionLimits) -> Vec<Replica<Counters>> {
    let opts = ReplicaOptions {
        sessions: limits,
        ..ReplicaOptions::default()
    };
    let mut g = common::group_with(3, Counters::owning(Gid(7), &[1].into()), opts);
    elect_first(&mut g);
    g
}

fn same_sessions_everywhere(g: &[Replica<Counters>]) -> Vec<u64> {
    for r in &g[1..] {
        assert_eq!(
            r.sessions(),
            g[0].sessions(),
            "replicas keep the same sessions"
        );
    }
    g[0].sessions().iter().map(|(c, _)| c.0).collect()
}

#[test]
fn a_full_table_evicts_the_least_recently_active_client_on_every_replica() {
    let mut g = bounded_group(SessionLimits {
        sessions_max: 2,
        idle_entries_max: 1_000,
    });
    assert_eq!(call(&mut g, 1, add(1, 1, 1, 1)), Ok(1));
    assert_eq!(call(&mut g, 2, add(2, 1, 1, 1)), Ok(2));
    assert_eq!(call(&mut g, 3, add(1, 2, 1, 1)), Ok(3));
    assert_eq!(same_sessions_everywhere(&g), vec![1, 2]);
    // Client 3 arrives: client 2 was the least recently active.
    assert_eq!(call(&mut g, 4, add(3, 1, 1, 1)), Ok(4));
    assert_eq!(same_sessions_everywhere(&g), vec![1, 3]);
    // Client 2 retries its write (its answer was lost): the group cannot tell whether it
    // applied, so it says so and does not apply it again.
    assert_eq!(
        call(&mut g, 5, retried(2, 1, 1, 1)),
        Err(Error::SessionExpired)
    );
    assert_eq!(
        call(&mut g, 6, Request::Read(CounterQuery::Get { slot: 1 })),
        Ok(4),
        "not applied twice"
    );
    // Its next write is new: applied, and it has a session again.
    assert_eq!(call(&mut g, 7, add(2, 2, 1, 1)), Ok(5));
    assert_eq!(call(&mut g, 8, retried(2, 2, 1, 1)), Ok(5));
    assert_eq!(same_sessions_everywhere(&g), vec![2, 3]);
}

#[test]
fn idle_sessions_expire_at_the_same_log_position_on_every_replica() {
    let mut g = bounded_group(SessionLimits {
        sessions_max: 100,
        idle_entries_max: 3,
    });
    assert_eq!(call(&mut g, 1, add(1, 1, 1, 1)), Ok(1));
    let active = g[0].sessions().get(ClientId(1)).expect("recorded").active;
    for seq in 1..=3 {
        call(&mut g, 1 + seq, add(2, seq, 1, 1)).expect("applies");
    }
    assert_eq!(g[0].applied(), LogIndex(active.0 + 3));
    assert_eq!(same_sessions_everywhere(&g), vec![1, 2], "idle for 3: kept");
    call(&mut g, 5, add(2, 4, 1, 1)).expect("applies");
    assert_eq!(same_sessions_everywhere(&g), vec![2], "idle for 4: expired");
    assert_eq!(
        call(&mut g, 6, retried(1, 1, 1, 1)),
        Err(Error::SessionExpired)
    );
}

/// A group whose table dropped client 2's session (seq 1) by eviction.
fn group_that_evicted_client_2() -> Vec<Replica<Counters>> {
    let mut g = bounded_group(SessionLimits {
        sessions_max: 1,
        idle_entries_max: 1_000,
    });
    assert_eq!(call(&mut g, 1, add(2, 1, 1, 1)), Ok(1));
    assert_eq!(call(&mut g, 2, add(3, 1, 1, 1)), Ok(2));
    assert!(g[0].sessions().dropped_any());
    g
}

#[test]
fn only_the_log_decides_session_expired_a_follower_redirects() {
    let mut g = group_that_evicted_client_2();
    let r = retried(2, 1, 1, 1);
    assert_eq!(
        g[1].session_answer(&r),
        None,
        "a follower may lag: it cannot tell the retry expired"
    );
    g[1].submit(9, r);
    let replies = g[1].take_replies();
    assert!(
        matches!(replies.as_slice(), [(9, Err(Error::NotLeader { .. }))]),
        "{replies:?}"
    );
    assert_eq!(
        call(&mut g, 10, retried(2, 1, 1, 1)),
        Err(Error::SessionExpired),
        "the leader's log decides"
    );
}

#[test]
fn a_group_that_does_not_own_an_expired_retry_answers_wrong_group() {
    let mut g = group_that_evicted_client_2();
    assert_eq!(
        call(&mut g, 9, retried(2, 2, 5, 1)),
        Err(Error::WrongGroup { gid: Gid(7) }),
        "slot 5 is not here: the client goes on to its owner, which may know the write"
    );
}

#[test]
fn a_retry_behind_its_first_attempt_in_the_log_is_a_duplicate_not_expired() {
    let mut g = group_that_evicted_client_2();
    // Client 4's first attempt is in the log, not applied yet, when its retry arrives.
    g[0].submit(9, add(4, 1, 1, 5));
    g[0].submit(10, retried(4, 1, 1, 5));
    assert!(g[0].take_replies().is_empty(), "both wait for the log");
    settle(&mut g);
    let mut replies = g[0].take_replies();
    replies.sort_by_key(|(req, _)| *req);
    assert_eq!(replies, vec![(9, Ok(7)), (10, Ok(7))], "applied once");
}
