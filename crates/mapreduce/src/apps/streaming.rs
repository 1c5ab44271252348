//! Streaming: any executable as mapper or reducer, in the manner of Hadoop Streaming.
//!
//! Each task runs its command once through `sh -c`, in the worker's current directory:
//! - mapper: stdin is the input file's bytes; every stdout line `key<TAB>value` is a record
//!   (a line without a tab is a key with an empty value). `MR_INPUT` names the input file.
//! - reducer: stdin is the partition's records as `key<TAB>value` lines, sorted by key then
//!   value, so equal keys are adjacent and the reducer does its own grouping; every stdout
//!   line `key<TAB>value` becomes the output line `key value`.
//!
//! Both commands get `MR_PHASE` (`map` or `reduce`). A command that exits non-zero or prints
//! a line that is not UTF-8 fails the task; its stderr goes to the worker's stderr.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::app::{App, KeyValue, MapEmit, ReduceEmit, TaskContext};

/// A mapper and a reducer command line.
#[derive(Clone, Debug)]
pub struct Streaming {
    pub mapper: String,
    pub reducer: String,
}

impl App for Streaming {
    fn map(
        &self,
        _ctx: &TaskContext<'_>,
        input: &str,
        contents: &[u8],
        emit: &mut MapEmit<'_>,
    ) -> Result<()> {
        let env = [("MR_PHASE", "map"), ("MR_INPUT", input)];
        run_filter(
            &self.mapper,
            &env,
            |stdin| stdin.write_all(contents),
            |key, value| {
                emit(key, value);
                Ok(())
            },
        )
    }

    fn reduce(
        &self,
        _ctx: &TaskContext<'_>,
        records: &[KeyValue],
        emit: &mut ReduceEmit<'_>,
    ) -> Result<()> {
        run_filter(
            &self.reducer,
            &[("MR_PHASE", "reduce")],
            |stdin| {
                let mut stdin = std::io::BufWriter::new(stdin);
                for kv in records {
                    writeln!(stdin, "{}\t{}", kv.key, kv.value)?;
                }
                stdin.flush()
            },
            |key, value| Ok(emit(key, value)?),
        )
    }
}

/// Runs `command` with `feed` writing its stdin (on a separate thread, so a command that
/// writes before it has read everything cannot deadlock us) and `on_record` called for each
/// stdout line split at its first tab.
fn run_filter(
    command: &str,
    env: &[(&str, &str)],
    feed: impl FnOnce(&mut std::process::ChildStdin) -> std::io::Result<()> + Send,
    mut on_record: impl FnMut(&str, &str) -> Result<()>,
) -> Result<()> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start `{command}`"))?;
    let mut stdin = child.stdin.take().context("child has no stdin")?;
    let stdout = child.stdout.take().context("child has no stdout")?;
    let read_result = std::thread::scope(|scope| {
        let feeder = scope.spawn(move || {
            let result = feed(&mut stdin);
            drop(stdin); // EOF for the command.
            result
        });
        let read_result = read_records(stdout, &mut on_record);
        let feed_result = feeder.join().expect("stdin feeder panicked");
        match feed_result {
            // A command may legitimately stop reading early (e.g. `head`).
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(anyhow::Error::new(e).context(format!("cannot write to `{command}`")))
            }
            _ => read_result,
        }
    });
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for `{command}`"))?;
    read_result?;
    if !status.success() {
        bail!("`{command}` failed: {status}");
    }
    Ok(())
}

fn read_records(
    stdout: std::process::ChildStdout,
    on_record: &mut impl FnMut(&str, &str) -> Result<()>,
) -> Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, stdout);
    let mut line = Vec::new();
    let mut line_no: u64 = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let text = std::str::from_utf8(&line)
            .with_context(|| format!("output line {line_no} is not UTF-8"))?;
        let (key, value) = text.split_once('\t').unwrap_or((text, ""));
        on_record(key, value)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn ctx() -> TaskContext<'static> {
        TaskContext {
            dir: Path::new("."),
            task_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn mapper_lines_become_records_and_failures_are_errors() {
        let app = Streaming {
            mapper: "tr ' ' '\\n' | sed 's/$/\t1/'; echo \"file\t$MR_INPUT\"; echo bare".into(),
            reducer: "exit 3".into(),
        };
        let mut got = Vec::new();
        app.map(&ctx(), "in.txt", b"a b\n", &mut |k, v| {
            got.push(format!("{k}={v}"))
        })
        .unwrap();
        assert_eq!(got, ["a=1", "b=1", "file=in.txt", "bare="]);
        let err = app.reduce(&ctx(), &[], &mut |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err:#}");
    }
}
