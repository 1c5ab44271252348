//! [`ShardGroup`]: one member of a shard group as a host runs it — the replica of
//! [`ShardKv`] and the leader's [`Duties`]. The shell carries the duties' requests to other
//! groups and hands their answers back; everything else is the generic host loop.

use crate::command::{ShardOutput, ShardRequest};
use crate::duties::{Duties, DutyAnswer, Outbound};
use crate::machine::ShardKv;
use shardkv_host::HostedApp;
use shardkv_raft::{Message, RawNode, Ready, Snapshot};
use shardkv_rsm::{Error, Replica, Reply, ReqId};
use shardkv_types::NodeId;

/// A shard group member: its replica and its duties.
pub struct ShardGroup {
    pub replica: Replica<ShardKv>,
    pub duties: Duties,
}

impl std::fmt::Debug for ShardGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sm = self.replica.state_machine();
        write!(
            f,
            "ShardGroup({} {} config {}, {:?})",
            sm.gid(),
            self.replica.raft().id(),
            sm.config().num,
            self.duties
        )
    }
}

impl ShardGroup {
    pub fn new(replica: Replica<ShardKv>, duties: Duties) -> ShardGroup {
        ShardGroup { replica, duties }
    }

    pub fn state_machine(&self) -> &ShardKv {
        self.replica.state_machine()
    }

    /// Requests to other groups, drained by the shell.
    pub fn take_outbound(&mut self) -> Vec<Outbound> {
        self.duties.take_outbound()
    }

    /// An answer to a request of [`ShardGroup::take_outbound`].
    pub fn on_answer(&mut self, token: u64, from: NodeId, answer: DutyAnswer) {
        self.duties
            .on_answer(token, from, answer, &mut self.replica);
    }
}

impl HostedApp for ShardGroup {
    type Request = ShardRequest;
    type Response = Reply<ShardOutput>;

    fn raft(&self) -> &RawNode {
        self.replica.raft()
    }

    fn tick(&mut self) {
        self.replica.tick();
        self.duties.tick(&mut self.replica);
    }

    fn step(&mut self, m: Message) {
        self.replica.step(m);
    }

    fn ready(&mut self) -> Option<Ready> {
        self.replica.ready()
    }

    fn advance(&mut self, rd: Ready, raft_state_bytes: u64) -> Result<Option<Snapshot>, String> {
        self.replica.advance(rd, raft_state_bytes)
    }

    fn request(&mut self, req: ReqId, r: ShardRequest) {
        self.replica.submit(req, r);
    }

    fn take_responses(&mut self) -> Vec<(ReqId, Reply<ShardOutput>)> {
        self.replica.take_replies()
    }

    fn is_write(r: &ShardRequest) -> bool {
        <Replica<ShardKv> as HostedApp>::is_write(r)
    }

    fn duplicate_answer(&self, r: &ShardRequest) -> Option<Reply<ShardOutput>> {
        self.replica.duplicate_answer(r)
    }

    fn refusal(e: Error) -> Reply<ShardOutput> {
        Err(e)
    }

    fn transfer_leader(&mut self, to: NodeId) {
        self.replica.transfer_leader(to);
    }

    fn hand_off_unwritten(&mut self) -> Option<NodeId> {
        self.replica.hand_off_unwritten()
    }
}
