//! What a connection needs from the server process: the cluster view, a way to run data
//! operations (each one operation of the KV state machine, so each is atomic and
//! linearizable) and facts for `INFO` / `CONFIG GET`.
//!
//! [`DataOp::into_kv`] and [`DataOut::from_kv`] are the whole mapping between Redis's data
//! commands and the KV state machine's operations: one command, one operation (reads are
//! queries, served by ReadIndex; writes are commands, applied once per client session).
//! [`DataOp::pipeline_into_kv`] and [`DataOut::from_kv_outputs`] map a run of pipelined
//! commands (all reads or all writes, one slot) onto one KV `Pipeline` operation: one
//! proposal, or one read, for the whole run.

use crate::cluster::ClusterView;
use crate::command::{Command, SetAnswer, SetWhen};
use crate::session::Shape;
use bytes::Bytes;
use shardkv_client::{KvOp, Op};
use shardkv_kv::{ByteBuf, KvCommand, KvOutput, KvQuery, VALUE_BYTES_MAX};
#[cfg(doc)]
use shardkv_kv::{MANY_BYTES_MAX, PIPELINE_OPS_MAX};
use shardkv_rsm::Error;
use std::future::Future;
use std::sync::Arc;

/// A data operation: every key in one slot, mastered by this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataOp {
    Get(Bytes),
    /// Set `key` to `value` when `when` holds; answers whether it did and, with `get`, the
    /// value it found (only then: a found value is kept in the session table for retries).
    Set {
        key: Bytes,
        value: Bytes,
        when: SetWhen,
        get: bool,
    },
    /// Delete the key and answer its value.
    GetDel(Bytes),
    /// Append; answers the new length.
    Append(Bytes, Bytes),
    StrLen(Bytes),
    /// Delete the keys; answers how many existed.
    Del(Vec<Bytes>),
    /// How many of the keys exist (a key named twice counts twice, as in Redis).
    Exists(Vec<Bytes>),
    /// Add to the integer at the key (absent: 0); answers the new value.
    IncrBy(Bytes, i64),
    MGet(Vec<Bytes>),
    /// Set every pair, atomically.
    MSet(Vec<(Bytes, Bytes)>),
}

/// What a data operation answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataOut {
    Value(Option<Bytes>),
    Values(Vec<Option<Bytes>>),
    Int(i64),
    Set {
        applied: bool,
        old: Option<Bytes>,
    },
    Done,
    /// `IncrBy` on a value that is not a 64-bit integer in Redis's canonical form.
    NotAnInteger,
    /// `IncrBy` past the range of a 64-bit integer.
    Overflow,
    /// An `APPEND` of a pipelined run that would grow its value past the limit, answered
    /// as a lone one is refused (`Error::TooLarge`); it changed nothing.
    TooLarge {
        bytes: u64,
        max: u64,
    },
}

impl DataOp {
    /// The operation behind a data command, and how its output is answered.
    ///
    /// # Panics
    /// If `cmd` is not a data command (one with keys).
    pub fn of(cmd: Command) -> (DataOp, Shape) {
        match cmd {
            Command::Get(k) => (DataOp::Get(k), Shape::Value),
            Command::Set {
                key,
                value,
                when,
                answer,
            } => {
                let get = answer == SetAnswer::Old;
                let op = DataOp::Set {
                    key,
                    value,
                    when,
                    get,
                };
                (op, Shape::Set(answer))
            }
            Command::GetDel(k) => (DataOp::GetDel(k), Shape::Value),
            Command::Append(k, v) => (DataOp::Append(k, v), Shape::Int),
            Command::StrLen(k) => (DataOp::StrLen(k), Shape::Int),
            Command::Del(ks) => (DataOp::Del(ks), Shape::Int),
            Command::Exists(ks) => (DataOp::Exists(ks), Shape::Int),
            Command::IncrBy(k, by) => (DataOp::IncrBy(k, by), Shape::Int),
            Command::MGet(ks) => (DataOp::MGet(ks), Shape::Values),
            Command::MSet(pairs) => (DataOp::MSet(pairs), Shape::Set(SetAnswer::Ok)),
            other => panic!("{other:?} is not a data command"),
        }
    }

