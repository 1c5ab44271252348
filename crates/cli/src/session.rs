//! `--session FILE` (env `SHARDKV_SESSION`): one client session across CLI calls, so that
//! retrying a write that ended "may have applied" applies it at most once.
//!
//! Each CLI call is otherwise a new client (a random client id, sequence numbers from 1),
//! and the servers' session tables, which make a client's retries exactly-once, cannot tell
//! a second `shardkv append` from a new write. With a session file the write commands
//! (`put`, `append`, `del`, `cas`) keep in FILE the client id, the next sequence number and
//! the write in progress (its sequence number and the command: kind, key, values; bytes
//! that are not UTF-8 as `{"hex": ...}`). A call:
//! 1. takes an exclusive lock on `FILE.lock` (created if absent; a second call with the
//!    same file waits for it up to `--timeout`, then fails saying the session is in use);
//! 2. picks the sequence number: the pending one when the pending write is this very
//!    command (same kind, key and values), sent as a retry; otherwise the next one;
//! 3. records that write as pending in FILE (a temp file, fsync, rename, directory fsync)
//!    before the request is sent;
//! 4. after the answer, clears the pending write unless the outcome is unknown ("may have
//!    applied"): then the same command, run again with the same FILE, is a retry of it.
//!    If FILE cannot be written then, the outcome stands and a warning says so (a write
//!    left pending that did apply is answered from the session table when run again).
//!
//! A different command moves on to a new sequence number: the unknown write is then given
//! up (it applied once or never). The servers keep a session for a bounded time (see
//! docs/kv.md, "many clients"): a retry after its session was evicted gets `SessionExpired`
//! (may have applied), never a second application.

use crate::conn::bytes_json;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use shardkv_client::{Client, ClientId, Error, Seq};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Keep this client's id and sequence numbers in FILE across calls (created if absent),
    /// so that repeating a write that "may have applied" applies it at most once.
    #[arg(long, value_name = "FILE", env = "SHARDKV_SESSION", global = true)]
    pub session: Option<PathBuf>,
}

/// How often a call waiting for the session lock tries again.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// What a session file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    client: ClientId,
    next_seq: Seq,
    /// The write whose outcome is unknown: its sequence number and command ([`command`]).
    pending: Option<(Seq, Value)>,
}

/// An open session file, locked for the whole call.
pub struct Session {
    path: PathBuf,
    state: Option<State>,
    /// Held for the lock; released when dropped.
    _lock: File,
}

impl SessionArgs {
    /// The session file locked for this call, if `--session` was given; waits up to `wait`
    /// for another call holding it.
    pub fn open(&self, wait: Duration) -> Result<Option<Session>> {
        self.session
            .as_deref()
            .map(|path| Session::open(path, wait))
            .transpose()
    }
}

impl Session {
    fn open(path: &Path, wait: Duration) -> Result<Session> {
        // Every name of one file (a symlink, a relative path) must share one lock and be
        // replaced in place, or two copies of the session would hand out the same numbers.
        let path = &resolve(path)?;
        let lock_path = with_suffix(path, ".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("session: cannot open {}", lock_path.display()))?;
        let deadline = Instant::now() + wait;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(fs::TryLockError::WouldBlock) => bail!(
                    "session {} is in use by another shardkv command (waited {wait:?} for \
                     {}); run one command at a time per session file; not applied",
                    path.display(),
                    lock_path.display()
                ),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e)
                        .with_context(|| format!("session: cannot lock {}", lock_path.display()));
                }
            }
        }
        let state = match fs::read_to_string(path) {
            Ok(text) => Some(parse(&text).with_context(|| {
                format!(
                    "session file {} is damaged; delete it to start a new session (a write \
                     it left pending could then apply twice); not applied",
                    path.display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| format!("session: cannot read {}", path.display()));
            }
        };
        Ok(Session {
            path: path.to_path_buf(),
            state,
            _lock: lock,
        })
    }

    /// Sets `client` up to send the write `command` (see [`command`]) in this session and
    /// records it as pending, durably, before anything is sent.
    pub fn begin(&mut self, client: &mut Client, command: Value) -> Result<()> {
        let state = self.state.clone().unwrap_or(State {
            client: client.id(),
            next_seq: Seq(1),
            pending: None,
        });
        let (seq, retrying) = match &state.pending {
            Some((seq, pending)) if *pending == command => (*seq, true),
            _ => (state.next_seq, false),
        };
        let next = State {
            client: state.client,
            next_seq: seq.next().max(state.next_seq),
            pending: Some((seq, command)),
        };
        self.save(next)?;
        client.resume_session(state.client, seq, retrying);
        Ok(())
    }

    /// Records how the write ended: an unknown outcome stays pending for a retry.
    pub fn end(&mut self, result: Result<(), &Error>) -> Result<()> {
        let Some(state) = self.state.clone() else {
            return Ok(());
        };
        // A write that may have applied stays pending, to be retried under its number;
        // unless the group no longer knows the session (`SessionExpired`) or the number
        // is behind it (`Stale`): a retry could never learn more, so it is given up.
        let lost = matches!(result, Err(Error::SessionExpired | Error::Stale));
        if result.is_err_and(Error::may_have_applied) && !lost {
            return Ok(());
        }
        self.save(State {
            pending: None,
            ..state
        })
    }

    fn save(&mut self, state: State) -> Result<()> {
        debug_assert!(state.next_seq > state.pending.as_ref().map_or(Seq(0), |(s, _)| *s));
        let tmp = with_suffix(&self.path, ".tmp");
        let text = render(&state);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            let dir = match self.path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir)?.sync_all()
        };
        write().with_context(|| format!("session: cannot write {}", self.path.display()))?;
        self.state = Some(state);
        Ok(())
    }
}

