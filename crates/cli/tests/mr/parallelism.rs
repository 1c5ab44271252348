//! Workers really run tasks side by side, and nothing runs twice without a failure.

use std::time::Duration;

use crate::harness::{Job, PROCESS_LIMIT, wait_until};

#[test]
fn map_tasks_run_on_both_workers_and_two_at_once() {
    // Goal: map parallelism; method: each map holds a marker file for a second and reports
    // its pid and how many markers it saw at once.
    let job = Job::new("map-parallelism");
    let mut coordinator = job.coordinator("10s", PROCESS_LIMIT);
    let _workers: Vec<_> = (0..2)
        .map(|_| job.worker(&["--app", "test-mtiming"]))
        .collect();
    assert!(coordinator.wait().success());
    let output = job.output();
    let workers_with_maps = output.iter().filter(|l| l.starts_with("times-")).count();
    assert_eq!(
        workers_with_maps, 2,
        "both workers should run maps: {output:?}"
    );
    assert!(
        output
            .iter()
            .any(|l| l.starts_with("parallel-") && l.ends_with(" 2")),
        "two maps should have run at once: {output:?}"
    );
    job.cleanup();
}

#[test]
fn reduce_tasks_run_on_both_workers_at_once() {
    // Goal: reduce parallelism; method: each key's reduce holds a marker file for a second
    // and reports how many reducers it saw at once.
    let job = Job::new("reduce-parallelism");
    let mut coordinator = job.coordinator("10s", PROCESS_LIMIT);
    let _workers: Vec<_> = (0..2)
        .map(|_| job.worker(&["--app", "test-rtiming"]))
        .collect();
    assert!(coordinator.wait().success());
    let output = job.output();
    let overlapping = output
        .iter()
        .filter(|l| l.len() == 3 && l.as_bytes()[0].is_ascii_lowercase() && l.ends_with(" 2"))
        .count();
    assert!(overlapping >= 2, "reduces should overlap: {output:?}");
    job.cleanup();
}

#[test]
fn each_map_task_runs_exactly_once_when_maps_are_slow_and_workers_join_late() {
    // Goal: no task is re-issued before its timeout; method: maps take 2-5 s (timeout 10 s)
    // and leave one marker file per run; two more workers join once maps are under way; the
    // reduce counts the markers and must see exactly 8.
    let job = Job::new("job-count");
    let app = ["--app", "test-jobcount"];
    let mut coordinator = job.coordinator("10s", PROCESS_LIMIT);
    let mut workers: Vec<_> = (0..2).map(|_| job.worker(&app)).collect();
    wait_until("two maps to start", Duration::from_secs(30), || {
        job.count_files("mr-jobcount-") >= 2
    });
    workers.extend((0..2).map(|_| job.worker(&app)));
    assert!(coordinator.wait().success());
    job.assert_same("job count output", &job.output(), &["a 8".to_owned()]);
    for w in &mut workers {
        assert!(w.wait().success(), "{} failed", w.name);
    }
    job.cleanup();
}
