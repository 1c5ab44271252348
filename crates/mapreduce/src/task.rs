//! Running one map or reduce task against the shared directory.
//!
//! Blocking code: the worker runs it on a blocking thread. A task either returns `Ok` with
//! every output file renamed into place, or an error with no output file changed by this
//! attempt (apart from files it already renamed, which hold complete, deterministic data).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::app::{App, KeyValue, TaskContext};
use crate::files::{AtomicFile, intermediate_name, output_name, partition};
use crate::intermediate;

/// Largest input file a map task accepts. A map reads its whole input into memory (and
/// its output is buffered there too), so a bigger file should be split into several inputs.
pub const INPUT_BYTES_MAX: u64 = 2 << 30;

/// What a task did, for logs and throughput numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskStats {
    pub bytes_in: u64,
    pub records_out: u64,
}

/// Map task `task`: reads `input` (relative to the worker's current directory unless
/// absolute), maps it, and writes `n_reduce` intermediate files `mr-<task>-<r>` into
/// `ctx.dir`, one per partition, empty ones included so a reducer can tell "no records" from
/// "map output missing".
pub fn run_map(
    app: &dyn App,
    ctx: &TaskContext<'_>,
    task: u32,
    input: &str,
    n_reduce: u32,
) -> Result<TaskStats> {
    assert!(n_reduce > 0);
    let contents = read_input(input)?;
    let mut partitions: Vec<Vec<u8>> = vec![Vec::new(); n_reduce as usize];
    let mut records_out = 0;
    app.map(ctx, input, &contents, &mut |key, value| {
        records_out += 1;
        intermediate::encode(
            &mut partitions[partition(key, n_reduce) as usize],
            key,
            value,
        );
    })
    .with_context(|| format!("map of {input} failed"))?;
    let mut files = Vec::with_capacity(partitions.len());
    for (reduce, bytes) in partitions.iter().enumerate() {
        let name = intermediate_name(task, reduce as u32);
        let write = || -> std::io::Result<AtomicFile> {
            let mut file = AtomicFile::create(ctx.dir, &name)?;
            file.write_all(bytes)?;
            Ok(file)
        };
        files.push(
            write().with_context(|| format!("cannot write {name} in {}", ctx.dir.display()))?,
        );
    }
    AtomicFile::commit_all(files).with_context(|| {
        format!(
            "cannot install intermediate files of map {task} in {}",
            ctx.dir.display()
        )
    })?;
    Ok(TaskStats {
        bytes_in: contents.len() as u64,
        records_out,
    })
}

/// Reads a whole input file, refusing one over [`INPUT_BYTES_MAX`].
pub fn read_input(input: &str) -> Result<Vec<u8>> {
    let mut file = crate::files::open(Path::new(input))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot stat input {input}"))?
        .len();
    anyhow::ensure!(
        len <= INPUT_BYTES_MAX,
        "input {input} has {len} bytes, more than the {INPUT_BYTES_MAX} a map task takes; split it"
    );
    let mut contents = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    std::io::Read::read_to_end(&mut file, &mut contents)
        .with_context(|| format!("cannot read input {input}"))?;
    Ok(contents)
}

/// Reduce task `task`: reads `mr-<m>-<task>` for every map task `m < n_map`, sorts the
/// records, reduces them and writes `mr-out-<task>` into `ctx.dir`.
pub fn run_reduce(
    app: &dyn App,
    ctx: &TaskContext<'_>,
    task: u32,
    n_map: u32,
) -> Result<TaskStats> {
    let mut records = Vec::new();
    let mut bytes_in = 0;
    for map in 0..n_map {
        let path = ctx.dir.join(intermediate_name(map, task));
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        bytes_in += bytes.len() as u64;
        intermediate::decode(&bytes, &mut records)
            .with_context(|| format!("corrupt intermediate file {}", path.display()))?;
    }
    let records_out = reduce_to_file(app, ctx, records, ctx.dir, &output_name(task))?;
    Ok(TaskStats {
        bytes_in,
        records_out,
    })
}

/// Sorts `records`, reduces them and writes the output lines atomically to `dir/name`.
/// Returns the number of output records.
pub fn reduce_to_file(
    app: &dyn App,
    ctx: &TaskContext<'_>,
    mut records: Vec<KeyValue>,
    dir: &Path,
    name: &str,
) -> Result<u64> {
    records.sort_unstable();
    let mut out = AtomicFile::create(dir, name)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut records_out = 0;
    app.reduce(ctx, &records, &mut |key, value| {
        records_out += 1;
        writeln!(out, "{key} {value}")
    })
    .with_context(|| format!("reduce into {} failed", out.final_path().display()))?;
    let path = out.final_path().to_owned();
    out.commit()
        .with_context(|| format!("cannot install {}", path.display()))?;
    Ok(records_out)
}
