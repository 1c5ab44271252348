//! [`SessionPool`]: the client sessions of the process's Redis connections. A connection
//! takes a session when it opens and gives it back when it ends, so a client that opens a
//! connection per command (as `redis-cli` does) reuses a few sessions instead of making the
//! groups' session tables hold one per connection it ever opened (each table is bounded and
//! evicts its least recently active session past the bound, and an evicted session can no
//! longer answer a retry). A pooled session also keeps the shard map it learned, so the
//! next connection's first command needs no controller query.
//!
//! Reusing a session is safe for exactly-once: a session's sequence numbers only grow, and
//! a write its last connection abandoned (the connection closed while it was in flight)
//! either applied before the next write or is refused as stale after it, never applied
//! after it.

use shardkv_client::Client;
use std::sync::Mutex;

/// The most idle sessions kept; past it, a returned session is dropped.
pub const IDLE_SESSIONS_MAX: usize = 1024;

/// Idle sessions of one client, and the client new ones are made from.
pub struct SessionPool {
    parent: Client,
    idle: Mutex<Vec<Client>>,
}

impl SessionPool {
    pub fn new(parent: Client) -> SessionPool {
        SessionPool {
            parent,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle session, or a new one.
    pub fn take(&self) -> Client {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        idle.unwrap_or_else(|| self.parent.session())
    }

    /// Gives a session back for the next connection.
    pub fn put(&self, session: Client) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_SESSIONS_MAX {
            idle.push(session);
        }
    }

    /// How many sessions are idle now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_session_is_the_next_one_taken_and_the_pool_is_bounded() {
        let parent = Client::connect(&["127.0.0.1:1".to_string()]).expect("client");
        let pool = SessionPool::new(parent);
        let first = pool.take();
        let id = first.id();
        pool.put(first);
        assert_eq!(pool.take().id(), id, "the idle session is reused");
        for _ in 0..IDLE_SESSIONS_MAX + 10 {
            pool.put(pool.parent.session());
        }
        assert_eq!(pool.idle(), IDLE_SESSIONS_MAX);
        assert_ne!(pool.parent.session().id(), id, "new sessions get new ids");
    }
}
