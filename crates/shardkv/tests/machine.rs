//! The shard group state machine, step by step: config changes, ownership at apply time,
//! pull, install with sessions, confirmation and deletion.

use shardkv_ctrl::Config;
use shardkv_kv::{ByteBuf, KvCommand, KvOutput, KvQuery};
use shardkv_rsm::{
    Applying, DROPPED_REMEMBERED, Error, Seen, SessionLimits, Sessions, StateMachine,
};
use shardkv_shardkv::{
    Cursor, ShardChunk, ShardInternal, ShardKv, ShardOutput, ShardQuery, ShardState,
};
use shardkv_types::{ClientId, ConfigNum, Gid, LogIndex, Seq, ShardId, shard_of_key};

const SHARDS: u32 = 4;
const A: Gid = Gid(1);
const B: Gid = Gid(2);

struct Member {
    sm: ShardKv,
    sessions: Sessions<ShardOutput>,
    index: u64,
}

impl Member {
    fn new(gid: Gid) -> Member {
        Member {
            sm: ShardKv::new(gid, SHARDS),
            sessions: Sessions::default(),
            index: 0,
        }
    }

    fn internal(&mut self, cmd: ShardInternal) {
        self.index += 1;
        let mut ctx = Applying {
            index: LogIndex(self.index),
            sessions: &mut self.sessions,
            limits: SessionLimits::default(),
        };
        self.sm.apply_internal(&cmd, &mut ctx);
    }

    /// A client write, as the replica applies it (sessions recorded only on success).
    fn write(&mut self, client: u64, seq: u64, cmd: KvCommand) -> Result<ShardOutput, Error> {
        self.index += 1;
        let mut ctx = Applying {
            index: LogIndex(self.index),
            sessions: &mut self.sessions,
            limits: SessionLimits::default(),
        };
        let out = self.sm.apply(&cmd, &mut ctx)?;
        let record = ShardKv::record(&cmd, &out);
        self.sessions.record(
            ClientId(client),
            Seq(seq),
            record,
            LogIndex(self.index),
            &SessionLimits::default(),
        );
        Ok(out)
    }

    fn get(&self, key: &[u8]) -> Result<ShardOutput, Error> {
        let q = ShardQuery::Kv(KvQuery::Get { key: key.to_vec() });
        self.sm.query(&q, &self.sessions)
    }

    fn ask(&self, q: ShardQuery) -> ShardOutput {
        self.sm
            .query(&q, &self.sessions)
            .expect("migration queries are answered")
    }
}

fn config(num: u64, owners: [Gid; SHARDS as usize]) -> Config {
    let mut c = Config::initial(SHARDS);
    c.num = ConfigNum(num);
    c.shards = owners.to_vec();
    for g in owners {
        if g != Gid(0) {
            c.groups.insert(g, vec![format!("n{}", g.0)]);
        }
    }
    c
}

fn pull(num: ConfigNum, shard: ShardId, from: Cursor, bytes_max: u64) -> ShardQuery {
    ShardQuery::Pull {
        num,
        shard,
        from,
        bytes_max,
    }
}

fn chunk_of(out: ShardOutput) -> Box<ShardChunk> {
    match out {
        ShardOutput::Chunk(c) => c,
        other => panic!("expected a chunk, got {other:?}"),
    }
}

