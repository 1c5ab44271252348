//! The bytes a member writes to its WAL and snapshots and sends to its peers must not change
//! when the Rust types change shape: a restarted member reads what an older build wrote,
//! and members of two builds talk to each other during an upgrade. Each case is a value and
//! its encoding as stored by the build before byte fields were encoded as byte strings
//! (`serde_bytes`, one length and a copy instead of one element at a time; the same bytes in
//! postcard): it must still encode to exactly those bytes and decode to the same value.

use serde::Serialize;
use serde::de::DeserializeOwned;
use shardkv_kv::{ByteBuf, KvCommand, KvOutput, KvQuery, KvStore, SetWhen};
use shardkv_raft::{Body, Message};
use shardkv_rsm::{NoInternal, Proposal};
use shardkv_types::{ClientId, Entry, EntryKind, LogIndex, NodeId, Seq, SnapshotMeta, Term};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `value` encodes to `stored` (hex, `<v300>` standing for [`value_300`]) and `stored`
/// decodes to `value`.
fn same_as_stored<T>(what: &str, value: &T, stored: &str)
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
{
    let stored = stored.replace("<v300>", &hex(&value_300()));
    let now = postcard::to_allocvec(value).expect("encodes");
    assert_eq!(hex(&now), stored, "{what}: the encoding changed");
    let back: T = postcard::from_bytes(&unhex(&stored)).expect("the stored encoding decodes");
    // Debug, not PartialEq: a proposal has no equality.
    assert_eq!(
        format!("{back:?}"),
        format!("{value:?}"),
        "{what}: the stored encoding decodes to another value"
    );
}

/// 300 bytes: its length takes two bytes as a varint.
fn value_300() -> Vec<u8> {
    (0..300u32).map(|i| (i % 251) as u8).collect()
}

fn put_proposal() -> Proposal<KvCommand, NoInternal> {
    Proposal::Client {
        client: ClientId(42),
        seq: Seq(9),
        retry: false,
        cmd: KvCommand::Put {
            key: b"k1".to_vec(),
            value: value_300(),
        },
    }
}

fn put_entry() -> Entry {
    Entry {
        term: Term(3),
        index: LogIndex(7),
        kind: EntryKind::Normal,
        data: postcard::to_allocvec(&put_proposal()).expect("encodes"),
    }
}

const PUT_PROPOSAL: &str = "002a090000026b31ac02<v300>";
const PUT_ENTRY: &str = "030700b602002a090000026b31ac02<v300>";
const COMMANDS: &str = "04010161047461696c02016403016301036f6c64036e65770301630000";
const OUTPUTS: &str = "060001ac02<v300>0000010200010363757202010003e807";
const APPEND: &str = "01020302060202030700b602002a090000026b31ac02<v300>03080100060b";
const STORE: &str = "030009656d707479206b6579026b3000026b31ac02<v300>";
const SNAPSHOT_CHUNK: &str = "01030306000000008020ac02<v300>00";

#[test]
fn a_put_as_the_log_stores_it_encodes_as_before() {
    same_as_stored("put proposal", &put_proposal(), PUT_PROPOSAL);
    same_as_stored("put entry", &put_entry(), PUT_ENTRY);
}

#[test]
fn every_command_and_output_encodes_as_before() {
    let commands = vec![
        KvCommand::Append {
            key: b"a".to_vec(),
            value: b"tail".to_vec(),
        },
        KvCommand::Delete { key: b"d".to_vec() },
        KvCommand::Cas {
            key: b"c".to_vec(),
            expected: Some(b"old".to_vec()),
            new: b"new".to_vec(),
        },
        KvCommand::Cas {
            key: b"c".to_vec(),
            expected: None,
            new: Vec::new(),
        },
    ];
    same_as_stored("commands", &commands, COMMANDS);
    let outputs = vec![
        KvOutput::Value(Some(value_300())),
        KvOutput::Value(None),
        KvOutput::Done,
        KvOutput::Cas {
            swapped: false,
            current: Some(b"cur".to_vec()),
        },
        KvOutput::Cas {
            swapped: true,
            current: None,
        },
        KvOutput::CasFailed { bytes: 1000 },
    ];
    same_as_stored("outputs", &outputs, OUTPUTS);
}

#[test]
fn raft_messages_with_entries_and_snapshot_chunks_encode_as_before() {
    let append = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(6),
            prev_log_term: Term(2),
            entries: vec![put_entry(), Entry::noop(Term(3), LogIndex(8))],
            leader_commit: LogIndex(6),
            seq: 11,
        },
    };
    same_as_stored("append", &append, APPEND);
    let chunk = Message {
        from: NodeId(1),
        to: NodeId(3),
        term: Term(3),
        body: Body::InstallSnapshot {
            meta: SnapshotMeta::default(),
            offset: 4096,
            data: value_300(),
            done: false,
        },
    };
    same_as_stored("snapshot chunk", &chunk, SNAPSHOT_CHUNK);
}

#[test]
fn a_store_as_a_snapshot_holds_it_encodes_as_before() {
    let mut store = KvStore::default();
    store.insert(b"k1".to_vec(), value_300());
    store.insert(b"k0".to_vec(), Vec::new());
    store.insert(Vec::new(), b"empty key".to_vec());
    same_as_stored("store", &store, STORE);
}

