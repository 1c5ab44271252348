//! `Client`: the async KV client library. Each operation runs the one async driver
//! ([`crate::driver`]) over the Kv gRPC service: send to the remembered leader, follow
//! hints, retry elsewhere on timeouts, every attempt of a write carrying the same sequence
//! number.
//!
//! Two modes, one API: a client of one replica group ([`Client::connect`]), or of a sharded
//! cluster ([`Client::connect_sharded`], given the shard controller's endpoints), which
//! routes each key to the group its cached config assigns the key's shard to, refreshes the
//! config from the controller when it has none or a group answers `WrongGroup`, and keeps
//! one sequence stream across groups (exactly-once survives shard moves).

use crate::driver::{CallFailure, ClientOptions, Driver, Hinted, Service};
use crate::endpoints::Endpoints;
use crate::in_process::InProcessCall;
use crate::topology::Sharded;
use crate::{CtrlClient, Error, KvOp, Naming, Op, ShardRouter};
use shardkv_kv::{KvCommand, KvOutput, KvQuery, KvRequest, KvStore};
use shardkv_net::KV_FRAME_BYTES_MAX;
use shardkv_types::{ClientId, Gid};
use tonic::transport::Channel;

/// The result of a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasResult {
    pub swapped: bool,
    /// The value found (and compared), `None` if the key was absent.
    pub current: Option<Vec<u8>>,
}

/// The Kv service as the driver speaks it.
pub(crate) struct KvService;

impl Service for KvService {
    type Machine = KvStore;
    const WHAT: &'static str = "the KV service";
    const FRAME_BYTES_MAX: usize = KV_FRAME_BYTES_MAX;

    /// On the slot's Batch stream (unary when the server does not serve it).
    async fn call(
        endpoints: &Endpoints,
        slot: usize,
        channel: Channel,
        group: Gid,
        req: KvRequest,
    ) -> Result<Hinted<KvOutput>, CallFailure> {
        endpoints.batch().call(slot, channel, group, req).await
    }

    /// To the server of this process, when `slot` is its address.
    fn call_in_process(
        endpoints: &Endpoints,
        slot: usize,
        group: Gid,
        req: KvRequest,
    ) -> Result<InProcessCall, KvRequest> {
        match endpoints.local(slot) {
            Some(local) => Ok(local.call(group, req)),
            None => Err(req),
        }
    }
}

/// The driver of a client, by mode.
enum Mode {
    /// One replica group.
    Group(Box<Driver<KvService>>),
    /// A sharded cluster.
    Sharded(Box<Driver<KvService, ShardRouter, Sharded>>),
}

/// One client session of a replica group or of a sharded cluster: a random client id, one
/// operation at a time. For concurrency make more sessions with [`Client::session`]; they
/// share connections.
pub struct Client {
    driver: Mode,
}

impl Client {
    /// A client for the group at `endpoints` (`HOST:PORT` or `ID=HOST:PORT`, items or
    /// comma-separated) with default options. Connects lazily: an error here means the
    /// endpoints are invalid, not that servers are down.
    pub fn connect(endpoints: &[String]) -> Result<Client, Error> {
        Client::connect_with(endpoints, ClientOptions::default())
    }

    pub fn connect_with(endpoints: &[String], opts: ClientOptions) -> Result<Client, Error> {
        let driver = Driver::connect(endpoints, opts)?;
        Ok(Client {
            driver: Mode::Group(Box::new(driver)),
        })
    }

    /// A client of the sharded cluster whose shard controller is at `ctrl_endpoints`
    /// (`HOST:PORT`, items or comma-separated). The groups' servers come from the
    /// controller's configs (listed in node order, as `admin join` takes them). Connects
    /// lazily. `opts.group` is not used: each request names the group it is routed to.
    pub fn connect_sharded(
        ctrl_endpoints: &[String],
        opts: ClientOptions,
    ) -> Result<Client, Error> {
        let ctrl = CtrlClient::connect_with(ctrl_endpoints, opts.clone())?;
        let topology = Sharded::new(ctrl, opts.dial(), opts.in_process.clone());
        let router = ShardRouter::new(Naming::Position);
        Ok(Client {
            driver: Mode::Sharded(Box::new(Driver::on(topology, router, opts))),
        })
    }

