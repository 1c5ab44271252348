//! The process's metrics, as `GET /metrics` serves them (Prometheus text format 0.0.4,
//! encoded by `prometheus-client`). Names follow etcd's (`etcd_server_has_leader` is
//! `shardkv_server_has_leader`); every per-group series carries `group` (the group id) and
//! `member` (this process's node id). docs/operations.md lists them all.
//!
//! Collection is cheap by construction: nothing is computed per request beyond atomic adds
//! ([`GroupMetrics`]); the node thread publishes its Raft view once per drive; a scrape
//! reads atomics and formats text ([`ProcessMetrics`] is a `prometheus-client`
//! [`Collector`]). The peer service's drop counters (wrong cluster, wrong group, ...) are
//! per process and carry `group=""`.

mod families;
mod group;
mod histogram;
mod timed_disk;

use families::{Family, GROUP_FAMILIES, SHARD_FAMILIES};
pub use group::{
    GroupHealth, GroupMetrics, GroupReading, OPS, OUTCOMES, RaftView, ctrl_op_index, op_index,
    outcome_index, proposal_failed,
};
pub use histogram::{DISK_BUCKETS, Histogram, HistogramSnapshot, REQUEST_BUCKETS};
pub use timed_disk::TimedDisk;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use shardkv_net::RaftDrops;
use shardkv_types::NodeId;
use std::sync::{Arc, OnceLock};

/// Every hosted group's metrics and the peer service's drop counters.
#[derive(Debug)]
pub struct ProcessMetrics {
    pub member: NodeId,
    pub groups: Vec<Arc<GroupMetrics>>,
    /// Set once the peer service exists (after the groups started).
    pub drops: OnceLock<Arc<RaftDrops>>,
}

