//! [`Call`]: one operation of a clerk core to one group, driven by the node's own clock.
//! A group's leader uses it to ask the controller and other groups, over whatever network
//! the shell has, with the same retry rules as every client.

use shardkv_client::{CLERK_TICK_MS, ClerkCore, Next, Op, RetryPolicy, SingleGroup};
use shardkv_rsm::{Error, Reply, Request, StateMachine};
use shardkv_types::{NodeId, Rng};

/// What the call waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    /// The clerk's backoff before sending to `to`, until clerk tick `until`.
    Pause { to: NodeId, until: u64 },
    /// An answer from `to`, until clerk tick `deadline`.
    Answer { to: NodeId, deadline: u64 },
    /// Nothing: the call ended.
    Over,
}

/// What the shell does after feeding the call an event.
#[derive(Debug, PartialEq)]
pub enum Progress<O> {
    /// Nothing yet.
    Wait,
    /// Send [`Call::request`] to `to`.
    Send(NodeId),
    /// The call ended with this answer.
    Done(Reply<O>),
}

/// One operation in flight.
pub struct Call<SM: StateMachine> {
    core: ClerkCore<SM, SingleGroup>,
    waiting: Waiting,
}

impl<SM: StateMachine> std::fmt::Debug for Call<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Call({:?})", self.waiting)
    }
}

/// Clerk ticks at `now_ms` of the node's clock.
fn ticks(now_ms: u64) -> u64 {
    now_ms / CLERK_TICK_MS
}

impl<SM: StateMachine> Call<SM> {
    /// Starts `op` against `group` at `now_ms`.
    pub fn start(
        group: SingleGroup,
        op: Op<SM::Command, SM::Query>,
        policy: RetryPolicy,
        rng: Rng,
        now_ms: u64,
    ) -> (Call<SM>, Progress<SM::Output>) {
        let mut core = ClerkCore::new(group, policy, rng);
        let next = core.begin(op, ticks(now_ms));
        let mut call = Call {
            core,
            waiting: Waiting::Over,
        };
        let p = call.follow(next, now_ms);
        (call, p)
    }

    /// The request to send on every attempt.
    pub fn request(&self) -> Option<&Request<SM::Command, SM::Query>> {
        self.core.current()
    }

    /// The node's clock advanced to `now_ms`: send after a backoff, or give up on an
    /// attempt that was not answered in time.
    pub fn tick(&mut self, now_ms: u64) -> Progress<SM::Output> {
        let now = ticks(now_ms);
        match self.waiting {
            Waiting::Pause { to, until } if now >= until => self.send(to, now_ms),
            Waiting::Answer { to, deadline } if now >= deadline => {
                let next = self
                    .core
                    .on_timeout(now, format!("{to} did not answer in time"));
                self.follow(next, now_ms)
            }
            _ => Progress::Wait,
        }
    }

    /// `from` answered. An answer while no attempt waits (a late one) is ignored.
    pub fn on_answer(
        &mut self,
        now_ms: u64,
        from: NodeId,
        reply: Reply<SM::Output>,
    ) -> Progress<SM::Output> {
        if !matches!(self.waiting, Waiting::Answer { .. }) {
            return Progress::Wait;
        }
        let next = self.core.on_response(ticks(now_ms), from, reply);
        self.follow(next, now_ms)
    }

    fn follow(&mut self, next: Next<SM::Output>, now_ms: u64) -> Progress<SM::Output> {
        match next {
            Next::Send {
                to, delay_ticks, ..
            } if delay_ticks > 0 => {
                let until = ticks(now_ms) + delay_ticks;
                self.waiting = Waiting::Pause { to, until };
                Progress::Wait
            }
            Next::Send { to, .. } => self.send(to, now_ms),
            Next::Done(out) => self.end(Ok(out)),
            Next::Failed(e) => self.end(Err(e)),
            Next::Refresh => self.end(Err(Error::Unavailable {
                reason: "a fixed group needs no refresh".into(),
            })),
        }
    }

    fn end(&mut self, r: Reply<SM::Output>) -> Progress<SM::Output> {
        self.waiting = Waiting::Over;
        Progress::Done(r)
    }

    fn send(&mut self, to: NodeId, now_ms: u64) -> Progress<SM::Output> {
        let deadline = ticks(now_ms) + self.core.policy().attempt_ticks;
        self.waiting = Waiting::Answer { to, deadline };
        Progress::Send(to)
    }
}
