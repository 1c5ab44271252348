//! [`Members`]: what the shell keeps of a group's membership beside the Raft core, which
//! alone decides it (single-server changes in the log, `shardkv-raft`'s crate docs).
//!
//! - **Addresses.** The core knows members by id; the peer transport needs addresses. They
//!   come from `--peers`, the identity file, and the `addr` of every applied "add learner"
//!   entry (a leader also takes it from the request before proposing, so it can replicate
//!   to the learner at once). After every drive the transport is made to send to exactly
//!   the members of the log's membership whose address is known; a member without one is
//!   logged (a member that caught up from a snapshot missed the entry: restart it with
//!   `--peers` naming the new member). The addresses are also published in an
//!   [`AddressBook`] that the client-facing services read to tell clients where the leader
//!   is (a leader hint with an address, `shardkv_net::hint`).
//! - **The identity file follows the log.** When the log's membership changes (an entry
//!   appended or truncated, a snapshot installed) and the member is not stalled on a full
//!   disk, the identity file's members are rewritten, so the next start checks `--peers`
//!   against the membership the member last knew and has its members' addresses. Raft
//!   never starts from them: its bootstrap membership is the one the directory was created
//!   with (`initial_voters`), and the log's membership entries and snapshot override it.
//!   A member removed from the group leaves its file as it was and logs it.
//! - **A joining member is new.** `--join` starts an empty directory as a learner; before
//!   that, [`check_join`] asks the members in `--peers` and refuses an id that is already a
//!   voter of the group (a voter whose disk was lost would vote having forgotten its votes
//!   and the entries it acknowledged).
//! - **Changes asked by `shardkv member`.** A request is proposed by the leader only (else
//!   `NotLeader`) and answered once its entry applied here (`MembershipDone`); a term change
//!   or lost leadership before that answers `LostLeadership` (the change may still apply:
//!   the operator lists the members to see). The Raft core refuses what is unsafe (a second
//!   change before the first committed, a change before the leader's no-op committed, a
//!   learner promoted while far behind); the refusal is returned as a clear error.

