//! `ThreadWriter`: writes and syncs a snapshot's file on a thread of its own, so the node
//! thread keeps serving (ticks, heartbeats, requests) through the write and fsync of a
//! large snapshot. The host completes the snapshot (compacts the log) only once the file is
//! durable; see `shardkv-host`, "Snapshots in the background".

use crate::metrics::GroupMetrics;
use shardkv_host::SnapshotWriter;
use shardkv_storage::{FsDisk, SnapshotJob, SnapshotWritten};
use shardkv_types::SnapshotMeta;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::Instant;

/// One thread per job (snapshots are rare); at most one outstanding.
#[derive(Default)]
pub struct ThreadWriter {
    outstanding: Option<Outstanding>,
    /// Where each job's duration (write, sync, rename) is recorded, if anywhere.
    timed: Option<Arc<GroupMetrics>>,
}

impl ThreadWriter {
    /// Records each job's duration in the group's snapshot-save histogram.
    pub fn timed(metrics: Arc<GroupMetrics>) -> ThreadWriter {
        ThreadWriter {
            outstanding: None,
            timed: Some(metrics),
        }
    }
}

struct Outstanding {
    meta: SnapshotMeta,
    dir: PathBuf,
    /// `None` when the thread could not be started.
    done: Option<Receiver<SnapshotWritten>>,
}

impl SnapshotWriter for ThreadWriter {
    fn start(&mut self, job: SnapshotJob) {
        assert!(self.outstanding.is_none(), "one snapshot job at a time");
        let (tx, rx) = channel();
        let (meta, dir) = (job.meta(), job.dir().to_path_buf());
        let timed = self.timed.clone();
        let spawned = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                let start = Instant::now();
                // Its own handles: nothing is shared with the node thread's disk.
                let written = job.run(&mut FsDisk::new());
                if let Some(m) = timed {
                    m.snapshot_save.observe(start.elapsed());
                }
                let _ = tx.send(written);
            });
        self.outstanding = Some(Outstanding {
            meta,
            dir,
            done: spawned.ok().map(|_| rx),
        });
    }

    fn poll(&mut self) -> Option<SnapshotWritten> {
        let o = self.outstanding.as_ref()?;
        let written = match o.done.as_ref().map(Receiver::try_recv) {
            Some(Ok(written)) => written,
            Some(Err(TryRecvError::Empty)) => return None,
            // The thread could not start, or died without an answer.
            None | Some(Err(TryRecvError::Disconnected)) => {
                let e = std::io::Error::other("the snapshot writer thread failed");
                SnapshotWritten::not_run(o.meta, &o.dir, e)
            }
        };
        self.outstanding = None;
        Some(written)
    }
}

impl Drop for ThreadWriter {
    /// Waits for an outstanding write, so nothing writes in the data directory after the
    /// node (and the directory lock) is gone: a member restarted in the same process would
    /// otherwise meet its temp file. Bounded by one snapshot's write and fsync.
    fn drop(&mut self) {
        if let Some(Outstanding { done: Some(rx), .. }) = self.outstanding.take() {
            let _ = rx.recv();
        }
    }
}
