//! The host loop's persistence ordering and stall policy, checked on a 3-member KV group
//! whose members are `Host<Replica<KvStore>, SimDisk>` over simulated disks, joined by
//! an in-memory FIFO network this file drives by hand.
//!
//! Method: every message a host hands to its transport is checked at that instant against
//! what a crash would leave of its sender's disk (a fork of the simulated disk, crashed
//! and recovered): that is exactly what the message may promise.

use shardkv_host::{Host, HostEvent, HostOptions, Observer};
use shardkv_kv::{KvCommand, KvOutput, KvQuery, KvReplica, KvRequest, KvResponse, KvStore};
use shardkv_raft::{Body, Config, Message, RawNode};
use shardkv_rsm::{Error, ReplicaOptions, ReqId, Request};
use shardkv_storage::{RaftStore, SimDisk};
use shardkv_types::{ClientId, Entry, LogIndex, NodeId, Seq, Term};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

/// What a crash right now would leave on a member's disk.
#[derive(Clone, Copy, Debug)]
struct Durable {
    last_index: LogIndex,
    term: Term,
    vote: Option<NodeId>,
}

fn durable_now(disk: &SimDisk, dir: &Path, id: NodeId) -> Durable {
    let fork = disk.fork();
    fork.crash();
    let (_, rec) = RaftStore::open(fork, dir, id).expect("a crashed disk recovers");
    let snap = rec.snapshot.map(|(m, _)| m).unwrap_or_default();
    let last_index = rec.entries.last().map_or(snap.index, |e| e.index);
    Durable {
        last_index,
        term: rec.hard_state.term,
        vote: rec.hard_state.vote,
    }
}

/// One message as it left its sender, with its sender's durable state at that instant.
#[derive(Debug)]
struct Sent {
    msg: Message,
    durable: Durable,
    /// The sender led when it sent.
    leader: bool,
}

/// What one `drive` of one member did.
#[derive(Clone, Copy, Debug, Default)]
struct DriveRecord {
    id: u64,
    persisted: usize,
    applied: usize,
    file_syncs: u64,
    host_syncs: u64,
    unsynced_writes: u64,
}

#[derive(Default)]
struct Watch {
    persisted: usize,
    applied: usize,
    events: Vec<HostEvent>,
}

impl Observer for Watch {
    fn on_persist(&mut self, _: NodeId, _: &Entry, prev: Option<Term>) -> Result<(), String> {
        assert!(prev.is_some(), "the log knows the term before every entry");
        self.persisted += 1;
        Ok(())
    }
    fn on_apply(&mut self, _: NodeId, _: &Entry) -> Result<(), String> {
        self.applied += 1;
        Ok(())
    }
    fn on_event(&mut self, _: NodeId, event: HostEvent) {
        self.events.push(event);
    }
}

struct Member {
    app: KvReplica,
    host: Host<KvReplica, SimDisk>,
    /// A handle on the store's disk (clones share it), which counts its file syncs.
    disk: SimDisk,
    dir: PathBuf,
}

struct Group {
    members: BTreeMap<NodeId, Member>,
    net: VecDeque<Message>,
    /// Members whose incoming messages are lost.
    cut: Vec<NodeId>,
    sent: Vec<Sent>,
    drives: Vec<DriveRecord>,
    events: Vec<(NodeId, HostEvent)>,
    answers: BTreeMap<ReqId, KvResponse>,
    next_req: ReqId,
}

impl Group {
    fn new(seed: u64) -> Group {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let mut members = BTreeMap::new();
        for &id in &ids {
            let disk = SimDisk::new(seed ^ id.0);
            let dir = PathBuf::from(format!("/{id}"));
            let (store, rec) = RaftStore::open(disk.clone(), &dir, id).expect("open");
            let restored = shardkv_host::restored(rec);
            let cfg = Config::new(id, ids.clone());
            let opts = ReplicaOptions::default();
            let app = KvReplica::new(cfg, restored, seed + id.0, opts, KvStore::default())
                .expect("start");
            let host = Host::new(id, store, HostOptions::default());
            members.insert(
                id,
                Member {
                    app,
                    host,
                    disk,
                    dir,
                },
            );
        }
        Group {
            members,
            net: VecDeque::new(),
            cut: Vec::new(),
            sent: Vec::new(),
            drives: Vec::new(),
            events: Vec::new(),
            answers: BTreeMap::new(),
            next_req: 1,
        }
    }

