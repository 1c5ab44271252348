//! [`ViewPoller`]: keeps this process's [`ClusterView`] current. Every [`POLL_EVERY`], and
//! at once when a connection reports a surprise (an operation that failed: a leader moved,
//! a shard moved), it asks the controller for its latest config (which group serves each
//! shard, and each group's servers) and then the processes for the status of each group
//! that serves shards (its leader, and the RESP address the process advertises): every
//! server the config lists for that group, and every process of this one's `--peers` (the
//! processes of a single unsharded group, or ones the config does not list yet). It then
//! publishes the view [`Survey::view`] builds from them. Processes are known by the gRPC
//! address they were asked at, and a leader a member names by id is found by the address
//! the member's status gives for it: member ids repeat between groups on other machines.
//!
//! What a poll cannot learn it does not guess: a process that does not answer has no RESP
//! address in this poll, and a group whose members name no leader masters no slots, so
//! their keys are answered `CLUSTERDOWN` until the next poll that learns them. A failed
//! controller query keeps the shard map of the last poll.

use shardkv_client::{
    Config, CtrlClient, Dial, GID_NONE, Gid, NodeId, NodeStatus, Role, fetch_group_status_with,
};
use shardkv_redis::{ClusterView, LeaderClaim, RespAddr, Survey, latest_leader};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
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

/// The most processes one poll asks (each for the groups it serves): a config names a
/// handful of servers per group, so this bounds what a malformed config can cost.
pub const POLL_PROCESSES_MAX: usize = 256;

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
    /// Every member process by id, with its gRPC address.
    pub peers: BTreeMap<NodeId, String>,
    pub layout: Layout,
    pub dial: Dial,
    /// Where the view is published.
    pub tx: watch::Sender<Arc<ClusterView>>,
    /// Poked by connections after a surprise.
    pub poke: Arc<Notify>,
}

impl ViewPoller {
    /// Polls until every receiver of the view is gone.
    pub async fn run(mut self) {
        let mut map = ShardMap::default();
        loop {
            if let Some(m) = self.shard_map().await {
                map = m;
            }
            let survey = self.survey(&map).await;
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
            Ok(Ok(config)) => return Some(shard_map(config)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {POLL_CALL_TIMEOUT:?}"),
        };
        tracing::info!(error = %why, "redis view: the controller gave no config; keeping the last one");
        None
    }

    /// Asks each process for the status of the groups of `map` it may serve: the servers
    /// the config lists for a group are asked for that group, this process's peers for every
    /// group.
    async fn survey(&self, map: &ShardMap) -> Survey {
        let groups: BTreeSet<Gid> = map.owners.iter().flatten().copied().collect();
        let mut asks: BTreeMap<String, BTreeSet<Gid>> = BTreeMap::new();
        for addr in self.peers.values() {
            asks.entry(addr.clone()).or_default().extend(&groups);
        }
        for (gid, servers) in map.servers.iter().filter(|(g, _)| groups.contains(g)) {
            for server in servers {
                let addr = server.split_once('=').map_or(server.as_str(), |(_, a)| a);
                asks.entry(addr.trim().to_string())
                    .or_default()
                    .insert(*gid);
            }
        }
        if asks.len() > POLL_PROCESSES_MAX {
            tracing::warn!(
                processes = asks.len(),
                max = POLL_PROCESSES_MAX,
                "redis view: too many servers in the config; asking the first ones only"
            );
        }
        let mut calls = JoinSet::new();
        for (addr, gids) in asks.iter().take(POLL_PROCESSES_MAX) {
            for &gid in gids {
                let (addr, dial) = (addr.clone(), self.dial.clone());
                calls.spawn(async move {
                    let status = fetch_group_status_with(&addr, Some(gid), &dial).await;
                    (addr, gid, status)
                });
            }
        }
        let mut processes: BTreeMap<String, Option<RespAddr>> =
            asks.keys().map(|a| (a.clone(), None)).collect();
        let mut claims: BTreeMap<Gid, Vec<LeaderClaim>> = BTreeMap::new();
        let mut failed = 0usize;
        while let Some(done) = calls.join_next().await {
            let Ok((addr, gid, status)) = done else {
                continue;
            };
            let Ok(status) = status else {
                failed += 1;
                continue;
            };
            if let Some(resp) = status.redis_addr.as_deref().and_then(split_addr) {
                processes.insert(addr.clone(), Some(resp));
            }
            claims.entry(gid).or_default().push(LeaderClaim {
                term: status.term.0,
                leader: leader_addr(&addr, &status),
            });
        }
        if failed > 0 {
            tracing::debug!(failed, "redis view: some status calls of this poll failed");
        }
        let leaders = claims
            .into_iter()
            .filter_map(|(gid, c)| Some((gid, latest_leader(c)?)))
            .collect();
        Survey {
            cluster_id: self.cluster_id,
            me: self.my_addr.clone(),
            processes,
            owners: map.owners.clone(),
            leaders,
            epoch: map.epoch,
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
