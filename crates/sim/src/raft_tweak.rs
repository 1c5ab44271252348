//! [`RaftTweak`]: per-seed overrides of a node's Raft configuration (the fuzzers' swarm
//! toggles turn into one).

/// Per-seed overrides of the Raft configuration (`None` keeps the value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftTweak {
    pub append_entries_max: Option<usize>,
    pub inflight_appends_max: Option<usize>,
    pub election_ticks: Option<u32>,
    pub heartbeat_ticks: Option<u32>,
}

impl RaftTweak {
    pub fn apply(&self, c: &mut shardkv_raft::Config) {
        if let Some(x) = self.append_entries_max {
            c.append_entries_max = x;
        }
        if let Some(x) = self.inflight_appends_max {
            c.inflight_appends_max = x;
        }
        if let Some(x) = self.election_ticks {
            c.election_ticks = x;
        }
        if let Some(x) = self.heartbeat_ticks {
            c.heartbeat_ticks = x;
        }
    }
}
