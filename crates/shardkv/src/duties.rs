//! [`Duties`]: what the leader of a shard group does for a reconfiguration, derived afresh
//! on every tick from replicated state, so a new leader or a restarted member resumes it:
//!
//! - no shard in migration: poll the controller for config `num + 1`, propose it;
//! - a shard `Pulling`: pull it from its owner in the previous config, propose the install;
//! - a shard `BePulled`: ask its new owner whether it installed it, then propose the delete.
//!
//! Every question is a linearizable read of the other group, sent through a clerk core
//! ([`Call`]); the shell carries the requests ([`Duties::take_outbound`]) and the answers
//! ([`Duties::on_answer`]). Followers do nothing.

use crate::call::{Call, Progress};
use crate::command::{ShardInternal, ShardOutput, ShardQuery, ShardRequest};
use crate::machine::ShardKv;
use crate::shard::ShardState;
use shardkv_client::{Naming, Op, RetryPolicy, SingleGroup};
use shardkv_ctrl::{Config, CtrlOutput, CtrlQuery, CtrlReply, GID_NONE, ShardCtrl};
use shardkv_rsm::{Replica, Reply, Request};
use shardkv_types::{ConfigNum, Gid, LogIndex, NodeId, Rng, ShardId, Term};
use std::collections::BTreeMap;

/// A request of the controller service.
pub type CtrlRequest = Request<shardkv_ctrl::CtrlCommand, CtrlQuery>;

/// Timing of the duties, in milliseconds of the node's clock.
#[derive(Clone, Copy, Debug)]
pub struct DutyOptions {
    /// The node's tick.
    pub tick_ms: u64,
    /// How often a stable leader asks the controller for the next config.
    pub poll_every_ms: u64,
    /// The pause before a duty is tried again after an answer that was no progress.
    pub retry_ms: u64,
    /// The clerk policy of each question.
    pub policy: RetryPolicy,
}

/// One duty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Task {
    /// Ask the controller for config `num`.
    Poll { num: ConfigNum },
    /// Pull `shard` of config `num` from the previous owner.
    Pull { num: ConfigNum, shard: ShardId },
    /// Ask the new owner whether it installed `shard` of config `num`.
    Confirm { num: ConfigNum, shard: ShardId },
}

/// A request to another group.
#[derive(Clone, Debug)]
pub enum DutyRequest {
    Ctrl(CtrlRequest),
    Shard(ShardRequest),
}

/// An answer from another group.
#[derive(Clone, Debug)]
pub enum DutyAnswer {
    Ctrl(Reply<CtrlOutput>),
    Shard(Reply<ShardOutput>),
}

/// A request for the shell to send.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// Names the request in the answer.
    pub token: u64,
    /// The group asked.
    pub gid: Gid,
    pub to: NodeId,
    /// The server's name as the config (or the controller list) gives it: its address in
    /// production.
    pub addr: String,
    pub request: DutyRequest,
}

enum Asking {
    Ctrl(Call<ShardCtrl>),
    Shard(Call<ShardKv>),
}

struct Running {
    token: u64,
    gid: Gid,
    servers: Vec<(NodeId, String)>,
    asking: Asking,
}

/// Where a duty goes: a group and its servers.
struct Target {
    gid: Gid,
    servers: Vec<(NodeId, String)>,
}

/// The leader's reconfiguration duties of one group member.
pub struct Duties {
    ctrl: Target,
    naming: Naming,
    opts: DutyOptions,
    now_ms: u64,
    running: BTreeMap<Task, Running>,
    /// A duty finished without progress is not retried before this time.
    not_before: BTreeMap<Task, u64>,
    /// A duty whose step was proposed waits while the proposal may still commit.
    proposed: BTreeMap<Task, (LogIndex, Term)>,
    next_token: u64,
    outbound: Vec<Outbound>,
    rng: Rng,
}

impl std::fmt::Debug for Duties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running: Vec<_> = self.running.keys().collect();
        write!(
            f,
            "Duties(at {} ms: running {running:?}, waiting {:?}, proposed {:?})",
            self.now_ms, self.not_before, self.proposed
        )
    }
}

