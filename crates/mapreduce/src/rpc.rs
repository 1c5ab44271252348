//! The gRPC protocol between coordinator and workers (`proto/mr.proto`), generated at build
//! time by `tonic-prost-build` from a descriptor set that the pure-Rust `protox` compiler
//! produces, so building needs no `protoc`.

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("shardkv.mapreduce.v1");
}

use crate::scheduler::TaskKind;

impl From<TaskKind> for pb::TaskKind {
    fn from(kind: TaskKind) -> Self {
        match kind {
            TaskKind::Map => pb::TaskKind::Map,
            TaskKind::Reduce => pb::TaskKind::Reduce,
        }
    }
}

/// The task kind of a wire value, `None` for unspecified or unknown values.
pub fn task_kind_from_wire(value: i32) -> Option<TaskKind> {
    match pb::TaskKind::try_from(value).ok()? {
        pb::TaskKind::Map => Some(TaskKind::Map),
        pb::TaskKind::Reduce => Some(TaskKind::Reduce),
        pb::TaskKind::Unspecified => None,
    }
}