fn put(key: &[u8], value: &[u8]) -> KvCommand {
    KvCommand::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

/// A key of `shard`.
fn key_in(shard: u64) -> Vec<u8> {
    (0..)
        .map(|i| format!("k{i}").into_bytes())
        .find(|k| shard_of_key(k, SHARDS) == ShardId(shard))
        .expect("some key lands in every shard")
}

#[test]
fn a_shard_moves_with_its_data_and_sessions_and_is_deleted_after_confirmation() {
    let (mut a, mut b) = (Member::new(A), Member::new(B));
    let c1 = config(1, [A, A, A, A]);
    let c2 = config(2, [A, A, B, B]);
    for m in [&mut a, &mut b] {
        m.internal(ShardInternal::Reconfigure(c1.clone()));
    }
    let k2 = key_in(2);
    assert_eq!(
        a.sm.shard_state(ShardId(2)),
        Some(ShardState::Serving),
        "gained from nobody"
    );
    a.write(7, 1, put(&k2, b"v")).unwrap();
    assert_eq!(
        b.write(7, 2, put(&k2, b"w")),
        Err(Error::WrongGroup { gid: B })
    );

    for m in [&mut a, &mut b] {
        m.internal(ShardInternal::Reconfigure(c2.clone()));
    }
    assert_eq!(a.sm.shard_state(ShardId(2)), Some(ShardState::BePulled));
    assert_eq!(b.sm.shard_state(ShardId(2)), Some(ShardState::Pulling));
    assert_eq!(
        a.write(7, 2, put(&k2, b"x")),
        Err(Error::WrongGroup { gid: A })
    );
    assert_eq!(
        a.get(&k2),
        Err(Error::WrongGroup { gid: A }),
        "frozen: not served"
    );
    assert_eq!(
        b.get(&k2),
        Err(Error::WrongGroup { gid: B }),
        "not installed yet"
    );
    assert!(a.get(&key_in(0)).is_ok(), "unaffected shards keep serving");
    assert!(
        !a.sm.accepts(&config(3, [A, A, A, A])),
        "no config while migrating"
    );

    let num = ConfigNum(2);
    let shard = ShardId(2);
    assert_eq!(
        b.ask(ShardQuery::Installed { num, shard }),
        ShardOutput::Installed(false)
    );
    let chunk = chunk_of(a.ask(pull(num, shard, Cursor::Start, 1 << 20)));
    assert!(chunk.is_last());
    assert_eq!(
        chunk
            .sessions
            .iter()
            .find(|(c, _)| *c == ClientId(7))
            .map(|(_, s)| s.seq),
        Some(Seq(1))
    );
    let install = ShardInternal::Install {
        num,
        shard,
        from: Cursor::Start,
        chunk,
    };
    b.internal(install.clone());
    b.internal(install); // a duplicate install changes nothing
    assert_eq!(b.sm.shard_state(shard), Some(ShardState::Serving));
    assert_eq!(
        b.get(&k2),
        Ok(ShardOutput::Kv(KvOutput::Value(Some(b"v".to_vec()))))
    );
    assert_eq!(
        b.sessions.get(ClientId(7)).map(|s| s.seq),
        Some(Seq(1)),
        "exactly-once survives the move"
    );
    assert_eq!(
        b.ask(ShardQuery::Installed { num, shard }),
        ShardOutput::Installed(true)
    );

    a.internal(ShardInternal::Delete { num, shard });
    assert_eq!(a.sm.shard_state(shard), None, "deleted at the old owner");
    assert_eq!(a.ask(pull(num, shard, Cursor::Start, 1)), ShardOutput::Gone);
    assert!(
        !a.sm.accepts(&config(3, [A, A, B, B])),
        "shard 3 still waits"
    );
    a.internal(ShardInternal::Delete {
        num,
        shard: ShardId(3),
    });
    assert!(a.sm.accepts(&config(3, [A, A, B, B])));
    assert_eq!(
        a.ask(pull(ConfigNum(3), shard, Cursor::Start, 1)),
        ShardOutput::NotYet { have: num }
    );
}

#[test]
fn configs_are_taken_one_at_a_time_in_order() {
    let mut a = Member::new(A);
    a.internal(ShardInternal::Reconfigure(config(2, [A; 4])));
    assert_eq!(
        a.sm.config().num,
        ConfigNum(0),
        "config 2 before 1 is ignored"
    );
    a.internal(ShardInternal::Reconfigure(config(1, [A; 4])));
    a.internal(ShardInternal::Reconfigure(config(1, [A; 4])));
    assert_eq!(a.sm.config().num, ConfigNum(1));
    let mut wrong = config(2, [A; 4]);
    wrong.shards.push(A);
    assert!(!a.sm.accepts(&wrong), "the shard count never changes");
}

#[test]
fn a_late_install_or_delete_of_an_older_config_changes_nothing() {
    let (mut a, mut b) = (Member::new(A), Member::new(B));
    for m in [&mut a, &mut b] {
        m.internal(ShardInternal::Reconfigure(config(1, [A, A, A, A])));
        m.internal(ShardInternal::Reconfigure(config(2, [A, A, A, B])));
    }
    let (num, shard) = (ConfigNum(2), ShardId(3));
    let chunk = chunk_of(a.ask(pull(num, shard, Cursor::Start, 1 << 20)));
    b.internal(ShardInternal::Install {
        num: ConfigNum(1),
        shard,
        from: Cursor::Start,
        chunk: chunk.clone(),
    });
    assert_eq!(
        b.sm.shard_state(shard),
        Some(ShardState::Pulling),
        "wrong config number"
    );
    a.internal(ShardInternal::Delete {
        num: ConfigNum(1),
        shard,
    });
    assert_eq!(a.sm.shard_state(shard), Some(ShardState::BePulled));
    b.internal(ShardInternal::Install {
        num,
        shard,
        from: Cursor::Key(b"zzz".to_vec()),
        chunk: chunk.clone(),
    });
    assert_eq!(
        b.sm.shard_state(shard),
        Some(ShardState::Pulling),
        "a chunk for another position"
    );
    b.internal(ShardInternal::Install {
        num,
        shard,
        from: Cursor::Start,
        chunk,
    });
    assert_eq!(b.sm.shard_state(shard), Some(ShardState::Serving));
}

#[test]
fn a_large_shard_moves_in_chunks_installed_in_order_and_serves_after_the_last() {
    let (mut a, mut b) = (Member::new(A), Member::new(B));
    for m in [&mut a, &mut b] {
        m.internal(ShardInternal::Reconfigure(config(1, [A, A, A, A])));
    }
    let keys: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("{{t}}{i:03}").into_bytes())
        .collect();
    let shard = shard_of_key(&keys[0], SHARDS);
    for (i, k) in keys.iter().enumerate() {
        a.write(1, i as u64 + 1, put(k, &[b'v'; 100])).unwrap();
    }
    let mut owners = [A; 4];
    owners[shard.0 as usize] = B;
    for m in [&mut a, &mut b] {
        m.internal(ShardInternal::Reconfigure(config(2, owners)));
    }
    let num = ConfigNum(2);
    let mut chunks = 0;
    loop {
        let from = b.sm.shards()[&shard].pulled_to.clone();
        let chunk = chunk_of(a.ask(pull(num, shard, from.clone(), 1000)));
        assert!(!chunk.entries.is_empty() || !chunk.sessions.is_empty());
        let last = chunk.is_last();
        chunks += 1;
        let step = ShardInternal::Install {
            num,
            shard,
            from,
            chunk,
        };
        b.internal(step.clone());
        b.internal(step); // a re-proposed chunk is refused by its position
        if last {
            break;
        }
        assert_eq!(
            b.get(&keys[0]),
            Err(Error::WrongGroup { gid: B }),
            "not yet"
        );
    }
    assert!(
        chunks >= 20,
        "200 entries of ~105 bytes in ~1000-byte chunks: {chunks}"
    );
    for k in &keys {
        assert_eq!(
            b.get(k),
            Ok(ShardOutput::Kv(KvOutput::Value(Some(vec![b'v'; 100]))))
        );
    }
    assert_eq!(b.sessions.get(ClientId(1)).map(|s| s.seq), Some(Seq(200)));
}