impl Duties {
    /// Duties of a member whose controller group `ctrl_gid` is served by `ctrl_servers`.
    pub fn new(
        ctrl_gid: Gid,
        ctrl_servers: &[String],
        naming: Naming,
        opts: DutyOptions,
        rng: Rng,
    ) -> Duties {
        Duties {
            ctrl: target(ctrl_gid, ctrl_servers, naming),
            naming,
            opts,
            now_ms: 0,
            running: BTreeMap::new(),
            not_before: BTreeMap::new(),
            proposed: BTreeMap::new(),
            next_token: 1,
            outbound: Vec::new(),
            rng,
        }
    }

    /// The duties in progress.
    pub fn running(&self) -> impl Iterator<Item = &Task> {
        self.running.keys()
    }

    /// One tick of the node's clock: on the leader, start the duties the replicated state
    /// asks for and drive the ones in flight; elsewhere, drop them all.
    pub fn tick(&mut self, replica: &mut Replica<ShardKv>) {
        self.now_ms += self.opts.tick_ms;
        if !replica.raft().is_leader() {
            self.running.clear();
            self.proposed.clear();
            return;
        }
        let term = replica.raft().term();
        let applied = replica.applied();
        self.proposed
            .retain(|_, &mut (index, t)| t == term && applied < index);
        let wanted = self.wanted(replica.state_machine());
        self.running.retain(|task, _| wanted.contains_key(task));
        self.not_before.retain(|task, _| wanted.contains_key(task));
        for (task, target) in wanted {
            if self.proposed.contains_key(&task) {
                continue;
            }
            if let Some(run) = self.running.get_mut(&task) {
                let p = match &mut run.asking {
                    Asking::Ctrl(c) => c.tick(self.now_ms).map(|_| ()),
                    Asking::Shard(c) => c.tick(self.now_ms).map(|_| ()),
                };
                self.follow(task, p);
            } else if self.not_before.get(&task).is_none_or(|&t| self.now_ms >= t) {
                self.start(task, target);
            }
        }
    }

    /// Requests to send, drained by the shell.
    pub fn take_outbound(&mut self) -> Vec<Outbound> {
        std::mem::take(&mut self.outbound)
    }

    /// The answer from `from` to request `token` (a late or unknown one is ignored).
    pub fn on_answer(
        &mut self,
        token: u64,
        from: NodeId,
        answer: DutyAnswer,
        replica: &mut Replica<ShardKv>,
    ) {
        let Some((&task, run)) = self.running.iter_mut().find(|(_, r)| r.token == token) else {
            return;
        };
        let now = self.now_ms;
        let p = match (&mut run.asking, answer) {
            (Asking::Ctrl(c), DutyAnswer::Ctrl(r)) => match c.on_answer(now, from, r) {
                Progress::Done(r) => return self.finish_poll(task, r, replica),
                p => p.map(|_| ()),
            },
            (Asking::Shard(c), DutyAnswer::Shard(r)) => match c.on_answer(now, from, r) {
                Progress::Done(r) => return self.finish_shard(task, r, replica),
                p => p.map(|_| ()),
            },
            _ => return,
        };
        self.follow(task, p);
    }

    /// The duties the replicated state asks for, with where each goes.
    fn wanted(&self, sm: &ShardKv) -> BTreeMap<Task, Target> {
        let mut out = BTreeMap::new();
        let (config, prev) = (sm.config(), sm.prev_config());
        if !sm.in_migration() {
            let next = ConfigNum(config.num.0 + 1);
            out.insert(Task::Poll { num: next }, self.ctrl_target());
        }
        for (&shard, s) in sm.shards() {
            let (task, owner, cfg) = match s.state {
                ShardState::Serving => continue,
                ShardState::Pulling => (
                    Task::Pull {
                        num: config.num,
                        shard,
                    },
                    prev.owner(shard),
                    prev,
                ),
                ShardState::BePulled => (
                    Task::Confirm {
                        num: config.num,
                        shard,
                    },
                    config.owner(shard),
                    config,
                ),
            };
            // A shard given to nobody waits for a group to take it.
            let Some(gid) = owner.filter(|&g| g != GID_NONE) else {
                continue;
            };
            let t = self.group_target(cfg, gid);
            if !t.servers.is_empty() {
                out.insert(task, t);
            }
        }
        out
    }

    fn ctrl_target(&self) -> Target {
        Target {
            gid: self.ctrl.gid,
            servers: self.ctrl.servers.clone(),
        }
    }

