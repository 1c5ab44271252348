//! The fault schedule both fuzzers share: which fault, on which node, when, and the per-seed
//! swarm toggles.
//!
//! Swarm testing: each seed switches a random subset of fault patterns and configuration
//! extremes on, so that a seed concentrates on a few behaviours instead of averaging all of
//! them away. Some patterns are periodic (a fault every `fault_every_ms`), others react to
//! what a node just did, right after it did it (the simulator calls
//! [`FaultSchedule::after_process`] after every event a node processed):
//!
//! - `crash-new-leader`: a leader crashes right after it wins, its first appends in flight;
//! - `isolate-new-leader`: a new leader is cut off right after its no-op is proposed, so it
//!   takes proposals it cannot replicate (divergent entries of its term);
//! - `crash-after-commit`: a leader crashes right after its commit index advanced, before
//!   followers learn it (Raft Figure 8 (c)→(d));
//! - `restart-after-vote`: a node restarts right after granting a vote, then may be asked
//!   again in the same term;
//! - `one-entry-appends`, `tiny-inflight`, `short-elections`: Raft configuration extremes;
//! - `clock-skew`: every node's clock runs at its own rate in 0.8×–1.25×, so leases and
//!   election timeouts disagree as they do on real machines;
//! - `power-cut`: every injected crash (and crash in the middle of a disk write) persists
//!   a random subset of the pages of the node's unsynced writes (`CrashMode::Pages`, pages
//!   of 1, 2 or 8 simulated 16-byte sectors), so the WAL can be left with holes before
//!   valid records, as a power cut under out-of-order write-back leaves it; without it a
//!   crash keeps a prefix of them (`CrashMode::Prefix`);
//! - `disk-full`: now and then a node's disk fills (capped at what it holds plus up to
//!   512 bytes, so a write may get partway) for 0.1–3 s: the host's NoSpace path runs on
//!   without writing (or freezes on a leader's snapshot) among all the other faults. A
//!   node is given its space back before it restarts (recovery may need to write).
//!
//! Everything draws from the schedule's own RNG in event order: the same seed gives the same
//! run.

use crate::app::App;
use crate::cluster::Sim;
use crate::net::NetConfig;
use crate::queue::Micros;
use crate::raft_tweak::RaftTweak;
use shardkv_raft::Role;
use shardkv_storage::CrashMode;
use shardkv_types::{LogIndex, NodeId, Rng, Term};
use std::collections::BTreeMap;

/// The fault patterns one seed enables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swarm {
    pub crash_new_leader: bool,
    pub isolate_new_leader: bool,
    pub crash_after_commit: bool,
    pub restart_after_vote: bool,
    pub one_entry_appends: bool,
    pub tiny_inflight: bool,
    pub short_elections: bool,
    pub clock_skew: bool,
    pub power_cut: bool,
    pub disk_full: bool,
}

impl Swarm {
    /// Each toggle on with probability 1/2 — except in a quarter of the seeds, which keep
    /// every toggle off (the plain fault mix stays covered).
    pub fn pick(rng: &mut Rng) -> Swarm {
        if rng.index(4) == 0 {
            return Swarm::default();
        }
        Swarm {
            crash_new_leader: rng.chance(500),
            isolate_new_leader: rng.chance(500),
            crash_after_commit: rng.chance(500),
            restart_after_vote: rng.chance(500),
            one_entry_appends: rng.chance(500),
            tiny_inflight: rng.chance(500),
            short_elections: rng.chance(500),
            clock_skew: rng.chance(500),
            power_cut: rng.chance(500),
            disk_full: rng.chance(500),
        }
    }

    /// A service fuzzer's network for one seed: loss each way, delay, long reordering and
    /// duplication, each picked from a few levels.
    pub fn pick_net(rng: &mut Rng) -> NetConfig {
        NetConfig {
            request_loss_permille: [0, 0, 50, 100][rng.index(4)],
            reply_loss_permille: [0, 0, 50, 100][rng.index(4)],
            delay_min_us: 0,
            delay_max_us: [1_000, 10_000, 26_000][rng.index(3)],
            long_reordering: rng.chance(100),
            duplicate_permille: [0, 0, 20][rng.index(3)],
        }
    }

