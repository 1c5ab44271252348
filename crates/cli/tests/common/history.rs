//! Concurrent clients that record a history for the linearizability checker, shared by the
//! real-process history tests: each client appends unique tokens to a key of its own and
//! runs random puts / gets / appends / deletes / cas on shared keys; every operation is
//! recorded as ok (with its output), unknown (may have applied) or failed (surely not: left
//! out of the history). Then each own key is checked (every acknowledged token exactly
//! once, in order) and the whole history goes to the checker, for which undecided fails.

use super::cluster::{Cluster, LEADER_WAIT, POLL};
use shardkv_client::{Client, KvOp, Outcome};
use shardkv_kv::{KvCommand, KvOutput};
use shardkv_lincheck::{Budget, Op, OpResult, Operation, Output, Verdict, check};
use shardkv_types::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The most operations one client issues (the loop also stops when the faults are over).
pub const OPS_PER_CLIENT_MAX: usize = 4000;

/// What every client and the test share.
pub struct Shared {
    /// The history clock's origin.
    pub origin: Instant,
    pub stop: AtomicBool,
    /// Operations acknowledged so far, over all clients.
    pub acked: AtomicU64,
}

impl Shared {
    pub fn ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).expect("test runs < 500 years")
    }
}

/// One client's record: its history and, per token appended to its own key, the outcome.
pub struct Recorded {
    pub own_key: String,
    pub appends: Vec<(String, Outcome)>,
    pub history: Vec<Operation>,
    pub failed: usize,
}

/// Runs `op` and records it: `Some(output)` if it completed.
pub async fn record(
    client: &mut Client,
    shared: &Shared,
    rec: &mut Recorded,
    op: Op,
) -> (Outcome, Option<Output>) {
    let kv_op = match op.clone() {
        Op::Get { key } => KvOp::Read(shardkv_kv::KvQuery::Get { key }),
        Op::Put { key, value } => KvOp::Write(KvCommand::Put { key, value }),
        Op::Append { key, value } => KvOp::Write(KvCommand::Append { key, value }),
        Op::Delete { key } => KvOp::Write(KvCommand::Delete { key }),
        Op::Cas { key, expected, new } => KvOp::Write(KvCommand::Cas { key, expected, new }),
        other => panic!("this workload draws Get, Put, Append, Delete and CAS, not {other:?}"),
    };
    let call_ns = shared.ns();
    let result = client.execute(kv_op).await;
    let return_ns = shared.ns();
    let (outcome, output) = match result {
        Ok(out) => {
            let output = match (&op, out) {
                (Op::Get { .. }, KvOutput::Value(v)) => Output::Get(v),
                (Op::Put { .. }, KvOutput::Done) => Output::Put,
                (Op::Append { .. }, KvOutput::Done) => Output::Append,
                (Op::Delete { .. }, KvOutput::Done) => Output::Delete,
                (Op::Delete { .. }, KvOutput::Deleted { existed }) => Output::Deleted { existed },
                (Op::Cas { .. }, KvOutput::Cas { swapped, .. }) => Output::Cas { swapped },
                (op, out) => panic!("{op:?} answered with {out:?}"),
            };
            shared.acked.fetch_add(1, Ordering::Relaxed);
            (Outcome::Ok, Some(output))
        }
        Err(e) => (e.outcome(), None),
    };
    rec.push(
        client.id().0,
        op,
        call_ns,
        (outcome, output.clone()),
        return_ns,
    );
    (outcome, output)
}

