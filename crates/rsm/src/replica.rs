//! `Replica<SM>`: one member of a replicated state machine. It owns the Raft node, the
//! state machine and the session table, and turns client requests into log entries or
//! ReadIndex reads and committed entries into replies.

use crate::session::{Seen, Sessions};
use crate::{Reply, ReqId, RsmError, StateMachine};
use serde::{Deserialize, Serialize};
use shardkv_raft::{Config, Message, ProposeError, RawNode, Ready, Restored, Role, Snapshot};
use shardkv_types::{ClientId, Entry, EntryKind, LogIndex, SnapshotMeta, Term};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The log entry payload of a client write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope<C> {
    pub client: ClientId,
    pub seq: u64,
    pub cmd: C,
}

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
    pub max_raft_state: Option<u64>,
    /// The largest encoded command accepted.
    pub command_bytes_max: usize,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            max_raft_state: None,
            command_bytes_max: 4 << 20,
        }
    }
}

/// One replica. Drive it like a `RawNode`: `tick`, `step`, `propose`, `read`; then loop
/// `ready` → persist + send → `advance`; then hand `take_replies` to clients.
///
/// Invariants: every request gets exactly one reply; a write is answered with an output
/// only if the entry it was proposed as committed and was applied here.
pub struct Replica<SM: StateMachine> {
    raft: RawNode,
    sm: SM,
    sessions: Sessions<SM::Output>,
    opts: ReplicaOptions,
    /// Writes proposed here, by log index.
    writes: BTreeMap<LogIndex, PendingWrite>,
    /// Reads waiting for Raft to confirm a read index, by ReadIndex context.
    reads_unconfirmed: BTreeMap<u64, PendingRead<SM::Query>>,
    /// Reads confirmed at an index, waiting for it to be applied.
    reads_confirmed: Vec<(LogIndex, PendingRead<SM::Query>)>,
    next_read_ctx: u64,
    replies: Vec<(ReqId, Reply<SM::Output>)>,
}

impl<SM: StateMachine> Replica<SM> {
    /// Starts a replica from what storage recovered; the state machine is restored from the
    /// snapshot first.
    pub fn new(
        cfg: Config,
        restored: Restored,
        seed: u64,
        opts: ReplicaOptions,
    ) -> Result<Self, String> {
        let (sm, sessions) = match &restored.snapshot {
            Some(s) => decode_snapshot::<SM>(&s.data)?,
            None => (SM::default(), Sessions::default()),
        };
        Ok(Replica {
            raft: RawNode::new(cfg, restored, seed),
            sm,
            sessions,
            opts,
            writes: BTreeMap::new(),
            reads_unconfirmed: BTreeMap::new(),
            reads_confirmed: Vec::new(),
            next_read_ctx: 1,
            replies: Vec::new(),
        })
    }

    pub fn raft(&self) -> &RawNode {
        &self.raft
    }

    pub fn state_machine(&self) -> &SM {
        &self.sm
    }

