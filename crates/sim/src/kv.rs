//! The KV service scenario harness: a simulated group of `KvNode`s and simulated clerks
//! (the real `ClerkCore`) that run workloads over the simulated network, record every
//! operation with its virtual call and return times, and check the history for
//! linearizability with `shardkv-lincheck`. The same harness drives the sharded store's
//! clerks ([`KvClients`] over [`ShardKvClerk`](crate::ShardKvClerk)s).

use crate::app::App;
use crate::clerk::{Ended, SIM_CLERK_POLICY, SimClerk};
use crate::clients::{Clients, run_clients};
use crate::cluster::Sim;
use crate::config::ClusterConfig;
use crate::event::ClientEvent;
use crate::group::GroupKind;
use crate::kv_clerk::{KvClerk, KvClerkIn};
use crate::service_node::KvNode;
use shardkv_client::{CLERK_TICK_MS, KvOp, Op, RetryPolicy};
use shardkv_kv::{ByteBuf, KvCommand, KvOutput, KvQuery, KvStore, SetWhen};
use shardkv_lincheck as lin;
use shardkv_types::{Gid, NodeId, Rng};
use std::collections::VecDeque;

/// A simulated KV group.
pub type KvSim = Sim<KvNode>;

/// After this many writes of unknown outcome a clerk stops giving up (drops its deadline):
/// each unknown write stays concurrent with everything after it, and a few dozen on one key
/// put the history beyond what a linearizability checker can decide, and an undecided
/// history is never a pass.
pub const UNKNOWN_WRITES_PER_CLERK_MAX: u32 = 8;

/// [`UNKNOWN_WRITES_PER_CLERK_MAX`] for a clerk of [`Workload::RedisKeys`]: its multi-key
/// ops join keys into one partition, which lincheck searches without its single-key
/// look-ahead, so fewer unknown writes keep it decidable (seed 284 of the kv fuzz, 50
/// unknown writes on three keys, was not).
pub const REDIS_UNKNOWN_WRITES_PER_CLERK_MAX: u32 = 2;

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
    /// The Redis front end's operations on keys `0..keys` ([`redis_key`]: every
    /// [`REDIS_KEYS_PER_TAG`] keys share a hash tag, so a multi-key op on keys of one tag
    /// stays in one shard): Get, Put, Delete, Set (any condition, with or without the
    /// found value; sometimes an integer), GetDel, AppendLen, IncrBy, StrLen, and the
    /// multi-key DeleteMany, PutMany, GetMany and Exists on 1 to 3 keys of one tag, and
    /// pipelines of 2 to [`REDIS_PIPELINE_OPS_MAX`] of them (all writes or all reads, on
    /// keys of one tag); checked by lincheck only.
    RedisKeys { keys: u64 },
    /// These operations in order, then idle.
    Script(VecDeque<KvOp>),
}

/// One simulated KV client: a clerk, its workload, and what it knows of its own key.
#[derive(Debug)]
pub struct KvClient<C = SimClerk<KvStore>> {
    /// The network address and the history's client number.
    pub addr: u64,
    /// The lab's client index, used in appended values.
    pub index: u64,
    clerk: C,
    workload: Workload,
    running: bool,
    /// RandomKeys: values made so far (each value is unique).
    values_made: u64,
    /// Writes this clerk gave up on (their outcome is unknown).
    unknown_writes: u32,
    /// Operations its workload started.
    ops_begun: u64,
    /// OwnKey: completed appends, and the value this client's key must hold.
    pub appends: u64,
    model: Vec<u8>,
    /// False once this clerk gave up on a write: the key's value is then unknown and only
    /// lincheck can judge the history.
    model_exact: bool,
    started: bool,
    /// Outputs of completed operations, in order (for scripted checks).
    pub results: Vec<(KvOp, KvOutput)>,
    /// Operations that surely did not take effect, with the error that said so, in order.
    pub failures: Vec<(KvOp, shardkv_rsm::Error)>,
    /// RandomKeys: the value this clerk last observed per key (what its CAS expects).
    last_seen: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    rng: Rng,
}

