//! One Redis connection's state and the dispatch of its commands: connection commands
//! (`HELLO`, `CLIENT`, `SELECT`, ...) are answered here, cluster commands from the
//! [`ClusterView`], and data commands are checked (one slot, mastered here) and run by a
//! [`Backend`], which owns the connection's shardkv client session — so a write the backend
//! retries internally applies at most once.

use crate::auth::{Access, hello_no_auth, no_auth};
use crate::backend::{Backend, DataOp, DataOut, ServerInfo};
use crate::cluster::ClusterView;
use crate::command::{COMMANDS, ClusterCmd, Command, CommandCmd, SetAnswer, command_name, parse};
use crate::reply::{Protocol, Reply};
use bytes::Bytes;
use shardkv_rsm::Error;
use shardkv_types::key_slot;

/// Redis's answer to `HELLO` with a protocol version other than 2 or 3.
fn no_proto() -> Reply {
    Reply::Error("NOPROTO unsupported protocol version".into())
}

/// What the connection does after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    Continue,
    /// `QUIT`: write the reply, then close.
    Close,
}

/// The state of one connection.
#[derive(Debug)]
pub struct Session {
    id: u64,
    name: Option<Bytes>,
    protocol: Protocol,
    access: Access,
}

impl Session {
    /// A connection with the server-unique `id` (`CLIENT ID`) to a server without a
    /// password.
    pub fn new(id: u64) -> Session {
        Session::with_access(id, Access::new(None))
    }

    /// A connection with the server-unique `id`, which may send commands as `access` allows
    /// ([`crate::auth`]).
    pub fn with_access(id: u64, access: Access) -> Session {
        Session {
            id,
            name: None,
            protocol: Protocol::Resp2,
            access,
        }
    }

