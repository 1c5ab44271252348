//! The client-facing fronts of a process that hosts several groups: [`KvFront`] routes Kv
//! service requests (and Status) to the group they name, [`ShardFront`] serves the Shard
//! service (other shard groups' Pull and Installed reads).
//!
//! A KV request for a shard group is served as that group's `Request<KvCommand,
//! ShardQuery::Kv>` and its `ShardOutput::Kv` unwrapped, so clients and the CLI speak the
//! same Kv service to a plain KV group and to a shard group.

use crate::handler::NodeHandler;
use crate::membership::ChangeReply;
use crate::metrics::{GroupMetrics, ctrl_op_index, op_index};
use shardkv_ctrl::{CtrlOutput, ShardCtrl};
use shardkv_kv::{KvOutput, KvRequest, KvStore};
use shardkv_net::convert::CtrlRequest;
use shardkv_net::{Answer, CtrlHandler, Handler, NodeStatus, ShardHandler};
use shardkv_raft::Message;
use shardkv_rsm::{Error, Replica, Reply, Request};
use shardkv_shardkv::{ShardGroup, ShardOutput, ShardQuery, ShardRequest};
use shardkv_types::{ConfChange, Gid, NodeId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// A group that serves KV requests: a plain KV group or a shard group.
#[derive(Clone)]
pub enum KvGroup {
    Kv(Arc<NodeHandler<Replica<KvStore>>>),
    Shard(Arc<NodeHandler<ShardGroup>>),
}

impl KvGroup {
    /// Serves one KV request.
    pub async fn submit(&self, req: KvRequest) -> Reply<KvOutput> {
        match self {
            KvGroup::Kv(h) => h.submit(req).await,
            KvGroup::Shard(h) => kv_output(h.submit(shardkv_shardkv::kv_request(req)).await),
        }
    }

    /// Serves the KV requests of one Batch message, handed to the node in one step: one
    /// answer per request, in order.
    pub fn submit_many(&self, reqs: Vec<KvRequest>) -> Vec<Answer> {
        match self {
            KvGroup::Kv(h) => h
                .submit_many(reqs)
                .into_iter()
                .map(|f| Box::pin(f) as Answer)
                .collect(),
            KvGroup::Shard(h) => {
                let reqs = reqs.into_iter().map(shardkv_shardkv::kv_request).collect();
                h.submit_many(reqs)
                    .into_iter()
                    .map(|f| Box::pin(async move { kv_output(f.await) }) as Answer)
                    .collect()
            }
        }
    }

    pub async fn status(&self) -> Result<NodeStatus, Error> {
        match self {
            KvGroup::Kv(h) => h.status().await,
            KvGroup::Shard(h) => h.status().await,
        }
    }

    /// Where clients reach member `id` of this group, if known.
    pub fn member_addr(&self, id: NodeId) -> Option<String> {
        match self {
            KvGroup::Kv(h) => h.addrs.get(id),
            KvGroup::Shard(h) => h.addrs.get(id),
        }
    }

    pub async fn change_membership(&self, change: ConfChange) -> ChangeReply {
        match self {
            KvGroup::Kv(h) => h.change_membership(change).await,
            KvGroup::Shard(h) => h.change_membership(change).await,
        }
    }
}

/// A shard group's answer to a key request, unwrapped.
fn kv_output(reply: Reply<ShardOutput>) -> Reply<KvOutput> {
    match reply? {
        ShardOutput::Kv(out) => Ok(out),
        other => Err(Error::Unavailable {
            reason: format!("a shard group answered a key request with {other:?}"),
        }),
    }
}

/// The Kv service's view of the process: its KV and shard groups by group id, and the
/// controller replica (for its status).
pub struct KvFront {
    pub id: NodeId,
    pub kv: BTreeMap<Gid, KvGroup>,
    pub ctrl: Option<Arc<NodeHandler<Replica<ShardCtrl>>>>,
    /// Each KV group's metrics: requests are counted by op and outcome, and timed.
    pub metrics: BTreeMap<Gid, Arc<GroupMetrics>>,
    /// This process's Redis (RESP) address as clients reach it, told in every status so
    /// the other processes can name it in `MOVED` (`crate::redis`).
    pub redis_addr: Option<String>,
}

impl KvFront {
    /// The replica a request for `group` goes to: that group's, or for an unnamed group
    /// (`Gid(0)`, clients from before groups were named) the only one.
    fn route(&self, group: Gid) -> Result<(Gid, &KvGroup), Error> {
        if group == Gid(0) {
            let mut only = self.kv.iter();
            return match (only.next(), only.next()) {
                (Some((&gid, h)), None) => Ok((gid, h)),
                (None, _) => Err(Error::Unavailable {
                    reason: "this server hosts no KV group".into(),
                }),
                (Some(_), Some(_)) => Err(Error::Invalid {
                    reason: "this server hosts several KV groups: the request must name one".into(),
                }),
            };
        }
        // Not hosted here: the client's view of the groups is out of date.
        self.kv
            .get(&group)
            .map(|h| (group, h))
            .ok_or(Error::WrongGroup { gid: group })
    }
}

impl KvFront {
    async fn one_group_status(&self, group: Option<Gid>) -> Result<NodeStatus, Error> {
        match group {
            None => self.status().await,
            Some(Gid(0)) => match &self.ctrl {
                Some(ctrl) => ctrl.status().await,
                None => Err(Error::Unavailable {
                    reason: "this server hosts no controller replica".into(),
                }),
            },
            Some(g) => match self.kv.get(&g) {
                Some(kv) => kv.status().await,
                None => Err(Error::WrongGroup { gid: g }),
            },
        }
    }
}

impl Handler for KvFront {
    fn node_id(&self) -> NodeId {
        self.id
    }

    async fn request(&self, group: Gid, req: KvRequest) -> Result<KvOutput, Error> {
        let (gid, target) = self.route(group)?;
        let start = Instant::now();
        let op = op_index(&req);
        let out = target.submit(req).await;
        if let Some(m) = self.metrics.get(&gid) {
            m.observe_request(op, &out, start.elapsed());
        }
        out
    }

    /// Routed and counted like [`Handler::request`]; the requests for one group go to its
    /// node in one hand-off.
    fn requests(this: &Arc<Self>, reqs: Vec<(Gid, KvRequest)>) -> Vec<Answer> {
        let mut answers: Vec<Option<Answer>> = (0..reqs.len()).map(|_| None).collect();
        let mut by_group: BTreeMap<Gid, Vec<(usize, KvRequest)>> = BTreeMap::new();
        for (i, (group, req)) in reqs.into_iter().enumerate() {
            match this.route(group) {
                Ok((gid, _)) => by_group.entry(gid).or_default().push((i, req)),
                Err(e) => answers[i] = Some(Box::pin(std::future::ready(Err(e)))),
            }
        }
        let start = Instant::now();
        for (gid, reqs) in by_group {
            let metrics = this.metrics.get(&gid).cloned();
            let (slots, reqs): (Vec<usize>, Vec<KvRequest>) = reqs.into_iter().unzip();
            let ops: Vec<_> = reqs.iter().map(op_index).collect();
            let futs = this.kv[&gid].submit_many(reqs);
            for ((slot, op), fut) in slots.into_iter().zip(ops).zip(futs) {
                let metrics = metrics.clone();
                answers[slot] = Some(Box::pin(async move {
                    let out = fut.await;
                    if let Some(m) = metrics {
                        m.observe_request(op, &out, start.elapsed());
                    }
                    out
                }));
            }
        }
        answers
            .into_iter()
            .map(|a| a.expect("every request has its answer"))
            .collect()
    }

    /// The status of the first KV (or shard) group hosted here, else the controller's.
    async fn status(&self) -> Result<NodeStatus, Error> {
        match (self.kv.values().next(), &self.ctrl) {
            (Some(kv), _) => kv.status().await,
            (None, Some(ctrl)) => ctrl.status().await,
            (None, None) => Err(Error::Unavailable {
                reason: "this server hosts no group".into(),
            }),
        }
    }

    /// `Some(Gid(0))` is the controller; any other named group must be hosted here. The
    /// answer lists every group hosted here.
    async fn group_status(&self, group: Option<Gid>) -> Result<NodeStatus, Error> {
        let mut status = self.one_group_status(group).await?;
        let ctrl = self.ctrl.iter().map(|_| Gid(0));
        status.hosted = ctrl.chain(self.kv.keys().copied()).collect();
        status.redis_addr = self.redis_addr.clone();
        Ok(status)
    }

    fn raft_messages(&self, _from: NodeId, _msgs: Vec<Message>) {
        // Raft traffic goes through the process's RaftRouter, never through the Kv front.
    }

    /// From the address book of the group the request was routed to.
    fn member_addr(&self, group: Gid, id: NodeId) -> Option<String> {
        let (_, target) = self.route(group).ok()?;
        target.member_addr(id)
    }

    /// Routed like [`Handler::group_status`].
    async fn change_membership(&self, group: Option<Gid>, change: ConfChange) -> ChangeReply {
        let no_ctrl = || Error::Unavailable {
            reason: "this server hosts no controller replica".into(),
        };
        match group {
            None => match (self.kv.values().next(), &self.ctrl) {
                (Some(kv), _) => kv.change_membership(change).await,
                (None, Some(ctrl)) => ctrl.change_membership(change).await,
                (None, None) => Err(no_ctrl()),
            },
            Some(Gid(0)) => match &self.ctrl {
                Some(ctrl) => ctrl.change_membership(change).await,
                None => Err(no_ctrl()),
            },
            Some(g) => match self.kv.get(&g) {
                Some(kv) => kv.change_membership(change).await,
                None => Err(Error::WrongGroup { gid: g }),
            },
        }
    }
}

/// The Ctrl service's view of the process: its controller replica, its requests counted
/// and timed by op and outcome like the KV groups'.
pub struct CtrlFront {
    pub handler: Arc<NodeHandler<Replica<ShardCtrl>>>,
    pub metrics: Arc<GroupMetrics>,
}

impl CtrlHandler for CtrlFront {
    fn node_id(&self) -> NodeId {
        self.handler.id
    }

    async fn ctrl_request(&self, req: CtrlRequest) -> Result<CtrlOutput, Error> {
        let start = Instant::now();
        let op = ctrl_op_index(&req);
        let out = self.handler.submit(req).await;
        self.metrics.observe_request(op, &out, start.elapsed());
        out
    }

    fn member_addr(&self, id: NodeId) -> Option<String> {
        self.handler.addrs.get(id)
    }
}

/// The Shard service's view of the process: its shard groups by group id.
pub struct ShardFront {
    pub id: NodeId,
    pub shard: BTreeMap<Gid, Arc<NodeHandler<ShardGroup>>>,
}

impl ShardHandler for ShardFront {
    fn node_id(&self) -> NodeId {
        self.id
    }

    /// Decodes the request (only `Pull` and `Installed` reads are served here: keys go
    /// through the Kv service), routes it to the group and encodes the answer.
    async fn shard_call(&self, group: Gid, request: Vec<u8>) -> Result<Vec<u8>, Error> {
        let req: ShardRequest = postcard::from_bytes(&request).map_err(|e| Error::Invalid {
            reason: format!("undecodable shard request: {e}"),
        })?;
        if !matches!(
            req,
            Request::Read(ShardQuery::Pull { .. } | ShardQuery::Installed { .. })
        ) {
            return Err(Error::Invalid {
                reason: "the Shard service serves Pull and Installed reads only".into(),
            });
        }
        let h = self
            .shard
            .get(&group)
            .ok_or(Error::WrongGroup { gid: group })?;
        let out = h.submit(req).await?;
        Ok(postcard::to_allocvec(&out).expect("encoding to memory cannot fail"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardkv_kv::{KvCommand, KvQuery};
    use shardkv_types::{ClientId, ConfigNum, Seq, ShardId};

    fn call(front: &ShardFront, group: Gid, bytes: Vec<u8>) -> Result<Vec<u8>, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(front.shard_call(group, bytes))
    }

    #[test]
    fn the_shard_service_serves_only_pulls_and_installs_of_hosted_groups() {
        // Goal: the Shard service is no back door for keys, and bad bytes never panic.
        let front = ShardFront {
            id: NodeId(1),
            shard: BTreeMap::new(),
        };
        let enc = |r: &ShardRequest| postcard::to_allocvec(r).expect("encodes");
        let get = Request::Read(ShardQuery::Kv(KvQuery::Get { key: b"k".to_vec() }));
        let put = Request::Write {
            client: ClientId(1),
            seq: Seq(1),
            retry: false,
            cmd: KvCommand::Delete { key: b"k".to_vec() },
        };
        for r in [get, put] {
            let e = call(&front, Gid(1), enc(&r)).unwrap_err();
            assert!(matches!(e, Error::Invalid { .. }), "{r:?}: {e:?}");
        }
        let garbage = call(&front, Gid(1), vec![0xff; 7]).unwrap_err();
        assert!(matches!(garbage, Error::Invalid { .. }), "{garbage:?}");
        let pull = Request::Read(ShardQuery::Pull {
            num: ConfigNum(2),
            shard: ShardId(3),
            from: shardkv_shardkv::Cursor::Start,
            bytes_max: 1 << 20,
        });
        let e = call(&front, Gid(9), enc(&pull)).unwrap_err();
        assert_eq!(e, Error::WrongGroup { gid: Gid(9) });
    }

    #[test]
    fn a_key_request_becomes_the_shard_groups_request_unchanged() {
        let get = Request::Read(KvQuery::Get { key: b"k".to_vec() });
        assert_eq!(
            shardkv_shardkv::kv_request(get),
            Request::Read(ShardQuery::Kv(KvQuery::Get { key: b"k".to_vec() }))
        );
        let cmd = KvCommand::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let put = Request::Write {
            client: ClientId(4),
            seq: Seq(9),
            retry: false,
            cmd: cmd.clone(),
        };
        assert_eq!(
            shardkv_shardkv::kv_request(put),
            Request::Write {
                client: ClientId(4),
                seq: Seq(9),
                retry: false,
                cmd
            }
        );
    }
}
