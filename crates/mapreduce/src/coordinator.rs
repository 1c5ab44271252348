//! The coordinator process: serves the task table of one job over gRPC until the job is
//! over, then lingers briefly so polling workers hear "exit" rather than a closed socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::files::AtomicFile;
use crate::rpc::pb::coordinator_server::{Coordinator as CoordinatorRpc, CoordinatorServer};
use crate::rpc::pb::{self, request_task_reply::Kind};
use crate::rpc::task_kind_from_wire;
use crate::scheduler::{Assignment, Phase, Progress, Report, ReportEffect, Scheduler};

/// How a coordinator runs one job.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// One map task per input, in this order.
    pub inputs: Vec<String>,
    pub n_reduce: u32,
    /// A task not reported within this long is handed to another worker.
    pub task_timeout: Duration,
    /// Where to listen, e.g. `127.0.0.1:7300`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// If set, the bound address is written here (atomically) once listening, for workers'
    /// `--coordinator-file`.
    pub addr_file: Option<PathBuf>,
    /// How long to keep answering "exit" after the job is over.
    pub linger: Duration,
    /// A task that fails this many times fails the job.
    pub task_failures_max: u32,
    /// How long a worker's request for a task may be held when every task of the phase is
    /// out: it is answered as soon as a report or a timeout frees a task (long polling), so
    /// a phase change costs no polling delay.
    pub long_poll_max: Duration,
}

impl CoordinatorConfig {
    /// Defaults: 10 reduce tasks, 10 s task timeout, 1 s linger, 4 failures, 1 s long poll.
    pub fn new(inputs: Vec<String>, listen: SocketAddr) -> Self {
        CoordinatorConfig {
            inputs,
            n_reduce: 10,
            task_timeout: Duration::from_secs(10),
            listen,
            addr_file: None,
            linger: Duration::from_secs(1),
            task_failures_max: 4,
            long_poll_max: Duration::from_secs(1),
        }
    }
}

/// How the job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every reduce task reported; every `mr-out-*` file is final.
    Done,
    /// A task failed too often.
    Failed(String),
}

struct Shared {
    scheduler: Mutex<Scheduler>,
    started: Instant,
    job_id: u64,
    task_timeout_ms: u64,
    long_poll_max: Duration,
    /// Woken on every report, which may free a task or end the job.
    changed: tokio::sync::Notify,
    /// Set to true once the job is over.
    over: watch::Sender<bool>,
}