    /// The Raft configuration overrides this swarm implies.
    pub fn tweak(&self) -> RaftTweak {
        RaftTweak {
            append_entries_max: self.one_entry_appends.then_some(1),
            inflight_appends_max: self.tiny_inflight.then_some(1),
            election_ticks: self.short_elections.then_some(15),
            heartbeat_ticks: self.short_elections.then_some(3),
        }
    }

    /// The enabled toggles, for the summary line and failure messages.
    pub fn describe(&self) -> String {
        let all = [
            (self.crash_new_leader, "crash-new-leader"),
            (self.isolate_new_leader, "isolate-new-leader"),
            (self.crash_after_commit, "crash-after-commit"),
            (self.restart_after_vote, "restart-after-vote"),
            (self.one_entry_appends, "one-entry-appends"),
            (self.tiny_inflight, "tiny-inflight"),
            (self.short_elections, "short-elections"),
            (self.clock_skew, "clock-skew"),
            (self.power_cut, "power-cut"),
            (self.disk_full, "disk-full"),
        ];
        let on: Vec<&str> = all.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(",")
        }
    }
}

/// What a node looked like after its last processed event, to see what changed.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    term: Term,
    vote: Option<NodeId>,
    commit: LogIndex,
    leader: bool,
}

/// A fault undone later: a crashed node restarted, an isolated node reconnected.
#[derive(Clone, Copy, Debug)]
enum Undo {
    Restart(NodeId),
    Reconnect(NodeId),
    FreeDisk(NodeId),
}

/// The fault schedule of one seed.
pub struct FaultSchedule {
    rng: Rng,
    pub swarm: Swarm,
    /// False once the liveness phase began: no more faults.
    active: bool,
    seen: BTreeMap<NodeId, Seen>,
    /// Faults to undo at a virtual time.
    undo: Vec<(Micros, Undo)>,
    /// Periodic faults injected.
    pub faults: u64,
    /// Reactive faults (swarm patterns) injected.
    pub reactions: u64,
}

impl FaultSchedule {
    pub fn new(seed: u64, swarm: Swarm) -> FaultSchedule {
        FaultSchedule {
            rng: Rng::new(seed),
            swarm,
            active: true,
            seen: BTreeMap::new(),
            undo: Vec::new(),
            faults: 0,
            reactions: 0,
        }
    }

    /// Installs this schedule on `sim` and sets the per-node clock rates.
    pub fn install<A: App>(mut self, sim: &mut Sim<A>) {
        if self.swarm.clock_skew {
            for id in sim.ids() {
                let permille = self.rng.range(800, 1251) as u32;
                sim.clock_permille.insert(id, permille);
            }
        }
        sim.faults = Some(self);
    }

    /// Injects one periodic fault into `sim` (which must carry a schedule).
    pub fn inject<A: App>(sim: &mut Sim<A>) {
        let mut f = sim.faults.take().expect("a fault schedule is installed");
        f.inject_one(sim);
        sim.faults = Some(f);
    }

    /// Ends the safety phase: no more faults; every node restarts if down and reconnects,
    /// and every armed disk fault is disarmed. Returns (periodic, reactive) fault counts.
    pub fn stop<A: App>(sim: &mut Sim<A>) -> (u64, u64) {
        let counts = match sim.faults.as_mut() {
            Some(f) => {
                f.active = false;
                f.undo.clear();
                (f.faults, f.reactions)
            }
            None => (0, 0),
        };
        for id in sim.ids() {
            free_disk(sim, id);
        }
        sim.disarm_disk_faults();
        for id in sim.ids() {
            if !sim.is_up(id) {
                sim.restart(id);
            }
        }
        sim.connect_all();
        counts
    }

