//! The KV service scenario harness: a simulated group of `KvNode`s and simulated clerks
//! (the real `ClerkCore`) that run workloads over the simulated network, record every
//! operation with its virtual call and return times, and check the history for
//! linearizability with `shardkv-lincheck`.

use crate::cluster::{ClientEvent, ClusterConfig, Sim};
use crate::kv_node::KvNode;
use shardkv_client::{ClerkCore, KvOp, Next};
use shardkv_kv::{KvCommand, KvOutput, KvRequest};
use shardkv_lincheck as lin;
use shardkv_types::{NodeId, Rng};
use std::collections::VecDeque;

/// A simulated KV group.
pub type KvSim = Sim<KvNode>;

/// How long a clerk waits for an answer before trying the next server.
const ATTEMPT_TIMEOUT_MS: u64 = 250;
/// After this many refusals in a row without progress, a clerk pauses before retrying.
const PAUSE_AFTER_REFUSALS: u32 = 3;
const PAUSE_MS: u64 = 20;

/// What a clerk does when it is running.
#[derive(Clone, Debug)]
pub enum Workload {
    /// The lab's per-client key: first `Put(key, "")`, then half appends of
    /// `"x <client> <j> y"` and half Gets, each Get checked to equal exactly what this
    /// client appended so far.
    OwnKey,
    /// Keys `0..keys` at random: 40% Append, 5% Put, 5% Delete, 10% CAS (expecting the value
    /// this clerk last saw for the key), 40% Get; checked by lincheck only.
    RandomKeys { keys: u64 },
    /// These operations in order, then idle.
    Script(VecDeque<KvOp>),
}

#[derive(Debug)]
struct InFlight {
    op: KvOp,
    call_ns: u64,
    attempt: u64,
}

/// One simulated client.
#[derive(Debug)]
pub struct SimClerk {
    /// The network address and the history's client number.
    pub addr: u64,
    /// The lab's client index, used in appended values.
    pub index: u64,
    core: ClerkCore,
    workload: Workload,
    running: bool,
    op_no: u64,
    inflight: Option<InFlight>,
    refusals: u32,
    /// OwnKey: completed appends, and the value this client's key must hold.
    pub appends: u64,
    model: Vec<u8>,
    /// False once this clerk gave up on a write: the key's value is then unknown and only
    /// lincheck can judge the history.
    model_exact: bool,
    started: bool,
    /// Outputs of completed operations, in order (for scripted checks).
    pub results: Vec<(KvOp, KvOutput)>,
    /// RandomKeys: the value this clerk last observed per key (what its CAS expects).
    last_seen: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    rng: Rng,
}

/// A KV group plus its clerks and the history they recorded.
pub struct KvCluster {
    pub sim: KvSim,
    pub clerks: Vec<SimClerk>,
    pub history: Vec<lin::Operation>,
    /// If set, a clerk gives up on an operation this long after starting it, as a real
    /// client with a deadline does: a write then enters the history as unknown.
    pub op_deadline_ms: Option<u64>,
}

fn own_key(index: u64) -> Vec<u8> {
    index.to_string().into_bytes()
}

/// The value the lab's clients append: `"x <client> <j> y"`.
pub fn append_value(client: u64, j: u64) -> Vec<u8> {
    format!("x {client} {j} y").into_bytes()
}

fn to_lin_op(op: &KvOp) -> lin::Op {
    match op.clone() {
        KvOp::Get { key } => lin::Op::Get { key },
        KvOp::Write(KvCommand::Put { key, value }) => lin::Op::Put { key, value },
        KvOp::Write(KvCommand::Append { key, value }) => lin::Op::Append { key, value },
        KvOp::Write(KvCommand::Delete { key }) => lin::Op::Delete { key },
        KvOp::Write(KvCommand::Cas { key, expected, new }) => lin::Op::Cas { key, expected, new },
    }
}

fn to_lin_output(op: &KvOp, out: &KvOutput) -> Option<lin::Output> {
    Some(match (op, out) {
        (KvOp::Get { .. }, KvOutput::Value(v)) => lin::Output::Get(v.clone()),
        (KvOp::Write(KvCommand::Put { .. }), KvOutput::Done) => lin::Output::Put,
        (KvOp::Write(KvCommand::Append { .. }), KvOutput::Done) => lin::Output::Append,
        (KvOp::Write(KvCommand::Delete { .. }), KvOutput::Done) => lin::Output::Delete,
        (KvOp::Write(KvCommand::Cas { .. }), KvOutput::Cas { swapped, .. }) => {
            lin::Output::Cas { swapped: *swapped }
        }
        _ => return None,
    })
}

