//! The MIT 6.5840 shard controller checks (lab §6), at the state-machine level: commands go
//! through `ShardCtrl::execute`, configs come back through `ShardCtrl::read`. The lab
//! uses 10 shards; shard counts here are powers of two, so 16.

use shardkv_ctrl::{Config, CtrlCommand, CtrlError, CtrlQuery, CtrlReply, GID_NONE, ShardCtrl};
use shardkv_types::{ConfigNum, Gid, ShardId};
use std::collections::BTreeMap;

const SHARDS: u32 = 16;

fn servers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn join(ctrl: &mut ShardCtrl, groups: &[(u64, &[&str])]) -> ConfigNum {
    let groups = groups.iter().map(|(g, s)| (Gid(*g), servers(s))).collect();
    match ctrl.execute(&CtrlCommand::Join { groups }) {
        Ok(CtrlReply::Applied { num }) => num,
        other => panic!("join refused: {other:?}"),
    }
}

fn leave(ctrl: &mut ShardCtrl, gids: &[u64]) -> ConfigNum {
    let gids = gids.iter().map(|&g| Gid(g)).collect();
    match ctrl.execute(&CtrlCommand::Leave { gids }) {
        Ok(CtrlReply::Applied { num }) => num,
        other => panic!("leave refused: {other:?}"),
    }
}

fn query(ctrl: &ShardCtrl, num: Option<u64>) -> Config {
    match ctrl.read(&CtrlQuery {
        num: num.map(ConfigNum),
    }) {
        Ok(CtrlReply::Config(c)) => c,
        other => panic!("query failed: {other:?}"),
    }
}

/// The lab's `check`: exactly `gids` are members, every shard is on a member, and the counts
/// differ by at most one.
fn check(ctrl: &ShardCtrl, gids: &[u64]) -> Config {
    let c = query(ctrl, None);
    let members: Vec<u64> = c.groups.keys().map(|g| g.0).collect();
    let mut want = gids.to_vec();
    want.sort_unstable();
    assert_eq!(members, want, "wanted groups {want:?}");
    if !gids.is_empty() {
        for (shard, gid) in c.shards.iter().enumerate() {
            assert!(c.has_group(*gid), "shard {shard} -> invalid group {gid}");
        }
    }
    let counts = c.shard_counts();
    if let (Some(min), Some(max)) = (counts.values().min(), counts.values().max()) {
        assert!(
            max <= &(min + 1),
            "max {max} too much larger than min {min}"
        );
    }
    c
}

/// Goal: lab TestBasic/LeaveJoin. Method: join 1, join 2, leave 1, leave 2, checking groups,
/// balance and server lists (in order) after each.
#[test]
fn basic_leave_join() {
    let mut ctrl = ShardCtrl::new(SHARDS).expect("valid shard count");
    let c0 = check(&ctrl, &[]);
    assert_eq!(c0, Config::initial(SHARDS));
    join(&mut ctrl, &[(1, &["x", "y", "z"])]);
    check(&ctrl, &[1]);
    join(&mut ctrl, &[(2, &["a", "b", "c"])]);
    let c2 = check(&ctrl, &[1, 2]);
    assert_eq!(c2.groups[&Gid(1)], servers(&["x", "y", "z"]));
    assert_eq!(c2.groups[&Gid(2)], servers(&["a", "b", "c"]));
    leave(&mut ctrl, &[1]);
    check(&ctrl, &[2]);
    let last = leave(&mut ctrl, &[2]);
    let c4 = check(&ctrl, &[]);
    assert_eq!(c4.num, last);
    assert!(c4.shards.iter().all(|&g| g == GID_NONE));
}

