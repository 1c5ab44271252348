//! What a one-member KV group keeps of its clients: the snapshot stays small however large
//! the values its clients' failed CASes found (issue 10's repro: 100 failed CASes on a
//! 1 MiB value grew every snapshot by 105 MB), and an append past the value limit is
//! refused with a clear error (3 × 1 MiB appends made the key unreadable), and what a
//! retry of each Redis-era write is answered.

use shardkv_kv::{
    KvCommand, KvOutput, KvReplica, KvStore, PIPELINE_OPS_MAX, PIPELINE_RECORD_VALUE_BYTES_MAX,
    RECORDED_VALUE_BYTES_MAX, SetWhen, VALUE_BYTES_MAX,
};
use shardkv_raft::{Config, Restored, Snapshot};
use shardkv_rsm::{Error, ReplicaOptions, Request};
use shardkv_types::{ClientId, NodeId, Seq};

/// A single-member group that snapshots after every batch (so the last snapshot holds
/// everything applied so far).
struct One {
    r: KvReplica,
    next_req: u64,
    last_snapshot: Option<Snapshot>,
}

impl One {
    fn new() -> One {
        let id = NodeId(1);
        let opts = ReplicaOptions {
            raft_state_bytes_max: Some(1),
            ..ReplicaOptions::default()
        };
        let cfg = Config::new(id, vec![id]);
        let r =
            KvReplica::new(cfg, Restored::default(), 1, opts, KvStore::default()).expect("starts");
        let mut one = One {
            r,
            next_req: 1,
            last_snapshot: None,
        };
        for _ in 0..1000 {
            if one.r.raft().is_leader() {
                one.pump();
                return one;
            }
            one.r.tick();
            one.pump();
        }
        panic!("a single member did not elect itself within 1000 ticks");
    }

    fn pump(&mut self) {
        while let Some(rd) = self.r.ready() {
            if let Some(s) = self.r.advance(rd, 2).expect("advances") {
                self.last_snapshot = Some(s);
            }
        }
    }

    fn write(
        &mut self,
        client: u64,
        seq: u64,
        retry: bool,
        cmd: KvCommand,
    ) -> Result<KvOutput, Error> {
        let req = self.next_req;
        self.next_req += 1;
        let w = Request::Write {
            client: ClientId(client),
            seq: Seq(seq),
            retry,
            cmd,
        };
        self.r.submit(req, w);
        self.pump();
        let replies = self.r.take_replies();
        assert_eq!(replies.len(), 1, "one answer per request: {replies:?}");
        assert_eq!(replies[0].0, req);
        replies[0].1.clone()
    }
}

fn key() -> Vec<u8> {
    b"big".to_vec()
}

#[test]
fn failed_cases_on_a_large_value_keep_the_snapshot_small() {
    let mut g = One::new();
    let big = vec![b'v'; VALUE_BYTES_MAX];
    let put = KvCommand::Put {
        key: key(),
        value: big.clone(),
    };
    assert_eq!(g.write(1, 1, false, put), Ok(KvOutput::Done));
    let cas = KvCommand::Cas {
        key: key(),
        expected: Some(b"x".to_vec()),
        new: b"y".to_vec(),
    };
    for client in 100..200 {
        let out = g.write(client, 1, false, cas.clone());
        assert_eq!(
            out,
            Ok(KvOutput::Cas {
                swapped: false,
                current: Some(big.clone())
            }),
            "the first answer carries the value found"
        );
    }
    let bytes = g.last_snapshot.as_ref().expect("snapshotted").data.len();
    assert!(
        bytes < VALUE_BYTES_MAX + 64 * 1024,
        "100 failed CASes on a 1 MiB value: snapshot of {bytes} bytes"
    );
    assert_eq!(g.r.sessions().len(), 101);
    // A retry of a failed CAS is told it failed, without the value (not kept).
    assert_eq!(
        g.write(150, 1, true, cas),
        Err(Error::CasFailed {
            bytes: VALUE_BYTES_MAX as u64
        })
    );
    // A retry of a CAS that swapped gets the same answer: it found `expected`.
    let swap = KvCommand::Cas {
        key: key(),
        expected: Some(big.clone()),
        new: b"small".to_vec(),
    };
    let first = g.write(7, 1, false, swap.clone());
    assert_eq!(
        first,
        Ok(KvOutput::Cas {
            swapped: true,
            current: Some(big)
        })
    );
    assert_eq!(g.write(7, 1, true, swap), first);
    let bytes = g.last_snapshot.as_ref().expect("snapshotted").data.len();
    assert!(
        bytes < 64 * 1024,
        "nothing of the big value is kept: {bytes} bytes"
    );
}