impl SimClerk {
    fn next_op(&mut self) -> Option<KvOp> {
        match &mut self.workload {
            Workload::Script(ops) => ops.pop_front(),
            Workload::OwnKey => {
                let key = own_key(self.index);
                if !self.started {
                    self.started = true;
                    return Some(KvOp::Write(KvCommand::Put {
                        key,
                        value: Vec::new(),
                    }));
                }
                if self.rng.chance(500) {
                    Some(KvOp::Write(KvCommand::Append {
                        key,
                        value: append_value(self.index, self.appends),
                    }))
                } else {
                    Some(KvOp::Get { key })
                }
            }
            Workload::RandomKeys { keys } => {
                let key = self.rng.range(0, *keys).to_string().into_bytes();
                // Unique values make the history easy to check.
                let value = append_value(self.index, self.op_no);
                Some(match self.rng.range(0, 100) {
                    0..40 => KvOp::Write(KvCommand::Append { key, value }),
                    40..45 => KvOp::Write(KvCommand::Put { key, value }),
                    45..50 => KvOp::Write(KvCommand::Delete { key }),
                    50..60 => {
                        let expected = self.last_seen.get(&key).cloned().flatten();
                        KvOp::Write(KvCommand::Cas {
                            key,
                            expected,
                            new: value,
                        })
                    }
                    _ => KvOp::Get { key },
                })
            }
        }
    }
}

impl KvCluster {
    pub fn new(cfg: ClusterConfig) -> KvCluster {
        KvCluster {
            sim: Sim::new(cfg),
            clerks: Vec::new(),
            history: Vec::new(),
            op_deadline_ms: None,
        }
    }

    /// Adds a clerk (not yet running) with `workload`; returns its index.
    pub fn add_clerk(&mut self, workload: Workload) -> usize {
        let index = self.clerks.len() as u64;
        let mut rng = self.sim.rng.fork();
        let core = ClerkCore::new(self.sim.ids(), rng.fork());
        self.clerks.push(SimClerk {
            addr: 1000 + index,
            index,
            core,
            workload,
            running: false,
            op_no: 0,
            inflight: None,
            refusals: 0,
            appends: 0,
            model: Vec::new(),
            model_exact: true,
            started: false,
            results: Vec::new(),
            last_seen: std::collections::BTreeMap::new(),
            rng,
        });
        index as usize
    }

    /// Lets every clerk issue operations until `stop_clients`.
    pub fn start_clients(&mut self) {
        for c in 0..self.clerks.len() {
            self.clerks[c].running = true;
            self.kick(c);
        }
    }

    /// Clerks finish the operation in flight and issue no more.
    pub fn stop_clients(&mut self) {
        for c in self.clerks.iter_mut() {
            c.running = false;
        }
    }

    /// True when no clerk has an operation in flight.
    pub fn idle(&self) -> bool {
        self.clerks.iter().all(|c| c.inflight.is_none())
    }