    fn m(&mut self, id: NodeId) -> &mut Member {
        self.members.get_mut(&id).expect("member")
    }

    fn raft(&self, id: NodeId) -> &RawNode {
        self.members[&id].app.raft()
    }

    /// Runs `id`'s Ready loop; every message is recorded with its sender's durable state.
    fn drive(&mut self, id: NodeId) {
        let Group {
            members,
            net,
            sent,
            drives,
            events,
            answers,
            ..
        } = self;
        let m = members.get_mut(&id).expect("member");
        let (disk, dir) = (m.disk.clone(), m.dir.clone());
        let leader = m.app.raft().is_leader();
        let before = (m.disk.file_syncs(), m.host.counters());
        let mut watch = Watch::default();
        let mut transport = |msg: Message| {
            let durable = durable_now(&disk, &dir, id);
            sent.push(Sent {
                msg: msg.clone(),
                durable,
                leader,
            });
            net.push_back(msg);
        };
        m.host
            .drive(&mut m.app, &mut transport, &mut watch)
            .expect("no fatal error");
        let after = m.host.counters();
        drives.push(DriveRecord {
            id: id.0,
            persisted: watch.persisted,
            applied: watch.applied,
            file_syncs: m.disk.file_syncs() - before.0,
            host_syncs: after.syncs - before.1.syncs,
            unsynced_writes: after.unsynced_writes - before.1.unsynced_writes,
        });
        events.extend(watch.events.into_iter().map(|e| (id, e)));
        answers.extend(m.host.take_responses(&mut m.app));
    }

    fn tick(&mut self, id: NodeId) {
        let m = self.m(id);
        m.host.tick(&mut m.app);
        self.drive(id);
    }

    /// Delivers every message in flight (and those they cause), FIFO.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            let Some(msg) = self.net.pop_front() else {
                return;
            };
            if self.cut.contains(&msg.to) || self.cut.contains(&msg.from) {
                continue;
            }
            let to = msg.to;
            let m = self.m(to);
            m.host.step(&mut m.app, msg);
            self.drive(to);
        }
        panic!("the network did not settle");
    }

    /// Ticks the given members until one of them leads; returns it.
    fn elect(&mut self, among: &[NodeId]) -> NodeId {
        for _ in 0..1_000 {
            for &id in among {
                self.tick(id);
            }
            self.settle();
            if let Some(&l) = among.iter().find(|&&id| self.raft(id).is_leader()) {
                return l;
            }
        }
        panic!("no leader among {among:?}");
    }

    /// Lets `rounds` heartbeat rounds pass on every member.
    fn run(&mut self, rounds: usize) {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for _ in 0..rounds {
            for &id in &ids {
                self.tick(id);
            }
            self.settle();
        }
    }

    fn submit(&mut self, id: NodeId, r: KvRequest) -> ReqId {
        let req = self.next_req;
        self.next_req += 1;
        let m = self.m(id);
        m.host.submit(&mut m.app, req, r);
        self.drive(id);
        req
    }

    fn applied(&self, id: NodeId) -> LogIndex {
        self.members[&id].app.applied()
    }
}

fn put(client: u64, seq: u64, key: &str, value: &str) -> KvRequest {
    Request::Write {
        client: ClientId(client),
        seq: Seq(seq),
        retry: false,
        cmd: KvCommand::Put {
            key: key.into(),
            value: value.into(),
        },
    }
}

fn get(key: &str) -> KvRequest {
    Request::Read(KvQuery::Get { key: key.into() })
}