impl Shared {
    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        // A panic while holding the lock is a bug; the table is still consistent because
        // every method updates it before returning.
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Runs the job described by `config` to its end.
pub async fn run_coordinator(config: CoordinatorConfig) -> Result<JobOutcome> {
    anyhow::ensure!(!config.inputs.is_empty(), "no input files");
    anyhow::ensure!(config.n_reduce > 0, "--reduce must be at least 1");
    anyhow::ensure!(
        !config.task_timeout.is_zero(),
        "task timeout must be positive"
    );
    anyhow::ensure!(
        config.task_failures_max > 0,
        "task failure limit must be positive"
    );
    for input in &config.inputs {
        if !std::path::Path::new(input).exists() {
            warn!(
                input,
                "input not found here; workers must see it in their directory"
            );
        }
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    if let Some(path) = &config.addr_file {
        write_addr_file(path, addr)?;
    }
    let n_map = config.inputs.len();
    let (over, mut over_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        scheduler: Mutex::new(Scheduler::new(
            config.inputs.clone(),
            config.n_reduce,
            u64::try_from(config.task_timeout.as_millis()).unwrap_or(u64::MAX),
            config.task_failures_max,
        )),
        started: Instant::now(),
        job_id: job_id(),
        task_timeout_ms: u64::try_from(config.task_timeout.as_millis()).unwrap_or(u64::MAX),
        long_poll_max: config.long_poll_max,
        changed: tokio::sync::Notify::new(),
        over,
    });
    info!(
        %addr, job = format_args!("{:016x}", shared.job_id), n_map, n_reduce = config.n_reduce,
        task_timeout = ?config.task_timeout, "coordinator listening"
    );
    let linger = config.linger;
    let shutdown = async move {
        // Returns when the sender is dropped too, which cannot happen while we serve.
        let _ = over_rx.wait_for(|over| *over).await;
        tokio::time::sleep(linger).await;
    };
    tonic::transport::Server::builder()
        .add_service(CoordinatorServer::new(Service {
            shared: Arc::clone(&shared),
        }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("gRPC server failed")?;
    let phase = shared.scheduler().phase().clone();
    match phase {
        Phase::Done => Ok(JobOutcome::Done),
        Phase::Failed(reason) => Ok(JobOutcome::Failed(reason)),
        Phase::Map | Phase::Reduce => unreachable!("server stopped before the job was over"),
    }
}

fn write_addr_file(path: &std::path::Path, addr: SocketAddr) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("bad address file path {}", path.display()))?;
    AtomicFile::write(dir, name, format!("{addr}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A random job id, so reports from a worker of an earlier job are recognised.
fn job_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

struct Service {
    shared: Arc<Shared>,
}

/// After a long poll ends with nothing to do, the worker asks again after this long.
const WAIT_RETRY_MS: u32 = 20;

impl Service {
    /// Assigns a task, holding the request up to `long_poll_max` while none is free.
    async fn assign_or_wait(&self, worker: &str) -> (Assignment, Progress) {
        let shared = &self.shared;
        let poll_deadline_ms = shared
            .now_ms()
            .saturating_add(u64::try_from(shared.long_poll_max.as_millis()).unwrap_or(u64::MAX));
        loop {
            let now_ms = shared.now_ms();
            // Registered before the table is read, so a report between reading the table
            // and sleeping still wakes us.
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (assignment, progress, wake_ms) = {
                let mut scheduler = shared.scheduler();
                for expired in scheduler.expire(now_ms) {
                    warn!(
                        task = %format_args!("{}-{}", expired.kind, expired.task),
                        attempt = expired.attempt, worker = %expired.worker,
                        "task timed out; handing it to another worker"
                    );
                }
                let assignment = scheduler.assign(now_ms, worker);
                let wake_ms = scheduler
                    .next_expiry_ms()
                    .map_or(poll_deadline_ms, |t| t.min(poll_deadline_ms));
                (assignment, scheduler.progress(), wake_ms)
            };
            if assignment != Assignment::Wait || now_ms >= poll_deadline_ms {
                return (assignment, progress);
            }
            let sleep = Duration::from_millis(wake_ms.saturating_sub(now_ms).max(1));
            let _ = tokio::time::timeout(sleep, changed).await;
        }
    }
}

#[tonic::async_trait]
impl CoordinatorRpc for Service {
    async fn request_task(
        &self,
        request: Request<pb::RequestTaskRequest>,
    ) -> Result<Response<pb::RequestTaskReply>, Status> {
        let worker = worker_label(&request);
        let shared = &self.shared;
        let (assignment, progress) = self.assign_or_wait(&worker).await;
        let (attempt, kind) = match assignment {
            Assignment::Map {
                task,
                attempt,
                input,
                n_reduce,
            } => {
                info!(%worker, task, attempt, %input, "map task handed out; {progress}");
                let map = pb::MapTask {
                    task,
                    input,
                    n_reduce,
                };
                (attempt, Kind::Map(map))
            }
            Assignment::Reduce {
                task,
                attempt,
                n_map,
            } => {
                info!(%worker, task, attempt, "reduce task handed out; {progress}");
                (attempt, Kind::Reduce(pb::ReduceTask { task, n_map }))
            }
            Assignment::Wait => {
                let wait = pb::Wait {
                    retry_after_ms: WAIT_RETRY_MS,
                };
                (0, Kind::Wait(wait))
            }
            Assignment::Exit => {
                let (job_failed, reason) = match &progress.phase {
                    Phase::Failed(reason) => (true, reason.clone()),
                    _ => (false, String::new()),
                };
                (0, Kind::Exit(pb::Exit { job_failed, reason }))
            }
        };
        Ok(Response::new(pb::RequestTaskReply {
            job_id: shared.job_id,
            attempt,
            task_timeout_ms: shared.task_timeout_ms,
            kind: Some(kind),
        }))
    }

    async fn report_task(
        &self,
        request: Request<pb::ReportTaskRequest>,
    ) -> Result<Response<pb::ReportTaskReply>, Status> {
        let worker = worker_label(&request);
        let report = request.into_inner();
        let shared = &self.shared;
        if report.job_id != shared.job_id {
            return Err(Status::failed_precondition(format!(
                "report for job {:016x}, this is job {:016x}",
                report.job_id, shared.job_id
            )));
        }
        let kind = task_kind_from_wire(report.kind)
            .ok_or_else(|| Status::invalid_argument("unknown task kind"))?;
        let mut scheduler = shared.scheduler();
        let n = match kind {
            crate::scheduler::TaskKind::Map => scheduler.n_map(),
            crate::scheduler::TaskKind::Reduce => scheduler.n_reduce(),
        };
        if report.task >= n {
            return Err(Status::invalid_argument(format!(
                "{kind} task {} out of range (there are {n})",
                report.task
            )));
        }
        let outcome = if report.ok {
            Ok(())
        } else {
            Err(report.error.clone())
        };
        let effect = scheduler.report(&Report {
            kind,
            task: report.task,
            attempt: report.attempt,
            outcome,
        });
        let progress = scheduler.progress();
        let over = scheduler.is_over();
        drop(scheduler);
        let task = format!("{kind}-{}", report.task);
        let accepted = match &effect {
            ReportEffect::Completed => {
                info!(%worker, %task, attempt = report.attempt, "task done; {progress}");
                true
            }
            ReportEffect::Duplicate
            | ReportEffect::StaleFailure
            | ReportEffect::JobOver
            | ReportEffect::UnknownAttempt => {
                info!(%worker, %task, attempt = report.attempt, ?effect, "report ignored");
                false
            }
            ReportEffect::Retrying { failures } => {
                warn!(%worker, %task, failures, error = %report.error, "task failed; will retry");
                true
            }
            ReportEffect::JobFailed { reason } => {
                warn!(%worker, %task, "job failed: {reason}");
                true
            }
        };
        if over && !*shared.over.borrow() {
            info!("job over: {progress}");
            shared.over.send_replace(true);
        }
        shared.changed.notify_waiters();
        Ok(Response::new(pb::ReportTaskReply { accepted }))
    }
}

/// The worker's self-chosen name plus the address it called from.
fn worker_label<T: HasWorker>(request: &Request<T>) -> String {
    let name = request.get_ref().worker_name();
    let name = if name.is_empty() { "?" } else { name };
    // Names are for logs only; cap them so a bad client cannot flood the log.
    let name: String = name.chars().take(64).collect();
    match request.remote_addr() {
        Some(addr) => format!("{name}@{addr}"),
        None => name,
    }
}

trait HasWorker {
    fn worker_name(&self) -> &str;
}

impl HasWorker for pb::RequestTaskRequest {
    fn worker_name(&self) -> &str {
        &self.worker
    }
}

impl HasWorker for pb::ReportTaskRequest {
    fn worker_name(&self) -> &str {
        &self.worker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::pb::coordinator_client::CoordinatorClient;

    fn report(job_id: u64, kind: pb::TaskKind, task: u32, attempt: u64) -> pb::ReportTaskRequest {
        pb::ReportTaskRequest {
            worker: "test".into(),
            job_id,
            kind: kind.into(),
            task,
            attempt,
            ok: true,
            error: String::new(),
        }
    }

    #[tokio::test]
    async fn bad_reports_are_rejected_and_a_prompt_job_completes() {
        // Goal: the RPC layer validates what the scheduler asserts on; method: one coordinator
        // in process, driven by a raw client through a 1-map 1-reduce job.
        let dir = tempfile::tempdir().unwrap();
        let addr_file = dir.path().join("addr");
        let config = CoordinatorConfig {
            n_reduce: 1,
            addr_file: Some(addr_file.clone()),
            linger: Duration::ZERO,
            ..CoordinatorConfig::new(vec!["in.txt".into()], "127.0.0.1:0".parse().unwrap())
        };
        let job = tokio::spawn(run_coordinator(config));
        let mut addr = None;
        for _ in 0..500 {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                addr = Some(text.trim().to_owned());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let addr = addr.expect("coordinator wrote no address file");
        let mut client = CoordinatorClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let ask = || pb::RequestTaskRequest {
            worker: "test".into(),
        };

        let reply = client.request_task(ask()).await.unwrap().into_inner();
        let Some(Kind::Map(map)) = reply.kind else {
            panic!("expected a map task, got {reply:?}")
        };
        assert_eq!(
            (map.task, map.input.as_str(), map.n_reduce),
            (0, "in.txt", 1)
        );
        let (job_id, attempt) = (reply.job_id, reply.attempt);

        let wrong_job = report(job_id ^ 1, pb::TaskKind::Map, 0, attempt);
        let status = client.report_task(wrong_job).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        let out_of_range = report(job_id, pb::TaskKind::Map, 1, attempt);
        let status = client.report_task(out_of_range).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let no_kind = report(job_id, pb::TaskKind::Unspecified, 0, attempt);
        let status = client.report_task(no_kind).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);

        let done = client
            .report_task(report(job_id, pb::TaskKind::Map, 0, attempt))
            .await;
        assert!(done.unwrap().into_inner().accepted);
        let reply = client.request_task(ask()).await.unwrap().into_inner();
        assert!(matches!(
            reply.kind,
            Some(Kind::Reduce(pb::ReduceTask { task: 0, n_map: 1 }))
        ));
        let done = report(job_id, pb::TaskKind::Reduce, 0, reply.attempt);
        assert!(
            client
                .report_task(done)
                .await
                .unwrap()
                .into_inner()
                .accepted
        );
        let outcome = tokio::time::timeout(Duration::from_secs(10), job).await;
        assert_eq!(outcome.unwrap().unwrap().unwrap(), JobOutcome::Done);
    }
}
