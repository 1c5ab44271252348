//! `shardkv get | put | append | del | cas`: one operation against a running cluster:
//! routed by the shard map when the servers host shard groups (`shardkv up`), or sent to
//! one group (`--group GID`, or servers of a plain KV group); see `conn`.
//!
//! Values are bytes: given on the command line, or read from stdin (all of it, exactly)
//! when omitted. `get` prints the value and a newline; `get --raw` prints exactly the value's
//! bytes, so `put k < file` then `get k --raw > out` gives `out` equal to `file`. Exit status 0 on success; 1 on any failure (error on stderr, saying whether
//! the operation may have applied), including `get` of a missing key and a `cas` that did not
//! swap (both still print their result).
//!
//! The writes take `--session FILE` (see `session`): one client id and sequence stream kept
//! across calls, so repeating a write that "may have applied" applies it at most once. A
//! write that may have applied says so and how to retry it safely.

use crate::conn::{ConnArgs, WriteOut, bytes_json, runtime};
use crate::session::{SessionArgs, command};
use anyhow::{Context, Result};
use clap::Args;
use shardkv_client::{Client, Error};
use std::io::{Read, Write};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct GetArgs {
    pub key: String,
    /// Print the value's bytes exactly, without the newline text output adds (for
    /// `get k --raw > file`: the file then holds what `put k < file` wrote).
    #[arg(long, env = "SHARDKV_RAW")]
    pub raw: bool,
    // Reads use no session; `--session` is accepted (and ignored) so that one
    // `shardkv --session FILE ...` prefix serves every KV command of a script.
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    pub key: String,
    /// The value; read from stdin when omitted.
    pub value: Option<String>,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    pub key: String,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct CasArgs {
    /// Expect the key to be absent (then give only KEY NEW).
    #[arg(long)]
    pub absent: bool,
    /// The key to compare and set.
    pub key: String,
    /// The value the key must hold for the swap (with --absent: the new value).
    #[arg(value_name = "OLD")]
    pub old: String,
    /// The value to set (left out with --absent).
    #[arg(value_name = "NEW")]
    pub new: Option<String>,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Which write.
#[derive(Clone, Copy, Debug)]
pub enum WriteKind {
    Put,
    Append,
}

fn connect(conn: &ConnArgs) -> Result<Client> {
    conn.client()
}

fn fail(e: Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Runs the write `op` (recorded as `command`, see [`command`]) in the `--session` given,
/// if any. A write that may have applied says how to retry it safely.
fn send_write<T>(
    conn: &ConnArgs,
    session: &SessionArgs,
    command: serde_json::Value,
    op: impl AsyncFnOnce(&mut Client) -> Result<T, Error>,
) -> Result<T> {
    let mut client = connect(conn)?;
    let mut kept = session.open(conn.timeout)?;
    if let Some(s) = &mut kept {
        s.begin(&mut client, command)?;
    }
    let result = runtime()?.block_on(op(&mut client));
    // The outcome stands whatever happens to the file: a write that applied but stays
    // recorded as pending is answered from the servers' session table if run again.
    if let Some(Err(e)) = kept.as_mut().map(|s| s.end(result.as_ref().map(|_| ()))) {
        eprintln!("warning: {e:#}");
    }
    result.map_err(|e| {
        let lost = matches!(e, Error::SessionExpired | Error::Stale);
        let hint = match (&session.session, e.may_have_applied()) {
            (_, false) => String::new(),
            (Some(_), true) if lost => " (the servers no longer know this session's write, so \
                                        no retry can tell whether it applied: read the key to \
                                        see; the session moves on)"
                .to_string(),
            (Some(file), true) => format!(
                " (run the same command again with --session {} to apply it at most once)",
                file.display()
            ),
            (None, true) => " (running it again may apply it twice; --session FILE makes a \
                             retry apply at most once: docs/kv.md)"
                .to_string(),
        };
        anyhow::anyhow!("{e}{hint}")
    })
}

pub fn get(args: GetArgs) -> Result<ExitCode> {
    let mut client = connect(&args.conn)?;
    let value = runtime()?
        .block_on(client.get(args.key.as_bytes()))
        .map_err(fail)?;
    if args.conn.write_out == WriteOut::Json {
        let mut out = serde_json::json!({ "key": args.key, "found": value.is_some() });
        if let Some(v) = &value {
            out["value"] = bytes_json(v);
        }
        println!("{out}");
    }
    let Some(v) = value else {
        eprintln!("key not found: {}", args.key);
        return Ok(ExitCode::FAILURE);
    };
    if args.conn.write_out == WriteOut::Text {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&v)?;
        if !args.raw {
            stdout.write_all(b"\n")?;
        }
        stdout.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn write(kind: WriteKind, args: WriteArgs) -> Result<ExitCode> {
    let value = match args.value {
        Some(v) => v.into_bytes(),
        None => read_stdin()?,
    };
    let key = args.key.into_bytes();
    let name = match kind {
        WriteKind::Put => "put",
        WriteKind::Append => "append",
    };
    let recorded = command(name, &[("key", Some(&key)), ("value", Some(&value))]);
    send_write(&args.conn, &args.session, recorded, async |c| match kind {
        WriteKind::Put => c.put(key, value).await,
        WriteKind::Append => c.append(key, value).await,
    })?;
    print_ok(args.conn.write_out);
    Ok(ExitCode::SUCCESS)
}

/// Prints what etcdctl prints: `1` if the key existed (and was deleted), `0` if it did
/// not; `-w json`: `{"ok": true, "deleted": 1}` (or 0). Exit 0 either way. A server of a
/// build before Delete said so answers `OK` (`"deleted": null`).
pub fn del(args: DelArgs) -> Result<ExitCode> {
    let key = args.key.into_bytes();
    let recorded = command("del", &[("key", Some(&key))]);
    let existed = send_write(&args.conn, &args.session, recorded, async |c| {
        c.delete(key).await
    })?;
    let deleted = existed.map(u8::from);
    match (args.conn.write_out, deleted) {
        (WriteOut::Text, Some(n)) => println!("{n}"),
        (WriteOut::Text, None) => println!("OK"),
        (WriteOut::Json, n) => println!("{}", serde_json::json!({ "ok": true, "deleted": n })),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cas(args: CasArgs) -> Result<ExitCode> {
    let key = &args.key;
    let (expected, new) = match (args.absent, &args.new) {
        (false, Some(new)) => (Some(args.old.as_bytes().to_vec()), new),
        (true, None) => (None, &args.old),
        (false, None) => usage_error("cas takes KEY OLD NEW (or --absent KEY NEW)"),
        (true, Some(_)) => usage_error("cas --absent takes KEY NEW"),
    };
    let recorded = command(
        "cas",
        &[
            ("key", Some(key.as_bytes())),
            ("old", expected.as_deref()),
            ("new", Some(new.as_bytes())),
        ],
    );
    let r = send_write(&args.conn, &args.session, recorded, async |c| {
        c.cas(key.as_bytes(), expected, new.as_bytes()).await
    })?;
    match args.conn.write_out {
        WriteOut::Json => {
            let current = r.current.as_deref().map(bytes_json);
            println!(
                "{}",
                serde_json::json!({ "swapped": r.swapped, "current": current })
            );
        }
        WriteOut::Text if r.swapped => println!("OK"),
        WriteOut::Text => {}
    }
    if !r.swapped {
        let found = match &r.current {
            Some(v) => format!("the current value is {:?}", String::from_utf8_lossy(v)),
            None => "the key is absent".to_string(),
        };
        eprintln!("cas: not swapped: {found}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Exits 2 with `message` and the usage, as clap does for the usage errors it finds itself.
fn usage_error(message: &str) -> ! {
    use clap::CommandFactory;
    let mut cli = crate::Cli::command();
    cli.build();
    let cas = cli.find_subcommand_mut("cas").expect("cas is a subcommand");
    cas.error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

fn print_ok(w: WriteOut) {
    match w {
        WriteOut::Text => println!("OK"),
        WriteOut::Json => println!("{}", serde_json::json!({ "ok": true })),
    }
}

/// Reads the whole of stdin: the value when it is not on the command line.
fn read_stdin() -> Result<Vec<u8>> {
    let limit = shardkv_kv::VALUE_BYTES_MAX as u64 + 1;
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit)
        .read_to_end(&mut buf)
        .context("reading the value from stdin")?;
    Ok(buf)
}
