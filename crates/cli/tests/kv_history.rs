//! The KV service as real processes under crashes and freezes, judged by its history:
//! concurrent clients record every operation (ok / failed / unknown) while the test kills
//! and restarts the leader, kills and restarts every member, and freezes the leader; then
//! every acknowledged append is checked to be present exactly once and in order, and the
//! whole history must pass the linearizability checker. Also: `shardkv bench --history`
//! followed by `shardkv check-history`, and check-history's exit codes.

mod common;

use common::cluster::{Cluster, LEADER_WAIT, run_cli, wait_until};
use common::history::{Shared, await_progress, read_back_and_check, run_client, stop_clients};
use shardkv_client::ClientOptions;
use std::time::Duration;

/// Clients running concurrently.
const CLIENTS: usize = 5;
/// Keys every client reads and writes (each client also appends to a key of its own).
const SHARED_KEYS: u64 = 3;
/// Leader kills (each followed by a restart of the killed member).
const LEADER_KILLS: usize = 5;
/// Kills of every member at once (each followed by restarting all).
const FULL_RESTARTS: usize = 2;
/// Acknowledged operations awaited between faults, so each fault hits a working group.
const PROGRESS_OPS: u64 = 30;
/// How long the clients get to finish after being told to stop.
const CLIENT_STOP_WAIT: Duration = Duration::from_secs(60);

/// Fault counts, for the report.
#[derive(Debug, Default)]
struct Faults {
    leader_kills: usize,
    full_restarts: usize,
    leader_freezes: usize,
}

/// The faults, in order: leader kills, full restarts, a leader frozen past an election.
fn inject_faults(c: &mut Cluster, shared: &Shared) -> Faults {
    let mut faults = Faults::default();
    await_progress(shared, PROGRESS_OPS, "before the first fault");
    for _ in 0..LEADER_KILLS {
        let leader = c.leader();
        c.kill(leader);
        let next = c.leader();
        assert_ne!(next, leader, "a killed leader is replaced");
        await_progress(shared, PROGRESS_OPS, "under a new leader");
        c.restart(leader);
        faults.leader_kills += 1;
    }
    for _ in 0..FULL_RESTARTS {
        c.leader();
        for id in 1..=3 {
            c.kill(id);
        }
        for id in 1..=3 {
            c.restart(id);
        }
        c.leader();
        await_progress(shared, PROGRESS_OPS, "after restarting every member");
        faults.full_restarts += 1;
    }
    let frozen = c.leader();
    c.stop(frozen);
    // The others elect a new leader only after an election timeout without heartbeats.
    // Bounded: fails if no other member leads within the leader wait.
    let mut next = frozen;
    wait_until("a leader other than the frozen one", LEADER_WAIT, || {
        next = c.leader();
        next != frozen
    });
    assert_ne!(next, frozen, "a frozen leader is replaced");
    await_progress(shared, PROGRESS_OPS, "while the old leader is frozen");
    c.cont(frozen);
    faults.leader_freezes += 1;
    await_progress(shared, PROGRESS_OPS, "after the frozen leader resumed");
    faults
}

