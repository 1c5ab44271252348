//! The worker process: ask for a task, run it, report, repeat.
//!
//! A worker exits when the coordinator says the job is over, or when the coordinator has been
//! unreachable for `coordinator_lost_after` (it exits after the job, so a vanished coordinator
//! almost always means the job is done). Tasks run on a blocking thread, one at a time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::app::{App, TaskContext};
use crate::rpc::pb::coordinator_client::CoordinatorClient;
use crate::rpc::pb::{self, request_task_reply::Kind};
use crate::scheduler::TaskKind;
use crate::task::{TaskStats, run_map, run_reduce};

/// Where to find the coordinator.
#[derive(Clone, Debug)]
pub enum CoordinatorAddr {
    /// `host:port`.
    Addr(String),
    /// A file the coordinator writes its address to (`--addr-file`); waited for.
    File(PathBuf),
}

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub coordinator: CoordinatorAddr,
    /// The shared directory for intermediate and output files.
    pub dir: PathBuf,
    /// How long to keep trying to reach the coordinator the first time.
    pub connect_timeout: Duration,
    /// Once connected, how long the coordinator may be unreachable before we exit.
    pub coordinator_lost_after: Duration,
    /// A name for the coordinator's logs.
    pub name: String,
}

impl WorkerConfig {
    /// Defaults: 10 s to connect, 3 s lost, name `<pid>`.
    pub fn new(coordinator: CoordinatorAddr, dir: PathBuf) -> Self {
        WorkerConfig {
            coordinator,
            dir,
            connect_timeout: Duration::from_secs(10),
            coordinator_lost_after: Duration::from_secs(3),
            name: format!("worker-{}", std::process::id()),
        }
    }
}

/// Why a worker stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerExit {
    /// The coordinator said the job is done.
    JobDone,
    /// The coordinator said the job failed.
    JobFailed(String),
    /// The coordinator stopped answering after we had talked to it.
    CoordinatorGone,
}

/// Longer than the coordinator's long poll (1 s), which holds a request while no task is
/// free.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_INTERVAL: Duration = Duration::from_millis(100);
const ADDR_FILE_POLL: Duration = Duration::from_millis(20);
/// Upper bound on a coordinator's "wait" so a bad reply cannot park us for long.
const WAIT_MAX: Duration = Duration::from_secs(5);

/// Runs tasks of `app` until the job is over or the coordinator is gone.
pub async fn run_worker(config: WorkerConfig, app: Arc<dyn App>) -> Result<WorkerExit> {
    let started = Instant::now();
    let addr = resolve(&config.coordinator, started + config.connect_timeout).await?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .context("bad coordinator address")?
        .connect_timeout(Duration::from_secs(1))
        .timeout(RPC_TIMEOUT);
    let mut client = CoordinatorClient::new(endpoint.connect_lazy());
    let mut link = Link {
        connected: false,
        failing_since: None,
        started,
        config: &config,
    };
    info!(coordinator = %addr, dir = %config.dir.display(), "worker started");
    let mut tasks_done: u64 = 0;
    loop {
        let request = pb::RequestTaskRequest {
            worker: config.name.clone(),
        };
        let reply = match client.request_task(request).await {
            Ok(reply) => {
                link.ok();
                reply.into_inner()
            }
            Err(status) => {
                link.failed(&status)?;
                if link.gone() {
                    info!(tasks_done, "coordinator gone; exiting");
                    return Ok(WorkerExit::CoordinatorGone);
                }
                tokio::time::sleep(RETRY_INTERVAL).await;
                continue;
            }
        };
        let job = Job {
            job_id: reply.job_id,
            attempt: reply.attempt,
            task_timeout: Duration::from_millis(reply.task_timeout_ms),
        };
        match reply.kind {
            Some(Kind::Map(map)) => {
                let outcome = run_blocking(&app, &config, &job, TaskSpec::Map(map.clone())).await;
                report(
                    &mut client,
                    &mut link,
                    &job,
                    TaskKind::Map,
                    map.task,
                    outcome,
                )
                .await;
                tasks_done += 1;
            }
            Some(Kind::Reduce(reduce)) => {
                let spec = TaskSpec::Reduce(reduce);
                let outcome = run_blocking(&app, &config, &job, spec).await;
                report(
                    &mut client,
                    &mut link,
                    &job,
                    TaskKind::Reduce,
                    reduce.task,
                    outcome,
                )
                .await;
                tasks_done += 1;
            }
            Some(Kind::Wait(wait)) => {
                let wait = Duration::from_millis(u64::from(wait.retry_after_ms)).min(WAIT_MAX);
                tokio::time::sleep(wait).await;
            }
            Some(Kind::Exit(exit)) => {
                info!(
                    tasks_done,
                    job_failed = exit.job_failed,
                    "coordinator says the job is over"
                );
                return Ok(if exit.job_failed {
                    WorkerExit::JobFailed(exit.reason)
                } else {
                    WorkerExit::JobDone
                });
            }
            None => bail!("coordinator sent a reply without a task kind"),
        }
    }
}

