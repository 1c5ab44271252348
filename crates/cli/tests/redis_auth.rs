//! The Redis ports with a password (`shardkv up --redis-password-file`, as Redis's
//! `requirepass`): a client that has not given it is answered `NOAUTH` and changes nothing,
//! a wrong one `WRONGPASS`; with it, the real `redis-cli -c` (following `MOVED` to other
//! processes, each a new connection that authenticates again) and `redis-benchmark
//! --cluster -a` work as without one.
//!
//! Outcomes only: the waits are bounded polls; no timing is asserted.

mod common;

use common::redis::{CLI_LIMIT, redis_cli, redis_ports, run_tool, settled_masters, use_password};
use common::up::Up;
use std::time::Duration;

/// Blanks included: the password travels as one argument everywhere.
const PASSWORD: &str = "correct horse";

/// `redis-cli -p PORT EXTRA...`, unauthenticated unless `EXTRA` says otherwise: stdout and
/// stderr together.
fn raw_cli(port: u16, extra: &[&str]) -> String {
    let port = port.to_string();
    let mut args = vec!["-p", port.as_str()];
    args.extend_from_slice(extra);
    let (_, out, err) = run_tool("redis-cli", &args, CLI_LIMIT);
    format!("{out}{err}")
}

#[test]
fn without_the_password_clients_get_noauth_and_with_it_real_clients_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pass = dir.path().join("redis.pass");
    std::fs::write(&pass, format!("{PASSWORD}\n")).expect("write the password file");
    let pass = pass.to_str().expect("utf-8 path");
    let up = Up::start(&dir.path().join("data"), &["--redis-password-file", pass]);
    assert!(
        up.text.contains("--askpass"),
        "the redis-cli line asks for it:\n{}",
        up.text
    );
    let ports = redis_ports(&up);

    // Nothing before the password: every command is refused, the write changes nothing.
    for port in &ports {
        let set = raw_cli(*port, &["set", "guarded", "x"]);
        assert!(set.contains("NOAUTH Authentication required."), "{set}");
        let slots = raw_cli(*port, &["cluster", "slots"]);
        assert!(slots.contains("NOAUTH"), "{slots}");
    }
    let wrong = raw_cli(ports[0], &["-a", "wrong", "--no-auth-warning", "ping"]);
    assert!(wrong.contains("WRONGPASS"), "{wrong}");
    assert!(!wrong.contains("PONG"), "{wrong}");

    // With it (every redis_cli call from here on gives it).
    use_password(PASSWORD);
    let masters = settled_masters(&ports);
    assert_eq!(
        redis_cli(ports[0], true, &["get", "guarded"]),
        "",
        "the refused SET wrote nothing"
    );
    // Through each process, keys of every group: redis-cli -c follows MOVED to the master's
    // process and authenticates on that connection too.
    for (i, port) in ports.iter().enumerate() {
        for k in 0..8 {
            let key = format!("auth-key-{i}-{k}");
            assert_eq!(redis_cli(*port, true, &["set", &key, "v"]), "OK", "{key}");
            assert_eq!(redis_cli(*port, true, &["append", &key, "w"]), "2", "{key}");
            assert_eq!(
                redis_cli(ports[(i + 1) % 3], true, &["get", &key]),
                "vw",
                "{key}"
            );
        }
    }

    let port = ports[0].to_string();
    let args = [
        "--cluster",
        "-p",
        &port,
        "-a",
        PASSWORD,
        "-t",
        "set,get",
        "-n",
        "2000",
        "-q",
    ];
    let (ok, out, err) = run_tool("redis-benchmark", &args, Duration::from_secs(300));
    let all = format!("{out}\n{err}");
    assert!(ok, "redis-benchmark failed:\n{all}");
    assert!(
        !all.to_ascii_lowercase().contains("error"),
        "redis-benchmark reported errors:\n{all}"
    );
    for test in ["SET", "GET"] {
        assert!(
            all.split(['\r', '\n'])
                .any(|l| l.starts_with(&format!("{test}: ")) && l.contains("requests per second")),
            "no {test} result:\n{all}"
        );
    }
    // The masters still refuse a client without the password.
    for m in masters {
        assert!(raw_cli(m, &["dbsize"]).contains("NOAUTH"));
    }
}
