//! `shardkv`: the project's one binary.
//!
//! Each top-level subcommand lives in its own module, which owns its clap arguments and its
//! `run` function; this file only parses, sets up logging and dispatches. To add a
//! subcommand, add a module, a variant to [`Command`] and an arm to the `match` in `main`.
//!
//! Exit status: 0 on success, 1 on failure (the error is printed to stderr), 2 on bad usage.

mod admin;
mod bench;
mod certs;
mod check_history;
mod conn;
mod kv_cmd;
mod member;
mod mr;
mod server_cmd;
mod status;
mod up;

use std::process::ExitCode;

/// mimalloc for every subcommand: under load, glibc malloc and free took about a fifth of a
/// leader's CPU (docs/bench.md, "Where the CPU goes").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use shardkv_server::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "shardkv",
    version,
    about = "A sharded, Raft-replicated KV store and a small MapReduce framework"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// MapReduce: run a coordinator, a worker, or the sequential reference.
    Mr(mr::MrArgs),
    /// Start a local sharded cluster: the shard controller and 2 shard groups (`--groups N`),
    /// 3 replicas each, hosted by 3 `shardkv server` processes on loopback.
    Up(up::UpArgs),
    /// Run one member of a replica group.
    Server(server_cmd::ServerArgs),
    /// Read a key (exit 1 if absent).
    Get(kv_cmd::GetArgs),
    /// Set a key (the value is read from stdin when omitted).
    Put(kv_cmd::WriteArgs),
    /// Append to a key's value, creating it if absent (value from stdin when omitted).
    Append(kv_cmd::WriteArgs),
    /// Delete a key.
    Del(kv_cmd::DelArgs),
    /// Compare-and-swap: set KEY to NEW iff its value is OLD (exit 1 if it did not swap).
    Cas(kv_cmd::CasArgs),
    /// Change or read the shard controller's configuration: join, leave, move, query.
    Admin(admin::AdminArgs),
    /// Change or list the members of the replica groups: list, add, promote, remove.
    Member(member::MemberArgs),
    /// Show each member's role, term, commit and applied index; for a sharded cluster also
    /// the shard map, each group's members and the shards in migration.
    Status(status::StatusArgs),
    /// Closed-loop load: ops/s and latency percentiles, optionally a history file.
    Bench(bench::BenchArgs),
    /// Check a history file (from `bench --history`) for linearizability.
    CheckHistory(check_history::CheckHistoryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Server(args) => args.log_format(),
        _ => LogFormat::Text,
    };
    init_logging(format);
    let result = match cli.command {
        Command::Mr(args) => mr::run(args),
        Command::Up(args) => up::run(args),
        Command::Server(args) => server_cmd::run(args),
        Command::Get(args) => kv_cmd::get(args),
        Command::Put(args) => kv_cmd::write(kv_cmd::WriteKind::Put, args),
        Command::Append(args) => kv_cmd::write(kv_cmd::WriteKind::Append, args),
        Command::Del(args) => kv_cmd::del(args),
        Command::Cas(args) => kv_cmd::cas(args),
        Command::Admin(args) => admin::run(args),
        Command::Status(args) => status::run(args),
        Command::Member(args) => member::run(args),
        Command::Bench(args) => bench::run(args),
        Command::CheckHistory(args) => check_history::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default level (`info`). In JSON each line
/// is one object: `timestamp`, `level`, `target`, the event's fields (`message` among
/// them) and `spans`, the spans it was logged in from the outermost: on a node thread
/// `node` (`id`), `group` (`gid`, `service`) and `raft` (`term`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}

/// Stderr that never fails: a log line that cannot be written (stderr closed, a full pipe)
/// is dropped. Otherwise the logger reports the failure with `eprintln!`, which panics when
/// stderr is gone, and a server whose terminal went away would die at its next log line.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