/// The clerks of one KV group (or of the sharded store) and the history they recorded,
/// over any simulator whose nodes can run the service (a lone KV group, or a world).
pub struct KvClients<C = SimClerk<KvStore>> {
    /// The group the clerks enter through (the KV group, or the sharded store's
    /// controller), and its members.
    pub gid: Gid,
    pub servers: Vec<NodeId>,
    /// Clerk `i` has network address `addr_base + i`.
    addr_base: u64,
    pub clerks: Vec<KvClient<C>>,
    pub history: Vec<lin::Operation>,
    /// If set, a clerk gives up on an operation this long after starting it, as a real
    /// client with a deadline does: a write that may have applied then enters the history
    /// as unknown. Set before adding clerks.
    pub op_deadline_ms: Option<u64>,
    /// If set, a running clerk starts at most this many operations (its workload's), which
    /// bounds the history a linearizability check must decide.
    pub ops_per_clerk_max: Option<u64>,
}

/// A lone KV group plus its clerks ([`KvClients`], reached through `Deref`).
pub struct KvCluster {
    pub sim: KvSim,
    pub kv: KvClients,
}

impl std::ops::Deref for KvCluster {
    type Target = KvClients;
    fn deref(&self) -> &KvClients {
        &self.kv
    }
}

impl std::ops::DerefMut for KvCluster {
    fn deref_mut(&mut self) -> &mut KvClients {
        &mut self.kv
    }
}

fn own_key(index: u64) -> Vec<u8> {
    index.to_string().into_bytes()
}

/// The value the lab's clients append: `"x <client> <j> y"`.
pub fn append_value(client: u64, j: u64) -> Vec<u8> {
    format!("x {client} {j} y").into_bytes()
}

impl Workload {
    /// The random-keys workload of fuzz seed `seed`: [`Workload::RedisKeys`] for a third of
    /// the seeds, else [`Workload::RandomKeys`]. Drawn from its own generator, so the
    /// seed's other picks stay as they were.
    /// The Redis workload gets `keys` hash tags of [`REDIS_KEYS_PER_TAG`] keys each, so as
    /// many partitions as the other gets keys.
    pub fn fuzz_random_keys(seed: u64, keys: u64) -> Workload {
        if Rng::new(seed ^ 0x4ed1_5c0d).chance(333) {
            Workload::RedisKeys {
                keys: keys * REDIS_KEYS_PER_TAG,
            }
        } else {
            Workload::RandomKeys { keys }
        }
    }
}

/// The operations of `history` in the partition lincheck checks together with `key`: those
/// touching a key connected to `key` by multi-key operations.
fn component<'h>(history: &'h [lin::Operation], key: &[u8]) -> Vec<&'h lin::Operation> {
    let mut keys: std::collections::BTreeSet<&[u8]> = [key].into();
    loop {
        let before = keys.len();
        for o in history {
            if o.op.keys().any(|k| keys.contains(k)) {
                keys.extend(o.op.keys());
            }
        }
        if keys.len() == before {
            break;
        }
    }
    history
        .iter()
        .filter(|o| o.op.keys().any(|k| keys.contains(k)))
        .collect()
}

/// Keys that share a hash tag in [`Workload::RedisKeys`].
pub const REDIS_KEYS_PER_TAG: u64 = 3;

/// The most ops of a pipeline [`Workload::RedisKeys`] draws.
pub const REDIS_PIPELINE_OPS_MAX: usize = 4;

/// Key `i` of [`Workload::RedisKeys`]: `{t<tag>}<i>`, with [`REDIS_KEYS_PER_TAG`] keys per
/// tag.
pub fn redis_key(i: u64) -> Vec<u8> {
    format!("{{t{}}}{i}", i / REDIS_KEYS_PER_TAG).into_bytes()
}

fn bytes_of(keys: Vec<ByteBuf>) -> Vec<Vec<u8>> {
    keys.into_iter().map(ByteBuf::into_vec).collect()
}

