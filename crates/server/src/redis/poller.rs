//! [`ViewPoller`]: keeps this process's [`ClusterView`] current. Every [`POLL_EVERY`], and
//! at once when a connection reports a surprise (an operation that failed: a leader moved,
//! a shard moved), it asks the controller for its latest config (which group serves each
//! shard, and each group's servers) and then every server the config lists for the status
//! of its group (its leader, and the RESP address the process advertises); a process of
//! one unsharded group asks its `--peers` instead. It then publishes the view
//! [`Survey::view`] builds from them. Processes are known by the gRPC address they were
//! asked at (this process by its own addresses, always), and a leader a member names by
//! id is found by the address the member's status gives for it: member ids repeat between
//! groups on other machines. The calls of one poll are bounded ([`POLL_CALLS_MAX`]) and
//! reuse their connections from poll to poll.
//!
//! What a poll cannot learn it does not guess: a process that does not answer has no RESP
//! address in this poll, and a group whose members name no leader masters no slots, so
//! their keys are answered `CLUSTERDOWN` until the next poll that learns them. A failed
//! controller query keeps the shard map of the last poll.

use shardkv_client::{
    Config, CtrlClient, Dial, Endpoints, GID_NONE, Gid, NodeId, NodeStatus, Role,
};
use shardkv_redis::{ClusterView, LeaderClaim, RespAddr, Survey, latest_leader};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// How often the view is refreshed without a surprise.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// The least time between two polls, however often connections poke the poller (every
/// failed command of every connection may).
pub const POLL_GAP_MIN: Duration = Duration::from_millis(100);
/// The bound on each status call and controller query of one poll.
pub const POLL_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the data lives: which groups serve which shards.
pub enum Layout {
    /// Shard groups, assigned shards by the controller this client asks.
    Sharded(Box<CtrlClient>),
    /// One unsharded KV group serving every slot.
    Single(Gid),
}

/// The most status calls of one poll (one per server the config lists, for its group):
/// a config names a handful of servers per group, so this bounds what a huge or malformed
/// config can cost. This process's own addresses are asked first.
pub const POLL_CALLS_MAX: usize = 1024;

/// What the controller said at one poll: the group serving each shard, the config number,
/// and each group's servers (gRPC addresses).
#[derive(Clone, Debug, Default)]
struct ShardMap {
    owners: Vec<Option<Gid>>,
    epoch: u64,
    servers: BTreeMap<Gid, Vec<String>>,
}

/// The poller of one process.
pub struct ViewPoller {
    pub cluster_id: u64,
    /// This process's own RESP address as clients reach it.
    pub my_addr: RespAddr,
    /// The gRPC addresses that name this process: it is always a node of its own view,
    /// whether or not its status call to itself answers.
    pub my_grpc: Vec<String>,
    /// Every member process by id, with its gRPC address.
    pub peers: BTreeMap<NodeId, String>,
    pub layout: Layout,
    pub dial: Dial,
    /// Where the view is published.
    pub tx: watch::Sender<Arc<ClusterView>>,
    /// Poked by connections after a surprise.
    pub poke: Arc<Notify>,
    /// The controller did not answer the last poll (its failures are logged once at info).
    pub ctrl_failing: bool,
    /// The keys held by the shard groups this process leads, as their statuses said at the
    /// last poll (`INFO keyspace`); `None` when unknown (a group without a key count, such
    /// as an unsharded one, or a status that did not answer).
    pub keys: Arc<Mutex<Option<u64>>>,
}

impl ViewPoller {
    /// Polls until every receiver of the view is gone.
    pub async fn run(mut self) {
        let mut map = ShardMap::default();
        let mut conns = Conns::default();
        loop {
            if let Some(m) = self.shard_map().await {
                map = m;
            }
            let (survey, keys) = self.survey(&map, &mut conns).await;
            *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = keys;
            if self.tx.send(Arc::new(survey.view())).is_err() {
                return;
            }
            tokio::time::sleep(POLL_GAP_MIN).await;
            tokio::select! {
                () = tokio::time::sleep(POLL_EVERY - POLL_GAP_MIN) => {}
                () = self.poke.notified() => {}
            }
        }
    }

