//! `Endpoints`: the servers of one group as the async clients reach them: addresses,
//! channels (opened on first use, reopened after a failure; any service's client is built
//! on them, over TLS when [`Dial::tls`] is set) and the map from the node ids servers report
//! to the client's endpoint slots.

use crate::Error;
use crate::batcher::Batchers;
use crate::in_process::{InProcess, Local};
use shardkv_net::pb::kv_client::KvClient;
use shardkv_net::{MembershipDone, NodeStatus, convert, members, pb};
use shardkv_types::{ConfChange, Gid, NodeId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// How to open a connection to a server.
#[derive(Clone, Debug)]
pub struct Dial {
    pub timeout: Duration,
    /// TLS (`https`), trusting the configured CA and presenting the configured client
    /// certificate (`shardkv_net::tls::client_config` builds one); `None`: plaintext.
    pub tls: Option<ClientTlsConfig>,
}

impl Dial {
    /// Plaintext, with `timeout`.
    pub fn plain(timeout: Duration) -> Dial {
        Dial { timeout, tls: None }
    }
}

/// The most endpoints a client adds to the ones it was given, from leader hints (see
/// [`Endpoints::learn_addr`]): a group has a handful of members, so this covers one whose
/// members were all replaced more than once, while a server naming ever new addresses
/// cannot make the client hold an unbounded list.
pub const LEARNED_ENDPOINTS_MAX: usize = 16;

/// The endpoints of one group. Slot `i` (0-based) is `NodeId(i + 1)` for the clerk core.
/// Slots past the given endpoints are filled by leader hints naming an address the client
/// lacks (only on endpoints made [`Endpoints::learning`]), at most
/// [`LEARNED_ENDPOINTS_MAX`] of them; a slot, once filled, keeps its address.
#[derive(Debug)]
pub struct Endpoints {
    /// One per slot the list may grow to; the first `len` are set.
    addrs: Vec<OnceLock<String>>,
    len: AtomicUsize,
    channels: Vec<Mutex<Option<Channel>>>,
    /// Real node id (as servers report it) → slot. Also taken while a slot is added.
    slots: Mutex<BTreeMap<NodeId, usize>>,
    dial: Dial,
    /// Each slot's Batch stream (see [`crate::batcher`]).
    batch: Batchers,
    /// The server of this process, when the client runs in one: requests for a slot whose
    /// address is its own are handed to it directly (see [`crate::in_process`]).
    local: Option<Local>,
}

impl Endpoints {
    /// Parses endpoints: `HOST:PORT` items (the i-th is assumed to be node i+1 until a
    /// server says otherwise) or `ID=HOST:PORT` items, one string each or comma-separated.
    /// `HOST` may be a name: it is resolved on every connect. The list does not grow (see
    /// [`Endpoints::learning`]).
    pub fn parse(items: &[String], dial: Dial) -> Result<Endpoints, Error> {
        let mut addrs = Vec::new();
        let mut slots = BTreeMap::new();
        for item in items.iter().flat_map(|s| s.split(',')).map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let addr = match item.split_once('=') {
                Some((id, addr)) => {
                    let id: u64 = id.trim().parse().map_err(|_| invalid(item))?;
                    slots.insert(NodeId(id), addrs.len());
                    addr.trim()
                }
                None => {
                    slots.insert(NodeId(addrs.len() as u64 + 1), addrs.len());
                    item
                }
            };
            if !addr.contains(':') {
                return Err(invalid(item));
            }
            addrs.push(OnceLock::from(addr.to_string()));
        }
        if addrs.is_empty() {
            return Err(Error::Unavailable {
                reason: "no endpoints given".into(),
            });
        }
        Ok(Endpoints {
            len: AtomicUsize::new(addrs.len()),
            channels: addrs.iter().map(|_| Mutex::new(None)).collect(),
            batch: Batchers::new(addrs.len()),
            addrs,
            slots: Mutex::new(slots),
            dial,
            local: None,
        })
    }

    /// These endpoints, handing requests for `local`'s own address to it (see
    /// [`crate::in_process`]); `None` changes nothing.
    pub fn in_process(mut self, local: Option<Local>) -> Endpoints {
        self.local = local;
        self
    }

    /// The server of this process, if `slot` is its address.
    pub(crate) fn local(&self, slot: usize) -> Option<&dyn InProcess> {
        let local = self.local.as_ref()?;
        local.0.is_me(self.addr(slot)).then_some(&*local.0)
    }

    /// These endpoints, with room for [`LEARNED_ENDPOINTS_MAX`] more from leader hints. For
    /// a group whose members the client does not all know (a fixed `--endpoints` list); a
    /// sharded cluster's groups come with every member from the controller's config.
    pub fn learning(mut self) -> Endpoints {
        let room = self.addrs.len() + LEARNED_ENDPOINTS_MAX;
        self.addrs.resize_with(room, OnceLock::new);
        self.channels.resize_with(room, || Mutex::new(None));
        // Every slot, learned ones too, has its Batch stream.
        self.batch = Batchers::new(room);
        self
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// # Panics
    /// If `slot` is not below [`Endpoints::len`].
    pub fn addr(&self, slot: usize) -> &str {
        self.addrs[slot]
            .get()
            .expect("a slot below len has an address")
    }

    /// Remembers that the server at `slot` is node `id`.
    pub fn learn(&self, slot: usize, id: NodeId) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.get(&id) != Some(&slot) {
            slots.retain(|_, s| *s != slot);
            slots.insert(id, slot);
        }
    }

    /// A leader hint said node `id` is reached at `addr`: its slot, added if the client
    /// has no slot for `id` and none at `addr` (then `id` is mapped to that one), while
    /// there is room. `None`: no room (or endpoints that do not learn); the hint is then
    /// of no use, as before.
    pub fn learn_addr(&self, id: NodeId, addr: &str) -> Option<usize> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&slot) = slots.get(&id) {
            return Some(slot);
        }
        let len = self.len();
        let slot = match (0..len).find(|&s| self.addr(s) == addr) {
            Some(existing) => existing,
            None if len < self.addrs.len() => {
                self.addrs[len]
                    .set(addr.to_string())
                    .expect("slots past len are empty, and added under the lock");
                self.len.store(len + 1, Ordering::Release);
                len
            }
            None => return None,
        };
        slots.retain(|_, s| *s != slot);
        slots.insert(id, slot);
        Some(slot)
    }

    /// The slot of node `id`, if known.
    pub fn slot_of(&self, id: NodeId) -> Option<usize> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(&id).copied()
    }

    /// The channel to `slot`, connecting first if needed; every service's client is built
    /// on it. `Err` means nothing was sent.
    pub async fn channel(&self, slot: usize) -> Result<Channel, String> {
        let cached = self.channels[slot]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(c) = cached {
            return Ok(c);
        }
        let c = connect(self.addr(slot), &self.dial).await?;
        *self.channels[slot]
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// What went wrong on a call to `slot`, for a person: the status, its causes, and a
    /// hint when TLS is the likely reason (a plaintext client of a TLS port sees a broken
    /// HTTP/2 connection; a client without an acceptable certificate a cancelled call).
    pub fn explain(&self, slot: usize, status: &tonic::Status) -> String {
        explain(self.addr(slot), status, &self.dial)
    }

    /// The Batch streams of the slots.
    pub(crate) fn batch(&self) -> &Batchers {
        &self.batch
    }

    /// The status of `slot`'s replica of `group` (as [`fetch_group_status_with`] asks it),
    /// over the slot's connection: opened on first use, kept for the next call, dropped
    /// after a failure. Bounded by the dial timeout.
    pub async fn group_status(&self, slot: usize, group: Option<Gid>) -> Result<NodeStatus, Error> {
        let ask = async {
            let channel = self.channel(slot).await?;
            status_on(channel, group)
                .await
                .map_err(|s| self.explain(slot, &s))
        };
        let status = within(self.dial.timeout, self.addr(slot), ask).await;
        if status.is_err() {
            self.reset(slot);
        }
        status
    }

    /// Drops the connection of `slot` after a failure, so the next use reconnects (and
    /// opens a new Batch stream).
    pub fn reset(&self, slot: usize) {
        self.batch.reset(slot);
        *self.channels[slot]
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
}

fn invalid(item: &str) -> Error {
    Error::Unavailable {
        reason: format!("bad endpoint {item:?} (expected HOST:PORT or ID=HOST:PORT)"),
    }
}

async fn connect(addr: &str, dial: &Dial) -> Result<Channel, String> {
    let uri = shardkv_net::tls::endpoint_uri(addr, dial.tls.is_some());
    let mut endpoint =
        Endpoint::from_shared(uri).map_err(|e| format!("bad endpoint {addr}: {e}"))?;
    if let Some(tls) = &dial.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| format!("TLS towards {addr}: {e}"))?;
    }
    endpoint
        .connect_timeout(dial.timeout)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {}", crate::cause::chain(&e)))
}

