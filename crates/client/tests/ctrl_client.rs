//! `CtrlClient` against the real Ctrl gRPC service on loopback (ports chosen by the OS),
//! served by an in-test handler over a real `ShardCtrl` plus the session table a replica
//! keeps: join / leave / move / query, every refusal as a `CtrlError` with its message,
//! leader hints followed, a lost reply retried with the same sequence number and applied
//! once, and a server without the Ctrl service reported clearly. Outcomes are checked, never
//! timing.

use shardkv_client::{
    ClientOptions, Config, ConfigNum, CtrlClient, CtrlError, Error, Gid, Outcome, ShardId,
};
use shardkv_ctrl::{CtrlOutput, ShardCtrl};
use shardkv_kv::{KvOutput, KvRequest};
use shardkv_net::convert::CtrlRequest;
use shardkv_net::{
    CtrlHandler, Handler, Message, NodeStatus, OneGroup, RaftService, ctrl_service, router,
};
use shardkv_rsm::Request;
use shardkv_types::{ClientId, NodeId, Seq};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

const SHARDS: u32 = 8;

/// The replicated state the test's members share: the controller and the session table
/// (per client, the highest applied sequence number and its reply) that `rsm` would keep.
struct Group {
    ctrl: ShardCtrl,
    sessions: BTreeMap<ClientId, (Seq, CtrlOutput)>,
    /// Writes applied to `ctrl` (a deduplicated retry is not counted).
    applied: u64,
}

impl Group {
    fn new() -> Arc<Mutex<Group>> {
        Arc::new(Mutex::new(Group {
            ctrl: ShardCtrl::new(SHARDS).expect("valid shard count"),
            sessions: BTreeMap::new(),
            applied: 0,
        }))
    }

    fn serve(&mut self, req: CtrlRequest) -> Result<CtrlOutput, Error> {
        match req {
            Request::Read(q) => Ok(self.ctrl.read(&q)),
            Request::Write {
                client, seq, cmd, ..
            } => {
                match self.sessions.get(&client) {
                    Some((done, out)) if *done == seq => return Ok(out.clone()),
                    Some((done, _)) if *done > seq => return Err(Error::Stale),
                    _ => {}
                }
                let out = self.ctrl.execute(&cmd);
                self.applied += 1;
                self.sessions.insert(client, (seq, out.clone()));
                Ok(out)
            }
        }
    }
}

/// One member: serves from the group if it is the leader, else answers `NotLeader` with
/// its hint. Can lose one reply: it applies the request, then answers only after the
/// client has given up on the attempt.
struct Member {
    id: NodeId,
    /// `Some(l)` with `l != id`: this member is a follower that believes `l` leads.
    leader: Option<NodeId>,
    group: Arc<Mutex<Group>>,
    requests: AtomicU64,
    lose_next_reply: AtomicBool,
    /// Takes requests and never answers (a SIGSTOPped process whose socket still accepts).
    frozen: AtomicBool,
}

