//! Client sessions: the exactly-once table. Each client numbers its requests; the table
//! keeps, per client, the highest sequence number applied, what its retries need of its
//! reply ([`crate::StateMachine::record`]) and the log index of its last activity.
//!
//! The table is bounded, and every replica drops the same sessions at the same log
//! position (see [`SessionLimits`]): a session expires once `idle_entries_max` entries were
//! applied after its last activity, and when a write would make the table hold more than
//! `sessions_max` sessions, the least recently active one is evicted (ties: lowest client
//! id). Activity is the log index of the client's last applied write here, or of the
//! install that brought its session in with a shard.
//!
//! A dropped session cannot answer a retry, so the table remembers that it dropped some
//! ([`Sessions::dropped_any`]): a retry ([`Seen::Expired`]) of a client it holds no
//! session of is then refused with `SessionExpired` (it may have applied), never applied
//! again. Sessions move between groups with shards, so a session that is here may be older
//! than a request of its client that applied in another table and was dropped there (or
//! here, its memory flushed by a merge): after a merge that involves dropped sessions, the
//! sessions active at or before it do not vouch for a retry either, until their client's
//! next write here (`uncertain_through`, replicated like the rest). A first attempt of a write needs no session: it never applied anywhere. The
//! last [`DROPPED_REMEMBERED`] dropped sessions are remembered by client and sequence
//! number only, so a copy of a first attempt that reaches the log twice (a network that
//! duplicates requests) is not applied twice either, and such a client's next write is
//! known to be new.

use serde::{Deserialize, Serialize};
use shardkv_types::{ClientId, LogIndex, Seq};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many dropped sessions a table remembers (client and sequence number, 16 bytes each).
pub const DROPPED_REMEMBERED: usize = 1024;

/// The last applied request of one client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session<O> {
    pub seq: Seq,
    /// What a retry of `seq` is answered from (the state machine's record of the output).
    pub output: O,
    /// The log index of the client's last activity in this table.
    pub active: LogIndex,
}

/// What the table says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a, O> {
    /// Never applied: apply it.
    New,
    /// The client's latest request, already applied: answer from the stored record.
    Duplicate(&'a O),
    /// Older than the client's latest request: the client already has its answer.
    Stale,
    /// A retry of a write that may have applied, from a client whose session is not here
    /// (or not trusted since a merge with dropped sessions) while this table has dropped
    /// sessions: it may have applied and been forgotten.
    Expired,
}

/// How many sessions a table keeps and for how long. Every member of a group must use the
/// same limits (they decide, at each log position, which sessions exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// The most sessions held; one more evicts the least recently active.
    pub sessions_max: usize,
    /// A session expires once this many log entries were applied after its last activity.
    pub idle_entries_max: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            sessions_max: 100_000,
            idle_entries_max: 10_000_000,
        }
    }
}

/// Sessions of every client. Part of every snapshot; moves with shards (merge keeps the
/// higher sequence number).
///
/// Invariant: `by_activity` holds exactly `(s.active, c)` for every `(c, s)` of
/// `by_client`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions<O> {
    by_client: BTreeMap<ClientId, Session<O>>,
    by_activity: BTreeSet<(LogIndex, ClientId)>,
    /// Some session was dropped from this table or from one merged into it.
    dropped_any: bool,
    /// The last sessions dropped here, oldest first: client and its last applied seq.
    recently_dropped: VecDeque<(ClientId, Seq)>,
    /// The last merge that involved dropped sessions (`dropped_any` after it): a session
    /// last active at or before it may be older than a request of its client that applied
    /// in a table whose record of it was dropped (in the giving group, or here while the
    /// merge flushed the memory of drops), so it cannot tell a retry from a new write.
    uncertain_through: LogIndex,
}

impl<O> Default for Sessions<O> {
    fn default() -> Self {
        Sessions {
            by_client: BTreeMap::new(),
            by_activity: BTreeSet::new(),
            dropped_any: false,
            recently_dropped: VecDeque::new(),
            uncertain_through: LogIndex(0),
        }
    }
}

