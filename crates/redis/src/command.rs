//! Commands: a request's arguments parsed into what it asks for, with Redis's own error
//! texts for a wrong argument count, a syntax error or a bad integer, so client libraries
//! that match on them behave as against Redis.

use crate::auth::Credentials;
use crate::reply::Reply;
use bytes::Bytes;
use shardkv_kv::parse_canonical_i64;

/// What `SET` does when the key exists or not (`NX`: `Absent`, `XX`: `Present`): the KV
/// state machine's own condition.
pub use shardkv_kv::SetWhen;

/// How a set-like command answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetAnswer {
    /// `SET`: `OK`, or nil when a condition did not hold.
    Ok,
    /// `SETNX`: 1 if it set, 0 if not.
    Bool,
    /// `SET ... GET`, `GETSET`: the old value (nil if none).
    Old,
}

/// A `CLUSTER` subcommand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterCmd {
    Slots,
    Shards,
    Nodes,
    Info,
    MyId,
    KeySlot(Bytes),
}

/// A `COMMAND` subcommand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandCmd {
    /// `COMMAND`, `COMMAND INFO [name ...]`: the command table (of the named ones).
    Info(Vec<Bytes>),
    Count,
    /// `COMMAND DOCS [name ...]`: answered with an empty map (docs are optional).
    Docs,
}

/// One parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ping(Option<Bytes>),
    Echo(Bytes),
    /// `AUTH [username] password`.
    Auth(Credentials),
    /// `HELLO [protover [AUTH u p] [SETNAME name]]`.
    Hello {
        protover: Option<i64>,
        auth: Option<Credentials>,
        setname: Option<Bytes>,
    },
    Select(i64),
    Quit,
    ClientSetName(Bytes),
    ClientGetName,
    ClientId,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`: accepted and ignored, as libraries send it.
    ClientSetInfo,
    Command(CommandCmd),
    ConfigGet(Vec<Bytes>),
    Info(Vec<Bytes>),
    DbSize,
    Cluster(ClusterCmd),
    Asking,
    ReadOnly,
    ReadWrite,
    Get(Bytes),
    Set {
        key: Bytes,
        value: Bytes,
        when: SetWhen,
        answer: SetAnswer,
    },
    GetDel(Bytes),
    Append(Bytes, Bytes),
    StrLen(Bytes),
    Del(Vec<Bytes>),
    Exists(Vec<Bytes>),
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`: add `by` to the integer at the key.
    IncrBy(Bytes, i64),
    MGet(Vec<Bytes>),
    MSet(Vec<(Bytes, Bytes)>),
}

impl Command {
    /// The keys the command reads or writes (all must share one slot).
    pub fn keys(&self) -> Vec<&Bytes> {
        match self {
            Command::Get(k)
            | Command::Set { key: k, .. }
            | Command::GetDel(k)
            | Command::Append(k, _)
            | Command::StrLen(k)
            | Command::IncrBy(k, _) => vec![k],
            Command::Del(ks) | Command::Exists(ks) | Command::MGet(ks) => ks.iter().collect(),
            Command::MSet(pairs) => pairs.iter().map(|(k, _)| k).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the command changes data: a write that may have applied is never answered
    /// with an error a cluster client would retry on its own (`session::failure`).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Command::Set { .. }
                | Command::GetDel(_)
                | Command::Append(..)
                | Command::Del(_)
                | Command::IncrBy(..)
                | Command::MSet(_)
        )
    }
}

/// The commands this front end knows, lowercase, with Redis's arity (negative: at least
/// that many arguments, the name included) and whether they write: what `COMMAND` and
/// `COMMAND COUNT` answer.
pub const COMMANDS: &[(&str, i64, bool)] = &[
    ("append", 3, true),
    ("asking", 1, false),
    ("auth", -2, false),
    ("client", -2, false),
    ("cluster", -2, false),
    ("command", -1, false),
    ("config", -2, false),
    ("dbsize", 1, false),
    ("decr", 2, true),
    ("decrby", 3, true),
    ("del", -2, true),
    ("echo", 2, false),
    ("exists", -2, false),
    ("get", 2, false),
    ("getdel", 2, true),
    ("getset", 3, true),
    ("hello", -1, false),
    ("incr", 2, true),
    ("incrby", 3, true),
    ("info", -1, false),
    ("mget", -2, false),
    ("mset", -3, true),
    ("ping", -1, false),
    ("quit", -1, false),
    ("readonly", 1, false),
    ("readwrite", 1, false),
    ("select", 2, false),
    ("set", -3, true),
    ("setnx", 3, true),
    ("strlen", 2, false),
];