    /// Whether the operation changes data.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            DataOp::Get(_) | DataOp::StrLen(_) | DataOp::Exists(_) | DataOp::MGet(_)
        )
    }

    /// The bytes the operation carries (keys and values), and for a write that answers a
    /// value it found (`GETDEL`, `SET ... GET`) the most that value can be: what a run of
    /// pipelined commands is bounded by ([`MANY_BYTES_MAX`] in all), so that its request
    /// and its answer each stay within one operation's limits.
    pub fn bytes(&self) -> usize {
        let keys = |ks: &[Bytes]| ks.iter().map(Bytes::len).sum::<usize>();
        match self {
            DataOp::Get(k) | DataOp::StrLen(k) | DataOp::IncrBy(k, _) => k.len(),
            DataOp::GetDel(k) => k.len() + VALUE_BYTES_MAX,
            DataOp::Set {
                key, value, get, ..
            } => key.len() + value.len() + if *get { VALUE_BYTES_MAX } else { 0 },
            DataOp::Append(k, v) => k.len() + v.len(),
            DataOp::Del(ks) | DataOp::Exists(ks) | DataOp::MGet(ks) => keys(ks),
            DataOp::MSet(pairs) => pairs.iter().map(|(k, v)| k.len() + v.len()).sum(),
        }
    }

    /// One KV `Pipeline` operation for `ops`, applied (or read) at one index, in order.
    ///
    /// # Panics
    /// If `ops` is empty or mixes reads and writes.
    pub fn pipeline_into_kv(ops: Vec<DataOp>) -> KvOp {
        assert!(!ops.is_empty(), "a pipeline of no operation");
        let write = ops[0].is_write();
        assert!(
            ops.iter().all(|op| op.is_write() == write),
            "a pipeline mixing reads and writes"
        );
        let kv = ops.into_iter().map(DataOp::into_kv);
        if write {
            Op::Write(KvCommand::Pipeline {
                cmds: kv
                    .map(|op| match op {
                        Op::Write(cmd) => cmd,
                        Op::Read(q) => unreachable!("{q:?} is a write"),
                    })
                    .collect(),
            })
        } else {
            Op::Read(KvQuery::Pipeline {
                queries: kv
                    .map(|op| match op {
                        Op::Read(q) => q,
                        Op::Write(cmd) => unreachable!("{cmd:?} is a read"),
                    })
                    .collect(),
            })
        }
    }

    /// The KV state machine's operation for this one.
    pub fn into_kv(self) -> KvOp {
        let many = |ks: Vec<Bytes>| ks.into_iter().map(buf).collect();
        match self {
            DataOp::Get(k) => Op::Read(KvQuery::Get { key: k.into() }),
            DataOp::StrLen(k) => Op::Read(KvQuery::StrLen { key: k.into() }),
            DataOp::Exists(ks) => Op::Read(KvQuery::Exists { keys: many(ks) }),
            DataOp::MGet(ks) => Op::Read(KvQuery::GetMany { keys: many(ks) }),
            DataOp::Set {
                key,
                value,
                when,
                get,
            } => Op::Write(KvCommand::Set {
                key: key.into(),
                value: value.into(),
                when,
                get,
            }),
            DataOp::GetDel(k) => Op::Write(KvCommand::GetDel { key: k.into() }),
            DataOp::Append(k, v) => Op::Write(KvCommand::AppendLen {
                key: k.into(),
                value: v.into(),
            }),
            DataOp::Del(ks) => Op::Write(KvCommand::DeleteMany { keys: many(ks) }),
            DataOp::IncrBy(k, by) => Op::Write(KvCommand::IncrBy { key: k.into(), by }),
            DataOp::MSet(pairs) => Op::Write(KvCommand::PutMany {
                pairs: pairs.into_iter().map(|(k, v)| (buf(k), buf(v))).collect(),
            }),
        }
    }
}

fn buf(b: Bytes) -> ByteBuf {
    ByteBuf::from(Vec::from(b))
}