/// Moves every shard `from` gives away in `to`'s config `num` (pull, install, confirm,
/// delete), as the duties would.
fn hand_over(from: &mut Member, to: &mut Member, num: ConfigNum) {
    let shards: Vec<ShardId> = to
        .sm
        .shards()
        .iter()
        .filter(|(_, s)| s.state == ShardState::Pulling)
        .map(|(&id, _)| id)
        .collect();
    for shard in shards {
        let chunk = chunk_of(from.ask(pull(num, shard, Cursor::Start, 1 << 20)));
        to.internal(ShardInternal::Install {
            num,
            shard,
            from: Cursor::Start,
            chunk,
        });
        assert_eq!(
            to.ask(ShardQuery::Installed { num, shard }),
            ShardOutput::Installed(true)
        );
        from.internal(ShardInternal::Delete { num, shard });
    }
}

#[test]
fn shards_given_to_nobody_stay_parked_at_their_last_owner_until_a_group_takes_them() {
    const C: Gid = Gid(3);
    let (mut a, mut b, mut c) = (Member::new(A), Member::new(B), Member::new(C));
    let k = key_in(1);
    let apply_all = |ms: &mut [&mut Member], cfg: Config| {
        for m in ms.iter_mut() {
            m.internal(ShardInternal::Reconfigure(cfg.clone()));
        }
    };
    let none = Gid(0);
    apply_all(&mut [&mut a, &mut b, &mut c], config(1, [A, A, A, A]));
    a.write(1, 1, put(&k, b"kept")).unwrap();
    // A leaves, nobody else is a member: every shard is parked at A, and A moves on.
    apply_all(&mut [&mut a, &mut b, &mut c], config(2, [none; 4]));
    assert_eq!(a.sm.shard_state(ShardId(1)), Some(ShardState::Parked));
    assert!(!a.sm.in_migration(), "parked shards do not hold up configs");
    assert_eq!(a.get(&k), Err(Error::WrongGroup { gid: A }));
    apply_all(&mut [&mut a, &mut b, &mut c], config(3, [none; 4]));
    // B joins: it takes the shards from A, where they were parked.
    apply_all(&mut [&mut a, &mut b, &mut c], config(4, [B, B, B, B]));
    assert_eq!(b.sm.shard_state(ShardId(1)), Some(ShardState::Pulling));
    assert_eq!(a.sm.shard_state(ShardId(1)), Some(ShardState::BePulled));
    assert_eq!(c.sm.shard_state(ShardId(1)), None);
    hand_over(&mut a, &mut b, ConfigNum(4));
    assert_eq!(
        b.get(&k),
        Ok(ShardOutput::Kv(KvOutput::Value(Some(b"kept".to_vec())))),
        "nothing is lost when every group leaves and another joins"
    );
    assert!(a.sm.shards().is_empty());
    // B leaves and rejoins: it takes its own parked shards back at once.
    apply_all(&mut [&mut a, &mut b, &mut c], config(5, [none; 4]));
    apply_all(&mut [&mut a, &mut b, &mut c], config(6, [B, B, C, C]));
    assert_eq!(b.sm.shard_state(ShardId(1)), Some(ShardState::Serving));
    assert_eq!(c.sm.shard_state(ShardId(2)), Some(ShardState::Pulling));
    assert_eq!(b.sm.shard_state(ShardId(2)), Some(ShardState::BePulled));
}

