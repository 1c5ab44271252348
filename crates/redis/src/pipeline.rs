//! Pipelining: the requests a connection has already sent, answered in order, with each
//! run of data commands that can share one operation run as one.
//!
//! A *run* is a maximal sequence of consecutive data commands (at most
//! [`PIPELINE_OPS_MAX`]) that are all writes or all reads, all for one hash slot, that this
//! process masters, within [`MANY_BYTES_MAX`] in all ([`DataOp::bytes`]). A run of several
//! is one KV `Pipeline` operation ([`Backend::run_pipeline`]): one proposal (writes,
//! applied at one log index in order, nothing between them) or one ReadIndex read (reads,
//! at one index); a run of one is a plain operation, so a client that does not pipeline is
//! served as before. Anything else — a connection or cluster command, a command refused
//! with `CROSSSLOT` or `MOVED`, a read after writes, another slot — ends a run and is
//! answered in its place. Each command of a run takes effect in order and answers what it
//! alone would have answered at that point, so the connection's commands keep Redis's
//! meaning; each is linearizable and a write applies exactly once (the run is one write
//! of the connection's client session, retried with its sequence number).
//!
//! An `APPEND` of a write run that would grow its value past the limit is answered on its
//! own (the KV pipeline answers it `TooLarge` and it changes nothing), with the reply a
//! lone one gets; the run's other commands apply. If the pipeline fails as a whole, every
//! command of the run gets that failure's reply, as each would alone (`TRYAGAIN` only
//! where surely nothing applied). A failure that is about the pipeline's own size or
//! validity (`TooLarge`, `Invalid`: say one command's key or value is too large, or the
//! values read add up past the answer bound) says nothing about the others: then the
//! run's first command runs alone and the rest are taken again, so each gets the answer it
//! would have got unpipelined.

use crate::backend::{Backend, DataOp};
use crate::command::{Command, parse};
use crate::reply::Reply;
use crate::session::{After, Session, Shape, admit};
use bytes::Bytes;
use shardkv_kv::{MANY_BYTES_MAX, PIPELINE_OPS_MAX};
use shardkv_rsm::Error;
use shardkv_types::key_slot;
use std::collections::VecDeque;

/// A run of data commands that go as one operation.
struct Run {
    slot: u16,
    write: bool,
    /// Invariant: `ops`, `shapes` and `args` have one entry per command, in request
    /// order; `bytes` is the sum of `ops`' [`DataOp::bytes`].
    ops: Vec<DataOp>,
    shapes: Vec<Shape>,
    args: Vec<Vec<Bytes>>,
    bytes: usize,
}

impl Run {
    fn start(cmd: Command, slot: u16, args: Vec<Bytes>) -> Run {
        let mut run = Run {
            slot,
            write: cmd.is_write(),
            ops: Vec::new(),
            shapes: Vec::new(),
            args: Vec::new(),
            bytes: 0,
        };
        run.push(cmd, args);
        run
    }

    fn push(&mut self, cmd: Command, args: Vec<Bytes>) {
        let (op, shape) = DataOp::of(cmd);
        self.bytes += op.bytes();
        self.ops.push(op);
        self.shapes.push(shape);
        self.args.push(args);
        debug_assert!(self.ops.len() <= PIPELINE_OPS_MAX);
    }

    /// Whether `cmd` may join the run: a data command of the same kind and slot (so
    /// mastered here as well) that keeps it within its bounds.
    fn admits(&self, cmd: &Command) -> bool {
        let keys = cmd.keys();
        !keys.is_empty()
            && self.ops.len() < PIPELINE_OPS_MAX
            && cmd.is_write() == self.write
            && keys.iter().all(|k| key_slot(k) == self.slot)
            && self.bytes + DataOp::of(cmd.clone()).0.bytes() <= MANY_BYTES_MAX
    }

    /// Runs the run, pushing one reply per command it answered; commands it did not answer
    /// (after a refusal of the whole pipeline for its size or validity) go back to the
    /// front of `pending`, in order.
    async fn execute<B: Backend>(
        self,
        backend: &mut B,
        pending: &mut VecDeque<Vec<Bytes>>,
        replies: &mut Vec<Reply>,
    ) {
        let Run {
            write,
            mut ops,
            shapes,
            mut args,
            ..
        } = self;
        if ops.len() == 1 {
            let op = ops.pop().expect("one op");
            replies.push(shapes[0].answer(backend.run(op).await, write));
            return;
        }
        let first = ops[0].clone();
        match backend.run_pipeline(ops).await {
            Ok(outs) => {
                assert_eq!(outs.len(), shapes.len(), "one output per command");
                replies.extend(
                    shapes
                        .into_iter()
                        .zip(outs)
                        .map(|(shape, out)| shape.answer(Ok(out), write)),
                );
            }
            Err(Error::TooLarge { .. } | Error::Invalid { .. }) => {
                replies.push(shapes[0].answer(backend.run(first).await, write));
                for a in args.drain(1..).rev() {
                    pending.push_front(a);
                }
            }
            Err(e) => replies.extend(
                shapes
                    .iter()
                    .map(|shape| shape.answer(Err(e.clone()), write)),
            ),
        }
    }
}

