//! The node thread: turns wall-clock time into ticks and the inbox into node calls, and runs
//! the Ready loop after each batch. It is an OS thread, not a task, because persisting blocks
//! on fdatasync; the node itself stays synchronous like the core.

use crate::handler::Inbound;
use crate::listen::StepDownSignal;
use crate::member::Member;
use crate::node::{Fatal, Node};
use shardkv_types::Term;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// One logical tick of the Raft core (its timeouts are counted in these).
pub const TICK: Duration = Duration::from_millis(10);

/// The most ticks replayed at once after the thread fell behind (a long fsync, a SIGSTOP);
/// the rest are skipped so a paused member does not fire a burst of timers.
pub const TICKS_CATCH_UP_MAX: u64 = 5;

/// The most inbox items taken before the Ready loop runs: the group-commit batch bound.
pub const INBOX_BATCH_MAX: usize = 4096;

/// How long a stopping leader waits for its hand-off to another member.
pub const HAND_OFF_MAX: Duration = Duration::from_millis(500);

/// How often free disk space is checked against the reserve.
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often a shard group publishes the shards it is pulling (the migration counters).
const SHARDS_PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// The `raft{term=N}` span every log line of the node thread is inside (under the `node`
/// and `group` spans the thread entered): a new span when the term changes, so a line
/// carries the term it was logged in, in text and JSON logs alike.
struct TermSpan {
    term: Term,
    entered: Option<tracing::span::EnteredSpan>,
}

impl TermSpan {
    fn new(term: Term) -> TermSpan {
        TermSpan {
            term,
            entered: Some(tracing::info_span!("raft", term = term.0).entered()),
        }
    }

    fn follow(&mut self, term: Term) {
        if term != self.term {
            // Exit the old span first: the new one's parent is the group's span.
            drop(self.entered.take());
            *self = TermSpan::new(term);
        }
    }
}

/// What the driver needs besides the node.
pub struct DriverOptions {
    pub data_dir: PathBuf,
    pub disk_reserve_bytes: u64,
    /// Asks the node to give up leadership when the process cannot accept connections.
    pub step_down: Arc<StepDownSignal>,
}

/// Runs the node until `Stop` arrives or the inbox closes; `Err` on a fatal storage error.
pub fn run<A: Member>(
    mut node: Node<A>,
    inbox: Receiver<Inbound<A>>,
    opts: DriverOptions,
) -> Result<(), Fatal> {
    let mut term_span = TermSpan::new(node.term());
    tracing::info!(term = node.term().0, "node thread running");
    let start = Instant::now();
    let mut ticks_done: u64 = 0;
    let mut next_housekeeping = start;
    let mut next_shards_publish = start;
    let mut step_downs_seen = opts.step_down.requests();
    loop {
        let next_tick = start + Duration::from_nanos(TICK.as_nanos() as u64 * (ticks_done + 1));
        let wait = next_tick.saturating_duration_since(Instant::now());
        match inbox.recv_timeout(wait) {
            Ok(Inbound::Stop) => return stop(node, &inbox, start, ticks_done),
            Ok(item) => {
                node.handle(item);
                if take_batch(&mut node, &inbox) {
                    node.drive()?;
                    return stop(node, &inbox, start, ticks_done);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return stop(node, &inbox, start, ticks_done),
        }
        ticks_done = run_due_ticks(&mut node, start, ticks_done);
        let step_downs = opts.step_down.requests();
        if step_downs != step_downs_seen {
            step_downs_seen = step_downs;
            node.hand_off("this process cannot accept client connections");
        }
        // Ticks and messages may have moved the term: the drive's lines carry the new one.
        term_span.follow(node.term());
        node.drive()?;
        node.publish_metrics();
        if Instant::now() >= next_shards_publish {
            next_shards_publish = Instant::now() + SHARDS_PUBLISH_INTERVAL;
            node.publish_shards();
        }
        if Instant::now() >= next_housekeeping {
            next_housekeeping = Instant::now() + DISK_CHECK_INTERVAL;
            node.forget_abandoned();
            node.set_disk_low(disk_low(&opts));
        }
    }
}

/// Graceful stop: a leader hands off (bounded by [`HAND_OFF_MAX`]) while still serving the
/// inbox, then the thread returns.
fn stop<A: Member>(
    mut node: Node<A>,
    inbox: &Receiver<Inbound<A>>,
    start: Instant,
    mut ticks_done: u64,
) -> Result<(), Fatal> {
    if node.hand_off("shutting down") {
        let deadline = Instant::now() + HAND_OFF_MAX;
        while node.is_leader() && Instant::now() < deadline {
            if let Ok(item) = inbox.recv_timeout(TICK) {
                node.handle(item);
                take_batch(&mut node, inbox);
            }
            ticks_done = run_due_ticks(&mut node, start, ticks_done);
            node.drive()?;
        }
    }
    tracing::info!(
        term = node.term().0,
        leader = node.is_leader(),
        dropped_messages = node.dropped_messages(),
        "node thread stopped"
    );
    Ok(())
}

/// Takes what else is waiting, up to the batch bound. True when `Stop` was among it.
fn take_batch<A: Member>(node: &mut Node<A>, inbox: &Receiver<Inbound<A>>) -> bool {
    for _ in 0..INBOX_BATCH_MAX {
        match inbox.try_recv() {
            Ok(Inbound::Stop) => return true,
            Ok(item) => node.handle(item),
            Err(_) => break,
        }
    }
    false
}

/// Ticks the node for the wall-clock time elapsed; returns the new tick count.
fn run_due_ticks<A: Member>(node: &mut Node<A>, start: Instant, ticks_done: u64) -> u64 {
    let due = (start.elapsed().as_nanos() / TICK.as_nanos()) as u64;
    let behind = due.saturating_sub(ticks_done);
    if behind > TICKS_CATCH_UP_MAX {
        tracing::debug!(
            skipped = behind - TICKS_CATCH_UP_MAX,
            "node thread fell behind; skipping ticks"
        );
    }
    for _ in 0..behind.min(TICKS_CATCH_UP_MAX) {
        node.tick();
    }
    due.max(ticks_done)
}

/// True when the data directory's filesystem has less free space than the reserve.
fn disk_low(opts: &DriverOptions) -> bool {
    if opts.disk_reserve_bytes == 0 {
        return false;
    }
    match rustix::fs::statvfs(&opts.data_dir) {
        Ok(st) => st.f_bavail.saturating_mul(st.f_frsize) < opts.disk_reserve_bytes,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check free disk space");
            false
        }
    }
}
