//! In-process calls (`shardkv_client::in_process`): a client given the server of its own
//! process hands requests for that server's address to it without a connection, and keeps
//! the driver's sessions and retries; requests for any other address still travel.

use shardkv_client::in_process::{InProcess, InProcessCall, Local};
use shardkv_client::{Client, ClientOptions, Error, Gid, NodeId, Outcome};
use shardkv_kv::{KvCommand, KvOutput, KvQuery, KvRequest};
use shardkv_rsm::Request;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A write as the fake saw it: sequence number and whether it was marked a possible retry.
type Seen = (u64, bool);

/// An in-process server at `addr`: a map of keys, the writes it saw, and how many of the
/// first writes it answers `Timeout` (applied, answer lost) instead of `Done`.
#[derive(Default)]
struct Fake {
    addr: String,
    data: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    writes: Mutex<Vec<Seen>>,
    lose_answers: Mutex<u32>,
    calls: Mutex<u32>,
}

impl InProcess for Fake {
    fn is_me(&self, addr: &str) -> bool {
        addr == self.addr
    }

    fn call(&self, _group: Gid, req: KvRequest) -> InProcessCall {
        *self.calls.lock().unwrap() += 1;
        let reply = match req {
            Request::Read(KvQuery::Get { key }) => Ok(KvOutput::Value(
                self.data.lock().unwrap().get(&key).cloned(),
            )),
            Request::Write {
                seq,
                retry,
                cmd: KvCommand::Put { key, value },
                ..
            } => {
                self.writes.lock().unwrap().push((seq.0, retry));
                self.data.lock().unwrap().insert(key, value);
                let mut lose = self.lose_answers.lock().unwrap();
                if *lose > 0 {
                    *lose -= 1;
                    Err(Error::Timeout {
                        detail: "the fake lost this answer".into(),
                    })
                } else {
                    Ok(KvOutput::Done)
                }
            }
            other => panic!("the fake serves Get and Put only, not {other:?}"),
        };
        Box::pin(std::future::ready((NodeId(1), reply, None)))
    }
}

/// An address on loopback where nothing listens (bound, then closed).
fn refused_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn client(endpoint: &str, own: Arc<Fake>) -> Client {
    let opts = ClientOptions {
        op_timeout: Duration::from_secs(5),
        backoff_max: Duration::from_millis(10),
        in_process: Some(Local(own)),
        ..ClientOptions::default()
    };
    Client::connect_with(&[endpoint.to_string()], opts).expect("client")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn requests_for_the_own_address_are_served_without_a_connection() {
    // Nothing listens at the address: any attempt by connection would be refused.
    let addr = refused_addr();
    let own = Arc::new(Fake {
        addr: addr.clone(),
        ..Fake::default()
    });
    rt().block_on(async {
        let mut c = client(&addr, own.clone());
        c.put("k", "v").await.expect("put served in process");
        assert_eq!(c.get("k").await.expect("get"), Some(b"v".to_vec()));
        c.put("k", "w").await.expect("second put");
    });
    assert_eq!(*own.calls.lock().unwrap(), 3, "one call per operation");
    let writes = own.writes.lock().unwrap().clone();
    assert_eq!(writes.len(), 2);
    assert!(
        writes[0].0 < writes[1].0,
        "each write has a new sequence number"
    );
}

#[test]
fn a_lost_in_process_answer_is_retried_with_the_same_sequence_number() {
    let addr = refused_addr();
    let own = Arc::new(Fake {
        addr: addr.clone(),
        lose_answers: Mutex::new(1),
        ..Fake::default()
    });
    rt().block_on(async {
        let mut c = client(&addr, own.clone());
        c.put("k", "v").await.expect("put, answered on its retry");
    });
    let writes = own.writes.lock().unwrap().clone();
    assert_eq!(writes.len(), 2, "the write and its retry: {writes:?}");
    assert_eq!(writes[0].0, writes[1].0, "the retry carries the same seq");
    assert!(
        !writes[0].1 && writes[1].1,
        "only the retry is marked one: {writes:?}"
    );
}

#[test]
fn requests_for_other_addresses_still_travel_by_connection() {
    let addr = refused_addr();
    let own = Arc::new(Fake {
        addr: "127.0.0.1:1".into(),
        ..Fake::default()
    });
    let opts = ClientOptions {
        op_timeout: Duration::from_millis(300),
        backoff_max: Duration::from_millis(10),
        in_process: Some(Local(own.clone())),
        ..ClientOptions::default()
    };
    let err = rt().block_on(async {
        let mut c = Client::connect_with(std::slice::from_ref(&addr), opts).expect("client");
        c.put("k", "v").await.expect_err("nothing listens there")
    });
    assert_eq!(err.outcome(), Outcome::Failed, "never sent: {err}");
    assert!(err.to_string().contains(&addr), "{err}");
    assert_eq!(*own.calls.lock().unwrap(), 0, "never served in process");
}
