//! What a replicated state machine implements: apply, query, validation, and (through
//! serde) snapshot and restore. Nothing about Raft.

use crate::{Error, Reply, Request, SessionLimits, Sessions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shardkv_types::LogIndex;
use std::fmt::Debug;

/// What `apply` may see and touch besides the state machine itself.
pub struct Applying<'a, O> {
    /// The log index of the entry being applied.
    pub index: LogIndex,
    /// The session table: read it to export sessions with a shard, merge into it when a
    /// shard arrives. Invariant kept by the caller: a client write's own session is recorded
    /// after `apply` returns `Ok`, never before.
    pub sessions: &'a mut Sessions<O>,
    /// The group's session limits, for merging sessions.
    pub limits: SessionLimits,
}

/// A deterministic state machine replicated by [`crate::Replica`].
///
/// Its snapshot is its serde encoding, so the type itself must serialize everything it
/// holds. `apply`, `apply_internal` and `query` must be deterministic: the same commands in
/// the same order give the same state and outputs on every replica (iterate ordered maps).
pub trait StateMachine: Serialize + DeserializeOwned {
    /// A client write, carried in the log with its session coordinates.
    type Command: Serialize + DeserializeOwned + Clone + Debug;
    /// A read, served by ReadIndex without a log entry.
    type Query: Serialize + DeserializeOwned + Clone + Debug;
    /// The answer to a command or a query. What a session keeps of it is [`Self::record`].
    type Output: Serialize + DeserializeOwned + Clone + Debug + PartialEq;
    /// A command the group proposes itself, without a client session (use
    /// [`crate::NoInternal`] when there is none).
    type Internal: Serialize + DeserializeOwned + Clone + Debug;

    /// Checks a request's limits before it is proposed or read; an `Err` (usually
    /// `TooLarge`) is answered at once and nothing is proposed.
    fn validate(req: &Request<Self::Command, Self::Query>) -> Result<(), Error> {
        let _ = req;
        Ok(())
    }

    /// What a client's session keeps of a write's output to answer the write's retries
    /// (with [`Self::replay`]). The table is in every snapshot: keep only what a retry
    /// needs, not the data the output carries. By default the whole output.
    fn record(cmd: &Self::Command, out: &Self::Output) -> Self::Output {
        let _ = cmd;
        out.clone()
    }

    /// The answer to a retry of an applied write, from its record. By default the record.
    fn replay(cmd: &Self::Command, recorded: &Self::Output) -> Reply<Self::Output> {
        let _ = cmd;
        Ok(recorded.clone())
    }

    /// The refusal [`Self::apply`] would give `cmd` now (e.g. `WrongGroup`), without applying
    /// it; by default none. A retry that the sessions can no longer answer gets this refusal
    /// before `SessionExpired`, so a group that does not own the request sends its client on
    /// to the one that may still know. Must agree with `apply`'s refusals.
    fn admits(&self, cmd: &Self::Command) -> Result<(), Error> {
        let _ = cmd;
        Ok(())
    }

    /// Applies a client write. `Err` is a refusal (e.g. `WrongGroup`): the state must be
    /// unchanged, the client is answered with it, and the session does not record it, so
    /// the same request can still apply in the right group.
    fn apply(
        &mut self,
        cmd: &Self::Command,
        ctx: &mut Applying<'_, Self::Output>,
    ) -> Result<Self::Output, Error>;

    /// Applies a command the group proposed itself.
    fn apply_internal(&mut self, cmd: &Self::Internal, ctx: &mut Applying<'_, Self::Output>);

    /// Serves a read at an applied index at or after the read's confirmed index.
    fn query(
        &self,
        q: &Self::Query,
        sessions: &Sessions<Self::Output>,
    ) -> Result<Self::Output, Error>;
}
