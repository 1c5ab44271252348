//! `shardkv bench --target etcd` against one real etcd member (the `etcd` binary from
//! Debian's `etcd-server`, which `scripts/test.sh` installs), started on free loopback ports
//! in a temporary directory. Outcomes only: the runs complete with zero errors and their
//! counts add up, and what the bench wrote is what `etcdctl` reads. No figure is asserted.

mod common;

use common::cluster::{free_ports, run_cli, wait_until};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long a fresh single-member etcd may take to answer.
const ETCD_WAIT: Duration = Duration::from_secs(30);

/// One etcd member (a single-member cluster), killed when dropped.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("shardkv-etcd-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(2);
        let client = format!("http://127.0.0.1:{}", ports[0]);
        let peer = format!("http://127.0.0.1:{}", ports[1]);
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "m1", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("m1={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `etcd` ({e}): install it with scripts/test.sh or `apt-get install etcd-server etcd-client`")
            });
        let etcd = Etcd {
            child,
            endpoint: format!("127.0.0.1:{}", ports[0]),
            _dir: dir,
        };
        wait_until("etcd to answer", ETCD_WAIT, || {
            etcdctl(&etcd.endpoint, &["endpoint", "health"])
                .status
                .success()
        });
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `etcdctl --endpoints ENDPOINT ARGS` (v3 API), bounded by its own command timeout.
fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            endpoint,
            "--dial-timeout",
            "2s",
            "--command-timeout",
            "5s",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl (install etcd-client)")
}

/// `shardkv bench --target etcd --endpoints ENDPOINT -w json EXTRA` (space-separated),
/// which must succeed; its JSON report.
fn bench_json(endpoint: &str, extra: &str) -> serde_json::Value {
    let mut args = vec![
        "bench",
        "--target",
        "etcd",
        "--endpoints",
        endpoint,
        "-w",
        "json",
    ];
    args.extend(extra.split_whitespace());
    let out = run_cli(&args, &[], None);
    assert!(
        out.status.success(),
        "bench {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench -w json prints JSON")
}

/// Goal: the etcd target drives etcd's real API with the shared closed loop, both read
/// kinds. Method: a mixed run with an operation budget (so it ends on the budget, not the
/// clock) for linearizable and for serializable reads; each must succeed with no error,
/// have done both kinds, say which reads it did, and its counts must add up: reads + writes
/// = total = the budget.
#[test]
fn etcd_target_completes_puts_and_both_read_kinds_without_errors() {
    let etcd = Etcd::start();
    for reads in ["linearizable", "serializable"] {
        let r = bench_json(
            &etcd.endpoint,
            &format!(
                "--reads {reads} --clients 4 --keys 20 --read-ratio 0.5 --value-size 64 \
                 --warmup 100ms --ops 300 --duration 20s"
            ),
        );
        let ops = |kind: &str| r[kind]["ops"].as_u64().expect("an ops count");
        assert_eq!(r["target"], "etcd", "{r}");
        assert_eq!(r["reads_kind"], reads, "{r}");
        assert_eq!(r["errors"], serde_json::json!({}), "{reads}: {r}");
        assert!(ops("writes") > 0 && ops("reads") > 0, "{reads}: {r}");
        assert_eq!(ops("writes") + ops("reads"), ops("total"), "{r}");
        assert_eq!(ops("total"), 300, "the run ends on its budget: {r}");
    }
}

/// Goal: the bench speaks etcd's wire protocol, not a look-alike. Method: one session puts
/// 5 values to one key through `--target etcd`; `etcdctl get` must print the last one, which
/// is the session's id (1) and counter (5), padded to the value size.
#[test]
fn a_value_put_through_the_etcd_target_is_what_etcdctl_gets() {
    let etcd = Etcd::start();
    let r = bench_json(
        &etcd.endpoint,
        "--clients 1 --keys 1 --key-prefix probe- --value-size 16 --warmup 0s --ops 5 \
         --duration 20s",
    );
    assert_eq!(r["writes"]["ops"], 5, "{r}");
    let got = etcdctl(
        &etcd.endpoint,
        &["get", "probe-00000000", "--print-value-only"],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "1.5.xxxxxxxxxxxx"
    );
}

/// Goal: bad input gets a clear error, not a run. Method: serializable reads against
/// shardkv, and an etcd endpoint nobody listens on; both must fail and say why.
#[test]
fn bench_refuses_serializable_shardkv_reads_and_an_unreachable_etcd() {
    let out = run_cli(&["bench", "--reads", "serializable"], &[], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--reads serializable is for --target etcd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let closed = format!("127.0.0.1:{}", free_ports(1)[0]);
    let out = run_cli(
        &[
            "bench",
            "--target",
            "etcd",
            "--endpoints",
            &closed,
            "--duration",
            "1s",
        ],
        &[],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot connect to etcd at {closed}")),
        "{err}"
    );
}

/// Goal: `--history` works against etcd too, so the same checker judges both systems.
/// Method: a short mixed run on a few keys with linearizable reads and `--history`; the
/// file must hold every operation and `shardkv check-history` must pass it.
#[test]
fn a_history_of_an_etcd_run_passes_check_history() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("etcd.jsonl");
    let path = path.to_str().expect("UTF-8 temp path");
    let r = bench_json(
        &etcd.endpoint,
        &format!(
            "--clients 4 --keys 3 --read-ratio 0.5 --value-size 16 --warmup 0s --ops 400 \
             --duration 20s --history {path}"
        ),
    );
    assert_eq!(r["history"]["operations"], 400, "{r}");
    let check = run_cli(&["check-history", path], &[], None);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{text}");
    assert!(text.contains("verdict: linearizable"), "{text}");
}
