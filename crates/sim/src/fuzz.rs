//! The randomized Raft fuzz target. Each seed picks the cluster size (3, 5 or 7), the fault
//! mix, the snapshot policy, the proposal rate and its swarm toggles (see `faults.rs`), then
//! runs:
//!
//! 1. a safety phase: faults (crashes, crashes in the middle of a disk write, restarts,
//!    isolations, random partitions, one-way cuts, loss, delay, reordering, duplication, the
//!    seed's swarm patterns, and on half of the seeds membership changes: fresh nodes added
//!    as learners, promoted, random voters removed, the leader included) while clients
//!    propose continuously and a reader asks every leader for ReadIndex reads;
//! 2. a liveness phase: faults stop, everything restarts and reconnects, and every client's
//!    outstanding command must commit and every member (of the leader's final membership)
//!    must apply the same log.
//!
//! The invariant checker runs throughout, and every ReadIndex answer is checked to cover
//! every entry committed (anywhere) before the read was asked; at the end no Raft core may
//! have counted an anomaly only a lost data dir or a dishonest peer causes (a lost log, an
//! acknowledgement beyond what was sent, an impossible rejection, a commit past the log).
//! Any violation panics with the seed, the swarm toggles and the command that replays it.

use crate::cluster::Cluster;
use crate::config::ClusterConfig;
use crate::faults::{FaultSchedule, Swarm};
use crate::membership::MembershipFaults;
use crate::net::NetConfig;
use crate::state_machine::digest;
use shardkv_raft::Anomaly;
use shardkv_types::{LogIndex, NodeId, Rng};
use std::collections::BTreeMap;

/// What one seed did, for the summary line.
#[derive(Clone, Debug, Default)]
pub struct FuzzReport {
    pub seed: u64,
    pub nodes: usize,
    /// The swarm toggles this seed enabled.
    pub swarm: String,
    pub faults: u64,
    /// Faults the swarm patterns injected in reaction to an election, vote or commit.
    pub reactions: u64,
    pub commands_committed: u64,
    /// ReadIndex reads answered with an index (each checked).
    pub reads: u64,
    pub elections: usize,
    pub last_index: LogIndex,
    pub virtual_ms: u64,
    pub messages: u64,
    /// Recoveries that cut a hole left by a power cut before valid WAL records.
    pub holes_cut: u64,
    /// Membership changes proposed (and accepted by a leader) among the faults.
    pub conf_changes: u64,
}

/// A client that keeps proposing its current command until it sees it applied.
#[derive(Debug)]
struct Client {
    /// The current command; 0 once the client stopped (liveness phase).
    value: u64,
    /// Indexes at which the current command was accepted by some leader.
    attempts: Vec<LogIndex>,
    retry_at: u64,
}

/// The command that replays `seed`.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run -p shardkv-sim --release --bin fuzz -- --seed {seed}")
}

/// Liveness budget after faults stop, in virtual milliseconds.
const LIVENESS_MS_MAX: u64 = 20_000;

