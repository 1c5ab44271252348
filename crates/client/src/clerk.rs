//! The clerk core: which server to ask, and what to do with its answer. Deterministic and
//! transport-free, so the simulator's clients and the async library share it.

use shardkv_kv::{KvCommand, KvOutput, KvRequest, KvResponse};
use shardkv_rsm::RsmError;
use shardkv_types::{ClientId, NodeId, Rng};

/// A KV operation as the user asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    Get { key: Vec<u8> },
    Write(KvCommand),
}

/// What the caller does next with an operation in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The operation finished with this output.
    Done(KvOutput),
    /// Send the same request (same sequence number) to this server.
    Retry(NodeId),
    /// The operation surely failed (it did not apply) with this error.
    Failed(RsmError),
    /// The operation ended without a known outcome (it may have applied): a later request
    /// of this session was already seen.
    Unknown(RsmError),
}

/// One client session: a random id chosen at creation, a sequence number per write, and the
/// last server that acted as leader.
///
/// Invariant: every attempt of one write carries the same sequence number, so the servers'
/// session tables apply it at most once however many times it is retried.
#[derive(Clone, Debug)]
pub struct ClerkCore {
    pub id: ClientId,
    servers: Vec<NodeId>,
    leader: usize,
    next_seq: u64,
    /// The operation in flight: its request, as sent on every attempt.
    current: Option<KvRequest>,
    rng: Rng,
}

impl ClerkCore {
    /// A clerk for the group `servers`; `rng` picks the client id and the first server.
    ///
    /// # Panics
    /// If `servers` is empty.
    pub fn new(servers: Vec<NodeId>, mut rng: Rng) -> ClerkCore {
        assert!(!servers.is_empty(), "a clerk needs at least one server");
        let id = ClientId(rng.next_u64() >> 2);
        let leader = rng.index(servers.len());
        ClerkCore {
            id,
            servers,
            leader,
            next_seq: 1,
            current: None,
            rng,
        }
    }

    pub fn servers(&self) -> &[NodeId] {
        &self.servers
    }

    /// Starts an operation: returns the request and the server to send it to first. An
    /// operation still in flight (its caller gave up, e.g. a cancelled future) is abandoned:
    /// its outcome stays unknown, and the new one gets a new sequence number.
    pub fn begin(&mut self, op: KvOp) -> (KvRequest, NodeId) {
        self.abandon();
        let req = match op {
            KvOp::Get { key } => KvRequest::Get { key },
            KvOp::Write(cmd) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                KvRequest::Write {
                    client: self.id,
                    seq,
                    cmd,
                }
            }
        };
        self.current = Some(req.clone());
        (req, self.servers[self.leader])
    }

    /// The request in flight, to resend on a retry.
    pub fn current(&self) -> Option<&KvRequest> {
        self.current.as_ref()
    }

    /// Gives up on the operation in flight (the caller reports it as "unknown": it may
    /// still apply). The next operation gets a new sequence number.
    pub fn abandon(&mut self) {
        self.current = None;
    }

    /// The server did not answer in time (or the connection failed): try the next one.
    pub fn on_timeout(&mut self) -> NodeId {
        self.leader = (self.leader + 1) % self.servers.len();
        self.servers[self.leader]
    }

    /// A server answered.
    pub fn on_response(&mut self, from: NodeId, resp: KvResponse) -> Next {
        match resp {
            Ok(out) => {
                if let Some(i) = self.servers.iter().position(|&s| s == from) {
                    self.leader = i;
                }
                self.current = None;
                Next::Done(out)
            }
            Err(RsmError::NotLeader { leader } | RsmError::LostLeadership { leader }) => {
                let hinted = leader.and_then(|l| self.servers.iter().position(|&s| s == l));
                // Follow a hint unless it points back at the server that just refused.
                self.leader = match hinted {
                    Some(i) if self.servers[i] != from => i,
                    _ => (self.leader + 1) % self.servers.len(),
                };
                Next::Retry(self.servers[self.leader])
            }
            Err(RsmError::Busy) => {
                // Back off to a random server; a busy leader is still the leader, so stay
                // there half the time.
                if self.rng.chance(500) {
                    self.leader = self.rng.index(self.servers.len());
                }
                Next::Retry(self.servers[self.leader])
            }
            Err(e @ RsmError::TooLarge { .. }) => {
                self.current = None;
                Next::Failed(e)
            }
            Err(e @ RsmError::Stale) => {
                self.current = None;
                Next::Unknown(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clerk() -> ClerkCore {
        ClerkCore::new(vec![NodeId(1), NodeId(2), NodeId(3)], Rng::new(5))
    }

    #[test]
    fn retries_keep_the_sequence_number_and_follow_leader_hints() {
        let mut c = clerk();
        let (req, first) = c.begin(KvOp::Write(KvCommand::Delete { key: b"k".to_vec() }));
        let KvRequest::Write { seq, .. } = req else {
            panic!()
        };
        assert_eq!(seq, 1);
        let hint = if first == NodeId(3) {
            NodeId(1)
        } else {
            NodeId(3)
        };
        assert_eq!(
            c.on_response(first, Err(RsmError::NotLeader { leader: Some(hint) })),
            Next::Retry(hint)
        );
        assert_eq!(
            c.current(),
            Some(&req),
            "the retry resends the same request"
        );
        let next = c.on_timeout();
        assert_ne!(next, hint);
        assert_eq!(
            c.on_response(next, Ok(KvOutput::Done)),
            Next::Done(KvOutput::Done)
        );
        let (req2, to) = c.begin(KvOp::Write(KvCommand::Delete { key: b"k".to_vec() }));
        assert_eq!(to, next, "the server that answered is remembered as leader");
        assert!(matches!(req2, KvRequest::Write { seq: 2, .. }));
    }

    #[test]
    fn a_new_operation_abandons_one_left_in_flight() {
        let mut c = clerk();
        let (first, _) = c.begin(KvOp::Write(KvCommand::Delete { key: b"k".to_vec() }));
        // The caller dropped the first operation's future: no panic, and a new seq.
        let (second, _) = c.begin(KvOp::Write(KvCommand::Delete { key: b"k".to_vec() }));
        assert!(matches!(
            (first, second),
            (
                KvRequest::Write { seq: 1, .. },
                KvRequest::Write { seq: 2, .. }
            )
        ));
    }

    #[test]
    fn stale_and_lost_leadership_are_not_definite_failures() {
        let mut c = clerk();
        let (_, to) = c.begin(KvOp::Write(KvCommand::Delete { key: b"k".to_vec() }));
        assert!(matches!(
            c.on_response(to, Err(RsmError::LostLeadership { leader: None })),
            Next::Retry(_)
        ));
        assert_eq!(
            c.on_response(to, Err(RsmError::Stale)),
            Next::Unknown(RsmError::Stale)
        );
    }

    #[test]
    fn definite_failures_end_the_operation() {
        let mut c = clerk();
        let (_, to) = c.begin(KvOp::Get { key: b"k".to_vec() });
        let e = RsmError::TooLarge { bytes: 10, max: 5 };
        assert_eq!(c.on_response(to, Err(e.clone())), Next::Failed(e));
        assert!(c.current().is_none());
    }
}
