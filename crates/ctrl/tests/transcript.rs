//! Datadriven transcripts of the controller, etcd-style: each `tests/testdata/*.txt` is a
//! script of commands, each followed by `----` and its exact expected output. The runner
//! replays every file and compares; with `SHARDKV_REWRITE=1` it writes the actual outputs
//! back instead, so a behaviour change is reviewed as a diff.
//!
//! Commands (one per block; `#` lines and blank lines between blocks are kept as they are):
//! - `new <shards>`: a fresh controller; prints config 0;
//! - `join <gid>[=<server>,<server>...] ...`: servers default to `<gid>a <gid>b <gid>c`;
//! - `leave <gid> ...`, `move <shard> <gid>`: print the new config and how many shards moved,
//!   or the error;
//! - `query [<num>]`: prints that config (default: the latest).

use shardkv_ctrl::{CtrlCommand, CtrlQuery, CtrlReply, ShardCtrl};
use shardkv_types::{ConfigNum, Gid, ShardId};
use std::path::Path;

fn number(token: &str, at: &str) -> u64 {
    token
        .parse()
        .unwrap_or_else(|_| panic!("{at}: {token:?} is not a number"))
}

fn parse_join(args: &[&str], at: &str) -> CtrlCommand {
    let groups = args
        .iter()
        .map(|arg| match arg.split_once('=') {
            Some((gid, list)) => {
                let servers = list
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                (Gid(number(gid, at)), servers.collect())
            }
            None => {
                let servers = ["a", "b", "c"].map(|s| format!("{arg}{s}"));
                (Gid(number(arg, at)), servers.to_vec())
            }
        })
        .collect();
    CtrlCommand::Join { groups }
}

/// Runs one command line against `ctrl` and renders its output.
fn run(ctrl: &mut ShardCtrl, line: &str, at: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (verb, args) = words
        .split_first()
        .unwrap_or_else(|| panic!("{at}: empty command"));
    let cmd = match *verb {
        "new" => {
            let [shards] = args else {
                panic!("{at}: usage: new <shards>")
            };
            let shards = u32::try_from(number(shards, at)).expect("shard count fits u32");
            return match ShardCtrl::new(shards) {
                Ok(fresh) => {
                    *ctrl = fresh;
                    ctrl.latest().to_string()
                }
                Err(e) => format!("error: {e}"),
            };
        }
        "query" => {
            let num = args.first().map(|n| ConfigNum(number(n, at)));
            return match ctrl.read(&CtrlQuery { num }) {
                Ok(CtrlReply::Config(c)) => c.to_string(),
                other => panic!("{at}: query answered {other:?}"),
            };
        }
        "join" => parse_join(args, at),
        "leave" => CtrlCommand::Leave {
            gids: args.iter().map(|g| Gid(number(g, at))).collect(),
        },
        "move" => {
            let [shard, gid] = args else {
                panic!("{at}: usage: move <shard> <gid>")
            };
            CtrlCommand::Move {
                shard: ShardId(number(shard, at)),
                gid: Gid(number(gid, at)),
            }
        }
        other => panic!("{at}: unknown command {other:?}"),
    };
    let before = ctrl.latest().clone();
    match ctrl.execute(&cmd) {
        Ok(_) => {
            let after = ctrl.latest();
            format!("moved {}\n{after}", after.moved_from(&before))
        }
        Err(e) => format!("error: {e}"),
    }
}

/// Replays `text`; returns the text with every expected output replaced by the actual one.
fn replay(text: &str, file: &str) -> String {
    let mut ctrl = ShardCtrl::default();
    let mut out = String::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        out.push_str(line);
        out.push('\n');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{file}:{}", i + 1);
        match lines.next() {
            Some((_, "----")) => {}
            _ => panic!("{at}: a command must be followed by ----"),
        }
        // Skip the old expected output: everything up to a blank line.
        while lines.peek().is_some_and(|(_, l)| !l.trim().is_empty()) {
            lines.next();
        }
        out.push_str("----\n");
        out.push_str(&run(&mut ctrl, line, &at));
        out.push('\n');
    }
    out
}

/// Goal: the controller's outputs match the reviewed transcripts. Method: replay every
/// testdata file; rewrite them when `SHARDKV_REWRITE=1`.
#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let rewrite = std::env::var("SHARDKV_REWRITE").is_ok_and(|v| v == "1");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata directory exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no transcripts in {}", dir.display());
    let mut failed = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("readable transcript");
        let actual = replay(&text, &name);
        if actual == text {
            continue;
        }
        if rewrite {
            std::fs::write(&path, &actual).expect("writable transcript");
            println!("rewrote {name}");
        } else {
            let first = text
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(text.lines().count().min(actual.lines().count()));
            let line = |t: &str| t.lines().nth(first).unwrap_or("<end of file>").to_string();
            eprintln!(
                "{name}:{}: expected {:?}, actual {:?}",
                first + 1,
                line(&text),
                line(&actual)
            );
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "transcripts differ: {failed:?}; rerun with SHARDKV_REWRITE=1 and review the diff"
    );
}
