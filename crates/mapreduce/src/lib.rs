//! A small fault-tolerant MapReduce framework: a coordinator hands out map and reduce tasks
//! over gRPC, workers on any number of processes or machines run them against a shared
//! directory, and a worker that crashes or stalls has its task given to another.
//!
//! It is independent of the key-value store. It is not a general cluster scheduler: one
//! coordinator runs one job and then exits, and the coordinator itself is not replicated (if
//! it dies, the job is started again).
//!
//! # The job
//! - One map task per input file and `n_reduce` reduce tasks. Map task `m` reads its input
//!   and writes `mr-<m>-<r>` for every `r < n_reduce`, a record going to partition
//!   [`files::partition`] of its key. Reduce task `r` reads `mr-*-<r>`, sorts by key, and
//!   writes `mr-out-<r>`, one `key value` line per output record.
//! - Reduce tasks are handed out only once every map task is done; the job is done once
//!   every reduce task is.
//!
//! # Contract
//! - **Output equals a sequential run.** The sorted lines of all `mr-out-*` files equal the
//!   sorted lines of [`run_sequential`] over the same inputs, whatever workers crash, stall
//!   or run a task twice, provided the [`App`] is deterministic.
//! - **No partial files.** Every file is written under a temporary name, fsynced and renamed
//!   ([`files::AtomicFile`]). A task is reported done only after all its renames.
//! - **Final at exit.** The coordinator exits only after every reduce task reported done, and
//!   workers exit only when told the job is over (or once the coordinator is gone), so when
//!   any process of a successful job exits, every `mr-out-*` file is final.
//! - **No speculation.** A task is handed to another worker only after it has been out for
//!   the task timeout (default 10 s) without a report; a live task is never duplicated
//!   earlier. A report from a timed-out attempt still completes the task.
//! - **Bounded failure.** An attempt that fails (an error, not a crash) is retried; a task
//!   that fails `task_failures_max` times fails the job, and every process exits.
//!
//! # Pieces
//! - [`Scheduler`]: the task table, a pure state machine with time passed in.
//! - [`run_coordinator`] / [`run_worker`]: the two processes (tokio + tonic).
//! - [`App`]: what a job computes; built-ins by name via [`builtin_app`], and [`Streaming`]
//!   for any executable as mapper and reducer.
//! - [`textgen`]: deterministic pseudo-text for tests, examples and benchmarks.
//!
//! ```
//! use shardkv_mapreduce::{builtin_app, run_sequential};
//! let dir = tempfile::tempdir().unwrap();
//! let input = dir.path().join("in.txt");
//! std::fs::write(&input, "the cat saw the dog").unwrap();
//! let app = builtin_app("wc").unwrap();
//! let out = dir.path().join("mr-out-0");
//! run_sequential(app.as_ref(), &[input.display().to_string()], &out).unwrap();
//! let text = std::fs::read_to_string(&out).unwrap();
//! assert_eq!(text, "cat 1\ndog 1\nsaw 1\nthe 2\n");
//! ```

pub mod app;
pub mod apps;
pub mod coordinator;
pub mod files;
pub mod intermediate;
pub mod rpc;
pub mod scheduler;
pub mod sequential;
pub mod task;
pub mod textgen;
pub mod worker;

pub use app::{App, KeyValue, TaskContext};
pub use apps::{BUILTIN_APPS, Streaming, builtin_app};
pub use coordinator::{CoordinatorConfig, JobOutcome, run_coordinator};
pub use scheduler::Scheduler;
pub use sequential::run_sequential;
pub use worker::{CoordinatorAddr, WorkerConfig, WorkerExit, run_worker};