/// Goal: lab TestBasic/HistoricalQueries. Method: save every config as it is made, then
/// query each number, also on a replica restored from a postcard snapshot; numbers past the
/// latest give the latest.
#[test]
fn historical_queries_return_exact_saved_configs() {
    let mut ctrl = ShardCtrl::new(SHARDS).expect("valid shard count");
    let mut saved = vec![query(&ctrl, None)];
    join(&mut ctrl, &[(1, &["x", "y", "z"])]);
    saved.push(query(&ctrl, None));
    join(&mut ctrl, &[(2, &["a", "b", "c"])]);
    saved.push(query(&ctrl, None));
    leave(&mut ctrl, &[1]);
    saved.push(query(&ctrl, None));
    leave(&mut ctrl, &[2]);
    saved.push(query(&ctrl, None));

    let bytes = postcard::to_allocvec(&ctrl).expect("encodes");
    let restored: ShardCtrl = postcard::from_bytes(&bytes).expect("decodes");
    for replica in [&ctrl, &restored] {
        for c in &saved {
            assert_eq!(&query(replica, Some(c.num.0)), c);
        }
        assert_eq!(query(replica, Some(0)), Config::initial(SHARDS));
        assert_eq!(query(replica, Some(99)), saved[4]);
        assert_eq!(query(replica, Some(u64::MAX)), saved[4]);
    }
    assert_eq!(restored, ctrl);
}

/// Goal: lab TestBasic/Move. Method: join two groups, move half the shards to each; every
/// move makes a new config with exact assignment and no rebalance; a later leave may
/// rebalance moved shards.
#[test]
fn move_assigns_exactly_and_increases_num() {
    let mut ctrl = ShardCtrl::new(SHARDS).expect("valid shard count");
    join(&mut ctrl, &[(503, &["a"])]);
    join(&mut ctrl, &[(504, &["b"])]);
    for shard in 0..SHARDS as u64 {
        let gid = if shard < 5 { Gid(503) } else { Gid(504) };
        let before = ctrl.latest().num;
        let out = ctrl.execute(&CtrlCommand::Move {
            shard: ShardId(shard),
            gid,
        });
        let num = ConfigNum(before.0 + 1);
        assert_eq!(
            out,
            Ok(CtrlReply::Applied { num }),
            "Move should increase num"
        );
    }
    let c = query(&ctrl, None);
    for (shard, gid) in c.shards.iter().enumerate() {
        let want = if shard < 5 { Gid(503) } else { Gid(504) };
        assert_eq!(
            *gid, want,
            "expected shard {shard} on {want} actually {gid}"
        );
    }
    assert!(!c.is_balanced(), "move does not rebalance");
    // A join rebalances the moved shards: 5/11 becomes 6/5/5 with the fewest moves.
    join(&mut ctrl, &[(505, &["c"])]);
    let after = check(&ctrl, &[503, 504, 505]);
    assert_eq!(after.moved_from(&c), 5);
    leave(&mut ctrl, &[503, 504]);
    check(&ctrl, &[505]);
}

/// Goal: lab TestBasic/ConcurrentLeaveJoin, sequentialized (the state machine sees one
/// order). Method: for 10 gids, join gid+1000, join gid, leave gid+1000; check the result.
#[test]
fn interleaved_leave_join() {
    let mut ctrl = ShardCtrl::new(SHARDS).expect("valid shard count");
    let gids: Vec<u64> = (0..10).map(|i| 100 + 10 * i).collect();
    for &g in &gids {
        join(&mut ctrl, &[(g + 1000, &["x"])]);
        join(&mut ctrl, &[(g, &["y"])]);
        leave(&mut ctrl, &[g + 1000]);
    }
    let c = check(&ctrl, &gids);
    assert_eq!(c.num, ConfigNum(30));
}

/// Goal: lab TestMulti/LeaveJoin. Method: one join of two groups, one of a third, then a
/// multi-leave; server lists survive.
#[test]
fn multi_join_multi_leave() {
    let mut ctrl = ShardCtrl::new(SHARDS).expect("valid shard count");
    join(&mut ctrl, &[(1, &["x", "y", "z"]), (2, &["a", "b", "c"])]);
    check(&ctrl, &[1, 2]);
    join(&mut ctrl, &[(3, &["j", "k", "l"])]);
    let c = check(&ctrl, &[1, 2, 3]);
    assert_eq!(c.groups[&Gid(3)], servers(&["j", "k", "l"]));
    assert_eq!(c.num, ConfigNum(2));
    leave(&mut ctrl, &[1, 3]);
    let c = check(&ctrl, &[2]);
    assert_eq!(c.groups[&Gid(2)], servers(&["a", "b", "c"]));
    leave(&mut ctrl, &[2]);
    check(&ctrl, &[]);
}