    /// Whether the connection may send any command (it gave the password, or none is
    /// required).
    pub fn authenticated(&self) -> bool {
        self.access.passed()
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The protocol replies are encoded in.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn name(&self) -> Option<&Bytes> {
        self.name.as_ref()
    }

    /// `Err` with the refusal when the connection may not send `args` yet: before the
    /// password, Redis checks that the command exists and has its argument count, then
    /// refuses everything but `AUTH`, `HELLO` and `QUIT` before looking at any argument.
    pub(crate) fn gate(&self, args: &[Bytes]) -> Result<(), Reply> {
        if self.access.passed() {
            return Ok(());
        }
        match command_name(args)? {
            "auth" | "hello" | "quit" => Ok(()),
            _ => Err(no_auth()),
        }
    }

    /// Answers one request.
    pub async fn handle<B: Backend>(&mut self, args: &[Bytes], backend: &mut B) -> (Reply, After) {
        if let Err(refusal) = self.gate(args) {
            return (refusal, After::Continue);
        }
        match parse(args) {
            Ok(cmd) => self.answer(cmd, backend).await,
            Err(refusal) => (refusal, After::Continue),
        }
    }

    /// Answers one parsed command.
    pub(crate) async fn answer<B: Backend>(
        &mut self,
        cmd: Command,
        backend: &mut B,
    ) -> (Reply, After) {
        let reply = match cmd {
            Command::Quit => return (Reply::OK, After::Close),
            Command::Auth(c) => match self.access.authenticate(&c) {
                Ok(()) => Reply::OK,
                Err(refusal) => refusal,
            },
            // The version is checked before the password, as Redis does.
            Command::Hello {
                protover: Some(v), ..
            } if !(2..=3).contains(&v) => no_proto(),
            Command::Hello { auth: None, .. } if !self.access.passed() => hello_no_auth(),
            Command::Hello {
                protover,
                auth,
                setname,
            } => match auth.map_or(Ok(()), |c| self.access.authenticate(&c)) {
                Ok(()) => self.hello(protover, setname, backend),
                Err(refusal) => refusal,
            },
            // `gate` refuses these before parsing; this arm keeps `answer` safe on its own.
            _ if !self.access.passed() => no_auth(),
            Command::Ping(None) => Reply::Status("PONG"),
            Command::Ping(Some(m)) | Command::Echo(m) => Reply::Bulk(m),
            Command::Select(0) => Reply::OK,
            Command::Select(_) => Reply::err("SELECT is not allowed in cluster mode"),
            Command::ClientSetName(name) => {
                self.name = (!name.is_empty()).then_some(name);
                Reply::OK
            }
            Command::ClientGetName => Reply::maybe(self.name.clone()),
            Command::ClientId => Reply::Int(self.id as i64),
            Command::ClientSetInfo => Reply::OK,
            Command::Command(c) => command_table(&c),
            Command::ConfigGet(patterns) => config_get(&patterns, &backend.info()),
            Command::Info(sections) => Reply::Text(info_text(&sections, &backend.info())),
            Command::DbSize => match backend.dbsize().await {
                Ok(n) => Reply::Int(n),
                Err(e) => failure(&e, false),
            },
            Command::Cluster(c) => cluster(&c, &backend.view()),
            // Slots move only with their shard, and a process masters a whole shard or none
            // of it: ASKING (for a slot being imported) has nothing to override here.
            Command::Asking | Command::ReadOnly | Command::ReadWrite => Reply::OK,
            data => return (self.data(data, backend).await, After::Continue),
        };
        (reply, After::Continue)
    }

    fn hello<B: Backend>(
        &mut self,
        protover: Option<i64>,
        setname: Option<Bytes>,
        backend: &B,
    ) -> Reply {
        match protover {
            None => {}
            Some(2) => self.protocol = Protocol::Resp2,
            Some(3) => self.protocol = Protocol::Resp3,
            Some(_) => return no_proto(),
        }
        if let Some(name) = setname {
            self.name = Some(name);
        }
        let info = backend.info();
        Reply::Map(vec![
            (Reply::text_bulk("server"), Reply::text_bulk("redis")),
            (
                Reply::text_bulk("version"),
                Reply::text_bulk(info.redis_version),
            ),
            (
                Reply::text_bulk("proto"),
                Reply::Int(self.protocol.version()),
            ),
            (Reply::text_bulk("id"), Reply::Int(self.id as i64)),
            (Reply::text_bulk("mode"), Reply::text_bulk("cluster")),
            (Reply::text_bulk("role"), Reply::text_bulk("master")),
            (Reply::text_bulk("modules"), Reply::Array(Vec::new())),
        ])
    }

    async fn data<B: Backend>(&mut self, cmd: Command, backend: &mut B) -> Reply {
        if let Err(refusal) = admit(&cmd, &backend.view()) {
            return refusal;
        }
        let write = cmd.is_write();
        let (op, shape) = DataOp::of(cmd);
        shape.answer(backend.run(op).await, write)
    }
}

/// The slot of a data command this process may run: all its keys in one slot (else
/// `CROSSSLOT`), a slot this process masters (else the `MOVED` redirection).
pub(crate) fn admit(cmd: &Command, view: &ClusterView) -> Result<u16, Reply> {
    let keys = cmd.keys();
    let slot = key_slot(keys[0]);
    if keys[1..].iter().any(|k| key_slot(k) != slot) {
        return Err(Reply::Error(
            "CROSSSLOT Keys in request don't hash to the same slot".into(),
        ));
    }
    match view.redirect(slot) {
        Some(redirect) => Err(redirect),
        None => Ok(slot),
    }
}

/// How a data command's output becomes its reply.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    Value,
    Values,
    Int,
    Set(SetAnswer),
}

impl Shape {
    /// The reply to a data command of this shape that ended with `out` (`write`: whether
    /// it is a write, for [`failure`]).
    pub(crate) fn answer(self, out: Result<DataOut, Error>, write: bool) -> Reply {
        match out {
            Ok(out) => self.reply(out),
            Err(e) => failure(&e, write),
        }
    }

