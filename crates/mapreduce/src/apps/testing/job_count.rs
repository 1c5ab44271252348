//! `test-jobcount`: does each map task run exactly once when nothing fails?

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;

use super::{count_files, os_seeded_rng};
use crate::app::{App, KeyValue, MapEmit, ReduceEmit, TaskContext, reduce_by_key};

const PREFIX: &str = "mr-jobcount-";
const MAP_SLEEP_MS_MIN: u64 = 2000;
const MAP_SLEEP_MS_MAX: u64 = 5000;

/// Each map run leaves a marker file of its own and then takes 2–5 s. The only key's reduce
/// counts the markers, so the output is `a <map runs>`: exactly the number of inputs unless a
/// task was re-issued while it was still running.
#[derive(Clone, Copy, Debug, Default)]
pub struct JobCount;

static RUNS: AtomicU64 = AtomicU64::new(0);

impl App for JobCount {
    fn map(
        &self,
        ctx: &TaskContext<'_>,
        _input: &str,
        _contents: &[u8],
        emit: &mut MapEmit<'_>,
    ) -> Result<()> {
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let marker = ctx
            .dir
            .join(format!("{PREFIX}{}-{run}", std::process::id()));
        std::fs::write(marker, b"")?;
        let sleep_ms = os_seeded_rng().range(MAP_SLEEP_MS_MIN, MAP_SLEEP_MS_MAX + 1);
        std::thread::sleep(Duration::from_millis(sleep_ms));
        emit("a", "x");
        Ok(())
    }

    fn reduce(
        &self,
        ctx: &TaskContext<'_>,
        records: &[KeyValue],
        emit: &mut ReduceEmit<'_>,
    ) -> Result<()> {
        reduce_by_key(records, emit, |_, _| {
            Ok(count_files(ctx.dir, PREFIX)?.to_string())
        })
    }
}
