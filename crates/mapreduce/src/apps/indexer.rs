//! Inverted index: for each word, the inputs it occurs in.

use std::collections::BTreeSet;

use anyhow::Result;

use crate::app::{App, KeyValue, MapEmit, ReduceEmit, TaskContext, reduce_by_key};
use crate::apps::word_count::words;

/// Builds an inverted index. Output lines are `word n input1,input2,...` with the `n`
/// inputs containing the word, sorted by name.
#[derive(Clone, Copy, Debug, Default)]
pub struct Indexer;

impl App for Indexer {
    fn map(
        &self,
        _ctx: &TaskContext<'_>,
        input: &str,
        contents: &[u8],
        emit: &mut MapEmit<'_>,
    ) -> Result<()> {
        let text = String::from_utf8_lossy(contents);
        let distinct: BTreeSet<&str> = words(&text).collect();
        for word in distinct {
            emit(word, input);
        }
        Ok(())
    }

    fn reduce(
        &self,
        _ctx: &TaskContext<'_>,
        records: &[KeyValue],
        emit: &mut ReduceEmit<'_>,
    ) -> Result<()> {
        reduce_by_key(records, emit, |_word, inputs| {
            // Values arrive sorted; a duplicated map attempt can never add a second copy
            // (its file replaces the first), but dedup keeps the output right regardless.
            let mut inputs = inputs.to_vec();
            inputs.dedup();
            Ok(format!("{} {}", inputs.len(), inputs.join(",")))
        })
    }
}
