//! Running `shardkv mr` processes for tests: a fresh directory per test with generated
//! input, processes with a hard run-time limit, and output comparison.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shardkv");
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Default run-time limit of a process; a test that needs more says so.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(60);
pub const ADDR_FILE: &str = "coordinator.addr";

/// A child process that is killed if it outlives its limit or the test.
pub struct Proc {
    pub name: String,
    child: Child,
    deadline: Instant,
    status: Option<ExitStatus>,
}

impl Proc {
    /// The exit status if the process has exited. Panics (after killing it) once the
    /// process is past its limit.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        if self.status.is_none() && Instant::now() >= self.deadline {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("{} ran past its time limit and was killed", self.name);
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits for the process to exit, up to its limit.
    pub fn wait(&mut self) -> ExitStatus {
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub use crate::wait::wait_until;

/// One test's job: a directory (kept on failure for its logs) with 8 generated inputs.
pub struct Job {
    pub dir: PathBuf,
    pub inputs: Vec<String>,
    spawned: AtomicUsize,
}

impl Job {
    /// A fresh directory for test `name` with 8 files of ~300 KiB of pseudo-text.
    pub fn new(name: &str) -> Job {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("mr-tests")
            .join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("logs")).expect("create test dir");
        let job = Job {
            dir,
            inputs: Vec::new(),
            spawned: AtomicUsize::new(0),
        };
        let mut generator = job.spawn(
            "gen-text",
            &["mr", "gen-text", "--files", "8", "--size", "300KiB"],
        );
        assert!(
            generator.wait().success(),
            "gen-text failed; see {}",
            job.dir.display()
        );
        let mut inputs: Vec<String> = fs::read_dir(&job.dir)
            .expect("read test dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.starts_with("pg-") && n.ends_with(".txt"))
            .collect();
        inputs.sort();
        assert_eq!(inputs.len(), 8);
        Job { inputs, ..job }
    }

    /// Starts `shardkv ARGS` in the job directory, stderr to `logs/<label>-<n>.log`.
    pub fn spawn(&self, label: &str, args: &[&str]) -> Proc {
        self.spawn_limited(label, args, PROCESS_LIMIT)
    }

    pub fn spawn_limited(&self, label: &str, args: &[&str], limit: Duration) -> Proc {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let name = format!("{label}-{n}");
        let log = fs::File::create(self.dir.join("logs").join(format!("{name}.log")))
            .expect("create log file");
        let child = Command::new(BIN)
            .args(args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn shardkv");
        Proc {
            name,
            child,
            deadline: Instant::now() + limit,
            status: None,
        }
    }

    /// A coordinator for the 8 inputs on a free loopback port with 10 reduce tasks.
    pub fn coordinator(&self, task_timeout: &str, limit: Duration) -> Proc {
        let mut args = vec![
            "mr",
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
            ADDR_FILE,
            "--reduce",
            "10",
            "--task-timeout",
            task_timeout,
        ];
        args.extend(self.inputs.iter().map(String::as_str));
        self.spawn_limited("coordinator", &args, limit)
    }

    /// A worker of this job's coordinator; `app` is e.g. `["--app", "wc"]`.
    pub fn worker(&self, app: &[&str]) -> Proc {
        let mut args = vec!["mr", "worker", "--coordinator-file", ADDR_FILE];
        args.extend_from_slice(app);
        self.spawn("worker", &args)
    }

    /// Sorted non-empty output lines of a sequential run of `app`.
    pub fn sequential(&self, app: &[&str]) -> Vec<String> {
        let out = "seq/mr-out-0";
        fs::create_dir_all(self.dir.join("seq")).expect("create seq dir");
        let mut args = vec!["mr", "sequential", "--out", out];
        args.extend_from_slice(app);
        args.extend(self.inputs.iter().map(String::as_str));
        let mut seq = self.spawn("sequential", &args);
        assert!(
            seq.wait().success(),
            "sequential run failed; see {}",
            self.dir.display()
        );
        let text = fs::read_to_string(self.dir.join(out)).expect("read sequential output");
        sorted_lines(&text)
    }

    /// Sorted non-empty lines of every `mr-out-*` file, as the lab's `sort | grep .` does.
    pub fn output(&self) -> Vec<String> {
        let mut text = String::new();
        for entry in fs::read_dir(&self.dir).expect("read test dir") {
            let entry = entry.expect("dir entry");
            if entry.file_name().to_string_lossy().starts_with("mr-out-") {
                text.push_str(&fs::read_to_string(entry.path()).expect("read output"));
            }
        }
        sorted_lines(&text)
    }

    /// Number of files whose name starts with `prefix`.
    pub fn count_files(&self, prefix: &str) -> usize {
        fs::read_dir(&self.dir)
            .expect("read test dir")
            .filter(|e| {
                let e = e.as_ref().expect("dir entry");
                e.file_name().to_string_lossy().starts_with(prefix)
            })
            .count()
    }

    /// Removes the directory; call at the end of a passing test (a failing one keeps it,
    /// and so does every test when `MR_TEST_KEEP` is set).
    pub fn cleanup(self) {
        if std::env::var_os("MR_TEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// Asserts `actual == expected` with a short, useful message on mismatch.
    pub fn assert_same(&self, what: &str, actual: &[String], expected: &[String]) {
        if actual == expected {
            return;
        }
        let first_diff = actual.iter().zip(expected).position(|(a, e)| a != e);
        panic!(
            "{what}: {} lines vs {} expected; first difference at {first_diff:?}: {:?} vs {:?}; \
             logs in {}",
            actual.len(),
            expected.len(),
            first_diff.and_then(|i| actual.get(i)),
            first_diff.and_then(|i| expected.get(i)),
            self.dir.display()
        );
    }
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}
