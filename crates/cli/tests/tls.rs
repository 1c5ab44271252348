//! Real processes: TLS with mutual authentication (`shardkv up --tls`). A client with the
//! printed flags writes and reads; a client without a certificate, with one from another
//! CA, or in plaintext is refused with a message that says why; a member's certificate
//! cannot speak for another member on the Raft service (the forged batch is dropped and
//! logged, the group's term does not move); a client certificate cannot use the Raft or
//! Shard service.
//!
//! Outcomes only: every wait is a bounded poll, nothing depends on speed.

mod common;

use common::cluster::{LEADER_WAIT, run_cli, wait_until};
use common::up::Up;
use rcgen::{CertificateParams, KeyPair};
use shardkv_client::{Dial, Gid, fetch_group_status_with};
use shardkv_net::pb::raft_client::RaftClient;
use shardkv_net::pb::shard_client::ShardClient;
use shardkv_net::pb::{RaftBatch, ShardCall};
use shardkv_net::tonic::transport::{Channel, Endpoint};
use shardkv_net::{Body, Message, cluster_id_from_token, convert};
use shardkv_types::{NodeId, Term};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A term no member reaches on its own in a test: a member that stepped the forged message
/// would jump to it.
const FORGED_TERM: u64 = 1_000_000;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The client flags `up --tls` printed: `--cacert X --cert Y --key Z`.
fn printed_flags(text: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("--cacert "))
        .unwrap_or_else(|| panic!("up printed no client flags:\n{text}"));
    line.split_whitespace().map(String::from).collect()
}

fn cli(up: &Up, flags: &[String], args: &[&str]) -> Output {
    cli_within(up, flags, args, "3s")
}

/// [`cli`] with `--timeout timeout`.
fn cli_within(up: &Up, flags: &[String], args: &[&str], timeout: &str) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(flags.iter().map(String::as_str));
    all.extend(["--timeout", timeout]);
    let env = [
        ("SHARDKV_ENDPOINTS", up.endpoints.as_str()),
        ("SHARDKV_CTRL_ENDPOINTS", up.endpoints.as_str()),
    ];
    run_cli(&all, &env, None)
}

/// A certificate and key signed by a CA of its own, written under `dir`.
fn foreign_client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::default()
        .signed_by(&key, &issuer)
        .expect("cert");
    let (cert_path, key_path) = (dir.join("foreign.pem"), dir.join("foreign.key"));
    fs::write(&cert_path, cert.pem()).expect("write cert");
    fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// A TLS channel to `addr` presenting `name`'s certificate from `up`'s tls directory.
async fn channel_as(up: &Up, name: &str, addr: &str) -> Channel {
    let tls = up.dir.join("tls");
    let config = shardkv_net::tls::client_config(
        &tls.join("ca.pem"),
        Some((
            &tls.join(format!("{name}.pem")),
            &tls.join(format!("{name}.key")),
        )),
    )
    .expect("tls config");
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(config)
        .expect("tls")
        .connect()
        .await
        .expect("connect")
}

/// Member `id`'s term in the controller group (every member hosts it).
async fn ctrl_term(up: &Up, id: usize) -> Option<u64> {
    let tls = up.dir.join("tls");
    let config = shardkv_net::tls::client_config(
        &tls.join("ca.pem"),
        Some((&tls.join("client.pem"), &tls.join("client.key"))),
    )
    .expect("tls config");
    let dial = Dial {
        timeout: Duration::from_secs(1),
        tls: Some(config),
    };
    let addr = up.endpoints.split(',').nth(id - 1).expect("member");
    fetch_group_status_with(addr, Some(Gid(0)), &dial)
        .await
        .ok()
        .map(|s| s.term.0)
}