impl DataOut {
    /// The answer of a KV `Pipeline` of `n` operations, one output each. An answer that is
    /// not that (a server fault) is an error that leaves open whether the pipeline applied
    /// (`Timeout`), so a write run is answered "outcome unknown", never `TRYAGAIN`.
    pub fn from_kv_outputs(out: KvOutput, n: usize) -> Result<Vec<DataOut>, Error> {
        let fault = |what: String| Error::Timeout {
            detail: format!("the server answered a pipeline of {n} commands with {what}"),
        };
        match out {
            KvOutput::Outputs(outs) if outs.len() == n => outs
                .into_iter()
                .map(|o| DataOut::from_kv(o).map_err(|e| fault(e.to_string())))
                .collect(),
            other => Err(fault(format!("{other:?}"))),
        }
    }

    /// The answer of a KV operation, as a data command's output. The KV outputs no data
    /// command produces (`Cas`, `Deleted`, session records) are a server fault.
    pub fn from_kv(out: KvOutput) -> Result<DataOut, Error> {
        Ok(match out {
            KvOutput::Value(v) => DataOut::Value(v.map(Bytes::from)),
            KvOutput::Values(vs) => DataOut::Values(
                vs.into_iter()
                    .map(|v| v.map(|b| Bytes::from(b.into_vec())))
                    .collect(),
            ),
            KvOutput::Int(n) => DataOut::Int(n),
            KvOutput::Set { applied, old } => DataOut::Set {
                applied,
                old: old.map(Bytes::from),
            },
            KvOutput::Done => DataOut::Done,
            KvOutput::NotAnInteger => DataOut::NotAnInteger,
            KvOutput::Overflow => DataOut::Overflow,
            KvOutput::TooLarge { bytes, max } => DataOut::TooLarge { bytes, max },
            other @ (KvOutput::Cas { .. }
            | KvOutput::CasFailed { .. }
            | KvOutput::Deleted { .. }
            | KvOutput::Outputs(_)) => {
                return Err(Error::Unavailable {
                    reason: format!("the server answered a Redis command with {other:?}"),
                });
            }
        })
    }
}

/// Facts about the server for `INFO`, `HELLO` and `CONFIG GET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The Redis version clients are told (the command set it follows).
    pub redis_version: String,
    pub shardkv_version: String,
    pub port: u16,
    pub uptime_secs: u64,
    pub connected_clients: usize,
    pub max_clients: usize,
    pub max_bulk: usize,
    /// Keys held by the groups this process masters, if known.
    pub keys: Option<u64>,
}

/// The server side of a connection. One per connection: it holds the connection's client
/// session, so its writes are applied at most once however often it retries them.
pub trait Backend {
    /// The cluster as this process knows it now.
    fn view(&self) -> Arc<ClusterView>;

    fn info(&self) -> ServerInfo;

    /// Runs one operation to its end: its output, or the error that ended it (after the
    /// backend's own retries).
    fn run(&mut self, op: DataOp) -> impl Future<Output = Result<DataOut, Error>>;

    /// Runs `ops` (2 to [`PIPELINE_OPS_MAX`], all reads or all writes, every key in one
    /// slot) as one operation ([`DataOp::pipeline_into_kv`]) to its end: one output per
    /// operation, or the error that ended the whole pipeline.
    fn run_pipeline(
        &mut self,
        ops: Vec<DataOp>,
    ) -> impl Future<Output = Result<Vec<DataOut>, Error>>;

    /// The number of keys in the slots this process masters.
    fn dbsize(&mut self) -> impl Future<Output = Result<i64, Error>>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cluster::{Node, node_id};
    use shardkv_kv::KvStore;

    /// An in-memory backend for the dispatch tests: one `KvStore`, reached through the
    /// same Redis -> KV mapping as the server's backend.
    pub struct Memory {
        view: Arc<ClusterView>,
        store: KvStore,
        /// How many data operations each call ran: 1 for `run`, n for a pipeline of n.
        pub calls: Vec<usize>,
        /// When set, every pipeline fails with this error, changing nothing.
        pub pipelines_fail: Option<Error>,
    }

