//! The Wing & Gong / Lowe search over one key's history, with four refinements beyond
//! porcupine that keep heavily concurrent keys and unknown outcomes tractable.
//!
//! Base search (depth first): the *candidates* at a level are the calls that precede the
//! first remaining return, tried in call order. Linearizing a candidate whose recorded
//! output fits the state, and whose resulting configuration (linearized set, state) is new,
//! lifts its events out of the list and starts the next level. When every candidate has
//! been tried, the op of the first remaining return can never go next: backtrack.
//!
//! Refinement 1, observers first: a candidate that leaves every state unchanged (a read, a
//! CAS known to have failed) and whose output fits the current state can be linearized now
//! without loss: in any valid completion it can be moved to the front, since no remaining
//! op returned before its call (it is a candidate) and moving it changes no state. So it is
//! taken at once, and if that fails the whole configuration fails: the search never
//! branches on reads.
//!
//! Refinement 2, dominance: a failed configuration also rules out those that add unknown
//! ops to it and reach the same state (see `Cache`).
//!
//! Refinement 3, old unknown ops last (one of two orders, see `Order`): unknown-outcome ops
//! called before every pending completed op are tried after the other candidates. Such an
//! op most likely never took effect, and trying configurations without it first lets
//! dominance cut the variants with it. The order of trials never changes the verdict, only
//! the time to reach it, so the checker runs both orders side by side.
//!
//! Refinement 4, look-ahead (see `reach`): a level first checks that every pending read
//! (and swapping CAS) can still see its value from the current state using the ops not
//! linearized; if one cannot, the configuration has no completion and is backtracked at
//! once. Without it, concurrent appends explode: each order of them is a different state,
//! so the memo never merges two orders, and a wrong order was only found dead at the return
//! of the read that pins it, after trying every ordered subset of the appends in between.
//!
//! Unknown outcomes: such an op's return is at +infinity, after every finite event. Reaching
//! one means every op that did complete has been linearized; the unknown ops still pending
//! are the ones that never took effect, so the history is linearizable.

use crate::bitset::LinearizedSet;
use crate::cache::{Cache, EntryId};
use crate::events::{Event, EventList};
use crate::reach::Reach;
use crate::states::{StateId, StateTable};

/// A linearized op and what to restore when backtracking over it.
#[derive(Clone, Copy, Debug)]
struct Frame {
    op: u32,
    /// The configuration this op led to, marked failed when backtracking over it.
    entry: EntryId,
    state_before: StateId,
    /// The pass that chose it; `None` for an observer taken without alternatives
    /// (refinement 1), which backtracking goes past.
    pass: Option<Pass>,
}

/// How a level orders its candidates. Both orders are complete: they differ only in how
/// soon they find the verdict, so the checker may run both and take the first answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Every candidate in call order, as porcupine does. Fast when the unknown-outcome ops
    /// took effect soon after their call, the common case in linearizable histories.
    CallOrder,
    /// Old unknown-outcome ops last (refinement 3). Fast at proving that no order exists
    /// when many unknown ops never took effect.
    OldUnknownsLast,
}

/// The two passes over a level's candidates (refinement 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// From the first pending call of a completed op up to the first return, in call order.
    Main,
    /// The unknown-outcome ops called before every pending completed op.
    Old,
}

/// The deepest point a failed search reached, for the explanation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Deepest {
    /// Ops of the linearizable prefix with the most completed ops found, in linearization
    /// order, each with the state after it.
    pub(crate) prefix: Vec<(u32, StateId)>,
    /// Completed ops in `prefix` (the measure of "longest").
    pub(crate) known_in_prefix: usize,
    /// The op whose return was reached with no way to linearize it.
    pub(crate) blocked: u32,
    /// Ops that were candidates (called, not linearized) at that point, blocked excluded.
    pub(crate) candidates: Vec<u32>,
    /// Whether `blocked` was cut by the look-ahead (refinement 4: no op left can produce the
    /// value it needs) rather than by reaching its return.
    pub(crate) unreachable: bool,
}

/// How the search of one key ended.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Linearizable,
    NotLinearizable(Deepest),
}

/// What to do after a step of the main loop.
#[derive(Debug)]
enum Next {
    /// Start a new level: look for an observer, then scan from the head.
    Level,
    /// Continue scanning the current level's candidates at `position` in a pass.
    Scan(u32, Pass),
    /// The current configuration has no completion: pop a frame.
    Backtrack,
    Done(Outcome),
}

