//! The clerk core's policy, event by event: exact `Next` decisions for leader hints,
//! timeouts, backoff (in ticks), "may have applied", deadlines, and routing across groups
//! with one sequence-number stream.

use shardkv_client::{
    ClerkCore, Error, KvClerk, Next, Op, RetryPolicy, Route, Router, SingleGroup,
};
use shardkv_kv::{KvCommand, KvOutput, KvQuery, KvStore};
use shardkv_rsm::Request;
use shardkv_types::{Gid, NodeId, Rng, Seq};

const POLICY: RetryPolicy = RetryPolicy {
    attempt_ticks: 25,
    hedge_ticks: 0,
    backoff_ticks_max: 20,
    attempts_max: 1000,
    op_ticks_max: None,
};

fn clerk(policy: RetryPolicy) -> KvClerk {
    let router = SingleGroup::new(Gid(1), vec![NodeId(1), NodeId(2), NodeId(3)]);
    KvClerk::new(router, policy, Rng::new(5))
}

fn del() -> Op<KvCommand, KvQuery> {
    Op::Write(KvCommand::Delete { key: b"k".to_vec() })
}

fn sent(next: &Next<KvOutput>) -> (NodeId, u64) {
    match next {
        Next::Send {
            to, delay_ticks, ..
        } => (*to, *delay_ticks),
        other => panic!("expected a send, got {other:?}"),
    }
}

fn seq_of<C, Q>(req: Option<&Request<C, Q>>) -> Seq {
    match req {
        Some(Request::Write { seq, .. }) => *seq,
        _ => panic!("expected a write in flight"),
    }
}

#[test]
fn retries_keep_the_sequence_number_and_follow_leader_hints() {
    let mut c = clerk(POLICY);
    let (first, delay) = sent(&c.begin(del(), 0));
    assert_eq!(delay, 0);
    let seq = seq_of(c.current());
    assert_eq!(seq, Seq(1));
    let hint = if first == NodeId(3) {
        NodeId(1)
    } else {
        NodeId(3)
    };
    let next = c.on_response(1, first, Err(Error::NotLeader { leader: Some(hint) }));
    assert_eq!(sent(&next), (hint, 0), "a useful hint is followed at once");
    assert_eq!(
        seq_of(c.current()),
        seq,
        "the retry resends the same request"
    );
    let (after_timeout, _) = sent(&c.on_timeout(30, "no answer".into()));
    assert_ne!(after_timeout, hint, "a timeout moves on to the next server");
    let done = c.on_response(31, after_timeout, Ok(KvOutput::Done));
    assert_eq!(done, Next::Done(KvOutput::Done));
    assert_eq!(
        c.leader_of(Gid(1)),
        Some(after_timeout),
        "the answering server is leader"
    );
    let (to, _) = sent(&c.begin(del(), 40));
    assert_eq!(to, after_timeout);
    assert_eq!(seq_of(c.current()), Seq(2));
}

#[test]
fn a_new_operation_abandons_one_left_in_flight() {
    let mut c = clerk(POLICY);
    c.begin(del(), 0);
    assert_eq!(seq_of(c.current()), Seq(1));
    // The caller dropped the first operation: no panic, and a new sequence number.
    c.begin(del(), 0);
    assert_eq!(seq_of(c.current()), Seq(2));
}

#[test]
fn backoff_grows_in_ticks_while_no_leader_is_known_and_resets_on_a_hint() {
    let mut c = clerk(POLICY);
    let (mut to, _) = sent(&c.begin(del(), 0));
    let mut delays = Vec::new();
    for t in 1..=7 {
        let (next, delay) = sent(&c.on_response(t, to, Err(Error::NotLeader { leader: None })));
        delays.push(delay);
        to = next;
    }
    assert_eq!(delays, vec![1, 2, 4, 8, 16, 20, 20]);
    let hint = NodeId(to.0 % 3 + 1);
    let next = c.on_response(8, to, Err(Error::NotLeader { leader: Some(hint) }));
    assert_eq!(sent(&next), (hint, 0));
}

