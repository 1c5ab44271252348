//! `test-mtiming`: do map tasks run on several workers at once?

use anyhow::Result;

use super::overlap_during_one_second;
use crate::app::{App, KeyValue, MapEmit, ReduceEmit, TaskContext, reduce_by_key};

const PREFIX: &str = "mr-mtiming-running-";

/// Each map holds a marker for a second and emits `times-<pid> 1` and
/// `parallel-<pid> <most maps seen running at once>`. Reduce sums `times-*` and takes the max
/// of `parallel-*`. With two workers the output must have two `times-` lines (both ran maps)
/// and a `parallel-<pid> 2` line (two maps overlapped).
#[derive(Clone, Copy, Debug, Default)]
pub struct MapTiming;

impl App for MapTiming {
    fn map(
        &self,
        ctx: &TaskContext<'_>,
        _input: &str,
        _contents: &[u8],
        emit: &mut MapEmit<'_>,
    ) -> Result<()> {
        let pid = std::process::id();
        let parallel = overlap_during_one_second(ctx.dir, PREFIX, format!("{PREFIX}{pid}"))?;
        emit(&format!("times-{pid}"), "1");
        emit(&format!("parallel-{pid}"), &parallel.to_string());
        Ok(())
    }

    fn reduce(
        &self,
        _ctx: &TaskContext<'_>,
        records: &[KeyValue],
        emit: &mut ReduceEmit<'_>,
    ) -> Result<()> {
        reduce_by_key(records, emit, |key, values| {
            let numbers = values.iter().map(|v| v.parse::<u64>().unwrap_or(0));
            Ok(if key.starts_with("times-") {
                numbers.sum::<u64>()
            } else {
                numbers.max().unwrap_or(0)
            }
            .to_string())
        })
    }
}