/// The search state of one key. Ops `0..known` completed, the rest have unknown outcomes.
///
/// Invariants: `linearized` holds exactly the ops in `stack`, and exactly those ops are
/// lifted out of `events`; `state` is the result of applying the stack's ops in order to
/// the absent key.
pub(crate) struct Search<'h> {
    pub(crate) table: StateTable<'h>,
    events: EventList,
    known: u32,
    linearized: LinearizedSet,
    cache: Cache,
    /// Refinement 4: cuts configurations whose pending reads can no longer be satisfied.
    reach: Reach,
    stack: Vec<Frame>,
    state: StateId,
    deepest: Option<Deepest>,
    /// Completed ops on `stack`.
    known_on_stack: usize,
    order: Order,
    /// Where `run` resumes.
    next: Next,
    pub(crate) steps: u64,
}

impl<'h> Search<'h> {
    /// Prepares the search; `times[i]` are op i's call and return, with `None` (+infinity)
    /// exactly for the unknown-outcome ops `known..`; `look_ahead` as [`Reach::applies`].
    pub(crate) fn new(
        table: StateTable<'h>,
        times: &[(u64, Option<u64>)],
        known: usize,
        order: Order,
        look_ahead: bool,
    ) -> Search<'h> {
        assert!(
            times[..known].iter().all(|t| t.1.is_some()),
            "completed ops first"
        );
        assert!(
            times[known..].iter().all(|t| t.1.is_none()),
            "unknown ops last"
        );
        let ops: Vec<_> = (0..times.len()).map(|op| table.op(op as u32)).collect();
        let reach = Reach::new(&ops, look_ahead);
        Search {
            table,
            reach,
            events: EventList::new(times),
            known: u32::try_from(known).expect("lincheck: over 2^32 ops in a key"),
            linearized: LinearizedSet::new(known, times.len() - known),
            cache: Cache::default(),
            stack: Vec::new(),
            state: StateId::ABSENT,
            deepest: None,
            known_on_stack: 0,
            order,
            next: Next::Level,
            steps: 0,
        }
    }

    /// Configurations remembered so far.
    pub(crate) fn configurations(&self) -> usize {
        self.cache.len()
    }

    /// Memory held by the memo, in bytes.
    pub(crate) fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Runs until decided, or pauses (`None`) once `steps` reaches `steps_until` or the memo
    /// exceeds `cache_bytes_max`. Can be called again to resume; a decided search keeps
    /// answering `Some` with a copy of its outcome.
    pub(crate) fn run(&mut self, steps_until: u64, cache_bytes_max: usize) -> Option<Outcome> {
        loop {
            if let Next::Done(outcome) = &self.next {
                return Some(outcome.clone());
            }
            if self.steps >= steps_until || self.cache.bytes() > cache_bytes_max {
                return None;
            }
            self.steps += 1;
            self.next = match std::mem::replace(&mut self.next, Next::Backtrack) {
                Next::Level => self.start_level(),
                Next::Scan(position, pass) => self.scan(position, pass),
                Next::Backtrack => self.backtrack(),
                done @ Next::Done(_) => done,
            };
        }
    }

    /// Takes an observer if one fits, else starts scanning the candidates.
    fn start_level(&mut self) -> Next {
        if let Some(op) = self.reach.unreachable(&self.table, self.state) {
            self.note_dead_end(op);
            return Next::Backtrack;
        }
        let mut position = self.events.first();
        while let Event::Call(op) = self.events.event(position) {
            if self.table.is_observer_now(self.state, op) {
                return if self.try_linearize(op, None) {
                    Next::Level
                } else {
                    // Seen before with this op first: that configuration already failed.
                    Next::Backtrack
                };
            }
            position = self.events.next(position);
        }
        let start = match self.order {
            Order::CallOrder => self.events.first(),
            Order::OldUnknownsLast => self.first_main(),
        };
        Next::Scan(start, Pass::Main)
    }

    /// Where the main pass starts: after the leading run of unknown-outcome calls.
    fn first_main(&self) -> u32 {
        let mut position = self.events.first();
        while matches!(self.events.event(position), Event::Call(op) if op >= self.known) {
            position = self.events.next(position);
        }
        position
    }

    /// Examines the event at `position` in `pass`.
    fn scan(&mut self, position: u32, pass: Pass) -> Next {
        match (self.events.event(position), pass) {
            (Event::End | Event::Endless(_), Pass::Main) => Next::Done(Outcome::Linearizable),
            (Event::Call(op), Pass::Old) if op < self.known => Next::Backtrack,
            (Event::Call(op), _) => {
                if self.try_linearize(op, Some(pass)) {
                    Next::Level
                } else {
                    Next::Scan(self.events.next(position), pass)
                }
            }
            (Event::Return(op), Pass::Main) => {
                self.note_depth(position, op, false);
                match self.order {
                    Order::CallOrder => Next::Backtrack,
                    Order::OldUnknownsLast => Next::Scan(self.events.first(), Pass::Old),
                }
            }
            (_, Pass::Old) => Next::Backtrack,
        }
    }

    /// Undoes frames up to and including the most recent one that has alternatives left,
    /// and resumes scanning after it.
    fn backtrack(&mut self) -> Next {
        while let Some(frame) = self.stack.pop() {
            self.events.unlift(frame.op);
            self.reach.unlift(frame.op);
            self.linearized.remove(self.bit(frame.op));
            self.state = frame.state_before;
            self.cache.mark_failed(frame.entry);
            self.known_on_stack -= usize::from(frame.op < self.known);
            if let Some(pass) = frame.pass {
                return Next::Scan(self.events.next(self.events.call_position(frame.op)), pass);
            }
        }
        let deepest = self
            .deepest
            .take()
            .expect("some return was reached before failing");
        Next::Done(Outcome::NotLinearizable(deepest))
    }

    /// The bit of `op` in the linearized set.
    fn bit(&self, op: u32) -> u32 {
        if op < self.known {
            op
        } else {
            self.linearized.bit_of_unknown((op - self.known) as usize)
        }
    }

    /// Linearizes `op` next if its output fits the state and the resulting configuration is
    /// new. Returns whether it did.
    fn try_linearize(&mut self, op: u32, pass: Option<Pass>) -> bool {
        let Some(next) = self.table.step(self.state, op) else {
            return false;
        };
        let bit = self.bit(op);
        self.linearized.insert(bit);
        let Some(entry) = self.cache.insert(&self.linearized, next) else {
            self.linearized.remove(bit);
            return false;
        };
        self.stack.push(Frame {
            op,
            entry,
            state_before: self.state,
            pass,
        });
        self.state = next;
        self.known_on_stack += usize::from(op < self.known);
        self.events.lift(op);
        self.reach.lift(op);
        true
    }

    /// Remembers the current prefix, as `note_depth`, when `blocked` (a candidate) needs a
    /// value that no remaining op can produce (refinement 4).
    fn note_dead_end(&mut self, blocked: u32) {
        let mut position = self.events.first();
        while let Event::Call(_) = self.events.event(position) {
            position = self.events.next(position);
        }
        self.note_depth(position, blocked, true);
    }

    /// Remembers the current prefix if it has more completed ops than any seen (unknown
    /// ops applied on the way do not count: they are optional); `position` holds the return
    /// of `blocked`, or the first return after its call.
    fn note_depth(&mut self, position: u32, blocked: u32, unreachable: bool) {
        if self
            .deepest
            .as_ref()
            .is_some_and(|d| d.known_in_prefix >= self.known_on_stack)
        {
            return;
        }
        let depth = self.stack.len();
        let prefix = (0..depth)
            .map(|i| {
                let after = self.stack.get(i + 1).map_or(self.state, |f| f.state_before);
                (self.stack[i].op, after)
            })
            .collect();
        let mut candidates = Vec::new();
        let mut cursor = self.events.first();
        while cursor != position {
            if let Event::Call(op) = self.events.event(cursor)
                && op != blocked
            {
                candidates.push(op);
            }
            cursor = self.events.next(cursor);
        }
        self.deepest = Some(Deepest {
            prefix,
            known_in_prefix: self.known_on_stack,
            blocked,
            candidates,
            unreachable,
        });
    }

    /// The state after the deepest prefix.
    pub(crate) fn state_after(&self, deepest: &Deepest) -> StateId {
        deepest.prefix.last().map_or(StateId::ABSENT, |(_, s)| *s)
    }
}