/// `path` with `suffix` added to its file name.
/// The session file's real path: symlinks followed (of the file, or of its directory when
/// the file does not exist yet), so every name of it locks and rewrites the same file.
fn resolve(path: &Path) -> Result<std::path::PathBuf> {
    match fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let name = path
                .file_name()
                .with_context(|| format!("session: {} names no file", path.display()))?;
            let dir = fs::canonicalize(dir)
                .with_context(|| format!("session: no directory {}", dir.display()))?;
            Ok(dir.join(name))
        }
        Err(e) => Err(e).with_context(|| format!("session: cannot resolve {}", path.display())),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn render(s: &State) -> String {
    let pending = s
        .pending
        .as_ref()
        .map(|(seq, command)| json!({ "seq": seq.0, "command": command }));
    let doc = json!({
        "client_id": s.client.0,
        "next_seq": s.next_seq.0,
        "pending": pending,
    });
    format!("{doc}\n")
}

fn parse(text: &str) -> Result<State> {
    let doc: Value = serde_json::from_str(text)?;
    let u64_at = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_u64)
            .with_context(|| format!("no number {key:?}"))
    };
    let pending = match doc.get("pending") {
        None | Some(Value::Null) => None,
        Some(p) => {
            let command = p
                .get("command")
                .filter(|c| c.is_object())
                .context("no \"command\" object in \"pending\"")?;
            Some((Seq(u64_at(p, "seq")?), command.clone()))
        }
    };
    let state = State {
        client: ClientId(u64_at(&doc, "client_id")?),
        next_seq: Seq(u64_at(&doc, "next_seq")?),
        pending,
    };
    let pending_seq = state.pending.as_ref().map(|(seq, _)| *seq);
    if state.next_seq.0 == 0 || pending_seq.is_some_and(|seq| seq >= state.next_seq) {
        bail!("its sequence numbers are inconsistent");
    }
    Ok(state)
}

/// A write command as the session file records it: `{"kind": KIND, NAME: VALUE, ...}`, each
/// value as [`bytes_json`] shows bytes (`null` for a part left out, as `cas --absent`'s
/// old value). A retry must be the same command: equal kind, names and values.
pub fn command(kind: &str, parts: &[(&str, Option<&[u8]>)]) -> Value {
    let mut doc = serde_json::Map::new();
    doc.insert("kind".into(), Value::from(kind));
    for (name, part) in parts {
        doc.insert((*name).into(), part.map_or(Value::Null, bytes_json));
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_a_session_file_is_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("s.session");
        let link = dir.path().join("link.session");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        // Not created yet: the directory is resolved, the name kept.
        let canonical_dir = fs::canonicalize(dir.path()).expect("dir");
        assert_eq!(
            resolve(&real).expect("resolves"),
            canonical_dir.join("s.session")
        );
        fs::write(&real, "x").expect("write");
        assert_eq!(
            resolve(&link).expect("resolves"),
            canonical_dir.join("s.session")
        );
        let session = Session::open(&link, Duration::ZERO);
        assert!(
            session.is_err(),
            "the damaged real file is read through the link"
        );
        assert!(
            canonical_dir.join("s.session.lock").exists(),
            "the lock is the real file's"
        );
    }

    #[test]
    fn a_state_round_trips_through_its_text() {
        let pending = command("append", &[("key", Some(b"k")), ("value", Some(b"\xff"))]);
        for pending in [None, Some((Seq(4), pending))] {
            let s = State {
                client: ClientId(42),
                next_seq: Seq(5),
                pending,
            };
            assert_eq!(parse(&render(&s)).expect("parses"), s);
        }
    }

    #[test]
    fn inconsistent_or_damaged_files_are_refused() {
        assert!(parse("").is_err());
        assert!(parse(r#"{"client_id":1,"next_seq":0,"pending":null}"#).is_err());
        assert!(parse(r#"{"client_id":1,"next_seq":3,"pending":{"seq":3,"command":{}}}"#).is_err());
        assert!(
            parse(r#"{"client_id":1,"next_seq":3,"pending":{"seq":2,"command":"x"}}"#).is_err()
        );
    }

    #[test]
    fn commands_tell_writes_apart() {
        let put = |k: &[u8], v: &[u8]| command("put", &[("key", Some(k)), ("value", Some(v))]);
        assert_eq!(put(b"ab", b"c"), put(b"ab", b"c"));
        assert_ne!(put(b"ab", b"c"), put(b"a", b"bc"));
        assert_ne!(
            put(b"k", b"v"),
            command("append", &[("key", Some(b"k")), ("value", Some(b"v"))])
        );
        assert_ne!(
            command(
                "cas",
                &[("key", Some(b"k")), ("old", None), ("new", Some(b"v"))]
            ),
            command(
                "cas",
                &[("key", Some(b"k")), ("old", Some(b"")), ("new", Some(b"v"))]
            )
        );
    }
}
