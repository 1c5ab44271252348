//! `Replica<SM>`: one member of a replicated state machine. It owns the Raft node, the
//! state machine and the session table, and turns client requests into log entries or
//! ReadIndex reads and committed entries into replies.

use crate::machine::Applying;
use crate::request::{Proposal, Request};
use crate::session::{Seen, SessionLimits, Sessions};
use crate::{Error, Reply, ReqId, StateMachine};
use serde::{Deserialize, Serialize};
use shardkv_raft::{Config, Message, ProposeError, RawNode, Ready, Restored, Role, Snapshot};
use shardkv_types::{
    ClientId, ConfChange, ConfEntry, Entry, EntryKind, LogIndex, Membership, Seq, Term,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything a snapshot holds: the state machine and the sessions, at one applied index.
#[derive(Serialize, Deserialize)]
struct SnapshotBody<S, T> {
    sm: S,
    sessions: T,
}

#[derive(Debug)]
struct PendingWrite {
    req: ReqId,
    term: Term,
}

#[derive(Debug)]
struct PendingRead<Q> {
    req: ReqId,
    query: Q,
}

/// When to snapshot and how much to accept.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaOptions {
    /// Snapshot when the persisted Raft state exceeds this many bytes; never when `None`.
    pub raft_state_bytes_max: Option<u64>,
    /// The largest encoded command accepted.
    pub command_bytes_max: usize,
    /// How many client sessions are kept, and for how long (the same on every member).
    pub sessions: SessionLimits,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            raft_state_bytes_max: None,
            command_bytes_max: 4 << 20,
            sessions: SessionLimits::default(),
        }
    }
}

/// One replica. Drive it like a `RawNode`: `tick`, `step`, `submit` (or `propose`, `read`,
/// `propose_internal`); then loop `ready` → persist + send → `advance`; then hand
/// `take_replies` to clients.
///
/// Invariants: every request gets exactly one reply; a write is answered with an output
/// only if the entry it was proposed as committed and was applied here; entries are
/// applied contiguously (`applied` only grows by one, or jumps to a newer snapshot); a read
/// is served only once `applied` reached its confirmed index.
pub struct Replica<SM: StateMachine> {
    raft: RawNode,
    sm: SM,
    sessions: Sessions<SM::Output>,
    opts: ReplicaOptions,
    /// The index of the last entry applied to `sm` (or covered by its snapshot).
    applied: LogIndex,
    /// Writes proposed here, by log index.
    writes: BTreeMap<LogIndex, PendingWrite>,
    /// Reads waiting for Raft to confirm a read index, by ReadIndex context.
    reads_unconfirmed: BTreeMap<u64, PendingRead<SM::Query>>,
    /// Reads confirmed at an index, waiting for it to be applied.
    reads_confirmed: Vec<(LogIndex, PendingRead<SM::Query>)>,
    next_read_ctx: u64,
    replies: Vec<(ReqId, Reply<SM::Output>)>,
    /// Membership changes applied and not yet taken by the shell (bounded).
    conf_applied: Vec<(LogIndex, ConfEntry)>,
}

/// The most applied membership changes kept for the shell between two
/// [`Replica::take_applied_conf_changes`]; older ones are dropped (logged).
pub const CONF_APPLIED_MAX: usize = 64;

impl<SM: StateMachine> Replica<SM> {
    /// Starts a replica from what storage recovered. `initial` is the state before the first
    /// entry (the same on every member); a recovered snapshot replaces it.
    pub fn new(
        cfg: Config,
        restored: Restored,
        seed: u64,
        opts: ReplicaOptions,
        initial: SM,
    ) -> Result<Self, String> {
        let (sm, sessions, applied) = match &restored.snapshot {
            Some(s) => {
                let (sm, sessions) = decode_snapshot::<SM>(&s.data)?;
                (sm, sessions, s.meta.index)
            }
            None => (initial, Sessions::default(), LogIndex(0)),
        };
        let raft = RawNode::new(cfg, restored, seed);
        assert_eq!(
            raft.log().applied(),
            applied,
            "the Raft core resumes applying right after the snapshot"
        );
        Ok(Replica {
            raft,
            sm,
            sessions,
            opts,
            applied,
            writes: BTreeMap::new(),
            reads_unconfirmed: BTreeMap::new(),
            reads_confirmed: Vec::new(),
            next_read_ctx: 1,
            replies: Vec::new(),
            conf_applied: Vec::new(),
        })
    }