/// `addr: status: causes (hint)`; see [`Endpoints::explain`].
fn explain(addr: &str, status: &tonic::Status, dial: &Dial) -> String {
    let text = format!("{addr}: {}", crate::driver::status_cause(status));
    let connection_lost = matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Internal
    );
    match (connection_lost, dial.tls.is_some()) {
        (true, false) => format!(
            "{text} (if the server has TLS on, it refuses plaintext: connect with TLS, e.g. \
             the CLI's --cacert, --cert and --key)"
        ),
        (true, true) => format!(
            "{text} (a server with TLS on refuses a client without a certificate signed by \
             its CA: check --cert, --key and --cacert)"
        ),
        (false, _) => text,
    }
}

/// Asks the server at `addr` (`HOST:PORT`) for its status, within `timeout`, in plaintext.
pub async fn fetch_status(addr: &str, timeout: Duration) -> Result<NodeStatus, Error> {
    fetch_group_status(addr, None, timeout).await
}

/// Asks the server at `addr` for the status of its replica of `group` (`None`: its
/// default group; `Some(Gid(0))`: the shard controller), within `timeout`, in plaintext.
pub async fn fetch_group_status(
    addr: &str,
    group: Option<Gid>,
    timeout: Duration,
) -> Result<NodeStatus, Error> {
    fetch_group_status_with(addr, group, &Dial::plain(timeout)).await
}