/// Redis's "wrong number of arguments" error.
pub fn arity_error(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

/// Redis's error for an argument that must be an integer.
pub fn not_an_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// An integer argument, parsed as Redis does (`string2ll`: an optional `-`, no `+`, no
/// blanks, no leading zeros): the rule the KV state machine's `IncrBy` applies to values.
fn int_arg(b: &Bytes) -> Result<i64, Reply> {
    parse_canonical_i64(b).ok_or_else(not_an_integer)
}

fn upper(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_uppercase()
}

/// The name of the command `args` asks for (lower case, from [`COMMANDS`]), once it is known
/// and has an argument count its arity allows; else the reply that refuses it. The first
/// check of [`parse`], and all Redis checks before it asks for a password.
pub fn command_name(args: &[Bytes]) -> Result<&'static str, Reply> {
    let Some((name, rest)) = args.split_first() else {
        return Err(Reply::err("empty command"));
    };
    let lname = String::from_utf8_lossy(name).to_ascii_lowercase();
    let Some(&(known, arity, _)) = COMMANDS.iter().find(|(n, _, _)| *n == lname) else {
        return Err(unknown_command(name, rest));
    };
    let n = args.len() as i64;
    if (arity > 0 && n != arity) || (arity < 0 && n < -arity) {
        return Err(arity_error(known));
    }
    Ok(known)
}

/// Parses a request (`args[0]` is the command's name, any case). `Err` is the reply that
/// refuses it; the connection stays open.
pub fn parse(args: &[Bytes]) -> Result<Command, Reply> {
    let lname = command_name(args)?;
    let rest = &args[1..];
    let key = || rest[0].clone();
    Ok(match lname {
        "ping" => match rest {
            [] => Command::Ping(None),
            [m] => Command::Ping(Some(m.clone())),
            _ => return Err(arity_error("ping")),
        },
        "echo" => Command::Echo(key()),
        "auth" => match rest {
            [password] => Command::Auth(Credentials {
                user: None,
                password: password.clone(),
            }),
            [user, password] => Command::Auth(Credentials {
                user: Some(user.clone()),
                password: password.clone(),
            }),
            _ => return Err(syntax_error()),
        },
        "hello" => parse_hello(rest)?,
        "select" => Command::Select(int_arg(&rest[0])?),
        "quit" => Command::Quit,
        "client" => parse_client(rest)?,
        "command" => parse_command(rest)?,
        "config" => match upper(&rest[0]).as_str() {
            "GET" if rest.len() >= 2 => Command::ConfigGet(rest[1..].to_vec()),
            "GET" => return Err(arity_error("config|get")),
            _ => return Err(unknown_subcommand(&rest[0], "CONFIG")),
        },
        "info" => Command::Info(rest.to_vec()),
        "dbsize" => Command::DbSize,
        "cluster" => parse_cluster(rest)?,
        "asking" => Command::Asking,
        "readonly" => Command::ReadOnly,
        "readwrite" => Command::ReadWrite,
        "get" => Command::Get(key()),
        "set" => parse_set(rest)?,
        "setnx" => Command::Set {
            key: key(),
            value: rest[1].clone(),
            when: SetWhen::Absent,
            answer: SetAnswer::Bool,
        },
        "getset" => Command::Set {
            key: key(),
            value: rest[1].clone(),
            when: SetWhen::Always,
            answer: SetAnswer::Old,
        },
        "getdel" => Command::GetDel(key()),
        "append" => Command::Append(key(), rest[1].clone()),
        "strlen" => Command::StrLen(key()),
        "del" => Command::Del(rest.to_vec()),
        "exists" => Command::Exists(rest.to_vec()),
        "incr" => Command::IncrBy(key(), 1),
        "decr" => Command::IncrBy(key(), -1),
        "incrby" => Command::IncrBy(key(), int_arg(&rest[1])?),
        "decrby" => {
            let by = int_arg(&rest[1])?;
            let neg = by
                .checked_neg()
                .ok_or_else(|| Reply::err("decrement would overflow"))?;
            Command::IncrBy(key(), neg)
        }
        "mget" => Command::MGet(rest.to_vec()),
        "mset" => {
            if !rest.len().is_multiple_of(2) {
                return Err(arity_error("mset"));
            }
            Command::MSet(
                rest.chunks(2)
                    .map(|kv| (kv[0].clone(), kv[1].clone()))
                    .collect(),
            )
        }
        other => unreachable!("{other} is in COMMANDS but not parsed"),
    })
}

