//! The shardkv target: sessions of `shardkv-client` (each its own client id, so its own
//! exactly-once sequence) spread round-robin over `--connections` clients, each with its
//! own HTTP/2 connection per member. Reads are linearizable Gets (ReadIndex).

use super::target::{Op, OpError, OpOk, Session, Target};
use shardkv_client::{Client, KvOp, Outcome};
use shardkv_kv::{KvCommand, KvOutput, KvQuery};

pub struct ShardkvTarget {
    roots: Vec<Client>,
}

impl ShardkvTarget {
    /// `roots`: one client per connection (at least one).
    pub fn new(roots: Vec<Client>) -> ShardkvTarget {
        assert!(!roots.is_empty(), "a target needs at least one connection");
        ShardkvTarget { roots }
    }
}

impl Target for ShardkvTarget {
    type Session = ShardkvSession;

    fn session(&self, i: usize) -> ShardkvSession {
        ShardkvSession(self.roots[i % self.roots.len()].session())
    }
}

/// One client session (its own client id).
pub struct ShardkvSession(Client);

impl Session for ShardkvSession {
    fn id(&self) -> u64 {
        self.0.id().0
    }

    async fn execute(&mut self, op: Op) -> Result<OpOk, OpError> {
        let op = match op {
            Op::Put { key, value } => KvOp::Write(KvCommand::Put { key, value }),
            Op::Get { key } => KvOp::Read(KvQuery::Get { key }),
        };
        match self.0.execute(op).await {
            Ok(KvOutput::Value(v)) => Ok(OpOk::Read(v)),
            Ok(_) => Ok(OpOk::Written),
            Err(e) => Err(OpError {
                kind: e.kind(),
                may_have_applied: e.outcome() == Outcome::Unknown,
                message: e.to_string(),
            }),
        }
    }
}
