//! Word count: how often each word occurs across all inputs.

use std::collections::HashMap;

use anyhow::{Context, Result};

use crate::app::{App, KeyValue, MapEmit, ReduceEmit, TaskContext, reduce_by_key};

/// Counts words: maximal runs of alphabetic characters (Unicode), case-sensitive. Output
/// lines are `word count`.
///
/// The map side combines: it emits each distinct word of a file once with its count in that
/// file, instead of once per occurrence, which shrinks intermediate data many times over.
#[derive(Clone, Copy, Debug, Default)]
pub struct WordCount;

/// The words of `text`, in order.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
}

impl App for WordCount {
    fn map(
        &self,
        _ctx: &TaskContext<'_>,
        _input: &str,
        contents: &[u8],
        emit: &mut MapEmit<'_>,
    ) -> Result<()> {
        let text = String::from_utf8_lossy(contents);
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for word in words(&text) {
            *counts.entry(word).or_default() += 1;
        }
        // Sorted so that two runs of the same task write identical bytes.
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_unstable();
        for (word, count) in counts {
            emit(word, &count.to_string());
        }
        Ok(())
    }

    fn reduce(
        &self,
        _ctx: &TaskContext<'_>,
        records: &[KeyValue],
        emit: &mut ReduceEmit<'_>,
    ) -> Result<()> {
        reduce_by_key(records, emit, |word, counts| {
            let mut total: u64 = 0;
            for count in counts {
                let n: u64 = count
                    .parse()
                    .with_context(|| format!("count {count:?} of {word:?} is not a number"))?;
                total += n;
            }
            Ok(total.to_string())
        })
    }
}