/// The history's form of a KV operation.
pub fn to_lin_op(op: &KvOp) -> lin::Op {
    match op.clone() {
        Op::Read(KvQuery::Get { key }) => lin::Op::Get { key },
        Op::Read(KvQuery::StrLen { key }) => lin::Op::StrLen { key },
        Op::Read(KvQuery::GetMany { keys }) => lin::Op::GetMany {
            keys: bytes_of(keys),
        },
        Op::Read(KvQuery::Exists { keys }) => lin::Op::Exists {
            keys: bytes_of(keys),
        },
        Op::Write(KvCommand::Put { key, value }) => lin::Op::Put { key, value },
        Op::Write(KvCommand::Append { key, value }) => lin::Op::Append { key, value },
        Op::Write(KvCommand::Delete { key }) => lin::Op::Delete { key },
        Op::Write(KvCommand::Cas { key, expected, new }) => lin::Op::Cas { key, expected, new },
        Op::Write(KvCommand::Set {
            key,
            value,
            when,
            get,
        }) => lin::Op::Set {
            key,
            value,
            when: match when {
                SetWhen::Always => lin::SetWhen::Always,
                SetWhen::Absent => lin::SetWhen::Absent,
                SetWhen::Present => lin::SetWhen::Present,
            },
            get,
        },
        Op::Write(KvCommand::GetDel { key }) => lin::Op::GetDel { key },
        Op::Write(KvCommand::AppendLen { key, value }) => lin::Op::AppendLen { key, value },
        Op::Write(KvCommand::IncrBy { key, by }) => lin::Op::IncrBy { key, by },
        Op::Write(KvCommand::DeleteMany { keys }) => lin::Op::DeleteMany {
            keys: bytes_of(keys),
        },
        Op::Write(KvCommand::PutMany { pairs }) => lin::Op::PutMany {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into_vec(), v.into_vec()))
                .collect(),
        },
        Op::Write(KvCommand::Pipeline { cmds }) => lin::Op::Pipeline {
            ops: cmds.into_iter().map(|c| to_lin_op(&Op::Write(c))).collect(),
        },
        Op::Read(KvQuery::Pipeline { queries }) => lin::Op::Pipeline {
            ops: queries
                .into_iter()
                .map(|q| to_lin_op(&Op::Read(q)))
                .collect(),
        },
    }
}

/// A pipeline's operations, each as a `KvOp`.
fn pipeline_ops(op: &KvOp) -> Option<Vec<KvOp>> {
    match op {
        Op::Write(KvCommand::Pipeline { cmds }) => {
            Some(cmds.iter().cloned().map(Op::Write).collect())
        }
        Op::Read(KvQuery::Pipeline { queries }) => {
            Some(queries.iter().cloned().map(Op::Read).collect())
        }
        _ => None,
    }
}

/// The history's form of `out`, the answer to `op`; `None` if it is no answer to `op`.
pub fn to_lin_output(op: &KvOp, out: &KvOutput) -> Option<lin::Output> {
    use KvCommand as C;
    use KvQuery as Q;
    if let (Some(ops), KvOutput::Outputs(outs)) = (pipeline_ops(op), out) {
        if ops.len() != outs.len() {
            return None;
        }
        let outs = ops.iter().zip(outs).map(|(o, out)| to_lin_output(o, out));
        return Some(lin::Output::Outputs(outs.collect::<Option<_>>()?));
    }
    Some(match (op, out) {
        (Op::Read(Q::Get { .. }) | Op::Write(C::GetDel { .. }), KvOutput::Value(v)) => {
            lin::Output::Get(v.clone())
        }
        (Op::Write(C::Put { .. } | C::PutMany { .. }), KvOutput::Done) => lin::Output::Put,
        (Op::Write(C::Append { .. }), KvOutput::Done) => lin::Output::Append,
        (Op::Write(C::Delete { .. }), KvOutput::Done) => lin::Output::Delete,
        (Op::Write(C::Delete { .. }), KvOutput::Deleted { existed }) => {
            lin::Output::Deleted { existed: *existed }
        }
        (Op::Write(C::Cas { .. }), KvOutput::Cas { swapped, .. }) => {
            lin::Output::Cas { swapped: *swapped }
        }
        (Op::Write(C::Set { .. }), KvOutput::Set { applied, old }) => lin::Output::Set {
            applied: *applied,
            old: old.clone(),
        },
        (
            Op::Write(C::AppendLen { .. } | C::IncrBy { .. } | C::DeleteMany { .. })
            | Op::Read(Q::StrLen { .. } | Q::Exists { .. }),
            KvOutput::Int(n),
        ) => lin::Output::Int(*n),
        (Op::Write(C::IncrBy { .. }), KvOutput::NotAnInteger) => lin::Output::NotAnInteger,
        (Op::Write(C::IncrBy { .. }), KvOutput::Overflow) => lin::Output::Overflow,
        (Op::Write(C::Append { .. } | C::AppendLen { .. }), KvOutput::TooLarge { .. }) => {
            lin::Output::TooLarge
        }
        (Op::Read(Q::GetMany { keys }), KvOutput::Values(values)) if values.len() == keys.len() => {
            lin::Output::Values(
                values
                    .iter()
                    .map(|v| v.as_ref().map(|v| v.to_vec()))
                    .collect(),
            )
        }
        _ => return None,
    })
}

