//! Preferred leaders: each group names one of its voters as the member that should lead it,
//! so that a process hosting replicas of several groups leads only some of them and the
//! groups' leaders (and their load, and the Redis front end's slot masters) spread over the
//! processes.
//!
//! The preferred member of a group of rank `r` (its group id) is the `r mod n`-th of its `n`
//! voters in id order. A leader that is not the preferred member hands leadership to it with
//! Raft's leadership transfer once the preferred member's log matches its own (so the
//! transfer is quick), and never more often than every [`TRY_EVERY_ELECTIONS`] election
//! timeouts, doubling the wait after each attempt up to [`BACKOFF_ELECTIONS_MAX`] (a
//! preferred member that cannot win, or cannot keep leadership, is not pestered); the wait
//! returns to the base once the preferred member has led for a base wait without a break.
//! A member that should not lead declines the transfer (`RawNode::set_declines_transfers`,
//! set by the host while its disk is low or its log unwritten, and after its shell handed
//! leadership off), and the attempt times out.
//!
//! Safety does not depend on any of this: a transfer is an ordinary Raft leadership
//! transfer, which the core already makes safe (proposals are refused while it is in flight
//! and it gives up after an election timeout).

use shardkv_raft::RawNode;
use shardkv_types::{NodeId, Term};

/// Election timeouts between a leader's attempts at first.
pub const TRY_EVERY_ELECTIONS: u64 = 4;
/// The longest wait between attempts, in election timeouts.
pub const BACKOFF_ELECTIONS_MAX: u64 = 64;

/// The preferred member among `voters`, for a group of rank `rank`.
pub fn preferred_leader(rank: u64, voters: impl IntoIterator<Item = NodeId>) -> Option<NodeId> {
    let mut voters: Vec<NodeId> = voters.into_iter().collect();
    voters.sort();
    voters.dedup();
    if voters.is_empty() {
        return None;
    }
    Some(voters[(rank % voters.len() as u64) as usize])
}

/// One member's state of the policy.
#[derive(Clone, Debug)]
pub struct LeaderPreference {
    rank: u64,
    /// Ticks seen.
    now: u64,
    /// The term this member last led in: each new leadership waits the base time first.
    led_term: Option<Term>,
    /// No attempt before this tick.
    next_try: u64,
    /// The wait after the next attempt, in ticks (0 until the first tick).
    backoff: u64,
    /// Since when (in ticks) the preferred member has led without a break, if it leads.
    preferred_since: Option<u64>,
}

impl LeaderPreference {
    pub fn new(rank: u64) -> LeaderPreference {
        LeaderPreference {
            rank,
            now: 0,
            led_term: None,
            next_try: 0,
            backoff: 0,
            preferred_since: None,
        }
    }

    /// Called once per tick: the member to hand leadership to now, if any.
    pub fn on_tick(&mut self, raft: &RawNode) -> Option<NodeId> {
        self.now += 1;
        let election = u64::from(raft.config().election_ticks).max(1);
        let base = TRY_EVERY_ELECTIONS * election;
        let preferred = preferred_leader(self.rank, raft.conf().voters())?;
        if raft.leader() == Some(preferred) {
            let since = *self.preferred_since.get_or_insert(self.now);
            // Settled (it kept leadership for a base wait): the next deviation starts from
            // the base wait again. A preferred member that keeps losing leadership soon
            // after taking it is not reset, so the attempts back off.
            if self.now - since >= base {
                self.backoff = base;
            }
        } else {
            self.preferred_since = None;
        }
        if self.backoff == 0 {
            self.backoff = base;
        }
        if !raft.is_leader() || preferred == raft.id() {
            return None;
        }
        if self.led_term != Some(raft.term()) {
            self.led_term = Some(raft.term());
            self.next_try = self.next_try.max(self.now + base);
        }
        if self.now < self.next_try || raft.matched(preferred) != Some(raft.status().last_index) {
            return None;
        }
        self.next_try = self.now + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_ELECTIONS_MAX * election);
        Some(preferred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferred_member_rotates_with_the_rank() {
        let v = [NodeId(3), NodeId(1), NodeId(2)];
        assert_eq!(preferred_leader(0, v), Some(NodeId(1)));
        assert_eq!(preferred_leader(1, v), Some(NodeId(2)));
        assert_eq!(preferred_leader(2, v), Some(NodeId(3)));
        assert_eq!(preferred_leader(5, v), Some(NodeId(3)));
        assert_eq!(preferred_leader(1, []), None);
    }
}