    /// The controller's latest config, as a [`ShardMap`]; `None` if the controller did not
    /// answer in time (logged: the view then keeps the last map).
    async fn shard_map(&mut self) -> Option<ShardMap> {
        let ctrl = match &mut self.layout {
            Layout::Single(gid) => {
                return Some(ShardMap {
                    owners: vec![Some(*gid)],
                    ..ShardMap::default()
                });
            }
            Layout::Sharded(ctrl) => ctrl,
        };
        let why = match tokio::time::timeout(POLL_CALL_TIMEOUT, ctrl.query(None)).await {
            Ok(Ok(config)) => {
                if std::mem::take(&mut self.ctrl_failing) {
                    tracing::info!("redis view: the controller answers again");
                }
                return Some(shard_map(config));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {POLL_CALL_TIMEOUT:?}"),
        };
        // Once per outage at info (a poll runs up to 10 times a second), then at debug.
        if std::mem::replace(&mut self.ctrl_failing, true) {
            tracing::debug!(error = %why, "redis view: the controller gave no config");
        } else {
            tracing::info!(error = %why, "redis view: the controller gave no config; keeping the last one until it answers");
        }
        None
    }

    /// Asks each process for the status of the groups of `map` it serves: each server the
    /// config lists for a group is asked for that group; for one unsharded group (no
    /// config), this process's peers are. Calls reuse their connections from poll to poll.
    /// Also answers the keys of the shard groups this process leads (see [`Self::keys`]).
    async fn survey(&self, map: &ShardMap, conns: &mut Conns) -> (Survey, Option<u64>) {
        let groups: BTreeSet<Gid> = map.owners.iter().flatten().copied().collect();
        let mut asks: BTreeSet<(String, Gid)> = BTreeSet::new();
        if map.servers.is_empty() {
            for addr in self.peers.values() {
                asks.extend(groups.iter().map(|&g| (addr.clone(), g)));
            }
        }
        for (gid, servers) in map.servers.iter().filter(|(g, _)| groups.contains(g)) {
            for server in servers {
                let addr = server.split_once('=').map_or(server.as_str(), |(_, a)| a);
                asks.insert((addr.trim().to_string(), *gid));
            }
        }
        // This process's own addresses first, so the bound never drops them.
        let (mine, theirs): (Vec<_>, Vec<_>) = asks
            .into_iter()
            .partition(|(a, _)| self.my_grpc.contains(a));
        let total = mine.len() + theirs.len();
        if total > POLL_CALLS_MAX {
            tracing::warn!(
                calls = total,
                max = POLL_CALLS_MAX,
                "redis view: the config lists too many servers; asking the first ones only"
            );
        }
        let asks: Vec<(String, Gid)> = mine
            .into_iter()
            .chain(theirs)
            .take(POLL_CALLS_MAX)
            .collect();
        let endpoints = conns.to(asks.iter().map(|(a, _)| a.clone()).collect(), &self.dial);
        let mut calls = JoinSet::new();
        for (addr, gid) in asks {
            let Some(slot) = endpoints
                .as_ref()
                .and_then(|(addrs, _)| addrs.iter().position(|a| *a == addr))
            else {
                continue;
            };
            let e = endpoints
                .as_ref()
                .map(|(_, e)| e.clone())
                .expect("endpoints for the asks");
            calls.spawn(async move {
                let status = e.group_status(slot, Some(gid)).await;
                (addr, gid, status)
            });
        }
        let mut processes: BTreeMap<String, Option<RespAddr>> = BTreeMap::new();
        let mut claims: BTreeMap<Gid, Vec<LeaderClaim>> = BTreeMap::new();
        let mut failed = 0usize;
        let mut my_keys = Some(0u64);
        let mut my_groups: BTreeSet<Gid> = BTreeSet::new();
        while let Some(done) = calls.join_next().await {
            let Ok((addr, gid, status)) = done else {
                continue;
            };
            let status = match status {
                Ok(s) => s,
                Err(_) => {
                    failed += 1;
                    processes.entry(addr).or_insert(None);
                    continue;
                }
            };
            if self.my_grpc.contains(&addr) && status.role == Role::Leader && my_groups.insert(gid)
            {
                my_keys = my_keys.zip(status.shards.as_ref()).map(|(n, h)| n + h.keys);
            }
            let resp = status.redis_addr.as_deref().and_then(split_addr);
            let known = processes.entry(addr.clone()).or_insert(None);
            if resp.is_some() {
                *known = resp;
            }
            claims.entry(gid).or_default().push(LeaderClaim {
                term: status.term.0,
                own: status.role == Role::Leader,
                leader: leader_addr(&addr, &status),
            });
        }
        if failed > 0 {
            tracing::debug!(failed, "redis view: some status calls of this poll failed");
        }
        for addr in &self.my_grpc {
            processes.insert(addr.clone(), Some(self.my_addr.clone()));
        }
        let known = |a: &str| processes.get(a).is_some_and(Option::is_some);
        let leaders = claims
            .into_iter()
            .filter_map(|(gid, c)| Some((gid, latest_leader(c, known)?)))
            .collect();
        let survey = Survey {
            cluster_id: self.cluster_id,
            me: self.my_addr.clone(),
            processes,
            owners: map.owners.clone(),
            leaders,
            epoch: map.epoch,
        };
        (survey, my_keys)
    }
}

/// The poller's connections: one [`Endpoints`] over the addresses of the last poll, kept
/// while the next poll asks the same addresses (a config change makes new ones).
#[derive(Default)]
struct Conns {
    current: Option<(Vec<String>, Arc<Endpoints>)>,
}

impl Conns {
    /// Endpoints over `addrs` (deduplicated, in order), reused when the addresses are the
    /// same as last time; `None` when there are none or they do not parse.
    fn to(&mut self, mut addrs: Vec<String>, dial: &Dial) -> Option<(Vec<String>, Arc<Endpoints>)> {
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return None;
        }
        if let Some((known, e)) = &self.current
            && *known == addrs
        {
            return Some((known.clone(), e.clone()));
        }
        match Endpoints::parse(&addrs, dial.clone()) {
            Ok(e) => {
                let made = (addrs, Arc::new(e));
                self.current = Some(made.clone());
                Some(made)
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis view: cannot use the servers' addresses");
                None
            }
        }
    }
}