    /// A minimal executor for futures that never wait (the memory backend answers at once).
    pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1000 {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
        panic!("the future did not finish");
    }

    impl Memory {
        fn with(master: usize) -> Memory {
            Memory::mastering_shards([master; 4])
        }

        /// Of the 4 shards, shard `s` is mastered by node `masters[s]` (node 0 is this
        /// process, node 1 another).
        pub fn mastering_shards(masters: [usize; 4]) -> Memory {
            let nodes = (0..2)
                .map(|i| Node {
                    id: node_id(1, i + 1),
                    host: "127.0.0.1".into(),
                    port: 7101 + i as u16,
                    myself: i == 0,
                })
                .collect();
            Memory {
                view: Arc::new(ClusterView::new(nodes, &masters.map(Some), 1)),
                store: KvStore::default(),
                calls: Vec::new(),
                pipelines_fail: None,
            }
        }

        /// This process masters every slot.
        pub fn mastering_all() -> Memory {
            Memory::with(0)
        }

        /// Another process masters every slot.
        pub fn mastering_none() -> Memory {
            Memory::with(1)
        }
    }

    impl Backend for Memory {
        fn view(&self) -> Arc<ClusterView> {
            self.view.clone()
        }

        fn info(&self) -> ServerInfo {
            ServerInfo {
                redis_version: "7.0.0".into(),
                shardkv_version: "0".into(),
                port: 7101,
                uptime_secs: 1,
                connected_clients: 1,
                max_clients: 10,
                max_bulk: 1 << 20,
                keys: Some(self.store.len() as u64),
            }
        }

        /// The real KV state machine, through the same mapping the server uses.
        async fn run(&mut self, op: DataOp) -> Result<DataOut, Error> {
            self.calls.push(1);
            DataOut::from_kv(self.kv(op.into_kv())?)
        }

        async fn run_pipeline(&mut self, ops: Vec<DataOp>) -> Result<Vec<DataOut>, Error> {
            self.calls.push(ops.len());
            if let Some(e) = &self.pipelines_fail {
                return Err(e.clone());
            }
            let n = ops.len();
            DataOut::from_kv_outputs(self.kv(DataOp::pipeline_into_kv(ops))?, n)
        }

        async fn dbsize(&mut self) -> Result<i64, Error> {
            Ok(self.store.len() as i64)
        }
    }

    impl Memory {
        /// One KV operation on the store, as a replica validates and applies (or reads) it.
        fn kv(&mut self, op: KvOp) -> Result<KvOutput, Error> {
            Ok(match op {
                Op::Read(q) => {
                    shardkv_kv::validate_query(&q)?;
                    self.store.read(&q)?
                }
                Op::Write(cmd) => {
                    shardkv_kv::validate_command(&cmd)?;
                    self.store.check_growth(&cmd)?;
                    self.store.execute(&cmd)
                }
            })
        }
    }

    #[test]
    fn every_data_command_is_one_kv_operation_reads_as_queries() {
        // Goal: the Redis -> KV mapping is total and exact; method: each command's op.
        let op = |line: &str| {
            let args: Vec<Bytes> = line
                .split(' ')
                .map(|w| Bytes::from(w.to_string()))
                .collect();
            DataOp::of(crate::command::parse(&args).expect("parses"))
                .0
                .into_kv()
        };
        let b = |s: &str| ByteBuf::from(s.as_bytes().to_vec());
        let k = || b"k".to_vec();
        assert_eq!(op("get k"), Op::Read(KvQuery::Get { key: k() }));
        assert_eq!(op("strlen k"), Op::Read(KvQuery::StrLen { key: k() }));
        assert_eq!(
            op("exists a a"),
            Op::Read(KvQuery::Exists {
                keys: vec![b("a"), b("a")]
            })
        );
        assert_eq!(
            op("mget a b"),
            Op::Read(KvQuery::GetMany {
                keys: vec![b("a"), b("b")]
            })
        );
        let set = |when, get| {
            Op::Write(KvCommand::Set {
                key: k(),
                value: b"v".to_vec(),
                when,
                get,
            })
        };
        assert_eq!(op("set k v"), set(SetWhen::Always, false));
        assert_eq!(op("set k v nx"), set(SetWhen::Absent, false));
        assert_eq!(op("set k v xx get"), set(SetWhen::Present, true));
        assert_eq!(op("setnx k v"), set(SetWhen::Absent, false));
        assert_eq!(op("getset k v"), set(SetWhen::Always, true));
        assert_eq!(op("getdel k"), Op::Write(KvCommand::GetDel { key: k() }));
        assert_eq!(
            op("append k v"),
            Op::Write(KvCommand::AppendLen {
                key: k(),
                value: b"v".to_vec()
            })
        );
        assert_eq!(
            op("decrby k 3"),
            Op::Write(KvCommand::IncrBy { key: k(), by: -3 })
        );
        assert_eq!(
            op("del a b"),
            Op::Write(KvCommand::DeleteMany {
                keys: vec![b("a"), b("b")]
            })
        );
        assert_eq!(
            op("mset a 1 b 2"),
            Op::Write(KvCommand::PutMany {
                pairs: vec![(b("a"), b("1")), (b("b"), b("2"))]
            })
        );
    }

