//! [`ViewPoller`]: keeps this process's [`ClusterView`] current. Every [`POLL_EVERY`], and
//! at once when a connection reports a surprise (an operation that failed: a leader moved,
//! a shard moved), it asks the controller for its latest config (which group serves each
//! shard) and every member process for the status of each group that serves shards (its
//! leader, and the RESP address the process advertises), then publishes the view
//! [`Survey::view`] builds from them.
//!
//! What a poll cannot learn it does not guess: a process that does not answer has no RESP
//! address in this poll, and a group whose members name no leader masters no slots, so
//! their keys are answered `CLUSTERDOWN` until the next poll that learns them. A failed
//! controller query keeps the shard map of the last poll.

use shardkv_client::{CtrlClient, Dial, GID_NONE, Gid, NodeId, Role, fetch_group_status_with};
use shardkv_redis::{ClusterView, LeaderClaim, Survey, latest_leader};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// How often the view is refreshed without a surprise.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// The bound on each status call and controller query of one poll.
pub const POLL_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the data lives: which groups serve which shards.
pub enum Layout {
    /// Shard groups, assigned shards by the controller this client asks.
    Sharded(Box<CtrlClient>),
    /// One unsharded KV group serving every slot.
    Single(Gid),
}

/// The poller of one process.
pub struct ViewPoller {
    pub cluster_id: u64,
    pub me: NodeId,
    /// This process's own RESP address as clients reach it.
    pub my_addr: (String, u16),
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
        let mut owners: Vec<Option<Gid>> = Vec::new();
        let mut epoch = 0;
        loop {
            if let Some((o, e)) = self.shard_map().await {
                (owners, epoch) = (o, e);
            }
            let survey = self.survey(owners.clone(), epoch).await;
            if self.tx.send(Arc::new(survey.view())).is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_EVERY) => {}
                () = self.poke.notified() => {}
            }
        }
    }

    /// The group serving each shard and the config's number; `None` if the controller did
    /// not answer in time.
    async fn shard_map(&mut self) -> Option<(Vec<Option<Gid>>, u64)> {
        let ctrl = match &mut self.layout {
            Layout::Single(gid) => return Some((vec![Some(*gid)], 0)),
            Layout::Sharded(ctrl) => ctrl,
        };
        match tokio::time::timeout(POLL_CALL_TIMEOUT, ctrl.query(None)).await {
            Ok(Ok(config)) => {
                let owners = config
                    .shards
                    .iter()
                    .map(|&g| (g != GID_NONE).then_some(g))
                    .collect();
                Some((owners, config.num.0))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis view: the controller did not answer");
                None
            }
            Err(_) => None,
        }
    }

    /// Asks every member for the status of every group in `owners`.
    async fn survey(&self, owners: Vec<Option<Gid>>, epoch: u64) -> Survey {
        let groups: Vec<Gid> = {
            let mut g: Vec<Gid> = owners.iter().flatten().copied().collect();
            g.sort();
            g.dedup();
            g
        };
        let mut calls = JoinSet::new();
        for (&id, addr) in &self.peers {
            for &gid in &groups {
                let (addr, dial) = (addr.clone(), self.dial.clone());
                calls.spawn(async move {
                    (
                        id,
                        gid,
                        fetch_group_status_with(&addr, Some(gid), &dial).await,
                    )
                });
            }
        }
        let mut processes: BTreeMap<NodeId, Option<(String, u16)>> =
            self.peers.keys().map(|&id| (id, None)).collect();
        let mut claims: BTreeMap<Gid, Vec<LeaderClaim>> = BTreeMap::new();
        while let Some(done) = calls.join_next().await {
            let Ok((id, gid, Ok(status))) = done else {
                continue;
            };
            if let Some(addr) = status.redis_addr.as_deref().and_then(split_addr) {
                processes.insert(id, Some(addr));
            }
            let leader = match status.role {
                Role::Leader => Some(status.id),
                _ => status.leader,
            };
            claims.entry(gid).or_default().push(LeaderClaim {
                term: status.term.0,
                leader,
            });
        }
        processes.insert(self.me, Some(self.my_addr.clone()));
        let leaders = claims
            .into_iter()
            .filter_map(|(gid, c)| Some((gid, latest_leader(c)?)))
            .collect();
        Survey {
            cluster_id: self.cluster_id,
            me: self.me,
            processes,
            owners,
            leaders,
            epoch,
        }
    }
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
