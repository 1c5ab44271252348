//! Client sessions: the exactly-once table. Each client numbers its requests; the table
//! keeps, per client, the highest sequence number applied and its reply.

use serde::{Deserialize, Serialize};
use shardkv_types::{ClientId, Seq};
use std::collections::BTreeMap;

/// The last applied request of one client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session<O> {
    pub seq: Seq,
    pub output: O,
}

/// What the table says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a, O> {
    /// Never applied: apply it.
    New,
    /// The client's latest request, already applied: answer with the stored reply.
    Duplicate(&'a O),
    /// Older than the client's latest request: the client already has its answer.
    Stale,
}

/// Sessions of every client. Part of every snapshot; moves with shards (merge keeps the
/// higher sequence number).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions<O> {
    by_client: BTreeMap<ClientId, Session<O>>,
}

impl<O> Default for Sessions<O> {
    fn default() -> Self {
        Sessions {
            by_client: BTreeMap::new(),
        }
    }
}

impl<O: Clone> Sessions<O> {
    pub fn check(&self, client: ClientId, seq: Seq) -> Seen<'_, O> {
        match self.by_client.get(&client) {
            None => Seen::New,
            Some(s) if seq > s.seq => Seen::New,
            Some(s) if seq == s.seq => Seen::Duplicate(&s.output),
            Some(_) => Seen::Stale,
        }
    }

    /// Records that `client`'s request `seq` was applied with `output`.
    ///
    /// # Panics
    /// If `seq` is not newer than the stored one (the caller must `check` first).
    pub fn record(&mut self, client: ClientId, seq: Seq, output: O) {
        let prev = self.by_client.insert(client, Session { seq, output });
        assert!(
            prev.is_none_or(|p| p.seq < seq),
            "session of {client} went back"
        );
    }

    /// Merges another table, keeping the newer session per client.
    pub fn merge(&mut self, other: &Sessions<O>) {
        for (c, s) in &other.by_client {
            self.merge_one(*c, s);
        }
    }

    /// Merges one session of another table: kept if newer than this table's.
    pub fn merge_one(&mut self, client: ClientId, s: &Session<O>) {
        if self
            .by_client
            .get(&client)
            .is_none_or(|mine| mine.seq < s.seq)
        {
            self.by_client.insert(client, s.clone());
        }
    }

    /// The session of `client`, if it has one.
    pub fn get(&self, client: ClientId) -> Option<&Session<O>> {
        self.by_client.get(&client)
    }

    /// The sessions of clients after `after` (all for `None`), in client order.
    pub fn iter_after(
        &self,
        after: Option<ClientId>,
    ) -> impl Iterator<Item = (ClientId, &Session<O>)> {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.by_client
            .range((lower, Bound::Unbounded))
            .map(|(c, s)| (*c, s))
    }

    /// Every session, in client order.
    pub fn iter(&self) -> impl Iterator<Item = (ClientId, &Session<O>)> {
        self.by_client.iter().map(|(c, s)| (*c, s))
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_gets_stored_reply_and_older_requests_are_stale() {
        let mut s = Sessions::default();
        let c = ClientId(9);
        assert_eq!(s.check(c, Seq(1)), Seen::New);
        s.record(c, Seq(1), "a");
        assert_eq!(s.check(c, Seq(1)), Seen::Duplicate(&"a"));
        s.record(c, Seq(2), "b");
        assert_eq!(s.check(c, Seq(1)), Seen::Stale);
        assert_eq!(s.check(c, Seq(3)), Seen::New);
        let mut other = Sessions::default();
        other.record(c, Seq(5), "z");
        other.record(ClientId(1), Seq(1), "y");
        s.merge(&other);
        assert_eq!(s.check(c, Seq(5)), Seen::Duplicate(&"z"));
        assert_eq!(s.len(), 2);
    }
}
