//! The shard controller: a deterministic state machine, replicated by `shardkv-rsm`, that
//! holds the numbered history of shard → group assignments.
//!
//! It is not a server and does no I/O: it implements [`shardkv_rsm::StateMachine`] (apply a
//! [`CtrlCommand`], answer a [`CtrlQuery`]) and is snapshotted through serde.
//!
//! Contract:
//! - The shard count is fixed when the cluster is created ([`ShardCtrl::new`]: a power of two
//!   in `1..=SHARDS_MAX`; `Default` gives `SHARDS_DEFAULT` = 64). Keys map to shards by
//!   `shardkv_types::shard_of_key`.
//! - Config 0 has no groups and every shard on [`GID_NONE`] (gid 0, "unassigned"). Each
//!   accepted Join, Leave or Move makes exactly one new config numbered latest + 1; configs
//!   are never changed once made, so `Query { num }` returns exactly what it returned before.
//!   `Query { num: None }`, or a number past the latest, gives the latest.
//! - A bad command (joining a member, gid 0, no servers or no groups; leaving a non-member,
//!   no gids or a gid twice; moving to a non-member or a shard out of range) is refused with a
//!   [`CtrlError`] *output* and changes nothing: every replica records the same answer.
//! - After Join and Leave the shards are rebalanced ([`rebalance`]): counts per group differ
//!   by at most one, every shard is owned by a member (when there is one), and the fewest
//!   shards possible move. With no members every shard is [`GID_NONE`]. Move assigns one
//!   shard exactly and does not rebalance; a later Join or Leave may move it again.
//! - Deterministic: only ordered maps, ties broken by gid; the same commands give
//!   byte-identical state on every replica.
//!
//! ```
//! use shardkv_ctrl::{CtrlCommand, CtrlQuery, CtrlReply, ShardCtrl};
//! use shardkv_types::{ConfigNum, Gid};
//!
//! let mut ctrl = ShardCtrl::new(4).expect("4 is a valid shard count");
//! let groups = [(Gid(1), vec!["a:1".to_string()]), (Gid(2), vec!["b:1".to_string()])];
//! let out = ctrl.execute(&CtrlCommand::Join { groups: groups.into() });
//! assert_eq!(out, Ok(CtrlReply::Applied { num: ConfigNum(1) }));
//! let latest = ctrl.latest();
//! assert_eq!(latest.shards_of(Gid(1)).len(), 2);
//! assert!(ctrl.execute(&CtrlCommand::Leave { gids: vec![Gid(9)] }).is_err());
//! let Ok(CtrlReply::Config(c0)) = ctrl.read(&CtrlQuery { num: Some(ConfigNum(0)) }) else {
//!     panic!("a query answers with a config");
//! };
//! assert!(c0.groups.is_empty());
//! ```

mod command;
mod config;
mod machine;
mod rebalance;

pub use command::{CtrlCommand, CtrlError, CtrlOutput, CtrlQuery, CtrlReply};
pub use config::{Config, GID_NONE};
pub use machine::ShardCtrl;
pub use rebalance::{moves_min, rebalance};
