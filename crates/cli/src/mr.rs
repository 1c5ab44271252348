//! `shardkv mr`: the MapReduce framework's processes and tools.
//!
//! - `coordinator FILES...`: serve one job (one map task per file) and exit when it is over.
//! - `worker`: run tasks for a coordinator until the job is over.
//! - `sequential FILES...`: the reference run in one process.
//! - `gen-text`: write deterministic pseudo-text inputs.
//! - `apps`: list the built-in applications.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use shardkv_mapreduce::{
    App, BUILTIN_APPS, CoordinatorAddr, CoordinatorConfig, JobOutcome, Streaming, WorkerConfig,
    WorkerExit, builtin_app, run_coordinator, run_sequential, run_worker, textgen,
};

/// The coordinator's default address; workers default to the same.
const ADDR_DEFAULT: &str = "127.0.0.1:7350";

#[derive(Debug, Args)]
pub struct MrArgs {
    #[command(subcommand)]
    command: MrCommand,
}

#[derive(Debug, Subcommand)]
enum MrCommand {
    /// Coordinate one job: one map task per input file, --reduce reduce tasks.
    Coordinator(CoordinatorArgs),
    /// Run tasks for a coordinator until the job is over.
    Worker(WorkerArgs),
    /// Run a whole job in this process (the reference output).
    Sequential(SequentialArgs),
    /// Write deterministic pseudo-text input files.
    GenText(GenTextArgs),
    /// List the built-in applications.
    Apps,
}

#[derive(Debug, Args)]
struct CoordinatorArgs {
    /// Number of reduce tasks (and of output files mr-out-*).
    #[arg(long = "reduce", default_value_t = 10)]
    n_reduce: u32,
    /// Address to listen on; port 0 picks a free port (see --addr-file).
    #[arg(long, default_value = ADDR_DEFAULT)]
    listen: SocketAddr,
    /// Write the bound address to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// Hand a task to another worker if not reported within this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    task_timeout: Duration,
    /// Keep answering "job over" this long after the job ends.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Fail the job when one task has failed this many times.
    #[arg(long, default_value_t = 4)]
    task_failures_max: u32,
    /// Input files, one map task each; workers open them relative to their own directory.
    #[arg(required = true)]
    files: Vec<String>,
}

#[derive(Debug, Args)]
struct AppArgs {
    /// Built-in application (see `shardkv mr apps`).
    #[arg(long, conflicts_with_all = ["mapper", "reducer"])]
    app: Option<String>,
    /// Streaming mapper command (run with `sh -c`): input on stdin, `key<TAB>value` lines out.
    #[arg(long, requires = "reducer")]
    mapper: Option<String>,
    /// Streaming reducer command: sorted `key<TAB>value` lines in, `key<TAB>value` lines out.
    #[arg(long, requires = "mapper")]
    reducer: Option<String>,
}

impl AppArgs {
    fn app(&self) -> Result<Arc<dyn App>> {
        match (&self.app, &self.mapper, &self.reducer) {
            (Some(name), _, _) => builtin_app(name).with_context(|| {
                let names: Vec<_> = BUILTIN_APPS.iter().map(|(n, _)| *n).collect();
                format!("no built-in app {name:?}; there are: {}", names.join(", "))
            }),
            (None, Some(mapper), Some(reducer)) => Ok(Arc::new(Streaming {
                mapper: mapper.clone(),
                reducer: reducer.clone(),
            })),
            _ => bail!("give --app NAME, or --mapper CMD and --reducer CMD"),
        }
    }
}

#[derive(Debug, Args)]
struct WorkerArgs {
    #[command(flatten)]
    app: AppArgs,
    /// The coordinator's address.
    #[arg(long, default_value = ADDR_DEFAULT, conflicts_with = "coordinator_file")]
    coordinator: String,
    /// Read the coordinator's address from this file (its --addr-file), waiting for it.
    #[arg(long)]
    coordinator_file: Option<PathBuf>,
    /// Shared directory for intermediate and output files.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Give up if the coordinator cannot be reached this long after start.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Exit once the coordinator has been unreachable this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    lost_after: Duration,
}

