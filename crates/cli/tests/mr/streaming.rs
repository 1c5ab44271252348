//! Streaming mode: external mapper and reducer programs give the built-in word count.

use std::fs;

use crate::harness::{Job, PROCESS_LIMIT};

const SH_MAPPER: &str = "tr -cs 'A-Za-z' '\\n' | awk 'NF { print $1 \"\\t1\" }'\n";
const SH_REDUCER: &str =
    "awk -F '\\t' '{ n[$1] += $2 } END { for (w in n) print w \"\\t\" n[w] }'\n";

const PY_MAPPER: &str = r#"import re, sys
for word in re.findall(r"[A-Za-z]+", sys.stdin.read()):
    print(f"{word}\t1")
"#;
const PY_REDUCER: &str = r#"import itertools, sys
# Input is sorted by key, so each word's lines are adjacent.
pairs = (line.rstrip("\n").split("\t", 1) for line in sys.stdin)
for word, group in itertools.groupby(pairs, key=lambda p: p[0]):
    print(f"{word}\t{sum(int(count) for _, count in group)}")
"#;

fn streaming_equals_builtin(name: &str, scripts: [(&str, &str); 2], run: [&str; 2]) {
    let job = Job::new(name);
    for (file, text) in scripts {
        fs::write(job.dir.join(file), text).expect("write script");
    }
    let expected = job.sequential(&["--app", "wc"]);
    let app = ["--mapper", run[0], "--reducer", run[1]];
    let mut coordinator = job.coordinator("10s", PROCESS_LIMIT);
    let _workers: Vec<_> = (0..2).map(|_| job.worker(&app)).collect();
    assert!(coordinator.wait().success(), "coordinator failed");
    job.assert_same("streaming output", &job.output(), &expected);
    job.cleanup();
}

#[test]
fn streaming_word_count_with_shell_scripts_equals_builtin() {
    // Goal: any executable works as mapper and reducer; method: tr + awk scripts.
    streaming_equals_builtin(
        "streaming-sh",
        [("mapper.sh", SH_MAPPER), ("reducer.sh", SH_REDUCER)],
        ["sh mapper.sh", "sh reducer.sh"],
    );
}

#[test]
fn streaming_word_count_with_python_scripts_equals_builtin() {
    // Goal: as above with Python, whose reducer relies on the sorted-input contract.
    streaming_equals_builtin(
        "streaming-py",
        [("mapper.py", PY_MAPPER), ("reducer.py", PY_REDUCER)],
        ["python3 mapper.py", "python3 reducer.py"],
    );
}