    pub fn sessions(&self) -> &Sessions<SM::Output> {
        &self.sessions
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

    /// Submits a write. A retry (same client, same seq) of an applied write is answered from
    /// the session table without touching the log.
    pub fn propose(&mut self, req: ReqId, client: ClientId, seq: u64, cmd: SM::Command) {
        match self.sessions.check(client, seq) {
            Seen::Duplicate(out) => return self.replies.push((req, Ok(out.clone()))),
            Seen::Stale => return self.replies.push((req, Err(RsmError::Stale))),
            Seen::New => {}
        }
        let data = postcard::to_allocvec(&Envelope { client, seq, cmd })
            .expect("encoding to memory cannot fail");
        if data.len() > self.opts.command_bytes_max {
            let e = RsmError::TooLarge {
                bytes: data.len(),
                max: self.opts.command_bytes_max,
            };
            return self.replies.push((req, Err(e)));
        }
        match self.raft.propose(data) {
            Ok(index) => {
                let term = self.raft.term();
                if let Some(old) = self.writes.insert(index, PendingWrite { req, term }) {
                    // An older proposal at this index was overwritten by a new leader's log;
                    // the same request may still apply through another attempt.
                    self.replies.push((
                        old.req,
                        Err(RsmError::LostLeadership {
                            leader: self.raft.leader(),
                        }),
                    ));
                }
            }
            Err(e) => self.replies.push((req, Err(from_propose_error(e)))),
        }
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
            (self.sm, self.sessions) = decode_snapshot::<SM>(&s.data)?;
            // Writes this node proposed at covered indexes were decided elsewhere; their
            // clients retry and the sessions answer.
            let covered: Vec<LogIndex> = self
                .writes
                .range(..=s.meta.index)
                .map(|(i, _)| *i)
                .collect();
            for i in covered {
                let w = self.writes.remove(&i).expect("present");
                self.replies.push((
                    w.req,
                    Err(RsmError::LostLeadership {
                        leader: self.raft.leader(),
                    }),
                ));
            }
        }
        for e in &rd.committed_entries {
            self.apply_entry(e);
        }
        for rs in &rd.read_states {
            if let Some(r) = self.reads_unconfirmed.remove(&rs.ctx) {
                match rs.index {
                    Some(i) => self.reads_confirmed.push((i, r)),
                    None => self.replies.push((
                        r.req,
                        Err(RsmError::NotLeader {
                            leader: self.raft.leader(),
                        }),
                    )),
                }
            }
        }
        let lost_leadership = rd.soft_state.is_some_and(|s| s.role != Role::Leader);
        self.raft.advance(rd);
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

    fn apply_entry(&mut self, e: &Entry) {
        let output = match e.kind {
            EntryKind::Noop => None,
            EntryKind::Normal => match postcard::from_bytes::<Envelope<SM::Command>>(&e.data) {
                Ok(env) => Some(self.apply_envelope(env)),
                // Every replica skips an undecodable entry the same way, so they stay equal.
                Err(_) => None,
            },
        };
        if let Some(w) = self.writes.remove(&e.index) {
            let reply = match output {
                Some(out) if w.term == e.term => out,
                // Another entry took this index; the write may still apply elsewhere (an
                // earlier attempt of the same request).
                _ => Err(RsmError::LostLeadership {
                    leader: self.raft.leader(),
                }),
            };
            self.replies.push((w.req, reply));
        }
    }

    fn apply_envelope(&mut self, env: Envelope<SM::Command>) -> Reply<SM::Output> {
        match self.sessions.check(env.client, env.seq) {
            Seen::Duplicate(out) => Ok(out.clone()),
            Seen::Stale => Err(RsmError::Stale),
            Seen::New => {
                let out = self.sm.apply(&env.cmd);
                self.sessions.record(env.client, env.seq, out.clone());
                Ok(out)
            }
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.raft.log().applied();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_confirmed)
            .into_iter()
            .partition(|(i, _)| *i <= applied);
        self.reads_confirmed = waiting;
        for (_, r) in ready {
            let out = self.sm.query(&r.query);
            self.replies.push((r.req, Ok(out)));
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
                .push((w.req, Err(RsmError::LostLeadership { leader })));
        }
        // A read never changes state: it surely did not happen.
        let reads = reads
            .into_values()
            .map(|r| r.req)
            .chain(confirmed.into_iter().map(|(_, r)| r.req));
        for req in reads {
            self.replies
                .push((req, Err(RsmError::NotLeader { leader })));
        }
    }

    fn maybe_snapshot(&mut self, raft_state_bytes: u64) -> Option<Snapshot> {
        let max = self.opts.max_raft_state?;
        let applied = self.raft.log().applied();
        if raft_state_bytes <= max || applied <= self.raft.log().snapshot_meta().index {
            return None;
        }
        let term = self
            .raft
            .log()
            .term(applied)
            .expect("applied index is held");
        let data = postcard::to_allocvec(&SnapshotBody {
            sm: &self.sm,
            sessions: &self.sessions,
        })
        .expect("encoding to memory cannot fail");
        self.raft.compact(applied, data.clone());
        Some(Snapshot {
            meta: SnapshotMeta {
                index: applied,
                term,
            },
            data: Arc::new(data),
        })
    }
}

fn decode_snapshot<SM: StateMachine>(data: &[u8]) -> Result<(SM, Sessions<SM::Output>), String> {
    let body: SnapshotBody<SM, Sessions<SM::Output>> =
        postcard::from_bytes(data).map_err(|e| format!("undecodable snapshot: {e}"))?;
    Ok((body.sm, body.sessions))
}

fn from_propose_error(e: ProposeError) -> RsmError {
    match e {
        ProposeError::NotLeader { leader } => RsmError::NotLeader { leader },
        ProposeError::TransferInProgress => RsmError::NotLeader { leader: None },
        ProposeError::Busy => RsmError::Busy,
        ProposeError::TooLarge { bytes, max } => RsmError::TooLarge { bytes, max },
    }
}
