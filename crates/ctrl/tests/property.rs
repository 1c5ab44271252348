//! Seeded randomized properties of the controller over thousands of op sequences: balance
//! and membership after every Join/Leave, minimal movement (against a minimum computed here,
//! independently of the crate), exact Moves, refused ops change nothing, and determinism
//! (two replicas, one of them restored from a snapshot midway, end byte-identical).
//!
//! A failure prints its seed; `SHARDKV_SEED=<seed> cargo test -p shardkv-ctrl --test
//! property` replays just that one.

use shardkv_ctrl::{Config, CtrlCommand, CtrlReply, GID_NONE, ShardCtrl, moves_min};
use shardkv_types::{ConfigNum, Gid, Rng, ShardId};
use std::collections::{BTreeMap, BTreeSet};

const SEQUENCES: u64 = 3000;
const OPS_PER_SEQUENCE: usize = 60;
/// Gids are drawn from `0..=GID_POOL_MAX`, so joins and leaves often collide (and 0 appears).
const GID_POOL_MAX: u64 = 12;

fn random_gids(rng: &mut Rng, count_max: u64) -> Vec<Gid> {
    let count = rng.range(0, count_max + 1);
    (0..count)
        .map(|_| Gid(rng.range(0, GID_POOL_MAX + 1)))
        .collect()
}

/// A random command, valid or not, biased towards ones the current config accepts.
fn random_command(rng: &mut Rng, latest: &Config) -> CtrlCommand {
    match rng.range(0, 12) {
        0..=3 => {
            let groups = random_gids(rng, 3)
                .into_iter()
                .map(|g| {
                    let servers = (0..rng.range(0, 4)).map(|i| format!("{g}-{i}")).collect();
                    (g, servers)
                })
                .collect();
            CtrlCommand::Join { groups }
        }
        4..=7 => {
            let mut gids = random_gids(rng, 3);
            if !rng.chance(200) {
                // Mostly members, without duplicates.
                let members: BTreeSet<Gid> =
                    gids.into_iter().filter(|g| latest.has_group(*g)).collect();
                gids = members.into_iter().collect();
            }
            CtrlCommand::Leave { gids }
        }
        10..=11 => {
            // Mostly a member; sometimes no servers.
            let gid = match latest.groups.keys().nth(rng.index(latest.groups.len() + 1)) {
                Some(&g) if !rng.chance(200) => g,
                _ => Gid(rng.range(0, GID_POOL_MAX + 1)),
            };
            let servers = (0..rng.range(0, 4))
                .map(|i| format!("{i}={gid}-{i}"))
                .collect();
            CtrlCommand::Servers { gid, servers }
        }
        _ => {
            let shard = ShardId(rng.range(0, latest.shards.len() as u64 + 1));
            let gid = Gid(rng.range(0, GID_POOL_MAX + 1));
            CtrlCommand::Move { shard, gid }
        }
    }
}

/// The fewest shards a balanced assignment over `members` must take away from `before`,
/// computed as `n - best overlap`: sorted by holdings, the `extra` largest holders may keep
/// `base + 1`, the others `base`, and non-members keep nothing.
fn minimum_moves(before: &[Gid], members: &BTreeSet<Gid>) -> usize {
    let n = before.len();
    if members.is_empty() {
        return before.iter().filter(|g| **g != GID_NONE).count();
    }
    let mut held: Vec<usize> = members
        .iter()
        .map(|m| before.iter().filter(|g| *g == m).count())
        .collect();
    held.sort_unstable_by(|a, b| b.cmp(a));
    let (base, extra) = (n / members.len(), n % members.len());
    let kept: usize = held
        .iter()
        .enumerate()
        .map(|(i, &h)| h.min(base + usize::from(i < extra)))
        .sum();
    n - kept
}