    /// Another session (new client id) over the same connections.
    pub fn session(&self) -> Client {
        let driver = match &self.driver {
            Mode::Group(d) => Mode::Group(Box::new(d.session())),
            Mode::Sharded(d) => Mode::Sharded(Box::new(d.session())),
        };
        Client { driver }
    }

    /// This session's client id.
    pub fn id(&self) -> ClientId {
        match &self.driver {
            Mode::Group(d) => d.id(),
            Mode::Sharded(d) => d.id(),
        }
    }

    /// Continues a session kept outside this process (the CLI's `--session FILE`): this
    /// client takes client id `id`, and its next write sequence number `next_seq`. With
    /// `retrying`, that write must be the very command that was last sent under `next_seq`
    /// and may have applied: it is sent as a retry, so it applies at most once (answered
    /// from the servers' session table, or `SessionExpired` if they no longer hold it).
    /// Call it before any operation; `next_seq` must be past every sequence number `id`
    /// used before, except the one retried.
    pub fn resume_session(&mut self, id: ClientId, next_seq: shardkv_types::Seq, retrying: bool) {
        match &mut self.driver {
            Mode::Group(d) => d.resume_session(id, next_seq, retrying),
            Mode::Sharded(d) => d.resume_session(id, next_seq, retrying),
        }
    }

    pub async fn get(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>, Error> {
        match self
            .execute(Op::Read(KvQuery::Get { key: key.into() }))
            .await?
        {
            KvOutput::Value(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn put(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), Error> {
        let (key, value) = (key.into(), value.into());
        self.write(KvCommand::Put { key, value }).await
    }

    pub async fn append(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), Error> {
        let (key, value) = (key.into(), value.into());
        self.write(KvCommand::Append { key, value }).await
    }

    /// Deletes `key`: `Some(true)` if it existed (and was removed), `Some(false)` if it
    /// did not. `None` only from a server of a build before Delete said so (it answers
    /// `Done`). A retry of a Delete that applied gets the first answer (the session
    /// record), not the outcome of deleting again. (Changed from `Result<(), Error>`.)
    pub async fn delete(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<bool>, Error> {
        match self
            .execute(Op::Write(KvCommand::Delete { key: key.into() }))
            .await?
        {
            KvOutput::Deleted { existed } => Ok(Some(existed)),
            KvOutput::Done => Ok(None),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets `key` to `new` iff its current value is `expected` (`None`: iff absent).
    pub async fn cas(
        &mut self,
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
        new: impl Into<Vec<u8>>,
    ) -> Result<CasResult, Error> {
        let cmd = KvCommand::Cas {
            key: key.into(),
            expected,
            new: new.into(),
        };
        match self.execute(Op::Write(cmd)).await? {
            KvOutput::Cas { swapped, current } => Ok(CasResult { swapped, current }),
            other => Err(unexpected(&other)),
        }
    }

    async fn write(&mut self, cmd: KvCommand) -> Result<(), Error> {
        match self.execute(Op::Write(cmd)).await? {
            KvOutput::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs one operation to its end: an output, or an error whose
    /// [`Error::outcome`] says whether it may have applied.
    pub async fn execute(&mut self, op: KvOp) -> Result<KvOutput, Error> {
        match &mut self.driver {
            Mode::Group(d) => d.execute(op).await,
            Mode::Sharded(d) => d.execute(op).await,
        }
    }
}

fn unexpected(out: &KvOutput) -> Error {
    Error::Unavailable {
        reason: format!("server answered with an output of the wrong kind: {out:?}"),
    }
}
