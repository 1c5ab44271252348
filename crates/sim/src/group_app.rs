//! [`GroupApp`]: the app of a world whose groups run different things — a bare Raft
//! group, KV groups, a controller group, shard groups (a new kind: add a [`Member`]
//! variant, a [`GroupKind`], a request and a response variant, and the arms below).
//! Requests and answers travel as [`GroupRequest`] / [`GroupResponse`]; a request meant
//! for another kind of group is answered `WrongGroup`, never handed to the wrong service.
//! A member may also run a [`ConfigPoller`] (`GroupSpec::polls`): a controller clerk inside
//! the node that asks the controller group over the simulated network. A shard group
//! member's duties ask the controller and other shard groups the same way: their requests
//! leave through [`App::take_outbound`] (to whichever node the duty names; the request's
//! variant picks the service) and the answers come back through [`App::on_answer`].

use crate::app::{App, Outbound, RaftApp};
use crate::config::ClusterConfig;
use crate::group::GroupKind;
use crate::poller::{ConfigPoller, CtrlRequest};
use crate::service_app::ServiceApp;
use crate::service_node::{CtrlNode, KvNode};
use crate::shard_node::start_shard_group;
use serde::{Deserialize, Serialize};
use shardkv_ctrl::{CtrlOutput, ShardCtrl};
use shardkv_host::HostedApp;
use shardkv_kv::{KvOutput, KvRequest, KvStore};
use shardkv_raft::{Config, Message, RawNode, Ready, Restored, Snapshot};
use shardkv_rsm::{Error, Replica, Reply, ReqId};
use shardkv_shardkv::{DutyAnswer, DutyRequest, ShardGroup, ShardKv, ShardOutput, ShardRequest};
use shardkv_types::{Gid, NodeId, Rng};

/// What one node of a world runs above its host.
pub enum Member {
    Raft(RaftApp),
    Kv(KvNode),
    Ctrl(CtrlNode),
    /// Boxed: a shard group member (replica and duties) is much larger than the others.
    Shard(Box<ShardGroup>),
}

/// A request to some node of a world.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GroupRequest {
    /// Bare Raft groups take no client requests (the test proposes directly).
    Raft,
    Kv(KvRequest),
    Ctrl(CtrlRequest),
    Shard(ShardRequest),
}

/// An answer from some node of a world.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GroupResponse {
    Kv(Reply<KvOutput>),
    Ctrl(Reply<CtrlOutput>),
    Shard(Reply<ShardOutput>),
    /// Refused before any service saw it (the host's refusals; a request for another kind
    /// of group: `WrongGroup`).
    Refused(Error),
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Member::Raft(a) => a.fmt(f),
            Member::Kv(m) => write!(f, "Kv({})", m.raft().id()),
            Member::Ctrl(m) => write!(f, "Ctrl({})", m.raft().id()),
            Member::Shard(m) => m.fmt(f),
        }
    }
}

/// One node of a world: its member, its group, and an optional config poller.
#[derive(Debug)]
pub struct GroupApp {
    pub member: Member,
    pub gid: Gid,
    pub poller: Option<ConfigPoller>,
    /// Requests answered by this node itself (wrong kind), handed out by `take_responses`.
    refused: Vec<(ReqId, GroupResponse)>,
}

/// Calls `$body` on whichever member runs, bound as `$m`.
macro_rules! each_member {
    ($member:expr, $m:ident => $body:expr) => {
        match $member {
            Member::Raft($m) => $body,
            Member::Kv($m) => $body,
            Member::Ctrl($m) => $body,
            Member::Shard($m) => $body,
        }
    };
}

impl HostedApp for GroupApp {
    type Request = GroupRequest;
    type Response = GroupResponse;

    fn raft(&self) -> &RawNode {
        each_member!(&self.member, m => m.raft())
    }

    fn tick(&mut self) {
        each_member!(&mut self.member, m => m.tick());
        if let Some(p) = &mut self.poller {
            p.tick();
        }
    }

    fn step(&mut self, msg: Message) {
        each_member!(&mut self.member, m => m.step(msg))
    }

    fn ready(&mut self) -> Option<Ready> {
        each_member!(&mut self.member, m => m.ready())
    }

    fn advance(&mut self, rd: Ready, raft_state_bytes: u64) -> Result<Option<Snapshot>, String> {
        each_member!(&mut self.member, m => m.advance(rd, raft_state_bytes))
    }

