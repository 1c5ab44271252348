//! Entry points: partition a history by the keys its operations touch together and search
//! each partition.

use std::collections::BTreeMap;

use crate::explain::{explain, explain_unproducible};
use crate::model::{OpResult, Operation};
use crate::producible::Producible;
use crate::reach::Reach;
use crate::search::{Order, Outcome, Search};
use crate::states::StateTable;
use crate::verdict::{Budget, KeyOutcome, KeyReport, Report, Verdict};

/// Checks `history` for linearizability against the sequential KV model, one partition at a
/// time.
///
/// A partition is a connected component of keys touched together: a multi-key op on keys
/// {a, b} joins a's and b's histories, and the component's state is the map of its keys.
/// Partitions are independent (no op touches two), so the history is linearizable iff each
/// partition's sub-history is (linearizability is local). A history of single-key ops has
/// one partition per key, as fast as ever. Partitions are checked in the byte order of
/// their first key; the verdict names the first key of the first partition that is not
/// linearizable, else of the first that ran out of budget.
///
/// # Panics
/// If an operation is malformed (see [`Operation::validate`]): a programmer error. Validate
/// untrusted input first, or read it with [`crate::read_history_jsonl`], which does.
pub fn check(history: &[Operation], budget: Budget) -> Verdict {
    check_report(history, budget).verdict
}

/// Like [`check`], with per-key statistics (ops, steps, configurations, outcome).
///
/// # Panics
/// As [`check`].
pub fn check_report(history: &[Operation], budget: Budget) -> Report {
    for (index, operation) in history.iter().enumerate() {
        if let Err(error) = operation.validate() {
            panic!("lincheck: history[{index}] is malformed: {error}");
        }
    }
    let keys: Vec<KeyReport> = partition(history)
        .into_iter()
        .map(|(key, indexes)| check_key(history, key, indexes, budget))
        .collect();
    let failed = keys.iter().find_map(|k| match &k.outcome {
        KeyOutcome::NotLinearizable { explanation } => Some(Verdict::NotLinearizable {
            key: k.key.clone(),
            explanation: explanation.clone(),
        }),
        _ => None,
    });
    let unknown = keys
        .iter()
        .find(|k| k.outcome == KeyOutcome::Unknown)
        .map(|k| Verdict::Unknown { key: k.key.clone() });
    let verdict = failed.or(unknown).unwrap_or(Verdict::Linearizable);
    Report { verdict, keys }
}

/// The partitions of `history`: each connected component of keys touched together, named
/// by its first key, with the indexes of its ops in history order; in key order.
fn partition(history: &[Operation]) -> BTreeMap<&[u8], Vec<usize>> {
    let mut per_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    let mut joins = Vec::new();
    for (index, operation) in history.iter().enumerate() {
        let first = operation.op.key();
        per_key.entry(first).or_default().push(index);
        joins.extend(
            operation
                .op
                .keys()
                .filter(|k| *k != first)
                .map(|k| (first, k)),
        );
    }
    if joins.is_empty() {
        return per_key;
    }
    // Union-find over the keys, each root the smallest key of its component.
    let mut parent: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
    fn root<'h>(parent: &mut BTreeMap<&'h [u8], &'h [u8]>, key: &'h [u8]) -> &'h [u8] {
        let mut at = key;
        while let Some(up) = parent.get(at).copied().filter(|up| *up != at) {
            at = up;
        }
        parent.insert(key, at);
        at
    }
    for (a, b) in joins {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        let (low, high) = if ra <= rb { (ra, rb) } else { (rb, ra) };
        parent.insert(high, low);
    }
    let mut components: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (key, indexes) in per_key {
        components
            .entry(root(&mut parent, key))
            .or_default()
            .extend(indexes);
    }
    for indexes in components.values_mut() {
        indexes.sort_unstable();
    }
    components
}

