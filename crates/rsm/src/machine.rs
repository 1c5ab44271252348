//! What a replicated state machine implements: apply, query, and (through serde) snapshot and
//! restore. Nothing about Raft.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// A deterministic state machine replicated by [`crate::Replica`].
///
/// Its snapshot is its serde encoding, so the type itself must serialize everything it
/// holds. `apply` must be deterministic: the same commands in the same order give the same
/// state and outputs on every replica.
pub trait StateMachine: Serialize + DeserializeOwned + Default {
    /// A write, carried in the log.
    type Command: Serialize + DeserializeOwned + Clone + Debug;
    /// A read, served by ReadIndex without a log entry.
    type Query: Clone + Debug;
    /// The answer to a command or a query. Stored in client sessions, so keep it small.
    type Output: Serialize + DeserializeOwned + Clone + Debug + PartialEq;

    fn apply(&mut self, cmd: &Self::Command) -> Self::Output;
    fn query(&self, q: &Self::Query) -> Self::Output;
}