    fn request(&mut self, req: ReqId, r: GroupRequest) {
        match (&mut self.member, r) {
            (Member::Kv(m), GroupRequest::Kv(r)) => m.request(req, r),
            (Member::Ctrl(m), GroupRequest::Ctrl(r)) => m.request(req, r),
            (Member::Shard(m), GroupRequest::Shard(r)) => m.request(req, r),
            _ => {
                let e = Error::WrongGroup { gid: self.gid };
                self.refused.push((req, GroupResponse::Refused(e)));
            }
        }
    }

    fn take_responses(&mut self) -> Vec<(ReqId, GroupResponse)> {
        let mut out = std::mem::take(&mut self.refused);
        match &mut self.member {
            Member::Raft(_) => {}
            Member::Kv(m) => out.extend(wrap_all(m.take_responses(), GroupResponse::Kv)),
            Member::Ctrl(m) => out.extend(wrap_all(m.take_responses(), GroupResponse::Ctrl)),
            Member::Shard(m) => out.extend(wrap_all(m.take_responses(), GroupResponse::Shard)),
        }
        out
    }

    fn is_write(r: &GroupRequest) -> bool {
        match r {
            GroupRequest::Raft => false,
            GroupRequest::Kv(r) => KvNode::is_write(r),
            GroupRequest::Ctrl(r) => CtrlNode::is_write(r),
            GroupRequest::Shard(r) => ShardGroup::is_write(r),
        }
    }

    fn duplicate_answer(&self, r: &GroupRequest) -> Option<GroupResponse> {
        match (&self.member, r) {
            (Member::Kv(m), GroupRequest::Kv(r)) => m.duplicate_answer(r).map(GroupResponse::Kv),
            (Member::Ctrl(m), GroupRequest::Ctrl(r)) => {
                m.duplicate_answer(r).map(GroupResponse::Ctrl)
            }
            (Member::Shard(m), GroupRequest::Shard(r)) => {
                m.duplicate_answer(r).map(GroupResponse::Shard)
            }
            _ => None,
        }
    }

    fn refusal(e: Error) -> GroupResponse {
        GroupResponse::Refused(e)
    }

    fn transfer_leader(&mut self, to: NodeId) {
        each_member!(&mut self.member, m => m.transfer_leader(to))
    }

    fn hand_off_unwritten(&mut self) -> Option<NodeId> {
        each_member!(&mut self.member, m => m.hand_off_unwritten())
    }
}

fn wrap_all<R>(
    v: Vec<(ReqId, R)>,
    wrap: fn(R) -> GroupResponse,
) -> impl Iterator<Item = (ReqId, GroupResponse)> {
    v.into_iter().map(move |(id, r)| (id, wrap(r)))
}

impl App for GroupApp {
    fn start(
        cfg: Config,
        restored: Restored,
        seed: u64,
        sim: &ClusterConfig,
        kind: GroupKind,
    ) -> Result<Self, String> {
        let gid = sim
            .groups
            .iter()
            .find(|g| g.members.contains(&cfg.id))
            .map(|g| g.gid)
            .ok_or_else(|| format!("{} is in no group", cfg.id))?;
        let polls = sim.group(gid).polls;
        let member = match kind {
            GroupKind::Raft => Member::Raft(RaftApp::start(cfg, restored, seed, sim, kind)?),
            GroupKind::Kv => Member::Kv(KvNode::start(cfg, restored, seed, sim, kind)?),
            GroupKind::Ctrl => Member::Ctrl(CtrlNode::start(cfg, restored, seed, sim, kind)?),
            GroupKind::Shard => {
                Member::Shard(Box::new(start_shard_group(cfg, restored, seed, sim, gid)?))
            }
        };
        let poller = polls.map(|ctrl| {
            let servers = sim.group(ctrl).members.clone();
            let tick_ms = sim.tick_us / 1000;
            ConfigPoller::new(ctrl, servers, tick_ms, Rng::new(seed ^ 0x9011))
        });
        Ok(GroupApp {
            member,
            gid,
            poller,
            refused: Vec::new(),
        })
    }

    fn runs(_: GroupKind) -> bool {
        true
    }

