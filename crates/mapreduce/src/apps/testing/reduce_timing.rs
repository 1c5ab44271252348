//! `test-rtiming`: do reduce tasks run on several workers at once?

use anyhow::Result;

use super::overlap_during_one_second;
use crate::app::{App, KeyValue, MapEmit, ReduceEmit, TaskContext, reduce_by_key};

const PREFIX: &str = "mr-rtiming-running-";

/// Every map emits the keys `a` to `j`. Reducing a key holds a marker for a second and
/// outputs the most reducers seen running at once. With two workers at least two keys must
/// show `2`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReduceTiming;

impl App for ReduceTiming {
    fn map(
        &self,
        _ctx: &TaskContext<'_>,
        _input: &str,
        _contents: &[u8],
        emit: &mut MapEmit<'_>,
    ) -> Result<()> {
        for key in 'a'..='j' {
            emit(&key.to_string(), "1");
        }
        Ok(())
    }

    fn reduce(
        &self,
        ctx: &TaskContext<'_>,
        records: &[KeyValue],
        emit: &mut ReduceEmit<'_>,
    ) -> Result<()> {
        let pid = std::process::id();
        reduce_by_key(records, emit, |key, _| {
            let name = format!("{PREFIX}{pid}-{key}");
            Ok(overlap_during_one_second(ctx.dir, PREFIX, name)?.to_string())
        })
    }
}