    /// Runs `ms` of virtual time with the clerks active.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.sim.now + ms * 1000;
        self.run_until_time(end, |_| false);
    }

    /// Runs until every clerk is idle, for at most `ms`; returns whether they are.
    pub fn run_until_idle(&mut self, ms: u64) -> bool {
        let end = self.sim.now + ms * 1000;
        self.run_until_time(end, |k| k.idle())
    }

    fn run_until_time(&mut self, end: u64, done: impl Fn(&KvCluster) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let events = self.sim.next_client_events(end);
            if events.is_empty() {
                return done(self);
            }
            for ev in events {
                self.on_event(ev);
            }
        }
    }

    /// Runs one operation on clerk `c` to completion (up to `ms`); returns its output, or
    /// `None` if it did not complete (it stays in flight).
    pub fn op(&mut self, c: usize, op: KvOp, ms: u64) -> Option<KvOutput> {
        let before = self.clerks[c].results.len();
        self.begin(c, op);
        let end = self.sim.now + ms * 1000;
        self.run_until_time(end, |k| k.clerks[c].inflight.is_none());
        self.clerks[c].results.get(before).map(|(_, o)| o.clone())
    }

    /// Starts `op` on clerk `c` without waiting.
    pub fn begin(&mut self, c: usize, op: KvOp) {
        let clerk = &mut self.clerks[c];
        let (req, to) = clerk.core.begin(op.clone());
        clerk.op_no += 1;
        clerk.refusals = 0;
        clerk.inflight = Some(InFlight {
            op,
            call_ns: self.sim.now * 1000,
            attempt: 0,
        });
        self.send(c, to, req);
    }

    fn send(&mut self, c: usize, to: NodeId, req: KvRequest) {
        let clerk = &mut self.clerks[c];
        let Some(f) = clerk.inflight.as_mut() else {
            return;
        };
        f.attempt += 1;
        let token = clerk.op_no << 20 | f.attempt;
        let (addr, op_no) = (clerk.addr, clerk.op_no);
        self.sim.client_send(addr, op_no, to, &req);
        self.sim.client_timer(addr, token, ATTEMPT_TIMEOUT_MS);
    }

    fn kick(&mut self, c: usize) {
        if !self.clerks[c].running || self.clerks[c].inflight.is_some() {
            return;
        }
        if let Some(op) = self.clerks[c].next_op() {
            self.begin(c, op);
        }
    }

    fn clerk_by_addr(&self, addr: u64) -> usize {
        (addr - 1000) as usize
    }

    fn on_event(&mut self, ev: ClientEvent<shardkv_kv::KvResponse>) {
        match ev {
            ClientEvent::Response {
                client,
                client_req,
                from,
                response,
            } => {
                let c = self.clerk_by_addr(client);
                if self.clerks[c].op_no != client_req || self.clerks[c].inflight.is_none() {
                    return; // an answer to an earlier operation or attempt
                }
                match self.clerks[c].core.on_response(from, response) {
                    Next::Done(out) => self.complete(c, out),
                    Next::Retry(to) => self.retry(c, to),
                    Next::Failed(_) => {
                        // Surely not applied: not part of the history.
                        self.clerks[c].inflight = None;
                        self.kick(c);
                    }
                    Next::Unknown(_) => {
                        // May have applied: a write enters the history as unknown.
                        self.give_up(c);
                        self.kick(c);
                    }
                }
            }
            ClientEvent::Timer { client, token } => {
                let c = self.clerk_by_addr(client);
                let clerk = &mut self.clerks[c];
                let current = clerk
                    .inflight
                    .as_ref()
                    .map(|f| clerk.op_no << 20 | f.attempt);
                if current != Some(token) {
                    return;
                }
                let started_ns = clerk.inflight.as_ref().map_or(0, |f| f.call_ns);
                let expired = self
                    .op_deadline_ms
                    .is_some_and(|d| self.sim.now * 1000 >= started_ns + d * 1_000_000);
                if expired {
                    self.give_up(c);
                    self.kick(c);
                    return;
                }
                let to = self.clerks[c].core.on_timeout();
                self.resend(c, to);
            }
        }
    }

    fn retry(&mut self, c: usize, to: NodeId) {
        let clerk = &mut self.clerks[c];
        clerk.refusals += 1;
        if clerk.refusals >= PAUSE_AFTER_REFUSALS {
            // No server knows a leader: wait a little (an election is likely under way).
            clerk.refusals = 0;
            let f = clerk.inflight.as_mut().expect("in flight");
            f.attempt += 1;
            let token = clerk.op_no << 20 | f.attempt;
            let addr = clerk.addr;
            self.sim.client_timer(addr, token, PAUSE_MS);
            return;
        }
        self.resend(c, to);
    }

    fn resend(&mut self, c: usize, to: NodeId) {
        let req = self.clerks[c]
            .core
            .current()
            .cloned()
            .expect("an operation in flight");
        self.send(c, to, req);
    }

    fn complete(&mut self, c: usize, out: KvOutput) {
        let now_ns = self.sim.now * 1000;
        let clerk = &mut self.clerks[c];
        let f = clerk.inflight.take().expect("in flight");
        clerk.refusals = 0;
        if let Workload::OwnKey = clerk.workload {
            match (&f.op, &out) {
                (KvOp::Write(KvCommand::Append { value, .. }), _) => {
                    clerk.model.extend_from_slice(value);
                    clerk.appends += 1;
                }
                (KvOp::Get { .. }, KvOutput::Value(v))
                    if clerk.model_exact && v.as_deref() != Some(&clerk.model[..]) =>
                {
                    let msg = format!(
                        "get wrong value, key {}: wanted {:?}, got {:?}",
                        clerk.index,
                        String::from_utf8_lossy(&clerk.model),
                        v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned())
                    );
                    self.sim.fail(&msg);
                }
                _ => {}
            }
        }
        if let (
            KvOp::Write(KvCommand::Cas { expected, .. }),
            KvOutput::Cas {
                swapped: true,
                current,
            },
        ) = (&f.op, &out)
            && current != expected
        {
            let msg =
                format!("a CAS that swapped reports current {current:?}, expected {expected:?}");
            self.sim.fail(&msg);
        }
        match (&f.op, &out) {
            (KvOp::Get { key }, KvOutput::Value(v)) => {
                clerk.last_seen.insert(key.clone(), v.clone());
            }
            (KvOp::Write(KvCommand::Cas { key, new, .. }), KvOutput::Cas { swapped, current }) => {
                let now = if *swapped {
                    Some(new.clone())
                } else {
                    current.clone()
                };
                clerk.last_seen.insert(key.clone(), now);
            }
            _ => {}
        }
        let Some(output) = to_lin_output(&f.op, &out) else {
            let msg = format!("server answered {:?} with {out:?}", f.op);
            self.sim.fail(&msg)
        };
        self.history.push(lin::Operation {
            client: clerk.addr,
            op: to_lin_op(&f.op),
            call_ns: f.call_ns,
            result: lin::OpResult::Ok {
                output,
                return_ns: now_ns,
            },
        });
        clerk.results.push((f.op, out));
        self.kick(c);
    }

    /// Gives up on every operation in flight: writes enter the history as "unknown" (they
    /// may still apply), reads are dropped (they constrain nothing).
    pub fn abandon_inflight(&mut self) {
        for c in 0..self.clerks.len() {
            self.give_up(c);
        }
    }

    /// Gives up on clerk `c`'s operation in flight, if any, recording a write as unknown.
    fn give_up(&mut self, c: usize) {
        let clerk = &mut self.clerks[c];
        let Some(f) = clerk.inflight.take() else {
            return;
        };
        clerk.core.abandon();
        if matches!(f.op, KvOp::Write(_)) {
            clerk.model_exact = false;
            self.history.push(lin::Operation {
                client: clerk.addr,
                op: to_lin_op(&f.op),
                call_ns: f.call_ns,
                result: lin::OpResult::Unknown,
            });
        }
    }

    /// Checks the whole recorded history; fails the run (with the seed) if it is not
    /// linearizable. Returns whether the checker decided (a budget overrun is not a failure).
    pub fn check_linearizable(&self) -> bool {
        match lin::check(&self.history, lin::Budget::default()) {
            lin::Verdict::Linearizable => true,
            lin::Verdict::Unknown { .. } => false,
            lin::Verdict::NotLinearizable { key, explanation } => {
                let msg = format!(
                    "history is not linearizable on key {:?}:\n{explanation}",
                    String::from_utf8_lossy(&key)
                );
                self.sim.fail(&msg)
            }
        }
    }

    /// The lab's checkClntAppends: `value` holds each of client `index`'s `count` appends
    /// exactly once, in order.
    pub fn check_appends(&self, index: u64, value: &[u8], count: u64) {
        let text = String::from_utf8_lossy(value);
        let mut last = None;
        for j in 0..count {
            let wanted = String::from_utf8_lossy(&append_value(index, j)).into_owned();
            let Some(pos) = text.find(&wanted) else {
                self.sim
                    .fail(&format!("missing element {wanted:?} in Append result"))
            };
            if text[pos + 1..].contains(&wanted) {
                self.sim
                    .fail(&format!("duplicate element {wanted:?} in Append result"));
            }
            if last.is_some_and(|l| pos < l) {
                self.sim.fail(&format!(
                    "wrong order for element {wanted:?} in Append result"
                ));
            }
            last = Some(pos);
        }
    }

    /// The largest persisted Raft state and snapshot over all nodes, in bytes.
    pub fn sizes(&self) -> (usize, usize) {
        let raft = self
            .sim
            .nodes
            .values()
            .map(|n| n.store.raft_state_bytes())
            .max()
            .unwrap_or(0);
        let snap = self
            .sim
            .nodes
            .values()
            .map(|n| n.store.snapshot_bytes())
            .max()
            .unwrap_or(0);
        (raft, snap)
    }
}