    fn inject_one<A: App>(&mut self, c: &mut Sim<A>) {
        self.faults += 1;
        let ids = c.ids();
        let pick = &mut self.rng;
        let id = ids[pick.index(ids.len())];
        if self.swarm.disk_full && pick.chance(250) {
            let disk = &c.nodes[&id].store.disk;
            disk.set_capacity_bytes(Some(disk.used_bytes() + pick.range(0, 513)));
            let back = c.now + pick.range(100, 3_001) * 1000;
            self.undo.push((back, Undo::FreeDisk(id)));
            return;
        }
        match pick.index(9) {
            0 => {
                let mode = self.crash_mode();
                c.crash_with(id, mode);
            }
            8 => {
                let ops = pick.range(0, 8);
                let mode = self.crash_mode();
                c.crash_mid_write(id, ops, mode);
            }
            1 => restart(c, id),
            2 => c.disconnect(id),
            3 => c.connect(id),
            4 => {
                let (a, b): (Vec<NodeId>, Vec<NodeId>) = ids.iter().partition(|_| pick.chance(500));
                c.partition(&[&a, &b]);
            }
            5 => {
                let other = ids[pick.index(ids.len())];
                if other != id {
                    c.cut_one_way(id, other);
                }
            }
            6 => {
                c.connect_all();
                for i in ids {
                    if !c.is_up(i) {
                        restart(c, i);
                    }
                }
            }
            _ => {
                // Keep a majority alive now and then so the run makes progress.
                let down: Vec<NodeId> = ids.into_iter().filter(|&i| !c.is_up(i)).collect();
                if let Some(&d) = down.first() {
                    restart(c, d);
                }
            }
        }
    }

    /// Called by the simulator after node `id` processed an event (its messages are sent).
    pub fn after_process<A: App>(&mut self, c: &mut Sim<A>, id: NodeId) {
        if !self.active {
            return;
        }
        self.undo_due(c);
        let Some(app) = c.nodes[&id].app.as_ref().filter(|_| c.is_up(id)) else {
            return;
        };
        let s = app.raft().status();
        let now = Seen {
            term: s.term,
            vote: s.vote,
            commit: s.commit,
            leader: s.role == Role::Leader,
        };
        let before = self.seen.insert(id, now).unwrap_or_default();
        let sw = self.swarm;
        let won = now.leader && !(before.leader && before.term == now.term);
        let voted_other = now.vote.is_some_and(|v| v != id)
            && (before.term != now.term || before.vote != now.vote);
        if won && sw.crash_new_leader && self.rng.chance(300) {
            self.crash_for(c, id);
        } else if won && sw.isolate_new_leader && self.rng.chance(300) {
            self.reactions += 1;
            c.disconnect(id);
            let back = c.now + self.rng.range(200, 2_001) * 1000;
            self.undo.push((back, Undo::Reconnect(id)));
        } else if now.leader
            && before.leader
            && now.commit > before.commit
            && sw.crash_after_commit
            && self.rng.chance(30)
        {
            self.crash_for(c, id);
        } else if voted_other && sw.restart_after_vote && self.rng.chance(500) {
            self.reactions += 1;
            restart(c, id);
            self.seen.remove(&id);
        }
    }

    /// How the next injected crash treats unsynced writes (the `power-cut` toggle).
    fn crash_mode(&mut self) -> CrashMode {
        if self.swarm.power_cut {
            let sectors = [1, 2, 8][self.rng.index(3)];
            CrashMode::Pages {
                page_bytes: sectors * crate::disk_store::SECTOR_BYTES as usize,
            }
        } else {
            CrashMode::Prefix
        }
    }

    /// Crashes `id` now and restarts it 50–1500 ms later.
    fn crash_for<A: App>(&mut self, c: &mut Sim<A>, id: NodeId) {
        self.reactions += 1;
        let mode = self.crash_mode();
        c.crash_with(id, mode);
        self.seen.remove(&id);
        let back = c.now + self.rng.range(50, 1_501) * 1000;
        self.undo.push((back, Undo::Restart(id)));
    }

    fn undo_due<A: App>(&mut self, c: &mut Sim<A>) {
        let now = c.now;
        if self.undo.iter().all(|(t, _)| *t > now) {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = self.undo.drain(..).partition(|(t, _)| *t <= now);
        self.undo = later;
        for (_, u) in due {
            match u {
                Undo::Restart(id) if !c.is_up(id) => restart(c, id),
                Undo::Reconnect(id) => c.connect(id),
                Undo::FreeDisk(id) => free_disk(c, id),
                Undo::Restart(_) => {}
            }
        }
    }
}

/// Lifts a `disk-full` cap on `id`'s disk.
fn free_disk<A: App>(c: &mut Sim<A>, id: NodeId) {
    c.nodes[&id].store.disk.set_capacity_bytes(None);
}

/// Restarts `id` with its disk's space back (recovery may need to write).
fn restart<A: App>(c: &mut Sim<A>, id: NodeId) {
    free_disk(c, id);
    c.restart(id);
}
