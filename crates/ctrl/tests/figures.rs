//! Figures for the design notes, printed (see them with `cargo test -p shardkv-ctrl --test
//! figures -- --nocapture`): the postcard size of a 64-shard config by group count, and the
//! shards moved by each join and leave going from 1 to 10 groups and back. Each figure is
//! also checked loosely, so the test fails if they drift far.

use shardkv_ctrl::{CtrlCommand, ShardCtrl};
use shardkv_types::Gid;
use std::collections::BTreeMap;

/// Three realistic `host:port` addresses for group `gid`.
fn servers(gid: u64) -> Vec<String> {
    (1..=3)
        .map(|i| format!("10.0.{}.{}:{}", gid / 256, gid % 256, 7000 + i))
        .collect()
}

fn joined(groups: u64) -> ShardCtrl {
    let mut ctrl = ShardCtrl::new(64).expect("valid shard count");
    let groups: BTreeMap<Gid, Vec<String>> = (1..=groups).map(|g| (Gid(g), servers(g))).collect();
    assert!(ctrl.execute(&CtrlCommand::Join { groups }).is_ok());
    ctrl
}

/// Goal: know what a config costs on the wire and in a snapshot. Method: encode the latest
/// config of a 64-shard controller with 2, 10 and 100 groups of 3 servers each.
#[test]
fn config_sizes_for_64_shards() {
    println!("postcard size of one config, 64 shards, 3 servers per group:");
    for groups in [2, 10, 100] {
        let ctrl = joined(groups);
        let bytes = postcard::to_allocvec(ctrl.latest()).expect("encodes").len();
        println!("  {groups:>3} groups: {bytes:>5} bytes");
        // 64 one- or two-byte gids plus roughly 50 bytes per group.
        assert!(bytes < 64 * 2 + groups as usize * 60 + 16, "{bytes}");
    }
}

/// Goal: know how many shards each membership change moves. Method: 64 shards, join groups
/// one at a time from 1 to 10, then leave them (highest first) back to 1; each step moves
/// exactly the minimum.
#[test]
fn movement_per_join_and_leave_for_64_shards() {
    let mut ctrl = ShardCtrl::new(64).expect("valid shard count");
    let mut report = Vec::new();
    let mut step = |ctrl: &mut ShardCtrl, cmd: CtrlCommand, label: String| {
        let before = ctrl.latest().clone();
        assert!(ctrl.execute(&cmd).is_ok(), "{label}");
        let moved = ctrl.latest().moved_from(&before);
        report.push(format!("  {label:<16} moved {moved:>2}"));
        moved
    };
    for g in 1..=10 {
        let groups = [(Gid(g), servers(g))].into();
        let moved = step(
            &mut ctrl,
            CtrlCommand::Join { groups },
            format!("join {g} ({g} groups)"),
        );
        // Joining the g-th group moves 64/g shards, rounded one way or the other.
        if g > 1 {
            assert!(moved == 64 / g as usize || moved == 64usize.div_ceil(g as usize));
        }
    }
    for g in (2..=10).rev() {
        let gids = vec![Gid(g)];
        let label = format!("leave {g} ({} left)", g - 1);
        let moved = step(&mut ctrl, CtrlCommand::Leave { gids }, label);
        // The leaver held 64/g shards, rounded one way or the other; only those move.
        assert!(moved == 64 / g as usize || moved == 64usize.div_ceil(g as usize));
    }
    println!("shards moved per change, 64 shards:\n{}", report.join("\n"));
}
