//! The admin port: plain HTTP/1.1 for operators, load balancers and Prometheus, separate
//! from the gRPC port (`--admin-listen`; default: the gRPC port + 1000 on the same address,
//! see [`crate::config::AdminListen`]). docs/operations.md is the user's page.
//!
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]).
//! - `GET /health`: JSON per hosted group (has a leader, node thread alive, applied
//!   recently); 200 when every group here is healthy, 503 otherwise.
//! - `GET /livez`: 200 while the process serves HTTP at all.
//! - `GET /readyz`: 200 once every group here knows a leader, 503 before.
//! - `GET /status`: the JSON `shardkv status -w json` shows, for this process's groups.
//!
//! Anything else is 404 (405 for another method on a known path). Health and readiness
//! read what the node threads last published, so they answer even when a node thread is
//! stuck (and say so); `/status` asks every node thread at once, each bounded by its
//! status timeout.
//!
//! Bounded like the gRPC port: at most [`ADMIN_CONNECTIONS_MAX`] connections (more are
//! closed at once), a request's headers must arrive within [`HEADER_READ_TIMEOUT`], a
//! connection lives at most [`CONNECTION_LIFETIME`]; request bodies are never read. Accept
//! errors are logged at most once per [`ACCEPT_ERROR_LOG_EVERY`] and retried after a pause.

use crate::metrics::{GroupHealth, MetricsRegistry, ProcessMetrics};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use shardkv_net::{NodeStatus, role_name};
use shardkv_rsm::Error;
use shardkv_types::Gid;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Open admin connections at most.
pub const ADMIN_CONNECTIONS_MAX: usize = 64;
/// A request's headers must arrive within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection (with keep-alive, several requests) is closed after this.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Accept errors and refused connections are logged at most this often.
pub const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// The pause after an accept error (e.g. out of descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A group's status, asked of its node thread.
pub type StatusFuture = Pin<Box<dyn Future<Output = Result<NodeStatus, Error>> + Send>>;
pub type StatusFn = Box<dyn Fn() -> StatusFuture + Send + Sync>;

/// What the admin port serves.
pub struct Admin {
    pub metrics: Arc<ProcessMetrics>,
    registry: MetricsRegistry,
    /// Each hosted group's status query, by group.
    status: Vec<(Gid, StatusFn)>,
    /// The gRPC address, shown as the members' address in `/status`.
    grpc_addr: SocketAddr,
}

/// A response: status, content type and body.
type Reply = (StatusCode, &'static str, String);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

impl Admin {
    pub fn new(
        metrics: Arc<ProcessMetrics>,
        status: Vec<(Gid, StatusFn)>,
        grpc_addr: SocketAddr,
    ) -> Admin {
        Admin {
            registry: MetricsRegistry::new(metrics.clone()),
            metrics,
            status,
            grpc_addr,
        }
    }

    /// The answer to `method path` (the query string, if any, is ignored).
    pub async fn route(&self, method: &Method, path: &str) -> Reply {
        let path = path.split('?').next().unwrap_or(path);
        let known = ["/metrics", "/health", "/livez", "/readyz", "/status"];
        if !known.contains(&path) {
            return (
                StatusCode::NOT_FOUND,
                TEXT,
                format!("no such page: {path}\n"),
            );
        }
        if method != Method::GET && method != Method::HEAD {
            return (StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n".into());
        }
        match path {
            "/metrics" => (
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                self.registry.encode(),
            ),
            "/health" => self.health(),
            "/livez" => (StatusCode::OK, TEXT, "ok\n".into()),
            "/readyz" => self.ready(),
            _ => (StatusCode::OK, JSON, self.status_json().await.to_string()),
        }
    }

    fn healths(&self) -> Vec<GroupHealth> {
        let now = Instant::now();
        self.metrics.groups.iter().map(|g| g.health(now)).collect()
    }

    fn health(&self) -> Reply {
        let groups = self.healths();
        let healthy = groups.iter().all(GroupHealth::healthy);
        let body = serde_json::json!({
            "healthy": healthy,
            "groups": groups.iter().map(|h| serde_json::json!({
                "gid": h.gid.0,
                "healthy": h.healthy(),
                "has_leader": h.has_leader,
                "applied_recently": h.applied_recently,
                "node_thread_alive": h.thread_alive,
            })).collect::<Vec<_>>(),
        });
        (up_or_unavailable(healthy), JSON, body.to_string())
    }

    fn ready(&self) -> Reply {
        let waiting: Vec<String> = self
            .healths()
            .iter()
            .filter(|h| !h.has_leader)
            .map(|h| h.gid.0.to_string())
            .collect();
        match waiting.is_empty() {
            true => (StatusCode::OK, TEXT, "ready\n".into()),
            false => (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!(
                    "not ready: no leader known for group {}\n",
                    waiting.join(", ")
                ),
            ),
        }
    }

    /// `{"member": ID, "groups": [{"gid": G, "members": [MEMBER]}]}` with each MEMBER as
    /// `shardkv status -w json` shows it.
    /// The groups are asked concurrently, each bounded by its status timeout.
    async fn status_json(&self) -> serde_json::Value {
        let asked: Vec<_> = (self.status.iter())
            .map(|(gid, ask)| (*gid, tokio::spawn(ask())))
            .collect();
        let mut groups = Vec::with_capacity(asked.len());
        for (gid, answer) in asked {
            let answer = answer.await.unwrap_or_else(|e| {
                Err(Error::Unavailable {
                    reason: format!("the status query failed: {e}"),
                })
            });
            let member = member_json(&self.grpc_addr.to_string(), &answer);
            groups.push(serde_json::json!({ "gid": gid.0, "members": [member] }));
        }
        serde_json::json!({ "member": self.metrics.member.0, "groups": groups })
    }
}

fn up_or_unavailable(ok: bool) -> StatusCode {
    match ok {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// One member's status in the JSON of `shardkv status -w json`.
/// One definition for the admin port's `/status` and the CLI's `status -w json`.
/// A group's members as JSON: `[{"id", "addr", "learner", "match"}]` (`match` is `null`
/// unless the leader reported it). Shared with `shardkv member list -w json`.
pub fn membership_json(members: &[shardkv_net::MemberInfo]) -> serde_json::Value {
    members
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id.0,
                "addr": m.addr,
                "learner": m.learner,
                "match": m.matched.map(|i| i.0),
            })
        })
        .collect()
}

