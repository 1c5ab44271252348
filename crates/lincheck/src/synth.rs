//! Synthetic histories that are linearizable by construction, for tests and benchmarks.
//!
//! Each client runs a closed loop of operations. Every operation gets a linearization point
//! within its [call, return] interval; the operations are then applied to one atomic
//! register per key in linearization-point order, and each records the output the register
//! gave. So the linearization points themselves witness linearizability. Operations marked
//! unknown either applied (at their point) or not at all (skipped), each with probability
//! 1/2, and record no output.
//!
//! Mutators then break a history in known ways: [`corrupt_a_read`] (a value never written),
//! [`duplicate_an_append`] (an exactly-once violation), [`make_a_read_stale`] (a value
//! overwritten before the read began).

use crate::model::{Op, OpResult, Operation, Output};

/// Shape of a synthetic history. Deterministic: same config, same history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    pub seed: u64,
    /// Concurrent clients, each issuing its operations one after another.
    pub clients: u64,
    /// Total operations (split evenly over clients; the remainder is dropped).
    pub ops: usize,
    pub keys: usize,
    /// Share of operations whose outcome is unknown, in percent (0..=100).
    pub unknown_percent: u32,
    /// Upper bound of the gaps call -> point -> return, in ns: larger means more overlap.
    pub spread_ns_max: u64,
    /// Upper bound of a client's pause between a return and its next call, in ns.
    pub think_ns_max: u64,
}

impl Default for SynthConfig {
    fn default() -> SynthConfig {
        SynthConfig {
            seed: 1,
            clients: 5,
            ops: 100,
            keys: 3,
            unknown_percent: 5,
            spread_ns_max: 1_000,
            think_ns_max: 200,
        }
    }
}

/// A small deterministic PRNG (SplitMix64): enough for test data, no dependency.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        crate::bitset::mix64(self.0)
    }

    /// Uniform in `0..bound` (`bound > 0`; the tiny modulo bias is irrelevant here).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        self.next_u64() % bound
    }

    /// True with probability `percent`%.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }
}

/// An operation before its output is known, with its linearization point.
struct Planned {
    client: u64,
    seq: u64,
    key: usize,
    kind: u64,
    call_ns: u64,
    point_ns: u64,
    return_ns: u64,
    unknown: bool,
}

/// Generates a linearizable history (see the module docs). Operations are returned in
/// linearization order; callers that want another order may shuffle: the checker sorts.
pub fn linearizable_history(config: &SynthConfig) -> Vec<Operation> {
    assert!(
        config.clients > 0 && config.keys > 0,
        "need clients and keys"
    );
    let mut rng = SplitMix64::new(config.seed);
    let per_client = config.ops as u64 / config.clients;
    let mut planned = Vec::with_capacity(config.ops);
    for client in 0..config.clients {
        let mut now_ns = rng.below(config.think_ns_max + 1);
        for seq in 0..per_client {
            let call_ns = now_ns + rng.below(config.think_ns_max + 1);
            let point_ns = call_ns + rng.below(config.spread_ns_max + 1);
            let return_ns = point_ns + rng.below(config.spread_ns_max + 1);
            planned.push(Planned {
                client,
                seq,
                key: rng.below(config.keys as u64) as usize,
                kind: rng.below(100),
                call_ns,
                point_ns,
                return_ns,
                unknown: rng.chance(config.unknown_percent),
            });
            now_ns = return_ns;
        }
    }
    planned.sort_by_key(|p| (p.point_ns, p.client));
    let mut registers: Vec<Option<Vec<u8>>> = vec![None; config.keys];
    let mut written: Vec<Vec<Vec<u8>>> = vec![Vec::new(); config.keys];
    let mut history = Vec::with_capacity(planned.len());
    for p in planned {
        let register = &mut registers[p.key];
        let op = choose_op(&p, register, &written[p.key], &mut rng);
        if let Op::Put { value, .. } | Op::Append { value, .. } | Op::Cas { new: value, .. } = &op {
            written[p.key].push(value.clone());
        }
        let result = if p.unknown {
            if rng.chance(50) {
                op.apply(register);
            }
            OpResult::Unknown
        } else {
            OpResult::Ok {
                output: op.apply(register),
                return_ns: p.return_ns,
            }
        };
        history.push(Operation {
            client: p.client,
            op,
            call_ns: p.call_ns,
            result,
        });
    }
    history
}

/// Mix: 40% get, 15% put, 20% append, 5% delete, 20% cas (half expecting the current
/// value, so both outcomes occur).
fn choose_op(
    p: &Planned,
    register: &Option<Vec<u8>>,
    written: &[Vec<u8>],
    rng: &mut SplitMix64,
) -> Op {
    let key = format!("k{}", p.key).into_bytes();
    let value = format!("c{}.{};", p.client, p.seq).into_bytes();
    match p.kind {
        0..40 => Op::Get { key },
        40..55 => Op::Put { key, value },
        55..75 => Op::Append { key, value },
        75..80 => Op::Delete { key },
        _ => {
            let expected = if rng.chance(50) || written.is_empty() {
                register.clone()
            } else if rng.chance(20) {
                None
            } else {
                Some(written[rng.below(written.len() as u64) as usize].clone())
            };
            Op::Cas {
                key,
                expected,
                new: value,
            }
        }
    }
}

