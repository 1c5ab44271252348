//! Turns the deepest point of a failed search into a message for humans.

use std::fmt::Write;

use crate::model::{Operation, show_bytes};
use crate::search::{Deepest, Search};

/// Prefix ops shown before eliding: the end of the prefix is what matters.
const PREFIX_SHOWN_MAX: usize = 20;
/// Candidate ops listed before eliding.
const CANDIDATES_SHOWN_MAX: usize = 10;

/// Explains why `key` is not linearizable. `origin[i]` is the index in the caller's history
/// of the partition's op i, so the message names ops as the caller knows them.
pub(crate) fn explain(
    key: &[u8],
    search: &Search<'_>,
    deepest: &Deepest,
    origin: &[usize],
) -> String {
    let table = &search.table;
    let total = origin.len();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "key {}: no linearization of its {total} operations.",
        show_bytes(key)
    );
    let _ = writeln!(
        text,
        "Longest linearizable prefix found ({} ops, {} of them completed; in linearization order):",
        deepest.prefix.len(),
        deepest.known_in_prefix
    );
    let elided = deepest.prefix.len().saturating_sub(PREFIX_SHOWN_MAX);
    if elided > 0 {
        let _ = writeln!(text, "  ... {elided} earlier ops");
    }
    for (op, after) in &deepest.prefix[elided..] {
        let _ = writeln!(
            text,
            "  history[{}] {}  => state {}",
            origin[*op as usize],
            table.op(*op),
            table.show(*after)
        );
    }
    let state = search.state_after(deepest);
    let _ = writeln!(text, "State after the prefix: {}", table.show(state));
    let _ = writeln!(
        text,
        "Could not place: history[{}] {}",
        origin[deepest.blocked as usize],
        table.op(deepest.blocked)
    );
    let why = if deepest.unreachable {
        "  (the value it needs cannot be produced from that state by the ops not yet placed)"
    } else {
        "  (it returned before it could take effect in any order of the ops concurrent with it)"
    };
    let _ = writeln!(text, "{why}");
    if !deepest.candidates.is_empty() {
        let _ = writeln!(text, "Other ops pending at that point:");
        for op in deepest.candidates.iter().take(CANDIDATES_SHOWN_MAX) {
            let _ = writeln!(
                text,
                "  history[{}] {}",
                origin[*op as usize],
                table.op(*op)
            );
        }
        let more = deepest
            .candidates
            .len()
            .saturating_sub(CANDIDATES_SHOWN_MAX);
        if more > 0 {
            let _ = writeln!(text, "  ... {more} more");
        }
    }
    text
}

/// Explains a violation found by the time-free check: `operation` (`history[index]`, one of
/// the key's `total` ops) needs a state no sequence of the key's writes produces.
pub(crate) fn explain_unproducible(
    key: &[u8],
    operation: &Operation,
    index: usize,
    total: usize,
) -> String {
    format!(
        "key {}: no linearization of its {total} operations.\n\
         Impossible value: history[{index}] {operation}\n  \
         (no sequence of this key's puts, cas and appends, in any order and each applied at \
         most once, produces the value it read or compared against)\n",
        show_bytes(key)
    )
}