#[test]
fn appends_past_the_value_limit_are_refused_and_the_key_stays_readable() {
    let mut g = One::new();
    let mib = vec![b'a'; VALUE_BYTES_MAX];
    let append = KvCommand::Append {
        key: key(),
        value: mib.clone(),
    };
    assert_eq!(g.write(1, 1, false, append.clone()), Ok(KvOutput::Done));
    for seq in 2..=3 {
        let e = g.write(1, seq, false, append.clone()).unwrap_err();
        assert_eq!(
            e,
            Error::TooLarge {
                bytes: 2 * VALUE_BYTES_MAX as u64,
                max: VALUE_BYTES_MAX as u64
            }
        );
        assert!(
            e.to_string()
                .contains(&format!("{} bytes", 2 * VALUE_BYTES_MAX)),
            "the error names the size the value would reach: {e}"
        );
    }
    assert_eq!(g.r.state_machine().get(&key()), Some(&mib));
}

#[test]
fn a_delete_says_whether_the_key_existed_and_its_retry_says_the_same() {
    // Goal: `del` can tell the user whether it deleted, and a retried Delete (same session
    // and seq) is answered from the session record, not re-executed: the key is gone by
    // then, so re-executing would answer "did not exist" to a delete that removed it.
    let mut g = One::new();
    let put = KvCommand::Put {
        key: key(),
        value: b"v".to_vec(),
    };
    assert_eq!(g.write(1, 1, false, put), Ok(KvOutput::Done));
    let del = KvCommand::Delete { key: key() };
    let first = g.write(2, 1, false, del.clone());
    assert_eq!(first, Ok(KvOutput::Deleted { existed: true }));
    assert_eq!(g.write(2, 1, true, del.clone()), first, "the retry replays");
    assert_eq!(
        g.write(3, 1, false, del.clone()),
        Ok(KvOutput::Deleted { existed: false }),
        "a new delete of the absent key"
    );
    assert_eq!(
        g.write(2, 1, true, del),
        first,
        "the record outlives the other session's delete"
    );
}

#[test]
fn a_retry_of_a_set_get_or_getdel_replays_a_small_value_and_expires_a_large_one() {
    // Goal: a Set with `get` or a GetDel keeps the value it found for retries only up to
    // RECORDED_VALUE_BYTES_MAX: a retry (same session and seq) of one that found a small
    // value gets the same answer; of one that found a larger one, SessionExpired (applied
    // once, answer gone); neither retry applies again. Method: a one-member group.
    let mut g = One::new();
    let small = vec![b's'; RECORDED_VALUE_BYTES_MAX];
    let large = vec![b'l'; RECORDED_VALUE_BYTES_MAX + 1];
    for (client, found, replayed) in [(10, &small, true), (20, &large, false)] {
        let put = KvCommand::Put {
            key: key(),
            value: found.clone(),
        };
        assert_eq!(g.write(client, 1, false, put), Ok(KvOutput::Done));
        let set = KvCommand::Set {
            key: key(),
            value: b"new".to_vec(),
            when: SetWhen::Present,
            get: true,
        };
        let first = g.write(client, 2, false, set.clone());
        assert_eq!(
            first,
            Ok(KvOutput::Set {
                applied: true,
                old: Some(found.clone())
            })
        );
        let retry = g.write(client, 2, true, set);
        let wanted = if replayed {
            first
        } else {
            Err(Error::SessionExpired)
        };
        assert_eq!(retry, wanted, "Set retry, {} bytes found", found.len());
        let put = KvCommand::Put {
            key: key(),
            value: found.clone(),
        };
        assert_eq!(g.write(client, 3, false, put), Ok(KvOutput::Done));
        let getdel = KvCommand::GetDel { key: key() };
        let first = g.write(client, 4, false, getdel.clone());
        assert_eq!(first, Ok(KvOutput::Value(Some(found.clone()))));
        let retry = g.write(client, 4, true, getdel);
        let wanted = if replayed {
            first
        } else {
            Err(Error::SessionExpired)
        };
        assert_eq!(retry, wanted, "GetDel retry, {} bytes found", found.len());
        assert_eq!(g.r.state_machine().get(&key()), None, "applied once");
    }
}