/// Tracks whether the coordinator is reachable.
struct Link<'a> {
    /// True once an RPC has succeeded.
    connected: bool,
    /// When the current run of failed RPCs began; `None` after a success.
    failing_since: Option<Instant>,
    started: Instant,
    config: &'a WorkerConfig,
}

impl Link<'_> {
    fn ok(&mut self) {
        self.connected = true;
        self.failing_since = None;
    }

    /// Records a failed RPC. An error if we never reached the coordinator in time.
    fn failed(&mut self, status: &tonic::Status) -> Result<()> {
        debug!(%status, "coordinator RPC failed");
        self.failing_since.get_or_insert_with(Instant::now);
        if !self.connected && self.started.elapsed() >= self.config.connect_timeout {
            bail!(
                "could not reach the coordinator within {:?}: {}",
                self.config.connect_timeout,
                status.message()
            );
        }
        Ok(())
    }

    /// True when, after talking to the coordinator, every RPC for `coordinator_lost_after`
    /// has failed.
    fn gone(&self) -> bool {
        self.connected
            && self
                .failing_since
                .is_some_and(|t| t.elapsed() >= self.config.coordinator_lost_after)
    }
}

struct Job {
    job_id: u64,
    attempt: u64,
    task_timeout: Duration,
}

enum TaskSpec {
    Map(pb::MapTask),
    Reduce(pb::ReduceTask),
}

async fn run_blocking(
    app: &Arc<dyn App>,
    config: &WorkerConfig,
    job: &Job,
    spec: TaskSpec,
) -> Result<TaskStats> {
    let app = Arc::clone(app);
    let dir = config.dir.clone();
    let task_timeout = job.task_timeout;
    let attempt = job.attempt;
    let started = Instant::now();
    let label = match &spec {
        TaskSpec::Map(m) => format!("map-{} ({})", m.task, m.input),
        TaskSpec::Reduce(r) => format!("reduce-{}", r.task),
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let ctx = TaskContext {
            dir: &dir,
            task_timeout,
        };
        match spec {
            TaskSpec::Map(m) => run_map(app.as_ref(), &ctx, m.task, &m.input, m.n_reduce),
            TaskSpec::Reduce(r) => run_reduce(app.as_ref(), &ctx, r.task, r.n_map),
        }
    })
    .await
    .unwrap_or_else(|e| Err(anyhow::anyhow!("task panicked: {e}")));
    match &outcome {
        Ok(stats) => info!(
            task = %label, attempt, bytes_in = stats.bytes_in, records_out = stats.records_out,
            elapsed = ?started.elapsed(), "task finished"
        ),
        Err(e) => warn!(task = %label, attempt, "task failed: {e:#}"),
    }
    outcome
}

/// Reports an attempt's outcome, retrying while the coordinator is briefly unreachable. A
/// lost report is harmless: the task is re-issued after its timeout.
async fn report(
    client: &mut CoordinatorClient<Channel>,
    link: &mut Link<'_>,
    job: &Job,
    kind: TaskKind,
    task: u32,
    outcome: Result<TaskStats>,
) {
    let request = pb::ReportTaskRequest {
        worker: link.config.name.clone(),
        job_id: job.job_id,
        kind: pb::TaskKind::from(kind).into(),
        task,
        attempt: job.attempt,
        ok: outcome.is_ok(),
        error: outcome.err().map(|e| format!("{e:#}")).unwrap_or_default(),
    };
    loop {
        match client.report_task(request.clone()).await {
            Ok(reply) => {
                link.ok();
                debug!(
                    accepted = reply.into_inner().accepted,
                    "reported {kind}-{task}"
                );
                return;
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                // Not `?`: a report never ends the worker; the request loop decides that.
                let _ = link.failed(&status);
                if link.gone() {
                    warn!(%status, "could not report {kind}-{task}");
                    return;
                }
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            Err(status) => {
                warn!(%status, "could not report {kind}-{task}");
                return;
            }
        }
    }
}

/// The coordinator's address, waiting for the address file to appear if need be.
async fn resolve(coordinator: &CoordinatorAddr, deadline: Instant) -> Result<String> {
    let path = match coordinator {
        CoordinatorAddr::Addr(addr) => return Ok(addr.clone()),
        CoordinatorAddr::File(path) => path,
    };
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let addr = text.trim();
                addr.parse::<SocketAddr>().with_context(|| {
                    format!("{} holds {addr:?}, not an address", path.display())
                })?;
                return Ok(addr.to_owned());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline => {
                tokio::time::sleep(ADDR_FILE_POLL).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        }
    }
}
