//! `shardkv up` as a child process for tests: start it on free ports in a temporary
//! directory, wait (bounded) for its "stop:" line, stop it with SIGTERM when dropped.

use super::cluster::BIN;
use super::wait::wait_until;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long `up` may take to print its "stop:" line.
const UP_WAIT: Duration = Duration::from_secs(60);

/// A running `shardkv up`.
pub struct Up {
    child: Child,
    /// What it printed up to its "stop:" line.
    pub text: String,
    pub endpoints: String,
    pub dir: PathBuf,
}

impl Up {
    /// Starts `shardkv up --base-port <free> --data-dir <dir> ARGS` and waits until it is up.
    pub fn start(dir: &Path, args: &[&str]) -> Up {
        Up::start_at(dir, free_base_port(), args)
    }

    /// [`Up::start`] on the given base port (to start it again where it ran before).
    pub fn start_at(dir: &Path, base: u16, args: &[&str]) -> Up {
        let mut child = Command::new(BIN)
            .args(["up", "--base-port", &base.to_string(), "--data-dir"])
            .arg(dir)
            .args(args)
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
        let mut text = String::new();
        while !text.contains("stop:") {
            match rx.recv_timeout(UP_WAIT) {
                Ok(line) => text.push_str(&(line + "\n")),
                Err(_) => {
                    let _ = child.kill();
                    panic!("shardkv up did not come up; printed:\n{text}");
                }
            }
        }
        let endpoints = (0..3)
            .map(|i| format!("127.0.0.1:{}", base + i))
            .collect::<Vec<_>>()
            .join(",");
        Up {
            child,
            text,
            endpoints,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Up {
    /// SIGTERM to `up` and a bounded wait for it (and so its members) to exit.
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let child = &mut self.child;
        wait_until("shardkv up to exit", Duration::from_secs(20), || {
            child.try_wait().ok().flatten().is_some()
        });
    }
}

/// A base port for `shardkv up`'s three members: their gRPC, admin and Redis ports are free.
pub fn free_base_port() -> u16 {
    super::ports::free_base_port(3)
}