/// Goal: lab TestMinimalAgain. Method: join 1, 2, then 3: shards not given to 3 stay put and
/// at most shards/3 + 1 move; leave 1: shards not on 1 stay put, at most shards/3 + 1 move.
#[test]
fn minimal_transfer_on_join_and_leave() {
    let bound = SHARDS as usize / 3 + 1;
    let mut ctrl = ShardCtrl::new(SHARDS).expect("valid shard count");
    join(&mut ctrl, &[(1, &["a"])]);
    join(&mut ctrl, &[(2, &["b"])]);
    let c1 = query(&ctrl, None);
    join(&mut ctrl, &[(3, &["c"])]);
    let c2 = check(&ctrl, &[1, 2, 3]);
    for (shard, (old, new)) in c1.shards.iter().zip(&c2.shards).enumerate() {
        if *new != Gid(3) {
            assert_eq!(old, new, "shard {shard} moved from {old} to {new}");
        }
    }
    assert!(c2.moved_from(&c1) <= bound, "too many moved after join");
    leave(&mut ctrl, &[1]);
    let c3 = check(&ctrl, &[2, 3]);
    for (shard, (old, new)) in c2.shards.iter().zip(&c3.shards).enumerate() {
        if *old != Gid(1) {
            assert_eq!(old, new, "shard {shard} moved from {old} to {new}");
        }
    }
    assert!(c3.moved_from(&c2) <= bound, "too many moved after leave");
}

/// Goal: lab TestMulti/MinimalTransfer, with a non-vacuous check. Method: multi-join 5 groups
/// onto 10, then multi-leave them; members that stay keep every shard they had that the
/// newcomers did not take, and after the leave only the leavers' shards move.
#[test]
fn minimal_transfer_multi() {
    let mut ctrl = ShardCtrl::new(SHARDS).expect("valid shard count");
    let ten: Vec<(u64, &[&str])> = (1..=10).map(|g| (g, &["s"][..])).collect();
    join(&mut ctrl, &ten);
    let before = check(&ctrl, &(1..=10).collect::<Vec<_>>());
    let five: Vec<(u64, &[&str])> = (11..=15).map(|g| (g, &["s"][..])).collect();
    join(&mut ctrl, &five);
    let joined = check(&ctrl, &(1..=15).collect::<Vec<_>>());
    for (old, new) in before.shards.iter().zip(&joined.shards) {
        assert!(old == new || new.0 > 10, "non-minimal transfer after join");
    }
    leave(&mut ctrl, &[11, 12, 13, 14, 15]);
    let left = check(&ctrl, &(1..=10).collect::<Vec<_>>());
    for (old, new) in joined.shards.iter().zip(&left.shards) {
        assert!(old == new || old.0 > 10, "non-minimal transfer after leave");
    }
}

/// Goal: with more groups than shards, some groups get none and the rest one each. Method:
/// 4 shards, join 6 groups, check, then leave down to one.
#[test]
fn more_groups_than_shards() {
    let mut ctrl = ShardCtrl::new(4).expect("valid shard count");
    let six: Vec<(u64, &[&str])> = (1..=6).map(|g| (g, &["s"][..])).collect();
    join(&mut ctrl, &six);
    let c = check(&ctrl, &[1, 2, 3, 4, 5, 6]);
    assert_eq!(c.shard_counts().values().filter(|&&n| n == 0).count(), 2);
    leave(&mut ctrl, &[1, 2, 3, 4, 5]);
    let c = check(&ctrl, &[6]);
    assert_eq!(c.shards_of(Gid(6)).len(), 4);
}

