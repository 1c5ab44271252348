//! Whole jobs with well-behaved workers: word count, the indexer, exit timing, failure.

use std::time::{Duration, Instant};

use crate::harness::{Job, PROCESS_LIMIT, wait_until};

#[test]
fn word_count_with_three_workers_equals_sequential_when_coordinator_exits() {
    // Goal: the basic job is right and final when the coordinator exits; method: wait for
    // the coordinator only, then compare with the sequential run.
    let job = Job::new("wc");
    let expected = job.sequential(&["--app", "wc"]);
    let mut coordinator = job.coordinator("3s", PROCESS_LIMIT);
    let _workers: Vec<_> = (0..3).map(|_| job.worker(&["--app", "wc"])).collect();
    assert!(coordinator.wait().success(), "coordinator failed");
    job.assert_same("word count output", &job.output(), &expected);
    job.cleanup();
}

#[test]
fn indexer_with_two_workers_is_final_when_the_first_worker_exits() {
    // Goal: workers exit only after the whole job is done; method: compare the output the
    // moment the first-started worker exits.
    let job = Job::new("indexer");
    let expected = job.sequential(&["--app", "indexer"]);
    let mut coordinator = job.coordinator("3s", PROCESS_LIMIT);
    let mut first = job.worker(&["--app", "indexer"]);
    let mut second = job.worker(&["--app", "indexer"]);
    assert!(first.wait().success(), "worker failed");
    job.assert_same("indexer output", &job.output(), &expected);
    assert!(second.wait().success());
    assert!(coordinator.wait().success());
    job.cleanup();
}

#[test]
fn no_process_exits_before_every_output_file_is_final() {
    // Goal: no early exit; method: some reduces take 3 s; snapshot the output when the
    // first process (coordinator or worker) exits and compare it with the output at the end.
    let job = Job::new("early-exit");
    let app = ["--app", "test-early-exit"];
    let mut procs = vec![job.coordinator("10s", PROCESS_LIMIT)];
    procs.extend((0..3).map(|_| job.worker(&app)));
    let deadline = Instant::now() + PROCESS_LIMIT;
    let at_first_exit = loop {
        if let Some(p) = procs
            .iter_mut()
            .find_map(|p| (!p.is_running()).then_some(p))
        {
            eprintln!("first to exit: {}", p.name);
            break job.output();
        }
        assert!(Instant::now() < deadline, "no process exited");
        std::thread::sleep(Duration::from_millis(10));
    };
    for p in &mut procs {
        assert!(p.wait().success(), "{} failed", p.name);
    }
    let at_end = job.output();
    job.assert_same(
        "output at first exit vs at the end",
        &at_first_exit,
        &at_end,
    );
    let expected: Vec<String> = job.inputs.iter().map(|i| format!("{i} 1")).collect();
    job.assert_same("early-exit output", &at_end, &expected);
    job.cleanup();
}

#[test]
fn a_task_that_keeps_failing_fails_the_job_and_every_process_exits() {
    // Goal: a broken mapper does not hang the job; method: a mapper that always exits 7;
    // after 4 failures of one task the coordinator and the worker exit with status 1.
    let job = Job::new("failing-task");
    let mut coordinator = job.coordinator("3s", PROCESS_LIMIT);
    let mut worker = job.worker(&["--mapper", "exit 7", "--reducer", "cat"]);
    assert_eq!(
        coordinator.wait().code(),
        Some(1),
        "coordinator should report failure"
    );
    assert_eq!(
        worker.wait().code(),
        Some(1),
        "worker should report failure"
    );
    wait_until("no output files", Duration::from_secs(1), || {
        job.output().is_empty()
    });
    job.cleanup();
}
