//! `CtrlClient`: the async client of the shard controller group. Each operation runs the
//! one async driver ([`crate::driver`]) over the Ctrl gRPC service, exactly as the KV
//! [`crate::Client`] does over Kv: the same leader cursor, hints, backoff and "may have
//! applied" rules, and every retry of a Join, Leave or Move carries the same sequence number
//! (so the controller applies it at most once).
//!
//! Two kinds of failure, kept apart: the outer [`Error`] says the request was not served
//! (unavailable, timed out; see [`Error::outcome`]), the inner [`CtrlError`] says the
//! controller served it and refused it (nothing changed, and every retry gets the same
//! answer).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shardkv_client::{CtrlClient, Gid};
//! let mut ctrl = CtrlClient::connect(&["127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into()])?;
//! let groups = [(Gid(1), vec!["127.0.0.1:7101".to_string()])].into();
//! let num = ctrl.join(groups).await??;
//! let config = ctrl.query(Some(num)).await?;
//! assert!(config.has_group(Gid(1)));
//! # Ok(()) }
//! ```

use crate::driver::{CallFailure, ClientOptions, Driver, Hinted, Service};
use crate::endpoints::Endpoints;
use crate::{CtrlOp, Error, Op};
use shardkv_ctrl::{Config, CtrlCommand, CtrlError, CtrlOutput, CtrlQuery, CtrlReply, ShardCtrl};
use shardkv_net::convert::{self, CtrlRequest, WireCtrlRequest};
use shardkv_net::pb::ctrl_client::CtrlClient as PbCtrlClient;
use shardkv_net::{CTRL_FRAME_BYTES_MAX, pb};
use shardkv_types::{ClientId, ConfigNum, Gid, ShardId};
use std::collections::BTreeMap;
use tonic::transport::Channel;

/// The Ctrl service as the driver speaks it.
pub(crate) struct CtrlService;

impl Service for CtrlService {
    type Machine = ShardCtrl;
    const WHAT: &'static str = "the shard controller (no controller replica there)";
    const FRAME_BYTES_MAX: usize = CTRL_FRAME_BYTES_MAX;

    /// The controller is one group per cluster: `group` is not sent.
    async fn call(
        _endpoints: &Endpoints,
        _slot: usize,
        channel: Channel,
        _group: Gid,
        req: CtrlRequest,
    ) -> Result<Hinted<CtrlOutput>, CallFailure> {
        let mut client = PbCtrlClient::new(channel)
            .max_decoding_message_size(CTRL_FRAME_BYTES_MAX)
            .max_encoding_message_size(usize::MAX);
        let reply = match convert::ctrl_request_to_wire(req) {
            WireCtrlRequest::Join(r) => client.join(r).await,
            WireCtrlRequest::Leave(r) => client.leave(r).await,
            WireCtrlRequest::Move(r) => client.r#move(r).await,
            WireCtrlRequest::Query(r) => client.query(r).await,
            WireCtrlRequest::Servers(r) => client.servers(r).await,
        };
        let reply: pb::CtrlReply = reply.map_err(CallFailure::Status)?.into_inner();
        let hint = shardkv_net::hint::read_ctrl(&reply);
        let (from, reply) = convert::ctrl_reply_from_wire(reply).map_err(CallFailure::Malformed)?;
        Ok((from, reply, hint))
    }
}

/// One client session of the shard controller group: a random client id, one operation at a
/// time. More sessions over the same connections: [`CtrlClient::session`].
pub struct CtrlClient {
    driver: Driver<CtrlService>,
}

impl CtrlClient {
    /// A client for the controller group at `endpoints` (`HOST:PORT` or `ID=HOST:PORT`,
    /// items or comma-separated) with default options. Connects lazily: an error here means
    /// the endpoints are invalid, not that servers are down.
    pub fn connect(endpoints: &[String]) -> Result<CtrlClient, Error> {
        CtrlClient::connect_with(endpoints, ClientOptions::default())
    }

    pub fn connect_with(endpoints: &[String], opts: ClientOptions) -> Result<CtrlClient, Error> {
        let driver = Driver::connect(endpoints, opts)?;
        Ok(CtrlClient { driver })
    }

    /// Another session (new client id) over the same connections.
    pub fn session(&self) -> CtrlClient {
        CtrlClient {
            driver: self.driver.session(),
        }
    }

    /// This session's client id.
    pub fn id(&self) -> ClientId {
        self.driver.id()
    }

    /// Adds groups (gid → server addresses) and rebalances: the new config's number, or
    /// the controller's refusal.
    pub async fn join(
        &mut self,
        groups: BTreeMap<Gid, Vec<String>>,
    ) -> Result<Result<ConfigNum, CtrlError>, Error> {
        self.change(CtrlCommand::Join { groups }).await
    }

    /// Removes groups and rebalances their shards over the rest.
    pub async fn leave(&mut self, gids: &[Gid]) -> Result<Result<ConfigNum, CtrlError>, Error> {
        let gids = gids.to_vec();
        self.change(CtrlCommand::Leave { gids }).await
    }

    /// Assigns `shard` to `gid` exactly (no rebalance).
    pub async fn move_shard(
        &mut self,
        shard: ShardId,
        gid: Gid,
    ) -> Result<Result<ConfigNum, CtrlError>, Error> {
        self.change(CtrlCommand::Move { shard, gid }).await
    }

    /// Replaces the server list of joined group `gid` (shards stay where they are).
    pub async fn set_servers(
        &mut self,
        gid: Gid,
        servers: Vec<String>,
    ) -> Result<Result<ConfigNum, CtrlError>, Error> {
        self.change(CtrlCommand::Servers { gid, servers }).await
    }

    /// Config `num`; `None` (or a number past the latest) gives the latest. Linearizable.
    pub async fn query(&mut self, num: Option<ConfigNum>) -> Result<Config, Error> {
        match self.execute(Op::Read(CtrlQuery { num })).await? {
            Ok(CtrlReply::Config(c)) => Ok(c),
            other => Err(unexpected(&other)),
        }
    }

    async fn change(&mut self, cmd: CtrlCommand) -> Result<Result<ConfigNum, CtrlError>, Error> {
        match self.execute(Op::Write(cmd)).await? {
            Ok(CtrlReply::Applied { num }) => Ok(Ok(num)),
            Err(refused) => Ok(Err(refused)),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs one operation to its end: the controller's answer (which may be a refusal), or
    /// an error whose [`Error::outcome`] says whether it may have applied.
    pub async fn execute(&mut self, op: CtrlOp) -> Result<CtrlOutput, Error> {
        self.driver.execute(op).await
    }
}

fn unexpected(out: &CtrlOutput) -> Error {
    Error::Unavailable {
        reason: format!("the controller answered with an output of the wrong kind: {out:?}"),
    }
}
