//! The shard controller state machine: the numbered history of configs.

use crate::command::{CtrlCommand, CtrlError, CtrlOutput, CtrlQuery, CtrlReply};
use crate::config::{Config, GID_NONE};
use crate::rebalance::rebalance;
use serde::{Deserialize, Serialize};
use shardkv_rsm::{Applying, Error, NoInternal, Sessions, StateMachine};
use shardkv_types::{ConfigNum, Gid, SHARDS_DEFAULT, ShardCountError, ShardId, check_shard_count};
use std::collections::{BTreeMap, BTreeSet};

/// The controller's state: every config ever made, config `i` at index `i`.
///
/// Invariants: `configs` is never empty; `configs[i].num == i`; every config has the same,
/// valid shard count and passes [`Config::check`]. A snapshot that breaks them is refused
/// when it is decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "History")]
pub struct ShardCtrl {
    configs: Vec<Config>,
}

/// The decoded form of a snapshot, before its invariants are checked.
#[derive(Deserialize)]
struct History {
    configs: Vec<Config>,
}

impl TryFrom<History> for ShardCtrl {
    type Error = String;

    fn try_from(h: History) -> Result<ShardCtrl, String> {
        let first = h.configs.first().ok_or("no configs")?;
        check_shard_count(first.shard_count()).map_err(|e| e.to_string())?;
        for (i, c) in h.configs.iter().enumerate() {
            if c.num != ConfigNum(i as u64) || c.shards.len() != first.shards.len() {
                return Err(format!(
                    "config at {i} is {} with {} shards",
                    c.num,
                    c.shards.len()
                ));
            }
            c.check()?;
        }
        Ok(ShardCtrl { configs: h.configs })
    }
}

impl Default for ShardCtrl {
    /// A controller of [`SHARDS_DEFAULT`] shards.
    fn default() -> ShardCtrl {
        ShardCtrl::initial(SHARDS_DEFAULT)
    }
}

impl ShardCtrl {
    /// A controller of `shards` shards holding config 0 (no groups, nothing assigned).
    pub fn new(shards: u32) -> Result<ShardCtrl, ShardCountError> {
        check_shard_count(shards)?;
        Ok(ShardCtrl::initial(shards))
    }

    fn initial(shards: u32) -> ShardCtrl {
        ShardCtrl {
            configs: vec![Config::initial(shards)],
        }
    }

    /// The number of shards, fixed at creation.
    pub fn shard_count(&self) -> u32 {
        self.latest().shard_count()
    }

    /// The newest config.
    pub fn latest(&self) -> &Config {
        self.configs.last().expect("config 0 always exists")
    }

    /// Config `num`, or the latest when `num` is `None` or past it.
    pub fn config(&self, num: Option<ConfigNum>) -> &Config {
        num.and_then(|n| usize::try_from(n.0).ok())
            .and_then(|i| self.configs.get(i))
            .unwrap_or_else(|| self.latest())
    }

    /// Every config, oldest first.
    pub fn configs(&self) -> &[Config] {
        &self.configs
    }

    /// Adds `groups` and rebalances; returns the new config's number.
    pub fn join(&mut self, groups: &BTreeMap<Gid, Vec<String>>) -> Result<ConfigNum, CtrlError> {
        let latest = self.latest();
        if groups.is_empty() {
            return Err(CtrlError::JoinEmpty);
        }
        for (&gid, servers) in groups {
            if gid == GID_NONE {
                return Err(CtrlError::ReservedGid);
            }
            if latest.has_group(gid) {
                return Err(CtrlError::AlreadyMember(gid));
            }
            if servers.is_empty() {
                return Err(CtrlError::NoServers(gid));
            }
        }
        let mut next = self.next_config();
        next.groups
            .extend(groups.iter().map(|(g, s)| (*g, s.clone())));
        next.shards = rebalance(&next.shards, &members(&next));
        Ok(self.push(next, true))
    }

    /// Replaces the servers of joined group `gid` (shards unchanged); returns the new
    /// config's number. A list equal to the current one still makes a config (a retried
    /// command is deduplicated by its session, not here).
    pub fn set_servers(&mut self, gid: Gid, servers: &[String]) -> Result<ConfigNum, CtrlError> {
        if !self.latest().has_group(gid) {
            return Err(CtrlError::NotMember(gid));
        }
        if servers.is_empty() {
            return Err(CtrlError::NoServers(gid));
        }
        let mut next = self.next_config();
        next.groups.insert(gid, servers.to_vec());
        Ok(self.push(next, false))
    }