impl<O: Clone> Sessions<O> {
    /// Where a request stands. `retry` says an earlier attempt of it may have applied.
    pub fn check(&self, client: ClientId, seq: Seq, retry: bool) -> Seen<'_, O> {
        let session = self.by_client.get(&client);
        match session {
            Some(s) if seq == s.seq => return Seen::Duplicate(&s.output),
            Some(s) if seq < s.seq => return Seen::Stale,
            _ => {}
        }
        // Newer than any session here. A remembered dropped session says exactly which of
        // its requests applied; past that, a retry without a session may have applied in
        // a forgotten one.
        let forgotten = self
            .recently_dropped
            .iter()
            .filter(|(c, _)| *c == client)
            .map(|(_, s)| *s)
            .max();
        // A session last active at or before a merge with dropped sessions may be older
        // than a request of its client that applied elsewhere and was forgotten.
        let trusted = session.is_some_and(|s| s.active > self.uncertain_through);
        if forgotten.is_some_and(|last| seq <= last) || (retry && self.dropped_any && !trusted) {
            Seen::Expired
        } else {
            Seen::New
        }
    }

    /// Records that `client`'s request `seq` was applied at log index `at`, keeping
    /// `output` for its retries; then evicts the least recently active sessions past
    /// `limits.sessions_max`.
    ///
    /// # Panics
    /// If `seq` is not newer than the stored one (the caller must `check` first).
    pub fn record(
        &mut self,
        client: ClientId,
        seq: Seq,
        output: O,
        at: LogIndex,
        limits: &SessionLimits,
    ) {
        let prev = self.insert(
            client,
            Session {
                seq,
                output,
                active: at,
            },
        );
        assert!(
            prev.is_none_or(|p| p.seq < seq),
            "session of {client} went back"
        );
        self.evict_past(limits.sessions_max);
    }

    /// Drops the sessions idle for more than `limits.idle_entries_max` entries at log
    /// index `now`. Called for every applied entry, so every replica drops them at the same
    /// position.
    pub fn expire(&mut self, now: LogIndex, limits: &SessionLimits) {
        while let Some(&(active, client)) = self.by_activity.first() {
            if now.0.saturating_sub(active.0) <= limits.idle_entries_max {
                break;
            }
            self.drop_session(client);
        }
    }

    /// Merges another table at log index `at`, keeping the newer session per client.
    pub fn merge(&mut self, other: &Sessions<O>, at: LogIndex, limits: &SessionLimits) {
        self.merge_part(
            other.dropped_any,
            other.recently_dropped.iter().copied(),
            other.iter(),
            at,
            limits,
        );
    }

    /// Merges part of another table at log index `at` (a table that travels piece by
    /// piece): its mark that it dropped sessions, the drops it remembers (oldest first), and
    /// some of its sessions, each kept if newer than this table's and then active at `at`.
    /// If dropped sessions are involved (`dropped_any` after the merge), every session
    /// active at or before `at` stops being trusted to tell a retry from a new write (see
    /// [`Sessions::check`]) until its client's next write here.
    pub fn merge_part<'a>(
        &mut self,
        dropped_any: bool,
        dropped: impl IntoIterator<Item = (ClientId, Seq)>,
        sessions: impl IntoIterator<Item = (ClientId, &'a Session<O>)>,
        at: LogIndex,
        limits: &SessionLimits,
    ) where
        O: 'a,
    {
        self.dropped_any |= dropped_any;
        self.remember_dropped(dropped);
        for (c, s) in sessions {
            self.merge_one(c, s, at, limits);
        }
        if self.dropped_any {
            self.uncertain_through = self.uncertain_through.max(at);
        }
    }

    fn merge_one(
        &mut self,
        client: ClientId,
        s: &Session<O>,
        at: LogIndex,
        limits: &SessionLimits,
    ) {
        if self
            .by_client
            .get(&client)
            .is_none_or(|mine| mine.seq < s.seq)
        {
            self.insert(
                client,
                Session {
                    active: at,
                    ..s.clone()
                },
            );
            self.evict_past(limits.sessions_max);
        }
    }

    /// The sessions dropped last here (client and its last applied sequence number),
    /// oldest first: they travel with a merge so that the new table answers as this one.
    pub fn recently_dropped(&self) -> impl Iterator<Item = (ClientId, Seq)> + '_ {
        self.recently_dropped.iter().copied()
    }

    fn remember_dropped(&mut self, dropped: impl IntoIterator<Item = (ClientId, Seq)>) {
        for d in dropped {
            self.dropped_any = true;
            if self.recently_dropped.len() == DROPPED_REMEMBERED {
                self.recently_dropped.pop_front();
            }
            self.recently_dropped.push_back(d);
        }
    }

    /// True once a session was dropped here or in a table merged into this one: a retry
    /// of an unknown client may then have applied.
    pub fn dropped_any(&self) -> bool {
        self.dropped_any
    }

    /// The session of `client`, if it has one.
    pub fn get(&self, client: ClientId) -> Option<&Session<O>> {
        self.by_client.get(&client)
    }

    /// The sessions of clients after `after` (all for `None`), in client order.
    pub fn iter_after(
        &self,
        after: Option<ClientId>,
    ) -> impl Iterator<Item = (ClientId, &Session<O>)> {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.by_client
            .range((lower, Bound::Unbounded))
            .map(|(c, s)| (*c, s))
    }

    /// Every session, in client order.
    pub fn iter(&self) -> impl Iterator<Item = (ClientId, &Session<O>)> {
        self.by_client.iter().map(|(c, s)| (*c, s))
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    fn insert(&mut self, client: ClientId, s: Session<O>) -> Option<Session<O>> {
        let active = s.active;
        let prev = self.by_client.insert(client, s);
        if let Some(p) = &prev {
            self.by_activity.remove(&(p.active, client));
        }
        self.by_activity.insert((active, client));
        debug_assert_eq!(self.by_activity.len(), self.by_client.len());
        prev
    }

    fn evict_past(&mut self, max: usize) {
        while self.by_client.len() > max.max(1) {
            let &(_, client) = self.by_activity.first().expect("not empty");
            self.drop_session(client);
        }
    }

    fn drop_session(&mut self, client: ClientId) {
        let s = self.by_client.remove(&client).expect("indexed session");
        let removed = self.by_activity.remove(&(s.active, client));
        assert!(removed, "every session is indexed by its activity");
        self.remember_dropped([(client, s.seq)]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_last_dropped_sessions_are_remembered() {
        let limits = SessionLimits {
            sessions_max: 1,
            idle_entries_max: u64::MAX,
        };
        let mut s = Sessions::default();
        let n = DROPPED_REMEMBERED as u64 + 2;
        for c in 0..n {
            s.record(ClientId(c), Seq(3), (), LogIndex(c + 1), &limits);
        }
        assert_eq!(s.len(), 1);
        assert_eq!(s.recently_dropped.len(), DROPPED_REMEMBERED);
        assert_eq!(
            s.check(ClientId(1), Seq(3), false),
            Seen::Expired,
            "remembered"
        );
        assert_eq!(
            s.check(ClientId(0), Seq(3), false),
            Seen::New,
            "forgotten: only a retry is refused"
        );
        assert_eq!(s.check(ClientId(0), Seq(3), true), Seen::Expired);
        let mut other = Sessions::<()>::default();
        other.merge(&s, LogIndex(1), &limits);
        assert_eq!(
            other.check(ClientId(1), Seq(3), false),
            Seen::Expired,
            "remembered drops travel with a merge"
        );
    }

    use super::*;

    const WIDE: SessionLimits = SessionLimits {
        sessions_max: 100,
        idle_entries_max: 1000,
    };

    #[test]
    fn retry_gets_stored_reply_and_older_requests_are_stale() {
        let mut s = Sessions::default();
        let c = ClientId(9);
        assert_eq!(s.check(c, Seq(1), false), Seen::New);
        s.record(c, Seq(1), "a", LogIndex(1), &WIDE);
        assert_eq!(s.check(c, Seq(1), true), Seen::Duplicate(&"a"));
        s.record(c, Seq(2), "b", LogIndex(2), &WIDE);
        assert_eq!(s.check(c, Seq(1), true), Seen::Stale);
        assert_eq!(s.check(c, Seq(3), false), Seen::New);
        let mut other = Sessions::default();
        other.record(c, Seq(5), "z", LogIndex(1), &WIDE);
        other.record(ClientId(1), Seq(1), "y", LogIndex(2), &WIDE);
        s.merge(&other, LogIndex(3), &WIDE);
        assert_eq!(s.check(c, Seq(5), true), Seen::Duplicate(&"z"));
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.get(c).map(|x| x.active),
            Some(LogIndex(3)),
            "a merged session is active at the merge"
        );
    }

    #[test]
    fn sessions_expire_by_log_position_and_a_retry_then_gets_expired() {
        let limits = SessionLimits {
            sessions_max: 10,
            idle_entries_max: 5,
        };
        let mut s = Sessions::default();
        s.record(ClientId(1), Seq(1), "a", LogIndex(1), &limits);
        s.record(ClientId(2), Seq(1), "b", LogIndex(3), &limits);
        s.expire(LogIndex(6), &limits);
        assert_eq!(s.len(), 2, "idle for exactly the limit: kept");
        assert!(!s.dropped_any());
        assert_eq!(
            s.check(ClientId(7), Seq(4), true),
            Seen::New,
            "nothing dropped yet: an unknown client never applied here"
        );
        s.expire(LogIndex(7), &limits);
        assert!(s.get(ClientId(1)).is_none(), "idle for 6 > 5 entries");
        assert!(s.get(ClientId(2)).is_some());
        assert_eq!(s.check(ClientId(1), Seq(1), true), Seen::Expired);
        assert_eq!(
            s.check(ClientId(1), Seq(1), false),
            Seen::Expired,
            "a duplicated first attempt of a forgotten write is not applied again"
        );
        assert_eq!(
            s.check(ClientId(1), Seq(2), false),
            Seen::New,
            "the dropped session's last write is remembered: seq 2 never applied"
        );
        assert_eq!(
            s.check(ClientId(8), Seq(2), false),
            Seen::New,
            "a first attempt never applied: it needs no session"
        );
        assert_eq!(s.check(ClientId(8), Seq(2), true), Seen::Expired);
        s.expire(LogIndex(9), &limits);
        assert!(s.is_empty());
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_active_session() {
        let limits = SessionLimits {
            sessions_max: 3,
            idle_entries_max: 1000,
        };
        let mut s = Sessions::default();
        for (i, c) in [5, 1, 9].into_iter().enumerate() {
            s.record(ClientId(c), Seq(1), "x", LogIndex(i as u64 + 1), &limits);
        }
        // Client 5 writes again: now client 1 is the least recently active.
        s.record(ClientId(5), Seq(2), "y", LogIndex(4), &limits);
        s.record(ClientId(3), Seq(1), "z", LogIndex(5), &limits);
        let held: Vec<u64> = s.iter().map(|(c, _)| c.0).collect();
        assert_eq!(held, vec![3, 5, 9]);
        assert_eq!(s.check(ClientId(1), Seq(1), true), Seen::Expired);
        // A merge brings three sessions at one index: ties evict the lowest client id, and
        // the dropped mark travels with the merge.
        let mut other = Sessions::default();
        for c in [20, 21, 22] {
            other.record(ClientId(c), Seq(1), "m", LogIndex(1), &limits);
        }
        let mut fresh = Sessions::default();
        fresh.record(ClientId(30), Seq(1), "f", LogIndex(1), &limits);
        fresh.merge(&other, LogIndex(2), &limits);
        let held: Vec<u64> = fresh.iter().map(|(c, _)| c.0).collect();
        assert_eq!(
            held,
            vec![20, 21, 22],
            "client 30 was least recently active"
        );
        assert!(fresh.dropped_any());
        let mut clean = Sessions::<&str>::default();
        clean.merge(&s, LogIndex(9), &limits);
        assert!(
            clean.dropped_any(),
            "the mark of the merged table comes along"
        );
    }

    /// `n` dropped sessions of clients other than those the tests look at.
    fn others_dropped(n: u64) -> impl Iterator<Item = (ClientId, Seq)> {
        (0..n).map(|k| (ClientId(100_000 + k), Seq(1)))
    }

    #[test]
    fn an_own_older_session_does_not_vouch_for_a_retry_after_a_merge_with_drops() {
        // C's seq 5 applied here; its seq 7 applied in the giving group, which dropped and
        // forgot it; that group's table arrives with its mark and without C.
        let c = ClientId(7);
        let mut s = Sessions::default();
        s.record(c, Seq(5), "a", LogIndex(1), &WIDE);
        s.merge_part(
            true,
            others_dropped(DROPPED_REMEMBERED as u64),
            [],
            LogIndex(2),
            &WIDE,
        );
        assert_eq!(
            s.check(c, Seq(7), true),
            Seen::Expired,
            "seq 7 may have applied"
        );
        assert_eq!(s.check(c, Seq(5), true), Seen::Duplicate(&"a"));
        assert_eq!(
            s.check(c, Seq(7), false),
            Seen::New,
            "a first attempt never applied"
        );
        // C's next write here makes its session trusted again.
        s.record(c, Seq(8), "b", LogIndex(3), &WIDE);
        assert_eq!(s.check(c, Seq(9), true), Seen::New);
    }

    #[test]
    fn a_merged_older_session_does_not_hide_a_forgotten_drop_here() {
        // C's seq 7 applied here and C was evicted; one install from the old owner flushes
        // the memory of (C, 7) and brings C's older session (seq 5).
        let limits = SessionLimits {
            sessions_max: 2,
            idle_entries_max: u64::MAX,
        };
        let c = ClientId(7);
        let mut s = Sessions::default();
        s.record(c, Seq(7), "x", LogIndex(10), &limits);
        s.record(ClientId(1), Seq(1), "y", LogIndex(11), &limits);
        s.record(ClientId(2), Seq(1), "y", LogIndex(12), &limits);
        assert!(s.get(c).is_none());
        assert_eq!(s.check(c, Seq(7), true), Seen::Expired);
        let older = Session {
            seq: Seq(5),
            output: "o",
            active: LogIndex(1),
        };
        s.merge_part(
            true,
            others_dropped(DROPPED_REMEMBERED as u64),
            [(c, &older)],
            LogIndex(13),
            &limits,
        );
        assert_eq!(s.get(c).map(|x| x.seq), Some(Seq(5)));
        assert_eq!(
            s.check(c, Seq(7), true),
            Seen::Expired,
            "seq 7 applied here"
        );
    }

    #[test]
    fn one_large_merge_into_a_full_table_does_not_resurrect_an_older_session() {
        // The merge evicts C (seq 7, applied here), flushes its memory with later
        // evictions, and brings C's older session from a table that never dropped one.
        let limits = SessionLimits {
            sessions_max: 3,
            idle_entries_max: u64::MAX,
        };
        let wide = SessionLimits {
            sessions_max: 1 << 20,
            idle_entries_max: u64::MAX,
        };
        let c = ClientId(1 << 40);
        let mut giver = Sessions::default();
        for k in 1..=2 * DROPPED_REMEMBERED as u64 {
            giver.record(ClientId(k), Seq(1), "g", LogIndex(k), &wide);
        }
        giver.record(c, Seq(5), "g", LogIndex(1 << 20), &wide);
        assert!(!giver.dropped_any());
        let mut s = Sessions::default();
        s.record(c, Seq(7), "x", LogIndex(10), &limits);
        s.merge(&giver, LogIndex(20), &limits);
        assert_eq!(s.get(c).map(|x| x.seq), Some(Seq(5)));
        assert_eq!(
            s.check(c, Seq(7), true),
            Seen::Expired,
            "seq 7 applied here"
        );
    }

    #[test]
    fn a_merge_without_any_drop_keeps_sessions_trusted() {
        let c = ClientId(7);
        let mut s = Sessions::default();
        s.record(c, Seq(5), "a", LogIndex(1), &WIDE);
        let mut other = Sessions::default();
        other.record(ClientId(2), Seq(1), "b", LogIndex(1), &WIDE);
        s.merge(&other, LogIndex(2), &WIDE);
        assert!(!s.dropped_any());
        assert_eq!(
            s.check(c, Seq(6), true),
            Seen::New,
            "nothing was ever forgotten"
        );
    }
}