#[test]
fn a_hint_naming_an_unreachable_server_is_no_progress() {
    let mut c = clerk(POLICY);
    let (dead, _) = sent(&c.begin(del(), 0));
    let (other, _) = sent(&c.on_unreachable(1, "connection refused".into()));
    assert_ne!(other, dead);
    // The others still believe in the dead leader: following the hint is allowed, but the
    // backoff keeps growing instead of resetting.
    let next = c.on_response(2, other, Err(Error::NotLeader { leader: Some(dead) }));
    let (_, delay) = sent(&next);
    assert_eq!(delay, 2, "two fruitless attempts in a row");
}

#[test]
fn lost_leadership_then_a_definite_refusal_is_reported_as_may_have_applied() {
    let mut c = clerk(POLICY);
    let (to, _) = sent(&c.begin(del(), 0));
    let next = c.on_response(1, to, Err(Error::LostLeadership { leader: None }));
    let (to, _) = sent(&next);
    let end = c.on_response(2, to, Err(Error::Invalid { reason: "x".into() }));
    let Next::Failed(e) = end else {
        panic!("ends, got {end:?}")
    };
    assert!(
        e.may_have_applied(),
        "an earlier attempt may have applied: {e}"
    );
    assert!(c.current().is_none());
}

#[test]
fn definite_failures_end_the_operation() {
    let mut c = clerk(POLICY);
    let (to, _) = sent(&c.begin(Op::Read(KvQuery::Get { key: b"k".to_vec() }), 0));
    let e = Error::TooLarge { bytes: 10, max: 5 };
    assert_eq!(c.on_response(1, to, Err(e.clone())), Next::Failed(e));
    assert!(c.current().is_none());
    let (to, _) = sent(&c.begin(del(), 2));
    assert_eq!(
        c.on_response(3, to, Err(Error::Stale)),
        Next::Failed(Error::Stale),
        "stale: a later request was seen, so the outcome is unknown"
    );
}

#[test]
fn the_deadline_ends_a_write_as_unknown_only_if_an_attempt_may_have_reached_a_leader() {
    let policy = RetryPolicy {
        op_ticks_max: Some(100),
        ..POLICY
    };
    // Every server refuses: at the deadline the write surely did not apply.
    let mut c = clerk(policy);
    let (mut to, _) = sent(&c.begin(del(), 0));
    let mut now = 0;
    let end = loop {
        now += 10;
        match c.on_response(now, to, Err(Error::NotLeader { leader: None })) {
            Next::Send { to: t, .. } => to = t,
            other => break other,
        }
    };
    assert_eq!(end, Next::Failed(Error::NotLeader { leader: None }));
    assert!(now >= 100);
    // An attempt went unanswered: at the deadline the write may have applied.
    let (_, _) = sent(&c.begin(del(), 0));
    let next = c.on_timeout(50, "no answer".into());
    let (to, _) = sent(&next);
    let end = c.on_response(120, to, Err(Error::NotLeader { leader: None }));
    let Next::Failed(e) = end else {
        panic!("ends, got {end:?}")
    };
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
}

/// Routes keys starting with 'a' to group 1 and the others to group 2, until told the
/// config is stale; then knows nothing until `moved` hands it the new config, which routes
/// everything to group 2.
#[derive(Clone, Debug, Default)]
struct TwoGroups {
    stale: bool,
    moved: bool,
}

impl Router<KvCommand, KvQuery> for TwoGroups {
    fn route(&self, req: &Request<KvCommand, KvQuery>) -> Option<Route> {
        if self.stale {
            return None;
        }
        let key = match req {
            Request::Read(q) => q.key(),
            Request::Write { cmd, .. } => cmd.key(),
        };
        let gid = if key.starts_with(b"a") && !self.moved {
            Gid(1)
        } else {
            Gid(2)
        };
        let servers = (1..=3).map(|i| NodeId(gid.0 * 10 + i)).collect();
        Some(Route { gid, servers })
    }