/// Replaces the output of the `n`-th (mod count) completed Get with a value that no write
/// produces (it contains a byte no generated value has), making the history certainly not
/// linearizable. Returns the index of the changed op, or `None` if there is no such Get.
pub fn corrupt_a_read(history: &mut [Operation], n: usize) -> Option<usize> {
    let reads: Vec<usize> = (0..history.len())
        .filter(|i| {
            matches!(
                history[*i].result,
                OpResult::Ok {
                    output: Output::Get(_),
                    ..
                }
            )
        })
        .collect();
    if reads.is_empty() {
        return None;
    }
    let index = reads[n % reads.len()];
    if let OpResult::Ok { output, .. } = &mut history[index].result {
        *output = Output::Get(Some(b"never written \x01".to_vec()));
    }
    Some(index)
}

/// Makes the `n`-th (mod count) eligible completed Get return a stale value: the value an
/// earlier read R0 of the same key returned, where a Put called after R0 returned also
/// returned before this read's call. For histories made by [`linearizable_history`]
/// with no unknown outcomes, every state after that Put starts with a piece written after
/// R0, so no order explains the read, yet the value was really once there: only the search
/// can refute it. Returns the index of the changed op.
pub fn make_a_read_stale(history: &mut [Operation], n: usize) -> Option<usize> {
    let read_value = |o: &Operation| match &o.result {
        OpResult::Ok {
            output: Output::Get(Some(value)),
            return_ns,
        } => Some((value.clone(), *return_ns)),
        _ => None,
    };
    let mut eligible = Vec::new();
    for (r, read) in history.iter().enumerate() {
        let Some((value, _)) = read_value(read) else {
            continue;
        };
        let stale = history.iter().find_map(|earlier| {
            let (old, old_return_ns) = read_value(earlier)?;
            let overwritten = history.iter().any(|put| {
                matches!(put.op, Op::Put { .. })
                    && put.op.key() == read.op.key()
                    && put.call_ns > old_return_ns
                    && put.return_ns().is_some_and(|ns| ns < read.call_ns)
            });
            (earlier.op.key() == read.op.key() && old != value && overwritten).then_some(old)
        });
        if let Some(old) = stale {
            eligible.push((r, old));
        }
    }
    if eligible.is_empty() {
        return None;
    }
    let (index, old) = eligible.swap_remove(n % eligible.len());
    if let OpResult::Ok { output, .. } = &mut history[index].result {
        *output = Output::Get(Some(old));
    }
    Some(index)
}

/// Makes the `n`-th (mod count) completed Get whose value ends with an append's value read
/// that append twice (as if it had been applied twice: an exactly-once violation). Every
/// generated write value is unique, so no order explains the read, yet every piece of it
/// was written, and only a count of the pieces refutes it. Returns the index of the
/// changed op.
pub fn duplicate_an_append(history: &mut [Operation], n: usize) -> Option<usize> {
    let appended: std::collections::HashSet<(Vec<u8>, Vec<u8>)> = history
        .iter()
        .filter_map(|o| match &o.op {
            Op::Append { key, value } => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect();
    let tail_of = |operation: &Operation| -> Option<Vec<u8>> {
        let OpResult::Ok {
            output: Output::Get(Some(value)),
            ..
        } = &operation.result
        else {
            return None;
        };
        let key = operation.op.key().to_vec();
        // Generated values end with ';' and contain no other ';'.
        let start = value[..value.len().checked_sub(1)?]
            .iter()
            .rposition(|b| *b == b';')
            .map_or(0, |i| i + 1);
        let tail = value[start..].to_vec();
        appended.contains(&(key, tail.clone())).then_some(tail)
    };
    let reads: Vec<(usize, Vec<u8>)> = history
        .iter()
        .enumerate()
        .filter_map(|(i, o)| tail_of(o).map(|tail| (i, tail)))
        .collect();
    if reads.is_empty() {
        return None;
    }
    let (index, tail) = &reads[n % reads.len()];
    if let OpResult::Ok {
        output: Output::Get(Some(value)),
        ..
    } = &mut history[*index].result
    {
        value.extend_from_slice(tail);
    }
    Some(*index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_history() {
        // Goal: determinism; method: generate twice, compare, and vary the seed.
        let config = SynthConfig::default();
        assert_eq!(linearizable_history(&config), linearizable_history(&config));
        let other = SynthConfig { seed: 2, ..config };
        assert_ne!(linearizable_history(&config), linearizable_history(&other));
    }
}
