//! The one host loop of a shardkv member, shared by the production server and the
//! simulator: Ready → persist → send → advance, written once so that the simulator crashes
//! the code production runs. Only the [`Disk`](shardkv_storage::Disk), the [`Transport`]
//! and the clock (whoever calls [`Host::tick`]) differ between the two shells.
//!
//! What it is not: no threads, no clock, no sockets, no logging. It does not know what runs
//! above Raft ([`HostedApp`]: a `Replica<SM>` or the simulator's bare Raft harness) nor how
//! messages travel ([`Transport`]); it reports what the shell must log as [`HostEvent`]s
//! through the [`Observer`], which is also where the simulator's invariant checker watches.
//!
//! # The persistence contract (what a reviewer should check)
//!
//! [`Host::drive`] loops over the app's Readys until there are none (or persistence
//! stalls). For each Ready, in this order:
//! 1. `Observer::on_persist` sees the entries about to be written.
//! 2. **Early send** — only when the node is the leader, the Ready changes neither term nor
//!    vote (compared with what the last sync made durable) and carries no snapshot: the
//!    messages go to the transport *before* the entries are durable here (Raft thesis
//!    §10.2.1). Safe because a leader's appends do not promise anything about its own
//!    disk, and the Raft core counts the leader's own entries towards a quorum only after
//!    `advance` marks them stable, which happens after step 3's sync. Followers'
//!    acknowledgements and every vote never take this path: they wait for step 3.
//! 3. **Persist** snapshot, entries, hard state, then **one** sync (group commit: everything
//!    the shell fed in since the last drive shares it). A Ready that only moves the commit
//!    index (no entries, no snapshot, same term and vote) is written but *not* synced: the
//!    commit index is volatile in Raft (recovery clamps it to the log, the leader re-sends
//!    it), so it rides along with the next sync, as in etcd.
//! 4. **Send** the remaining messages (all of them unless step 2 took them).
//! 5. `Observer::on_apply` / `on_leader`; then `HostedApp::advance` applies the committed
//!    entries and acknowledges the Ready to Raft; a snapshot the app took is handed to the
//!    snapshot writer (see "Snapshots in the background"; a finished one is completed at
//!    the start of `drive`, before any Ready).
//! 6. `Observer::on_status`.
//!
//! # Failure policy
//!
//! - `NoSpace` while persisting a Ready **stalls** the node, which runs on without writing
//!   (`Host::is_stalled`): the Ready's entries and hard state go back to Raft, which hands
//!   them out again (the next `drive` tries once more to write them); its messages that
//!   promise nothing about this disk still go (`Message::waits_for_persist`: heartbeat
//!   answers, rejections, a leader's appends and heartbeats — none at all while the term or
//!   vote is not durable), and its committed entries are applied (they are durable on a
//!   quorum). So a member with a full WAL keeps answering heartbeats: with a majority full,
//!   the leader still confirms read indexes and serves linearizable reads, while nothing
//!   is acknowledged that a full disk did not write (this node's entries count for no
//!   quorum until synced; its acknowledgements and votes are held). Writes are answered
//!   `NoSpace` by a stalled leader and `NotLeader` by a stalled follower (the leader may
//!   well have space); reads are served by a stalled leader. A stalled leader hands off
//!   (`RawNode::hand_off_unwritten`) once a quorum of the others has acknowledged entries
//!   it could not write (it appends a no-op to find out), so writes resume on members with
//!   space; with fewer it keeps its place and its reads. No snapshot is taken while stalled (the app is passed 0 log pressure): it
//!   could not be saved, and it must not cover entries this disk lacks.
//!   [`HostEvent::Stalled`] and [`HostEvent::Resumed`] are reported once each, so a stall is
//!   never silent. Only a Ready that brings a snapshot from the leader **freezes** the node
//!   instead (`Host::is_frozen`: the core has already replaced its log with the snapshot):
//!   it is kept, with what of it is already written, and retried on every `drive`; ticks
//!   and peer messages are dropped and, as the core requires between `ready` and
//!   `advance`, nothing but `advance` touches Raft; a frozen leader answers reads
//!   `Unavailable`.
//! - While free space is below the shell's reserve ([`Host::set_disk_low`]) writes are
//!   refused with `NoSpace` before they are proposed; reads keep working.
//! - Any error while saving a snapshot the app took that leaves the store writable
//!   (`NoSpace`, EMFILE, EACCES, a failed fsync of the snapshot's temp file: nothing
//!   acknowledged is in it) is not a stall and not fatal: the full log is still on disk.
//!   The host reports [`HostEvent::SnapshotNotSaved`] and holds the app's snapshots back
//!   for [`SNAPSHOT_RETRY_TICKS_MIN`] ticks, doubling per failure in a row up to
//!   [`SNAPSHOT_RETRY_TICKS_MAX`]; a saved snapshot resets the hold.
//! - A snapshot *from the leader* whose save fails before anything on disk changed (the
//!   store stays writable: EMFILE or EACCES creating its file, a failed fsync of its temp
//!   file) freezes the node like `NoSpace` does ([`HostEvent::Stalled`] says why): the Ready
//!   waits and is tried again after [`SNAPSHOT_RETRY_TICKS_MIN`] ticks, doubling per
//!   failure in a row. A failure after that point (a reset record that must start a new
//!   segment, the rename's directory fsync) poisons the store and stays fatal.
//!
//! # Snapshots in the background
//!
//! A snapshot the app took (step 5) is not written on the spot: the host asks the store
//! for a job (`RaftStore::start_snapshot`) and hands it to the shell's [`SnapshotWriter`]
//! (the server's writes and syncs the file on a thread of its own), or, without one, keeps
//! it and runs it at the start of the next `drive` (the simulator: the completion comes a
//! step later, deterministically). At the start of every `drive` the host collects a done
//! job and completes it (`RaftStore::finish_snapshot`): only then is the log compacted, so
//! a crash before that leaves the previous snapshot and the full log. One job at a time:
//! the app takes no snapshot while one is being written. (Encoding the state machine stays
//! on the node thread: the app does it, into one allocation sized first, shared with the
//! Raft core rather than copied.)
//!
//! # Snapshot points
//!
//! The app decides when to snapshot from the `raft_state_bytes` the host passes to
//! `HostedApp::advance`. The host passes the store's size scaled by a per-member factor
//! within `1 ± SNAPSHOT_JITTER_PERMILLE_MAX / 1000` ([`snapshot_scale_permille`], a pure
//! function of the node id, so the simulator stays deterministic): members of a group
//! snapshot at different log sizes, and one shared fault does not meet them all at the
//! same moment. While snapshots are held back after a failure it passes 0. With
//! [`HostOptions::log_grows_with_state_up_to`] (the server's default) the last snapshot's
//! size, up to a cap, is subtracted first: the log may grow as large as the state before the threshold
//! counts, so each full rewrite of a large state is paid for by as many bytes of log, and
//! snapshots cost at most about the log's own bytes however large the state grows. Recovery
//! then reads at most about the state's size of log after the snapshot, which costs about
//! what reading the snapshot costs.
//! - Any other storage error is [`Fatal`]: after a failed fsync nothing can be promised, so
//!   the shell stops the process (the simulator crashes the node). Messages already handed
//!   to the transport stay sent — that is the crash point between "sent" and "synced" that
//!   the simulator exercises.
//!
//! # Preferred leaders
//!
//! With [`HostOptions::leader_rank`] set, a leader hands leadership to its group's
//! preferred member (see [`leader_preference`]) through Raft's leadership transfer, at most
//! every few election timeouts and only once that member's log matches the leader's, so the
//! leaders of groups that share processes spread over them. It adds no safety obligation:
//! the transfer is the core's. A member whose disk is low, whose log is unwritten, or
//! whose shell handed leadership off ([`Host::decline_leadership_for`]) declines
//! transfers to it (`RawNode::set_declines_transfers`), so the policy never pulls
//! leadership onto a member that cannot serve.
//!
//! # Ownership
//!
//! The host owns the [`RaftStore`](shardkv_storage::RaftStore) and the policy state; the
//! app is passed to every call (`&mut A`) rather than owned, because the simulator keeps a
//! crashed node's app for inspection after its store is gone. Shells must route every
//! mutating call to the app (tick, step, requests) through the host.

mod app;
mod host;
pub mod leader_preference;
mod observer;

use shardkv_raft::{Restored, Snapshot};
use shardkv_storage::Recovered;
use std::sync::Arc;

pub use app::HostedApp;
pub use host::{
    Fatal, Host, HostCounters, HostOptions, REQUESTS_PENDING_MAX_DEFAULT,
    SNAPSHOT_JITTER_PERMILLE_MAX, SNAPSHOT_RETRY_TICKS_MAX, SNAPSHOT_RETRY_TICKS_MIN,
    SnapshotWriter, snapshot_scale_permille,
};
pub use observer::{HostEvent, NoopObserver, Observer, Transport};

/// What a Raft core restarts from, given what the store recovered (recovery's warnings are
/// the shell's to log first).
pub fn restored(rec: Recovered) -> Restored {
    Restored {
        hard_state: rec.hard_state,
        snapshot: rec.snapshot.map(|(meta, data)| Snapshot {
            meta,
            data: Arc::new(data),
        }),
        entries: rec.entries,
    }
}