/// Runs one seed; panics (with the replay command) on any violation.
pub fn run_seed(seed: u64) -> FuzzReport {
    let mut pick = Rng::new(seed ^ 0x5eed_f00d);
    let nodes = [3, 5, 7][pick.index(3)];
    let swarm = Swarm::pick(&mut pick);
    let mut cfg = ClusterConfig::new(nodes, seed);
    cfg.replay = format!("{}   (swarm: {})", replay_command(seed), swarm.describe());
    cfg.tweak = swarm.tweak();
    cfg.net = NetConfig {
        request_loss_permille: [0, 0, 50, 100, 200][pick.index(5)],
        reply_loss_permille: [0, 0, 50, 100, 200][pick.index(5)],
        delay_min_us: 0,
        delay_max_us: [1_000, 5_000, 26_000, 60_000][pick.index(4)],
        long_reordering: pick.chance(200),
        duplicate_permille: [0, 0, 10, 50][pick.index(4)],
    };
    cfg.snapshot_every = [None, Some(5), Some(10), Some(50)][pick.index(4)];
    cfg.raft = [
        |r: &mut shardkv_raft::Config| {
            r.snapshot_chunk_bytes_max = 256;
            r.inflight_appends_max = 8;
            r.append_entries_max = 16;
        },
        |r: &mut shardkv_raft::Config| r.snapshot_chunk_bytes_max = 4096,
        |_: &mut shardkv_raft::Config| {},
    ][pick.index(3)];
    let fault_every_ms = pick.range(100, 1_500);
    let propose_every_ms = pick.range(2, 100);
    let clients = pick.range(1, 6) as usize;
    let safety_ms = pick.range(5_000, 15_000);

    let schedule = FaultSchedule::new(pick.next_u64(), swarm);
    let mut c = Cluster::new(cfg);
    schedule.install(&mut c);
    let mut reader = Reader::default();
    let mut report = FuzzReport {
        seed,
        nodes,
        swarm: swarm.describe(),
        ..Default::default()
    };
    let mut next_value = 1u64;
    let mut cl: Vec<Client> = (0..clients)
        .map(|_| {
            next_value += 1;
            Client {
                value: next_value,
                attempts: Vec::new(),
                retry_at: 0,
            }
        })
        .collect();

    // Membership changes draw from their own stream, so seeds without them run as before.
    let mut membership = {
        let mut m = shardkv_types::Rng::new(seed ^ 0xc0f_c4a9);
        m.chance(500)
            .then(|| MembershipFaults::new(&c, m.next_u64()))
    };

    // Safety phase.
    let end = c.now + safety_ms * 1000;
    let mut next_fault = c.now + fault_every_ms * 1000;
    while c.now < end {
        drive_clients(&mut c, &mut cl, &mut next_value, &mut report);
        reader.drive(&mut c);
        if c.now >= next_fault {
            if let Some(m) = membership.as_mut() {
                m.step(&mut c);
            }
            FaultSchedule::inject(&mut c);
            next_fault = c.now + pick.range(fault_every_ms / 2, fault_every_ms * 3 / 2 + 1) * 1000;
        }
        c.run_for(propose_every_ms);
    }

    // Liveness phase: faults stop.
    c.net.config.request_loss_permille = 0;
    c.net.config.reply_loss_permille = 0;
    c.net.config.long_reordering = false;
    c.net.config.duplicate_permille = 0;
    (report.faults, report.reactions) = FaultSchedule::stop(&mut c);
    let deadline = c.now + LIVENESS_MS_MAX * 1000;
    let pending: Vec<u64> = cl.iter().map(|x| x.value).collect();
    let stop = u64::MAX;
    loop {
        drive_clients(&mut c, &mut cl, &mut next_value, &mut report);
        reader.drive(&mut c);
        // No new commands in this phase: a client whose command committed stops.
        for x in cl.iter_mut().filter(|x| !pending.contains(&x.value)) {
            x.value = stop;
        }
        let all_done = cl.iter().all(|x| x.value == stop);
        if all_done && converged(&c) {
            break;
        }
        if c.now >= deadline {
            let status: Vec<String> = c
                .nodes
                .values()
                .filter_map(|n| {
                    n.app
                        .as_ref()
                        .filter(|_| n.is_up())
                        .map(|a| format!("{:?}", a.raft.status()))
                })
                .collect();
            c.fail(&format!(
                "liveness: after {LIVENESS_MS_MAX} ms without faults, pending commands {:?} or logs not converged\n  {}",
                cl.iter().filter(|x| pending.contains(&x.value)).map(|x| x.value).collect::<Vec<_>>(),
                status.join("\n  ")
            ));
        }
        c.run_for(10);
    }
    check_no_impossible_input(&c);
    report.reads = reader.answered;
    report.elections = c.elections.len();
    report.last_index = c.checker().max_applied();
    report.virtual_ms = c.now / 1000;
    report.messages = c.stats.requests + c.stats.replies;
    report.holes_cut = c.nodes.values().map(|n| n.store.holes_cut).sum();
    report.conf_changes = membership.map_or(0, |m| m.proposed);
    report
}

/// Raft anomalies no honest peer causes: these runs crash nodes (losing only what was not
/// synced) but never wipe a data dir, so a follower never loses entries it acknowledged.
const NEVER_WITHOUT_WIPES: [Anomaly; 4] = [
    Anomaly::FollowerLogLost,
    Anomaly::AckBeyondSent,
    Anomaly::ImpossibleReject,
    Anomaly::CommitBeyondLog,
];