/// Goal: a follower's append acknowledgement and every vote leave only once what they
/// promise is durable. Method: at each send, crash a fork of the sender's disk and compare.
#[test]
fn followers_and_voters_send_only_what_is_durable() {
    let mut g = Group::new(7);
    let leader = g.elect(&[NodeId(1), NodeId(2), NodeId(3)]);
    for i in 0..20 {
        g.submit(leader, put(1, i + 1, "k", &format!("v{i}")));
        g.settle();
    }
    g.run(15);
    let acks = check_sent_is_durable(&g);
    assert!(acks >= 20, "followers acknowledged appends ({acks})");
    for id in [NodeId(1), NodeId(2), NodeId(3)] {
        assert!(g.applied(id) >= LogIndex(21), "{id} applied every write");
    }
}

/// Checks every message `g` sent against the sender's durable state at that moment: an
/// append acknowledgement only for what its disk holds, a vote only once durable, and no
/// message but a pre-vote in a term its disk does not hold. Returns the acknowledgements.
fn check_sent_is_durable(g: &Group) -> usize {
    let mut acks = 0;
    for s in &g.sent {
        let pre_vote = matches!(
            s.msg.body,
            Body::RequestVote { pre_vote: true, .. }
                | Body::RequestVoteResponse { pre_vote: true, .. }
        );
        assert!(
            pre_vote || s.durable.term >= s.msg.term,
            "{} sent {} in {} with only {} durable",
            s.msg.from,
            s.msg.kind(),
            s.msg.term,
            s.durable.term
        );
        match s.msg.body {
            Body::AppendEntriesResponse {
                success: true,
                index,
                ..
            } => {
                acks += 1;
                assert!(
                    s.durable.last_index >= index,
                    "{} acknowledged {index} with only {} durable",
                    s.msg.from,
                    s.durable.last_index
                );
            }
            Body::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            } => {
                assert_eq!(
                    s.durable.vote,
                    Some(s.msg.to),
                    "vote sent before it is durable"
                );
            }
            _ => {}
        }
    }
    acks
}

/// Goal: members whose disks fill and free (partly: a write may get partway) go on without
/// writing, yet send nothing their disk does not hold — through elections among them.
/// Method: as above, with every member's disk capped at what it holds plus a few hundred
/// bytes or uncapped, changing every round, and the leader cut off now and then.
#[test]
fn members_whose_disks_fill_send_only_what_is_durable() {
    let mut g = Group::new(17);
    let all = [NodeId(1), NodeId(2), NodeId(3)];
    let mut leader = g.elect(&all);
    let mut seq = 0;
    for round in 0..60u64 {
        for &id in &all {
            let m = g.m(id);
            let slack = (round * 97 + id.0 * 31) % 400;
            let cap = (round + id.0) % 3 != 0;
            m.disk
                .set_capacity_bytes(cap.then(|| m.disk.used_bytes() + slack));
        }
        if round % 15 == 7 {
            g.cut = vec![leader];
        } else if round % 15 == 12 {
            g.cut.clear();
        }
        if let Some(&l) = all.iter().find(|&&id| g.raft(id).is_leader()) {
            leader = l;
            seq += 1;
            g.submit(l, put(1, seq, "k", &format!("v{seq}")));
        }
        g.run(2);
    }
    for &id in &all {
        g.m(id).disk.set_capacity_bytes(None);
    }
    g.cut.clear();
    g.run(30);
    let acks = check_sent_is_durable(&g);
    assert!(acks > 0, "followers acknowledged appends");
    let stalled: u64 = all
        .iter()
        .map(|id| g.members[id].host.counters().readys_unwritten)
        .sum();
    assert!(stalled > 0, "some Readys went on unwritten");
}

