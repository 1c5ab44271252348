//! What runs above Raft on a host: the app the Ready loop drives.

use shardkv_raft::{Message, RawNode, Ready, Snapshot};
use shardkv_rsm::{Error, Replica, Reply, ReqId, Request, StateMachine};
use shardkv_types::NodeId;

/// An application that owns a Raft core: the generic `Replica<SM>` in production and the
/// simulator's services, or the simulator's bare Raft harness.
pub trait HostedApp {
    /// What clients send.
    type Request;
    /// What the app answers.
    type Response;

    fn raft(&self) -> &RawNode;
    fn tick(&mut self);
    fn step(&mut self, m: Message);
    /// The next batch, if Raft has one.
    fn ready(&mut self) -> Option<Ready>;
    /// Applies a Ready whose durable parts were persisted and whose messages were taken and
    /// sent. `raft_state_bytes` is the persisted Raft state after it as the snapshot policy
    /// must see it (scaled per member, 0 while snapshots are held back: see the crate docs,
    /// "Snapshot points"). Returns a snapshot the host must persist, if the app took one.
    fn advance(&mut self, rd: Ready, raft_state_bytes: u64) -> Result<Option<Snapshot>, String>;
    /// A client request; answered later through `take_responses` under `req`.
    fn request(&mut self, req: ReqId, r: Self::Request);
    /// Answers produced since the last call.
    fn take_responses(&mut self) -> Vec<(ReqId, Self::Response)>;
    /// True when `r` changes state (refused while disk space is low).
    fn is_write(r: &Self::Request) -> bool;
    /// The stored answer when `r` retries a write this member already applied. It is
    /// answered even when new writes are refused: refusing with `NoSpace` ("surely not
    /// applied") would be wrong for it.
    fn duplicate_answer(&self, _r: &Self::Request) -> Option<Self::Response> {
        None
    }
    /// The response that carries a refusal made by the host before the app saw the request.
    fn refusal(e: Error) -> Self::Response;
    /// Leader: starts handing leadership to `to` (`RawNode::transfer_leader`).
    fn transfer_leader(&mut self, to: NodeId);
    /// Leader whose disk is full: `RawNode::hand_off_unwritten`.
    fn hand_off_unwritten(&mut self) -> Option<NodeId>;
}

impl<SM: StateMachine> HostedApp for Replica<SM> {
    type Request = Request<SM::Command, SM::Query>;
    type Response = Reply<SM::Output>;

    fn raft(&self) -> &RawNode {
        Replica::raft(self)
    }

    fn tick(&mut self) {
        Replica::tick(self);
    }

    fn step(&mut self, m: Message) {
        Replica::step(self, m);
    }

    fn ready(&mut self) -> Option<Ready> {
        Replica::ready(self)
    }

    fn advance(&mut self, rd: Ready, raft_state_bytes: u64) -> Result<Option<Snapshot>, String> {
        Replica::advance(self, rd, raft_state_bytes)
    }

    fn request(&mut self, req: ReqId, r: Self::Request) {
        self.submit(req, r);
    }

    fn take_responses(&mut self) -> Vec<(ReqId, Self::Response)> {
        self.take_replies()
    }

    fn is_write(r: &Self::Request) -> bool {
        r.is_write()
    }

    fn duplicate_answer(&self, r: &Self::Request) -> Option<Self::Response> {
        self.session_answer(r)
    }

    fn refusal(e: Error) -> Self::Response {
        Err(e)
    }

    fn transfer_leader(&mut self, to: NodeId) {
        Replica::transfer_leader(self, to);
    }

    fn hand_off_unwritten(&mut self) -> Option<NodeId> {
        Replica::hand_off_unwritten(self)
    }
}
