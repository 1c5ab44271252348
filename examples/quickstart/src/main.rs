//! quickstart: put, get, append, compare-and-swap and delete one key with the shardkv
//! client library, with the error handling an application should copy (README.md).
//!
//! Usage: `quickstart [ENDPOINTS]`: the cluster's servers, `HOST:PORT` comma-separated;
//! default `$SHARDKV_ENDPOINTS`, else `127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003` (what
//! `shardkv up` uses). Prints one line per step; exit 0 when every step did what it should,
//! 1 otherwise (the reason on stderr).
//!
//! The dependency line, in your own Cargo.toml:
//! `shardkv-client = { git = "<this repository's clone URL>" }`.

use shardkv_client::{Client, ClientOptions, Error, Outcome};
use std::process::ExitCode;
use std::time::Duration;

/// The servers of `shardkv up` with its default ports.
const ENDPOINTS_DEFAULT: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let endpoints = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SHARDKV_ENDPOINTS").ok())
        .unwrap_or_else(|| ENDPOINTS_DEFAULT.to_string());
    match run(&endpoints).await {
        Ok(()) => {
            println!("quickstart: all steps done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(endpoints: &str) -> Result<(), String> {
    // Each operation may take up to `op_timeout`, retries included: the library follows
    // leaders, waits out elections and shard moves, and resends a write with the same
    // sequence number (applied at most once). No retry loop of our own.
    let options = ClientOptions {
        op_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    // A sharded cluster is reached through its shard controller, hosted by the same
    // servers in `shardkv up`. Connecting is lazy: an error here is a malformed address.
    let mut c = Client::connect_sharded(&[endpoints.to_string()], options)
        .map_err(|e| format!("bad endpoints {endpoints:?}: {e}"))?;

    // `{quickstart}` is a hash tag: every key with it lives in the same shard.
    let key = "{quickstart}:greeting";
    c.put(key, "hello").await.map_err(|e| failed("put", e))?;
    println!("put {key} = hello");

    let value = c.get(key).await.map_err(|e| failed("get", e))?;
    expect("get", value.as_deref(), Some(b"hello"))?;
    println!("get {key} -> hello");

    c.append(key, ", world")
        .await
        .map_err(|e| failed("append", e))?;
    let value = c.get(key).await.map_err(|e| failed("get", e))?;
    expect("get after append", value.as_deref(), Some(b"hello, world"))?;
    println!("append {key} \", world\" -> hello, world");

    // Compare-and-swap: an answer either way; `swapped` says which.
    let r = c
        .cas(key, Some(b"hello, world".to_vec()), "bye")
        .await
        .map_err(|e| failed("cas", e))?;
    if !r.swapped {
        return Err(format!("cas did not swap: found {:?}", r.current));
    }
    println!("cas {key} \"hello, world\" -> bye: swapped");
    let r = c
        .cas(key, Some(b"hello".to_vec()), "never")
        .await
        .map_err(|e| failed("cas", e))?;
    expect(
        "the failed cas's current value",
        r.current.as_deref(),
        Some(b"bye"),
    )?;
    println!("cas {key} hello -> never: not swapped (it holds bye)");

    c.delete(key).await.map_err(|e| failed("delete", e))?;
    let value = c.get(key).await.map_err(|e| failed("get", e))?;
    expect("get after delete", value.as_deref(), None)?;
    println!("delete {key}: gone");
    Ok(())
}

/// What an application tells its user when an operation fails: whether it took effect.
fn failed(op: &str, e: Error) -> String {
    match e.outcome() {
        // The answer was lost after a server may have applied it (a leader died, the
        // operation timed out). The library already retried with the same sequence number;
        // a new call would be a new write. Reads never apply anything.
        Outcome::Unknown => format!(
            "{op} failed and may have applied ({e}); read the key before writing again \
             (a repeated append could apply twice)"
        ),
        // Surely not applied (no leader, refused, too large, disk full, unreachable):
        // nothing changed; trying again later is safe.
        Outcome::Failed | Outcome::Ok => format!("{op} failed, not applied: {e}"),
    }
}

fn expect(what: &str, got: Option<&[u8]>, want: Option<&[u8]>) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let show = |v: Option<&[u8]>| v.map(|b| String::from_utf8_lossy(b).into_owned());
    Err(format!(
        "{what}: expected {:?}, got {:?}",
        show(want),
        show(got)
    ))
}