impl<C: KvClerk> KvClient<C> {
    /// True when the clerk has no operation in flight.
    pub fn is_idle(&self) -> bool {
        self.clerk.is_idle()
    }

    /// The clerk itself.
    pub fn clerk_mut(&mut self) -> &mut C {
        &mut self.clerk
    }
}

impl<C> KvClient<C> {
    fn next_op(&mut self) -> Option<KvOp> {
        match &mut self.workload {
            Workload::Script(ops) => ops.pop_front(),
            Workload::OwnKey => {
                let key = own_key(self.index);
                if !self.started {
                    self.started = true;
                    return Some(Op::Write(KvCommand::Put {
                        key,
                        value: Vec::new(),
                    }));
                }
                if self.rng.chance(500) {
                    Some(Op::Write(KvCommand::Append {
                        key,
                        value: append_value(self.index, self.appends),
                    }))
                } else {
                    Some(Op::Read(KvQuery::Get { key }))
                }
            }
            Workload::RandomKeys { keys } => {
                let key = self.rng.range(0, *keys).to_string().into_bytes();
                // Unique values make the history easy to check.
                self.values_made += 1;
                let value = append_value(self.index, self.values_made);
                Some(match self.rng.range(0, 100) {
                    0..40 => Op::Write(KvCommand::Append { key, value }),
                    40..45 => Op::Write(KvCommand::Put { key, value }),
                    45..50 => Op::Write(KvCommand::Delete { key }),
                    50..60 => {
                        let expected = self.last_seen.get(&key).cloned().flatten();
                        Op::Write(KvCommand::Cas {
                            key,
                            expected,
                            new: value,
                        })
                    }
                    _ => Op::Read(KvQuery::Get { key }),
                })
            }
            Workload::RedisKeys { keys } => {
                let keys = *keys;
                Some(self.redis_op(keys))
            }
        }
    }

    /// The next op of [`Workload::RedisKeys`]: one time in ten a pipeline
    /// ([`KvClient::redis_pipeline`]), else one op ([`KvClient::redis_single`]).
    fn redis_op(&mut self, keys: u64) -> KvOp {
        let i = self.rng.range(0, keys);
        if self.rng.chance(100) {
            return self.redis_pipeline(keys, i);
        }
        self.redis_single(keys, i)
    }

    /// A pipeline of 2 to [`REDIS_PIPELINE_OPS_MAX`] ops on the keys of key `i`'s tag (so
    /// in one shard), all writes or (one time in three) all reads, drawn as single ops are;
    /// at most one of them a GetDel or a Set answering the value it found (each counts the
    /// largest value in the pipeline's bytes, so two would be refused, as the Redis front
    /// end never groups them).
    fn redis_pipeline(&mut self, keys: u64, i: u64) -> KvOp {
        let reads = self.rng.chance(333);
        let tag_first = i - i % REDIS_KEYS_PER_TAG;
        let tag_keys = (tag_first + REDIS_KEYS_PER_TAG).min(keys) - tag_first;
        let n = self.rng.range(2, REDIS_PIPELINE_OPS_MAX as u64 + 1);
        let mut ops = Vec::new();
        // Reads are 37% of single ops: 16 draws miss them all with odds under 1e-3.
        for _ in 0..16 * n {
            if ops.len() as u64 == n {
                break;
            }
            let j = tag_first + self.rng.range(0, tag_keys);
            let op = self.redis_single(keys, j);
            let answers_value = |op: &KvOp| {
                matches!(
                    op,
                    Op::Write(KvCommand::GetDel { .. } | KvCommand::Set { get: true, .. })
                )
            };
            if answers_value(&op) && ops.iter().any(answers_value) {
                continue;
            }
            if matches!(op, Op::Read(_)) == reads {
                ops.push(op);
            }
        }
        if ops.is_empty() {
            return self.redis_single(keys, i);
        }
        if reads {
            let queries = ops
                .into_iter()
                .filter_map(|op| match op {
                    Op::Read(q) => Some(q),
                    Op::Write(_) => None,
                })
                .collect();
            Op::Read(KvQuery::Pipeline { queries })
        } else {
            let cmds = ops
                .into_iter()
                .filter_map(|op| match op {
                    Op::Write(c) => Some(c),
                    Op::Read(_) => None,
                })
                .collect();
            Op::Write(KvCommand::Pipeline { cmds })
        }
    }

