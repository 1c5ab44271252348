//! `shardkv status`: each member's id, address, role, term, commit and applied index, and
//! whether it answered. Exit status 1 when no member answered.

use crate::conn::{ConnArgs, WriteOut, runtime};
use anyhow::Result;
use clap::Args;
use shardkv_client::{NodeStatus, fetch_status, role_name};
use std::process::ExitCode;
use std::time::Duration;

/// How long each member gets to answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub fn run(args: StatusArgs) -> Result<ExitCode> {
    let addrs = args.conn.endpoint_list();
    let rt = runtime()?;
    let answers: Vec<(String, Result<NodeStatus, String>)> = rt.block_on(async {
        let asks = addrs.iter().map(|a| {
            let addr = a
                .split_once('=')
                .map_or(a.as_str(), |(_, addr)| addr)
                .to_string();
            async move {
                let r = fetch_status(&addr, STATUS_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string());
                (addr, r)
            }
        });
        futures_join_all(asks).await
    });
    match args.conn.write_out {
        WriteOut::Json => println!(
            "{}",
            serde_json::Value::Array(answers.iter().map(json).collect())
        ),
        WriteOut::Text => print_table(&answers),
    }
    let reachable = answers.iter().any(|(_, r)| r.is_ok());
    Ok(if reachable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join_all<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("status task does not panic"));
    }
    out
}

fn json((addr, r): &(String, Result<NodeStatus, String>)) -> serde_json::Value {
    match r {
        Ok(s) => serde_json::json!({
            "id": s.id.0,
            "address": addr,
            "reachable": true,
            "role": role(s),
            "term": s.term.0,
            "leader": s.leader.map(|l| l.0),
            "commit": s.commit.0,
            "applied": s.applied.0,
            "last_index": s.last_index.0,
            "snapshot_index": s.snapshot_index.0,
            "raft_state_bytes": s.raft_state_bytes,
            "no_space": s.no_space,
        }),
        Err(e) => serde_json::json!({ "address": addr, "reachable": false, "error": e }),
    }
}

fn role(s: &NodeStatus) -> &'static str {
    role_name(s.role)
}

fn print_table(answers: &[(String, Result<NodeStatus, String>)]) {
    println!(
        "{:<4} {:<22} {:<13} {:>6} {:>10} {:>10} {:<9}",
        "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "REACHABLE"
    );
    for (addr, r) in answers {
        match r {
            Ok(s) => println!(
                "{:<4} {:<22} {:<13} {:>6} {:>10} {:>10} {:<9}",
                s.id.0,
                addr,
                role(s),
                s.term.0,
                s.commit.0,
                s.applied.0,
                if s.no_space { "yes (disk full)" } else { "yes" }
            ),
            Err(e) => println!(
                "{:<4} {:<22} {:<13} {:>6} {:>10} {:>10} no ({e})",
                "-", addr, "-", "-", "-", "-"
            ),
        }
    }
}