    fn reply(self, out: DataOut) -> Reply {
        match (self, out) {
            (Shape::Value, DataOut::Value(v)) => Reply::maybe(v),
            (Shape::Values, DataOut::Values(vs)) => {
                Reply::Array(vs.into_iter().map(Reply::maybe).collect())
            }
            (Shape::Int, DataOut::Int(n)) => Reply::Int(n),
            (Shape::Int, DataOut::NotAnInteger) => crate::command::not_an_integer(),
            (Shape::Int, DataOut::Overflow) => Reply::err("increment or decrement would overflow"),
            (Shape::Int, DataOut::TooLarge { bytes, max }) => {
                failure(&Error::TooLarge { bytes, max }, true)
            }
            (Shape::Set(SetAnswer::Ok), DataOut::Set { applied, .. }) => {
                if applied {
                    Reply::OK
                } else {
                    Reply::Nil
                }
            }
            (Shape::Set(SetAnswer::Bool), DataOut::Set { applied, .. }) => {
                Reply::Int(i64::from(applied))
            }
            (Shape::Set(SetAnswer::Old), DataOut::Set { old, .. }) => Reply::maybe(old),
            (Shape::Set(_), DataOut::Done) | (Shape::Value, DataOut::Done) => Reply::OK,
            (shape, out) => Reply::err(format!("internal: {shape:?} answered with {out:?}")),
        }
    }
}

/// A request that was not served, as a Redis error. Cluster clients retry `TRYAGAIN` and
/// `CLUSTERDOWN` on their own, so those codes are used only where nothing applied; a write
/// that may have applied gets a plain `ERR` saying so, because a retry by the client is a
/// new write.
pub fn failure(e: &Error, write: bool) -> Reply {
    if write && e.may_have_applied() {
        return Reply::err(format!(
            "the write's outcome is unknown (it may have applied; retrying it may apply it twice): {e}"
        ));
    }
    match e {
        Error::NoSpace => Reply::err("the cluster's disk is full: writes are refused, reads work"),
        Error::TooLarge { bytes, max } => {
            Reply::err(format!("too large: {bytes} bytes, at most {max}"))
        }
        Error::Invalid { reason } => Reply::err(reason),
        Error::CasFailed { .. } => Reply::err(e.to_string()),
        Error::WrongGroup { .. } => Reply::Error(format!(
            "TRYAGAIN the key's shard is moving between groups: {e}"
        )),
        _ => Reply::Error(format!("TRYAGAIN {e}")),
    }
}

fn cluster(c: &ClusterCmd, view: &ClusterView) -> Reply {
    match c {
        ClusterCmd::Slots => view.slots_reply(),
        ClusterCmd::Shards => view.shards_reply(),
        ClusterCmd::Nodes => Reply::Text(view.nodes_text()),
        ClusterCmd::Info => Reply::Text(view.info_text()),
        ClusterCmd::MyId => view.my_id(),
        ClusterCmd::KeySlot(k) => Reply::Int(i64::from(key_slot(k))),
    }
}

fn command_table(c: &CommandCmd) -> Reply {
    let entry = |&(name, arity, write): &(&str, i64, bool)| {
        let flags = if write { "write" } else { "readonly" };
        let keyed = !matches!(
            name,
            "asking"
                | "client"
                | "cluster"
                | "command"
                | "config"
                | "dbsize"
                | "echo"
                | "hello"
                | "info"
                | "ping"
                | "quit"
                | "readonly"
                | "readwrite"
                | "select"
        );
        let (first, last, step) = match name {
            _ if !keyed => (0, 0, 0),
            "mset" => (1, -1, 2),
            "del" | "exists" | "mget" => (1, -1, 1),
            _ => (1, 1, 1),
        };
        Reply::Array(vec![
            Reply::text_bulk(name),
            Reply::Int(arity),
            Reply::Array(vec![Reply::Status(flags)]),
            Reply::Int(first),
            Reply::Int(last),
            Reply::Int(step),
        ])
    };
    match c {
        CommandCmd::Count => Reply::Int(COMMANDS.len() as i64),
        CommandCmd::Docs => Reply::Map(Vec::new()),
        CommandCmd::Info(names) if names.is_empty() => {
            Reply::Array(COMMANDS.iter().map(entry).collect())
        }
        CommandCmd::Info(names) => Reply::Array(
            names
                .iter()
                .map(|n| {
                    let n = String::from_utf8_lossy(n).to_ascii_lowercase();
                    COMMANDS
                        .iter()
                        .find(|(c, _, _)| *c == n)
                        .map_or(Reply::Nil, entry)
                })
                .collect(),
        ),
    }
}