/// One client's loop: appends to its own key, and puts / gets / appends / deletes / cas on
/// `shared_keys` shared keys (`s0`, `s1`, ...), until told to stop or
/// [`OPS_PER_CLIENT_MAX`] operations.
pub async fn run_client(
    mut client: Client,
    w: usize,
    shared_keys: u64,
    shared: Arc<Shared>,
) -> Recorded {
    let mut rng = Rng::new(w as u64 + 1);
    let mut rec = Recorded {
        own_key: format!("own{w}"),
        appends: Vec::new(),
        history: Vec::new(),
        failed: 0,
    };
    let mut last_read: Vec<Option<Vec<u8>>> = vec![None; shared_keys as usize];
    for i in 0..OPS_PER_CLIENT_MAX {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let k = rng.range(0, shared_keys) as usize;
        let key = format!("s{k}").into_bytes();
        let unique = format!("{w}.{i};").into_bytes();
        let op = match rng.range(0, 100) {
            0..30 => {
                let token = format!("<{w}.{i}>");
                let op = Op::Append {
                    key: rec.own_key.clone().into_bytes(),
                    value: token.clone().into_bytes(),
                };
                let (outcome, _) = record(&mut client, &shared, &mut rec, op).await;
                rec.appends.push((token, outcome));
                continue;
            }
            // Reading its own key often keeps the checker's search short: an append of
            // unknown outcome can only be placed between the reads that do not and do show it.
            30..40 => Op::Get {
                key: rec.own_key.clone().into_bytes(),
            },
            40..55 => Op::Get { key },
            55..70 => Op::Put { key, value: unique },
            70..80 => Op::Append { key, value: unique },
            80..85 => Op::Delete { key },
            _ => Op::Cas {
                key,
                expected: last_read[k].clone(),
                new: unique,
            },
        };
        if let (_, Some(Output::Get(v))) = record(&mut client, &shared, &mut rec, op).await {
            last_read[k] = v;
        }
    }
    rec
}

/// Tells the clients to stop and collects their records, each within `wait`.
pub fn stop_clients(
    c: &Cluster,
    shared: &Shared,
    handles: Vec<tokio::task::JoinHandle<Recorded>>,
    wait: std::time::Duration,
) -> Vec<Recorded> {
    shared.stop.store(true, Ordering::Relaxed);
    handles
        .into_iter()
        .map(|h| {
            c.block_on(async { tokio::time::timeout(wait, h).await })
                .expect("clients stop within their operation timeout")
                .expect("client task")
        })
        .collect()
}

