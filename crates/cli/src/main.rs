//! `shardkv`: the project's one binary.
//!
//! Each top-level subcommand lives in its own module, which owns its clap arguments and its
//! `run` function; this file only parses, sets up logging and dispatches. To add a
//! subcommand, add a module, a variant to [`Command`] and an arm to the `match` in `main`.
//!
//! Exit status: 0 on success, 1 on failure (the error is printed to stderr), 2 on bad usage.
//!
//! The flags a subcommand marks global (the connection flags: `--endpoints`, `--timeout`,
//! `-w`, `--group`, `--ctrl-endpoints`, `--cacert`, `--cert`, `--key`, and the writes'
//! `--session`) may also come before
//! the subcommand: `shardkv --endpoints X get k` is read as `shardkv get --endpoints X k`
//! ([`hoist_global_flags`]).

mod admin;
mod bench;
mod certs;
mod check_history;
mod conn;
mod env_flags;
mod kv_cmd;
mod member;
mod mr;
mod ports;
mod server_cmd;
mod session;
mod status;
mod up;

use std::process::ExitCode;

/// mimalloc for every subcommand: under load, glibc malloc and free took about a fifth of a
/// leader's CPU (docs/bench.md, "Where the CPU goes").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser, Subcommand};
use shardkv_server::LogFormat;
use std::collections::HashMap;
use std::ffi::OsString;

#[derive(Debug, Parser)]
#[command(
    name = "shardkv",
    version,
    about = "A sharded, Raft-replicated KV store and a small MapReduce framework",
    after_help = "Environment: the flags of the cluster commands have SHARDKV_* variables \
                  (SHARDKV_ENDPOINTS, SHARDKV_TIMEOUT, SHARDKV_WRITE_OUT, SHARDKV_SESSION, \
                  ...; `up`'s are SHARDKV_UP_*): `shardkv <COMMAND> --help` shows each as \
                  [env: ...]. Exit status: 0 success, 1 failure, 2 bad usage."
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
    let cli = parse(hoist_global_flags(std::env::args_os().collect()));
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

/// The command line, with a variable for every flag ([`env_flags`]); a usage error exits 2
/// with clap's message.
fn parse(args: Vec<OsString>) -> Cli {
    use clap::FromArgMatches;
    let matches = env_flags::with_env_for_every_flag(Cli::command()).get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `args` with the global flags given before the subcommand moved to just after it, where
/// clap accepts them (a flag defined by subcommands is unknown to the top level). Stops at
/// the first token that is not such a flag (the subcommand, `--help`, a typo), so anything
/// else is left for clap to parse or reject.
fn hoist_global_flags(args: Vec<OsString>) -> Vec<OsString> {
    let globals = global_flags();
    let mut hoisted = Vec::new();
    let mut i = 1;
    while let Some(token) = args.get(i).and_then(|a| a.to_str()) {
        let (name, value_attached) = match token.split_once('=') {
            Some((name, _)) if token.starts_with("--") => (name, true),
            _ if !token.starts_with("--") && token.len() > 2 => {
                (token.get(..2).unwrap_or(""), true)
            }
            _ => (token, false),
        };
        let Some(&takes_value) = globals.get(name) else {
            break;
        };
        hoisted.push(args[i].clone());
        if takes_value && !value_attached {
            i += 1;
            hoisted.extend(args.get(i).cloned());
        }
        i += 1;
    }
    if hoisted.is_empty() || i >= args.len() {
        return args;
    }
    let mut out = vec![args[0].clone(), args[i].clone()];
    out.extend(hoisted);
    out.extend(args[i + 1..].iter().cloned());
    out
}

/// Every global flag any subcommand defines (`--long` and `-s`), and whether it takes a value.
fn global_flags() -> HashMap<String, bool> {
    fn collect(cmd: &clap::Command, out: &mut HashMap<String, bool>) {
        for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
            let takes_value = arg.get_action().takes_values();
            if let Some(long) = arg.get_long() {
                out.insert(format!("--{long}"), takes_value);
            }
            if let Some(short) = arg.get_short() {
                out.insert(format!("-{short}"), takes_value);
            }
        }
        for sub in cmd.get_subcommands() {
            collect(sub, out);
        }
    }
    let mut out = HashMap::new();
    collect(&Cli::command(), &mut out);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hoist(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        hoist_global_flags(args)
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect()
    }

    #[test]
    fn global_flags_before_the_subcommand_move_after_it() {
        assert_eq!(
            hoist(&[
                "shardkv",
                "--endpoints",
                "a:1",
                "-w",
                "json",
                "--timeout=2s",
                "get",
                "k"
            ]),
            [
                "shardkv",
                "get",
                "--endpoints",
                "a:1",
                "-w",
                "json",
                "--timeout=2s",
                "k"
            ]
        );
        assert_eq!(
            hoist(&["shardkv", "-wjson", "admin", "query"]),
            ["shardkv", "admin", "-wjson", "query"]
        );
        let parsed = Cli::try_parse_from(hoist(&["shardkv", "--endpoints", "a:1", "get", "k"]))
            .expect("parses");
        let Command::Get(get) = parsed.command else {
            panic!("not get: {parsed:?}");
        };
        assert_eq!(get.conn.endpoints, "a:1");
    }

    #[test]
    fn anything_else_is_left_for_clap() {
        for args in [
            &["shardkv", "get", "k", "--endpoints", "a:1"][..],
            &["shardkv", "--help"],
            &["shardkv", "--bogus", "get", "k"],
            &["shardkv", "--endpoints", "a:1"],
        ] {
            assert_eq!(hoist(args), args);
        }
    }
}