#[test]
fn a_large_session_table_moves_in_pages_after_the_entries() {
    let (mut a, mut b) = (Member::new(A), Member::new(B));
    for m in [&mut a, &mut b] {
        m.internal(ShardInternal::Reconfigure(config(1, [A, A, A, A])));
    }
    let (k0, k3) = (key_in(0), key_in(3));
    for client in 1..=50 {
        let value = vec![b'x'; 64];
        a.write(client, 1, put(&k0, &value)).unwrap();
    }
    a.write(99, 1, put(&k3, b"moved")).unwrap();
    for m in [&mut a, &mut b] {
        m.internal(ShardInternal::Reconfigure(config(2, [A, A, A, B])));
    }
    let (num, shard) = (ConfigNum(2), ShardId(3));
    let mut pages = 0;
    while b.sm.shard_state(shard) == Some(ShardState::Pulling) {
        let from = b.sm.shards()[&shard].pulled_to.clone();
        let chunk = chunk_of(a.ask(pull(num, shard, from.clone(), 100)));
        pages += 1;
        assert!(pages < 100, "the pull ends");
        b.internal(ShardInternal::Install {
            num,
            shard,
            from,
            chunk,
        });
    }
    assert!(
        pages >= 5,
        "51 sessions of ~11 bytes in 100-byte pages: {pages}"
    );
    assert_eq!(b.sessions.len(), 51, "every session came");
    assert_eq!(
        b.get(&k3),
        Ok(ShardOutput::Kv(KvOutput::Value(Some(b"moved".to_vec()))))
    );
}

#[test]
fn a_retry_is_expired_when_its_write_applied_in_a_group_that_forgot_it() {
    // Client 9's seq 5 applied in B (shard 0); its seq 7 applied in A (shard 2), whose
    // answer was lost. A drops client 9 and, past many more drops, forgets it; then shard 2
    // moves to B, which still holds client 9's older session.
    let (mut a, mut b) = (Member::new(A), Member::new(B));
    let c1 = config(1, [B, A, A, A]);
    let c2 = config(2, [B, A, B, A]);
    for m in [&mut a, &mut b] {
        m.internal(ShardInternal::Reconfigure(c1.clone()));
    }
    b.write(9, 5, put(&key_in(0), b"b")).unwrap();
    a.write(9, 7, put(&key_in(2), b"a")).unwrap();
    let forget_all = SessionLimits {
        sessions_max: 1,
        idle_entries_max: 0,
    };
    for c in 0..DROPPED_REMEMBERED as u64 + 1 {
        a.write(1000 + c, 1, put(&key_in(1), b"x")).unwrap();
        a.sessions.expire(LogIndex(a.index + 1), &forget_all);
    }
    assert!(a.sessions.recently_dropped().all(|(c, _)| c != ClientId(9)));
    for m in [&mut a, &mut b] {
        m.internal(ShardInternal::Reconfigure(c2.clone()));
    }
    hand_over(&mut a, &mut b, ConfigNum(2));
    assert_eq!(
        b.sessions.check(ClientId(9), Seq(7), true),
        Seen::Expired,
        "seq 7 may have applied in A: not applied again"
    );
    assert_eq!(b.sessions.check(ClientId(9), Seq(7), false), Seen::New);
}