/// Labels of one group's series.
type Labels = [(&'static str, String); 2];

impl ProcessMetrics {
    pub fn new(member: NodeId, groups: Vec<Arc<GroupMetrics>>) -> ProcessMetrics {
        ProcessMetrics {
            member,
            groups,
            drops: OnceLock::new(),
        }
    }

    /// The groups that serve client KV requests (not the controller).
    /// Every group that serves client requests (all of them: the controller counts its
    /// own ops, see [`GroupMetrics::ops`]).
    fn client_groups(&self) -> impl Iterator<Item = &Arc<GroupMetrics>> {
        self.groups.iter()
    }

    fn labels(&self, g: &GroupMetrics) -> Labels {
        [
            ("group", g.gid.0.to_string()),
            ("member", self.member.0.to_string()),
        ]
    }

    /// One gauge or counter family with a series per group.
    fn family(
        &self,
        enc: &mut DescriptorEncoder,
        f: &Family,
        groups: &[(Labels, GroupReading)],
    ) -> Result<(), std::fmt::Error> {
        let mut family = enc.encode_descriptor(f.name, f.help, None, f.kind)?;
        for (labels, reading) in groups {
            let v = (f.value)(reading);
            let mut m = family.encode_family(labels)?;
            encode_value(&mut m, f.kind, v)?;
        }
        Ok(())
    }

    fn histograms<'a>(
        &'a self,
        enc: &mut DescriptorEncoder,
        (name, help): (&str, &str),
        series: impl Iterator<Item = (Vec<(&'static str, String)>, &'a Histogram)>,
    ) -> Result<(), std::fmt::Error> {
        let mut family = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in series {
            let s = h.snapshot();
            family.encode_family(&labels)?.encode_histogram::<Labels>(
                s.sum_seconds,
                s.count,
                &s.buckets,
                None,
            )?;
        }
        Ok(())
    }

    fn encode_drops(
        &self,
        enc: &mut DescriptorEncoder,
        groups: &[(Labels, GroupReading)],
    ) -> Result<(), std::fmt::Error> {
        let mut family = enc.encode_descriptor(
            "shardkv_network_peer_dropped_messages",
            "Raft messages dropped, by reason: send_queue (this member's queue to a peer was \
             full or the peer unreachable) and inbox_full per group; the peer service's \
             wrong_cluster, wrong_group, forged_sender (batches), misaddressed, undecodable \
             (messages) and not_a_member (calls) per process, with group=\"\"",
            None,
            MetricType::Counter,
        )?;
        let member = self.member.0.to_string();
        for (labels, r) in groups {
            for (reason, v) in [
                ("send_queue", r.send_dropped),
                ("inbox_full", r.inbox_dropped),
            ] {
                let l = [
                    labels[0].clone(),
                    labels[1].clone(),
                    ("reason", reason.to_string()),
                ];
                family
                    .encode_family(&l)?
                    .encode_counter::<Labels, _, u64>(&v, None)?;
            }
        }
        if let Some(drops) = self.drops.get() {
            let c = drops.counts();
            for (reason, v) in [
                ("wrong_cluster", c.wrong_cluster_batches),
                ("wrong_group", c.wrong_group_batches),
                ("misaddressed", c.misaddressed_messages),
                ("undecodable", c.undecodable_messages),
                ("forged_sender", c.forged_sender_batches),
                ("not_a_member", c.not_a_member_calls),
            ] {
                let l = [
                    ("group", String::new()),
                    ("member", member.clone()),
                    ("reason", reason.to_string()),
                ];
                family
                    .encode_family(&l)?
                    .encode_counter::<Labels, _, u64>(&v, None)?;
            }
        }
        Ok(())
    }

    fn encode_requests(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = enc.encode_descriptor(
            "shardkv_server_client_requests",
            "Client requests answered, by op and outcome (ok or the error's kind)",
            None,
            MetricType::Counter,
        )?;
        for g in self.client_groups() {
            let [group, member] = self.labels(g);
            for (op, op_name) in g.ops().iter().enumerate() {
                for (outcome, outcome_name) in OUTCOMES.iter().enumerate() {
                    let n = g.requests(op, outcome);
                    // Outcomes never seen are left out (a counter appearing later is fine).
                    if n == 0 && outcome != 0 {
                        continue;
                    }
                    let l = [
                        group.clone(),
                        member.clone(),
                        ("op", op_name.to_string()),
                        ("outcome", outcome_name.to_string()),
                    ];
                    family
                        .encode_family(&l)?
                        .encode_counter::<Labels, _, u64>(&n, None)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(m: &mut MetricEncoder, kind: MetricType, v: u64) -> Result<(), std::fmt::Error> {
    match kind {
        MetricType::Counter => m.encode_counter::<Labels, _, u64>(&v, None),
        _ => m.encode_gauge(&v),
    }
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let readings: Vec<(Labels, GroupReading)> = self
            .groups
            .iter()
            .map(|g| (self.labels(g), g.read()))
            .collect();
        let shard_groups: Vec<(Labels, GroupReading)> = self
            .groups
            .iter()
            .zip(&readings)
            .filter(|(g, _)| g.service == "shard")
            .map(|(_, r)| r.clone())
            .collect();
        for f in &GROUP_FAMILIES {
            self.family(&mut enc, f, &readings)?;
        }
        self.encode_drops(&mut enc, &readings)?;
        for f in &SHARD_FAMILIES {
            self.family(&mut enc, f, &shard_groups)?;
        }
        self.encode_requests(&mut enc)?;
        let per_op = self.client_groups().flat_map(|g| {
            let [group, member] = self.labels(g);
            g.ops().iter().enumerate().map(move |(op, name)| {
                let l = vec![group.clone(), member.clone(), ("op", name.to_string())];
                (l, g.latency(op))
            })
        });
        self.histograms(
            &mut enc,
            (
                "shardkv_server_client_request_duration_seconds",
                "Time from taking a client request to answering it, by op",
            ),
            per_op,
        )?;
        let labelled = |h: fn(&GroupMetrics) -> &Histogram| {
            self.groups
                .iter()
                .map(move |g| (self.labels(g).to_vec(), h(g)))
        };
        self.histograms(
            &mut enc,
            (
                "shardkv_disk_wal_fsync_duration_seconds",
                "Latency of the fdatasyncs of the replica's WAL (one per group commit)",
            ),
            labelled(|g| &g.fsync),
        )?;
        self.histograms(
            &mut enc,
            (
                "shardkv_disk_snapshot_save_duration_seconds",
                "Time to write and sync a snapshot file (on the snapshot writer thread)",
            ),
            labelled(|g| &g.snapshot_save),
        )?;
        Ok(())
    }
}

/// Bytes of keys and values a shard group's answer carries (a pulled chunk), else 0.
pub fn shard_bytes(answer: &shardkv_shardkv::DutyAnswer) -> u64 {
    use shardkv_shardkv::{DutyAnswer, ShardOutput};
    match answer {
        DutyAnswer::Shard(Ok(ShardOutput::Chunk(c))) => c
            .entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum(),
        _ => 0,
    }
}

/// The registry `/metrics` encodes: the process's collector.
pub struct MetricsRegistry {
    registry: Registry,
}

impl MetricsRegistry {
    pub fn new(metrics: Arc<ProcessMetrics>) -> MetricsRegistry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics));
        MetricsRegistry { registry }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; a collector error would be a bug.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// The `Content-Type` of [`MetricsRegistry::encode`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;
    use shardkv_rsm::Error;
    use shardkv_shardkv::{DutyAnswer, ShardChunk, ShardOutput};

    #[test]
    fn a_pulled_chunk_counts_its_keys_and_values() {
        // Goal: shard bytes moved counts a chunk's keys and values only; method: a chunk and two
        // other answers.
        let chunk = ShardChunk {
            entries: vec![(b"ab".to_vec(), vec![0; 10]), (b"c".to_vec(), Vec::new())],
            sessions: Vec::new(),
            sessions_dropped: false,
            dropped: Vec::new(),
            next: None,
        };
        let pulled = DutyAnswer::Shard(Ok(ShardOutput::Chunk(Box::new(chunk))));
        assert_eq!(shard_bytes(&pulled), 13);
        assert_eq!(shard_bytes(&DutyAnswer::Shard(Err(Error::Busy))), 0);
        assert_eq!(shard_bytes(&DutyAnswer::Shard(Ok(ShardOutput::Gone))), 0);
    }
}