impl Member {
    fn new(id: u64, leader: u64, group: &Arc<Mutex<Group>>) -> Arc<Member> {
        Arc::new(Member {
            id: NodeId(id),
            leader: Some(NodeId(leader)),
            group: group.clone(),
            requests: AtomicU64::new(0),
            lose_next_reply: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
        })
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Longer than the attempt timeout of [`opts`]: a reply this late is lost to the client.
const LATE: Duration = Duration::from_secs(2);

impl CtrlHandler for Member {
    fn node_id(&self) -> NodeId {
        self.id
    }

    async fn ctrl_request(&self, req: CtrlRequest) -> Result<CtrlOutput, Error> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.leader != Some(self.id) {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        let out = self.group.lock().expect("lock").serve(req);
        if self.lose_next_reply.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(LATE).await;
        }
        out
    }
}

/// Serves the Ctrl service for `member` on a loopback port chosen by the OS.
async fn serve(member: Arc<Member>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = tonic::transport::Server::builder()
        .add_service(ctrl_service(member))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr
}

fn opts() -> ClientOptions {
    ClientOptions {
        attempt_timeout: Duration::from_millis(500),
        op_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

/// A group of one member, its leader, and a client of it.
async fn one_member() -> (Arc<Mutex<Group>>, Arc<Member>, CtrlClient) {
    let group = Group::new();
    let member = Member::new(1, 1, &group);
    let addr = serve(member.clone()).await;
    let client = CtrlClient::connect_with(&[addr.to_string()], opts()).expect("endpoints");
    (group, member, client)
}

fn servers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Goal: each controller operation does what it says end to end. Method: one member over a
/// real `ShardCtrl`; join two groups, move a shard, leave one, and read every config back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_client_joins_moves_leaves_and_queries_over_grpc() {
    let (_, _, mut c) = one_member().await;
    let groups = BTreeMap::from([
        (Gid(1), servers(&["a:1", "b:1", "c:1"])),
        (Gid(2), servers(&["d:1"])),
    ]);
    assert_eq!(c.join(groups.clone()).await, Ok(Ok(ConfigNum(1))));
    let c1 = c.query(None).await.expect("query");
    assert_eq!(c1.num, ConfigNum(1));
    assert_eq!(c1.groups, groups);
    assert!(c1.is_balanced() && c1.check().is_ok());
    assert_eq!(c1.shards_of(Gid(1)).len(), 4);

    let shard = c1.shards_of(Gid(1))[0];
    assert_eq!(c.move_shard(shard, Gid(2)).await, Ok(Ok(ConfigNum(2))));
    let c2 = c.query(Some(ConfigNum(2))).await.expect("query c2");
    assert_eq!(c2.owner(shard), Some(Gid(2)));

    assert_eq!(c.leave(&[Gid(1)]).await, Ok(Ok(ConfigNum(3))));
    let c3 = c.query(None).await.expect("query latest");
    assert_eq!(c3.num, ConfigNum(3));
    assert_eq!(c3.shards, vec![Gid(2); SHARDS as usize]);
    assert_eq!(
        c.query(Some(ConfigNum(0))).await,
        Ok(Config::initial(SHARDS)),
        "old configs never change"
    );
    assert_eq!(
        c.query(Some(ConfigNum(99))).await.map(|c| c.num),
        Ok(ConfigNum(3))
    );
}

/// Goal: every refusal comes back as its `CtrlError`, with its message, and changes
/// nothing. Method: one bad command of each kind against a controller with one member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_back_as_ctrl_errors_and_change_nothing() {
    let (group, _, mut c) = one_member().await;
    let one = BTreeMap::from([(Gid(1), servers(&["a:1"]))]);
    assert_eq!(c.join(one.clone()).await, Ok(Ok(ConfigNum(1))));
    let refused = [
        (c.join(BTreeMap::new()).await, CtrlError::JoinEmpty),
        (
            c.join(BTreeMap::from([(Gid(0), servers(&["x:1"]))])).await,
            CtrlError::ReservedGid,
        ),
        (c.join(one.clone()).await, CtrlError::AlreadyMember(Gid(1))),
        (
            c.join(BTreeMap::from([(Gid(3), vec![])])).await,
            CtrlError::NoServers(Gid(3)),
        ),
        (c.leave(&[]).await, CtrlError::LeaveEmpty),
        (
            c.leave(&[Gid(1), Gid(1)]).await,
            CtrlError::DuplicateGid(Gid(1)),
        ),
        (c.leave(&[Gid(9)]).await, CtrlError::NotMember(Gid(9))),
        (
            c.move_shard(ShardId(0), Gid(9)).await,
            CtrlError::NotMember(Gid(9)),
        ),
        (
            c.move_shard(ShardId(99), Gid(1)).await,
            CtrlError::ShardOutOfRange {
                shard: ShardId(99),
                shards: SHARDS,
            },
        ),
    ];
    for (got, want) in refused {
        assert_eq!(got, Ok(Err(want.clone())));
    }
    let not_member = c
        .leave(&[Gid(9)])
        .await
        .expect("served")
        .expect_err("refused");
    assert_eq!(not_member.to_string(), "group g9 is not a member");
    assert_eq!(c.query(None).await.map(|c| c.num), Ok(ConfigNum(1)));
    assert_eq!(group.lock().expect("lock").ctrl.configs().len(), 2);
}

/// Goal: a client that first asks a follower follows its hint to the leader and stays
/// there. Method: three members with node ids 11-13 (endpoints given as ID=HOST:PORT); 11
/// and 12 answer NotLeader naming 13; count who was asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_leader_hints_are_followed_to_the_leader() {
    let group = Group::new();
    let members: Vec<Arc<Member>> = [11, 12, 13].map(|id| Member::new(id, 13, &group)).to_vec();
    let mut endpoints = Vec::new();
    for m in &members {
        endpoints.push(format!("{}={}", m.id.0, serve(m.clone()).await));
    }
    for _ in 0..4 {
        // A fresh session picks its first server at random: some start at a follower.
        let mut c = CtrlClient::connect_with(&endpoints, opts()).expect("endpoints");
        let gid = Gid(group.lock().expect("lock").ctrl.latest().num.0 + 1);
        let num = c.join(BTreeMap::from([(gid, servers(&["a:1"]))])).await;
        assert_eq!(num.map(|r| r.map(|n| n.0)), Ok(Ok(gid.0)));
        let asked_followers = members[0].requests() + members[1].requests();
        for _ in 0..3 {
            assert_eq!(c.query(None).await.map(|c| c.num.0), Ok(gid.0));
        }
        assert_eq!(
            members[0].requests() + members[1].requests(),
            asked_followers,
            "once the leader is known, followers are not asked again"
        );
    }
    let followers = members[0].requests() + members[1].requests();
    assert!(
        followers <= 4,
        "at most one follower per session: {followers}"
    );
    assert_eq!(members[2].requests(), 4 * 4);
    assert_eq!(group.lock().expect("lock").applied, 4);
}