    fn stale(&mut self) {
        self.stale = true;
    }
}

#[test]
fn wrong_group_refreshes_the_route_and_keeps_one_sequence_stream_across_groups() {
    let mut c: ClerkCore<KvStore, TwoGroups> =
        ClerkCore::new(TwoGroups::default(), POLICY, Rng::new(1));
    let put = |k: &str| {
        Op::Write(KvCommand::Put {
            key: k.into(),
            value: b"v".to_vec(),
        })
    };
    let next = c.begin(put("a1"), 0);
    let Next::Send { gid, to, .. } = next else {
        panic!("{next:?}")
    };
    assert_eq!(gid, Gid(1));
    assert_eq!(
        c.on_response(1, to, Ok(KvOutput::Done)),
        Next::Done(KvOutput::Done)
    );
    let next = c.begin(put("b1"), 2);
    let Next::Send { gid, to, .. } = next else {
        panic!("{next:?}")
    };
    assert_eq!(
        (gid, seq_of(c.current())),
        (Gid(2), Seq(2)),
        "one stream across groups"
    );
    assert_eq!(
        c.on_response(3, to, Ok(KvOutput::Done)),
        Next::Done(KvOutput::Done)
    );
    // The shard of "a…" moved to group 2; group 1 refuses.
    let Next::Send { to, .. } = c.begin(put("a2"), 4) else {
        panic!()
    };
    assert_eq!(
        c.on_response(5, to, Err(Error::WrongGroup { gid: Gid(1) })),
        Next::Refresh
    );
    c.router_mut().stale = false;
    c.router_mut().moved = true;
    let next = c.resume(6);
    let Next::Send {
        gid, delay_ticks, ..
    } = next
    else {
        panic!("{next:?}")
    };
    assert_eq!(
        (gid, delay_ticks),
        (Gid(2), 1),
        "after WrongGroup the clerk backs off (the new owner may still be pulling)"
    );
    assert_eq!(
        seq_of(c.current()),
        Seq(3),
        "the retry keeps its sequence number"
    );
    assert_eq!(
        c.leader_of(Gid(2)),
        Some(to_of(&next)),
        "leader cursor per group"
    );
}

fn to_of(next: &Next<KvOutput>) -> NodeId {
    match next {
        Next::Send { to, .. } => *to,
        _ => panic!(),
    }
}