/// Redis 7's text for a command it does not know.
fn unknown_command(name: &[u8], rest: &[Bytes]) -> Reply {
    let mut text = format!(
        "unknown command '{}', with args beginning with: ",
        clip(name)
    );
    for a in rest.iter().take(4) {
        text.push_str(&format!("'{}' ", clip(a)));
    }
    Reply::err(text)
}

fn unknown_subcommand(sub: &[u8], cmd: &str) -> Reply {
    Reply::err(format!(
        "unknown subcommand '{}'. Try {cmd} HELP.",
        clip(sub)
    ))
}

/// An argument quoted in an error: printable, at most 128 bytes.
fn clip(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(128)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn parse_set(rest: &[Bytes]) -> Result<Command, Reply> {
    let (mut when, mut answer) = (SetWhen::Always, SetAnswer::Ok);
    for opt in &rest[2..] {
        match upper(opt).as_str() {
            "NX" if when == SetWhen::Always => when = SetWhen::Absent,
            "XX" if when == SetWhen::Always => when = SetWhen::Present,
            "GET" => answer = SetAnswer::Old,
            "EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL" => {
                return Err(Reply::err(
                    "shardkv keys do not expire: EX, PX, EXAT, PXAT and KEEPTTL are not supported",
                ));
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(Command::Set {
        key: rest[0].clone(),
        value: rest[1].clone(),
        when,
        answer,
    })
}

fn parse_hello(rest: &[Bytes]) -> Result<Command, Reply> {
    let Some((ver, opts)) = rest.split_first() else {
        return Ok(Command::Hello {
            protover: None,
            auth: None,
            setname: None,
        });
    };
    let protover = parse_canonical_i64(ver)
        .ok_or_else(|| Reply::err("Protocol version is not an integer or out of range"))?;
    let mut setname = None;
    let mut auth = None;
    let mut i = 0;
    while i < opts.len() {
        match upper(&opts[i]).as_str() {
            "AUTH" if i + 2 < opts.len() => {
                auth = Some(Credentials {
                    user: Some(opts[i + 1].clone()),
                    password: opts[i + 2].clone(),
                });
                i += 3;
            }
            "SETNAME" if i + 1 < opts.len() => {
                setname = Some(opts[i + 1].clone());
                i += 2;
            }
            _ => {
                return Err(Reply::err(format!(
                    "Syntax error in HELLO option '{}'",
                    clip(&opts[i])
                )));
            }
        }
    }
    Ok(Command::Hello {
        protover: Some(protover),
        auth,
        setname,
    })
}

fn parse_client(rest: &[Bytes]) -> Result<Command, Reply> {
    let sub = upper(&rest[0]);
    let arity = |want: usize, name: &str| {
        if rest.len() == want {
            Ok(())
        } else {
            Err(arity_error(name))
        }
    };
    match sub.as_str() {
        "SETNAME" => {
            arity(2, "client|setname")?;
            let name = &rest[1];
            if name.iter().any(|&b| b <= b' ' || b > b'~') {
                return Err(Reply::err(
                    "Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            Ok(Command::ClientSetName(name.clone()))
        }
        "GETNAME" => arity(1, "client|getname").map(|_| Command::ClientGetName),
        "ID" => arity(1, "client|id").map(|_| Command::ClientId),
        "SETINFO" => arity(3, "client|setinfo").map(|_| Command::ClientSetInfo),
        _ => Err(unknown_subcommand(&rest[0], "CLIENT")),
    }
}

fn parse_command(rest: &[Bytes]) -> Result<Command, Reply> {
    let Some(sub) = rest.first() else {
        return Ok(Command::Command(CommandCmd::Info(Vec::new())));
    };
    Ok(Command::Command(match upper(sub).as_str() {
        "COUNT" if rest.len() == 1 => CommandCmd::Count,
        "COUNT" => return Err(arity_error("command|count")),
        "INFO" => CommandCmd::Info(rest[1..].to_vec()),
        "DOCS" => CommandCmd::Docs,
        _ => return Err(unknown_subcommand(sub, "COMMAND")),
    }))
}

fn parse_cluster(rest: &[Bytes]) -> Result<Command, Reply> {
    let sub = upper(&rest[0]);
    let bare = |c: ClusterCmd, name: &str| {
        if rest.len() == 1 {
            Ok(Command::Cluster(c))
        } else {
            Err(arity_error(name))
        }
    };
    match sub.as_str() {
        "SLOTS" => bare(ClusterCmd::Slots, "cluster|slots"),
        "SHARDS" => bare(ClusterCmd::Shards, "cluster|shards"),
        "NODES" => bare(ClusterCmd::Nodes, "cluster|nodes"),
        "INFO" => bare(ClusterCmd::Info, "cluster|info"),
        "MYID" => bare(ClusterCmd::MyId, "cluster|myid"),
        "KEYSLOT" if rest.len() == 2 => Ok(Command::Cluster(ClusterCmd::KeySlot(rest[1].clone()))),
        "KEYSLOT" => Err(arity_error("cluster|keyslot")),
        _ => Err(unknown_subcommand(&rest[0], "CLUSTER")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Command, Reply> {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        parse(&args)
    }

    fn err(line: &str) -> String {
        match p(line) {
            Err(Reply::Error(e)) => e,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn set_options() {
        let set = |when, answer| Command::Set {
            key: Bytes::from("k"),
            value: Bytes::from("v"),
            when,
            answer,
        };
        assert_eq!(p("set k v"), Ok(set(SetWhen::Always, SetAnswer::Ok)));
        assert_eq!(
            p("SET k v nx get"),
            Ok(set(SetWhen::Absent, SetAnswer::Old))
        );
        assert_eq!(p("set k v XX"), Ok(set(SetWhen::Present, SetAnswer::Ok)));
        assert_eq!(p("setnx k v"), Ok(set(SetWhen::Absent, SetAnswer::Bool)));
        assert_eq!(p("getset k v"), Ok(set(SetWhen::Always, SetAnswer::Old)));
        assert_eq!(err("set k v nx xx"), "ERR syntax error");
        assert_eq!(err("set k v bogus"), "ERR syntax error");
        assert!(err("set k v ex 10").contains("do not expire"));
    }

    #[test]
    fn errors_use_redis_texts() {
        assert_eq!(
            err("get"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            err("get a b"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            err("flushall async"),
            "ERR unknown command 'flushall', with args beginning with: 'async' "
        );
        assert_eq!(
            err("incrby k x"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err("decrby k -9223372036854775808"),
            "ERR decrement would overflow"
        );
        assert_eq!(
            err("mset a 1 b"),
            "ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(
            err("cluster bogus"),
            "ERR unknown subcommand 'bogus'. Try CLUSTER HELP."
        );
        assert_eq!(
            err("cluster keyslot"),
            "ERR wrong number of arguments for 'cluster|keyslot' command"
        );
    }

    #[test]
    fn counters_and_multi_key_commands() {
        assert_eq!(p("incr k"), Ok(Command::IncrBy("k".into(), 1)));
        assert_eq!(p("decrby k 5"), Ok(Command::IncrBy("k".into(), -5)));
        let mset = p("mset a 1 b 2").unwrap();
        assert_eq!(mset.keys(), [&Bytes::from("a"), &Bytes::from("b")]);
        assert!(mset.is_write());
        assert!(!p("mget a b").unwrap().is_write());
    }

    #[test]
    fn hello_takes_a_version_and_options() {
        assert_eq!(
            p("hello 3 setname me"),
            Ok(Command::Hello {
                protover: Some(3),
                auth: None,
                setname: Some("me".into())
            })
        );
        assert_eq!(
            p("hello 3 auth default secret"),
            Ok(Command::Hello {
                protover: Some(3),
                auth: Some(Credentials {
                    user: Some("default".into()),
                    password: "secret".into()
                }),
                setname: None
            })
        );
        assert_eq!(
            p("auth secret"),
            Ok(Command::Auth(Credentials {
                user: None,
                password: "secret".into()
            }))
        );
        assert_eq!(
            p("auth default secret"),
            Ok(Command::Auth(Credentials {
                user: Some("default".into()),
                password: "secret".into()
            }))
        );
        assert!(err("auth a b c").contains("syntax error"));
        assert!(err("auth").contains("wrong number of arguments"));
        assert!(err("hello x").contains("Protocol version"));
        assert!(err("hello 3 bogus").contains("Syntax error in HELLO"));
    }

    #[test]
    fn every_listed_command_parses_with_enough_arguments() {
        for (name, arity, _) in COMMANDS {
            // The fewest arguments the arity allows, with values every command accepts.
            let (fill, n): (&[&str], usize) = match *name {
                "client" => (&["id"], 1),
                "cluster" => (&["info"], 1),
                "config" => (&["get", "x"], 2),
                "select" => (&["0"], 1),
                "incrby" | "decrby" => (&["k", "1"], 2),
                _ => (&["k", "v", "k2", "v2"], arity.unsigned_abs() as usize - 1),
            };
            let mut args = vec![Bytes::from(*name)];
            args.extend(fill[..n].iter().map(|s| Bytes::from(*s)));
            assert!(parse(&args).is_ok(), "{name}: {:?}", parse(&args));
        }
    }
}
