//! The CLI's habits against real server processes: bytes round-trip through `put` and
//! `get --raw`, `status` fails loudly without a quorum, `del` and `cas` say what they do,
//! global flags before the subcommand and from the environment, a fast failure with a hint
//! when nothing listens, and `up` refusing busy ports.

mod common;

use common::cluster::{Cluster, free_ports, run_cli};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Goal: a binary value written from stdin is read back byte for byte. Method: all 256
/// byte values through `put k` (stdin) and `get k --raw` (to a pipe).
#[test]
fn a_binary_value_round_trips_through_put_and_get_raw() {
    let c = Cluster::start(3, &[]);
    c.leader();
    let value: Vec<u8> = (0..=255u8).collect();
    let put = c.cli(&["put", "bin"], Some(&value));
    assert!(put.status.success(), "{}", stderr(&put));
    let get = c.cli(&["get", "bin", "--raw"], None);
    assert!(get.status.success(), "{}", stderr(&get));
    assert_eq!(get.stdout, value, "get --raw prints the value exactly");
    let text = c.cli(&["get", "bin"], None);
    assert_eq!(
        text.stdout.split_last(),
        Some((&b'\n', value.as_slice())),
        "text output is the value and a newline"
    );
    let endpoints = c.endpoints();
    let env = [
        ("SHARDKV_ENDPOINTS", endpoints.as_str()),
        ("SHARDKV_RAW", "true"),
    ];
    let get = run_cli(&["get", "bin"], &env, None);
    assert_eq!(get.stdout, value, "SHARDKV_RAW=true is --raw");
}

/// Goal: `cas --help` names its arguments, and a wrong count of them is a usage error
/// (exit 2, as docs/kv.md says), as are a missing argument and an unknown flag. Method: the
/// help text, `cas` with two arguments but no --absent, `get` without a key, `put --bogus`;
/// none of them needs a cluster.
#[test]
fn cas_help_names_key_old_new_and_a_wrong_count_exits_2() {
    let help = run_cli(&["cas", "--help"], &[], None);
    assert!(help.status.success(), "{}", stderr(&help));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("<KEY> <OLD> [NEW]"), "{text}");
    assert!(!text.contains("<ARGS>"), "{text}");
    let usage = run_cli(&["cas", "k", "new"], &[], None);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
    assert!(stderr(&usage).contains("KEY OLD NEW"), "{}", stderr(&usage));
    for args in [
        &["get"][..],
        &["put", "k", "v", "--bogus"],
        &["--bogus", "get", "k"],
    ] {
        let out = run_cli(args, &[], None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("Usage"), "{args:?}: {}", stderr(&out));
    }
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/kv.md"))
        .expect("docs/kv.md");
    assert!(
        docs.contains("2 on bad usage"),
        "docs/kv.md states exit 2 for bad usage"
    );
}

/// Goal: `status` is loud and non-zero when a group cannot serve: no quorum answers.
/// Method: a 3-member group: `status` exits 0 with the LEADER and NO-SPACE columns; then
/// 2 members are killed and `status` exits 1 with a warning on stderr.
#[test]
fn status_exits_non_zero_without_a_quorum() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let healthy = c.cli(&["status"], None);
    assert!(healthy.status.success(), "{}", stderr(&healthy));
    let table = String::from_utf8_lossy(&healthy.stdout).into_owned();
    assert!(
        table.contains("LEADER") && table.contains("NO-SPACE"),
        "{table}"
    );
    for id in (1..=3).filter(|&id| id != leader).take(2) {
        c.kill(id);
    }
    let broken = c.cli(&["status"], None);
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    assert!(stderr(&broken).contains("no quorum"), "{}", stderr(&broken));
}

