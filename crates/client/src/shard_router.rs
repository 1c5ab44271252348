//! [`ShardRouter`]: the sharded clerk's router. It routes a key to the group its cached
//! config assigns the key's shard to, and asks for a newer config when it has none, when
//! the shard is unassigned, or after a group answered `WrongGroup`.

use crate::router::{Route, Router};
use shardkv_ctrl::{Config, GID_NONE};
use shardkv_kv::{KvCommand, KvQuery};
use shardkv_rsm::Request;
use shardkv_types::{NodeId, shard_of_key};

/// How the servers named in a config become node ids for the clerk core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// The i-th server listed is node `i + 1` of its group, whatever its name: the ids
    /// are the client's endpoint slots, which its `Endpoints` map to the ids the servers
    /// report (and to an `ID=` a name gives). The production client router.
    Position,
    /// A server listed as `ID=HOST:PORT` is node `ID` (what `shardkv member` records after
    /// a membership change); one listed as `HOST:PORT` is node `i + 1` when it is the i-th
    /// (`admin join` lists a group's servers in node order). A shard group's duties, which
    /// call servers by the ids they report.
    Ids,
    /// Each name is a node id, `n4` or `4` (the simulator, whose node ids are global).
    NodeIds,
}

impl Naming {
    /// The node id of the `i`-th server of a group, named `name`.
    pub fn node(self, i: usize, name: &str) -> Option<NodeId> {
        match self {
            Naming::Position => Some(NodeId(i as u64 + 1)),
            Naming::Ids => Some(
                name.split_once('=')
                    .and_then(|(id, _)| id.trim().parse().ok())
                    .map_or(NodeId(i as u64 + 1), NodeId),
            ),
            Naming::NodeIds => name.trim_start_matches('n').parse().ok().map(NodeId),
        }
    }

    /// The servers of a group as (node id, name to dial: an `ID=` prefix taken off),
    /// skipping names that are not node ids.
    pub fn servers(self, names: &[String]) -> Vec<(NodeId, String)> {
        let dial = |n: &String| match (self, n.split_once('=')) {
            (Naming::Position | Naming::Ids, Some((_, addr))) => addr.trim().to_string(),
            _ => n.clone(),
        };
        names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.node(i, n).map(|id| (id, dial(n))))
            .collect()
    }
}

/// Routes keys by a cached config.
#[derive(Clone, Debug)]
pub struct ShardRouter {
    config: Option<Config>,
    naming: Naming,
    /// A group answered `WrongGroup` under the cached config.
    stale: bool,
}

impl ShardRouter {
    pub fn new(naming: Naming) -> ShardRouter {
        ShardRouter {
            config: None,
            naming,
            stale: false,
        }
    }

    /// The cached config, if any.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// Hands the router a config fetched from the controller. An older one than cached is
    /// ignored; the same or a newer one clears the staleness (the group that refused may
    /// have caught up since; the clerk backs off between such rounds).
    pub fn set_config(&mut self, c: Config) {
        if self.config.as_ref().is_none_or(|old| old.num <= c.num) {
            self.config = Some(c);
            self.stale = false;
        }
    }

    /// The group and servers of `key` under the cached config.
    pub fn route_key(&self, key: &[u8]) -> Option<Route> {
        let config = self.config.as_ref().filter(|_| !self.stale)?;
        let shard = shard_of_key(key, config.shard_count());
        let gid = config.owner(shard).filter(|&g| g != GID_NONE)?;
        let names = config.groups.get(&gid)?;
        let servers: Vec<NodeId> = self
            .naming
            .servers(names)
            .into_iter()
            .map(|s| s.0)
            .collect();
        (!servers.is_empty()).then_some(Route { gid, servers })
    }
}

impl Router<KvCommand, KvQuery> for ShardRouter {
    fn route(&self, req: &Request<KvCommand, KvQuery>) -> Option<Route> {
        let key = match req {
            Request::Read(q) => q.key(),
            Request::Write { cmd, .. } => cmd.key(),
        };
        self.route_key(key)
    }

    fn stale(&mut self) {
        self.stale = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardkv_types::{ConfigNum, Gid};

    #[test]
    fn id_naming_takes_an_explicit_id_and_both_dial_the_address() {
        // Goal: after a membership change a group's servers are listed `ID=ADDR`; plain
        // addresses keep meaning node i+1.
        let names: Vec<String> = vec!["1=a:1".into(), "4=d:4".into(), "c:3".into()];
        assert_eq!(
            Naming::Ids.servers(&names),
            vec![
                (NodeId(1), "a:1".to_string()),
                (NodeId(4), "d:4".to_string()),
                (NodeId(3), "c:3".to_string()),
            ]
        );
        // The client router's slots: positions, whatever the names say.
        let ids: Vec<NodeId> = Naming::Position
            .servers(&names)
            .into_iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(ids, [NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(
            Naming::NodeIds.servers(&["n4".into()]),
            vec![(NodeId(4), "n4".into())]
        );
    }

    #[test]
    fn routes_by_shard_and_asks_again_after_wrong_group() {
        let mut r = ShardRouter::new(Naming::NodeIds);
        let get = Request::Read(KvQuery::Get { key: b"a".to_vec() });
        assert_eq!(r.route(&get), None, "no config yet");
        let mut c = Config::initial(4);
        c.num = ConfigNum(1);
        c.shards = vec![Gid(1), Gid(1), Gid(2), Gid(2)];
        c.groups.insert(Gid(1), vec!["n1".into(), "n2".into()]);
        c.groups.insert(Gid(2), vec!["n3".into()]);
        r.set_config(c.clone());
        let shard = shard_of_key(b"a", 4).0 as usize;
        let want = c.shards[shard];
        assert_eq!(r.route(&get).map(|x| x.gid), Some(want));
        Router::<KvCommand, KvQuery>::stale(&mut r);
        assert_eq!(r.route(&get), None, "stale until a config comes");
        let mut older = c.clone();
        older.num = ConfigNum(0);
        r.set_config(older);
        assert_eq!(r.route(&get), None, "an older config changes nothing");
        r.set_config(c);
        assert!(r.route(&get).is_some());
    }
}
