//! What the checker concludes, and the budget that bounds its work.

/// The result of checking a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history has a linearization.
    Linearizable,
    /// The history of `key` (with the keys multi-key ops join to it: its partition, named
    /// by its first key) has no linearization. When several fail, this is the first in byte
    /// order.
    NotLinearizable {
        key: Vec<u8>,
        /// Human-readable: the longest linearizable prefix the search found, the state after
        /// it, and the operation that could not be placed next.
        explanation: String,
    },
    /// No key failed, but the search of `key` (the first such in byte order) ran out of
    /// budget before deciding. Never a claim either way.
    Unknown { key: Vec<u8> },
}

impl Verdict {
    /// True only for [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// True only for [`Verdict::NotLinearizable`].
    pub fn is_not_linearizable(&self) -> bool {
        matches!(self, Verdict::NotLinearizable { .. })
    }
}

/// Bounds the search so a pathological history cannot run forever or exhaust memory.
/// Deterministic: no clock is read; the same history and budget always give the same
/// verdict. Exceeding either limit on a key makes that key [`Verdict::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Search steps allowed for each key (one step = one event examined).
    pub steps_max_per_key: u64,
    /// Memory the memo of explored configurations may hold for one key, in bytes
    /// (approximate, counted deterministically). Each step remembers at most one
    /// configuration, whose size grows with the key's concurrency.
    pub cache_bytes_max_per_key: u64,
}

impl Budget {
    /// Default per-key step limit: on the order of a second of search per key.
    pub const STEPS_MAX_PER_KEY_DEFAULT: u64 = 10_000_000;
    /// Default per-key memo limit: 1 GiB.
    pub const CACHE_BYTES_MAX_PER_KEY_DEFAULT: u64 = 1 << 30;

    /// The default memory limit with `steps_max_per_key` steps per key.
    pub fn steps_per_key(steps_max_per_key: u64) -> Budget {
        Budget {
            steps_max_per_key,
            ..Budget::default()
        }
    }

    /// No limits: the search runs until it decides (may take exponential time and memory).
    pub fn unlimited() -> Budget {
        Budget {
            steps_max_per_key: u64::MAX,
            cache_bytes_max_per_key: u64::MAX,
        }
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            steps_max_per_key: Budget::STEPS_MAX_PER_KEY_DEFAULT,
            cache_bytes_max_per_key: Budget::CACHE_BYTES_MAX_PER_KEY_DEFAULT,
        }
    }
}

/// What happened to one partition (a key, or the keys multi-key ops join), with the work it
/// took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyReport {
    /// The partition's first key in byte order.
    pub key: Vec<u8>,
    /// Operations searched (unknown-outcome reads are dropped and not counted).
    pub ops: usize,
    /// Unknown-outcome reads dropped because they constrain nothing.
    pub ops_dropped: usize,
    /// Search steps taken (at most the budget's `steps_max_per_key`).
    pub steps: u64,
    /// Distinct (linearized set, state) configurations remembered.
    pub configurations: usize,
    pub outcome: KeyOutcome,
}

/// The verdict for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOutcome {
    Linearizable,
    NotLinearizable {
        explanation: String,
    },
    /// Out of budget (steps or memory).
    Unknown,
}

/// Per-key results of [`crate::check_report`], keys in byte order, and the overall verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub verdict: Verdict,
    pub keys: Vec<KeyReport>,
}

impl Report {
    /// Total search steps over all keys.
    pub fn steps(&self) -> u64 {
        self.keys.iter().map(|k| k.steps).sum()
    }
}
