//! The sharded key-value service: the state machine of one shard group ([`ShardKv`]) and
//! what its leader does to move shards ([`Duties`]), hosted together as a [`ShardGroup`].
//!
//! Contract (DESIGN.md §4):
//! - A key's shard is `shard_of_key(key, shards)`: Redis Cluster's slot, then contiguous slot
//!   ranges. The controller assigns shards to groups in numbered configs.
//! - A group enters every config through its log, one at a time, in order, never skipping
//!   one, and only when no shard is in migration. At that log position a lost shard stops
//!   serving (`BePulled`, frozen) and a gained one starts `Pulling` (or serves at once, empty,
//!   if nobody owned it).
//! - Ownership is checked when a command is applied (and when a read is served): a key of a
//!   shard not `Serving` here gets `WrongGroup`, which is not recorded in the session.
//! - A shard moves with its data and the old owner's session table (with the sessions it
//!   dropped last, and whether it dropped any, so a retry is never applied twice after a
//!   move: once dropped sessions are involved, the new owner's older sessions no longer
//!   vouch for a retry), installed through the new owner's log (idempotent by config number
//!   and shard), and serves as soon as it is installed. A retry the sessions cannot answer
//!   gets `WrongGroup` before `SessionExpired` where its shard is not served. The old owner deletes its copy, through its log, only after the new owner
//!   confirmed the install.
//! - A shard given to nobody (every group left) is `Parked` at its last owner, frozen, not
//!   holding up configs; the group a later config gives it to takes it from there. Every
//!   group applies every config, so every group knows where each parked shard is.
//! - The duties are derived on the current leader from replicated state, so a leader change
//!   or a restart resumes them.
//!
//! One module per step: [`reconfigure`](crate::ShardKv::accepts) (config change), `pull`
//! (the answers the other group needs), `install`, `delete`; `duties` drives them.

mod call;
mod chunk;
mod command;
mod delete;
mod duties;
mod group;
mod install;
mod machine;
mod pull;
mod reconfigure;
mod shard;

pub use call::{Call, Progress};
pub use chunk::{Cursor, ShardChunk};
pub use command::{ShardInternal, ShardOutput, ShardQuery, ShardRequest, kv_request};
pub use duties::{CtrlRequest, Duties, DutyAnswer, DutyOptions, DutyRequest, Outbound, Task};
pub use group::ShardGroup;
pub use machine::ShardKv;
pub use shard::{Shard, ShardState, Source};
pub use shardkv_client::Naming;
