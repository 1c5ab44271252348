//! `shardkv`: the project's one binary.
//!
//! Each top-level subcommand lives in its own module, which owns its clap arguments and its
//! `run` function; this file only parses, sets up logging and dispatches. To add a
//! subcommand, add a module, a variant to [`Command`] and an arm to the `match` in `main`.
//!
//! Exit status: 0 on success, 1 on failure (the error is printed to stderr), 2 on bad usage.

mod mr;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Mr(args) => mr::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default level (`info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