/// `CONFIG GET pattern...`: a small read-only set, matched by glob.
fn config_get(patterns: &[Bytes], info: &ServerInfo) -> Reply {
    let items = [
        ("appendonly", "yes".to_string()),
        ("appendfsync", "always".to_string()),
        ("save", String::new()),
        ("databases", "1".to_string()),
        ("cluster-enabled", "yes".to_string()),
        ("maxclients", info.max_clients.to_string()),
        ("proto-max-bulk-len", info.max_bulk.to_string()),
        ("port", info.port.to_string()),
    ];
    let mut pairs = Vec::new();
    for (name, value) in &items {
        if patterns.iter().any(|p| glob(p, name.as_bytes())) {
            pairs.push((Reply::text_bulk(*name), Reply::text_bulk(value.clone())));
        }
    }
    Reply::Map(pairs)
}

/// Redis-style glob: `*`, `?`, and literal bytes (case-insensitive, as CONFIG GET is).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob(rest, name) || (!name.is_empty() && glob(pattern, &name[1..]))
        }
        (Some((b'?', rest)), Some((_, name_rest))) => glob(rest, name_rest),
        (Some((p, rest)), Some((n, name_rest))) => {
            p.eq_ignore_ascii_case(n) && glob(rest, name_rest)
        }
        _ => false,
    }
}

