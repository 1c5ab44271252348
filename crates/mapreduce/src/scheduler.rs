//! The coordinator's task table as a pure state machine.
//!
//! No I/O and no clock: time comes in as milliseconds since the coordinator started, so every
//! decision (hand out, re-issue after the timeout, accept, fail the job) is a function of the
//! calls made, and the unit tests below drive it event by event.

use std::fmt;

/// Which phase a task belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    Map,
    Reduce,
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskKind::Map => "map",
            TaskKind::Reduce => "reduce",
        })
    }
}

/// What a worker asking for work is told to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignment {
    Map {
        task: u32,
        attempt: u64,
        input: String,
        n_reduce: u32,
    },
    Reduce {
        task: u32,
        attempt: u64,
        n_map: u32,
    },
    /// Every task of the current phase is out; ask again later.
    Wait,
    /// The job is over (done or failed); the worker should exit.
    Exit,
}

/// The outcome a worker reports for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub kind: TaskKind,
    pub task: u32,
    pub attempt: u64,
    /// `Ok(())`: the attempt's output files are final. `Err`: why it failed.
    pub outcome: Result<(), String>,
}

/// What the scheduler made of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportEffect {
    /// The task is now done (possibly by an attempt that had already timed out: its files
    /// are complete, so there is no reason to wait for the re-issued one).
    Completed,
    /// The task was already done: a duplicate, harmless because outputs are renamed
    /// atomically and deterministic.
    Duplicate,
    /// A failure of an attempt that is no longer the current one: ignored.
    StaleFailure,
    /// The current attempt failed; the task will be handed out again.
    Retrying { failures: u32 },
    /// The task failed `failures_max` times: the job is abandoned.
    JobFailed { reason: String },
    /// The job was already abandoned; the report changes nothing.
    JobOver,
    /// The attempt number was never handed out (a confused or foreign client): ignored.
    UnknownAttempt,
}

/// Where the job stands, for progress reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub maps_done: u32,
    pub n_map: u32,
    pub reduces_done: u32,
    pub n_reduce: u32,
    /// Tasks of the current phase handed out and not yet reported.
    pub in_progress: u32,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "phase {}: map {}/{} done, reduce {}/{} done, {} running",
            self.phase,
            self.maps_done,
            self.n_map,
            self.reduces_done,
            self.n_reduce,
            self.in_progress
        )
    }
}

/// The job's phase. Reduce tasks are handed out only once every map task is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Map,
    Reduce,
    Done,
    Failed(String),
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Map => f.write_str("map"),
            Phase::Reduce => f.write_str("reduce"),
            Phase::Done => f.write_str("done"),
            Phase::Failed(reason) => write!(f, "failed ({reason})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    Idle,
    /// Invariant: `attempt` is the newest attempt handed out for this task.
    Running {
        attempt: u64,
        worker: String,
        started_ms: u64,
    },
    Done,
}

#[derive(Clone, Debug)]
struct Task {
    slot: Slot,
    /// Failed attempts so far; the job fails when this reaches `failures_max`.
    failures: u32,
}

/// A task handed out earlier whose timeout passed; it goes back to the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub kind: TaskKind,
    pub task: u32,
    pub attempt: u64,
    pub worker: String,
}

/// The task table of one job.
#[derive(Debug)]
pub struct Scheduler {
    inputs: Vec<String>,
    n_reduce: u32,
    maps: Vec<Task>,
    reduces: Vec<Task>,
    phase: Phase,
    task_timeout_ms: u64,
    failures_max: u32,
    /// Invariant: greater than every attempt handed out so far.
    attempt_next: u64,
}

