//! [`Counters`]: a small state machine that exercises everything `rsm` offers a state
//! machine — client writes, refusals, internal commands, session export and merge — for
//! rsm's own tests and the simulator. Not for production use.
//!
//! Counters live in numbered slots. The group owns some slots; a client write or read of a
//! slot it does not own is refused with `WrongGroup` (and not recorded in the session). A
//! slot arrives with its counters and the sessions of its old owner through the internal
//! command `Acquire`, and leaves through `Release`, the way a shard moves between groups.

use crate::{Applying, Error, Request, Sessions, StateMachine};
use serde::{Deserialize, Serialize};
use shardkv_types::Gid;
use std::collections::{BTreeMap, BTreeSet};

/// The largest slot number accepted.
pub const SLOT_MAX: u32 = 1023;

/// A client write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterCommand {
    /// Adds `n` to the counter of `slot`; answers the new value.
    Add { slot: u32, n: u64 },
}

/// A read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterQuery {
    Get { slot: u32 },
}

/// A command of the group itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterInternal {
    /// The slot arrives with its value and its old owner's sessions (merged here).
    Acquire {
        slot: u32,
        value: u64,
        sessions: Sessions<u64>,
    },
    /// The slot leaves; its counter is dropped.
    Release { slot: u32 },
}

/// Counters per owned slot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// The group these counters belong to (named in `WrongGroup`).
    pub gid: Gid,
    /// Invariant: holds exactly the owned slots.
    pub values: BTreeMap<u32, u64>,
    /// Internal commands applied, in order (so tests can see them).
    pub internal_applied: Vec<CounterInternal>,
}

impl Counters {
    /// Counters owning `slots`, each at 0.
    pub fn owning(gid: Gid, slots: &BTreeSet<u32>) -> Counters {
        Counters {
            gid,
            values: slots.iter().map(|s| (*s, 0)).collect(),
            internal_applied: Vec::new(),
        }
    }

    fn owned(&self, slot: u32) -> Result<(), Error> {
        if self.values.contains_key(&slot) {
            Ok(())
        } else {
            Err(Error::WrongGroup { gid: self.gid })
        }
    }
}

impl StateMachine for Counters {
    type Command = CounterCommand;
    type Query = CounterQuery;
    type Output = u64;
    type Internal = CounterInternal;

    fn validate(req: &Request<CounterCommand, CounterQuery>) -> Result<(), Error> {
        let slot = match req {
            Request::Read(CounterQuery::Get { slot }) => *slot,
            Request::Write {
                cmd: CounterCommand::Add { slot, .. },
                ..
            } => *slot,
        };
        if slot > SLOT_MAX {
            return Err(Error::Invalid {
                reason: format!("slot {slot} is past the last slot {SLOT_MAX}"),
            });
        }
        Ok(())
    }

    fn admits(&self, cmd: &CounterCommand) -> Result<(), Error> {
        let CounterCommand::Add { slot, .. } = cmd;
        self.owned(*slot)
    }

    fn apply(&mut self, cmd: &CounterCommand, _: &mut Applying<'_, u64>) -> Result<u64, Error> {
        let CounterCommand::Add { slot, n } = cmd;
        self.owned(*slot)?;
        let v = self.values.get_mut(slot).expect("owned");
        *v += n;
        Ok(*v)
    }

    fn apply_internal(&mut self, cmd: &CounterInternal, ctx: &mut Applying<'_, u64>) {
        match cmd {
            CounterInternal::Acquire {
                slot,
                value,
                sessions,
            } => {
                // Idempotent: a second install of an owned slot changes nothing.
                if !self.values.contains_key(slot) {
                    self.values.insert(*slot, *value);
                    ctx.sessions.merge(sessions, ctx.index, &ctx.limits);
                }
            }
            CounterInternal::Release { slot } => {
                self.values.remove(slot);
            }
        }
        self.internal_applied.push(cmd.clone());
    }

    fn query(&self, q: &CounterQuery, _: &Sessions<u64>) -> Result<u64, Error> {
        let CounterQuery::Get { slot } = q;
        self.owned(*slot)?;
        Ok(self.values[slot])
    }
}
