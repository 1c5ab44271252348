//! A simulated node's durable half: a simulated disk that loses unsynced writes on a crash
//! and can tear the last one, opened with the real WAL and snapshot code
//! (`shardkv-storage`). While the node is up its `RaftStore` belongs to the node's host.

use shardkv_raft::Restored;
use shardkv_storage::{CrashMode, Identity, IdentityCheck, RaftStore, SimDisk, StorageError};
use shardkv_types::NodeId;
use std::path::PathBuf;

/// The sector size of simulated disks; power-cut pages are multiples of it.
pub const SECTOR_BYTES: u64 = 16;

/// The disk of one simulated node, and sizes remembered across crashes for reporting.
pub struct DiskStore {
    pub disk: SimDisk,
    dir: PathBuf,
    /// Logical size of the persisted Raft state, as of the node's last processing.
    raft_state_bytes: u64,
    /// Size of the newest persisted snapshot (0 if none).
    snapshot_bytes: usize,
    /// Recoveries that cut an unsynced tail with a hole before valid records (a power cut
    /// that persisted pages out of order): how often the fuzz reached that case.
    pub holes_cut: u64,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DiskStore({}, {} B used, {} B raft state)",
            self.dir.display(),
            self.disk.used_bytes(),
            self.raft_state_bytes
        )
    }
}

impl DiskStore {
    pub fn new(id: NodeId, seed: u64) -> DiskStore {
        let disk = SimDisk::new(seed);
        // Small sectors: the simulator's records are small, and power cuts that leave a hole
        // before valid records (`CrashMode::Pages`) need a batch spanning several sectors.
        disk.set_sector_bytes(SECTOR_BYTES);
        DiskStore {
            disk,
            dir: PathBuf::from(format!("/{id}")),
            raft_state_bytes: 0,
            snapshot_bytes: 0,
            holes_cut: 0,
        }
    }

    /// Opens the store as a restarting node does: recovery runs over whatever the disk kept.
    pub fn open(&mut self, id: NodeId) -> Result<(RaftStore<SimDisk>, Restored), StorageError> {
        let (store, rec) = RaftStore::open(self.disk.clone(), &self.dir, id)?;
        self.raft_state_bytes = store.raft_state_bytes();
        self.snapshot_bytes = rec.snapshot.as_ref().map_or(0, |(_, d)| d.len());
        if rec.warnings.iter().any(|w| w.contains("out of order")) {
            self.holes_cut += 1;
        }
        Ok((store, shardkv_host::restored(rec)))
    }

    /// Power loss: the disk keeps what was synced, and of the unsynced writes what `mode`
    /// lets survive (a prefix with a torn last write, or any subset of their pages). The
    /// caller drops the store first.
    pub fn crash(&mut self, mode: CrashMode) {
        self.disk.crash_with(mode);
    }

    /// Replaces the disk with an empty one: the data directory was wiped (or the disk
    /// replaced). The node must be down.
    pub fn wipe(&mut self, seed: u64) {
        self.disk = SimDisk::new(seed);
        self.raft_state_bytes = 0;
        self.snapshot_bytes = 0;
    }

    /// The server's start-up check of the data directory (`shardkv_storage::check_identity`):
    /// an empty one is refused unless `bootstrap`.
    pub fn check_identity(
        &mut self,
        given: &Identity,
        bootstrap: bool,
    ) -> Result<IdentityCheck, StorageError> {
        shardkv_storage::check_identity(&mut self.disk.clone(), &self.dir, given, bootstrap)
    }

    /// Records the sizes the node's host reports after processing.
    pub(crate) fn note_sizes(&mut self, raft_state_bytes: u64, snapshot_bytes: Option<usize>) {
        self.raft_state_bytes = raft_state_bytes;
        if let Some(b) = snapshot_bytes {
            self.snapshot_bytes = b;
        }
    }

    /// Bytes of the newest persisted snapshot; 0 if there is none.
    pub fn snapshot_bytes(&self) -> usize {
        self.snapshot_bytes
    }

    /// Hard state + live log bytes, as of the last persist.
    pub fn raft_state_bytes(&self) -> usize {
        self.raft_state_bytes as usize
    }
}