#[derive(Debug, Args)]
struct SequentialArgs {
    #[command(flatten)]
    app: AppArgs,
    /// Output file.
    #[arg(long, default_value = "mr-out-0")]
    out: PathBuf,
    /// Input files.
    #[arg(required = true)]
    files: Vec<String>,
}

#[derive(Debug, Args)]
struct GenTextArgs {
    /// Directory to write into (created if missing).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Number of files.
    #[arg(long, default_value_t = 8)]
    files: usize,
    /// Size of each file, e.g. 300KiB, 4MiB.
    #[arg(long, default_value = "300KiB", value_parser = parse_bytes)]
    size: u64,
    /// Seed; the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs `shardkv mr ...`.
pub fn run(args: MrArgs) -> Result<ExitCode> {
    match args.command {
        MrCommand::Coordinator(args) => coordinator(args),
        MrCommand::Worker(args) => worker(args),
        MrCommand::Sequential(args) => sequential(args),
        MrCommand::GenText(args) => gen_text(args),
        MrCommand::Apps => {
            for (name, about) in BUILTIN_APPS {
                println!("{name:16} {about}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn coordinator(args: CoordinatorArgs) -> Result<ExitCode> {
    let config = CoordinatorConfig {
        n_reduce: args.n_reduce,
        task_timeout: args.task_timeout,
        addr_file: args.addr_file,
        linger: args.linger,
        task_failures_max: args.task_failures_max,
        ..CoordinatorConfig::new(args.files, args.listen)
    };
    let started = Instant::now();
    match runtime()?.block_on(run_coordinator(config))? {
        JobOutcome::Done => {
            tracing::info!(elapsed = ?started.elapsed(), "job done");
            Ok(ExitCode::SUCCESS)
        }
        JobOutcome::Failed(reason) => {
            eprintln!("error: job failed: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let app = args.app.app()?;
    let coordinator = match args.coordinator_file {
        Some(path) => CoordinatorAddr::File(path),
        None => CoordinatorAddr::Addr(args.coordinator),
    };
    let config = WorkerConfig {
        connect_timeout: args.connect_timeout,
        coordinator_lost_after: args.lost_after,
        ..WorkerConfig::new(coordinator, args.dir)
    };
    match runtime()?.block_on(run_worker(config, app))? {
        WorkerExit::JobDone | WorkerExit::CoordinatorGone => Ok(ExitCode::SUCCESS),
        WorkerExit::JobFailed(reason) => {
            eprintln!("error: job failed: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn sequential(args: SequentialArgs) -> Result<ExitCode> {
    let app = args.app.app()?;
    let started = Instant::now();
    let stats = run_sequential(app.as_ref(), &args.files, &args.out)?;
    let elapsed = started.elapsed();
    let mb_per_s = stats.bytes_in as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9);
    tracing::info!(
        out = %args.out.display(), bytes_in = stats.bytes_in, records_out = stats.records_out,
        ?elapsed, "sequential run done ({mb_per_s:.1} MB/s)"
    );
    Ok(ExitCode::SUCCESS)
}

fn gen_text(args: GenTextArgs) -> Result<ExitCode> {
    let size = usize::try_from(args.size).context("--size too large")?;
    let paths = textgen::write_corpus(&args.dir, args.files, size, args.seed)
        .with_context(|| format!("cannot write into {}", args.dir.display()))?;
    for path in paths {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses a byte size: a number with an optional unit B, KB, KiB, MB, MiB, GB or GiB.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB, KB...)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_accept_human_units() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("300KiB"), Ok(300 * 1024));
        assert_eq!(parse_bytes("2MB"), Ok(2_000_000));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
        assert!(parse_bytes("99999999999999GiB").is_err());
    }
}