    /// One op of [`Workload::RedisKeys`] on key `i` (and keys of its tag): 15% Get, 3% Put,
    /// 3% Delete, 15% Set, 5% GetDel, 5% AppendLen, 15% IncrBy, 4% StrLen, 7% DeleteMany,
    /// 10% PutMany, 12% GetMany, 6% Exists. Values are unique, or (a third of Sets) a small
    /// integer for IncrBy.
    fn redis_single(&mut self, keys: u64, i: u64) -> KvOp {
        let key = redis_key(i);
        self.values_made += 1;
        let value = append_value(self.index, self.values_made);
        // 1 to 3 keys sharing key i's tag (a key may come twice).
        let tag_first = i - i % REDIS_KEYS_PER_TAG;
        let tag_keys = (tag_first + REDIS_KEYS_PER_TAG).min(keys) - tag_first;
        let count = self.rng.range(1, 4);
        let many: Vec<ByteBuf> = (0..count)
            .map(|_| ByteBuf::from(redis_key(tag_first + self.rng.range(0, tag_keys))))
            .collect();
        match self.rng.range(0, 100) {
            0..15 => Op::Read(KvQuery::Get { key }),
            15..18 => Op::Write(KvCommand::Put { key, value }),
            18..21 => Op::Write(KvCommand::Delete { key }),
            21..36 => {
                let when = [SetWhen::Always, SetWhen::Absent, SetWhen::Present][self.rng.index(3)];
                let value = if self.rng.chance(333) {
                    self.rng.range(0, 10).to_string().into_bytes()
                } else {
                    value
                };
                let get = self.rng.chance(500);
                Op::Write(KvCommand::Set {
                    key,
                    value,
                    when,
                    get,
                })
            }
            36..41 => Op::Write(KvCommand::GetDel { key }),
            41..46 => Op::Write(KvCommand::AppendLen { key, value }),
            46..61 => {
                let by = self.rng.range(0, 7) as i64 - 3;
                Op::Write(KvCommand::IncrBy { key, by })
            }
            61..65 => Op::Read(KvQuery::StrLen { key }),
            65..72 => Op::Write(KvCommand::DeleteMany { keys: many }),
            72..82 => {
                let pairs = many
                    .into_iter()
                    .enumerate()
                    .map(|(j, k)| {
                        let mut v = value.clone();
                        v.extend_from_slice(format!(" {j}").as_bytes());
                        (k, ByteBuf::from(v))
                    })
                    .collect();
                Op::Write(KvCommand::PutMany { pairs })
            }
            82..94 => Op::Read(KvQuery::GetMany { keys: many }),
            _ => Op::Read(KvQuery::Exists { keys: many }),
        }
    }
}

impl<C: KvClerk> KvClients<C> {
    /// Gives clerk `c` another retry policy (e.g. the production one, with hedging).
    pub fn set_policy(&mut self, c: usize, policy: RetryPolicy) {
        self.clerks[c].clerk.set_policy(policy);
    }

    /// No clerks yet for group `gid` of `servers`; clerk addresses start at `addr_base`.
    pub fn new(gid: Gid, servers: Vec<NodeId>, addr_base: u64) -> KvClients<C> {
        KvClients {
            gid,
            servers,
            addr_base,
            clerks: Vec::new(),
            history: Vec::new(),
            op_deadline_ms: None,
            ops_per_clerk_max: None,
        }
    }