/// Goal: a write whose reply was lost is retried with the same sequence number and applied
/// once. Method: the member applies the join, then answers after the client gave up on the
/// attempt; the client retries; count the writes applied and the configs made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_is_retried_with_the_same_seq_and_applied_once() {
    let (group, member, mut c) = one_member().await;
    member.lose_next_reply.store(true, Ordering::SeqCst);
    let joined = c.join(BTreeMap::from([(Gid(1), servers(&["a:1"]))])).await;
    assert_eq!(
        joined,
        Ok(Ok(ConfigNum(1))),
        "the retry gets the stored reply"
    );
    assert!(member.requests() >= 2, "the join was retried");
    {
        let g = group.lock().expect("lock");
        assert_eq!(g.applied, 1, "applied once");
        assert_eq!(g.ctrl.configs().len(), 2, "one new config");
    }
    let next = c.join(BTreeMap::from([(Gid(2), servers(&["b:1"]))])).await;
    assert_eq!(next, Ok(Ok(ConfigNum(2))), "the next write has a new seq");
}

/// Answers nothing useful: a stand-in for a server that hosts no controller replica.
struct KvOnly;

impl Handler for KvOnly {
    fn node_id(&self) -> NodeId {
        NodeId(1)
    }

    async fn request(&self, _: shardkv_types::Gid, _: KvRequest) -> Result<KvOutput, Error> {
        Err(Error::Busy)
    }

    async fn status(&self) -> Result<NodeStatus, Error> {
        Err(Error::Busy)
    }

    fn raft_messages(&self, _: NodeId, _: Vec<Message>) {}
}

/// Goal: a server that hosts no controller (today's `shardkv server`: Kv and Raft only)
/// is reported as such, as surely not applied. Method: the production router without
/// `with_ctrl`, then a join and a query against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_ctrl_service_is_reported_clearly() {
    let handler = Arc::new(KvOnly);
    let raft = RaftService::new(
        1,
        Arc::new(OneGroup {
            group: Gid(1),
            handler: handler.clone(),
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let mut builder = tonic::transport::Server::builder();
    let server =
        router(&mut builder, handler, raft).serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    let opts = ClientOptions {
        attempts_max: 3,
        ..opts()
    };
    let mut c = CtrlClient::connect_with(&[addr.to_string()], opts).expect("endpoints");
    let err = c
        .join(BTreeMap::from([(Gid(1), servers(&["a:1"]))]))
        .await
        .expect_err("not served");
    assert_eq!(err.outcome(), Outcome::Failed, "{err}");
    assert!(
        err.to_string()
            .contains("does not serve the shard controller"),
        "{err}"
    );
    let err = c.query(None).await.expect_err("not served");
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
}

/// Goal: a frozen leader (it takes the request and never answers, like a SIGSTOPped
/// process) does not cost a client its attempt timeout: after a short silence the same
/// request goes to another member, and the write applies once. Method: member 1 frozen,
/// member 2 the new leader, member 3 still naming the frozen one; attempts may take 60 s
/// but an operation only 10 s, so an operation that waited for the frozen member would
/// fail; every one must succeed, and some sessions must have asked the frozen member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_hedged_around_within_the_operation_deadline() {
    let group = Group::new();
    let frozen = Member::new(1, 1, &group);
    frozen.frozen.store(true, Ordering::SeqCst);
    let members = [frozen, Member::new(2, 2, &group), Member::new(3, 1, &group)];
    let mut endpoints = Vec::new();
    for m in &members {
        endpoints.push(format!("{}={}", m.id.0, serve(m.clone()).await));
    }
    let opts = ClientOptions {
        attempt_timeout: Duration::from_secs(60),
        op_timeout: Duration::from_secs(10),
        hedge_after: Duration::from_millis(100),
        ..ClientOptions::default()
    };
    let mut joins = 0;
    for _ in 0..30 {
        if members[0].requests() >= 3 {
            break;
        }
        let mut c = CtrlClient::connect_with(&endpoints, opts.clone()).expect("endpoints");
        let gid = Gid(joins + 1);
        let num = c.join(BTreeMap::from([(gid, servers(&["a:1"]))])).await;
        joins += 1;
        assert_eq!(num, Ok(Ok(ConfigNum(joins))), "join {joins}");
    }
    assert!(
        members[0].requests() >= 3,
        "sessions asked the frozen member"
    );
    assert_eq!(
        group.lock().expect("lock").applied,
        joins,
        "each applied once"
    );
}

/// Goal: a member that refuses connections is reported as such, not as a bare "transport
/// error". Method: a port with no listener (bound, then closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_named_in_the_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let opts = ClientOptions {
        attempts_max: 2,
        ..opts()
    };
    let mut c = CtrlClient::connect_with(&[addr.to_string()], opts).expect("endpoints");
    let err = c.query(None).await.expect_err("nothing listens");
    let text = err.to_string().to_lowercase();
    assert!(text.contains("connection refused"), "{err}");
    assert_eq!(err.outcome(), Outcome::Failed, "{err}");
}
