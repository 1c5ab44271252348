//! Crash points: for each store operation, count its disk steps, then for every k crash the
//! simulated disk after exactly k of them (and under several crash seeds, so lost, kept and
//! torn unsynced writes all occur). After recovery the state must be valid, must be the
//! state before or after the operation (or one in between that the operation's partial
//! writes allow), must be exactly "after" if the operation returned Ok, and the store must
//! keep working: one more synced append survives a second crash. Recovery is itself
//! crashed after each of its own disk steps (it cuts torn tails and finishes interrupted
//! installs) and must then give the same state.

use crate::common::{assert_valid, entries, meta};
use shardkv_storage::{RaftStore, Recovered, SimDisk, StorageError, StoreOptions};
use shardkv_types::{Entry, HardState, LogIndex, NodeId, SnapshotMeta, Term};
use std::path::Path;

type Store = RaftStore<SimDisk>;
type State = (HardState, Option<(SnapshotMeta, Vec<u8>)>, Vec<Entry>);

const DIR: &str = "/data/n1";
const CRASH_SEEDS: u64 = 4;

struct Scenario {
    name: &'static str,
    setup: fn(&mut Store),
    step: fn(&mut Store) -> Result<(), StorageError>,
    /// States the operation may leave if interrupted, besides "before" and "after".
    partial: fn(&State) -> Vec<State>,
}

fn opts() -> StoreOptions {
    StoreOptions {
        segment_bytes_max: 200,
    }
}

fn open(disk: &SimDisk) -> Result<(Store, Recovered), StorageError> {
    RaftStore::open_with(disk.clone(), Path::new(DIR), NodeId(1), opts())
}

fn state(r: &Recovered) -> State {
    (r.hard_state, r.snapshot.clone(), r.entries.clone())
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: Some(NodeId(1)),
        commit: LogIndex(commit),
    }
}

/// A synced log 1..=n of term 1 (written in batches of 3, so it spans segments) with a
/// hard state.
fn base(s: &mut Store, n: u64) {
    for lo in (1..=n).step_by(3) {
        s.append(&entries(1, lo, (lo + 2).min(n))).unwrap();
    }
    s.set_hard_state(hs(1, n / 2)).unwrap();
    s.sync().unwrap();
}

/// `before` with its log cut to `keep` entries and `tail` appended one entry at a time.
fn with_tail(before: &State, keep: usize, tail: &[Entry]) -> Vec<State> {
    (1..=tail.len())
        .map(|m| {
            let mut s = before.clone();
            s.2.truncate(keep);
            s.2.extend_from_slice(&tail[..m]);
            s
        })
        .collect()
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "append (4 entries, then sync)",
            setup: |s| base(s, 5),
            step: |s| {
                s.append(&entries(1, 6, 9))?;
                s.sync()
            },
            partial: |b| with_tail(b, 5, &entries(1, 6, 9)),
        },
        Scenario {
            name: "truncate conflicting suffix (re-append 5..7 at term 2, then sync)",
            setup: |s| base(s, 8),
            step: |s| {
                s.append(&entries(2, 5, 7))?;
                s.sync()
            },
            partial: |b| with_tail(b, 4, &entries(2, 5, 7)),
        },
        Scenario {
            name: "hard state (set, then sync)",
            setup: |s| base(s, 3),
            step: |s| {
                s.set_hard_state(hs(2, 3))?;
                s.sync()
            },
            partial: |_| Vec::new(),
        },
        Scenario {
            name: "append that seals the segment and starts the next",
            setup: |s| base(s, 9),
            step: |s| {
                s.append(&entries(1, 10, 16))?;
                s.append(&entries(1, 17, 24))?;
                s.set_hard_state(hs(1, 12))?;
                s.sync()
            },
            partial: |b| {
                let tail = entries(1, 10, 24);
                let mut v = with_tail(b, 9, &tail);
                let mut done = b.clone();
                done.2.extend(tail);
                v.push(done);
                v
            },
        },
        Scenario {
            name: "snapshot write (log matches: drop prefix, delete old segments and snapshot)",
            setup: |s| {
                base(s, 30);
                s.save_snapshot(meta(5, 1), b"s5").unwrap();
                s.save_snapshot(meta(12, 1), b"s12").unwrap();
            },
            step: |s| s.save_snapshot(meta(25, 1), b"s25"),
            partial: |_| Vec::new(),
        },
        Scenario {
            name: "snapshot install (divergent log: leader's snapshot at 12, term 3)",
            setup: |s| base(s, 20),
            step: |s| s.save_snapshot(meta(12, 3), b"leader12"),
            partial: |_| Vec::new(),
        },
        Scenario {
            name: "snapshot install ahead of the log (leader's snapshot at 40)",
            setup: |s| base(s, 20),
            step: |s| s.save_snapshot(meta(40, 2), b"leader40"),
            partial: |_| Vec::new(),
        },
    ]
}

