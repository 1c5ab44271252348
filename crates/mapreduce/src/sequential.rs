//! The reference run: the whole job in one process, one map per input, one reduce over
//! everything. A distributed run's sorted `mr-out-*` lines must equal this run's sorted
//! output lines; that is the framework's correctness check.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::app::{App, KeyValue, TaskContext};
use crate::task::{TaskStats, read_input, reduce_to_file};

/// Runs `app` over `inputs` and writes all output lines to `out` (atomically).
pub fn run_sequential(app: &dyn App, inputs: &[String], out: &Path) -> Result<TaskStats> {
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("bad output path {}", out.display()))?;
    let ctx = TaskContext {
        dir,
        // Nothing re-issues tasks here; apps that look at the timeout get the default.
        task_timeout: Duration::from_secs(10),
    };
    let mut records = Vec::new();
    let mut bytes_in = 0;
    for input in inputs {
        let contents = read_input(input)?;
        bytes_in += contents.len() as u64;
        app.map(&ctx, input, &contents, &mut |key, value| {
            records.push(KeyValue {
                key: key.to_owned(),
                value: value.to_owned(),
            });
        })
        .with_context(|| format!("map of {input} failed"))?;
    }
    let records_out = reduce_to_file(app, &ctx, records, dir, name)?;
    Ok(TaskStats {
        bytes_in,
        records_out,
    })
}