#[test]
fn a_multi_key_operation_spanning_two_shards_is_refused_invalid_and_changes_nothing() {
    // Goal: atomicity only within a shard: a DeleteMany, PutMany, GetMany, Exists or
    // Pipeline (of writes or of reads) whose keys span shards is refused Invalid (at admission, at apply and as a query), even
    // when one group serves both shards, and leaves data and sessions as they were; keys
    // of one hash tag share a shard and are served. Method: one member owning every shard.
    let mut a = Member::new(A);
    a.internal(ShardInternal::Reconfigure(config(1, [A, A, A, A])));
    let (k0, k1) = (key_in(0), key_in(1));
    a.write(7, 1, put(&k0, b"v0")).unwrap();
    a.write(7, 2, put(&k1, b"v1")).unwrap();
    let spanning = || vec![ByteBuf::from(k0.clone()), ByteBuf::from(k1.clone())];
    let invalid = |r: Result<ShardOutput, Error>| matches!(r, Err(Error::Invalid { .. }));
    let put_each = |ks: Vec<ByteBuf>| KvCommand::Pipeline {
        cmds: ks
            .into_iter()
            .map(|k| KvCommand::Put {
                key: k.into_vec(),
                value: b"new".to_vec(),
            })
            .collect(),
    };
    let writes = [
        put_each(spanning()),
        KvCommand::DeleteMany { keys: spanning() },
        KvCommand::PutMany {
            pairs: spanning()
                .into_iter()
                .map(|k| (k, ByteBuf::from(&b"new"[..])))
                .collect(),
        },
    ];
    for cmd in writes {
        assert!(
            matches!(a.sm.admits(&cmd), Err(Error::Invalid { .. })),
            "refused before proposing: {cmd:?}"
        );
        assert!(
            invalid(a.write(7, 3, cmd.clone())),
            "refused at apply: {cmd:?}"
        );
    }
    for q in [
        KvQuery::GetMany { keys: spanning() },
        KvQuery::Exists { keys: spanning() },
        KvQuery::Pipeline {
            queries: spanning()
                .into_iter()
                .map(|k| KvQuery::Get { key: k.into_vec() })
                .collect(),
        },
    ] {
        assert!(invalid(a.sm.query(&ShardQuery::Kv(q), &a.sessions)));
    }
    assert_eq!(
        a.get(&k0),
        Ok(ShardOutput::Kv(KvOutput::Value(Some(b"v0".to_vec()))))
    );
    assert_eq!(
        a.get(&k1),
        Ok(ShardOutput::Kv(KvOutput::Value(Some(b"v1".to_vec()))))
    );
    assert_eq!(
        a.sessions.check(ClientId(7), Seq(3), false),
        Seen::New,
        "a refused write is not recorded"
    );
    let tagged = vec![ByteBuf::from(&b"{t}a"[..]), ByteBuf::from(&b"{t}b"[..])];
    let pairs = tagged
        .iter()
        .map(|k| (k.clone(), ByteBuf::from(&b"1"[..])))
        .collect();
    assert_eq!(
        a.write(7, 3, KvCommand::PutMany { pairs }),
        Ok(ShardOutput::Kv(KvOutput::Done))
    );
    let exists = ShardQuery::Kv(KvQuery::Exists {
        keys: tagged.clone(),
    });
    assert_eq!(
        a.sm.query(&exists, &a.sessions),
        Ok(ShardOutput::Kv(KvOutput::Int(2)))
    );
    assert_eq!(
        a.write(7, 4, put_each(tagged)),
        Ok(ShardOutput::Kv(KvOutput::Outputs(vec![
            KvOutput::Done,
            KvOutput::Done
        ]))),
        "a pipeline within one hash tag is served"
    );
}
