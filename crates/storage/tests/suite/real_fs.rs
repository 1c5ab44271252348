//! Real filesystem: a child process SIGKILLed in a loop, and ENOSPC on a small tmpfs.

use crate::common::{TempDir, assert_valid};
use shardkv_storage::{FsDisk, RaftStore, Recovered, StorageError};
use shardkv_types::{Entry, LogIndex, NodeId, Term};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const KILL_ROUNDS: u64 = 20;

fn child_payload(index: u64) -> Vec<u8> {
    let mut data = format!("entry-{index}-").into_bytes();
    data.resize(100, b'.');
    data
}

/// Reopens `dir` and checks it against what the child reported durable.
fn check_after_kill(dir: &Path, durable: u64, round: u64) -> Recovered {
    let (store, r) = RaftStore::open(FsDisk::new(), dir, NodeId(1))
        .unwrap_or_else(|e| panic!("round {round}: reopen after SIGKILL failed: {e}"));
    assert_valid(&r);
    assert!(
        store.last_index().0 >= durable,
        "round {round}: entry {durable} was reported durable but the log ends at {}",
        store.last_index()
    );
    assert!(
        r.hard_state.commit.0 >= durable,
        "round {round}: hard state lost"
    );
    for e in &r.entries {
        assert_eq!(
            e.data,
            child_payload(e.index.0),
            "round {round}: entry {} damaged",
            e.index
        );
    }
    if let Some((m, data)) = &r.snapshot {
        assert_eq!(
            data,
            format!("snapshot@{}", m.index.0).as_bytes(),
            "round {round}"
        );
    }
    r
}

#[test]
fn sigkill_in_a_loop_never_loses_a_record_reported_durable() {
    // Goal: what the child reported fsynced survives SIGKILL at any point. Method: 20
    // rounds; each kills the child after a different number of "durable" lines (counts,
    // never sleeps), then reopens the directory and checks it.
    let tmp = TempDir::new("sigkill");
    let dir = tmp.path().join("n1");
    let mut durable = 0u64;
    let mut max_snapshot = LogIndex(0);
    for round in 0..KILL_ROUNDS {
        let lines_before_kill = 1 + (round * 7) % 23;
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-kill-child"))
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wal-kill-child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut seen = 0;
        while seen < lines_before_kill {
            let Some(Ok(line)) = lines.next() else {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("round {round}: child stopped early: {err}");
            };
            if let Some(v) = line.strip_prefix("durable ") {
                durable = durable.max(v.parse().expect("index"));
                seen += 1;
            } else if let Some(v) = line.strip_prefix("ready ") {
                let last: u64 = v.parse().expect("index");
                assert!(
                    last >= durable,
                    "round {round}: child recovered only up to {last}"
                );
            }
        }
        child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
        child.wait().expect("reap child");
        let r = check_after_kill(&dir, durable, round);
        let snap = r.snapshot.map(|(m, _)| m.index).unwrap_or_default();
        assert!(snap >= max_snapshot, "round {round}: snapshot went back");
        max_snapshot = snap;
    }
    assert!(
        durable > 100 && max_snapshot > LogIndex(0),
        "the child did too little: {durable}"
    );
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn enospc_on_a_small_tmpfs_is_no_space_and_writes_resume_after_freeing() {
    // Goal: a real full filesystem gives NoSpace, leaves no partial record, keeps reads and
    // restarts working, and accepts writes once space is freed. Method: a 256 KiB tmpfs
    // (needs root), a filler file, writes until ENOSPC, then delete the filler.
    if effective_uid() != Some(0) {
        println!("SKIPPED enospc tmpfs test: not running as root, cannot mount a tmpfs");
        return;
    }
    let tmp = TempDir::new("enospc");
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(tmp.path())
        .output()
        .expect("run mount");
    if !out.status.success() {
        println!(
            "SKIPPED enospc tmpfs test: mount failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let mount = Mount(tmp.path().to_path_buf());
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![0u8; 64 << 10]).expect("filler");
    let dir = mount.0.join("n1");
    let (mut s, _) = RaftStore::open(FsDisk::new(), &dir, NodeId(1)).expect("open");
    let mut last = 0u64;
    let err = loop {
        assert!(last < 1000, "the tmpfs never filled");
        let e = Entry::normal(Term(1), LogIndex(last + 1), vec![last as u8; 1000]);
        match s.append(&[e]).and_then(|()| s.sync()) {
            Ok(()) => last += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StorageError::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("no space left on device"), "{err}");
    assert!(s.poisoned().is_none());
    assert_eq!(s.last_index(), LogIndex(last));
    assert_eq!(
        s.entries(LogIndex(1), LogIndex(2)).unwrap()[0].data,
        vec![0u8; 1000]
    );
    drop(s);
    // A restart on the full disk sees exactly the records written, nothing partial.
    let (mut s, r) = RaftStore::open(FsDisk::new(), &dir, NodeId(1)).expect("reopen when full");
    assert_eq!(r.entries.len() as u64, last);
    assert!(
        r.warnings.is_empty(),
        "partial record found: {:?}",
        r.warnings
    );
    std::fs::remove_file(&filler).expect("free space");
    for i in last + 1..=last + 3 {
        s.append(&[Entry::normal(Term(1), LogIndex(i), vec![1; 1000])])
            .unwrap();
    }
    s.sync().expect("writes resume after freeing space");
    drop(s);
    let (_, r) = RaftStore::open(FsDisk::new(), &dir, NodeId(1)).expect("reopen");
    assert_eq!(r.entries.len() as u64, last + 3);
    println!("enospc tmpfs test: NoSpace after {last} records of 1 KB, resumed after freeing");
}