impl Scheduler {
    /// A job with one map task per input and `n_reduce` reduce tasks.
    ///
    /// # Panics
    /// If `inputs` is empty, `n_reduce` is 0, `task_timeout_ms` is 0 or `failures_max` is 0.
    pub fn new(
        inputs: Vec<String>,
        n_reduce: u32,
        task_timeout_ms: u64,
        failures_max: u32,
    ) -> Self {
        assert!(!inputs.is_empty(), "a job needs at least one input");
        assert!(u32::try_from(inputs.len()).is_ok(), "too many inputs");
        assert!(n_reduce > 0, "a job needs at least one reduce task");
        assert!(task_timeout_ms > 0 && failures_max > 0);
        let fresh = |n: usize| {
            (0..n)
                .map(|_| Task {
                    slot: Slot::Idle,
                    failures: 0,
                })
                .collect::<Vec<_>>()
        };
        Scheduler {
            maps: fresh(inputs.len()),
            reduces: fresh(n_reduce as usize),
            inputs,
            n_reduce,
            phase: Phase::Map,
            task_timeout_ms,
            failures_max,
            attempt_next: 1,
        }
    }

    pub fn n_map(&self) -> u32 {
        self.maps.len() as u32
    }

    pub fn n_reduce(&self) -> u32 {
        self.n_reduce
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// True once the job is over, successfully or not.
    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed(_))
    }

    pub fn progress(&self) -> Progress {
        let done = |tasks: &[Task]| tasks.iter().filter(|t| t.slot == Slot::Done).count() as u32;
        let running = |tasks: &[Task]| {
            tasks
                .iter()
                .filter(|t| matches!(t.slot, Slot::Running { .. }))
                .count() as u32
        };
        let in_progress = match self.phase {
            Phase::Map => running(&self.maps),
            Phase::Reduce => running(&self.reduces),
            Phase::Done | Phase::Failed(_) => 0,
        };
        Progress {
            phase: self.phase.clone(),
            maps_done: done(&self.maps),
            n_map: self.n_map(),
            reduces_done: done(&self.reduces),
            n_reduce: self.n_reduce,
            in_progress,
        }
    }

    /// Puts every running task of the current phase whose timeout has passed back in the
    /// pool, and returns them (for logging). A task is re-issued only after its full timeout,
    /// never speculatively, so a slow but live worker is not duplicated early.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Expired> {
        let timeout_ms = self.task_timeout_ms;
        let Some((kind, tasks)) = self.current_tasks_mut() else {
            return Vec::new();
        };
        let mut expired = Vec::new();
        for (index, task) in tasks.iter_mut().enumerate() {
            if let Slot::Running {
                attempt,
                worker,
                started_ms,
            } = &task.slot
                && now_ms.saturating_sub(*started_ms) >= timeout_ms
            {
                expired.push(Expired {
                    kind,
                    task: index as u32,
                    attempt: *attempt,
                    worker: worker.clone(),
                });
                task.slot = Slot::Idle;
            }
        }
        expired
    }

    /// When (ms) the earliest running task of the current phase times out, if any runs: a
    /// worker told to wait need not ask again before then unless a report changes things.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        let tasks = match self.phase {
            Phase::Map => &self.maps,
            Phase::Reduce => &self.reduces,
            Phase::Done | Phase::Failed(_) => return None,
        };
        tasks
            .iter()
            .filter_map(|t| match t.slot {
                Slot::Running { started_ms, .. } => {
                    Some(started_ms.saturating_add(self.task_timeout_ms))
                }
                Slot::Idle | Slot::Done => None,
            })
            .min()
    }

    /// Hands the lowest-numbered idle task of the current phase to `worker`. Call
    /// [`Scheduler::expire`] first so timed-out tasks are idle again.
    pub fn assign(&mut self, now_ms: u64, worker: &str) -> Assignment {
        let attempt = self.attempt_next;
        let n_reduce = self.n_reduce;
        let n_map = self.n_map();
        let Some((kind, tasks)) = self.current_tasks_mut() else {
            return Assignment::Exit;
        };
        let Some(index) = tasks.iter().position(|t| t.slot == Slot::Idle) else {
            return Assignment::Wait;
        };
        tasks[index].slot = Slot::Running {
            attempt,
            worker: worker.to_owned(),
            started_ms: now_ms,
        };
        self.attempt_next += 1;
        let task = index as u32;
        match kind {
            TaskKind::Map => Assignment::Map {
                task,
                attempt,
                input: self.inputs[index].clone(),
                n_reduce,
            },
            TaskKind::Reduce => Assignment::Reduce {
                task,
                attempt,
                n_map,
            },
        }
    }

    /// Applies a worker's report.
    ///
    /// # Panics
    /// If the task number is out of range (the RPC layer validates it first).
    pub fn report(&mut self, report: &Report) -> ReportEffect {
        if matches!(self.phase, Phase::Failed(_)) {
            return ReportEffect::JobOver;
        }
        if report.attempt == 0 || report.attempt >= self.attempt_next {
            return ReportEffect::UnknownAttempt;
        }
        let failures_max = self.failures_max;
        let tasks = match report.kind {
            TaskKind::Map => &mut self.maps,
            TaskKind::Reduce => &mut self.reduces,
        };
        let task = &mut tasks[report.task as usize];
        if task.slot == Slot::Done {
            return ReportEffect::Duplicate;
        }
        let effect = match &report.outcome {
            Ok(()) => {
                task.slot = Slot::Done;
                ReportEffect::Completed
            }
            Err(error) => {
                let current =
                    matches!(task.slot, Slot::Running { attempt, .. } if attempt == report.attempt);
                if !current {
                    return ReportEffect::StaleFailure;
                }
                task.slot = Slot::Idle;
                task.failures += 1;
                if task.failures >= failures_max {
                    let reason = format!(
                        "{} task {} failed {} times, last: {error}",
                        report.kind, report.task, task.failures
                    );
                    self.phase = Phase::Failed(reason.clone());
                    return ReportEffect::JobFailed { reason };
                }
                ReportEffect::Retrying {
                    failures: task.failures,
                }
            }
        };
        self.maybe_advance_phase();
        effect
    }

    fn maybe_advance_phase(&mut self) {
        let all_done = |tasks: &[Task]| tasks.iter().all(|t| t.slot == Slot::Done);
        if self.phase == Phase::Map && all_done(&self.maps) {
            self.phase = Phase::Reduce;
        }
        if self.phase == Phase::Reduce && all_done(&self.reduces) {
            self.phase = Phase::Done;
        }
    }

    fn current_tasks_mut(&mut self) -> Option<(TaskKind, &mut Vec<Task>)> {
        match self.phase {
            Phase::Map => Some((TaskKind::Map, &mut self.maps)),
            Phase::Reduce => Some((TaskKind::Reduce, &mut self.reduces)),
            Phase::Done | Phase::Failed(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: TaskKind, task: u32, attempt: u64) -> Report {
        Report {
            kind,
            task,
            attempt,
            outcome: Ok(()),
        }
    }

    fn failed(kind: TaskKind, task: u32, attempt: u64) -> Report {
        Report {
            kind,
            task,
            attempt,
            outcome: Err("boom".into()),
        }
    }

    fn two_files(n_reduce: u32) -> Scheduler {
        Scheduler::new(vec!["a.txt".into(), "b.txt".into()], n_reduce, 1000, 3)
    }

    fn map_of(a: &Assignment) -> (u32, u64) {
        match a {
            Assignment::Map { task, attempt, .. } => (*task, *attempt),
            other => panic!("expected a map task, got {other:?}"),
        }
    }

    #[test]
    fn maps_first_then_reduces_then_exit() {
        // Goal: the phase order; method: run a 2-map 2-reduce job with prompt reports.
        let mut s = two_files(2);
        let (m0, a0) = map_of(&s.assign(0, "w1"));
        let (m1, a1) = map_of(&s.assign(0, "w2"));
        assert_eq!((m0, m1), (0, 1));
        assert_eq!(
            s.assign(0, "w3"),
            Assignment::Wait,
            "no reduce before all maps are done"
        );
        assert_eq!(s.report(&ok(TaskKind::Map, 0, a0)), ReportEffect::Completed);
        assert_eq!(s.assign(1, "w3"), Assignment::Wait, "map 1 still running");
        assert_eq!(s.report(&ok(TaskKind::Map, 1, a1)), ReportEffect::Completed);
        assert_eq!(*s.phase(), Phase::Reduce);
        let r0 = s.assign(2, "w1");
        let r1 = s.assign(2, "w2");
        assert!(matches!(
            r0,
            Assignment::Reduce {
                task: 0,
                n_map: 2,
                ..
            }
        ));
        assert!(matches!(
            r1,
            Assignment::Reduce {
                task: 1,
                n_map: 2,
                ..
            }
        ));
        for (task, r) in [(0, r0), (1, r1)] {
            let Assignment::Reduce { attempt, .. } = r else {
                unreachable!()
            };
            assert_eq!(
                s.report(&ok(TaskKind::Reduce, task, attempt)),
                ReportEffect::Completed
            );
        }
        assert_eq!(*s.phase(), Phase::Done);
        assert_eq!(s.assign(3, "w1"), Assignment::Exit);
        assert_eq!(s.progress().reduces_done, 2);
    }

    #[test]
    fn a_task_is_reissued_only_after_its_timeout() {
        // Goal: no speculative re-execution; method: ask just before and at the timeout.
        let mut s = two_files(1);
        let (_, first) = map_of(&s.assign(0, "slow"));
        map_of(&s.assign(0, "other"));
        assert_eq!(s.next_expiry_ms(), Some(1000));
        assert!(s.expire(999).is_empty());
        assert_eq!(s.assign(999, "late"), Assignment::Wait);
        let expired = s.expire(1000);
        assert_eq!(expired.len(), 2);
        assert_eq!(expired[0].worker, "slow");
        let (task, second) = map_of(&s.assign(1000, "late"));
        assert_eq!(task, 0);
        assert_ne!(first, second, "a re-issue is a new attempt");
    }

    #[test]
    fn a_late_report_from_a_timed_out_attempt_completes_the_task() {
        // Goal: a slow worker's finished output is used; method: expire, re-issue, then the
        // first attempt reports, then the second one reports as a duplicate.
        let mut s = Scheduler::new(vec!["a".into()], 1, 10, 3);
        let (_, first) = map_of(&s.assign(0, "slow"));
        s.expire(10);
        let (_, second) = map_of(&s.assign(10, "fast"));
        assert_eq!(
            s.report(&ok(TaskKind::Map, 0, first)),
            ReportEffect::Completed
        );
        assert_eq!(
            s.report(&ok(TaskKind::Map, 0, second)),
            ReportEffect::Duplicate
        );
        assert_eq!(*s.phase(), Phase::Reduce);
    }

    #[test]
    fn failures_retry_then_fail_the_job() {
        // Goal: a task that keeps failing ends the job instead of looping forever.
        let mut s = Scheduler::new(vec!["a".into()], 1, 10, 2);
        let (_, a) = map_of(&s.assign(0, "w"));
        assert_eq!(
            s.report(&failed(TaskKind::Map, 0, a)),
            ReportEffect::Retrying { failures: 1 }
        );
        let (_, b) = map_of(&s.assign(1, "w"));
        assert_eq!(
            s.report(&failed(TaskKind::Map, 0, a)),
            ReportEffect::StaleFailure
        );
        assert!(matches!(
            s.report(&failed(TaskKind::Map, 0, b)),
            ReportEffect::JobFailed { .. }
        ));
        assert!(s.is_over());
        assert_eq!(s.assign(2, "w"), Assignment::Exit);
    }

    #[test]
    fn a_report_for_an_attempt_never_handed_out_is_ignored() {
        let mut s = Scheduler::new(vec!["a".into()], 1, 10, 2);
        assert_eq!(
            s.report(&ok(TaskKind::Map, 0, 1)),
            ReportEffect::UnknownAttempt
        );
        let (_, a) = map_of(&s.assign(0, "w"));
        assert_eq!(
            s.report(&ok(TaskKind::Map, 0, a + 1)),
            ReportEffect::UnknownAttempt
        );
        assert_eq!(
            s.report(&ok(TaskKind::Reduce, 0, 0)),
            ReportEffect::UnknownAttempt
        );
        assert_eq!(*s.phase(), Phase::Map);
    }

    #[test]
    fn progress_counts_running_tasks_of_the_current_phase() {
        let mut s = two_files(3);
        s.assign(0, "w");
        let p = s.progress();
        assert_eq!(
            (p.maps_done, p.n_map, p.in_progress, p.n_reduce),
            (0, 2, 1, 3)
        );
        assert_eq!(
            p.to_string(),
            "phase map: map 0/2 done, reduce 0/3 done, 1 running"
        );
    }
}
