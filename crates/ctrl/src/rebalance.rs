//! The rebalancer: a pure function from (current owners, member groups) to new owners.
//!
//! Contract, for `n` shards and `g > 0` groups (`base = n / g`, `extra = n % g`):
//! - balance: every group ends with `base` or `base + 1` shards (`extra` of them with
//!   `base + 1`), so counts differ by at most one; with `g > n`, `g - n` groups get none;
//! - every shard ends owned by a member;
//! - minimal movement: a shard moves only if its owner is not a member (departed, or
//!   [`GID_NONE`]) or its owner holds more than its target; the `extra` larger targets go to
//!   the groups that already hold the most shards, so the number of moved shards is the least
//!   any balanced assignment allows ([`moves_min`]);
//! - deterministic: groups are visited in gid order and ties are broken by gid; an over-full
//!   group keeps its lowest-numbered shards; freed shards go, lowest first, to under-full
//!   groups in gid order.
//!
//! With no groups every shard becomes [`GID_NONE`].

use crate::config::GID_NONE;
use shardkv_types::Gid;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// The new owner of each shard: balanced over `groups` with the fewest moves.
///
/// # Panics
/// If `groups` contains [`GID_NONE`]. Asserts its own postconditions (balance, membership,
/// minimal movement).
pub fn rebalance(shards: &[Gid], groups: &BTreeSet<Gid>) -> Vec<Gid> {
    assert!(!groups.contains(&GID_NONE), "{GID_NONE} cannot own shards");
    if groups.is_empty() {
        return vec![GID_NONE; shards.len()];
    }
    let targets = targets(shards, groups);

    // Shards each member holds now, ascending; shards of non-members are free.
    let mut held: BTreeMap<Gid, Vec<usize>> = groups.iter().map(|&g| (g, Vec::new())).collect();
    let mut free = Vec::new();
    for (shard, gid) in shards.iter().enumerate() {
        match held.get_mut(gid) {
            Some(list) => list.push(shard),
            None => free.push(shard),
        }
    }
    // Over-full groups give up their highest-numbered shards beyond the target.
    for (gid, list) in &mut held {
        let target = targets[gid];
        if list.len() > target {
            free.extend(list.drain(target..));
        }
    }
    free.sort_unstable();

    let mut owners = shards.to_vec();
    let mut free = free.into_iter();
    for (gid, list) in &held {
        for _ in list.len()..targets[gid] {
            let shard = free.next().expect("free shards cover every deficit");
            owners[shard] = *gid;
        }
    }
    assert!(free.next().is_none(), "a freed shard was left unassigned");

    check_postconditions(shards, groups, &owners);
    owners
}

/// Each member's target count: `base`, plus one for the `extra` members holding the most
/// shards now (ties to the lower gid), which keeps the most shards in place.
fn targets(shards: &[Gid], groups: &BTreeSet<Gid>) -> BTreeMap<Gid, usize> {
    let counts = counts(shards, groups);
    let base = shards.len() / groups.len();
    let extra = shards.len() % groups.len();
    let mut order: Vec<Gid> = groups.iter().copied().collect();
    order.sort_by_key(|g| (Reverse(counts[g]), *g));
    order
        .iter()
        .enumerate()
        .map(|(rank, &g)| (g, base + usize::from(rank < extra)))
        .collect()
}

/// How many shards each member holds in `shards` (zero for members holding none).
fn counts(shards: &[Gid], groups: &BTreeSet<Gid>) -> BTreeMap<Gid, usize> {
    let mut counts: BTreeMap<Gid, usize> = groups.iter().map(|&g| (g, 0)).collect();
    for gid in shards {
        if let Some(n) = counts.get_mut(gid) {
            *n += 1;
        }
    }
    counts
}

/// The fewest shards any balanced assignment over `groups` must move away from `shards`.
///
/// Every shard of a non-member must move. A member holding `c > base` shards must give up
/// `c - base`, save one for each of at most `extra` such members allowed `base + 1`.
pub fn moves_min(shards: &[Gid], groups: &BTreeSet<Gid>) -> usize {
    if groups.is_empty() {
        return shards.iter().filter(|&&g| g != GID_NONE).count();
    }
    let counts = counts(shards, groups);
    let base = shards.len() / groups.len();
    let extra = shards.len() % groups.len();
    let orphaned = shards.len() - counts.values().sum::<usize>();
    let over: Vec<usize> = counts.values().filter(|&&c| c > base).copied().collect();
    let excess: usize = over.iter().map(|c| c - base).sum();
    orphaned + excess - over.len().min(extra)
}