    /// Adds a clerk (not yet running) with `workload`; returns its index.
    pub fn add_clerk<A: App>(&mut self, sim: &mut Sim<A>, workload: Workload) -> usize {
        let index = self.clerks.len() as u64;
        let mut rng = sim.rng.fork();
        let policy = RetryPolicy {
            op_ticks_max: self.op_deadline_ms.map(|ms| ms.div_ceil(CLERK_TICK_MS)),
            ..SIM_CLERK_POLICY
        };
        let addr = self.addr_base + index;
        let clerk = C::create(addr, self.gid, self.servers.clone(), policy, rng.fork());
        self.clerks.push(KvClient {
            addr,
            index,
            clerk,
            workload,
            running: false,
            values_made: 0,
            unknown_writes: 0,
            ops_begun: 0,
            appends: 0,
            model: Vec::new(),
            model_exact: true,
            started: false,
            results: Vec::new(),
            failures: Vec::new(),
            last_seen: std::collections::BTreeMap::new(),
            rng,
        });
        index as usize
    }

    /// Lets every clerk issue operations until `stop_clients`.
    pub fn start_clients<A: App>(&mut self, sim: &mut Sim<A>)
    where
        C: KvClerkIn<A>,
    {
        for c in 0..self.clerks.len() {
            self.clerks[c].running = true;
            self.kick(sim, c);
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
        self.clerks.iter().all(|c| c.clerk.is_idle())
    }

    /// Starts `op` on clerk `c` without waiting.
    pub fn begin<A: App>(&mut self, sim: &mut Sim<A>, c: usize, op: KvOp)
    where
        C: KvClerkIn<A>,
    {
        let ended = self.clerks[c].clerk.begin(sim, op);
        self.ended(sim, c, ended);
    }

    /// Records how clerk `c`'s operation ended, if it did, and starts its next one.
    fn ended<A: App>(
        &mut self,
        sim: &mut Sim<A>,
        c: usize,
        ended: Option<Ended<KvCommand, KvQuery, KvOutput>>,
    ) where
        C: KvClerkIn<A>,
    {
        match ended {
            None => return,
            Some(Ended::Done { op, call_ns, out }) => self.complete(sim, c, op, call_ns, out),
            // May have applied: a write enters the history as unknown.
            Some(Ended::Unknown { op, call_ns }) => self.record_unknown(c, op, call_ns),
            Some(Ended::Failed { op, error, .. }) => {
                // Surely not applied: not part of the history. (The own-key model assumed
                // the first Put, so a failed write leaves it to lincheck.)
                if matches!(op, Op::Write(_)) {
                    self.clerks[c].model_exact = false;
                }
                self.clerks[c].failures.push((op, error));
            }
        }
        self.kick(sim, c);
    }

    fn kick<A: App>(&mut self, sim: &mut Sim<A>, c: usize)
    where
        C: KvClerkIn<A>,
    {
        if !self.clerks[c].running || !self.clerks[c].clerk.is_idle() {
            return;
        }
        if self
            .ops_per_clerk_max
            .is_some_and(|max| self.clerks[c].ops_begun >= max)
        {
            return;
        }
        if let Some(op) = self.clerks[c].next_op() {
            self.clerks[c].ops_begun += 1;
            self.begin(sim, c, op);
        }
    }

    fn complete<A: App>(&mut self, sim: &Sim<A>, c: usize, op: KvOp, call_ns: u64, out: KvOutput) {
        let now_ns = sim.now * 1000;
        let clerk = &mut self.clerks[c];
        if let Workload::OwnKey = clerk.workload {
            match (&op, &out) {
                (Op::Write(KvCommand::Append { value, .. }), _) => {
                    clerk.model.extend_from_slice(value);
                    clerk.appends += 1;
                }
                (Op::Read(_), KvOutput::Value(v))
                    if clerk.model_exact && v.as_deref() != Some(&clerk.model[..]) =>
                {
                    let msg = format!(
                        "get wrong value, key {}: wanted {:?}, got {:?}",
                        clerk.index,
                        String::from_utf8_lossy(&clerk.model),
                        v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned())
                    );
                    sim.fail(&msg);
                }
                _ => {}
            }
        }
        if let (
            Op::Write(KvCommand::Cas { expected, .. }),
            KvOutput::Cas {
                swapped: true,
                current,
            },
        ) = (&op, &out)
            && current != expected
        {
            let msg =
                format!("a CAS that swapped reports current {current:?}, expected {expected:?}");
            sim.fail(&msg);
        }
        match (&op, &out) {
            (Op::Read(KvQuery::Get { key }), KvOutput::Value(v)) => {
                clerk.last_seen.insert(key.clone(), v.clone());
            }
            (Op::Write(KvCommand::Cas { key, new, .. }), KvOutput::Cas { swapped, current }) => {
                let now = if *swapped {
                    Some(new.clone())
                } else {
                    current.clone()
                };
                clerk.last_seen.insert(key.clone(), now);
            }
            _ => {}
        }
        let Some(output) = to_lin_output(&op, &out) else {
            let msg = format!("server answered {:?} with {out:?}", op);
            sim.fail(&msg)
        };
        self.history.push(lin::Operation {
            client: clerk.addr,
            op: to_lin_op(&op),
            call_ns,
            result: lin::OpResult::Ok {
                output,
                return_ns: now_ns,
            },
        });
        clerk.results.push((op, out));
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
        if let Some(Ended::Unknown { op, call_ns }) = self.clerks[c].clerk.give_up() {
            self.record_unknown(c, op, call_ns);
        }
    }