#[test]
fn a_retried_incrby_is_answered_from_the_session_and_applied_once() {
    // Goal: exactly-once for IncrBy, and its errors are replayed too; method: retry each.
    let mut g = One::new();
    let incr = KvCommand::IncrBy { key: key(), by: 5 };
    assert_eq!(g.write(1, 1, false, incr.clone()), Ok(KvOutput::Int(5)));
    assert_eq!(g.write(1, 1, true, incr.clone()), Ok(KvOutput::Int(5)));
    assert_eq!(g.r.state_machine().get(&key()), Some(&b"5".to_vec()));
    let put = KvCommand::Put {
        key: key(),
        value: b"x".to_vec(),
    };
    assert_eq!(g.write(1, 2, false, put), Ok(KvOutput::Done));
    assert_eq!(
        g.write(1, 3, false, incr.clone()),
        Ok(KvOutput::NotAnInteger)
    );
    assert_eq!(g.write(1, 3, true, incr), Ok(KvOutput::NotAnInteger));
}

#[test]
fn a_retried_pipeline_is_answered_from_its_record_and_applied_once() {
    // Goal: a pipeline is one write for exactly-once: its retry (same session and seq)
    // answers every command as the first attempt did, from a record in a shape older
    // builds decode, and applies nothing again; a sub-command whose answer was not kept
    // makes the retry SessionExpired. Method: a one-member group, retries of two pipelines.
    let mut g = One::new();
    let incr = KvCommand::IncrBy { key: key(), by: 2 };
    let pipeline = KvCommand::Pipeline {
        cmds: vec![
            incr.clone(),
            KvCommand::AppendLen {
                key: key(),
                value: b"0".to_vec(),
            },
            incr.clone(),
            KvCommand::Delete {
                key: b"other".to_vec(),
            },
        ],
    };
    let first = g.write(1, 1, false, pipeline.clone());
    let want = KvOutput::Outputs(vec![
        KvOutput::Int(2),
        KvOutput::Int(2),
        KvOutput::Int(22),
        KvOutput::Deleted { existed: false },
    ]);
    assert_eq!(first, Ok(want));
    assert_eq!(g.write(1, 1, true, pipeline), first, "the retry replays");
    assert_eq!(g.r.state_machine().get(&key()), Some(&b"22".to_vec()));
    let put = KvCommand::Put {
        key: key(),
        value: vec![b'l'; RECORDED_VALUE_BYTES_MAX + 1],
    };
    let getdel = KvCommand::Pipeline {
        cmds: vec![put, KvCommand::GetDel { key: key() }, incr],
    };
    let first = g.write(1, 2, false, getdel.clone()).expect("applies");
    assert!(matches!(&first, KvOutput::Outputs(outs) if outs.len() == 3));
    assert_eq!(
        g.write(1, 2, true, getdel),
        Err(Error::SessionExpired),
        "a found value too large to keep"
    );
    assert_eq!(
        g.r.state_machine().get(&key()),
        Some(&b"2".to_vec()),
        "applied once"
    );
}

/// A pipeline of `n` CASes on `key()` that do not swap (the key holds a value of `found`
/// bytes, none of them expects it).
fn failing_cases(n: usize) -> KvCommand {
    KvCommand::Pipeline {
        cmds: (0..n)
            .map(|_| KvCommand::Cas {
                key: key(),
                expected: None,
                new: b"n".to_vec(),
            })
            .collect(),
    }
}

