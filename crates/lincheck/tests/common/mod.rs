//! Builders for hand-written histories: `put(client, key, value, call, ret)` and friends.
#![allow(dead_code)]

use shardkv_lincheck::{Op, OpResult, Operation, Output};

pub fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A completed `op` that answered `output`.
pub fn done(client: u64, op: Op, call: u64, ret: u64, output: Output) -> Operation {
    Operation {
        client,
        op,
        call_ns: call,
        result: OpResult::Ok {
            output,
            return_ns: ret,
        },
    }
}

/// A completed Get that read `seen` (`None` = missing key).
pub fn get(client: u64, key: &str, call: u64, ret: u64, seen: Option<&str>) -> Operation {
    let op = Op::Get { key: bytes(key) };
    done(client, op, call, ret, Output::Get(seen.map(bytes)))
}

pub fn put(client: u64, key: &str, value: &str, call: u64, ret: u64) -> Operation {
    let op = Op::Put {
        key: bytes(key),
        value: bytes(value),
    };
    done(client, op, call, ret, Output::Put)
}

pub fn append(client: u64, key: &str, value: &str, call: u64, ret: u64) -> Operation {
    let op = Op::Append {
        key: bytes(key),
        value: bytes(value),
    };
    done(client, op, call, ret, Output::Append)
}

pub fn del(client: u64, key: &str, call: u64, ret: u64) -> Operation {
    done(
        client,
        Op::Delete { key: bytes(key) },
        call,
        ret,
        Output::Delete,
    )
}

/// A completed delete that said whether the key existed.
pub fn deleted(client: u64, key: &str, call: u64, ret: u64, existed: bool) -> Operation {
    done(
        client,
        Op::Delete { key: bytes(key) },
        call,
        ret,
        Output::Deleted { existed },
    )
}

/// A completed CAS from `expected` (`None` = must be missing) to `new`.
pub fn cas(
    client: u64,
    key: &str,
    expected: Option<&str>,
    new: &str,
    call: u64,
    ret: u64,
    swapped: bool,
) -> Operation {
    let op = Op::Cas {
        key: bytes(key),
        expected: expected.map(bytes),
        new: bytes(new),
    };
    done(client, op, call, ret, Output::Cas { swapped })
}

/// The same operation with an unknown outcome (timed out).
pub fn unknown(mut operation: Operation) -> Operation {
    operation.result = OpResult::Unknown;
    operation
}