fn check_postconditions(before: &[Gid], groups: &BTreeSet<Gid>, after: &[Gid]) {
    assert_eq!(before.len(), after.len());
    assert!(
        after.iter().all(|g| groups.contains(g)),
        "a shard is owned by a non-member"
    );
    let counts = counts(after, groups);
    let (min, max) = (counts.values().min(), counts.values().max());
    assert!(
        matches!((min, max), (Some(lo), Some(hi)) if hi - lo <= 1),
        "unbalanced: {counts:?}"
    );
    let moved = before.iter().zip(after).filter(|(a, b)| a != b).count();
    assert_eq!(moved, moves_min(before, groups), "not a minimal move");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gids(v: &[u64]) -> Vec<Gid> {
        v.iter().map(|&g| Gid(g)).collect()
    }

    fn set(v: &[u64]) -> BTreeSet<Gid> {
        v.iter().map(|&g| Gid(g)).collect()
    }

    /// Goal: the first group takes every shard. Method: all unassigned, one group.
    #[test]
    fn first_group_takes_all() {
        assert_eq!(rebalance(&gids(&[0; 4]), &set(&[7])), gids(&[7; 4]));
    }

    /// Goal: a joining group takes the highest shards of the over-full ones, nothing else
    /// moves. Method: 10 shards on g1, join g2, then g3.
    #[test]
    fn join_takes_from_the_fullest() {
        let one = gids(&[1; 10]);
        let two = rebalance(&one, &set(&[1, 2]));
        assert_eq!(two, gids(&[1, 1, 1, 1, 1, 2, 2, 2, 2, 2]));
        let three = rebalance(&two, &set(&[1, 2, 3]));
        // 10 = 4 + 3 + 3: on the tie at 5, the lower gid keeps the extra shard.
        assert_eq!(three, gids(&[1, 1, 1, 1, 3, 2, 2, 2, 3, 3]));
        assert_eq!(moves_min(&two, &set(&[1, 2, 3])), 3);
        let d = three.iter().zip(&two).filter(|(a, b)| a != b).count();
        assert_eq!(d, 3);
    }

    /// Goal: a leaver's shards, and only those, move. Method: 3 groups, g2 leaves.
    #[test]
    fn leave_moves_only_the_leavers_shards() {
        let before = gids(&[1, 1, 1, 2, 2, 2, 3, 3, 3]);
        let after = rebalance(&before, &set(&[1, 3]));
        // 9 = 5 + 4: on the tie at 3, the lower gid takes the extra shard.
        assert_eq!(after, gids(&[1, 1, 1, 1, 1, 3, 3, 3, 3]));
    }

    /// Goal: with more groups than shards, groups already holding one keep it. Method: 2
    /// shards, 3 groups.
    #[test]
    fn more_groups_than_shards() {
        let before = gids(&[5, 5]);
        let after = rebalance(&before, &set(&[1, 2, 5]));
        assert_eq!(after, gids(&[5, 1]));
        assert_eq!(rebalance(&after, &set(&[2])), gids(&[2, 2]));
    }

    /// Goal: no groups means nothing assigned. Method: last group leaves.
    #[test]
    fn no_groups_unassigns_everything() {
        assert_eq!(rebalance(&gids(&[3, 3]), &BTreeSet::new()), gids(&[0, 0]));
        assert_eq!(moves_min(&gids(&[3, 0]), &BTreeSet::new()), 1);
    }

    /// Goal: an already balanced assignment is left alone. Method: rebalance twice.
    #[test]
    fn balanced_is_a_fixed_point() {
        let before = gids(&[1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(rebalance(&before, &set(&[1, 2, 3])), before);
    }

    #[test]
    #[should_panic(expected = "cannot own shards")]
    fn gid_none_cannot_be_a_member() {
        rebalance(&gids(&[0]), &set(&[0]));
    }
}