#[test]
fn a_retried_pipeline_whose_command_failed_a_cas_on_a_large_value_is_session_expired() {
    // Goal: a retry of an applied pipeline never answers "surely not applied": a CAS of it
    // whose found value was too large to keep (alone answered CasFailed on retry) makes
    // the pipeline's retry SessionExpired. Method: a one-member group, a retry.
    let mut g = One::new();
    let big = vec![b'l'; RECORDED_VALUE_BYTES_MAX + 1];
    let pipeline = KvCommand::Pipeline {
        cmds: vec![
            KvCommand::Put {
                key: key(),
                value: big.clone(),
            },
            KvCommand::Cas {
                key: key(),
                expected: None,
                new: b"n".to_vec(),
            },
            KvCommand::IncrBy {
                key: b"n".to_vec(),
                by: 1,
            },
        ],
    };
    let first = g.write(1, 1, false, pipeline.clone()).expect("applies");
    assert!(matches!(&first, KvOutput::Outputs(outs) if outs.len() == 3));
    let retry = g.write(1, 1, true, pipeline);
    assert_eq!(retry, Err(Error::SessionExpired));
    assert!(retry.unwrap_err().may_have_applied());
    assert_eq!(g.r.state_machine().get(b"n"), Some(&b"1".to_vec()));
}

#[test]
fn a_pipeline_record_keeps_a_bounded_total_of_found_values() {
    // Goal: a pipeline's session record keeps at most PIPELINE_RECORD_VALUE_BYTES_MAX of
    // found values (64 failed CASes each finding a keepable value used to keep 64 of them)
    // and stays under 2 KiB; within the bound its retry replays every answer, past it the
    // retry is SessionExpired. Method: records of pipelines of failed CASes.
    let found = vec![b'f'; RECORDED_VALUE_BYTES_MAX];
    let outs = |n: usize| {
        KvOutput::Outputs(vec![
            KvOutput::Cas {
                swapped: false,
                current: Some(found.clone()),
            };
            n
        ])
    };
    let fits = PIPELINE_RECORD_VALUE_BYTES_MAX / found.len();
    let small = failing_cases(fits);
    let rec = KvOutput::record(&small, &outs(fits));
    assert_eq!(KvOutput::replay(&small, &rec), Ok(outs(fits)));
    let full = failing_cases(PIPELINE_OPS_MAX);
    let rec = KvOutput::record(&full, &outs(PIPELINE_OPS_MAX));
    let KvOutput::Value(Some(bytes)) = &rec else {
        panic!("a pipeline's record is a Value: {rec:?}");
    };
    assert!(bytes.len() < 2048, "a record of {} bytes", bytes.len());
    assert_eq!(KvOutput::replay(&full, &rec), Err(Error::SessionExpired));
    // Such a pipeline is not admitted (each CAS counts the most it may find against
    // MANY_BYTES_MAX): the record's bound holds even for pipelines validation would refuse.
    assert!(matches!(
        shardkv_kv::validate_command(&full),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn a_retried_pipeline_replays_its_appends_answered_too_large() {
    // Goal: an append of a pipeline answered TooLarge is recorded (in a shape older builds
    // decode) and its retry answers it again, applying nothing twice. Method: a one-member
    // group, a pipeline appending onto a full value, then its retry.
    let mut g = One::new();
    let full = vec![b'v'; VALUE_BYTES_MAX];
    let pipeline = KvCommand::Pipeline {
        cmds: vec![
            KvCommand::Put {
                key: key(),
                value: full.clone(),
            },
            KvCommand::AppendLen {
                key: key(),
                value: b"x".to_vec(),
            },
            KvCommand::Append {
                key: key(),
                value: b"y".to_vec(),
            },
            KvCommand::IncrBy {
                key: b"n".to_vec(),
                by: 1,
            },
        ],
    };
    let too_large = KvOutput::TooLarge {
        bytes: VALUE_BYTES_MAX as u64 + 1,
        max: VALUE_BYTES_MAX as u64,
    };
    let want = KvOutput::Outputs(vec![
        KvOutput::Done,
        too_large.clone(),
        too_large,
        KvOutput::Int(1),
    ]);
    assert_eq!(g.write(1, 1, false, pipeline.clone()), Ok(want.clone()));
    assert_eq!(g.write(1, 1, true, pipeline), Ok(want), "the retry replays");
    assert_eq!(g.r.state_machine().get(&key()), Some(&full));
    assert_eq!(g.r.state_machine().get(b"n"), Some(&b"1".to_vec()));
}