pub fn member_json<E: std::fmt::Display>(
    addr: &str,
    r: &Result<NodeStatus, E>,
) -> serde_json::Value {
    match r {
        Ok(s) => {
            let mut v = serde_json::json!({
                "id": s.id.0,
                "address": addr,
                "reachable": true,
                "role": role_name(s.role),
                "term": s.term.0,
                "leader": s.leader.map(|l| l.0),
                "commit": s.commit.0,
                "applied": s.applied.0,
                "last_index": s.last_index.0,
                "snapshot_index": s.snapshot_index.0,
                "raft_state_bytes": s.raft_state_bytes,
                "no_space": s.no_space,
            });
            if !s.members.is_empty() {
                // The group's membership as this member's log has it (`match` on the leader).
                v["membership"] = membership_json(&s.members);
            }
            if let Some(h) = &s.shards {
                v["config"] = h.config.0.into();
                v["shards"] = h
                    .shards
                    .iter()
                    .map(|(id, p)| serde_json::json!({"shard": id.0, "state": p.name()}))
                    .collect();
            }
            v
        }
        Err(e) => serde_json::json!({
            "address": addr,
            "reachable": false,
            "error": e.to_string(),
        }),
    }
}

/// Serves `admin` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    let slots = Arc::new(Semaphore::new(ADMIN_CONNECTIONS_MAX));
    let mut last_logged: Option<Instant> = None;
    let mut should_log = move || {
        let now = Instant::now();
        let due = last_logged.is_none_or(|t| now.duration_since(t) >= ACCEPT_ERROR_LOG_EVERY);
        if due {
            last_logged = Some(now);
        }
        due
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if should_log() {
                    tracing::warn!(error = %e, "admin port: cannot accept; pausing");
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if should_log() {
                tracing::warn!(%peer, limit = ADMIN_CONNECTIONS_MAX,
                    "admin port: too many connections; closing new ones");
            }
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(respond(&admin, &req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
    }
}

async fn respond(admin: &Admin, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = admin.route(req.method(), req.uri().path()).await;
    let body = match *req.method() == Method::HEAD {
        true => Bytes::new(),
        false => Bytes::from(body),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{GroupMetrics, RaftView};
    use shardkv_raft::Role;
    use shardkv_types::{LogIndex, NodeId, Term};

    fn status(gid: Gid) -> NodeStatus {
        NodeStatus {
            id: NodeId(2),
            role: Role::Follower,
            term: Term(3),
            leader: Some(NodeId(1)),
            commit: LogIndex(7),
            applied: LogIndex(7),
            last_index: LogIndex(7),
            snapshot_index: LogIndex(0),
            raft_state_bytes: 100,
            no_space: false,
            group: gid,
            shards: None,
            members: Vec::new(),
            hosted: Vec::new(),
            redis_addr: None,
        }
    }

    fn admin() -> (Admin, Vec<Arc<GroupMetrics>>) {
        let groups: Vec<Arc<GroupMetrics>> = [(0, "ctrl"), (1, "shard")]
            .into_iter()
            .map(|(g, s)| Arc::new(GroupMetrics::new(Gid(g), s)))
            .collect();
        let metrics = Arc::new(ProcessMetrics::new(NodeId(2), groups.clone()));
        let asks: Vec<(Gid, StatusFn)> = groups
            .iter()
            .map(|g| {
                let gid = g.gid;
                let f: StatusFn = Box::new(move || Box::pin(async move { Ok(status(gid)) }));
                (gid, f)
            })
            .collect();
        let addr = "127.0.0.1:7002".parse().expect("addr");
        (Admin::new(metrics, asks, addr), groups)
    }

    fn publish(g: &GroupMetrics, leader: Option<u64>) {
        let v = RaftView {
            leader: leader.map(NodeId),
            commit: 7,
            applied: 7,
            ..RaftView::default()
        };
        g.publish(&v, Instant::now());
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn readiness_and_health_follow_what_the_groups_published() {
        // Goal: /readyz and /health follow the published views, per group; method: publish leaders
        // one group at a time.
        let (admin, groups) = admin();
        let get = |path| run(admin.route(&Method::GET, path));
        assert_eq!(get("/livez").0, StatusCode::OK);
        assert_eq!(get("/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get("/health").0, StatusCode::SERVICE_UNAVAILABLE);
        publish(&groups[0], Some(1));
        let (code, _, body) = get("/readyz");
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("group 1"), "{body}");
        publish(&groups[1], Some(3));
        assert_eq!(get("/readyz").0, StatusCode::OK);
        let (code, ty, body) = get("/health");
        assert_eq!((code, ty), (StatusCode::OK, JSON));
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["healthy"], true);
        assert_eq!(v["groups"][1]["gid"], 1);
        publish(&groups[1], None);
        let (code, _, body) = get("/health");
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["groups"][1]["has_leader"], false);
        assert_eq!(v["groups"][0]["healthy"], true);
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        // Goal: the routing table; method: unknown paths, a POST, a query string.
        let (admin, _) = admin();
        assert_eq!(run(admin.route(&Method::GET, "/")).0, StatusCode::NOT_FOUND);
        assert_eq!(
            run(admin.route(&Method::GET, "/metricsx")).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            run(admin.route(&Method::POST, "/metrics")).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            run(admin.route(&Method::GET, "/livez?verbose")).0,
            StatusCode::OK
        );
    }

    #[test]
    fn status_is_the_json_of_shardkv_status_per_group() {
        // Goal: /status has the member fields of `shardkv status -w json`, per group; method:
        // canned statuses.
        let (admin, _) = admin();
        let (code, ty, body) = run(admin.route(&Method::GET, "/status"));
        assert_eq!((code, ty), (StatusCode::OK, JSON));
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["member"], 2);
        assert_eq!(v["groups"][0]["gid"], 0);
        let m = &v["groups"][1]["members"][0];
        assert_eq!(m["id"], 2);
        assert_eq!(m["address"], "127.0.0.1:7002");
        assert_eq!(m["role"], "follower");
        assert_eq!(m["leader"], 1);
        assert_eq!(m["applied"], 7);
    }

    #[test]
    fn metrics_name_every_group_and_member() {
        // Goal: the exposition names each series with group and member; method: exact lines of one
        // scrape.
        let (admin, groups) = admin();
        publish(&groups[1], Some(1));
        let (code, ty, body) = run(admin.route(&Method::GET, "/metrics"));
        assert_eq!((code, ty), (StatusCode::OK, crate::metrics::CONTENT_TYPE));
        for line in [
            "shardkv_server_has_leader{group=\"1\",member=\"2\"} 1",
            "shardkv_server_has_leader{group=\"0\",member=\"2\"} 0",
            "shardkv_server_proposals_committed_total{group=\"1\",member=\"2\"} 7",
            "shardkv_server_leader_changes_seen_total{group=\"1\",member=\"2\"} 1",
            "shardkv_shard_moved_bytes_total{group=\"1\",member=\"2\"} 0",
            "shardkv_network_peer_dropped_messages_total{group=\"1\",member=\"2\",reason=\"inbox_full\"} 0",
            "shardkv_server_client_requests_total{group=\"1\",member=\"2\",op=\"put\",outcome=\"ok\"} 0",
            "shardkv_disk_wal_fsync_duration_seconds_bucket{group=\"1\",member=\"2\",le=\"+Inf\"} 0",
        ] {
            assert!(body.contains(line), "missing {line:?} in\n{body}");
        }
        assert!(
            !body.contains("shardkv_shard_moved_bytes_total{group=\"0\""),
            "shard metrics only for shard groups"
        );
        assert!(
            body.contains(
                "shardkv_server_client_requests_total{group=\"0\",member=\"2\",op=\"join\",outcome=\"ok\"} 0"
            ),
            "the controller counts its own ops"
        );
        assert!(
            !body.contains(
                "shardkv_server_client_requests_total{group=\"0\",member=\"2\",op=\"put\""
            ),
            "the controller serves no KV requests"
        );
    }
}
