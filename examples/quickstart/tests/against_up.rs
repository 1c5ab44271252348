//! The example against a real cluster, as CI runs it: a fresh `shardkv up` on free ports in
//! a temporary directory, then the example's binary pointed at it by `SHARDKV_ENDPOINTS`
//! and, separately, by its argument; and once with no cluster at all.
//!
//! `shardkv` is the workspace's binary, next to this example's in the target directory:
//! `cargo nextest run --workspace` builds both (alone: `cargo build -p shardkv` first).

// The port picker of the shardkv crate's real-process tests (one rule for both).
#[path = "../../../crates/cli/tests/common/ports.rs"]
#[allow(dead_code)]
mod ports;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const QUICKSTART: &str = env!("CARGO_BIN_EXE_quickstart");
/// How long `shardkv up` may take to come up, and the example to run.
const LIMIT: Duration = Duration::from_secs(60);

fn shardkv() -> PathBuf {
    let bin = PathBuf::from(QUICKSTART).with_file_name("shardkv");
    assert!(
        bin.exists(),
        "{} is not built: run the workspace's tests (`cargo nextest run --workspace`) or \
         `cargo build -p shardkv` first",
        bin.display()
    );
    bin
}

/// A running `shardkv up`, killed when dropped (its members die with it).
struct Up {
    child: Child,
    endpoints: String,
}

impl Up {
    fn start(dir: &std::path::Path) -> Up {
        let base = ports::free_base_port(3);
        let mut child = Command::new(shardkv())
            .args(["up", "--base-port", &base.to_string(), "--data-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn shardkv up");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("stop:") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("shardkv up did not come up within {LIMIT:?}");
                }
            }
        }
        let endpoints = (0..3)
            .map(|i| format!("127.0.0.1:{}", base + i))
            .collect::<Vec<_>>()
            .join(",");
        Up { child, endpoints }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the example with `args` and `env`, killed past [`LIMIT`].
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(QUICKSTART)
        .args(args)
        .env_remove("SHARDKV_ENDPOINTS")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn quickstart");
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("quickstart ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Goal: the example a user copies works against a cluster as `shardkv up` makes it.
/// Method: `up` on free ports; the example with `SHARDKV_ENDPOINTS`, then with the
/// endpoints as its argument: exit 0, every step's line and the final line printed.
#[test]
fn the_example_runs_against_a_fresh_cluster() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = Up::start(&tmp.path().join("up"));
    for (args, env) in [
        (vec![], vec![("SHARDKV_ENDPOINTS", up.endpoints.as_str())]),
        (vec![up.endpoints.as_str()], vec![]),
    ] {
        let out = run(&args, &env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}{stderr}");
        for step in [
            "put {quickstart}:greeting = hello",
            "get {quickstart}:greeting -> hello",
            "-> hello, world",
            "swapped",
            "not swapped (it holds bye)",
            "gone",
            "quickstart: all steps done",
        ] {
            assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
        }
    }
}

/// Goal: the example fails clearly, with exit 1, when no cluster answers. Method: the
/// example pointed at a port nothing listens on: it ends after its 10 s operation timeout
/// saying which step failed and that it was not applied.
#[test]
fn the_example_exits_1_without_a_cluster() {
    let port = ports::free_ports(1)[0];
    let out = run(&[&format!("127.0.0.1:{port}")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("put failed"), "{stderr}");
}