/// Goal: under repeated crashes of the leader, of every member, and a frozen leader, no
/// acknowledged write is lost or duplicated and the history is linearizable. Method: 3
/// server processes (small max-raft-state, so restarts go through snapshots), 5 clients
/// recording a history of puts / appends / gets / deletes / cas on 3 shared keys plus one
/// append-only key each (two of them with short timeouts, so some operations end failed or
/// unknown); faults injected with progress awaited between them; then every
/// client key is read back and the whole history, final reads included, is checked.
#[test]
fn history_under_leader_kills_full_restarts_and_a_frozen_leader_is_linearizable() {
    let mut c = Cluster::start(3, &["--max-raft-state", "32KiB"]);
    c.leader();
    let shared = Shared::new();
    let opts = ClientOptions {
        op_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    // Two impatient clients give up during outages, so the history also holds operations
    // that failed and operations whose outcome is unknown.
    let impatient = ClientOptions {
        attempt_timeout: Duration::from_millis(100),
        op_timeout: Duration::from_millis(250),
        ..ClientOptions::default()
    };
    let handles: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let o = if w < 2 { &impatient } else { &opts };
            let client = c.client_with(o.clone());
            c.spawn_task(run_client(client, w, SHARED_KEYS, shared.clone()))
        })
        .collect();
    let faults = inject_faults(&mut c, &shared);
    let recorded = stop_clients(&c, &shared, handles, CLIENT_STOP_WAIT);

    let mut reader = c.client_with(opts);
    let what = format!(
        "faults: {} leader kills, {} full restarts, {} leader freeze(s)",
        faults.leader_kills, faults.full_restarts, faults.leader_freezes,
    );
    read_back_and_check(&c, &mut reader, &shared, recorded, SHARED_KEYS, &what);
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Goal: a bench history is complete and checkable. Method: a short `shardkv bench
/// --history` (mixed reads and writes on a few keys) against 3 members, then
/// `shardkv check-history` on the file must say linearizable (exit 0).
#[test]
fn bench_history_of_a_three_member_group_passes_check_history() {
    let c = Cluster::start(3, &[]);
    c.leader();
    let path = c.dir.join("bench.jsonl");
    let path_arg = path.to_str().expect("UTF-8 temp path");
    let bench = c.cli(
        &[
            "bench",
            "--clients",
            "8",
            "--keys",
            "5",
            "--read-ratio",
            "0.5",
            "--value-size",
            "32",
            "--warmup",
            "200ms",
            "--duration",
            "2s",
            "--history",
            path_arg,
            "-w",
            "json",
        ],
        None,
    );
    assert!(bench.status.success(), "bench failed: {}", stderr(&bench));
    let report: serde_json::Value =
        serde_json::from_str(stdout(&bench).trim()).expect("bench -w json prints JSON");
    let ops = |kind: &str| report[kind]["ops"].as_u64().expect("ops count");
    assert!(ops("writes") > 0 && ops("reads") > 0, "{report}");
    let written = report["history"]["operations"]
        .as_u64()
        .expect("history count");
    assert!(
        written >= ops("total"),
        "the history holds every operation, warmup included: {report}"
    );
    let check = run_cli(&["check-history", path_arg], &[], None);
    assert!(
        check.status.success(),
        "check-history: {}{}",
        stdout(&check),
        stderr(&check)
    );
    assert!(stdout(&check).contains("verdict: linearizable"));
}

/// Goal: check-history's exit codes say what it found. Method: hand-written files: a
/// linearizable history (0), a stale read (1, with an explanation), a malformed line (2),
/// and a history the search cannot decide in one step (2, "undecided").
#[test]
fn check_history_exits_0_linearizable_1_not_2_unreadable_or_undecided() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, lines: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n")).expect("write history");
        path.to_str().expect("UTF-8 path").to_string()
    };
    let put =
        r#"{"client":1,"op":"put","key":"x","value":"1","start_ns":0,"end_ns":10,"status":"ok"}"#;
    let good = write(
        "good.jsonl",
        &[
            put,
            r#"{"client":2,"op":"get","key":"x","output":"1","start_ns":20,"end_ns":30,"status":"ok"}"#,
        ],
    );
    let stale = write(
        "stale.jsonl",
        &[
            put,
            r#"{"client":2,"op":"get","key":"x","output":null,"start_ns":20,"end_ns":30,"status":"ok"}"#,
        ],
    );
    let garbage = write("garbage.jsonl", &[put, "{not json"]);
    let busy: Vec<String> = (0..6)
        .map(|i| {
            format!(
                r#"{{"client":{i},"op":"append","key":"y","value":"{i}","start_ns":0,"end_ns":100,"status":"ok"}}"#
            )
        })
        .chain([
            r#"{"client":9,"op":"get","key":"y","output":"543210","start_ns":200,"end_ns":300,"status":"ok"}"#
                .to_string(),
        ])
        .collect();
    let busy_refs: Vec<&str> = busy.iter().map(String::as_str).collect();
    let busy = write("busy.jsonl", &busy_refs);

    let run = |args: &[&str]| run_cli(args, &[], None);
    let o = run(&["check-history", &good]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("verdict: linearizable"));

    let o = run(&["check-history", &stale]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not linearizable"), "{}", stderr(&o));

    let o = run(&["check-history", &garbage]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unreadable input"), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));

    let missing = dir.path().join("missing.jsonl");
    let o = run(&["check-history", missing.to_str().expect("UTF-8")]);
    assert_eq!(o.status.code(), Some(2));

    let o = run(&["check-history", "--steps-max-per-key", "1", &busy]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("undecided"), "{}", stderr(&o));
    let o = run(&["check-history", &busy]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