    pub fn raft(&self) -> &RawNode {
        &self.raft
    }

    /// The group's membership as this member's log has it (committed or not).
    pub fn conf(&self) -> Membership {
        self.raft.conf()
    }

    /// Proposes a single-server membership change (see `RawNode::propose_conf_change` for
    /// what is refused and why). Returns the entry's index; it is in force at once and
    /// reported by [`Replica::take_applied_conf_changes`] once applied.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<LogIndex, ProposeError> {
        self.raft.propose_conf_change(cc)
    }

    /// The membership changes applied since the last call, in log order: the shell records
    /// the voter set and learns new members' addresses from them.
    pub fn take_applied_conf_changes(&mut self) -> Vec<(LogIndex, ConfEntry)> {
        std::mem::take(&mut self.conf_applied)
    }

    pub fn state_machine(&self) -> &SM {
        &self.sm
    }

    pub fn sessions(&self) -> &Sessions<SM::Output> {
        &self.sessions
    }

    /// The index of the last entry applied to the state machine.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    pub fn tick(&mut self) {
        self.raft.tick();
    }

    pub fn step(&mut self, m: Message) {
        self.raft.step(m);
    }

    /// Hands leadership to another member (for graceful shutdown and rebalancing).
    pub fn transfer_leader(&mut self, to: shardkv_types::NodeId) {
        let _ = self.raft.transfer_leader(to);
    }

    /// The Raft core, for the host's storage policy (`RawNode::set_storage_full`,
    /// `RawNode::hand_off_unwritten`, `RawNode::transfer_leader`): calls that add no entry
    /// the replica waits on.
    pub fn raft_mut(&mut self) -> &mut RawNode {
        &mut self.raft
    }

    /// Takes a client request: checks its limits ([`StateMachine::validate`]), then reads
    /// or proposes it. The answer comes back through `take_replies` under `req`.
    pub fn submit(&mut self, req: ReqId, request: Request<SM::Command, SM::Query>) {
        if let Err(e) = SM::validate(&request) {
            return self.replies.push((req, Err(e)));
        }
        match request {
            Request::Read(q) => self.read(req, q),
            Request::Write {
                client,
                seq,
                retry,
                cmd,
            } => self.propose(req, client, seq, retry, cmd),
        }
    }

    /// Submits a write. A retry (same client, same seq) of an applied write is answered from
    /// the session table without touching the log. A retry the table cannot answer any more
    /// is still proposed: only its log position decides `SessionExpired`, after leadership
    /// (a follower answers `NotLeader`), the state machine's own refusal (`WrongGroup`) and
    /// an earlier attempt still in the log (which makes it a duplicate). `retry`: an earlier
    /// attempt may have applied.
    pub fn propose(
        &mut self,
        req: ReqId,
        client: ClientId,
        seq: Seq,
        retry: bool,
        cmd: SM::Command,
    ) {
        match self.sessions.check(client, seq, retry) {
            Seen::Duplicate(out) => return self.replies.push((req, SM::replay(&cmd, out))),
            Seen::Stale => return self.replies.push((req, Err(Error::Stale))),
            Seen::Expired | Seen::New => {}
        }
        let proposal = Proposal::Client {
            client,
            seq,
            retry,
            cmd,
        };
        let index = match self.propose_entry(&proposal) {
            Ok(index) => index,
            Err(e) => return self.replies.push((req, Err(e))),
        };
        let term = self.raft.term();
        if let Some(old) = self.writes.insert(index, PendingWrite { req, term }) {
            // An older proposal at this index was overwritten by a new leader's log; the
            // same request may still apply through another attempt.
            let leader = self.raft.leader();
            self.replies
                .push((old.req, Err(Error::LostLeadership { leader })));
        }
    }

    /// The answer the session table alone gives `r` (a retry of an applied write), if any:
    /// what a member that cannot write still answers. Never `SessionExpired` for want of a
    /// session: a lagging member, or one whose group does not own the request, cannot
    /// decide that (see [`Replica::propose`]); a record whose answer was not kept can
    /// replay as `SessionExpired` (the state machine's `replay`).
    pub fn session_answer(&self, r: &Request<SM::Command, SM::Query>) -> Option<Reply<SM::Output>> {
        let Request::Write {
            client,
            seq,
            retry,
            cmd,
        } = r
        else {
            return None;
        };
        match self.sessions.check(*client, *seq, *retry) {
            Seen::Duplicate(out) => Some(SM::replay(cmd, out)),
            Seen::Expired | Seen::New | Seen::Stale => None,
        }
    }

    /// Proposes a command of the group itself (no session, no client waiting). Returns the
    /// index it was proposed at; whether it commits there is seen by applying it.
    pub fn propose_internal(&mut self, cmd: SM::Internal) -> Result<LogIndex, Error> {
        self.propose_entry(&Proposal::Internal(cmd))
    }

    fn propose_entry(
        &mut self,
        p: &Proposal<SM::Command, SM::Internal>,
    ) -> Result<LogIndex, Error> {
        let data = postcard::to_allocvec(p).expect("encoding to memory cannot fail");
        if data.len() > self.opts.command_bytes_max {
            return Err(Error::TooLarge {
                bytes: data.len() as u64,
                max: self.opts.command_bytes_max as u64,
            });
        }
        self.raft.propose(data).map_err(from_propose_error)
    }

    /// Submits a linearizable read (ReadIndex: no log entry).
    pub fn read(&mut self, req: ReqId, query: SM::Query) {
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        match self.raft.read_index(ctx) {
            Ok(()) => {
                self.reads_unconfirmed
                    .insert(ctx, PendingRead { req, query });
            }
            Err(e) => self.replies.push((req, Err(from_propose_error(e)))),
        }
    }

    /// The next Raft batch for the shell to persist and send, if any.
    pub fn ready(&mut self) -> Option<Ready> {
        self.raft.has_ready().then(|| self.raft.ready())
    }

    /// Applies a batch the shell has persisted and whose messages it sent (take
    /// `rd.messages` first). `raft_state_bytes` is the persisted Raft state size after
    /// persisting it. Returns a snapshot the shell must persist if the size policy took one.
    pub fn advance(
        &mut self,
        rd: Ready,
        raft_state_bytes: u64,
    ) -> Result<Option<Snapshot>, String> {
        if let Some(s) = &rd.snapshot {
            self.restore(s)?;
        }
        for e in &rd.committed_entries {
            self.apply_entry(e)?;
        }
        for rs in &rd.read_states {
            if let Some(r) = self.reads_unconfirmed.remove(&rs.ctx) {
                match rs.index {
                    Some(i) => self.reads_confirmed.push((i, r)),
                    None => {
                        let leader = self.raft.leader();
                        self.replies.push((r.req, Err(Error::NotLeader { leader })))
                    }
                }
            }
        }
        let lost_leadership = rd.soft_state.is_some_and(|s| s.role != Role::Leader);
        self.raft.advance(rd);
        assert_eq!(
            self.raft.log().applied(),
            self.applied,
            "the replica applied exactly what the Raft core handed it"
        );
        if lost_leadership {
            self.fail_pending();
        }
        self.serve_reads();
        Ok(self.maybe_snapshot(raft_state_bytes))
    }

    /// Replies produced since the last call.
    pub fn take_replies(&mut self) -> Vec<(ReqId, Reply<SM::Output>)> {
        std::mem::take(&mut self.replies)
    }

    /// Replaces the state with an installed snapshot.
    fn restore(&mut self, s: &Snapshot) -> Result<(), String> {
        assert!(
            s.meta.index > self.applied,
            "an installed snapshot moves forward: snapshot at {}, applied {}",
            s.meta.index,
            self.applied
        );
        (self.sm, self.sessions) = decode_snapshot::<SM>(&s.data)?;
        self.applied = s.meta.index;
        // Writes this node proposed at covered indexes were decided elsewhere; their
        // clients retry and the sessions answer.
        let covered: Vec<LogIndex> = self
            .writes
            .range(..=s.meta.index)
            .map(|(i, _)| *i)
            .collect();
        let leader = self.raft.leader();
        for i in covered {
            let w = self.writes.remove(&i).expect("present");
            self.replies
                .push((w.req, Err(Error::LostLeadership { leader })));
        }
        Ok(())
    }

    /// Applies one committed entry. An entry this build cannot decode is an error, not
    /// skipped: a member of another version could decode and apply it, and skipping it
    /// here would make this replica's state silently diverge from theirs.
    fn apply_entry(&mut self, e: &Entry) -> Result<(), String> {
        assert_eq!(
            e.index,
            self.applied.next(),
            "entries are applied contiguously"
        );
        let proposal = match e.kind {
            EntryKind::Noop => None,
            // The core already follows a membership change; the shell hears of it applied.
            EntryKind::ConfChange => {
                let c = ConfEntry::decode(&e.data).map_err(|err| undecodable_entry(e, &err))?;
                if self.conf_applied.len() >= CONF_APPLIED_MAX {
                    let (dropped, _) = self.conf_applied.remove(0);
                    tracing::warn!(%dropped, "membership changes not taken; dropped the oldest");
                }
                self.conf_applied.push((e.index, c));
                None
            }
            EntryKind::Normal => Some(
                postcard::from_bytes::<Proposal<SM::Command, SM::Internal>>(&e.data)
                    .map_err(|err| undecodable_entry(e, &err))?,
            ),
        };
        self.applied = e.index;
        let output = match proposal {
            None => None,
            Some(Proposal::Client {
                client,
                seq,
                retry,
                cmd,
            }) => Some(self.apply_client(e.index, client, seq, retry, &cmd)),
            Some(Proposal::Internal(cmd)) => {
                let mut ctx = Applying {
                    index: e.index,
                    sessions: &mut self.sessions,
                    limits: self.opts.sessions,
                };
                self.sm.apply_internal(&cmd, &mut ctx);
                None
            }
        };
        // Every replica drops idle sessions at the same log position.
        self.sessions.expire(e.index, &self.opts.sessions);
        if let Some(w) = self.writes.remove(&e.index) {
            let reply = match output {
                Some(out) if w.term == e.term => out,
                // Another entry took this index; the write may still apply elsewhere (an
                // earlier attempt of the same request).
                _ => Err(Error::LostLeadership {
                    leader: self.raft.leader(),
                }),
            };
            self.replies.push((w.req, reply));
        }
        Ok(())
    }

    fn apply_client(
        &mut self,
        index: LogIndex,
        client: ClientId,
        seq: Seq,
        retry: bool,
        cmd: &SM::Command,
    ) -> Reply<SM::Output> {
        match self.sessions.check(client, seq, retry) {
            Seen::Duplicate(out) => SM::replay(cmd, out),
            Seen::Stale => Err(Error::Stale),
            // A group that would refuse the request sends the client on first.
            Seen::Expired => self.sm.admits(cmd).and(Err(Error::SessionExpired)),
            Seen::New => {
                let limits = self.opts.sessions;
                let mut ctx = Applying {
                    index,
                    sessions: &mut self.sessions,
                    limits,
                };
                let out = self.sm.apply(cmd, &mut ctx)?;
                // A refusal (`Err` above) is not recorded: the request may apply elsewhere.
                let record = SM::record(cmd, &out);
                self.sessions.record(client, seq, record, index, &limits);
                Ok(out)
            }
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_confirmed)
            .into_iter()
            .partition(|(i, _)| *i <= applied);
        self.reads_confirmed = waiting;
        for (index, r) in ready {
            assert!(
                index <= self.applied,
                "a read is served at or after its index"
            );
            let out = self.sm.query(&r.query, &self.sessions);
            self.replies.push((r.req, out));
        }
    }

    fn fail_pending(&mut self) {
        let leader = self.raft.leader();
        let writes = std::mem::take(&mut self.writes);
        let reads = std::mem::take(&mut self.reads_unconfirmed);
        let confirmed = std::mem::take(&mut self.reads_confirmed);
        // A proposed write may still commit under the next leader: its outcome is unknown.
        for w in writes.into_values() {
            self.replies
                .push((w.req, Err(Error::LostLeadership { leader })));
        }
        // A read never changes state: it surely did not happen.
        let reads = reads
            .into_values()
            .map(|r| r.req)
            .chain(confirmed.into_iter().map(|(_, r)| r.req));
        for req in reads {
            self.replies.push((req, Err(Error::NotLeader { leader })));
        }
    }

    fn maybe_snapshot(&mut self, raft_state_bytes: u64) -> Option<Snapshot> {
        let max = self.opts.raft_state_bytes_max?;
        let applied = self.applied;
        let snapshot_index = self.raft.log().snapshot_meta().index;
        if raft_state_bytes <= max || applied <= snapshot_index {
            return None;
        }
        let term = self
            .raft
            .log()
            .term(applied)
            .expect("applied index is held");
        let body = SnapshotBody {
            sm: &self.sm,
            sessions: &self.sessions,
        };
        // Sized first (a walk that copies nothing), so a large state is encoded into one
        // allocation instead of a buffer that doubles and copies itself as it grows; and
        // shared with the core rather than copied.
        let size = postcard::experimental::serialized_size(&body).expect("sizing cannot fail");
        let data = postcard::to_extend(&body, Vec::with_capacity(size))
            .expect("encoding to memory cannot fail");
        debug_assert_eq!(data.len(), size);
        let data = Arc::new(data);
        self.raft.compact(applied, data.clone());
        assert!(
            self.raft.log().snapshot_meta().index > snapshot_index,
            "the snapshot index only moves forward"
        );
        let meta = self.raft.log().snapshot_meta();
        assert_eq!(
            (meta.index, meta.term),
            (applied, term),
            "the core took this snapshot"
        );
        Some(Snapshot { meta, data })
    }
}

