//! [`ShardChunk`]: a piece of a shard as it moves between groups, and [`Cursor`], where a
//! pull stands. A shard travels as its entries in key order, then the session table of the
//! group that gave it away in client order (so that exactly-once survives the move), in
//! chunks of about a given size, each installed through one log entry.

use crate::command::ShardOutput;
use serde::{Deserialize, Serialize};
use shardkv_kv::KvStore;
use shardkv_rsm::{Session, Sessions};
use shardkv_types::{ClientId, Seq};

/// How far a pull got: what the chunks so far carried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cursor {
    /// Nothing yet.
    #[default]
    Start,
    /// The entries through this key.
    Key(Vec<u8>),
    /// Every entry, and the sessions through this client.
    Client(ClientId),
}

/// A piece of a shard: entries, then sessions, each in order, from some cursor on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardChunk {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub sessions: Vec<(ClientId, Session<ShardOutput>)>,
    /// The giving group's table had dropped sessions when the chunk was read: a retry of a
    /// client whose session is not here may have applied there.
    pub sessions_dropped: bool,
    /// On the last chunk: the sessions the giving group dropped last (client and last
    /// applied sequence number), so that their requests are not applied again here.
    pub dropped: Vec<(ClientId, Seq)>,
    /// Where the next chunk starts; `None` on the last one.
    pub next: Option<Cursor>,
}

impl ShardChunk {
    /// True on the shard's last chunk.
    pub fn is_last(&self) -> bool {
        self.next.is_none()
    }

    /// About how many bytes the chunk carries: keys and values, and 32 bytes per session.
    pub fn bytes(&self) -> u64 {
        let entries: usize = self.entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        entries as u64 + 32 * self.sessions.len() as u64
    }

    /// Reads the chunk of a frozen shard (`store` and the group's `sessions`) from `from`:
    /// at least one item if any is left, then more while under `bytes_max`.
    pub fn read(
        store: &KvStore,
        sessions: &Sessions<ShardOutput>,
        from: &Cursor,
        bytes_max: u64,
    ) -> ShardChunk {
        let mut chunk = ShardChunk {
            entries: Vec::new(),
            sessions: Vec::new(),
            sessions_dropped: sessions.dropped_any(),
            dropped: Vec::new(),
            next: None,
        };
        let mut bytes = 0u64;
        let room = |bytes: u64, chunk: &ShardChunk| {
            bytes < bytes_max || (chunk.entries.is_empty() && chunk.sessions.is_empty())
        };
        let after_client = match from {
            Cursor::Start | Cursor::Key(_) => {
                let after = match from {
                    Cursor::Key(k) => Some(k.as_slice()),
                    _ => None,
                };
                for (k, v) in store.entries_after(after) {
                    if !room(bytes, &chunk) {
                        chunk.next = chunk.entries.last().map(|(k, _)| Cursor::Key(k.clone()));
                        return chunk;
                    }
                    bytes += (k.len() + v.len()) as u64;
                    chunk.entries.push((k.to_vec(), v.to_vec()));
                }
                None
            }
            Cursor::Client(c) => Some(*c),
        };
        for (c, s) in sessions
            .iter()
            .filter(|(c, _)| after_client.is_none_or(|a| *c > a))
        {
            if !room(bytes, &chunk) {
                chunk.next = Some(match chunk.sessions.last() {
                    Some((c, _)) => Cursor::Client(*c),
                    None => chunk
                        .entries
                        .last()
                        .map_or(Cursor::Start, |(k, _)| Cursor::Key(k.clone())),
                });
                return chunk;
            }
            bytes += postcard::to_allocvec(s).map_or(0, |b| b.len() as u64) + 8;
            chunk.sessions.push((c, s.clone()));
        }
        chunk.dropped = sessions.recently_dropped().collect();
        chunk
    }
}