/// The answer a Delete gives since it says whether the key existed: appended as the last
/// variant, so every older output keeps its encoding (the case above) and this one is
/// pinned here.
const DELETED: &str = "0204010400";

#[test]
fn a_delete_answer_encodes_after_every_older_output() {
    let outputs = vec![
        KvOutput::Deleted { existed: true },
        KvOutput::Deleted { existed: false },
    ];
    same_as_stored("deleted", &outputs, DELETED);
}

/// The Redis front end's commands, queries and outputs: appended after every older
/// variant (so those keep their encodings, the cases above), and pinned here so later
/// changes keep these bytes too.
const REDIS_COMMANDS: &str = "090401730176000004017300010104017301780200050167060161047461696c07016e0307016efeffffffffffffffff010802047b747d61047b747d620902047b747d610131047b747d6200";
const REDIS_QUERIES: &str = "03010201610162020201610161030173";
const REDIS_OUTPUTS: &str = "07050105d804060201017600070100070001016f0809";

#[test]
fn the_redis_commands_queries_and_outputs_encode_as_pinned() {
    let bufs =
        |ks: &[&str]| -> Vec<ByteBuf> { ks.iter().map(|k| ByteBuf::from(k.as_bytes())).collect() };
    let commands = vec![
        KvCommand::Set {
            key: b"s".to_vec(),
            value: b"v".to_vec(),
            when: SetWhen::Always,
            get: false,
        },
        KvCommand::Set {
            key: b"s".to_vec(),
            value: Vec::new(),
            when: SetWhen::Absent,
            get: true,
        },
        KvCommand::Set {
            key: b"s".to_vec(),
            value: b"x".to_vec(),
            when: SetWhen::Present,
            get: false,
        },
        KvCommand::GetDel { key: b"g".to_vec() },
        KvCommand::AppendLen {
            key: b"a".to_vec(),
            value: b"tail".to_vec(),
        },
        KvCommand::IncrBy {
            key: b"n".to_vec(),
            by: -2,
        },
        KvCommand::IncrBy {
            key: b"n".to_vec(),
            by: i64::MAX,
        },
        KvCommand::DeleteMany {
            keys: bufs(&["{t}a", "{t}b"]),
        },
        KvCommand::PutMany {
            pairs: vec![
                (ByteBuf::from(&b"{t}a"[..]), ByteBuf::from(&b"1"[..])),
                (ByteBuf::from(&b"{t}b"[..]), ByteBuf::from(Vec::new())),
            ],
        },
    ];
    same_as_stored("redis commands", &commands, REDIS_COMMANDS);
    let queries = vec![
        KvQuery::GetMany {
            keys: bufs(&["a", "b"]),
        },
        KvQuery::Exists {
            keys: bufs(&["a", "a"]),
        },
        KvQuery::StrLen { key: b"s".to_vec() },
    ];
    same_as_stored("redis queries", &queries, REDIS_QUERIES);
    let outputs = vec![
        KvOutput::Int(-1),
        KvOutput::Int(300),
        KvOutput::Values(vec![Some(ByteBuf::from(&b"v"[..])), None]),
        KvOutput::Set {
            applied: true,
            old: None,
        },
        KvOutput::Set {
            applied: false,
            old: Some(b"o".to_vec()),
        },
        KvOutput::NotAnInteger,
        KvOutput::Overflow,
    ];
    same_as_stored("redis outputs", &outputs, REDIS_OUTPUTS);
}

/// Pipelines (appended after every older variant of each type), pinned.
const PIPELINE_COMMAND: &str = "0a02000161013107016e02";
const PIPELINE_QUERY: &str = "040200016103016e";
const PIPELINE_OUTPUT: &str = "0a02010502";
/// `KvOutput::TooLarge { bytes: 1 MiB + 1, max: 1 MiB }`, appended after `Outputs`.
const TOO_LARGE_OUTPUT: &str = "0b818040808040";

#[test]
fn pipelines_encode_as_pinned() {
    let command = KvCommand::Pipeline {
        cmds: vec![
            KvCommand::Put {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
            },
            KvCommand::IncrBy {
                key: b"n".to_vec(),
                by: 1,
            },
        ],
    };
    same_as_stored("pipeline command", &command, PIPELINE_COMMAND);
    let query = KvQuery::Pipeline {
        queries: vec![
            KvQuery::Get { key: b"a".to_vec() },
            KvQuery::StrLen { key: b"n".to_vec() },
        ],
    };
    same_as_stored("pipeline query", &query, PIPELINE_QUERY);
    let output = KvOutput::Outputs(vec![KvOutput::Done, KvOutput::Int(1)]);
    same_as_stored("pipeline output", &output, PIPELINE_OUTPUT);
    let too_large = KvOutput::TooLarge {
        bytes: (1 << 20) + 1,
        max: 1 << 20,
    };
    same_as_stored(
        "a pipeline's append too large",
        &too_large,
        TOO_LARGE_OUTPUT,
    );
}
