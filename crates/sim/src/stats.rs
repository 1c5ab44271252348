//! [`NetStats`]: what crossed the simulated network.

use std::collections::BTreeMap;

/// Message and byte counts, as the lab testers count them: every request sent counts, even
/// if it is later lost; reply bytes count when delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages sent, by kind (see `Message::kind`).
    pub by_kind: BTreeMap<&'static str, u64>,
    pub requests: u64,
    pub request_bytes: u64,
    pub replies: u64,
    pub reply_bytes: u64,
    /// Raft messages that reached a node of another group or cluster than the one they
    /// were sent in: dropped, never stepped (DESIGN §4, identity).
    pub misdirected: u64,
    /// Requests a node sent to another group's node (see `App::take_outbound`).
    pub outbound: u64,
}

impl NetStats {
    pub fn bytes(&self) -> u64 {
        self.request_bytes + self.reply_bytes
    }
}