/// Goal: the shell's own deadline ends an operation with what its attempts came to: a
/// definite failure if nothing may have applied, `Timeout` if some attempt may have.
/// Method: expire after an unreachable attempt, then after a lost one.
#[test]
fn expire_reports_the_last_error_unless_an_attempt_may_have_applied() {
    let mut c = clerk(POLICY);
    c.begin(del(), 0);
    c.on_unreachable(1, "cannot connect to x".into());
    match c.expire(2) {
        Next::Failed(Error::Unavailable { reason }) => assert_eq!(reason, "cannot connect to x"),
        other => panic!("expected the last error, got {other:?}"),
    }
    assert!(c.current().is_none(), "the operation ended");
    c.begin(del(), 3);
    c.on_timeout(30, "no answer".into());
    match c.expire(31) {
        Next::Failed(e @ Error::Timeout { .. }) => assert!(e.may_have_applied()),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn no_space_moves_on_and_ends_the_write_only_when_every_member_said_so() {
    // Goal: one full disk (a stalled old leader, a disk-low member) does not fail a write
    // the group could take; a group whose members all refuse ends it as not applied.
    let mut c = clerk(POLICY);
    let (first, _) = sent(&c.begin(del(), 0));
    let (second, _) = sent(&c.on_response(1, first, Err(Error::NoSpace)));
    assert_ne!(second, first, "moves on to another member");
    let done = c.on_response(2, second, Ok(KvOutput::Done));
    assert_eq!(done, Next::Done(KvOutput::Done));
    let (mut to, _) = sent(&c.begin(del(), 3));
    for t in 0..2 {
        to = sent(&c.on_response(4 + t, to, Err(Error::NoSpace))).0;
    }
    assert_eq!(
        c.on_response(6, to, Err(Error::NoSpace)),
        Next::Failed(Error::NoSpace),
        "all three members refused"
    );
    // A follower names the leader; the leader's disk is full: the group cannot take it.
    let (to, _) = sent(&c.begin(del(), 7));
    let leader = NodeId(to.0 % 3 + 1);
    let next = c.on_response(
        8,
        to,
        Err(Error::NotLeader {
            leader: Some(leader),
        }),
    );
    assert_eq!(sent(&next).0, leader);
    assert_eq!(
        c.on_response(9, leader, Err(Error::NoSpace)),
        Next::Failed(Error::NoSpace),
        "the confirmed leader refused"
    );
}

/// A group that gave the shard away and went silent, or whose leader is out of reach:
/// after as many failed attempts in a row as the group has servers (timeouts, refusals),
/// the clerk asks for a newer config (as the lab's clerk does), and resumes at the group
/// the new config names.
#[test]
fn every_server_of_a_group_failing_asks_for_a_newer_config() {
    let mut c: ClerkCore<KvStore, TwoGroups> =
        ClerkCore::new(TwoGroups::default(), POLICY, Rng::new(1));
    let mut next = c.begin(
        Op::Write(KvCommand::Put {
            key: b"a1".to_vec(),
            value: b"v".to_vec(),
        }),
        0,
    );
    for t in 1..=3 {
        let Next::Send { gid, to, .. } = next else {
            panic!("attempt {t}: {next:?}")
        };
        assert_eq!(gid, Gid(1));
        next = if t == 2 {
            c.on_response(t * 30, to, Err(Error::NotLeader { leader: None }))
        } else {
            c.on_timeout(t * 30, "silent".into())
        };
    }
    assert_eq!(
        next,
        Next::Refresh,
        "three failed attempts: the config may be stale"
    );
    let r = c.router_mut();
    r.stale = false;
    r.moved = true;
    let next = c.resume(100);
    let Next::Send { gid, .. } = next else {
        panic!("{next:?}")
    };
    assert_eq!(gid, Gid(2), "resumed at the group the new config names");
}

fn retry_of<C, Q>(req: Option<&Request<C, Q>>) -> bool {
    match req {
        Some(Request::Write { retry, .. }) => *retry,
        _ => panic!("expected a write in flight"),
    }
}

#[test]
fn a_resend_after_an_unknown_outcome_is_marked_a_retry_and_an_expired_session_ends_it() {
    let mut c = clerk(POLICY);
    let (first, _) = sent(&c.begin(del(), 0));
    assert!(!retry_of(c.current()), "a first attempt is not a retry");
    let next = c.on_response(1, first, Err(Error::NotLeader { leader: None }));
    let (to, _) = sent(&next);
    assert!(
        !retry_of(c.current()),
        "after a definite refusal the write surely never applied"
    );
    let (to2, _) = sent(&c.on_timeout(30, "no answer".into()));
    assert_ne!(to, to2);
    assert!(
        retry_of(c.current()),
        "the timed-out attempt may have applied"
    );
    assert_eq!(
        c.on_response(31, to2, Err(Error::SessionExpired)),
        Next::Failed(Error::SessionExpired),
        "the server cannot tell: the write may have applied"
    );
    assert!(Error::SessionExpired.may_have_applied());
    assert!(c.current().is_none());
    sent(&c.begin(del(), 40));
    assert!(!retry_of(c.current()), "the next write starts afresh");
}

#[test]
fn a_retried_failed_cas_is_reported_as_not_applied() {
    let mut c = clerk(POLICY);
    let cas = Op::Write(KvCommand::Cas {
        key: b"k".to_vec(),
        expected: None,
        new: b"v".to_vec(),
    });
    let (to, _) = sent(&c.begin(cas, 0));
    let (to2, _) = sent(&c.on_timeout(30, "no answer".into()));
    assert_ne!(to, to2);
    let e = Error::CasFailed { bytes: 1 << 20 };
    assert_eq!(
        c.on_response(31, to2, Err(e.clone())),
        Next::Failed(e),
        "the group's own answer about the applied CAS, not 'may have applied'"
    );
}

/// The production policy in ticks: 2.5 s attempts, a hedge after 300 ms of silence.
const HEDGING: RetryPolicy = RetryPolicy {
    attempt_ticks: 250,
    hedge_ticks: 30,
    ..POLICY
};

#[test]
fn the_shell_waits_the_hedge_delay_for_an_answer_when_hedging() {
    assert_eq!(HEDGING.silence_ticks(), 30);
    let off = RetryPolicy {
        hedge_ticks: 0,
        ..HEDGING
    };
    assert_eq!(off.silence_ticks(), 250, "no hedging: the whole attempt");
    let late = RetryPolicy {
        hedge_ticks: 400,
        ..HEDGING
    };
    assert_eq!(
        late.silence_ticks(),
        250,
        "never later than the attempt bound"
    );
}

/// Goal: a frozen leader (SIGSTOP: it neither answers nor is replaced for a while) costs a
/// client the hedge delay, not the attempt timeout. Method: a leader that never answers
/// until the group elects another at tick 80; the followers name the frozen one until
/// then; the operation must end soon after the election, well within one attempt timeout.
#[test]
fn a_frozen_leader_costs_the_hedge_delay_not_the_attempt_timeout() {
    let mut c = clerk(HEDGING);
    let (frozen, _) = sent(&c.begin(del(), 0));
    let elected = NodeId(frozen.0 % 3 + 1);
    let mut now = 0;
    let mut next = c.on_timeout(HEDGING.silence_ticks(), "silent".into());
    now += HEDGING.silence_ticks();
    let mut sends = 0;
    let done_at = loop {
        sends += 1;
        assert!(sends < 100, "bounded");
        let (to, delay) = match &next {
            Next::Done(_) => break now,
            Next::Send {
                to, delay_ticks, ..
            } => (*to, *delay_ticks),
            other => panic!("unexpected {other:?}"),
        };
        now += delay;
        next = if to == frozen {
            now += HEDGING.silence_ticks();
            c.on_timeout(now, "silent".into())
        } else if now < 80 {
            now += 1;
            let hint = Some(frozen);
            c.on_response(now, to, Err(Error::NotLeader { leader: hint }))
        } else if to == elected {
            now += 1;
            c.on_response(now, to, Ok(KvOutput::Done))
        } else {
            now += 1;
            let hint = Some(elected);
            c.on_response(now, to, Err(Error::NotLeader { leader: hint }))
        };
    };
    assert!(
        done_at < 80 + HEDGING.attempt_ticks / 2,
        "done at tick {done_at}: the election was at 80, one attempt is 250"
    );
}

/// Goal: with hedging, the silent attempt's answer still counts: the first answer wins,
/// whichever server it comes from, and the hedge carries the same sequence number.
#[test]
fn a_hedged_write_keeps_its_sequence_number_and_takes_the_first_answer() {
    let mut c = clerk(HEDGING);
    let (first, _) = sent(&c.begin(del(), 0));
    let seq = seq_of(c.current());
    let (second, delay) = sent(&c.on_timeout(30, "silent".into()));
    assert_ne!(second, first, "the hedge goes to another member");
    assert_eq!(delay, 0, "at once");
    assert_eq!(seq_of(c.current()), seq, "the same request");
    let done = c.on_response(35, first, Ok(KvOutput::Done));
    assert_eq!(
        done,
        Next::Done(KvOutput::Done),
        "the silent one answered first"
    );
    assert_eq!(c.leader_of(Gid(1)), Some(first));
}

/// Goal: once an attempt may have applied, the operation ends as "applied" or "may have
/// applied", never "not applied" — also when the shell ends it with a refusal of its own
/// (a frame the server refused). Method: a silent attempt, then `end` with `TooLarge`.
#[test]
fn a_refusal_after_an_attempt_may_have_applied_ends_as_may_have_applied() {
    let mut c = clerk(POLICY);
    let (_, _) = sent(&c.begin(del(), 0));
    c.on_timeout(25, "silent".into());
    let end = c.end(26, Error::TooLarge { bytes: 9, max: 5 });
    let Next::Failed(e) = end else {
        panic!("ends, got {end:?}")
    };
    assert!(e.may_have_applied(), "{e}");
    let text = e.to_string();
    assert!(text.contains("may have applied"), "{text}");
    assert!(
        !text.contains("not applied"),
        "one verdict per message: {text}"
    );
    // Nothing may have applied: the refusal stands.
    c.begin(del(), 30);
    let e = Error::TooLarge { bytes: 9, max: 5 };
    assert_eq!(c.end(31, e.clone()), Next::Failed(e));
}

/// Goal: an answer too large to read ends a write as "may have applied" (it was applied,
/// or its stored answer would be as large on every retry) and a read as a failure.
#[test]
fn an_unreadable_answer_ends_a_write_as_unknown_and_a_read_as_failed() {
    let mut c = clerk(POLICY);
    c.begin(del(), 0);
    match c.on_unreadable(1, "answer over the limit".into()) {
        Next::Failed(e) => assert!(e.may_have_applied(), "{e}"),
        other => panic!("ends, got {other:?}"),
    }
    c.begin(Op::Read(KvQuery::Get { key: b"k".to_vec() }), 2);
    match c.on_unreadable(3, "answer over the limit".into()) {
        Next::Failed(e) => assert!(!e.may_have_applied(), "{e}"),
        other => panic!("ends, got {other:?}"),
    }
}

/// Goal: a request over the limits is refused before it is sent, with its real size (so a
/// frame refused by a server can only be an answer that did not fit).
#[test]
fn a_request_over_the_limits_is_refused_before_it_is_sent() {
    let mut c = clerk(POLICY);
    let value = vec![0u8; shardkv_kv::VALUE_BYTES_MAX + 1];
    let put = Op::Write(KvCommand::Put {
        key: b"k".to_vec(),
        value,
    });
    match c.begin(put, 0) {
        Next::Failed(Error::TooLarge { bytes, .. }) => {
            assert_eq!(bytes, shardkv_kv::VALUE_BYTES_MAX as u64 + 1)
        }
        other => panic!("refused, got {other:?}"),
    }
    assert!(c.current().is_none());
}

#[test]
fn a_resumed_session_continues_its_id_and_sequence_and_retries_the_pending_write() {
    use shardkv_types::ClientId;
    let mut c = clerk(POLICY);
    c.resume_session(ClientId(77), Seq(5), true);
    assert_eq!(c.id, ClientId(77));
    let (to, _) = sent(&c.begin(del(), 0));
    assert_eq!(seq_of(c.current()), Seq(5), "the recorded sequence number");
    assert!(
        retry_of(c.current()),
        "a write that may have applied is resent as a retry from its first attempt"
    );
    let next = c.on_response(1, to, Err(Error::TooLarge { bytes: 10, max: 5 }));
    let Next::Failed(e) = next else {
        panic!("expected the write to end, got {next:?}");
    };
    assert!(
        e.may_have_applied(),
        "a retry never ends as \"not applied\": {e}"
    );
    sent(&c.begin(del(), 10));
    assert_eq!(seq_of(c.current()), Seq(6), "the stream goes on");
    assert!(!retry_of(c.current()), "only the first write is the retry");
    c.abandon();
    c.resume_session(ClientId(78), Seq(9), false);
    sent(&c.begin(del(), 20));
    assert_eq!(seq_of(c.current()), Seq(9));
    assert!(!retry_of(c.current()), "a new write is a first attempt");
}
