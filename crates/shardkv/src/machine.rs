//! [`ShardKv`]: the state machine of one shard group.

use crate::command::{ShardInternal, ShardOutput, ShardQuery, ShardRequest};
use crate::shard::{Shard, ShardState, Source};
use serde::{Deserialize, Serialize};
use shardkv_ctrl::Config;
use shardkv_kv::{Keys, KvCommand, KvOutput};
use shardkv_rsm::{Applying, Error, Request, Sessions, StateMachine};
use shardkv_types::{Gid, ShardId, shard_of_key};
use std::collections::BTreeMap;

/// The state of one shard group: the config it is in, the one before (to find where gained
/// shards come from), and the shards it holds. All of it is in every snapshot.
///
/// Invariants: `config.num == prev.num + 1` (or both 0); a shard is `Serving` or `Pulling`
/// only if `config` assigns it to `gid`, `BePulled` only if `config` assigns it to another
/// group, `Parked` only if `config` assigns it to nobody; a key is read or written only while its shard is `Serving`, checked when the
/// command is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardKv {
    pub(crate) gid: Gid,
    pub(crate) config: Config,
    pub(crate) prev: Config,
    pub(crate) shards: BTreeMap<ShardId, Shard>,
    /// Shards owned by nobody now, with the group that keeps them (the same on every group:
    /// every group applies every config).
    pub(crate) parked: BTreeMap<ShardId, Source>,
}

impl ShardKv {
    /// Group `gid` before its first config, in a cluster of `shards` shards.
    pub fn new(gid: Gid, shards: u32) -> ShardKv {
        ShardKv {
            gid,
            config: Config::initial(shards),
            prev: Config::initial(shards),
            shards: BTreeMap::new(),
            parked: BTreeMap::new(),
        }
    }

    pub fn gid(&self) -> Gid {
        self.gid
    }

    /// The config the group is in.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The config before it.
    pub fn prev_config(&self) -> &Config {
        &self.prev
    }

    /// The shards the group holds, with their states.
    pub fn shards(&self) -> &BTreeMap<ShardId, Shard> {
        &self.shards
    }

    /// The state of `shard` here, `None` if the group holds nothing of it.
    pub fn shard_state(&self, shard: ShardId) -> Option<ShardState> {
        self.shards.get(&shard).map(|s| s.state)
    }

    /// True when some shard is being pulled or waits to be deleted: the next config waits.
    pub fn in_migration(&self) -> bool {
        self.shards.values().any(Shard::in_migration)
    }

    /// The shard of `key` in this cluster.
    pub fn shard_of(&self, key: &[u8]) -> ShardId {
        shard_of_key(key, self.config.shard_count())
    }

    /// The one shard of all of `keys`; `Invalid` if they span shards (a multi-key
    /// operation is atomic only within a shard).
    fn shard_of_all(&self, mut keys: Keys<'_>) -> Result<ShardId, Error> {
        let first = self.shard_of(keys.next().unwrap_or_default());
        match keys.map(|k| self.shard_of(k)).find(|s| *s != first) {
            None => Ok(first),
            Some(other) => Err(Error::Invalid {
                reason: format!(
                    "the keys of one operation span shards {} and {}; a multi-key operation \
                     must keep to one shard (keys of one slot always do)",
                    first.0, other.0
                ),
            }),
        }
    }

    /// The serving shard of all of `keys`, or `WrongGroup` (or `Invalid`: they span shards).
    fn serving(&self, keys: Keys<'_>) -> Result<&Shard, Error> {
        match self.shards.get(&self.shard_of_all(keys)?) {
            Some(s) if s.state == ShardState::Serving => Ok(s),
            _ => Err(Error::WrongGroup { gid: self.gid }),
        }
    }

    fn serving_mut(&mut self, keys: Keys<'_>) -> Result<&mut Shard, Error> {
        let shard = self.shard_of_all(keys)?;
        match self.shards.get_mut(&shard) {
            Some(s) if s.state == ShardState::Serving => Ok(s),
            _ => Err(Error::WrongGroup { gid: self.gid }),
        }
    }
}

impl StateMachine for ShardKv {
    type Command = KvCommand;
    type Query = ShardQuery;
    type Output = ShardOutput;
    type Internal = ShardInternal;

    fn validate(req: &ShardRequest) -> Result<(), Error> {
        match req {
            Request::Read(ShardQuery::Kv(q)) => shardkv_kv::validate_query(q),
            Request::Read(_) => Ok(()),
            Request::Write { cmd, .. } => shardkv_kv::validate_command(cmd),
        }
    }

    fn admits(&self, cmd: &KvCommand) -> Result<(), Error> {
        self.serving(cmd.keys()).map(|_| ())
    }

    /// A write of a key whose shard is not `Serving` here now is refused with `WrongGroup`
    /// (and so not recorded in the session): ownership is decided at the write's log
    /// position, not when it arrived.
    fn apply(
        &mut self,
        cmd: &KvCommand,
        _: &mut Applying<'_, ShardOutput>,
    ) -> Result<ShardOutput, Error> {
        let shard = self.serving_mut(cmd.keys())?;
        shard.store.check_growth(cmd)?;
        Ok(ShardOutput::Kv(shard.store.execute(cmd)))
    }

    /// A session keeps what the KV store keeps of a client's write
    /// ([`KvOutput::record`]).
    fn record(cmd: &KvCommand, out: &ShardOutput) -> ShardOutput {
        match out {
            ShardOutput::Kv(o) => ShardOutput::Kv(KvOutput::record(cmd, o)),
            other => other.clone(),
        }
    }

    fn replay(cmd: &KvCommand, recorded: &ShardOutput) -> Result<ShardOutput, Error> {
        match recorded {
            ShardOutput::Kv(o) => KvOutput::replay(cmd, o).map(ShardOutput::Kv),
            other => Ok(other.clone()),
        }
    }

    fn apply_internal(&mut self, cmd: &ShardInternal, ctx: &mut Applying<'_, ShardOutput>) {
        match cmd {
            ShardInternal::Reconfigure(next) => self.reconfigure(next),
            ShardInternal::Install {
                num,
                shard,
                from,
                chunk,
            } => self.install(*num, *shard, from, chunk, ctx),
            ShardInternal::Delete { num, shard } => self.delete(*num, *shard),
        }
    }

    fn query(
        &self,
        q: &ShardQuery,
        sessions: &Sessions<ShardOutput>,
    ) -> Result<ShardOutput, Error> {
        match q {
            ShardQuery::Kv(q) => self.serving(q.keys())?.store.read(q).map(ShardOutput::Kv),
            ShardQuery::Pull {
                num,
                shard,
                from,
                bytes_max,
            } => Ok(self.answer_pull(*num, *shard, from, *bytes_max, sessions)),
            ShardQuery::Installed { num, shard } => Ok(self.answer_installed(*num, *shard)),
        }
    }
}