impl Session {
    /// Answers the next step of `pending` (requests already complete, in order): one
    /// request, or a run of data commands as one operation (module docs). Pushes the
    /// replies, in request order, to `replies`; `After::Close` after `QUIT`.
    pub async fn step<B: Backend>(
        &mut self,
        pending: &mut VecDeque<Vec<Bytes>>,
        backend: &mut B,
        replies: &mut Vec<Reply>,
    ) -> After {
        let Some(args) = pending.pop_front() else {
            return After::Continue;
        };
        if let Err(refusal) = self.gate(&args) {
            replies.push(refusal);
            return After::Continue;
        }
        let cmd = match parse(&args) {
            Ok(cmd) => cmd,
            Err(refusal) => {
                replies.push(refusal);
                return After::Continue;
            }
        };
        // Before the password only AUTH, HELLO and QUIT pass the gate: none has keys, so
        // none starts a run.
        let slot = match cmd.keys().is_empty() {
            true => None,
            false => admit(&cmd, &backend.view()).ok(),
        };
        let Some(slot) = slot else {
            let (reply, after) = self.answer(cmd, backend).await;
            replies.push(reply);
            return after;
        };
        let mut run = Run::start(cmd, slot, args);
        while let Some(next) = pending.front() {
            match parse(next) {
                Ok(cmd) if run.admits(&cmd) => {
                    let args = pending.pop_front().expect("a request");
                    run.push(cmd, args);
                }
                _ => break,
            }
        }
        run.execute(backend, pending, replies).await;
        After::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tests::{Memory, block_on};
    use shardkv_kv::VALUE_BYTES_MAX;

    fn words(line: &str) -> Vec<Bytes> {
        crate::request::split_words(line.as_bytes())
            .unwrap()
            .into_iter()
            .map(Bytes::from)
            .collect()
    }

    /// Answers `requests` as the connection does (all already complete): step by step.
    fn answer(b: &mut Memory, requests: Vec<Vec<Bytes>>) -> Vec<Reply> {
        let mut s = Session::new(1);
        let mut pending: VecDeque<_> = requests.into();
        let mut replies = Vec::new();
        block_on(async {
            while !pending.is_empty() {
                assert_eq!(s.step(&mut pending, b, &mut replies).await, After::Continue);
            }
        });
        replies
    }

    fn lines(ls: &[&str]) -> Vec<Vec<Bytes>> {
        ls.iter().map(|l| words(l)).collect()
    }

    #[test]
    fn a_pipeline_before_the_password_is_refused_command_by_command_and_changes_nothing() {
        // Goal: pipelined writes sent before AUTH never run, and those after it do, in
        // order. Method: a protected session; the memory backend counts operations.
        let password = crate::auth::Password::new("pw").expect("not empty");
        let access = crate::auth::Access::new(Some(std::sync::Arc::new(password)));
        let mut s = Session::with_access(1, access);
        let mut b = Memory::mastering_all();
        let mut pending: VecDeque<_> = lines(&[
            "set {t}a 1",
            "incr {t}n",
            "auth pw",
            "set {t}a 2",
            "get {t}a",
        ])
        .into();
        let mut replies = Vec::new();
        block_on(async {
            while !pending.is_empty() {
                s.step(&mut pending, &mut b, &mut replies).await;
            }
        });
        let noauth = Reply::Error("NOAUTH Authentication required.".into());
        assert_eq!(
            replies,
            vec![
                noauth.clone(),
                noauth,
                Reply::OK,
                Reply::OK,
                Reply::bulk("2")
            ]
        );
        assert_eq!(b.calls, vec![1, 1], "only the two commands after AUTH ran");
    }

    #[test]
    fn runs_of_one_kind_and_slot_go_as_one_operation_and_replies_keep_request_order() {
        // Goal: consecutive writes of one slot share one operation, then consecutive reads;
        // PING, CROSSSLOT and another slot end a run and are answered in their place; a
        // run of one is a plain operation. Method: the memory backend counts operations.
        let mut b = Memory::mastering_all();
        let got = answer(
            &mut b,
            lines(&[
                "set {t}a 1",
                "append {t}a 2",
                "incr {t}n",
                "ping",
                "get {t}a",
                "get {t}n",
                "strlen {t}a",
                "set {t}a x",
                "get {u}b",
                "mget {t}a {u}b",
                "get {t}a",
                "incr {t}a",
                "incr {t}n",
            ]),
        );
        let Reply::Error(crossslot) = &got[9] else {
            panic!("{got:?}")
        };
        assert!(crossslot.starts_with("CROSSSLOT"), "{crossslot}");
        assert_eq!(
            got,
            vec![
                Reply::OK,
                Reply::Int(2),
                Reply::Int(1),
                Reply::Status("PONG"),
                Reply::bulk("12"),
                Reply::bulk("1"),
                Reply::Int(2),
                Reply::OK,
                Reply::Nil,
                got[9].clone(),
                Reply::bulk("x"),
                crate::command::not_an_integer(),
                Reply::Int(2),
            ]
        );
        assert_eq!(b.calls, [3, 3, 1, 1, 1, 2], "operations, by commands each");
    }

    #[test]
    fn a_slot_mastered_elsewhere_is_moved_in_its_place_and_ends_the_run() {
        // Goal: MOVED keeps its place among the replies and the commands either side of it
        // still run (not joined across it). Method: shard 0 mastered here, shard 3 not.
        let mut b = Memory::mastering_shards([0, 0, 0, 1]);
        let here = (0..)
            .map(|i| format!("h{i}"))
            .find(|k| key_slot(k.as_bytes()) < 4096);
        let away = (0..)
            .map(|i| format!("w{i}"))
            .find(|k| key_slot(k.as_bytes()) >= 12288);
        let (here, away) = (here.unwrap(), away.unwrap());
        let got = answer(
            &mut b,
            lines(&[
                &format!("set {here} 1"),
                &format!("incr {here}"),
                &format!("set {away} 1"),
                &format!("incr {here}"),
                &format!("get {here}"),
            ]),
        );
        let moved = format!("MOVED {} 127.0.0.1:7102", key_slot(away.as_bytes()));
        assert_eq!(
            got,
            vec![
                Reply::OK,
                Reply::Int(2),
                Reply::Error(moved),
                Reply::Int(3),
                Reply::bulk("3"),
            ]
        );
        assert_eq!(b.calls, [2, 1, 1]);
    }

    #[test]
    fn a_failed_pipeline_answers_each_command_as_it_would_have_failed_alone() {
        // Goal: a pipeline that may have applied answers every write ERR (never TRYAGAIN,
        // which a cluster client retries); one that surely did not (or a read) TRYAGAIN.
        let mut b = Memory::mastering_all();
        b.pipelines_fail = Some(Error::Timeout {
            detail: "lost".into(),
        });
        let got = answer(&mut b, lines(&["set {t}a 1", "incr {t}n", "ping"]));
        for reply in &got[..2] {
            assert!(
                matches!(reply, Reply::Error(e) if e.starts_with("ERR the write's outcome is unknown")),
                "{reply:?}"
            );
        }
        assert_eq!(got[2], Reply::Status("PONG"));
        let got = answer(&mut b, lines(&["get {t}a", "get {t}n"]));
        assert!(
            got.iter()
                .all(|r| matches!(r, Reply::Error(e) if e.starts_with("TRYAGAIN"))),
            "{got:?}"
        );
        b.pipelines_fail = Some(Error::Unavailable {
            reason: "down".into(),
        });
        let got = answer(&mut b, lines(&["set {t}a 1", "set {t}a 2"]));
        assert!(
            got.iter()
                .all(|r| matches!(r, Reply::Error(e) if e.starts_with("TRYAGAIN"))),
            "{got:?}"
        );
        assert_eq!(b.calls, [2, 2, 2]);
        b.pipelines_fail = None;
        assert_eq!(
            answer(&mut b, lines(&["get {t}a"])),
            vec![Reply::Nil],
            "nothing applied"
        );
    }

    #[test]
    fn a_pipeline_refused_for_its_size_answers_each_command_as_alone() {
        // Goal: a refusal of the whole pipeline for its size (reads answering past the
        // answer bound) is not every command's answer: the first runs alone, the rest are
        // taken again; an append past the value limit in a run is answered in the run,
        // exactly as a lone one, and the others apply. Method: values near the limits, the
        // memory backend counting operations.
        let mut b = Memory::mastering_all();
        let big = |c: u8, n: usize| Bytes::from(vec![c; n]);
        let set = |k: &str, v: Bytes| vec![Bytes::from("set"), Bytes::from(k.to_string()), v];
        let got = answer(
            &mut b,
            vec![
                set("{t}a", big(b'a', VALUE_BYTES_MAX)),
                words("ping"),
                set("{t}b", big(b'b', VALUE_BYTES_MAX)),
                words("ping"),
                set("{t}c", big(b'c', VALUE_BYTES_MAX)),
                words("get {t}a"),
                words("get {t}b"),
                words("get {t}c"),
            ],
        );
        assert_eq!(got.len(), 8);
        assert_eq!(got[5], Reply::Bulk(big(b'a', VALUE_BYTES_MAX)));
        assert_eq!(got[7], Reply::Bulk(big(b'c', VALUE_BYTES_MAX)));
        assert_eq!(
            b.calls,
            [1, 1, 1, 3, 1, 2],
            "three reads past the answer bound: the first alone, then two"
        );
        b.calls.clear();
        let got = answer(
            &mut b,
            lines(&["append {t}a x", "set {t}x 1", "get {t}x", "strlen {t}a"]),
        );
        assert!(
            matches!(&got[0], Reply::Error(e) if e.starts_with("ERR too large")),
            "{got:?}"
        );
        assert_eq!(
            got[1..],
            [
                Reply::OK,
                Reply::bulk("1"),
                Reply::Int(VALUE_BYTES_MAX as i64)
            ]
        );
        assert_eq!(b.calls, [2, 2], "the append answered within its run");
        let alone = answer(&mut b, lines(&["append {t}a x"]));
        assert_eq!(alone[..], got[..1], "as a lone append is answered");
        assert_eq!(b.calls, [2, 2, 1]);
    }

    #[test]
    fn a_run_holds_at_most_pipeline_ops_max_commands() {
        let mut b = Memory::mastering_all();
        let requests = (0..PIPELINE_OPS_MAX + 1)
            .map(|_| words("incr {t}n"))
            .collect();
        let got = answer(&mut b, requests);
        assert_eq!(got.last(), Some(&Reply::Int(PIPELINE_OPS_MAX as i64 + 1)));
        assert_eq!(b.calls, [PIPELINE_OPS_MAX, 1]);
    }

    /// One request of the differential test: a data command on a few keys of two slots
    /// (`{t}`, `{u}`), or PING; `big` appends a value over half the value limit, so two of
    /// them pass it.
    fn request(kind: u8, key: u8, other: u8, n: u8) -> Vec<Bytes> {
        let keys = ["{t}a", "{t}b", "{t}n", "{u}c"];
        let (k, o) = (keys[usize::from(key % 4)], keys[usize::from(other % 4)]);
        let line = match kind % 16 {
            0 => format!("set {k} {n}"),
            1 => format!("set {k} v{n} nx get"),
            2 => format!("set {k} {n} xx"),
            3 => format!("getdel {k}"),
            4 => format!("append {k} {n}"),
            5 => format!("incr {k}"),
            6 => format!("incrby {k} {}", i64::MAX - i64::from(n)),
            7 => format!("del {k} {o}"),
            8 => format!("exists {k} {o} {k}"),
            9 => format!("mget {k} {o}"),
            10 => format!("mset {k} {n} {o} x"),
            11 | 12 => format!("get {k}"),
            13 => format!("strlen {k}"),
            14 => "ping".to_string(),
            _ => {
                let big = vec![b'B'; VALUE_BYTES_MAX / 2 + 1];
                return vec![
                    Bytes::from("append"),
                    Bytes::from(k.to_string()),
                    big.into(),
                ];
            }
        };
        words(&line)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Goal: the grouping end to end: a connection's pipelined requests, run as runs of
        /// KV pipelines, get exactly the replies (and leave exactly the data) that the same
        /// requests sent one at a time get, whatever the mix (runs ended by PING, another
        /// slot, CROSSSLOT, a read after writes; appends answered too large within a run;
        /// runs refused for their size and split). Method: two memory backends on the
        /// real KvStore, one fed the whole sequence, one fed each request alone; proptest
        /// prints the failing sequence (and keeps its seed in proptest-regressions).
        #[test]
        fn pipelined_requests_answer_as_requests_sent_one_at_a_time(
            reqs in proptest::collection::vec((0u8..16, 0u8..4, 0u8..4, 0u8..4), 1..40)
        ) {
            let requests: Vec<Vec<Bytes>> =
                reqs.iter().map(|&(kind, k, o, n)| request(kind, k, o, n)).collect();
            let mut grouped = Memory::mastering_all();
            let got = answer(&mut grouped, requests.clone());
            let mut alone = Memory::mastering_all();
            let want: Vec<Reply> = requests
                .iter()
                .flat_map(|r| answer(&mut alone, vec![r.clone()]))
                .collect();
            proptest::prop_assert_eq!(&got, &want);
            let state = |b: &mut Memory| answer(b, lines(&["mget {t}a {t}b {t}n", "mget {u}c"]));
            proptest::prop_assert_eq!(state(&mut grouped), state(&mut alone));
        }
    }
}