/// Goal: a leader sends its appends before its own sync (early send), and such entries
/// commit only through a majority that synced them: a leader whose disk fills right after
/// sending never counts them (one follower's acknowledgement is no quorum without the
/// leader's own sync), while the followers elect a new leader that commits them. Method:
/// fill the leader's disk, cut one follower off, propose, deliver.
#[test]
fn leader_sends_before_its_sync_but_commits_only_what_a_majority_synced() {
    let mut g = Group::new(11);
    let all = [NodeId(1), NodeId(2), NodeId(3)];
    let l = g.elect(&all);
    g.submit(l, put(1, 1, "a", "1"));
    g.settle();
    // Early send in the normal case: entries left the leader before they were on its disk.
    let early = g.sent.iter().any(|s| match &s.msg.body {
        Body::AppendEntries { entries, .. } => {
            s.leader
                && entries
                    .last()
                    .is_some_and(|e| e.index > s.durable.last_index)
        }
        _ => false,
    });
    assert!(early, "the leader sent appends before syncing them");
    assert!(g.members[&l].host.counters().early_sends > 0);

    // The leader's disk fills: its next write is sent, then its persistence stalls. Only
    // one follower hears it.
    let followers: Vec<NodeId> = all.iter().copied().filter(|&id| id != l).collect();
    g.cut.push(followers[1]);
    let m = g.m(l);
    m.disk.set_capacity_bytes(Some(m.disk.used_bytes()));
    let commit_before = g.raft(l).log().committed();
    let req = g.submit(l, put(1, 2, "a", "2"));
    assert!(
        g.members[&l].host.is_stalled(),
        "the leader stalled on a full disk"
    );
    let index = g.raft(l).log().last_index();
    let sent_early = g.net.iter().any(|m| match &m.body {
        Body::AppendEntries { entries, .. } => entries.iter().any(|e| e.index == index),
        _ => false,
    });
    assert!(
        sent_early,
        "the stalled leader's append left before its sync"
    );
    g.settle();
    assert_eq!(
        g.raft(l).log().committed(),
        commit_before,
        "a leader counts no entry it has not synced: one follower's ack is no quorum"
    );
    assert!(!g.answers.contains_key(&req), "the write is not answered");

    // The follower that heard it holds the entry durably; it takes over and commits it.
    g.cut.clear();
    g.cut.push(l);
    let l2 = g.elect(&followers);
    g.submit(l2, put(2, 1, "b", "x"));
    g.settle();
    for &f in &followers {
        assert!(
            g.raft(f).log().committed() >= index,
            "{f} committed the entry"
        );
    }
    let m2 = &g.members[&l2];
    assert_eq!(
        m2.app.state_machine().get(b"a"),
        Some(&b"2".to_vec()),
        "the write the old leader never synced committed through the followers"
    );
}

/// Goal: a Ready that only moves the commit index is written without a sync, while every
/// Ready that persists entries syncs once. Method: count file syncs per drive.
#[test]
fn commit_only_readys_are_written_without_a_sync() {
    let mut g = Group::new(3);
    let leader = g.elect(&[NodeId(1), NodeId(2), NodeId(3)]);
    for i in 0..10 {
        g.submit(leader, put(1, i + 1, "k", "v"));
        g.settle();
    }
    g.run(15);
    for d in &g.drives {
        assert!(
            d.file_syncs <= d.host_syncs,
            "one fdatasync per synced Ready: {d:?}"
        );
        if d.persisted > 0 {
            assert!(d.host_syncs >= 1, "entries are synced: {d:?}");
        }
    }
    let commit_only = g
        .drives
        .iter()
        .find(|d| d.id != leader.0 && d.persisted == 0 && d.applied > 0 && d.unsynced_writes > 0);
    let d = commit_only.expect("a follower learned a commit index without new entries");
    assert_eq!(d.file_syncs, 0, "a commit-only Ready is not synced: {d:?}");
    let unsynced: u64 = g.drives.iter().map(|d| d.unsynced_writes).sum();
    assert!(unsynced > 0);
}