fn check_no_impossible_input(c: &Cluster) {
    for n in c.nodes.values() {
        for kind in NEVER_WITHOUT_WIPES {
            let count = n.anomaly_count(kind);
            if count > 0 {
                c.fail(&format!("{}: {kind} {count} times", n.id));
            }
        }
    }
}

/// True when a leader exists whose membership is committed and every member of it applied
/// the same, highest index (a removed node may lag forever).
fn converged(c: &Cluster) -> bool {
    let Some(l) = c.leader() else { return false };
    let leader = &c.app(l).raft;
    if leader
        .log()
        .conf_index()
        .is_some_and(|i| i > leader.log().committed())
    {
        return false;
    }
    let max = c.checker().max_applied();
    leader.conf().members().all(|id| {
        c.nodes[&id]
            .app
            .as_ref()
            .is_some_and(|a| a.sm.applied == max)
    })
}

fn drive_clients(
    c: &mut Cluster,
    cl: &mut [Client],
    next_value: &mut u64,
    report: &mut FuzzReport,
) {
    for client in cl.iter_mut().filter(|x| x.value != u64::MAX) {
        let want = digest(&Cluster::cmd(client.value));
        if client
            .attempts
            .iter()
            .any(|&i| c.n_committed(i).1 == Some(want))
        {
            report.commands_committed += 1;
            *next_value += 1;
            client.value = *next_value;
            client.attempts.clear();
            client.retry_at = 0;
        }
        if c.now < client.retry_at {
            continue;
        }
        // Propose to whichever node accepts (a leader), starting from a random one.
        let ids = c.ids();
        let first = c.rng.index(ids.len());
        for k in 0..ids.len() {
            let id: NodeId = ids[(first + k) % ids.len()];
            if let Some((i, _)) = c.start(id, &Cluster::cmd(client.value)) {
                client.attempts.push(i);
                break;
            }
        }
        client.retry_at = c.now + 300_000;
    }
}

/// Asks every node that believes it leads for a ReadIndex read at every step, and checks
/// each answer: a read asked after an entry committed anywhere must get an index at or past
/// it (else a deposed leader served a stale read).
#[derive(Debug, Default)]
struct Reader {
    next_ctx: u64,
    /// ctx -> the highest commit index any node had when the read was asked.
    asked: BTreeMap<u64, LogIndex>,
    /// Per node: (incarnation, read states of that incarnation already checked).
    consumed: BTreeMap<NodeId, (u64, usize)>,
    /// The highest commit index seen on any node so far.
    committed_floor: LogIndex,
    answered: u64,
}

/// At most this many reads wait for an answer; older ones are forgotten (their leader lost
/// leadership and their answer may never come).
const READS_PENDING_MAX: usize = 1_000;

impl Reader {
    fn drive(&mut self, c: &mut Cluster) {
        for id in c.ids() {
            self.check_answers(c, id);
        }
        let floor = c
            .nodes
            .values()
            .filter_map(|n| n.app.as_ref())
            .map(|a| a.raft.log().committed())
            .max()
            .unwrap_or_default();
        self.committed_floor = self.committed_floor.max(floor);
        for id in c.ids() {
            let up = c.is_up(id);
            let Some(app) = c.nodes.get_mut(&id).and_then(|n| n.app.as_mut()) else {
                continue;
            };
            if !up || !app.raft.is_leader() {
                continue;
            }
            self.next_ctx += 1;
            if app.raft.read_index(self.next_ctx).is_ok() {
                self.asked.insert(self.next_ctx, self.committed_floor);
                c.process(id);
            }
        }
        while self.asked.len() > READS_PENDING_MAX {
            self.asked.pop_first();
        }
    }

    fn check_answers(&mut self, c: &Cluster, id: NodeId) {
        let n = &c.nodes[&id];
        let Some(app) = n.app.as_ref() else { return };
        let (inc, done) = self.consumed.entry(id).or_insert((n.incarnation, 0));
        if *inc != n.incarnation {
            (*inc, *done) = (n.incarnation, 0);
        }
        for rs in &app.reads[*done..] {
            let floor = self.asked.remove(&rs.ctx);
            let (Some(index), Some(floor)) = (rs.index, floor) else {
                continue;
            };
            self.answered += 1;
            if index < floor {
                c.fail(&format!(
                    "stale read: {id} answered read {} at index {index}, but index {floor} \
                     was committed before the read was asked",
                    rs.ctx
                ));
            }
        }
        *done = app.reads.len();
    }
}