/// Goal: the connection flags work before the subcommand and from the environment.
/// Method: `shardkv --endpoints E -w json put`, then `get` with only SHARDKV_* variables.
#[test]
fn global_flags_work_before_the_subcommand_and_from_the_environment() {
    let c = Cluster::start(3, &[]);
    c.leader();
    let endpoints = c.endpoints();
    let put = run_cli(
        &["--endpoints", &endpoints, "-w", "json", "put", "k", "v"],
        &[],
        None,
    );
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(
        String::from_utf8_lossy(&put.stdout).trim(),
        r#"{"ok":true}"#
    );
    let env = [
        ("SHARDKV_ENDPOINTS", endpoints.as_str()),
        ("SHARDKV_WRITE_OUT", "json"),
        ("SHARDKV_TIMEOUT", "10s"),
    ];
    let get = run_cli(&["get", "k"], &env, None);
    assert!(get.status.success(), "{}", stderr(&get));
    assert_eq!(
        String::from_utf8_lossy(&get.stdout).trim(),
        r#"{"found":true,"key":"k","value":"v"}"#
    );
}

/// Goal: with nothing listening at any endpoint (or a name that does not resolve), a
/// command fails at once, not after its `--timeout`, naming every address it tried and
/// hinting at `shardkv up`. Method: closed ports and a name under `.invalid` (RFC 6761: never
/// resolves), a one-hour timeout (the CLI runner kills anything past 30 s).
#[test]
fn nothing_listening_fails_at_once_naming_every_address() {
    let ports = free_ports(2);
    let mut addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    addrs.push("nosuchhost.invalid:7001".to_string());
    let endpoints = addrs.join(",");
    for (args, var) in [
        (&["--timeout", "1h", "get", "k"][..], "SHARDKV_ENDPOINTS"),
        (
            &["put", "k", "v", "--timeout", "1h", "--group", "1"],
            "SHARDKV_ENDPOINTS",
        ),
        (
            &["admin", "query", "--timeout", "1h"],
            "SHARDKV_CTRL_ENDPOINTS",
        ),
    ] {
        let out = run_cli(args, &[(var, endpoints.as_str())], None);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            addrs.iter().all(|a| err.contains(a.as_str()))
                && err.contains("does not resolve")
                && err.contains("shardkv up"),
            "{args:?}: {err}"
        );
    }
}

/// Goal: `shardkv up` on a busy port exits non-zero naming it, before claiming anything.
/// Method: hold a member's gRPC port (n1's, n3's) or admin HTTP port (gRPC + 1000: n1's,
/// n3's) with a listener and run `up` there (its base port by flag, or for the admin ports
/// by `SHARDKV_UP_BASE_PORT`): exit 1, the port on stderr, no "members up" and no "leader"
/// line, no data directory.
#[test]
fn up_on_a_busy_port_exits_non_zero_naming_it() {
    for busy_offset in [0u16, 2, 1000, 1002] {
        let base = common::up::free_base_port();
        let busy = base + busy_offset;
        // If something else holds it already, the port is just as busy.
        let _holder = std::net::TcpListener::bind(("127.0.0.1", busy)).ok();
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("up");
        let dir_arg = dir.to_str().expect("a UTF-8 temp path");
        // The base port by flag, and (admin ports) by SHARDKV_UP_BASE_PORT.
        let base_arg = base.to_string();
        let (args, env): (Vec<&str>, Vec<(&str, &str)>) = if busy_offset < 1000 {
            (
                vec!["up", "--base-port", &base_arg, "--data-dir", dir_arg],
                vec![],
            )
        } else {
            (
                vec!["up", "--data-dir", dir_arg],
                vec![("SHARDKV_UP_BASE_PORT", base_arg.as_str())],
            )
        };
        let out = run_cli(&args, &env, None);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("127.0.0.1:{busy}")),
            "{}",
            stderr(&out)
        );
        assert!(
            !text.contains("members up") && !text.contains("leader"),
            "{text}"
        );
        assert!(!dir.exists(), "nothing was created");
    }
}