/// Goal: every bad command is refused with an error naming the offender and changes nothing.
/// Method: apply each to a controller with groups 1 and 2 and compare the state before and
/// after.
#[test]
fn errors_change_nothing() {
    let mut ctrl = ShardCtrl::new(SHARDS).expect("valid shard count");
    join(&mut ctrl, &[(1, &["a"]), (2, &["b"])]);
    let join_cmd = |groups: &[(u64, Vec<String>)]| CtrlCommand::Join {
        groups: groups.iter().map(|(g, s)| (Gid(*g), s.clone())).collect(),
    };
    let cases: Vec<(CtrlCommand, CtrlError, &str)> = vec![
        (
            CtrlCommand::Join {
                groups: BTreeMap::new(),
            },
            CtrlError::JoinEmpty,
            "no groups",
        ),
        (
            join_cmd(&[(1, servers(&["z"]))]),
            CtrlError::AlreadyMember(Gid(1)),
            "g1",
        ),
        (
            join_cmd(&[(3, servers(&["c"])), (2, servers(&["z"]))]),
            CtrlError::AlreadyMember(Gid(2)),
            "g2",
        ),
        (
            join_cmd(&[(0, servers(&["z"]))]),
            CtrlError::ReservedGid,
            "g0",
        ),
        (join_cmd(&[(7, vec![])]), CtrlError::NoServers(Gid(7)), "g7"),
        (
            CtrlCommand::Leave { gids: vec![] },
            CtrlError::LeaveEmpty,
            "no groups",
        ),
        (
            CtrlCommand::Leave {
                gids: vec![Gid(1), Gid(9)],
            },
            CtrlError::NotMember(Gid(9)),
            "g9",
        ),
        (
            CtrlCommand::Leave {
                gids: vec![Gid(2), Gid(2)],
            },
            CtrlError::DuplicateGid(Gid(2)),
            "g2",
        ),
        (
            CtrlCommand::Move {
                shard: ShardId(0),
                gid: Gid(5),
            },
            CtrlError::NotMember(Gid(5)),
            "g5",
        ),
        (
            CtrlCommand::Move {
                shard: ShardId(0),
                gid: GID_NONE,
            },
            CtrlError::NotMember(GID_NONE),
            "g0",
        ),
        (
            CtrlCommand::Move {
                shard: ShardId(16),
                gid: Gid(1),
            },
            CtrlError::ShardOutOfRange {
                shard: ShardId(16),
                shards: SHARDS,
            },
            "s16",
        ),
        (
            CtrlCommand::Move {
                shard: ShardId(u64::MAX),
                gid: Gid(1),
            },
            CtrlError::ShardOutOfRange {
                shard: ShardId(u64::MAX),
                shards: SHARDS,
            },
            "out of range",
        ),
    ];
    for (cmd, want, named) in cases {
        let before = postcard::to_allocvec(&ctrl).expect("encodes");
        let out = ctrl.execute(&cmd);
        assert_eq!(out, Err(want.clone()), "{cmd:?}");
        assert!(
            want.to_string().contains(named),
            "{want} should name {named}"
        );
        let after = postcard::to_allocvec(&ctrl).expect("encodes");
        assert_eq!(before, after, "{cmd:?} changed the state");
    }
    assert_eq!(ctrl.latest().num, ConfigNum(1));
}

/// Goal: the shard count is validated at creation and the default is 64. Method: good and
/// bad counts.
#[test]
fn shard_count_is_fixed_and_validated() {
    assert_eq!(ShardCtrl::default().shard_count(), 64);
    assert_eq!(ShardCtrl::new(1).map(|c| c.shard_count()), Ok(1));
    assert_eq!(ShardCtrl::new(16384).map(|c| c.shard_count()), Ok(16384));
    for bad in [0, 10, 32768] {
        let err = ShardCtrl::new(bad).expect_err("invalid count");
        assert!(err.to_string().contains(&bad.to_string()));
    }
}

/// Goal: a snapshot that breaks the history's invariants is refused, not trusted. Method:
/// encode hand-made broken states and decode them.
#[test]
fn snapshot_with_broken_history_is_refused() {
    #[derive(serde::Serialize)]
    struct Raw {
        configs: Vec<Config>,
    }
    let decode = |configs: Vec<Config>| {
        let bytes = postcard::to_allocvec(&Raw { configs }).expect("encodes");
        postcard::from_bytes::<ShardCtrl>(&bytes)
    };
    assert!(decode(vec![]).is_err(), "no configs");
    assert!(
        decode(vec![Config::initial(10)]).is_err(),
        "bad shard count"
    );
    let mut skipped = Config::initial(4);
    skipped.num = ConfigNum(2);
    assert!(decode(vec![Config::initial(4), skipped]).is_err(), "gap");
    let mut orphan = Config::initial(4);
    orphan.num = ConfigNum(1);
    orphan.shards[0] = Gid(3);
    assert!(
        decode(vec![Config::initial(4), orphan]).is_err(),
        "absent group"
    );
    assert!(decode(vec![Config::initial(4)]).is_ok());
}
