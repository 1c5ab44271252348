//! One numbered configuration: which group owns each shard, and the servers of each group.

use serde::{Deserialize, Serialize};
use shardkv_types::{ConfigNum, Gid, ShardId};
use std::collections::BTreeMap;
use std::fmt;

/// The gid that owns a shard no group owns. Never a member of [`Config::groups`].
pub const GID_NONE: Gid = Gid(0);

/// A shard → group assignment and the group → servers directory, numbered from 0.
///
/// Invariants (checked by [`Config::check`]): `GID_NONE` is never a key of `groups`; every
/// shard is owned by `GID_NONE` or by a gid in `groups`; when `groups` is empty every shard is
/// `GID_NONE`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Config 0 is the initial one (no groups); each change adds one.
    pub num: ConfigNum,
    /// Owner of each shard, indexed by shard number; `GID_NONE` = unassigned.
    pub shards: Vec<Gid>,
    /// Servers (addresses) of each group, in the order they were given.
    pub groups: BTreeMap<Gid, Vec<String>>,
}

impl Config {
    /// Config 0: `shards` shards, none assigned, no groups.
    pub fn initial(shards: u32) -> Config {
        Config {
            num: ConfigNum(0),
            shards: vec![GID_NONE; shards as usize],
            groups: BTreeMap::new(),
        }
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        // The shard count is at most shardkv_types::SHARDS_MAX, so it fits.
        self.shards.len() as u32
    }

    /// The group that owns `shard` (`GID_NONE` if none), or `None` if `shard` is out of range.
    pub fn owner(&self, shard: ShardId) -> Option<Gid> {
        usize::try_from(shard.0)
            .ok()
            .and_then(|i| self.shards.get(i).copied())
    }

    /// The shards `gid` owns, in ascending order.
    pub fn shards_of(&self, gid: Gid) -> Vec<ShardId> {
        self.shards
            .iter()
            .enumerate()
            .filter(|&(_, &g)| g == gid)
            .map(|(i, _)| ShardId(i as u64))
            .collect()
    }

    /// How many shards each group owns, zero for groups with none. Unassigned shards are
    /// not counted.
    pub fn shard_counts(&self) -> BTreeMap<Gid, usize> {
        let mut counts: BTreeMap<Gid, usize> = self.groups.keys().map(|&g| (g, 0)).collect();
        for gid in &self.shards {
            if let Some(n) = counts.get_mut(gid) {
                *n += 1;
            }
        }
        counts
    }

    /// Whether `gid` is a member.
    pub fn has_group(&self, gid: Gid) -> bool {
        self.groups.contains_key(&gid)
    }

    /// The number of shards whose owner differs between `self` and `other`.
    ///
    /// # Panics
    /// If the two configs have different shard counts.
    pub fn moved_from(&self, other: &Config) -> usize {
        assert_eq!(self.shards.len(), other.shards.len(), "shard counts differ");
        self.shards
            .iter()
            .zip(&other.shards)
            .filter(|(a, b)| a != b)
            .count()
    }

    /// Whether the shard counts of the groups differ by at most one (true with no groups).
    pub fn is_balanced(&self) -> bool {
        let counts = self.shard_counts();
        match (counts.values().min(), counts.values().max()) {
            (Some(min), Some(max)) => max - min <= 1,
            _ => true,
        }
    }

    /// Checks the invariants; describes the first one broken.
    pub fn check(&self) -> Result<(), String> {
        if self.groups.contains_key(&GID_NONE) {
            return Err(format!("{GID_NONE} is a member of config {}", self.num));
        }
        for (i, gid) in self.shards.iter().enumerate() {
            let known = *gid == GID_NONE || self.groups.contains_key(gid);
            if !known {
                return Err(format!("shard {i} -> absent group {gid}"));
            }
            if *gid == GID_NONE && !self.groups.is_empty() {
                return Err(format!("shard {i} unassigned though groups exist"));
            }
        }
        Ok(())
    }
}

/// A compact table: the number, then each group with its shard count and shard ranges, then
/// unassigned shards if any.
///
/// ```text
/// config c2 (4 shards)
///   g1 [a b] 2: 0-1
///   g2 [c] 2: 2-3
/// ```
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {} ({} shards)", self.num, self.shards.len())?;
        for (gid, servers) in &self.groups {
            let owned = self.shards_of(*gid);
            write!(
                f,
                "\n  {gid} [{}] {}: {}",
                servers.join(" "),
                owned.len(),
                Ranges(&owned)
            )?;
        }
        let unassigned = self.shards_of(GID_NONE);
        if !unassigned.is_empty() {
            write!(
                f,
                "\n  unassigned {}: {}",
                unassigned.len(),
                Ranges(&unassigned)
            )?;
        }
        Ok(())
    }
}

/// Ascending shard ids shown as ranges: `0-3 7 9-10`, or `-` when empty.
struct Ranges<'a>(&'a [ShardId]);

impl fmt::Display for Ranges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "-");
        }
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for shard in self.0 {
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == shard.0 => *end = shard.0,
                _ => runs.push((shard.0, shard.0)),
            }
        }
        for (i, (start, end)) in runs.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            if start == end {
                write!(f, "{sep}{start}")?;
            } else {
                write!(f, "{sep}{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the helpers agree with a hand-built config. Method: one config, every helper.
    #[test]
    fn helpers_and_display() {
        let mut c = Config::initial(6);
        assert!(c.check().is_ok() && c.is_balanced());
        c.num = ConfigNum(3);
        c.groups.insert(Gid(1), vec!["a".into(), "b".into()]);
        c.groups.insert(Gid(2), vec!["c".into()]);
        c.shards = [1, 1, 2, 1, 2, 2].map(Gid).to_vec();
        assert_eq!(c.owner(ShardId(2)), Some(Gid(2)));
        assert_eq!(c.owner(ShardId(6)), None);
        assert_eq!(c.owner(ShardId(u64::MAX)), None);
        assert_eq!(c.shards_of(Gid(1)), [0, 1, 3].map(ShardId).to_vec());
        assert_eq!(c.shard_counts()[&Gid(2)], 3);
        assert!(c.is_balanced() && c.check().is_ok());
        assert_eq!(
            c.to_string(),
            "config c3 (6 shards)\n  g1 [a b] 3: 0-1 3\n  g2 [c] 3: 2 4-5"
        );
        c.shards[0] = Gid(9);
        assert_eq!(c.check(), Err("shard 0 -> absent group g9".into()));
        c.shards[0] = GID_NONE;
        assert!(c.check().is_err());
        assert!(c.to_string().ends_with("unassigned 1: 0"));
    }
}
