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
use crate::chunk::Cursor;
use crate::command::{ShardInternal, ShardOutput, ShardQuery, ShardRequest};
use crate::machine::ShardKv;
use crate::shard::ShardState;
use shardkv_client::{Naming, Op, RetryPolicy, SingleGroup};
use shardkv_ctrl::{CtrlOutput, CtrlQuery, CtrlReply, GID_NONE, ShardCtrl};
use shardkv_rsm::{Replica, Reply, Request};
use shardkv_types::{ConfigNum, Gid, LogIndex, NodeId, Rng, ShardId, Term};
use std::collections::BTreeMap;

/// A request of the controller service.
pub type CtrlRequest = Request<shardkv_ctrl::CtrlCommand, CtrlQuery>;

/// The smallest pull chunk asked for (a chunk still holds at least one item).
pub const CHUNK_BYTES_MIN: u64 = 1024;

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
    /// About how many bytes of a shard one pull answer (and one install entry) carries.
    pub chunk_bytes: u64,
    /// The most bytes per second of shard data this group pulls (all pulls together), so a
    /// move leaves room for the shards that do not move; `None`: as fast as it goes.
    pub pull_bytes_per_s: Option<u64>,
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
    /// For a pull: where the asked chunk starts.
    from: Cursor,
    /// For a pull: the bytes reserved on the pull rate when it started.
    reserved: u64,
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
    /// Why the group cannot go on, if it cannot (for the shell to log).
    stuck: Option<String>,
    /// No pull starts before this time (the pull rate limit).
    pull_gate_ms: u64,
    /// The chunk size asked for now: the configured one, halved after a chunk the log
    /// refused as too large, grown back after chunks that fit.
    chunk_bytes: u64,
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
            stuck: None,
            pull_gate_ms: 0,
            chunk_bytes: opts.chunk_bytes,
        }
    }

    /// Why the group cannot take the next config on its own, if it cannot: a config from
    /// the controller with another shard count than this group's.
    pub fn stuck(&self) -> Option<&str> {
        self.stuck.as_deref()
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
            } else if self.not_before.get(&task).is_none_or(|&t| self.now_ms >= t)
                && (!matches!(task, Task::Pull { .. }) || self.now_ms >= self.pull_gate_ms)
            {
                self.start(task, target, replica);
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
                Progress::Done(r) => {
                    let (from, reserved) = (run.from.clone(), run.reserved);
                    let used = match &r {
                        Ok(ShardOutput::Chunk(c)) => c.bytes(),
                        _ => 0,
                    };
                    self.refund_pull(reserved.saturating_sub(used));
                    return self.finish_shard(task, from, r, replica);
                }
                p => p.map(|_| ()),
            },
            _ => return,
        };
        self.follow(task, p);
    }

    /// The duties the replicated state asks for, with where each goes.
    fn wanted(&self, sm: &ShardKv) -> BTreeMap<Task, Target> {
        let mut out = BTreeMap::new();
        let config = sm.config();
        if !sm.in_migration() {
            let next = ConfigNum(config.num.0 + 1);
            out.insert(Task::Poll { num: next }, self.ctrl_target());
        }
        for (&shard, s) in sm.shards() {
            let num = config.num;
            let (task, gid, servers) = match (s.state, &s.source) {
                (ShardState::Pulling, Some(src)) => {
                    (Task::Pull { num, shard }, src.gid, &src.servers[..])
                }
                (ShardState::BePulled, _) => {
                    let Some(gid) = config.owner(shard).filter(|&g| g != GID_NONE) else {
                        continue;
                    };
                    let servers = config.groups.get(&gid).map_or(&[][..], Vec::as_slice);
                    (Task::Confirm { num, shard }, gid, servers)
                }
                _ => continue,
            };
            let t = target(gid, servers, self.naming);
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

    fn start(&mut self, task: Task, t: Target, replica: &Replica<ShardKv>) {
        let group = SingleGroup::new(t.gid, t.servers.iter().map(|s| s.0).collect());
        let rng = self.rng.fork();
        let (policy, now) = (self.opts.policy, self.now_ms);
        let from = match task {
            Task::Pull { shard, .. } => pulled_to(replica.state_machine(), shard),
            _ => Cursor::Start,
        };
        let (asking, p) = match task {
            Task::Poll { num } => {
                let op = Op::Read(CtrlQuery { num: Some(num) });
                let (c, p) = Call::start(group, op, policy, rng, now);
                (Asking::Ctrl(c), p.map(|_| ()))
            }
            Task::Pull { num, shard } | Task::Confirm { num, shard } => {
                let q = match task {
                    Task::Pull { .. } => ShardQuery::Pull {
                        num,
                        shard,
                        from: from.clone(),
                        bytes_max: self.chunk_bytes,
                    },
                    _ => ShardQuery::Installed { num, shard },
                };
                let (c, p) = Call::start(group, Op::Read(q), policy, rng, now);
                (Asking::Shard(c), p.map(|_| ()))
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        let reserved = if matches!(task, Task::Pull { .. }) {
            self.reserve_pull(self.chunk_bytes);
            self.chunk_bytes
        } else {
            0
        };
        let run = Running {
            token,
            reserved,
            from,
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
        let have = replica.state_machine().config().shard_count();
        self.stuck = (next.shard_count() != have).then(|| {
            format!(
                "the controller's config {} has {} shards and this group {have}: it takes no config \
                 (start it with the cluster's shard count)",
                next.num,
                next.shard_count()
            )
        });
        if replica.state_machine().accepts(&next) {
            self.propose(task, ShardInternal::Reconfigure(next), replica);
        } else {
            // Nothing newer yet (the controller answers its latest for a number past it).
            let at = self.now_ms + self.opts.poll_every_ms;
            self.not_before.insert(task, at);
        }
    }

    /// A pull or confirmation ended; a pull's chunk is installed at `from`, where it was
    /// asked for (a chunk asked at an older position is refused by the install's check).
    fn finish_shard(
        &mut self,
        task: Task,
        from: Cursor,
        r: Reply<ShardOutput>,
        replica: &mut Replica<ShardKv>,
    ) {
        self.running.remove(&task);
        let step = match (task, r) {
            (Task::Pull { num, shard }, Ok(ShardOutput::Chunk(chunk))) => {
                // A chunk that came back grows the chunk size again, up to the configured
                // one, after a halving.
                self.chunk_bytes = (self.chunk_bytes * 2).min(self.opts.chunk_bytes);
                ShardInternal::Install {
                    num,
                    shard,
                    from,
                    chunk,
                }
            }
            (Task::Confirm { num, shard }, Ok(ShardOutput::Installed(true))) => {
                ShardInternal::Delete { num, shard }
            }
            _ => return self.retry_later(task),
        };
        self.propose(task, step, replica);
    }

    /// Holds the next pull back long enough for `bytes` more to stay within the pull rate
    /// (reserved when a pull starts, so pulls waiting on the gate do not all start at once).
    fn reserve_pull(&mut self, bytes: u64) {
        if let Some(rate) = self.opts.pull_bytes_per_s.filter(|&r| r > 0) {
            self.pull_gate_ms = self.pull_gate_ms.max(self.now_ms) + bytes * 1000 / rate;
        }
    }

    /// Gives back the part of a reservation a pull did not use.
    fn refund_pull(&mut self, bytes: u64) {
        if let Some(rate) = self.opts.pull_bytes_per_s.filter(|&r| r > 0) {
            let back = bytes * 1000 / rate;
            self.pull_gate_ms = self.pull_gate_ms.saturating_sub(back).max(self.now_ms);
        }
    }

    fn propose(&mut self, task: Task, step: ShardInternal, replica: &mut Replica<ShardKv>) {
        match replica.propose_internal(step) {
            Ok(index) => {
                self.proposed.insert(task, (index, replica.raft().term()));
            }
            // A chunk over the log's entry limit (big values, big sessions): ask for
            // smaller ones from now on.
            Err(shardkv_rsm::Error::TooLarge { .. }) => {
                if self.chunk_bytes == CHUNK_BYTES_MIN {
                    self.stuck = Some(format!(
                        "{task:?}: a chunk of the smallest size does not fit in a log entry"
                    ));
                }
                self.chunk_bytes = (self.chunk_bytes / 2).max(CHUNK_BYTES_MIN);
                self.retry_later(task);
            }
            Err(_) => self.retry_later(task),
        }
    }
}

/// Where the install of `shard` stands.
fn pulled_to(sm: &ShardKv, shard: ShardId) -> Cursor {
    sm.shards()
        .get(&shard)
        .map_or(Cursor::Start, |s| s.pulled_to.clone())
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
