//! `test-crash`: word count with chaos, for the crash test.

use std::time::Duration;

use anyhow::Result;

use super::os_seeded_rng;
use crate::app::{App, KeyValue, MapEmit, ReduceEmit, TaskContext};
use crate::apps::WordCount;

/// Word count whose every task first rolls a die (seeded from OS randomness, so each process
/// differs): one in three the worker process exits, one in three it stalls for a random time
/// up to the task timeout before doing the work, else it works normally. A reduce that exits
/// does so part-way through writing its output, to show a half-written file is never
/// installed. The output, when the job completes, is plain word count's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Crash;

enum Fate {
    /// Exit after this many output records (maps exit before any work).
    Exit {
        after_records: u64,
    },
    Stall(Duration),
    Work,
}

fn roll(ctx: &TaskContext<'_>, records_max: u64) -> Fate {
    let mut rng = os_seeded_rng();
    match rng.range(0, 3) {
        0 => Fate::Exit {
            after_records: rng.range(0, records_max + 1),
        },
        1 => {
            let timeout_ms = u64::try_from(ctx.task_timeout.as_millis()).unwrap_or(u64::MAX);
            Fate::Stall(Duration::from_millis(rng.range(0, timeout_ms.max(1))))
        }
        _ => Fate::Work,
    }
}

fn die() -> ! {
    eprintln!("test-crash: worker {} exits on purpose", std::process::id());
    std::process::exit(1)
}

impl App for Crash {
    fn map(
        &self,
        ctx: &TaskContext<'_>,
        input: &str,
        contents: &[u8],
        emit: &mut MapEmit<'_>,
    ) -> Result<()> {
        match roll(ctx, 0) {
            Fate::Exit { .. } => die(),
            Fate::Stall(d) => std::thread::sleep(d),
            Fate::Work => {}
        }
        WordCount.map(ctx, input, contents, emit)
    }

    fn reduce(
        &self,
        ctx: &TaskContext<'_>,
        records: &[KeyValue],
        emit: &mut ReduceEmit<'_>,
    ) -> Result<()> {
        let exit_after = match roll(ctx, records.len() as u64) {
            Fate::Exit { after_records } => Some(after_records),
            Fate::Stall(d) => {
                std::thread::sleep(d);
                None
            }
            Fate::Work => None,
        };
        let mut emitted: u64 = 0;
        WordCount.reduce(ctx, records, &mut |key, value| {
            if exit_after == Some(emitted) {
                die();
            }
            emitted += 1;
            emit(key, value)
        })?;
        if exit_after.is_some() {
            die();
        }
        Ok(())
    }
}
