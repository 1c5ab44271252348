//! [`ConfigPoller`]: a controller clerk that runs *inside* a node of another group and polls
//! the controller for the latest config through the simulator's outbound hook
//! ([`App::take_outbound`](crate::App::take_outbound)), as shard groups will. It is the
//! production clerk core ([`ClerkCore`]) driven by the node's own clock (its Raft ticks),
//! so its requests and answers cross the same faulty network as everything else.

use crate::app::Outbound;
use shardkv_client::{CLERK_TICK_MS, ClerkCore, Next, Op, SingleGroup};
use shardkv_ctrl::{Config, CtrlOutput, CtrlReply, ShardCtrl};
use shardkv_rsm::{Reply, Request};
use shardkv_types::{ConfigNum, Gid, NodeId, Rng};

/// How often an idle poller asks, in milliseconds of its node's clock.
pub const POLL_EVERY_MS: u64 = 100;

/// A request of the controller service.
pub type CtrlRequest = Request<shardkv_ctrl::CtrlCommand, shardkv_ctrl::CtrlQuery>;

/// What the poll in progress waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    /// Nothing: the next poll starts at `next_poll_ms`.
    Idle,
    /// The clerk's backoff before sending to `to`, until clerk tick `until`.
    Pause { to: NodeId, until: u64 },
    /// An answer from `to`, until clerk tick `deadline`.
    Answer { to: NodeId, deadline: u64 },
}

/// Polls one controller group for its latest config, forever.
pub struct ConfigPoller {
    core: ClerkCore<ShardCtrl, SingleGroup>,
    /// This node's clock: milliseconds of Raft ticks since it started.
    now_ms: u64,
    tick_ms: u64,
    next_poll_ms: u64,
    /// Numbers polls; an answer carries the number of the poll it answers.
    poll_no: u64,
    waiting: Waiting,
    outbound: Vec<Outbound<CtrlRequest>>,
    /// The config numbers the polls returned, in order. A poll starts after the previous
    /// one returned, so linearizable reads make this non-decreasing.
    pub seen: Vec<ConfigNum>,
    /// The newest config learned.
    pub latest: Option<Config>,
}

impl std::fmt::Debug for ConfigPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigPoller(poll {}, {:?})", self.poll_no, self.waiting)
    }
}

impl ConfigPoller {
    /// A poller of controller group `gid` of `servers` on a node whose Raft tick is
    /// `tick_ms`.
    pub fn new(gid: Gid, servers: Vec<NodeId>, tick_ms: u64, rng: Rng) -> ConfigPoller {
        let router = SingleGroup::new(gid, servers);
        ConfigPoller {
            core: ClerkCore::new(router, crate::SIM_CLERK_POLICY, rng),
            now_ms: 0,
            tick_ms: tick_ms.max(1),
            next_poll_ms: POLL_EVERY_MS,
            poll_no: 0,
            waiting: Waiting::Idle,
            outbound: Vec::new(),
            seen: Vec::new(),
            latest: None,
        }
    }

    fn clerk_ticks(&self) -> u64 {
        self.now_ms / CLERK_TICK_MS
    }

    /// One tick of the node's clock: starts a poll when due, sends after a backoff, gives
    /// up on an attempt that was not answered in time.
    pub fn tick(&mut self) {
        self.now_ms += self.tick_ms;
        let now = self.clerk_ticks();
        match self.waiting {
            Waiting::Idle if self.now_ms >= self.next_poll_ms => {
                self.poll_no += 1;
                let next = self
                    .core
                    .begin(Op::Read(shardkv_ctrl::CtrlQuery { num: None }), now);
                self.follow(next);
            }
            Waiting::Pause { to, until } if now >= until => self.send(to),
            Waiting::Answer { to, deadline } if now >= deadline => {
                let next = self
                    .core
                    .on_timeout(now, format!("{to} did not answer in time"));
                self.follow(next);
            }
            _ => {}
        }
    }

    /// The answer to poll `token` from `from`.
    pub fn on_answer(&mut self, token: u64, from: NodeId, reply: Reply<CtrlOutput>) {
        if token != self.poll_no || self.waiting == Waiting::Idle {
            return; // an answer to an earlier poll
        }
        let next = self.core.on_response(self.clerk_ticks(), from, reply);
        self.follow(next);
    }

    /// Requests to send, drained by the simulator.
    pub fn take_outbound(&mut self) -> Vec<Outbound<CtrlRequest>> {
        std::mem::take(&mut self.outbound)
    }

    fn follow(&mut self, next: Next<CtrlOutput>) {
        let now = self.clerk_ticks();
        match next {
            Next::Send {
                to, delay_ticks, ..
            } if delay_ticks > 0 => {
                let until = now + delay_ticks;
                self.waiting = Waiting::Pause { to, until };
            }
            Next::Send { to, .. } => self.send(to),
            Next::Done(Ok(CtrlReply::Config(c))) => {
                self.seen.push(c.num);
                if self.latest.as_ref().is_none_or(|l| l.num <= c.num) {
                    self.latest = Some(c);
                }
                self.idle();
            }
            // A refused or failed poll (or an impossible answer) is retried at the next.
            Next::Done(_) | Next::Failed(_) | Next::Refresh => self.idle(),
        }
    }

    fn idle(&mut self) {
        self.waiting = Waiting::Idle;
        self.next_poll_ms = self.now_ms + POLL_EVERY_MS;
    }

    fn send(&mut self, to: NodeId) {
        let request = self.core.current().expect("a poll in flight").clone();
        self.outbound.push(Outbound {
            token: self.poll_no,
            to,
            request,
        });
        let deadline = self.clerk_ticks() + self.core.policy().attempt_ticks;
        self.waiting = Waiting::Answer { to, deadline };
    }
}