/// Searches one partition's ops, `indexes` into `history`; `key` names the partition.
fn check_key(history: &[Operation], key: &[u8], indexes: Vec<usize>, budget: Budget) -> KeyReport {
    let ops_total = indexes.len();
    // A read with an unknown outcome constrains nothing: drop it.
    let mut origin: Vec<usize> = indexes
        .into_iter()
        .filter(|i| history[*i].op.is_write() || history[*i].result != OpResult::Unknown)
        .collect();
    // Bit order of the linearized set: completed ops by call time, then unknown ones. The
    // search linearizes completed ops roughly in call order, so the set is a run of ones
    // followed by a short window, which keeps the memo small (see `LinearizedSet`).
    origin.sort_by_key(|i| {
        (
            history[*i].result == OpResult::Unknown,
            history[*i].call_ns,
            *i,
        )
    });
    let ops: Vec<&Operation> = origin.iter().map(|i| &history[*i]).collect();
    let times: Vec<(u64, Option<u64>)> = ops.iter().map(|o| (o.call_ns, o.return_ns())).collect();
    let known = ops.iter().filter(|o| o.result != OpResult::Unknown).count();
    // Both candidate orders are complete; with unknown ops each is fast where the other is
    // slow, so run them side by side in slices and take the first verdict. Without unknown
    // ops they coincide: run one.
    let orders: &[Order] = if known < ops.len() {
        &[Order::CallOrder, Order::OldUnknownsLast]
    } else {
        &[Order::CallOrder]
    };
    let look_ahead = Reach::applies(&ops);
    let mut searches: Vec<Search<'_>> = orders
        .iter()
        .map(|order| {
            Search::new(
                StateTable::new(ops.clone()),
                &times,
                known,
                *order,
                look_ahead,
            )
        })
        .collect();
    // The time-free refutation models the same ops as the look-ahead.
    let first_impossible = || {
        look_ahead
            .then(|| Producible::new(&ops).first_impossible(&ops))
            .flatten()
    };
    let quick_steps_max = budget.steps_max_per_key.min(PRODUCIBLE_CHECK_AFTER_STEPS);
    let mut raced = race(&mut searches, quick_steps_max, budget);
    let mut impossible = None;
    if raced.0.is_none() {
        // The search is slow here: try the cheap time-free refutation before going on.
        impossible = first_impossible();
        if impossible.is_none() {
            raced = race(&mut searches, budget.steps_max_per_key, budget);
        }
    } else if matches!(raced.0, Some(Outcome::NotLinearizable(_))) {
        // A violation: a value that no write produces is the clearest explanation, and the
        // search's deepest prefix may end elsewhere (its look-ahead cuts a configuration as
        // soon as any pending read becomes unreachable, whichever read that is).
        impossible = first_impossible();
    }
    let outcome = match (impossible, raced) {
        (Some(op), _) => KeyOutcome::NotLinearizable {
            explanation: explain_unproducible(key, ops[op], origin[op], origin.len()),
        },
        (None, (None, _)) => KeyOutcome::Unknown,
        (None, (Some(Outcome::Linearizable), _)) => KeyOutcome::Linearizable,
        (None, (Some(Outcome::NotLinearizable(deepest)), decider)) => KeyOutcome::NotLinearizable {
            explanation: explain(key, &searches[decider], &deepest, &origin),
        },
    };
    KeyReport {
        key: key.to_vec(),
        ops: origin.len(),
        ops_dropped: ops_total - origin.len(),
        steps: searches.iter().map(|s| s.steps).sum(),
        configurations: searches.iter().map(Search::configurations).sum(),
        outcome,
    }
}

/// Steps each search takes before the next gets its turn.
const SLICE_STEPS: u64 = 4096;

/// Search steps (over all orders) after which an undecided key also gets the time-free
/// refutation of `Producible`. Most keys decide well before; the check costs about one
/// pass over the bytes of the values read.
const PRODUCIBLE_CHECK_AFTER_STEPS: u64 = 65_536;

/// Runs `searches` in turns of `SLICE_STEPS` until one decides (returning its outcome and
/// index) or together they have taken `steps_max` steps or exceeded the budget's memory
/// (returning `None`). Can be called again with a larger `steps_max` to go on.
fn race(searches: &mut [Search<'_>], steps_max: u64, budget: Budget) -> (Option<Outcome>, usize) {
    let bytes_max = usize::try_from(budget.cache_bytes_max_per_key).unwrap_or(usize::MAX);
    loop {
        for index in 0..searches.len() {
            let steps: u64 = searches.iter().map(|s| s.steps).sum();
            let bytes: usize = searches.iter().map(Search::cache_bytes).sum();
            if steps >= steps_max || bytes > bytes_max {
                return (None, 0);
            }
            let slice = SLICE_STEPS.min(steps_max - steps);
            let search = &mut searches[index];
            let own_bytes_max = bytes_max - (bytes - search.cache_bytes());
            if let Some(outcome) = search.run(search.steps + slice, own_bytes_max) {
                return (Some(outcome), index);
            }
        }
    }
}