/// Goal: a member whose disk fills stalls without panicking (a follower redirects clients; reads
/// Unavailable, no progress), reports it once, and catches up once space frees. Method:
/// cap a follower's simulated disk, write through the leader, then lift the cap.
#[test]
fn full_disk_stalls_a_member_until_space_frees_then_it_catches_up() {
    let mut g = Group::new(5);
    let l = g.elect(&[NodeId(1), NodeId(2), NodeId(3)]);
    let f = NodeId(l.0 % 3 + 1);
    g.submit(l, put(1, 1, "k", "0"));
    g.settle();
    let m = g.m(f);
    m.disk.set_capacity_bytes(Some(m.disk.used_bytes()));
    for i in 2..=6 {
        g.submit(l, put(1, i, "k", &i.to_string()));
        g.settle();
    }
    g.run(5);
    assert!(g.members[&f].host.is_stalled(), "{f} stalled");
    let stalled_at = g.applied(f);
    assert!(
        g.applied(l) >= stalled_at,
        "the leader and the other follower go on"
    );
    let w = g.submit(f, put(9, 1, "x", "y"));
    let r = g.submit(f, get("k"));
    // A stalled follower cannot touch Raft: it sends clients to the leader it knows.
    assert_eq!(g.answers[&w], Err(Error::NotLeader { leader: Some(l) }));
    assert_eq!(g.answers[&r], Err(Error::NotLeader { leader: Some(l) }));
    g.run(10);
    assert_eq!(
        g.applied(f),
        stalled_at,
        "a stalled member makes no progress"
    );
    let stalls = g
        .events
        .iter()
        .filter(|(id, e)| *id == f && matches!(e, HostEvent::Stalled { .. }))
        .count();
    assert_eq!(stalls, 1, "the stall is reported once");

    g.m(f).disk.set_capacity_bytes(None);
    g.run(20);
    assert!(!g.members[&f].host.is_stalled());
    assert!(g.events.contains(&(f, HostEvent::Resumed)));
    assert_eq!(g.applied(f), g.applied(l), "{f} caught up");
    assert_eq!(
        g.members[&f].app.state_machine().get(b"k"),
        Some(&b"6".to_vec())
    );
}

/// Goal: while disk space is low, new writes are refused before they are proposed, a
/// retry of an applied write is answered from the session table, and reads are served.
/// Method: apply a write, set disk-low on the leader, submit the retry, a new write, a read.
#[test]
fn disk_low_refuses_new_writes_but_answers_retries_from_sessions() {
    let mut g = Group::new(9);
    let l = g.elect(&[NodeId(1), NodeId(2), NodeId(3)]);
    let first = g.submit(l, put(4, 1, "k", "v"));
    g.settle();
    assert_eq!(g.answers[&first], Ok(KvOutput::Done));
    let last = g.raft(l).log().last_index();
    assert!(g.m(l).host.set_disk_low(true));

    let retry = g.submit(l, put(4, 1, "k", "v"));
    let new = g.submit(l, put(4, 2, "k", "w"));
    let read = g.submit(l, get("k"));
    g.settle();
    g.run(2);
    assert_eq!(
        g.answers[&retry],
        Ok(KvOutput::Done),
        "retry answered from sessions"
    );
    assert_eq!(g.answers[&new], Err(Error::NoSpace), "new write refused");
    assert_eq!(g.answers[&read], Ok(KvOutput::Value(Some(b"v".to_vec()))));
    assert_eq!(g.raft(l).log().last_index(), last, "nothing was proposed");
    assert!(g.members[&l].host.no_space());

    g.m(l).host.set_disk_low(false);
    let again = g.submit(l, put(4, 2, "k", "w"));
    g.settle();
    assert_eq!(g.answers[&again], Ok(KvOutput::Done));
}

/// Goal: a follower whose disk is low does not refuse writes for the whole group: it sends
/// the client to the leader, which has space. Method: elect, mark a follower disk-low,
/// submit a write there. (Found in review: it answered NoSpace, a definite failure.)
#[test]
fn a_disk_low_follower_redirects_writes_to_the_leader() {
    let mut g = Group::new(9);
    let l = g.elect(&[NodeId(1), NodeId(2), NodeId(3)]);
    let f = [NodeId(1), NodeId(2), NodeId(3)]
        .into_iter()
        .find(|&id| id != l)
        .expect("a follower");
    assert!(g.m(f).host.set_disk_low(true));
    let w = g.submit(f, put(5, 1, "k", "v"));
    g.settle();
    assert_eq!(g.answers[&w], Err(Error::NotLeader { leader: Some(l) }));
}
