//! `test-early-exit`: does any process exit before the output is final?

use std::time::Duration;

use anyhow::Result;

use crate::app::{App, KeyValue, MapEmit, ReduceEmit, TaskContext, reduce_by_key};

const SLOW_REDUCE: Duration = Duration::from_secs(3);

/// Map emits `<input name> 1`. Reducing a key that contains `sherlock` or `tom` takes 3 s,
/// so some reduce tasks finish well after the others; output is `<input name> <count>`. A
/// test snapshots the output when the first process exits and again at the end.
#[derive(Clone, Copy, Debug, Default)]
pub struct EarlyExit;

impl App for EarlyExit {
    fn map(
        &self,
        _ctx: &TaskContext<'_>,
        input: &str,
        _contents: &[u8],
        emit: &mut MapEmit<'_>,
    ) -> Result<()> {
        emit(input, "1");
        Ok(())
    }

    fn reduce(
        &self,
        _ctx: &TaskContext<'_>,
        records: &[KeyValue],
        emit: &mut ReduceEmit<'_>,
    ) -> Result<()> {
        reduce_by_key(records, emit, |key, values| {
            if key.contains("sherlock") || key.contains("tom") {
                std::thread::sleep(SLOW_REDUCE);
            }
            Ok(values.len().to_string())
        })
    }
}
