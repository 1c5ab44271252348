//! `shardkv admin` as a separate process: its output and exit codes against an in-test
//! controller service on loopback (canned answers: this is about the CLI, the controller
//! itself is tested in `shardkv-ctrl` and `shardkv-client`), a clear failure when nothing
//! listens or the server hosts no controller, and usage errors. Outcomes, never timing.

mod common;

use common::cluster::{Cluster, free_ports, run_cli};
use shardkv_client::{Config, ConfigNum, CtrlError, CtrlOutput, CtrlReply, Error, Gid};
use shardkv_net::convert::CtrlRequest;
use shardkv_net::{CtrlHandler, ctrl_service};
use shardkv_types::NodeId;
use std::process::Output;
use std::sync::Arc;
use tokio_stream::wrappers::TcpListenerStream;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `shardkv admin ARGS --endpoints ENDPOINTS`, ignoring the caller's environment.
fn admin(endpoints: &str, args: &[&str]) -> Output {
    let mut argv = vec!["admin"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--endpoints", endpoints, "--timeout", "2s"]);
    run_cli(&argv, &[("SHARDKV_CTRL_ENDPOINTS", "")], None)
}

/// Canned answers: every query gets config 1 (g1 owns shards 0-1, g2 owns 2-3), every join
/// and move is applied as config 2, every leave is refused (not a member).
struct Canned;

impl CtrlHandler for Canned {
    fn node_id(&self) -> NodeId {
        NodeId(1)
    }

    async fn ctrl_request(&self, req: CtrlRequest) -> Result<CtrlOutput, Error> {
        use shardkv_client::CtrlCommand::Leave;
        Ok(match req {
            CtrlRequest::Read(_) => {
                let mut c = Config::initial(4);
                c.num = ConfigNum(1);
                c.groups
                    .insert(Gid(1), vec!["a:7001".into(), "b:7002".into()]);
                c.groups.insert(Gid(2), vec!["c:7001".into()]);
                c.shards = [1, 1, 2, 2].map(Gid).to_vec();
                Ok(CtrlReply::Config(c))
            }
            CtrlRequest::Write {
                cmd: Leave { gids },
                ..
            } => Err(CtrlError::NotMember(gids[0])),
            CtrlRequest::Write { .. } => Ok(CtrlReply::Applied { num: ConfigNum(2) }),
        })
    }
}

/// Goal: each command prints what the docs say and exits 0, or 1 with the controller's
/// reason when refused. Method: the CLI against the Ctrl service over canned answers.
#[test]
fn admin_commands_print_results_and_refusals() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = shardkv_net::tonic::transport::Server::builder()
            .add_service(ctrl_service(Arc::new(Canned)))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        addr.to_string()
    });

    let q = admin(&addr, &["query"]);
    assert!(q.status.success(), "{}", stderr(&q));
    assert_eq!(
        stdout(&q),
        "config 1 (4 shards)\n\
         GID  SHARDS  RANGES  SERVERS\n\
         1         2  0-1     a:7001,b:7002\n\
         2         2  2-3     c:7001\n"
    );
    let q = admin(&addr, &["query", "1", "-w", "json"]);
    assert!(q.status.success(), "{}", stderr(&q));
    let j: serde_json::Value = serde_json::from_str(&stdout(&q)).expect("json");
    assert_eq!(j["num"], 1);
    assert_eq!(j["shards"], serde_json::json!([1, 1, 2, 2]));
    assert_eq!(j["groups"]["1"], serde_json::json!(["a:7001", "b:7002"]));

    let join = admin(&addr, &["join", "3=d:7001,e:7002", "4=f:7001"]);
    assert!(join.status.success(), "{}", stderr(&join));
    assert_eq!(stdout(&join), "OK: config 2\n");
    let mv = admin(&addr, &["move", "0", "2", "-w", "json"]);
    assert!(mv.status.success(), "{}", stderr(&mv));
    assert_eq!(stdout(&mv).trim(), r#"{"applied":true,"config":2}"#);

    let leave = admin(&addr, &["leave", "9"]);
    assert_eq!(leave.status.code(), Some(1), "a refusal exits 1");
    assert!(
        stderr(&leave).contains("refused by the controller: group g9 is not a member"),
        "{}",
        stderr(&leave)
    );
    let leave = admin(&addr, &["leave", "9", "-w", "json"]);
    assert_eq!(leave.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_str(&stdout(&leave)).expect("json");
    assert_eq!(j["applied"], false);
    assert_eq!(j["refused"]["code"], "not_member");
}

/// Goal: with no controller reachable, admin exits 1 naming the address. Method: a port
/// nothing listens on (bound by the OS, then released).
#[test]
fn admin_query_with_nothing_listening_exits_1_with_a_clear_message() {
    let endpoint = format!("127.0.0.1:{}", free_ports(1)[0]);
    let o = admin(&endpoint, &["query"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("unavailable"), "{err}");
    assert!(err.contains(&endpoint), "names the address: {err}");
    assert!(stdout(&o).is_empty());
}

/// Goal: a server that hosts no controller (today's `shardkv server`) is reported as such,
/// and nothing is applied. Method: one real server process; admin join against it.
#[test]
fn admin_against_a_server_without_a_controller_says_so() {
    let c = Cluster::start(1, &[]);
    c.leader();
    let o = admin(&c.endpoints(), &["join", "1=a:7001"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not serve the shard controller"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("not applied"), "{}", stderr(&o));
}

/// Goal: malformed commands exit 2 before any RPC. Method: bad syntax against an address
/// nothing listens on (a usage error must not wait for it).
#[test]
fn admin_bad_syntax_exits_2() {
    let endpoint = format!("127.0.0.1:{}", free_ports(1)[0]);
    for args in [
        &["join", "1"][..],
        &["join", "x=a:1"],
        &["join", "1=a:1", "1=b:1"],
        &["leave"],
        &["move", "x", "1"],
        &["query", "-w", "yaml"],
    ] {
        let o = admin(&endpoint, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?} explains itself");
    }
}