fn check_step(seed: u64, cmd: &CtrlCommand, before: &Config, ctrl: &ShardCtrl, accepted: bool) {
    let after = ctrl.latest();
    if !accepted {
        assert_eq!(
            after, before,
            "seed {seed}: refused {cmd:?} changed the config"
        );
        return;
    }
    assert_eq!(
        after.num,
        ConfigNum(before.num.0 + 1),
        "seed {seed}: numbering"
    );
    assert_eq!(after.check(), Ok(()), "seed {seed}: {cmd:?}");
    if let CtrlCommand::Servers { gid, servers } = cmd {
        assert_eq!(
            after.shards, before.shards,
            "seed {seed}: servers moved shards"
        );
        assert_eq!(after.groups.get(gid), Some(servers), "seed {seed}");
        assert_eq!(after.groups.len(), before.groups.len(), "seed {seed}");
        return;
    }
    if let CtrlCommand::Move { shard, gid } = cmd {
        for (i, (old, new)) in before.shards.iter().zip(&after.shards).enumerate() {
            let want = if i as u64 == shard.0 { gid } else { old };
            assert_eq!(new, want, "seed {seed}: move touched shard {i}");
        }
        return;
    }
    let members: BTreeSet<Gid> = after.groups.keys().copied().collect();
    assert!(after.is_balanced(), "seed {seed}: unbalanced after {cmd:?}");
    if members.is_empty() {
        assert!(after.shards.iter().all(|g| *g == GID_NONE), "seed {seed}");
    }
    let min = minimum_moves(&before.shards, &members);
    assert_eq!(after.moved_from(before), min, "seed {seed}: not minimal");
    assert_eq!(moves_min(&before.shards, &members), min, "seed {seed}");
}

fn run_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let shards = 1 << rng.range(0, 9);
    let mut a = ShardCtrl::new(shards).expect("valid shard count");
    let mut b = ShardCtrl::new(shards).expect("valid shard count");
    let restore_at = rng.index(OPS_PER_SEQUENCE);
    for step in 0..OPS_PER_SEQUENCE {
        if step == restore_at {
            // Replica b restarts from a's snapshot.
            let bytes = postcard::to_allocvec(&a).expect("encodes");
            b = postcard::from_bytes(&bytes).expect("own snapshot decodes");
        }
        let before = a.latest().clone();
        let cmd = random_command(&mut rng, &before);
        let out = a.execute(&cmd);
        assert_eq!(
            b.execute(&cmd),
            out,
            "seed {seed}: replicas answered differently"
        );
        if let Ok(reply) = &out {
            assert_eq!(
                reply,
                &CtrlReply::Applied {
                    num: ConfigNum(before.num.0 + 1)
                }
            );
        }
        check_step(seed, &cmd, &before, &a, out.is_ok());
    }
    let (ea, eb) = (postcard::to_allocvec(&a), postcard::to_allocvec(&b));
    assert_eq!(
        ea.expect("encodes"),
        eb.expect("encodes"),
        "seed {seed}: diverged"
    );
}

/// Goal: the controller's properties hold over many random sequences. Method: run each seed
/// (or only `SHARDKV_SEED`), printing the replay command on failure.
#[test]
fn random_op_sequences_keep_balance_minimality_and_determinism() {
    let seeds: Vec<u64> = match std::env::var("SHARDKV_SEED") {
        Ok(s) => vec![s.parse().expect("SHARDKV_SEED is a number")],
        Err(_) => (0..SEQUENCES).collect(),
    };
    for seed in seeds {
        if std::panic::catch_unwind(|| run_seed(seed)).is_err() {
            panic!(
                "seed {seed} failed; replay: SHARDKV_SEED={seed} cargo test -p shardkv-ctrl \
                 --test property"
            );
        }
    }
}

/// Goal: the random commands exercise both accepted and refused paths of every kind.
/// Method: count outcomes over a few hundred sequences.
#[test]
fn random_commands_cover_accepts_and_refusals() {
    let mut outcomes: BTreeMap<(&str, bool), u64> = BTreeMap::new();
    for seed in 0..200 {
        let mut rng = Rng::new(seed);
        let mut ctrl = ShardCtrl::new(16).expect("valid shard count");
        for _ in 0..OPS_PER_SEQUENCE {
            let cmd = random_command(&mut rng, ctrl.latest());
            let kind = match cmd {
                CtrlCommand::Join { .. } => "join",
                CtrlCommand::Leave { .. } => "leave",
                CtrlCommand::Move { .. } => "move",
                CtrlCommand::Servers { .. } => "servers",
            };
            let ok = ctrl.execute(&cmd).is_ok();
            *outcomes.entry((kind, ok)).or_insert(0) += 1;
        }
    }
    for kind in ["join", "leave", "move", "servers"] {
        for ok in [true, false] {
            let n = outcomes.get(&(kind, ok)).copied().unwrap_or(0);
            assert!(n >= 100, "{kind} ok={ok} seen only {n} times: {outcomes:?}");
        }
    }
}