/// Waits (bounded) until `n` more operations were acknowledged.
pub fn await_progress(shared: &Shared, n: u64, what: &str) {
    let target = shared.acked.load(Ordering::Relaxed) + n;
    let deadline = Instant::now() + LEADER_WAIT;
    while shared.acked.load(Ordering::Relaxed) < target {
        assert!(
            Instant::now() < deadline,
            "no progress within {LEADER_WAIT:?} {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Checks a client's own key: each acknowledged token exactly once, no failed token,
/// unknown ones at most once, all in the order they were appended.
pub fn check_own_key(rec: &Recorded, value: &str) {
    let mut at = 0;
    for (token, outcome) in &rec.appends {
        let found = value.matches(token.as_str()).count();
        match outcome {
            Outcome::Ok => assert_eq!(
                found, 1,
                "{token} acknowledged; {} holds {value}",
                rec.own_key
            ),
            Outcome::Failed => assert_eq!(found, 0, "{token} failed yet applied: {value}"),
            Outcome::Unknown => assert!(found <= 1, "{token} applied twice: {value}"),
        }
        if let Some(pos) = value.find(token.as_str()) {
            assert!(pos >= at, "{token} out of order in {value}");
            at = pos;
        }
    }
}

/// Keeps the history next to the members' data (kept when the test fails).
pub fn write_history(dir: &std::path::Path, history: &[Operation]) {
    let path = dir.join("history.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("history file"));
    for op in history {
        shardkv_lincheck::write_op_jsonl(&mut out, op).expect("write history");
    }
}

impl Shared {
    /// A fresh record, its clock starting now.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            origin: Instant::now(),
            stop: AtomicBool::new(false),
            acked: AtomicU64::new(0),
        })
    }
}

impl Recorded {
    /// Records one operation of `client` called at `call_ns`: ok (with its output, returned
    /// at `return_ns`) or unknown go into the history; failed (surely not applied) is only
    /// counted. An ok operation has an output.
    pub fn push(
        &mut self,
        client: u64,
        op: Op,
        call_ns: u64,
        (outcome, output): (Outcome, Option<Output>),
        return_ns: u64,
    ) {
        let result = match (outcome, output) {
            (Outcome::Ok, Some(output)) => OpResult::Ok { output, return_ns },
            (Outcome::Ok, None) => panic!("{op:?} ok without an output"),
            (Outcome::Unknown, _) => OpResult::Unknown,
            (Outcome::Failed, _) => {
                self.failed += 1;
                return;
            }
        };
        self.history.push(Operation {
            client,
            op,
            call_ns,
            result,
        });
    }

    /// An empty record (for reads the test makes itself).
    pub fn empty() -> Recorded {
        Recorded {
            own_key: String::new(),
            appends: Vec::new(),
            history: Vec::new(),
            failed: 0,
        }
    }
}

/// Checks the whole history (kept next to the members' data first): linearizable, and
/// decided within the checker's default budget.
pub fn assert_linearizable(c: &Cluster, history: &[Operation]) {
    assert_linearizable_in(&c.dir, history);
}

/// [`assert_linearizable`], keeping the history in `dir` (for a cluster that is not a
/// [`Cluster`]).
pub fn assert_linearizable_in(dir: &std::path::Path, history: &[Operation]) {
    write_history(dir, history);
    match check(history, Budget::default()) {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable { key, explanation } => panic!(
            "history not linearizable on key {}:\n{explanation}",
            String::from_utf8_lossy(&key)
        ),
        Verdict::Unknown { key } => panic!(
            "the checker ran out of budget on key {} (undecided is not a pass)",
            String::from_utf8_lossy(&key)
        ),
    }
}

/// The end of a history test: reads every own key and shared key back with `reader`
/// (recorded into the history too), checks each own key holds exactly its acknowledged
/// appends, prints `what` with the operation counts, and asserts the whole history is
/// linearizable.
pub fn read_back_and_check(
    c: &Cluster,
    reader: &mut Client,
    shared: &Arc<Shared>,
    mut recorded: Vec<Recorded>,
    shared_keys: u64,
    what: &str,
) {
    let mut finals = Recorded::empty();
    for rec in &recorded {
        let op = Op::Get {
            key: rec.own_key.clone().into_bytes(),
        };
        let (_, out) = c.block_on(record(reader, shared, &mut finals, op));
        let Some(Output::Get(value)) = out else {
            let again = c.block_on(reader.get(rec.own_key.as_str()));
            panic!("reading {} back failed (once more: {again:?})", rec.own_key);
        };
        let value = String::from_utf8(value.unwrap_or_default()).expect("tokens are UTF-8");
        check_own_key(rec, &value);
    }
    for k in 0..shared_keys {
        let op = Op::Get {
            key: format!("s{k}").into_bytes(),
        };
        let (outcome, _) = c.block_on(record(reader, shared, &mut finals, op));
        assert_eq!(outcome, Outcome::Ok, "reading s{k} back");
    }
    recorded.push(finals);
    let history: Vec<Operation> = recorded
        .iter()
        .flat_map(|r| r.history.iter().cloned())
        .collect();
    let unknown = history
        .iter()
        .filter(|o| o.result == OpResult::Unknown)
        .count();
    let failed: usize = recorded.iter().map(|r| r.failed).sum();
    let acked_appends: usize = recorded
        .iter()
        .map(|r| r.appends.iter().filter(|(_, o)| *o == Outcome::Ok).count())
        .sum();
    println!(
        "{what}; operations: {} ({} ok, {unknown} unknown, {failed} failed), \
         {acked_appends} acknowledged own-key appends",
        history.len() + failed,
        history.len() - unknown,
    );
    assert_linearizable(c, &history);
}