/// Goal: `up --tls` serves clients that use the printed flags, moves shards between groups
/// over TLS, and refuses, with a message that says why, clients without a certificate, with
/// a certificate of another CA, and in plaintext. Method: put and get with the flags (and
/// with their env form); write keys, make group 2 leave (group 1 pulls its shards on the
/// Shard service with its member certificate) and read them back; then the same get three
/// ways wrong.
#[test]
fn up_tls_serves_clients_with_the_printed_flags_and_refuses_the_others() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = Up::start(tmp.path(), &["--tls"]);
    let flags = printed_flags(&up.text);
    assert!(up.text.contains("SHARDKV_CACERT="), "{}", up.text);

    let put = cli(&up, &flags, &["put", "greeting", "hello"]);
    assert!(put.status.success(), "{}", stderr(&put));
    let get = cli(&up, &flags, &["get", "greeting"]);
    assert!(get.status.success(), "{}", stderr(&get));
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");
    let env = [
        ("SHARDKV_ENDPOINTS", up.endpoints.as_str()),
        ("SHARDKV_CACERT", flags[1].as_str()),
        ("SHARDKV_CERT", flags[3].as_str()),
        ("SHARDKV_KEY", flags[5].as_str()),
    ];
    let by_env = run_cli(&["get", "greeting"], &env, None);
    assert!(by_env.status.success(), "{}", stderr(&by_env));

    let keys: Vec<String> = (0..8).map(|i| format!("key{i}")).collect();
    for k in &keys {
        let put = cli(&up, &flags, &["put", k, k]);
        assert!(put.status.success(), "{}", stderr(&put));
    }
    let leave = cli_within(&up, &flags, &["admin", "leave", "2"], "20s");
    assert!(leave.status.success(), "{}", stderr(&leave));
    for k in &keys {
        let get = cli_within(&up, &flags, &["get", k], "20s");
        assert!(get.status.success(), "{k} after the move: {}", stderr(&get));
        assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), k.as_str());
    }

    // The server's alert ("CertificateRequired") may lose the race with the connection
    // closing; the hint is there either way.
    let no_cert = cli(&up, &flags[..2], &["get", "greeting"]);
    assert!(!no_cert.status.success());
    assert!(
        stderr(&no_cert).contains("check --cert, --key and --cacert"),
        "{}",
        stderr(&no_cert)
    );

    let (cert, key) = foreign_client_cert(tmp.path());
    let foreign = [
        flags[0].clone(),
        flags[1].clone(),
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ];
    let refused = cli(&up, &foreign, &["get", "greeting"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("certificate"),
        "{}",
        stderr(&refused)
    );

    let plain = cli(&up, &[], &["get", "greeting", "--group", "1"]);
    assert!(!plain.status.success());
    assert!(stderr(&plain).contains("TLS"), "{}", stderr(&plain));
}

/// Goal: a member's certificate cannot speak for another member: a Raft batch sent with
/// n2's certificate but claiming to be from n3 is dropped and logged, never stepped. Method:
/// on n1's Raft service, as n2, send a batch from n3 whose term would make n1 (and then the
/// group) jump to FORGED_TERM if stepped; wait (bounded) for n1's warning; check that no
/// member's controller term reached FORGED_TERM and that the group still serves.
#[test]
fn a_raft_batch_whose_sender_is_not_the_certificates_member_is_dropped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = Up::start(tmp.path(), &["--tls"]);
    let token = fs::read_to_string(tmp.path().join("cluster-token")).expect("token");
    let n1 = up.endpoints.split(',').next().expect("n1").to_string();
    let forged = convert::encode_message(&Message {
        from: NodeId(3),
        to: NodeId(1),
        term: Term(FORGED_TERM),
        body: Body::HeartbeatResponse { read_seq: 0 },
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut peer = RaftClient::new(channel_as(&up, "n2", &n1).await);
        let batch = RaftBatch {
            from: 3,
            messages: vec![forged],
            cluster_id: cluster_id_from_token(token.trim()),
            group_id: 0,
        };
        peer.send(tokio_stream::iter(vec![batch]))
            .await
            .expect("a member certificate may open a Raft stream");
    });
    let log = tmp.path().join("n1.log");
    wait_until("n1 to log the forged batch", LEADER_WAIT, || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.contains("sender is not the certificate's member")
                    && l.contains("claiming to be from node 3")
                    && l.contains("authenticated as node 2")
            })
    });
    for id in 1..=3 {
        if let Some(term) = rt.block_on(ctrl_term(&up, id)) {
            assert!(
                term < FORGED_TERM,
                "n{id} stepped the forged batch: term {term}"
            );
        }
    }
    let flags = printed_flags(&up.text);
    let put = cli(&up, &flags, &["put", "k", "after"]);
    assert!(put.status.success(), "{}", stderr(&put));
}

/// Goal: a client certificate (signed by the cluster CA, but naming no member) may not use
/// the member services. Method: with `up`'s client certificate, open a Raft stream and make
/// a Shard call: both PERMISSION_DENIED; the same Shard call with a member certificate
/// gets past the check.
#[test]
fn a_client_certificate_cannot_use_the_raft_or_shard_service() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = Up::start(tmp.path(), &["--tls"]);
    let n1 = up.endpoints.split(',').next().expect("n1").to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = channel_as(&up, "client", &n1).await;
        let batch = RaftBatch {
            from: 2,
            messages: Vec::new(),
            cluster_id: 1,
            group_id: 0,
        };
        let raft = RaftClient::new(client.clone())
            .send(tokio_stream::iter(vec![batch]))
            .await;
        assert_eq!(
            raft.err().map(|s| s.code()),
            Some(shardkv_net::tonic::Code::PermissionDenied)
        );
        let call = ShardCall {
            group: 1,
            request: Vec::new(),
        };
        let shard = ShardClient::new(client).call(call.clone()).await;
        assert_eq!(
            shard.err().map(|s| s.code()),
            Some(shardkv_net::tonic::Code::PermissionDenied)
        );
        let member = channel_as(&up, "n2", &n1).await;
        let as_member = ShardClient::new(member).call(call).await;
        assert!(
            as_member
                .as_ref()
                .err()
                .is_none_or(|s| s.code() != shardkv_net::tonic::Code::PermissionDenied),
            "{as_member:?}"
        );
    });
}