/// `INFO [section ...]`: server, clients, cluster and keyspace.
fn info_text(sections: &[Bytes], info: &ServerInfo) -> String {
    let wanted = |s: &str| {
        sections.is_empty()
            || sections.iter().any(|w| {
                let w = String::from_utf8_lossy(w).to_ascii_lowercase();
                w == s || w == "all" || w == "default" || w == "everything"
            })
    };
    let mut out = String::new();
    if wanted("server") {
        out.push_str(&format!(
            "# Server\r\nredis_version:{}\r\nshardkv_version:{}\r\nredis_mode:cluster\r\nos:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            info.redis_version, info.shardkv_version, std::env::consts::OS, std::process::id(), info.port, info.uptime_secs
        ));
    }
    if wanted("clients") {
        out.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            info.connected_clients, info.max_clients
        ));
    }
    if wanted("cluster") {
        out.push_str("# Cluster\r\ncluster_enabled:1\r\n\r\n");
    }
    if wanted("keyspace") {
        out.push_str("# Keyspace\r\n");
        if let Some(keys) = info.keys {
            out.push_str(&format!("db0:keys={keys},expires=0,avg_ttl=0\r\n"));
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tests::{Memory, block_on};

    async fn run(s: &mut Session, b: &mut Memory, line: &str) -> Reply {
        let args: Vec<Bytes> = crate::request::split_words(line.as_bytes())
            .unwrap()
            .into_iter()
            .map(Bytes::from)
            .collect();
        s.handle(&args, b).await.0
    }

    #[test]
    fn strings_counters_and_conditions_behave_as_in_redis() {
        block_on(async {
            let (mut s, mut b) = (Session::new(1), Memory::mastering_all());
            assert_eq!(run(&mut s, &mut b, "set k v").await, Reply::OK);
            assert_eq!(run(&mut s, &mut b, "get k").await, Reply::bulk("v"));
            assert_eq!(run(&mut s, &mut b, "set k w nx").await, Reply::Nil);
            assert_eq!(
                run(&mut s, &mut b, "set k w xx get").await,
                Reply::bulk("v")
            );
            assert_eq!(run(&mut s, &mut b, "setnx k x").await, Reply::Int(0));
            assert_eq!(run(&mut s, &mut b, "append k 12").await, Reply::Int(3));
            assert_eq!(run(&mut s, &mut b, "strlen k").await, Reply::Int(3));
            assert_eq!(
                run(&mut s, &mut b, "incr k").await,
                crate::command::not_an_integer()
            );
            assert_eq!(run(&mut s, &mut b, "incrby n 5").await, Reply::Int(5));
            assert_eq!(run(&mut s, &mut b, "decr n").await, Reply::Int(4));
            assert_eq!(
                run(&mut s, &mut b, "set n 9223372036854775807").await,
                Reply::OK
            );
            assert_eq!(
                run(&mut s, &mut b, "incr n").await,
                Reply::err("increment or decrement would overflow")
            );
            assert_eq!(run(&mut s, &mut b, "getdel k").await, Reply::bulk("w12"));
            assert_eq!(run(&mut s, &mut b, "set {t}a 1").await, Reply::OK);
            assert_eq!(
                run(&mut s, &mut b, "exists {t}a {t}b {t}a").await,
                Reply::Int(2)
            );
            assert_eq!(run(&mut s, &mut b, "del {t}a {t}b").await, Reply::Int(1));
            assert_eq!(run(&mut s, &mut b, "exists {t}a").await, Reply::Int(0));
        });
    }

    #[test]
    fn multi_key_commands_stay_within_one_slot() {
        block_on(async {
            let (mut s, mut b) = (Session::new(1), Memory::mastering_all());
            assert_eq!(run(&mut s, &mut b, "mset {u}a 1 {u}b 2").await, Reply::OK);
            assert_eq!(
                run(&mut s, &mut b, "mget {u}a {u}c {u}b").await,
                Reply::Array(vec![Reply::bulk("1"), Reply::Nil, Reply::bulk("2")])
            );
            let Reply::Error(e) = run(&mut s, &mut b, "mget a b").await else {
                panic!()
            };
            assert!(e.starts_with("CROSSSLOT"), "{e}");
        });
    }

    #[test]
    fn keys_mastered_elsewhere_are_moved() {
        block_on(async {
            let (mut s, mut b) = (Session::new(1), Memory::mastering_none());
            let Reply::Error(e) = run(&mut s, &mut b, "get foo").await else {
                panic!()
            };
            assert_eq!(e, "MOVED 12182 127.0.0.1:7102");
            assert_eq!(
                run(&mut s, &mut b, "cluster keyslot foo").await,
                Reply::Int(12182)
            );
        });
    }

    #[test]
    fn connection_commands() {
        block_on(async {
            let (mut s, mut b) = (Session::new(7), Memory::mastering_all());
            assert_eq!(run(&mut s, &mut b, "ping").await, Reply::Status("PONG"));
            assert_eq!(run(&mut s, &mut b, "client id").await, Reply::Int(7));
            assert_eq!(run(&mut s, &mut b, "client setname app").await, Reply::OK);
            assert_eq!(
                run(&mut s, &mut b, "client getname").await,
                Reply::bulk("app")
            );
            assert_eq!(run(&mut s, &mut b, "select 0").await, Reply::OK);
            assert!(run(&mut s, &mut b, "select 1").await.is_error());
            let Reply::Map(hello) = run(&mut s, &mut b, "hello 3").await else {
                panic!()
            };
            assert!(hello.contains(&(Reply::text_bulk("proto"), Reply::Int(3))));
            assert_eq!(s.protocol(), Protocol::Resp3);
            assert!(run(&mut s, &mut b, "hello 4").await.is_error());
            let Reply::Map(cfg) = run(&mut s, &mut b, "config get append*").await else {
                panic!()
            };
            assert_eq!(cfg.len(), 2);
            let Reply::Text(info) = run(&mut s, &mut b, "info keyspace").await else {
                panic!()
            };
            assert!(info.starts_with("# Keyspace\r\n"), "{info}");
            assert!(run(&mut s, &mut b, "flushall").await.is_error());
            assert_eq!(
                s.handle(&[Bytes::from("quit")], &mut b).await.1,
                After::Close
            );
        });
    }

    fn protected(id: u64) -> Session {
        let password = crate::auth::Password::new("pw").expect("not empty");
        Session::with_access(id, Access::new(Some(std::sync::Arc::new(password))))
    }

    fn error_code(r: Reply) -> String {
        match r {
            Reply::Error(e) => e.split(' ').next().unwrap_or_default().to_string(),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn with_a_password_only_auth_hello_auth_and_quit_pass_before_it() {
        // Goal: Redis's requirepass rules: NOAUTH for everything else, WRONGPASS for a
        // wrong user or password, nothing read or written before the password. Method: a
        // protected session against the memory backend.
        block_on(async {
            let (mut s, mut b) = (protected(3), Memory::mastering_all());
            for line in [
                "set k v",
                "get k",
                "ping",
                "cluster slots",
                "client id",
                "info",
            ] {
                assert_eq!(
                    error_code(run(&mut s, &mut b, line).await),
                    "NOAUTH",
                    "{line}"
                );
            }
            assert_eq!(error_code(run(&mut s, &mut b, "hello 3").await), "NOAUTH");
            // Arguments are not looked at before the password; names and counts are.
            assert_eq!(
                error_code(run(&mut s, &mut b, "set k v ex x").await),
                "NOAUTH"
            );
            assert_eq!(error_code(run(&mut s, &mut b, "select x").await), "NOAUTH");
            assert_eq!(error_code(run(&mut s, &mut b, "flushall").await), "ERR");
            assert_eq!(error_code(run(&mut s, &mut b, "get").await), "ERR");
            assert_eq!(
                error_code(run(&mut s, &mut b, "hello 3 setname me").await),
                "NOAUTH"
            );
            assert_eq!(s.name(), None);
            assert_eq!(s.protocol(), Protocol::Resp2);
            assert_eq!(
                error_code(run(&mut s, &mut b, "hello 4 auth default pw").await),
                "NOPROTO"
            );
            assert!(!s.authenticated());
            assert_eq!(
                error_code(run(&mut s, &mut b, "auth nope").await),
                "WRONGPASS"
            );
            assert_eq!(
                error_code(run(&mut s, &mut b, "auth admin pw").await),
                "WRONGPASS"
            );
            assert_eq!(
                error_code(run(&mut s, &mut b, "hello 3 auth default no").await),
                "WRONGPASS"
            );
            assert!(b.calls.is_empty(), "ran {:?} before the password", b.calls);
            assert_eq!(run(&mut s, &mut b, "auth pw").await, Reply::OK);
            assert_eq!(run(&mut s, &mut b, "set k v").await, Reply::OK);
            assert_eq!(run(&mut s, &mut b, "get k").await, Reply::bulk("v"));
            // HELLO with AUTH authenticates and switches the protocol in one step.
            let mut t = protected(4);
            let Reply::Map(hello) = run(&mut t, &mut b, "hello 3 auth default pw").await else {
                panic!()
            };
            assert!(hello.contains(&(Reply::text_bulk("proto"), Reply::Int(3))));
            assert!(t.authenticated());
            assert_eq!(run(&mut t, &mut b, "get k").await, Reply::bulk("v"));
            let mut u = protected(5);
            assert_eq!(
                u.handle(&[Bytes::from("quit")], &mut b).await.1,
                After::Close
            );
        });
    }

    #[test]
    fn failures_never_invite_a_retry_of_a_write_that_may_have_applied() {
        let timeout = Error::Timeout { detail: "x".into() };
        assert!(matches!(failure(&timeout, true), Reply::Error(e) if e.starts_with("ERR ")));
        assert!(matches!(failure(&timeout, false), Reply::Error(e) if e.starts_with("TRYAGAIN ")));
        let down = Error::Unavailable { reason: "x".into() };
        assert!(matches!(failure(&down, true), Reply::Error(e) if e.starts_with("TRYAGAIN ")));
    }
}