fn run(sc: &Scenario) -> u64 {
    // Dry run: the states before and after, and the number of disk steps.
    let disk = SimDisk::new(0);
    let (mut s, _) = open(&disk).unwrap();
    (sc.setup)(&mut s);
    drop(s);
    let (mut s, r) = open(&disk).unwrap();
    let before = state(&r);
    let (ops_before, segments_before) = (disk.ops(), s.segment_count());
    (sc.step)(&mut s).unwrap();
    let steps = disk.ops() - ops_before;
    if sc.name.contains("seals") {
        assert!(
            s.segment_count() > segments_before,
            "{}: no new segment",
            sc.name
        );
    }
    if sc.name.contains("delete old") {
        assert!(
            s.segment_count() < segments_before,
            "{}: nothing deleted",
            sc.name
        );
    }
    drop(s);
    let after = state(&open(&disk).unwrap().1);
    assert_ne!(before, after, "{}: the step changes nothing", sc.name);
    let mut allowed = vec![before.clone(), after.clone()];
    allowed.extend((sc.partial)(&before));

    for k in 0..=steps {
        for seed in 0..CRASH_SEEDS {
            let ctx = format!(
                "{} | crash after disk step {k}/{steps}, crash seed {seed}",
                sc.name
            );
            let disk = SimDisk::new(seed);
            let (mut s, _) = open(&disk).unwrap();
            (sc.setup)(&mut s);
            s.sync().unwrap();
            disk.halt_after_ops(k);
            let result = (sc.step)(&mut s);
            drop(s);
            disk.crash();
            crash_during_recovery(&disk, &ctx);
            let (mut s, r) = open(&disk).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            assert_valid(&r);
            let got = state(&r);
            if result.is_ok() {
                assert_eq!(
                    got, after,
                    "{ctx}: the step returned Ok but its effect was lost"
                );
            } else {
                assert!(
                    allowed.contains(&got),
                    "{ctx}: recovered an impossible state {got:?}"
                );
            }
            // The store keeps working after recovery, and what it syncs survives a crash.
            let next = Entry::normal(Term(9), s.last_index().next(), b"next".to_vec());
            s.append(std::slice::from_ref(&next))
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            s.sync().unwrap();
            drop(s);
            disk.crash();
            let (_, r2) = open(&disk).unwrap_or_else(|e| panic!("{ctx}: second reopen: {e}"));
            let mut want = got;
            want.2.push(next);
            assert_eq!(
                state(&r2),
                want,
                "{ctx}: entry synced after recovery was lost"
            );
        }
    }
    steps
}

/// Recovery itself writes (cuts a torn tail, records an interrupted install, syncs): crash
/// it after each of its disk steps too, on copies of the disk; the next recovery must give
/// the state an uninterrupted one gives.
fn crash_during_recovery(disk: &SimDisk, ctx: &str) -> u64 {
    let probe = disk.fork();
    let ops_before = probe.ops();
    let want = state(
        &open(&probe)
            .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"))
            .1,
    );
    let steps = probe.ops() - ops_before;
    for j in 0..steps {
        let copy = disk.fork();
        copy.halt_after_ops(j);
        assert!(
            open(&copy).is_err(),
            "{ctx}: recovery finished in fewer steps"
        );
        copy.crash();
        let (_, r) = open(&copy)
            .unwrap_or_else(|e| panic!("{ctx}, recovery crashed after step {j}: reopen: {e}"));
        assert_eq!(state(&r), want, "{ctx}: recovery crashed after step {j}");
    }
    steps
}

#[test]
fn crash_after_every_disk_step_of_every_operation_recovers_a_valid_state() {
    // Goal: no crash point loses synced data or leaves an invalid state. Method: above.
    for sc in scenarios() {
        let steps = run(&sc);
        println!(
            "{:>2} crash points (before the first and after each of its disk steps) x {CRASH_SEEDS} seeds: {}",
            steps + 1,
            sc.name
        );
    }
}