use shardkv_client::{ClientTlsConfig, Dial};
use shardkv_net::{MemberInfo, MembershipDone, PeerTransport};
use shardkv_raft::{ProposeError, RawNode};
use shardkv_rsm::Error;
use shardkv_storage::{FsDisk, Identity};
use shardkv_types::{
    ConfChange, ConfChangeKind, ConfEntry, Gid, LogIndex, Membership, NodeId, Term,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Changes proposed here and not yet answered; more are answered `Busy` (the core allows
/// one uncommitted change, so a few suffice).
const PENDING_CHANGES_MAX: usize = 4;

/// The answer to a membership change request.
pub type ChangeReply = Result<MembershipDone, Error>;

/// A change this leader proposed, waiting for its entry to apply.
struct Pending {
    index: LogIndex,
    term: Term,
    change: ConfChange,
    reply: oneshot::Sender<ChangeReply>,
}

/// A group's member addresses as the node thread last published them, read by the
/// client-facing services to put the leader's address into leader hints
/// (`shardkv_net::hint`). Cheap to clone; a read never waits for the node thread.
#[derive(Clone, Debug, Default)]
pub struct AddressBook(Arc<RwLock<BTreeMap<NodeId, String>>>);

impl AddressBook {
    /// Where clients reach member `id`, if known.
    pub fn get(&self, id: NodeId) -> Option<String> {
        let book = self.0.read().unwrap_or_else(|p| p.into_inner());
        book.get(&id).cloned()
    }

    fn publish(&self, addrs: &BTreeMap<NodeId, String>) {
        let mut book = self.0.write().unwrap_or_else(|p| p.into_inner());
        if *book != *addrs {
            *book = addrs.clone();
        }
    }
}

/// One member's view of its group's membership, as the shell keeps it (see the module docs).
pub struct Members {
    id: NodeId,
    /// The group's directory, where the identity file lives.
    dir: PathBuf,
    /// What the identity file holds (its roles are `recorded`'s).
    identity: Identity,
    recorded: Membership,
    /// Every peer address known, by member.
    addrs: BTreeMap<NodeId, String>,
    pending: Vec<Pending>,
    /// Members of the log's membership with no known address: since when, and whether
    /// that was logged (after [`UNADDRESSED_GRACE`]: a follower learns an added member's
    /// address when the entry applies, a little after the membership takes it in).
    unaddressed: BTreeMap<NodeId, (Instant, bool)>,
    /// This member was removed from the group (logged once).
    removed: bool,
    /// The membership the transport was last pointed at (`None`: not yet). The transport is
    /// re-pointed only when it or the addresses change, not on every drive.
    pointed: Option<Membership>,
    /// `addrs`, published for the client-facing services.
    book: AddressBook,
}

impl Members {
    /// A member whose group directory `dir` records `identity` (checked at start), its log
    /// now in membership `conf`.
    pub fn new(dir: PathBuf, identity: Identity, conf: Membership) -> Members {
        let addrs = identity
            .members()
            .into_iter()
            .filter(|(_, a)| !a.is_empty())
            .collect();
        let recorded = Membership::new(
            &identity.voters.keys().copied().collect::<Vec<_>>(),
            &identity.learners.keys().copied().collect::<Vec<_>>(),
        )
        .unwrap_or(conf);
        Members {
            id: identity.node_id,
            dir,
            identity,
            recorded,
            addrs,
            pending: Vec::new(),
            unaddressed: BTreeMap::new(),
            removed: false,
            pointed: None,
            book: AddressBook::default(),
        }
        .published()
    }

    fn published(self) -> Members {
        self.book.publish(&self.addrs);
        self
    }

    /// The address book this member publishes (every member's address, its own included).
    pub fn book(&self) -> AddressBook {
        self.book.clone()
    }

    /// Every other member's known address (where the transport starts sending).
    pub fn addresses(&self) -> BTreeMap<NodeId, String> {
        let mut peers = self.addrs.clone();
        peers.remove(&self.id);
        peers
    }

    /// Proposes `change` for a client of `shardkv member`; `reply` is answered once it
    /// applied, or now if it is refused. `stalled`: the member cannot write its log.
    pub fn propose(
        &mut self,
        raft: &mut RawNode,
        transport: &mut PeerTransport,
        stalled: bool,
        change: ConfChange,
        reply: oneshot::Sender<ChangeReply>,
    ) {
        let refuse = |reply: oneshot::Sender<ChangeReply>, e: Error| {
            let _ = reply.send(Err(e));
        };
        if !raft.is_leader() {
            return refuse(
                reply,
                Error::NotLeader {
                    leader: raft.leader(),
                },
            );
        }
        if stalled {
            return refuse(reply, Error::NoSpace);
        }
        self.pending.retain(|p| !p.reply.is_closed());
        if self.pending.len() >= PENDING_CHANGES_MAX {
            return refuse(reply, Error::Busy);
        }
        let conf = raft.conf();
        let new_addr = (change.kind == ConfChangeKind::AddLearner && !conf.contains(change.node))
            .then(|| change.addr.clone());
        match raft.propose_conf_change(change.clone()) {
            Ok(index) => {
                tracing::info!(term = %raft.term(), %index, ?change, "membership change proposed");
                if let Some(addr) = new_addr {
                    // At once: the leader replicates to the learner from its next message.
                    transport.add_peer(change.node, &addr);
                    self.addrs.insert(change.node, addr);
                    self.book.publish(&self.addrs);
                    self.pointed = None;
                }
                self.pending.push(Pending {
                    index,
                    term: raft.term(),
                    change,
                    reply,
                });
            }
            Err(e) => refuse(reply, propose_error(e)),
        }
    }

    /// After a drive: learns the addresses of the changes that applied, answers the
    /// requests they complete, records a new membership in the identity file (not while
    /// `stalled`: the log may hold entries not yet on disk) and points the transport at
    /// the members.
    pub fn after_drive(
        &mut self,
        raft: &RawNode,
        stalled: bool,
        applied: Vec<(LogIndex, ConfEntry)>,
        transport: &mut PeerTransport,
    ) {
        for (index, entry) in &applied {
            tracing::info!(%index, change = ?entry.change, members = %entry.next, "membership change applied");
            if entry.change.kind == ConfChangeKind::AddLearner && !entry.change.addr.is_empty() {
                self.addrs
                    .insert(entry.change.node, entry.change.addr.clone());
                self.book.publish(&self.addrs);
                self.pointed = None;
            }
        }
        if !self.pending.is_empty() {
            self.answer(raft, &applied);
        }
        let conf = raft.conf();
        if conf != self.recorded && !stalled {
            self.record(conf);
        }
        // Members without an address are looked at again on every drive (their grace
        // period runs out); otherwise only a change re-points the transport.
        if self.pointed != Some(conf) || !self.unaddressed.is_empty() {
            self.point_transport(conf, transport);
            self.pointed = Some(conf);
        }
    }

    /// Answers the pending requests whose entry applied, and those that can no longer be
    /// (leadership or term changed before it applied).
    fn answer(&mut self, raft: &RawNode, applied: &[(LogIndex, ConfEntry)]) {
        let members = self.infos(raft);
        let (term, leader) = (raft.term(), raft.is_leader());
        for p in std::mem::take(&mut self.pending) {
            // The term first: an entry applied at the index after leadership changed may be
            // another leader's. While this member leads the term it proposed in, the entry
            // at its index is its own.
            if p.term != term || !leader {
                let _ = p.reply.send(Err(Error::LostLeadership {
                    leader: raft.leader(),
                }));
            } else if applied
                .iter()
                .any(|(i, e)| *i == p.index && e.change == p.change)
            {
                let done = MembershipDone {
                    index: p.index,
                    members: members.clone(),
                };
                let _ = p.reply.send(Ok(done));
            } else if !p.reply.is_closed() {
                self.pending.push(p);
            }
        }
    }

    /// Rewrites the identity file with membership `conf` (unless this member is not in it).
    /// A failure is logged and not retried until the membership changes again: the file
    /// only serves the `--peers` check and addresses (see the module docs).
    fn record(&mut self, conf: Membership) {
        self.recorded = conf;
        if !conf.contains(self.id) {
            if !self.removed {
                tracing::warn!(members = %conf,
                    "this member is not in the group's membership (it is being removed): \
                     once the removal commits it neither votes nor serves; stop it then \
                     (`shardkv member list` shows the group)");
                self.removed = true;
            }
            return;
        }
        self.removed = false;
        let addr = |m: NodeId| self.addrs.get(&m).cloned().unwrap_or_default();
        let identity = Identity {
            voters: conf.voters().map(|m| (m, addr(m))).collect(),
            learners: conf.learners().map(|m| (m, addr(m))).collect(),
            ..self.identity.clone()
        };
        match shardkv_storage::write_identity(&mut FsDisk::new(), &self.dir, &identity) {
            Ok(()) => {
                tracing::info!(members = %identity.peer_list(), "membership recorded in the identity file");
                self.identity = identity;
            }
            Err(e) => tracing::warn!(error = %e, members = %identity.peer_list(),
                "cannot record the group's membership in the identity file; a restart will \
                 check --peers against the one recorded before"),
        }
    }

    /// The transport sends to exactly the other members of `conf` with a known address.
    fn point_transport(&mut self, conf: Membership, transport: &mut PeerTransport) {
        let now = Instant::now();
        self.unaddressed.retain(|m, _| conf.contains(*m));
        for m in conf.members().filter(|&m| m != self.id) {
            match self.addrs.get(&m) {
                Some(addr) => {
                    self.unaddressed.remove(&m);
                    transport.add_peer(m, addr)
                }
                None => {
                    let (since, logged) = self.unaddressed.entry(m).or_insert((now, false));
                    if !*logged && now.duration_since(*since) >= UNADDRESSED_GRACE {
                        *logged = true;
                        tracing::warn!(member = %m,
                            "a member of the group has no known address, so this member \
                             cannot send to it; restart this member with --peers naming it");
                    }
                }
            }
        }
        let gone: Vec<NodeId> = transport
            .peers()
            .keys()
            .copied()
            .filter(|&p| !conf.contains(p))
            .collect();
        for p in gone {
            transport.remove_peer(p);
        }
    }

    /// The group's members as this member's log has them, with addresses and (on the
    /// leader) how far each matches.
    pub fn infos(&self, raft: &RawNode) -> Vec<MemberInfo> {
        let conf = raft.conf();
        conf.members()
            .map(|m| MemberInfo {
                id: m,
                addr: self.addrs.get(&m).cloned().unwrap_or_default(),
                learner: conf.is_learner(m),
                matched: raft.matched(m),
            })
            .collect()
    }
}

/// The client's error for a change the Raft core refused.
fn propose_error(e: ProposeError) -> Error {
    let unavailable = |reason: String| Error::Unavailable { reason };
    match e {
        ProposeError::NotLeader { leader } => Error::NotLeader { leader },
        ProposeError::Busy => Error::Busy,
        ProposeError::TooLarge { bytes, max } => Error::TooLarge {
            bytes: bytes as u64,
            max: max as u64,
        },
        ProposeError::TransferInProgress => {
            unavailable("a leadership transfer is in progress; retry".into())
        }
        ProposeError::ConfChangePending { index } => unavailable(format!(
            "the previous membership change (log index {index}) is not committed yet; one \
             change at a time: retry once it is"
        )),
        ProposeError::LeaderNotReady => unavailable(
            "the leader has not yet committed an entry of its term; retry shortly".into(),
        ),
        ProposeError::ConfChange(e) => Error::Invalid {
            reason: e.to_string(),
        },
        ProposeError::LearnerBehind {
            node,
            matched,
            last,
        } => unavailable(format!(
            "learner {node} has the log up to {matched} of {last}: promote it once it caught up"
        )),
    }
}

/// How long a member of the membership may lack an address before it is logged.
const UNADDRESSED_GRACE: Duration = Duration::from_secs(10);

/// How long a joining member tries to reach a member of each group it joins.
const JOIN_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one member gets to answer.
const JOIN_ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Before a member with `--join` creates the directory of group `gid`: asks the other
/// members (`peers`) for the group's membership and refuses if `id` is already a voter of
/// it; also refuses when no member answers within [`JOIN_CHECK_TIMEOUT`] (the check cannot
/// be skipped). An `id` the group does not know yet, or knows as a learner, may join.
pub async fn check_join(
    id: NodeId,
    gid: Gid,
    peers: &BTreeMap<NodeId, String>,
    tls: Option<ClientTlsConfig>,
) -> Result<(), String> {
    let dial = Dial {
        timeout: JOIN_ASK_TIMEOUT,
        tls,
    };
    let deadline = tokio::time::Instant::now() + JOIN_CHECK_TIMEOUT;
    let mut last = String::from("no other member listed in --peers");
    loop {
        for (&peer, addr) in peers.iter().filter(|(p, _)| **p != id) {
            match shardkv_client::fetch_group_status_with(addr, Some(gid), &dial).await {
                Ok(s) if s.members.iter().any(|m| m.id == id && !m.learner) => {
                    return Err(format!(
                        "node {id} is already a voter of group {} (member {peer} says so): a \
                         member that lost its data must not rejoin under its old id, since it \
                         would vote having forgotten its votes and the entries it \
                         acknowledged; start it under a NEW id and replace the old one \
                         (docs/membership.md)",
                        gid.0
                    ));
                }
                Ok(s) if !s.members.is_empty() => return Ok(()),
                Ok(_) => last = format!("member {peer} at {addr} does not report its members"),
                Err(e) => last = e.to_string(),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "--join: no member of group {} answered within {JOIN_CHECK_TIMEOUT:?}, so \
                 this node cannot check that id {id} is new (last: {last})",
                gid.0
            ));
        }
        tracing::info!(group = gid.0, %last, "--join: waiting for a member of the group to answer");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