/// The parts of a config the view needs.
fn shard_map(config: Config) -> ShardMap {
    ShardMap {
        owners: config
            .shards
            .iter()
            .map(|&g| (g != GID_NONE).then_some(g))
            .collect(),
        epoch: config.num.0,
        servers: config.groups,
    }
}

/// The gRPC address of the leader that `status` (answered by the process asked at `addr`)
/// names: `addr` itself when it leads, else the address its group's member list gives for
/// the leader's id (`None` when it names no leader or lists no address for it).
fn leader_addr(addr: &str, status: &NodeStatus) -> Option<String> {
    if status.role == Role::Leader {
        return Some(addr.to_string());
    }
    let leader: NodeId = status.leader?;
    status
        .members
        .iter()
        .find(|m| m.id == leader && !m.addr.is_empty())
        .map(|m| m.addr.clone())
}

/// `HOST:PORT` as (host, port); `None` if it is not one.
pub fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_split_into_host_and_port() {
        assert_eq!(
            split_addr("127.0.0.1:9001"),
            Some(("127.0.0.1".into(), 9001))
        );
        assert_eq!(split_addr("[::1]:9001"), Some(("::1".into(), 9001)));
        assert_eq!(split_addr("host"), None);
        assert_eq!(split_addr("host:x"), None);
    }
}
