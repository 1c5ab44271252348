//! The key-value state machine replicated by `shardkv-rsm`.
//!
//! Keys and values are bytes; a missing key and an empty value differ. Operations: Get (a
//! query, served by ReadIndex), Put, Append (creates a missing key), Delete, and CAS
//! (swap iff the current value equals `expected`, where `None` means "absent"). Requests over
//! [`KEY_BYTES_MAX`] / [`VALUE_BYTES_MAX`] are refused with [`KvError::TooLarge`] by
//! [`validate`], before they are proposed.

use serde::{Deserialize, Serialize};
use shardkv_rsm::{Replica, ReqId, RsmError, StateMachine};
use shardkv_types::ClientId;
use std::collections::BTreeMap;
use std::fmt;

/// The largest key accepted, in bytes.
pub const KEY_BYTES_MAX: usize = 64 << 10;
/// The largest value accepted, in bytes.
pub const VALUE_BYTES_MAX: usize = 1 << 20;

/// A write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Append {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

/// A read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvQuery {
    Get { key: Vec<u8> },
}

/// The answer to any operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput {
    /// Get: the value, `None` if absent.
    Value(Option<Vec<u8>>),
    /// Put, Append, Delete.
    Done,
    /// CAS: whether it swapped, and the value it found.
    Cas {
        swapped: bool,
        current: Option<Vec<u8>>,
    },
}

/// Why a request is refused before it is proposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvError {
    TooLarge {
        what: &'static str,
        bytes: usize,
        max: usize,
    },
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::TooLarge { what, bytes, max } => write!(
                f,
                "{what} of {bytes} bytes exceeds the limit of {max} bytes"
            ),
        }
    }
}

impl std::error::Error for KvError {}

fn check(what: &'static str, bytes: usize, max: usize) -> Result<(), KvError> {
    if bytes > max {
        Err(KvError::TooLarge { what, bytes, max })
    } else {
        Ok(())
    }
}

/// Checks a command's sizes against the limits.
pub fn validate(cmd: &KvCommand) -> Result<(), KvError> {
    match cmd {
        KvCommand::Put { key, value } | KvCommand::Append { key, value } => {
            check("key", key.len(), KEY_BYTES_MAX)?;
            check("value", value.len(), VALUE_BYTES_MAX)
        }
        KvCommand::Delete { key } => check("key", key.len(), KEY_BYTES_MAX),
        KvCommand::Cas { key, expected, new } => {
            check("key", key.len(), KEY_BYTES_MAX)?;
            check(
                "expected value",
                expected.as_ref().map_or(0, Vec::len),
                VALUE_BYTES_MAX,
            )?;
            check("value", new.len(), VALUE_BYTES_MAX)
        }
    }
}

/// A client request as it travels to a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvRequest {
    /// A linearizable read (ReadIndex).
    Get { key: Vec<u8> },
    /// A write, numbered per client for exactly-once application.
    Write {
        client: ClientId,
        seq: u64,
        cmd: KvCommand,
    },
}

/// A server's answer.
pub type KvResponse = Result<KvOutput, RsmError>;

/// A replica of the KV store.
pub type KvReplica = Replica<KvStore>;

/// Hands a client request to a replica after checking its limits; the answer comes back
/// through `take_replies` under `req`. Oversized requests are answered at once with
/// `TooLarge` and never proposed.
pub fn submit(
    replica: &mut KvReplica,
    req: ReqId,
    request: KvRequest,
) -> Option<(ReqId, KvResponse)> {
    match request {
        KvRequest::Get { key } => {
            if key.len() > KEY_BYTES_MAX {
                return Some((
                    req,
                    Err(RsmError::TooLarge {
                        bytes: key.len(),
                        max: KEY_BYTES_MAX,
                    }),
                ));
            }
            replica.read(req, KvQuery::Get { key });
        }
        KvRequest::Write { client, seq, cmd } => {
            if let Err(KvError::TooLarge { bytes, max, .. }) = validate(&cmd) {
                return Some((req, Err(RsmError::TooLarge { bytes, max })));
            }
            replica.propose(req, client, seq, cmd);
        }
    }
    None
}

/// The store: an ordered map from key to value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KvStore {
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl StateMachine for KvStore {
    type Command = KvCommand;
    type Query = KvQuery;
    type Output = KvOutput;

    fn apply(&mut self, cmd: &KvCommand) -> KvOutput {
        match cmd {
            KvCommand::Put { key, value } => {
                self.map.insert(key.clone(), value.clone());
                KvOutput::Done
            }
            KvCommand::Append { key, value } => {
                self.map
                    .entry(key.clone())
                    .or_default()
                    .extend_from_slice(value);
                KvOutput::Done
            }
            KvCommand::Delete { key } => {
                self.map.remove(key);
                KvOutput::Done
            }
            KvCommand::Cas { key, expected, new } => {
                let current = self.map.get(key).cloned();
                let swapped = current == *expected;
                if swapped {
                    self.map.insert(key.clone(), new.clone());
                }
                KvOutput::Cas { swapped, current }
            }
        }
    }

    fn query(&self, q: &KvQuery) -> KvOutput {
        match q {
            KvQuery::Get { key } => KvOutput::Value(self.map.get(key).cloned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn operations_follow_their_sequential_semantics() {
        let mut s = KvStore::default();
        let get = |s: &KvStore, key: &str| s.query(&KvQuery::Get { key: k(key) });
        assert_eq!(get(&s, "a"), KvOutput::Value(None));
        s.apply(&KvCommand::Append {
            key: k("a"),
            value: k("x"),
        });
        s.apply(&KvCommand::Append {
            key: k("a"),
            value: k("y"),
        });
        assert_eq!(get(&s, "a"), KvOutput::Value(Some(k("xy"))));
        let cas = s.apply(&KvCommand::Cas {
            key: k("a"),
            expected: Some(k("nope")),
            new: k("z"),
        });
        assert_eq!(
            cas,
            KvOutput::Cas {
                swapped: false,
                current: Some(k("xy"))
            }
        );
        let cas = s.apply(&KvCommand::Cas {
            key: k("a"),
            expected: Some(k("xy")),
            new: k("z"),
        });
        assert_eq!(
            cas,
            KvOutput::Cas {
                swapped: true,
                current: Some(k("xy"))
            }
        );
        s.apply(&KvCommand::Delete { key: k("a") });
        let cas = s.apply(&KvCommand::Cas {
            key: k("a"),
            expected: None,
            new: k("new"),
        });
        assert_eq!(
            cas,
            KvOutput::Cas {
                swapped: true,
                current: None
            }
        );
        s.apply(&KvCommand::Put {
            key: k("e"),
            value: vec![],
        });
        assert_eq!(
            get(&s, "e"),
            KvOutput::Value(Some(vec![])),
            "empty value is not absent"
        );
    }

    #[test]
    fn oversized_requests_are_refused() {
        let big = vec![0u8; VALUE_BYTES_MAX + 1];
        let err = validate(&KvCommand::Put {
            key: k("a"),
            value: big,
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "value of {} bytes exceeds the limit of {VALUE_BYTES_MAX} bytes",
                VALUE_BYTES_MAX + 1
            )
        );
        assert!(
            validate(&KvCommand::Delete {
                key: vec![0; KEY_BYTES_MAX + 1]
            })
            .is_err()
        );
        assert!(
            validate(&KvCommand::Put {
                key: k("a"),
                value: k("b")
            })
            .is_ok()
        );
    }
}