    /// Records an operation that may have applied: a write enters the history as unknown,
    /// a read is dropped (it constrains nothing).
    fn record_unknown(&mut self, c: usize, op: KvOp, call_ns: u64) {
        let clerk = &mut self.clerks[c];
        if matches!(op, Op::Write(_)) {
            clerk.unknown_writes += 1;
            let max = match clerk.workload {
                Workload::RedisKeys { .. } => REDIS_UNKNOWN_WRITES_PER_CLERK_MAX,
                _ => UNKNOWN_WRITES_PER_CLERK_MAX,
            };
            if clerk.unknown_writes >= max {
                clerk.clerk.set_policy(SIM_CLERK_POLICY);
            }
            clerk.model_exact = false;
            self.history.push(lin::Operation {
                client: clerk.addr,
                op: to_lin_op(&op),
                call_ns,
                result: lin::OpResult::Unknown,
            });
        }
    }

    /// Checks the whole recorded history; fails the run (with the seed) if it is not
    /// linearizable, and also if the checker could not decide within its budget: an
    /// undecided history is never a pass.
    pub fn check_linearizable<A: App>(&self, sim: &Sim<A>) {
        let budget = match std::env::var("SHARDKV_LIN_STEPS") {
            Ok(v) => lin::Budget::steps_per_key(v.parse().expect("SHARDKV_LIN_STEPS=N")),
            Err(_) => lin::Budget::default(),
        };
        match lin::check(&self.history, budget) {
            lin::Verdict::Linearizable => {}
            lin::Verdict::Unknown { key } => {
                let on_key = component(&self.history, &key);
                if let Ok(path) = std::env::var("SHARDKV_DUMP_HISTORY") {
                    let mut f = std::fs::File::create(path).expect("dump file");
                    for o in &on_key {
                        lin::write_op_jsonl(&mut f, o).expect("dump");
                    }
                }
                let unknown = on_key
                    .iter()
                    .filter(|o| o.result == lin::OpResult::Unknown)
                    .count();
                let msg = format!(
                    "linearizability undecided on the keys of {:?} ({} operations, {unknown} of unknown \
                     outcome; checker budget); an undecided history is never a pass: the \
                     workload must keep histories checkable",
                    String::from_utf8_lossy(&key),
                    on_key.len()
                );
                sim.fail(&msg)
            }
            lin::Verdict::NotLinearizable { key, explanation } => {
                let msg = format!(
                    "history is not linearizable on key {:?}:\n{explanation}",
                    String::from_utf8_lossy(&key)
                );
                sim.fail(&msg)
            }
        }
    }

    /// The lab's checkClntAppends: `value` holds each of client `index`'s `count` appends
    /// exactly once, in order.
    pub fn check_appends<A: App>(&self, sim: &Sim<A>, index: u64, value: &[u8], count: u64) {
        let text = String::from_utf8_lossy(value);
        let mut last = None;
        for j in 0..count {
            let wanted = String::from_utf8_lossy(&append_value(index, j)).into_owned();
            let Some(pos) = text.find(&wanted) else {
                sim.fail(&format!("missing element {wanted:?} in Append result"))
            };
            if text[pos + 1..].contains(&wanted) {
                sim.fail(&format!("duplicate element {wanted:?} in Append result"));
            }
            if last.is_some_and(|l| pos < l) {
                sim.fail(&format!(
                    "wrong order for element {wanted:?} in Append result"
                ));
            }
            last = Some(pos);
        }
    }

