//! Workers that die or stall at random, restarted in loops, still produce the right output.

use std::time::{Duration, Instant};

use crate::harness::{Job, Proc};

const CRASH_LIMIT: Duration = Duration::from_secs(120);
const WORKER_SLOTS: usize = 4;
const RESTART_DELAY: Duration = Duration::from_millis(500);

#[test]
fn workers_that_exit_or_stall_at_random_still_give_sequential_output() {
    // Goal: fault tolerance; method: every task of `test-crash` exits the worker (1 in 3,
    // reduces part-way through writing) or stalls up to the 2 s task timeout (1 in 3);
    // four worker slots are refilled while the coordinator runs; compare with plain word
    // count run sequentially.
    let job = Job::new("crash");
    let expected = job.sequential(&["--app", "wc"]);
    let mut coordinator = job.coordinator("2s", CRASH_LIMIT);
    let app = ["--app", "test-crash"];
    let mut slots: Vec<(Proc, Option<Instant>)> = (0..WORKER_SLOTS)
        .map(|_| (job.worker(&app), None))
        .collect();
    let mut restarts = 0;
    let deadline = Instant::now() + CRASH_LIMIT;
    while coordinator.is_running() {
        assert!(Instant::now() < deadline, "crash job did not finish");
        for (worker, exited_at) in &mut slots {
            if worker.is_running() {
                continue;
            }
            let since = *exited_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= RESTART_DELAY && coordinator.is_running() {
                *worker = job.worker(&app);
                *exited_at = None;
                restarts += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(coordinator.wait().success(), "coordinator failed");
    eprintln!("worker restarts: {restarts}");
    job.assert_same("crash output", &job.output(), &expected);
    job.cleanup();
}