/// [`fetch_group_status`] over a connection opened as `dial` says, within `dial.timeout`.
pub async fn fetch_group_status_with(
    addr: &str,
    group: Option<Gid>,
    dial: &Dial,
) -> Result<NodeStatus, Error> {
    let ask = async {
        let channel = connect(addr, dial).await?;
        status_on(channel, group)
            .await
            .map_err(|s| explain(addr, &s, dial))
    };
    within(dial.timeout, addr, ask).await
}

/// One Status call of `group` on `channel`.
async fn status_on(channel: Channel, group: Option<Gid>) -> Result<NodeStatus, tonic::Status> {
    KvClient::new(channel)
        .status(pb::StatusRequest {
            group: group.map(|g| g.0),
        })
        .await
        .map(|r| convert::status_from_wire(r.into_inner()))
}

/// `ask` (a call to `addr` whose failure is explained in a string) within `timeout`, its
/// failure or silence as `Unavailable`.
async fn within<T>(
    timeout: Duration,
    addr: &str,
    ask: impl Future<Output = Result<T, String>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(reason)) => Err(Error::Unavailable { reason }),
        Err(_) => Err(Error::Unavailable {
            reason: format!("{addr} did not answer within {timeout:?}"),
        }),
    }
}

/// Asks the server at `addr` to change the membership of its replica of `group` (see
/// `shardkv_net::members`), within `dial.timeout`: the server that answered and its answer
/// (`NotLeader` names the leader), or `Err` when no answer came.
pub async fn change_membership_with(
    addr: &str,
    group: Option<Gid>,
    change: &ConfChange,
    dial: &Dial,
) -> Result<(NodeId, Result<MembershipDone, Error>), Error> {
    let timeout = dial.timeout;
    let ask = async {
        let channel = connect(addr, dial).await?;
        let reply = KvClient::new(channel)
            .change_membership(members::change_to_wire(group, change))
            .await
            .map_err(|s| explain(addr, &s, dial))?;
        members::membership_reply_from_wire(reply.into_inner()).map_err(|e| format!("{addr}: {e}"))
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(reason)) => Err(Error::Unavailable { reason }),
        Err(_) => Err(Error::Unavailable {
            reason: format!("{addr} did not answer within {timeout:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_and_without_ids() {
        let t = Dial::plain(Duration::from_secs(1));
        let e = Endpoints::parse(&["127.0.0.1:1,127.0.0.1:2".into()], t.clone()).expect("valid");
        assert_eq!(e.len(), 2);
        assert_eq!(e.slot_of(NodeId(2)), Some(1));
        let e = Endpoints::parse(&["3=127.0.0.1:1".into(), "1=127.0.0.1:2".into()], t.clone())
            .expect("valid");
        assert_eq!(e.slot_of(NodeId(3)), Some(0));
        assert_eq!(e.slot_of(NodeId(1)), Some(1));
        e.learn(0, NodeId(7));
        assert_eq!(e.slot_of(NodeId(7)), Some(0));
        assert_eq!(e.slot_of(NodeId(3)), None, "a slot has one id");
        assert!(Endpoints::parse(&[], t.clone()).is_err());
        assert!(Endpoints::parse(&["x=127.0.0.1:1".into()], t.clone()).is_err());
        assert!(Endpoints::parse(&["nohost".into()], t.clone()).is_err());
    }

    #[test]
    fn a_leader_hint_adds_an_endpoint_within_the_bound() {
        // Goal: a hint naming an unknown member at a new address becomes a slot (that
        // member's), one naming a known address maps the id to it, and the list stops
        // growing at the bound; endpoints that do not learn never grow.
        let t = Dial::plain(Duration::from_secs(1));
        let fixed = Endpoints::parse(&["127.0.0.1:1".into()], t.clone()).expect("valid");
        assert_eq!(fixed.learn_addr(NodeId(3), "127.0.0.1:3"), None);
        assert_eq!(fixed.len(), 1);
        let e = fixed.learning();
        assert_eq!(e.len(), 1);
        assert_eq!(e.learn_addr(NodeId(3), "127.0.0.1:3"), Some(1));
        assert_eq!(
            (e.len(), e.addr(1), e.slot_of(NodeId(3))),
            (2, "127.0.0.1:3", Some(1))
        );
        // A learned slot is a whole slot: its connection and its Batch stream.
        e.reset(1);
        assert_eq!(
            e.learn_addr(NodeId(3), "127.0.0.1:9"),
            Some(1),
            "a known id stays"
        );
        assert_eq!(
            e.learn_addr(NodeId(5), "127.0.0.1:1"),
            Some(0),
            "a known address"
        );
        assert_eq!(e.slot_of(NodeId(5)), Some(0));
        assert_eq!(e.slot_of(NodeId(1)), None, "a slot has one id");
        for i in 0..LEARNED_ENDPOINTS_MAX as u64 + 4 {
            e.learn_addr(NodeId(100 + i), &format!("10.0.0.1:{}", 100 + i));
        }
        assert_eq!(e.len(), 1 + LEARNED_ENDPOINTS_MAX);
        assert_eq!(e.learn_addr(NodeId(999), "10.9.9.9:1"), None, "full");
    }

    #[test]
    fn a_lost_connection_is_explained_with_a_tls_hint() {
        // Goal: a plaintext client of a TLS port, and a TLS client the server refused, are
        // told what to check; other errors get no hint.
        let plain = Dial::plain(Duration::from_secs(1));
        let lost = tonic::Status::internal("h2 protocol error: http2 error");
        let text = explain("127.0.0.1:1", &lost, &plain);
        assert!(text.starts_with("127.0.0.1:1: h2 protocol error"), "{text}");
        assert!(text.contains("refuses plaintext"), "{text}");
        let tls = Dial {
            tls: Some(ClientTlsConfig::new()),
            ..plain.clone()
        };
        let refused = explain(
            "127.0.0.1:1",
            &tonic::Status::unknown("transport error"),
            &tls,
        );
        assert!(
            refused.contains("check --cert, --key and --cacert"),
            "{refused}"
        );
        let other = explain("127.0.0.1:1", &tonic::Status::not_found("no"), &plain);
        assert_eq!(other, "127.0.0.1:1: no");
    }
}