/// Why a committed entry cannot be applied: it names the entry and the likely cause.
fn undecodable_entry(e: &Entry, err: &dyn std::fmt::Display) -> String {
    format!(
        "committed entry at index {} (term {}) cannot be decoded ({err}): it was written by \
         an incompatible version of shardkv, or is damaged; refusing to skip it, which would \
         make this replica diverge from the others",
        e.index.0, e.term.0
    )
}

fn decode_snapshot<SM: StateMachine>(data: &[u8]) -> Result<(SM, Sessions<SM::Output>), String> {
    let body: SnapshotBody<SM, Sessions<SM::Output>> =
        postcard::from_bytes(data).map_err(|e| format!("undecodable snapshot: {e}"))?;
    Ok((body.sm, body.sessions))
}

fn from_propose_error(e: ProposeError) -> Error {
    match e {
        ProposeError::NotLeader { leader } => Error::NotLeader { leader },
        ProposeError::TransferInProgress => Error::NotLeader { leader: None },
        ProposeError::Busy => Error::Busy,
        ProposeError::TooLarge { bytes, max } => Error::TooLarge {
            bytes: bytes as u64,
            max: max as u64,
        },
        // Only membership changes meet these; commands never do.
        ProposeError::ConfChangePending { .. } | ProposeError::LeaderNotReady => Error::Busy,
        ProposeError::ConfChange(_) | ProposeError::LearnerBehind { .. } => Error::Invalid {
            reason: e.to_string(),
        },
    }
}
