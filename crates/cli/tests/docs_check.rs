//! The docs check: every command block marked runnable in README.md and docs/*.md runs, as
//! written, against a fresh local cluster, so the docs cannot rot.
//!
//! Convention: a block is runnable when the line just before its opening fence is exactly
//! `<!-- runnable -->` (an HTML comment: GitHub renders nothing) and the fence is ```` ```sh ````.
//! Mark every block a newcomer would run against `shardkv up`; leave unmarked the blocks
//! that need another setup (several machines, extra processes, fixed ports, `cargo run`).
//!
//! Per file, in file order, each marked block runs under `bash -e -o pipefail` (so every
//! command in it must succeed), in one temporary working directory, against one fresh
//! `shardkv up` started there (data in `./shardkv-data`, free ports): `SHARDKV_ENDPOINTS`
//! and `SHARDKV_CTRL_ENDPOINTS` point at it and the `shardkv` under test comes first on
//! `PATH`. Each block must exit 0 within [`BLOCK_LIMIT`]; a failure names the file, the
//! block's line and prints the block and its output. The check cannot pass vacuously:
//! every file with marked blocks must be one of [`CHECKED`], each of those must have at
//! least one, and there must be at least [`BLOCKS_MIN`] in all.

mod common;

use common::cluster::BIN;
use common::up::Up;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The marker line before a runnable block's fence.
const MARKER: &str = "<!-- runnable -->";
/// The files with runnable blocks, relative to the repository root.
const CHECKED: [&str; 5] = [
    "README.md",
    "docs/kv.md",
    "docs/sharding.md",
    "docs/admin.md",
    "docs/membership.md",
];
/// The fewest runnable blocks over all files.
const BLOCKS_MIN: usize = 7;
/// How long one block may run.
const BLOCK_LIMIT: Duration = Duration::from_secs(90);

/// One runnable block: the line of its opening fence (1-based) and its text.
struct Block {
    line: usize,
    text: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The runnable blocks of `markdown`. Panics on a marker not followed by a ```sh fence or a
/// block that is never closed (a typo must not silently skip a block).
fn runnable_blocks(file: &str, markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != MARKER {
            i += 1;
            continue;
        }
        let fence = i + 1;
        assert_eq!(
            lines.get(fence).map(|l| l.trim_end()),
            Some("```sh"),
            "{file}:{}: {MARKER} must be followed by a ```sh fence",
            i + 1
        );
        let body: Vec<&str> = lines[fence + 1..]
            .iter()
            .take_while(|l| l.trim_end() != "```")
            .copied()
            .collect();
        let end = fence + 1 + body.len();
        assert!(
            end < lines.len(),
            "{file}:{}: block never closed",
            fence + 1
        );
        blocks.push(Block {
            line: fence + 1,
            text: body.join("\n") + "\n",
        });
        i = end + 1;
    }
    blocks
}

/// Every markdown file the check looks at: README.md and docs/*.md.
fn markdown_files() -> Vec<String> {
    let mut files = vec!["README.md".to_string()];
    let docs = std::fs::read_dir(repo_root().join("docs")).expect("read docs/");
    let mut names: Vec<String> = docs
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    names.sort();
    files.extend(names);
    files
}

fn read(file: &str) -> String {
    std::fs::read_to_string(repo_root().join(file)).expect("read a markdown file")
}

/// Runs `file`'s runnable blocks in order against a fresh `shardkv up`.
fn check(file: &str) {
    let blocks = runnable_blocks(file, &read(file));
    assert!(!blocks.is_empty(), "{file} has no {MARKER} block");
    let tmp = tempfile::tempdir().expect("tmp");
    let work = tmp.path();
    let up = Up::start(&work.join("shardkv-data"), &[]);
    let bin_dir = Path::new(BIN).parent().expect("the binary's directory");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("a PATH");
    for (n, block) in blocks.iter().enumerate() {
        let out_path = tmp.path().join(format!(".block-{n}.out"));
        let out = std::fs::File::create(&out_path).expect("an output file");
        let mut child = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &block.text])
            .current_dir(work)
            .env("PATH", &path)
            .env("SHARDKV_ENDPOINTS", &up.endpoints)
            .env("SHARDKV_CTRL_ENDPOINTS", &up.endpoints)
            .env_remove("SHARDKV_SESSION")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn bash");
        let deadline = Instant::now() + BLOCK_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        let verdict = match status {
            Some(s) if s.success() => continue,
            Some(s) => format!("exited with {s}"),
            None => format!("ran past {BLOCK_LIMIT:?}"),
        };
        panic!(
            "{file}:{}: runnable block {} of {} {verdict}\n--- block ---\n{}--- output ---\n{output}",
            block.line,
            n + 1,
            blocks.len(),
            block.text
        );
    }
    drop(up);
}

#[test]
fn the_marked_blocks_are_found_in_the_checked_files() {
    let mut total = 0;
    for file in markdown_files() {
        let found = runnable_blocks(&file, &read(&file)).len();
        assert!(
            found == 0 || CHECKED.contains(&file.as_str()),
            "{file} has {found} runnable blocks but is not checked: add it to CHECKED and a \
             test for it"
        );
        total += found;
    }
    for file in CHECKED {
        assert!(
            !runnable_blocks(file, &read(file)).is_empty(),
            "{file} has no runnable block"
        );
    }
    assert!(
        total >= BLOCKS_MIN,
        "only {total} runnable blocks, expected at least {BLOCKS_MIN}"
    );
}

#[test]
fn a_marker_must_precede_a_sh_fence_and_blocks_are_read_whole() {
    let md = "text\n<!-- runnable -->\n```sh\necho a\necho b\n```\n```sh\nnot marked\n```\n";
    let blocks = runnable_blocks("t.md", md);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].line, 3);
    assert_eq!(blocks[0].text, "echo a\necho b\n");
    let wrong =
        std::panic::catch_unwind(|| runnable_blocks("t.md", "<!-- runnable -->\n```\nx\n```\n"));
    assert!(wrong.is_err(), "a marker before a non-sh fence is refused");
}

#[test]
fn readme_runnable_blocks_succeed() {
    check("README.md");
}

#[test]
fn kv_md_runnable_blocks_succeed() {
    check("docs/kv.md");
}

#[test]
fn sharding_md_runnable_blocks_succeed() {
    check("docs/sharding.md");
}

#[test]
fn admin_md_runnable_blocks_succeed() {
    check("docs/admin.md");
}

#[test]
fn membership_md_runnable_blocks_succeed() {
    check("docs/membership.md");
}