    #[test]
    fn kv_outputs_map_to_data_outputs_and_foreign_ones_are_faults() {
        // Goal: every output a data command can get maps one to one; the rest is an error.
        let v = |s: &str| Some(s.as_bytes().to_vec());
        assert_eq!(
            DataOut::from_kv(KvOutput::Value(v("x"))),
            Ok(DataOut::Value(Some(Bytes::from("x"))))
        );
        assert_eq!(
            DataOut::from_kv(KvOutput::Values(vec![
                None,
                Some(ByteBuf::from(b"y".to_vec()))
            ])),
            Ok(DataOut::Values(vec![None, Some(Bytes::from("y"))]))
        );
        assert_eq!(DataOut::from_kv(KvOutput::Int(-4)), Ok(DataOut::Int(-4)));
        assert_eq!(
            DataOut::from_kv(KvOutput::Set {
                applied: false,
                old: v("o")
            }),
            Ok(DataOut::Set {
                applied: false,
                old: Some(Bytes::from("o"))
            })
        );
        assert_eq!(DataOut::from_kv(KvOutput::Done), Ok(DataOut::Done));
        assert_eq!(
            DataOut::from_kv(KvOutput::NotAnInteger),
            Ok(DataOut::NotAnInteger)
        );
        assert_eq!(DataOut::from_kv(KvOutput::Overflow), Ok(DataOut::Overflow));
        assert_eq!(
            DataOut::from_kv(KvOutput::TooLarge { bytes: 3, max: 2 }),
            Ok(DataOut::TooLarge { bytes: 3, max: 2 })
        );
        for foreign in [
            KvOutput::Deleted { existed: true },
            KvOutput::CasFailed { bytes: 1 },
        ] {
            assert!(DataOut::from_kv(foreign).is_err());
        }
    }

    #[test]
    fn a_pipeline_answer_that_does_not_match_may_have_applied() {
        // Goal: a server's answer to a write run that is not one data output per command
        // is "outcome unknown" to the client (the run may have applied), never TRYAGAIN.
        let ok = || KvOutput::Int(1);
        for wrong in [
            KvOutput::Outputs(vec![ok()]),
            KvOutput::Outputs(vec![ok(), ok(), ok()]),
            KvOutput::Outputs(vec![ok(), KvOutput::Deleted { existed: true }]),
            ok(),
        ] {
            let e = DataOut::from_kv_outputs(wrong.clone(), 2).expect_err("a fault");
            assert!(e.may_have_applied(), "{wrong:?}: {e:?}");
            let reply = crate::session::failure(&e, true);
            assert!(
                matches!(&reply, crate::reply::Reply::Error(m) if m.contains("outcome is unknown")),
                "{reply:?}"
            );
        }
        assert_eq!(
            DataOut::from_kv_outputs(KvOutput::Outputs(vec![ok(), ok()]), 2),
            Ok(vec![DataOut::Int(1); 2])
        );
    }
}
