//! The application interface: what a MapReduce job computes.
//!
//! An [`App`] is a pair of functions. `map` turns one input file into key/value records;
//! `reduce` gets the records of one partition sorted by key (then value) and writes output
//! records. The framework does everything else: partitioning, sorting, files, retries.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

/// One intermediate record. Ordered by key, then value, which is the order `reduce` sees.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// What a running task may know about its surroundings.
#[derive(Clone, Copy, Debug)]
pub struct TaskContext<'a> {
    /// The shared directory holding intermediate and output files.
    pub dir: &'a Path,
    /// How long the coordinator waits for this task before handing it to another worker.
    pub task_timeout: Duration,
}

/// Receives the records a `map` call produces.
pub type MapEmit<'a> = dyn FnMut(&str, &str) + 'a;

/// Receives the records a `reduce` call produces; each becomes the line `key value`.
pub type ReduceEmit<'a> = dyn FnMut(&str, &str) -> std::io::Result<()> + 'a;

/// A MapReduce application.
///
/// Contract: for the job's output to equal a sequential run, `map` and `reduce` must be
/// deterministic functions of their inputs (a task may run more than once, and any run's
/// output may be the one kept). Keys must not contain `'\n'`; output keys and values must not
/// contain `'\n'` either, since output is one `key value` line per record.
pub trait App: Send + Sync {
    /// Maps one input file. `input` is the file's name as the job was given it.
    fn map(
        &self,
        ctx: &TaskContext<'_>,
        input: &str,
        contents: &[u8],
        emit: &mut MapEmit<'_>,
    ) -> Result<()>;

    /// Reduces one partition. `records` are sorted by key then value, so all records of a
    /// key are adjacent; [`reduce_by_key`] turns this into one call per key.
    fn reduce(
        &self,
        ctx: &TaskContext<'_>,
        records: &[KeyValue],
        emit: &mut ReduceEmit<'_>,
    ) -> Result<()>;
}

/// Calls `reduce(key, values)` once per distinct key of the sorted `records` and emits its
/// result as the key's output value.
pub fn reduce_by_key(
    records: &[KeyValue],
    emit: &mut ReduceEmit<'_>,
    mut reduce: impl FnMut(&str, &[&str]) -> Result<String>,
) -> Result<()> {
    debug_assert!(records.is_sorted(), "reduce input must be sorted");
    let mut values: Vec<&str> = Vec::new();
    for group in records.chunk_by(|a, b| a.key == b.key) {
        values.clear();
        values.extend(group.iter().map(|kv| kv.value.as_str()));
        let key = group[0].key.as_str();
        let output = reduce(key, &values)?;
        emit(key, &output)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn reduce_by_key_calls_once_per_key_with_all_values() {
        let records = [kv("a", "1"), kv("a", "2"), kv("b", "3")];
        let mut out = Vec::new();
        reduce_by_key(
            &records,
            &mut |k, v| {
                out.push(format!("{k} {v}"));
                Ok(())
            },
            |_, values| Ok(values.join("+")),
        )
        .unwrap();
        assert_eq!(out, ["a 1+2", "b 3"]);
    }
}
