//! What the closed loop needs from the system under test: one operation at a time per
//! session. `shardkv bench` has two targets, shardkv ([`super::shardkv_target`]) and etcd
//! ([`super::etcd`]); the loop, key space, values and report are the same for both.

use std::future::Future;

/// One operation of the closed loop.
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Get { key: Vec<u8> },
}

/// What a successful operation returned.
pub enum OpOk {
    Written,
    /// A read's value (`None`: the key is missing).
    Read(Option<Vec<u8>>),
}

/// Why an operation failed.
#[derive(Debug)]
pub struct OpError {
    /// A stable name, counted in the report (e.g. `timeout`, `unavailable`).
    pub kind: &'static str,
    /// The operation may have taken effect (a write may be in the history).
    pub may_have_applied: bool,
    /// What the target said, for the report (the first of each kind is shown).
    pub message: String,
}

/// One session: one operation in flight at a time.
pub trait Session: Send + 'static {
    /// Distinct among the run's sessions: written into values and history records.
    fn id(&self) -> u64;

    /// Runs one operation to its end (success, error, or the target's timeout).
    fn execute(&mut self, op: Op) -> impl Future<Output = Result<OpOk, OpError>> + Send;
}

/// A system under test, connected.
pub trait Target {
    type Session: Session;

    /// Session number `i` of the run (sessions spread over the target's connections).
    fn session(&self, i: usize) -> Self::Session;
}
