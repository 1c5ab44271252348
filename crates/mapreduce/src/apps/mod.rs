//! The built-in applications and the registry that finds them by name.

mod indexer;
mod streaming;
pub mod testing;
mod word_count;

use std::sync::Arc;

pub use indexer::Indexer;
pub use streaming::Streaming;
pub use word_count::{WordCount, words};

use crate::app::App;

/// Every built-in application: name and one-line description. Names starting with `test-`
/// exist for the framework's own tests.
pub const BUILTIN_APPS: &[(&str, &str)] = &[
    ("wc", "word count: `word count` per distinct word"),
    ("indexer", "inverted index: `word n input1,input2,...`"),
    (
        "test-mtiming",
        "test: reports whether map tasks ran in parallel",
    ),
    (
        "test-rtiming",
        "test: reports whether reduce tasks ran in parallel",
    ),
    (
        "test-jobcount",
        "test: counts map task executions (maps take 2-5 s)",
    ),
    ("test-early-exit", "test: some reduces take 3 s"),
    (
        "test-crash",
        "test: word count whose tasks exit or stall at random",
    ),
];

/// The built-in application called `name`, if there is one.
pub fn builtin_app(name: &str) -> Option<Arc<dyn App>> {
    let app: Arc<dyn App> = match name {
        "wc" => Arc::new(WordCount),
        "indexer" => Arc::new(Indexer),
        "test-mtiming" => Arc::new(testing::MapTiming),
        "test-rtiming" => Arc::new(testing::ReduceTiming),
        "test-jobcount" => Arc::new(testing::JobCount),
        "test-early-exit" => Arc::new(testing::EarlyExit),
        "test-crash" => Arc::new(testing::Crash),
        _ => return None,
    };
    debug_assert!(BUILTIN_APPS.iter().any(|(n, _)| *n == name));
    Some(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_app_is_found() {
        for (name, _) in BUILTIN_APPS {
            assert!(builtin_app(name).is_some(), "{name}");
        }
        assert!(builtin_app("nope").is_none());
    }
}