/// Goal: `shardkv up` on a data directory another `up` is running on exits non-zero before
/// claiming anything, not printing the other cluster's members. Method: one `up` runs; a
/// second on the same directory (other free ports) exits 1 saying the directory is in use,
/// with no "members up" or "leader" line.
#[test]
fn up_on_a_data_directory_in_use_exits_non_zero() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("up");
    let first = common::up::Up::start(&dir, &[]);
    let base = common::up::free_base_port();
    let out = run_cli(
        &[
            "up",
            "--base-port",
            &base.to_string(),
            "--data-dir",
            dir.to_str().expect("a UTF-8 temp path"),
        ],
        &[],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    assert!(
        !text.contains("members up") && !text.contains("leader"),
        "{text}"
    );
    drop(first);
}

/// The session file's contents.
fn session_doc(file: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(file).expect("read the session file");
    serde_json::from_str(&text).expect("a JSON session file")
}

/// Goal: `--session FILE` keeps one client across CLI calls: consecutive sequence numbers
/// from one client id, and a write that may have applied, run again with the same file, is
/// applied at most once; another command moves on; a second call while the file is in use
/// fails clearly. Method: a put and an append through one file (flag, then
/// `SHARDKV_SESSION`); then the file is set back to what the append's call recorded before
/// sending it (as after a lost answer) and the same append is run again: the value shows
/// it once; then another append; then a call while the test holds the file's lock.
#[test]
fn a_session_file_keeps_one_client_and_a_retried_append_applies_once() {
    let c = Cluster::start(3, &[]);
    c.leader();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("session.json");
    let file_arg = file.to_str().expect("a UTF-8 temp path");
    let endpoints = c.endpoints();
    let env = [
        ("SHARDKV_ENDPOINTS", endpoints.as_str()),
        ("SHARDKV_SESSION", file_arg),
    ];
    let put = c.cli(&["put", "k", "x", "--session", file_arg], None);
    assert!(put.status.success(), "{}", stderr(&put));
    let first = session_doc(&file);
    let client = first["client_id"].as_u64().expect("a client id");
    assert_eq!(first["next_seq"], 2, "{first}");
    assert!(first["pending"].is_null(), "the put ended: {first}");
    let append = run_cli(&["append", "k", "a"], &env, None);
    assert!(append.status.success(), "{}", stderr(&append));
    let second = session_doc(&file);
    assert_eq!(second["client_id"], client, "one client id: {second}");
    assert_eq!(second["next_seq"], 3, "the next sequence number: {second}");
    // What the append's call wrote before sending: had its answer been lost, the file
    // would have stayed so.
    let pending = serde_json::json!({
        "client_id": client,
        "next_seq": 3,
        "pending": { "seq": 2, "command": { "kind": "append", "key": "k", "value": "a" } },
    });
    std::fs::write(&file, pending.to_string()).expect("write the session file");
    let retry = run_cli(&["append", "k", "a"], &env, None);
    assert!(retry.status.success(), "{}", stderr(&retry));
    let get = c.cli(&["get", "k", "--raw"], None);
    assert_eq!(get.stdout, b"xa", "the retried append applied once");
    let after = session_doc(&file);
    assert_eq!(after["next_seq"], 3, "the retry reused its number: {after}");
    assert!(after["pending"].is_null(), "{after}");
    let other = run_cli(&["append", "k", "b"], &env, None);
    assert!(other.status.success(), "{}", stderr(&other));
    assert_eq!(session_doc(&file)["next_seq"], 4);
    let read = run_cli(&["--session", file_arg, "get", "k"], &env, None);
    assert_eq!(read.stdout, b"xab\n", "get takes (and ignores) --session");
    assert_eq!(
        session_doc(&file)["next_seq"],
        4,
        "a read uses no sequence number"
    );
    let lock = std::fs::File::open(tmp.path().join("session.json.lock")).expect("the lock file");
    lock.try_lock().expect("the lock is free between calls");
    let busy = run_cli(&["append", "k", "c", "--timeout", "300ms"], &env, None);
    assert_eq!(busy.status.code(), Some(1), "{}", stderr(&busy));
    assert!(stderr(&busy).contains("in use"), "{}", stderr(&busy));
    drop(lock);
    assert_eq!(c.cli(&["get", "k", "--raw"], None).stdout, b"xab");
}