    /// The poller's requests keep their tokens; a shard group's duties' requests are
    /// tagged with [`DUTY_TOKEN`] (and [`SHARD_TOKEN`] when asking a shard group), so an
    /// answer finds its way back, refusals included.
    fn take_outbound(&mut self) -> Vec<Outbound<GroupRequest>> {
        let mut out = Vec::new();
        if let Some(p) = &mut self.poller {
            out.extend(p.take_outbound().into_iter().map(|o| Outbound {
                token: o.token,
                to: o.to,
                request: GroupRequest::Ctrl(o.request),
            }));
        }
        if let Member::Shard(m) = &mut self.member {
            out.extend(m.take_outbound().into_iter().map(|o| {
                let (tag, request) = match o.request {
                    DutyRequest::Ctrl(r) => (DUTY_TOKEN, GroupRequest::Ctrl(r)),
                    DutyRequest::Shard(r) => (DUTY_TOKEN | SHARD_TOKEN, GroupRequest::Shard(r)),
                };
                assert_eq!(o.token & tag, 0, "duty tokens stay below the tag bits");
                Outbound {
                    token: o.token | tag,
                    to: o.to,
                    request,
                }
            }));
        }
        out
    }

    fn on_answer(&mut self, token: u64, from: NodeId, r: GroupResponse) {
        if token & DUTY_TOKEN == 0 {
            let (Some(p), Some(reply)) =
                (&mut self.poller, <Self as ServiceApp<ShardCtrl>>::unwrap(r))
            else {
                return;
            };
            return p.on_answer(token, from, reply);
        }
        let Member::Shard(m) = &mut self.member else {
            return;
        };
        let answer = if token & SHARD_TOKEN != 0 {
            <Self as ServiceApp<ShardKv>>::unwrap(r).map(DutyAnswer::Shard)
        } else {
            <Self as ServiceApp<ShardCtrl>>::unwrap(r).map(DutyAnswer::Ctrl)
        };
        if let Some(a) = answer {
            m.on_answer(token & !(DUTY_TOKEN | SHARD_TOKEN), from, a);
        }
    }
}

/// Tags an outbound token as a shard group duty's (not the config poller's).
const DUTY_TOKEN: u64 = 1 << 63;
/// Tags a duty's token as a question to a shard group (not to the controller).
const SHARD_TOKEN: u64 = 1 << 62;

impl GroupApp {
    /// The bare Raft member, if this node runs one (mutable: tests propose to it).
    pub fn raft_app_mut(&mut self) -> Option<&mut RaftApp> {
        match &mut self.member {
            Member::Raft(a) => Some(a),
            _ => None,
        }
    }

    /// The bare Raft member, if this node runs one.
    pub fn raft_app(&self) -> Option<&RaftApp> {
        match &self.member {
            Member::Raft(a) => Some(a),
            _ => None,
        }
    }

    /// The shard group member, if this node runs one.
    pub fn shard_group(&self) -> Option<&ShardGroup> {
        match &self.member {
            Member::Shard(m) => Some(m),
            _ => None,
        }
    }
}

/// `ServiceApp` for one service of the world: its request and response variants and its
/// member variant (and how to reach the replica in it, when the member is more than one).
macro_rules! world_service {
    ($sm:ty, $variant:ident) => {
        world_service!($sm, $variant, m => m);
    };
    ($sm:ty, $variant:ident, $m:ident => $replica:expr) => {
        impl ServiceApp<$sm> for GroupApp {
            fn wrap(
                r: shardkv_rsm::Request<
                    <$sm as shardkv_rsm::StateMachine>::Command,
                    <$sm as shardkv_rsm::StateMachine>::Query,
                >,
            ) -> GroupRequest {
                GroupRequest::$variant(r)
            }

            fn unwrap(
                r: GroupResponse,
            ) -> Option<Reply<<$sm as shardkv_rsm::StateMachine>::Output>> {
                match r {
                    GroupResponse::$variant(r) => Some(r),
                    GroupResponse::Refused(e) => Some(Err(e)),
                    _ => None,
                }
            }

            fn replica(&self) -> Option<&Replica<$sm>> {
                match &self.member {
                    Member::$variant($m) => Some($replica),
                    _ => None,
                }
            }
        }
    };
}

world_service!(KvStore, Kv);
world_service!(ShardCtrl, Ctrl);
world_service!(ShardKv, Shard, m => &m.replica);
