//! A simulated node's durable half: the real WAL and snapshot code (`shardkv-storage`) over
//! a simulated disk that loses unsynced writes on a crash and can tear the last one.

use shardkv_raft::{Restored, Snapshot};
use shardkv_storage::{RaftStore, SimDisk, StorageError};
use shardkv_types::{Entry, HardState, NodeId, SnapshotMeta};
use std::path::PathBuf;
use std::sync::Arc;

/// The disk of one simulated node and, while the node is up, the store open on it.
pub struct DiskStore {
    pub disk: SimDisk,
    dir: PathBuf,
    store: Option<RaftStore<SimDisk>>,
    /// Logical size of the persisted Raft state, remembered across crashes for reporting.
    raft_state_bytes: u64,
    /// Size of the newest persisted snapshot (0 if none).
    snapshot_bytes: usize,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DiskStore({}, open: {}, {} B)",
            self.dir.display(),
            self.store.is_some(),
            self.raft_state_bytes
        )
    }
}

impl DiskStore {
    pub fn new(id: NodeId, seed: u64) -> DiskStore {
        DiskStore {
            disk: SimDisk::new(seed),
            dir: PathBuf::from(format!("/{id}")),
            store: None,
            raft_state_bytes: 0,
            snapshot_bytes: 0,
        }
    }

    /// Opens the store as a restarting node does: recovery runs over whatever the disk kept.
    pub fn open(&mut self, id: NodeId) -> Result<Restored, StorageError> {
        let (store, rec) = RaftStore::open(self.disk.clone(), &self.dir, id)?;
        self.raft_state_bytes = store.raft_state_bytes();
        self.snapshot_bytes = rec.snapshot.as_ref().map_or(0, |(_, d)| d.len());
        self.store = Some(store);
        Ok(Restored {
            hard_state: rec.hard_state,
            snapshot: rec.snapshot.map(|(meta, data)| Snapshot {
                meta,
                data: Arc::new(data),
            }),
            entries: rec.entries,
        })
    }

    /// Power loss: the store is dropped and the disk keeps only what was synced (perhaps
    /// with a torn last write).
    pub fn crash(&mut self) {
        self.store = None;
        self.disk.crash();
    }

    fn store(&mut self) -> &mut RaftStore<SimDisk> {
        self.store
            .as_mut()
            .expect("store is open while the node is up")
    }

    /// Persists one Ready's durable parts with one sync (group commit).
    pub fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hs: Option<HardState>,
    ) -> Result<(), StorageError> {
        let store = self.store();
        if let Some(s) = snapshot {
            store.save_snapshot(s.meta, &s.data)?;
        }
        store.append(entries)?;
        if let Some(hs) = hs {
            store.set_hard_state(hs)?;
        }
        store.sync()?;
        if let Some(s) = snapshot {
            self.snapshot_bytes = s.data.len();
        }
        self.raft_state_bytes = self.store().raft_state_bytes();
        Ok(())
    }

    /// Durably stores a snapshot the application took.
    pub fn save_snapshot(&mut self, meta: SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.store().save_snapshot(meta, data)?;
        self.snapshot_bytes = data.len();
        self.raft_state_bytes = self.store().raft_state_bytes();
        Ok(())
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