    /// The largest persisted Raft state and snapshot over all nodes, in bytes.
    /// Operations of every clerk that ended with `SessionExpired`.
    pub fn sessions_expired(&self) -> u64 {
        self.clerks.iter().map(|c| c.clerk.sessions_expired()).sum()
    }

    pub fn sizes<A: App>(&self, sim: &Sim<A>) -> (usize, usize) {
        let members = || self.servers.iter().map(|id| &sim.nodes[id]);
        let raft = members()
            .map(|n| n.store.raft_state_bytes())
            .max()
            .unwrap_or(0);
        let snap = members()
            .map(|n| n.store.snapshot_bytes())
            .max()
            .unwrap_or(0);
        (raft, snap)
    }
}

impl<A: App, C: KvClerkIn<A>> Clients<A> for KvClients<C> {
    fn on_event(&mut self, sim: &mut Sim<A>, ev: ClientEvent<A::Response>) {
        let c = (C::home(ev.client()) - self.addr_base) as usize;
        let ended = self.clerks[c].clerk.on_event(sim, ev);
        self.ended(sim, c, ended);
    }
}

impl<C: KvClerk> KvClients<C> {
    /// True if client address `addr` is one of these clerks'.
    pub fn owns(&self, addr: u64) -> bool {
        (self.addr_base..self.addr_base + self.clerks.len() as u64).contains(&C::home(addr))
    }
}

impl KvCluster {
    /// A lone KV group (every group of `cfg` runs the KV service; clerks talk to the first).
    pub fn new(cfg: ClusterConfig) -> KvCluster {
        let sim = Sim::new(cfg.with_kind(GroupKind::Kv));
        let gid = sim.gid();
        let kv = KvClients::new(gid, sim.members(gid), 1000);
        KvCluster { sim, kv }
    }

    /// Adds a clerk (not yet running) with `workload`; returns its index.
    pub fn add_clerk(&mut self, workload: Workload) -> usize {
        self.kv.add_clerk(&mut self.sim, workload)
    }

    /// Lets every clerk issue operations until `stop_clients`.
    pub fn start_clients(&mut self) {
        self.kv.start_clients(&mut self.sim);
    }

    /// Starts `op` on clerk `c` without waiting.
    pub fn begin(&mut self, c: usize, op: KvOp) {
        self.kv.begin(&mut self.sim, c, op);
    }

    /// Runs `ms` of virtual time with the clerks active.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.sim.now + ms * 1000;
        run_clients(&mut self.sim, &mut self.kv, end, |_| false);
    }

    /// Runs until every clerk is idle, for at most `ms`; returns whether they are.
    pub fn run_until_idle(&mut self, ms: u64) -> bool {
        let end = self.sim.now + ms * 1000;
        run_clients(&mut self.sim, &mut self.kv, end, |k| k.idle())
    }

    /// Runs one operation on clerk `c` to completion (up to `ms`); returns its output, or
    /// `None` if it did not complete (it stays in flight).
    pub fn op(&mut self, c: usize, op: KvOp, ms: u64) -> Option<KvOutput> {
        let before = self.kv.clerks[c].results.len();
        self.begin(c, op);
        let end = self.sim.now + ms * 1000;
        run_clients(&mut self.sim, &mut self.kv, end, |k| {
            k.clerks[c].clerk.is_idle()
        });
        self.kv.clerks[c]
            .results
            .get(before)
            .map(|(_, o)| o.clone())
    }

    /// See [`KvClients::check_linearizable`].
    pub fn check_linearizable(&self) {
        self.kv.check_linearizable(&self.sim);
    }

    /// See [`KvClients::check_appends`].
    pub fn check_appends(&self, index: u64, value: &[u8], count: u64) {
        self.kv.check_appends(&self.sim, index, value, count);
    }

    /// The largest persisted Raft state and snapshot over all nodes, in bytes.
    pub fn sizes(&self) -> (usize, usize) {
        self.kv.sizes(&self.sim)
    }
}