    /// Removes `gids` and rebalances their shards; returns the new config's number.
    pub fn leave(&mut self, gids: &[Gid]) -> Result<ConfigNum, CtrlError> {
        if gids.is_empty() {
            return Err(CtrlError::LeaveEmpty);
        }
        let mut seen = BTreeSet::new();
        for &gid in gids {
            if !self.latest().has_group(gid) {
                return Err(CtrlError::NotMember(gid));
            }
            if !seen.insert(gid) {
                return Err(CtrlError::DuplicateGid(gid));
            }
        }
        let mut next = self.next_config();
        next.groups.retain(|g, _| !seen.contains(g));
        next.shards = rebalance(&next.shards, &members(&next));
        Ok(self.push(next, true))
    }

    /// Assigns `shard` to `gid` exactly, without rebalancing; returns the new config's number.
    pub fn move_shard(&mut self, shard: ShardId, gid: Gid) -> Result<ConfigNum, CtrlError> {
        let shards = self.shard_count();
        let index = usize::try_from(shard.0)
            .ok()
            .filter(|&i| i < shards as usize)
            .ok_or(CtrlError::ShardOutOfRange { shard, shards })?;
        if !self.latest().has_group(gid) {
            return Err(CtrlError::NotMember(gid));
        }
        let mut next = self.next_config();
        next.shards[index] = gid;
        Ok(self.push(next, false))
    }

    /// A copy of the latest config numbered one past it.
    fn next_config(&self) -> Config {
        let mut next = self.latest().clone();
        next.num = ConfigNum(next.num.0 + 1);
        next
    }

    fn push(&mut self, next: Config, balanced: bool) -> ConfigNum {
        assert_eq!(next.num.0, self.latest().num.0 + 1, "configs go up by one");
        assert_eq!(next.shards.len(), self.latest().shards.len());
        if let Err(broken) = next.check() {
            panic!("config {} breaks an invariant: {broken}", next.num);
        }
        assert!(
            !balanced || next.is_balanced(),
            "config {} unbalanced",
            next.num
        );
        let num = next.num;
        self.configs.push(next);
        assert_eq!(self.configs.len() as u64, num.0 + 1);
        num
    }
}

fn members(config: &Config) -> BTreeSet<Gid> {
    config.groups.keys().copied().collect()
}

impl StateMachine for ShardCtrl {
    type Command = CtrlCommand;
    type Query = CtrlQuery;
    type Output = CtrlOutput;
    type Internal = NoInternal;

    /// Refused operations are outputs (recorded in the session, the same on every replica),
    /// never `Err`: a controller serves every request.
    fn apply(
        &mut self,
        cmd: &CtrlCommand,
        _: &mut Applying<'_, CtrlOutput>,
    ) -> Result<CtrlOutput, Error> {
        Ok(self.execute(cmd))
    }

    fn apply_internal(&mut self, cmd: &NoInternal, _: &mut Applying<'_, CtrlOutput>) {
        match *cmd {}
    }

    fn query(&self, q: &CtrlQuery, _: &Sessions<CtrlOutput>) -> Result<CtrlOutput, Error> {
        Ok(self.read(q))
    }
}

impl ShardCtrl {
    /// Applies a command: one new config if accepted, none if refused.
    pub fn execute(&mut self, cmd: &CtrlCommand) -> CtrlOutput {
        let before = self.configs.len();
        let result = match cmd {
            CtrlCommand::Join { groups } => self.join(groups),
            CtrlCommand::Leave { gids } => self.leave(gids),
            CtrlCommand::Move { shard, gid } => self.move_shard(*shard, *gid),
            CtrlCommand::Servers { gid, servers } => self.set_servers(*gid, servers),
        };
        // A refused command makes no config; an accepted one makes exactly one.
        assert_eq!(self.configs.len(), before + usize::from(result.is_ok()));
        result.map(|num| CtrlReply::Applied { num })
    }

    /// Answers a query.
    pub fn read(&self, q: &CtrlQuery) -> CtrlOutput {
        Ok(CtrlReply::Config(self.config(q.num).clone()))
    }
}