    fn group_target(&self, cfg: &Config, gid: Gid) -> Target {
        let names = cfg.groups.get(&gid).map_or(&[][..], Vec::as_slice);
        target(gid, names, self.naming)
    }

    fn start(&mut self, task: Task, t: Target) {
        let group = SingleGroup::new(t.gid, t.servers.iter().map(|s| s.0).collect());
        let rng = self.rng.fork();
        let (policy, now) = (self.opts.policy, self.now_ms);
        let (asking, p) = match task {
            Task::Poll { num } => {
                let op = Op::Read(CtrlQuery { num: Some(num) });
                let (c, p) = Call::start(group, op, policy, rng, now);
                (Asking::Ctrl(c), p.map(|_| ()))
            }
            Task::Pull { num, shard } | Task::Confirm { num, shard } => {
                let q = match task {
                    Task::Pull { .. } => ShardQuery::Pull { num, shard },
                    _ => ShardQuery::Installed { num, shard },
                };
                let (c, p) = Call::start(group, Op::Read(q), policy, rng, now);
                (Asking::Shard(c), p.map(|_| ()))
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        let run = Running {
            token,
            gid: t.gid,
            servers: t.servers,
            asking,
        };
        self.running.insert(task, run);
        self.follow(task, p);
    }

    /// Sends for `task` if its call asks to; a call that ended (only by giving up: answers
    /// come through `on_answer`) is retried later.
    fn follow(&mut self, task: Task, p: Progress<()>) {
        match p {
            Progress::Wait => {}
            Progress::Send(to) => {
                let run = &self.running[&task];
                let request = match &run.asking {
                    Asking::Ctrl(c) => DutyRequest::Ctrl(c.request().expect("in flight").clone()),
                    Asking::Shard(c) => DutyRequest::Shard(c.request().expect("in flight").clone()),
                };
                let addr = run
                    .servers
                    .iter()
                    .find(|s| s.0 == to)
                    .map_or_else(String::new, |s| s.1.clone());
                self.outbound.push(Outbound {
                    token: run.token,
                    gid: run.gid,
                    to,
                    addr,
                    request,
                });
            }
            Progress::Done(_) => self.retry_later(task),
        }
    }

    fn retry_later(&mut self, task: Task) {
        self.running.remove(&task);
        self.not_before
            .insert(task, self.now_ms + self.opts.retry_ms);
    }

    fn finish_poll(&mut self, task: Task, r: Reply<CtrlOutput>, replica: &mut Replica<ShardKv>) {
        self.running.remove(&task);
        let next = match r {
            Ok(Ok(CtrlReply::Config(c))) => c,
            _ => return self.retry_later(task),
        };
        if replica.state_machine().accepts(&next) {
            self.propose(task, ShardInternal::Reconfigure(next), replica);
        } else {
            // Nothing newer yet (the controller answers its latest for a number past it).
            let at = self.now_ms + self.opts.poll_every_ms;
            self.not_before.insert(task, at);
        }
    }

    fn finish_shard(&mut self, task: Task, r: Reply<ShardOutput>, replica: &mut Replica<ShardKv>) {
        self.running.remove(&task);
        let step = match (task, r) {
            (Task::Pull { num, shard }, Ok(ShardOutput::Shard(export))) => {
                ShardInternal::Install { num, shard, export }
            }
            (Task::Confirm { num, shard }, Ok(ShardOutput::Installed(true))) => {
                ShardInternal::Delete { num, shard }
            }
            _ => return self.retry_later(task),
        };
        self.propose(task, step, replica);
    }

    fn propose(&mut self, task: Task, step: ShardInternal, replica: &mut Replica<ShardKv>) {
        match replica.propose_internal(step) {
            Ok(index) => {
                self.proposed.insert(task, (index, replica.raft().term()));
            }
            Err(_) => self.retry_later(task),
        }
    }
}

fn target(gid: Gid, names: &[String], naming: Naming) -> Target {
    Target {
        gid,
        servers: naming.servers(names),
    }
}

impl<O> Progress<O> {
    fn map<P>(self, f: impl FnOnce(O) -> P) -> Progress<P> {
        match self {
            Progress::Wait => Progress::Wait,
            Progress::Send(to) => Progress::Send(to),
            Progress::Done(r) => Progress::Done(r.map(f)),
        }
    }
}
