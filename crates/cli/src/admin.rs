//! `shardkv admin join | leave | move | query`: change and read the shard controller's
//! numbered configuration, etcdctl-style.
//!
//! Where: `--endpoints` (the controller group's servers, comma-separated;
//! `SHARDKV_CTRL_ENDPOINTS`; default the ports `shardkv up` uses). How to print: `-w table`
//! (the default) or `-w json`; env `SHARDKV_TIMEOUT`, `SHARDKV_WRITE_OUT`. When every
//! endpoint refuses connections it fails at once, naming them (`conn::check_listening`).
//! Exit status: 0 when the controller applied the change or
//! answered the query; 1 when it refused the change (the reason on stderr; nothing changed)
//! or could not be reached (the error on stderr, saying whether the change may have
//! applied); 2 on bad usage.

use crate::conn::{check_listening, runtime, split_list, strip_id};
use anyhow::{Result, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use shardkv_client::{
    ClientOptions, Config, ConfigNum, CtrlClient, CtrlError, GID_NONE, Gid, ShardId,
};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

/// The controller group of `shardkv up` with the default base port.
pub const CTRL_ENDPOINTS_DEFAULT: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// The exit status of bad usage (clap's, too).
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
    #[command(flatten)]
    pub conn: AdminConn,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Add replica groups, then rebalance: `join 1=a:7001,b:7002,c:7003 2=d:7001`.
    Join {
        /// GID=HOST:PORT[,HOST:PORT...], one per group.
        #[arg(required = true, value_name = "GID=SERVERS", value_parser = parse_group)]
        groups: Vec<GroupSpec>,
    },
    /// Remove replica groups, then rebalance their shards over the rest: `leave 1 2`.
    Leave {
        #[arg(required = true, value_name = "GID")]
        gids: Vec<u64>,
    },
    /// Assign one shard to one group, exactly (no rebalance): `move SHARD GID`.
    Move { shard: u64, gid: u64 },
    /// Show a configuration: the latest, or number NUM.
    Query { num: Option<u64> },
}

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AdminOut {
    #[default]
    #[value(alias = "text")]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct AdminConn {
    /// The controller group's servers: HOST:PORT (or ID=HOST:PORT), comma-separated.
    #[arg(long, env = "SHARDKV_CTRL_ENDPOINTS", default_value = CTRL_ENDPOINTS_DEFAULT, global = true)]
    pub endpoints: String,
    /// Give up on an operation after this long (e.g. 5s, 500ms).
    #[arg(long, env = "SHARDKV_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,
    /// Output format.
    #[arg(short = 'w', long = "write-out", env = "SHARDKV_WRITE_OUT", value_enum, default_value_t = AdminOut::Table, global = true)]
    pub write_out: AdminOut,
    #[command(flatten)]
    pub tls: crate::conn::TlsArgs,
}

/// One group of a join: its gid and its servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    pub gid: Gid,
    pub servers: Vec<String>,
}

/// Parses `GID=HOST:PORT[,HOST:PORT...]`.
fn parse_group(s: &str) -> Result<GroupSpec, String> {
    let (gid, servers) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected GID=HOST:PORT[,HOST:PORT...]"))?;
    let gid: u64 = gid
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: the group id {gid:?} is not a number"))?;
    let servers: Vec<String> = servers
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if servers.is_empty() {
        return Err(format!("{s:?}: group {gid} has no servers"));
    }
    if let Some(bad) = servers.iter().find(|a| !a.contains(':')) {
        return Err(format!("{s:?}: {bad:?} is not HOST:PORT"));
    }
    Ok(GroupSpec {
        gid: Gid(gid),
        servers,
    })
}

/// The groups of a join as one map; `Err` names a gid given twice.
fn groups_map(groups: Vec<GroupSpec>) -> Result<BTreeMap<Gid, Vec<String>>, Gid> {
    let mut map = BTreeMap::new();
    for g in groups {
        if map.insert(g.gid, g.servers).is_some() {
            return Err(g.gid);
        }
    }
    Ok(map)
}

pub fn run(args: AdminArgs) -> Result<ExitCode> {
    let conn = &args.conn;
    let endpoints = split_list(&conn.endpoints);
    let opts = ClientOptions {
        op_timeout: conn.timeout,
        tls: conn.tls.config()?,
        ..ClientOptions::default()
    };
    // Called after the arguments are checked: a usage error never waits for the network.
    let connect = || -> Result<CtrlClient> {
        let addrs: Vec<String> = endpoints.iter().map(|a| strip_id(a)).collect();
        check_listening(&addrs, "--endpoints (SHARDKV_CTRL_ENDPOINTS)")?;
        CtrlClient::connect_with(&endpoints, opts.clone()).map_err(|e| anyhow!("{e}"))
    };
    let rt = runtime()?;
    let changed = match args.command {
        AdminCommand::Query { num } => {
            let mut client = connect()?;
            let config = rt
                .block_on(client.query(num.map(ConfigNum)))
                .map_err(|e| anyhow!("{e}"))?;
            match conn.write_out {
                AdminOut::Table => print!("{}", table(&config)),
                AdminOut::Json => println!("{}", config_json(&config)),
            }
            return Ok(ExitCode::SUCCESS);
        }
        AdminCommand::Join { groups } => {
            let groups = match groups_map(groups) {
                Ok(g) => g,
                Err(gid) => {
                    eprintln!("error: group {} is named more than once", gid.0);
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            rt.block_on(connect()?.join(groups))
        }
        AdminCommand::Leave { gids } => {
            let gids: Vec<Gid> = gids.into_iter().map(Gid).collect();
            rt.block_on(connect()?.leave(&gids))
        }
        AdminCommand::Move { shard, gid } => {
            rt.block_on(connect()?.move_shard(ShardId(shard), Gid(gid)))
        }
    };
    let outcome = changed.map_err(|e| anyhow!("{e}"))?;
    report_change(conn.write_out, &outcome);
    Ok(match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    })
}

/// Prints a change's outcome: the new config's number, or the refusal (on stderr too).
fn report_change(w: AdminOut, outcome: &Result<ConfigNum, CtrlError>) {
    match (w, outcome) {
        (AdminOut::Table, Ok(num)) => println!("OK: config {}", num.0),
        (AdminOut::Json, Ok(num)) => {
            println!(
                "{}",
                serde_json::json!({ "applied": true, "config": num.0 })
            )
        }
        (AdminOut::Table, Err(_)) => {}
        (AdminOut::Json, Err(refused)) => println!(
            "{}",
            serde_json::json!({
                "applied": false,
                "refused": { "code": refusal_code(refused), "message": refused.to_string() },
            })
        ),
    }
    if let Err(refused) = outcome {
        eprintln!("error: refused by the controller: {refused}; nothing changed");
    }
}

/// A stable name for each refusal, for scripts.
fn refusal_code(e: &CtrlError) -> &'static str {
    match e {
        CtrlError::JoinEmpty => "join_empty",
        CtrlError::ReservedGid => "reserved_gid",
        CtrlError::AlreadyMember(_) => "already_member",
        CtrlError::NoServers(_) => "no_servers",
        CtrlError::LeaveEmpty => "leave_empty",
        CtrlError::DuplicateGid(_) => "duplicate_gid",
        CtrlError::NotMember(_) => "not_member",
        CtrlError::ShardOutOfRange { .. } => "shard_out_of_range",
    }
}

/// The whole config: `{"num", "shards": [gid per shard, 0 = unassigned], "groups": {gid:
/// [servers]}}`.
pub(crate) fn config_json(c: &Config) -> serde_json::Value {
    let groups: serde_json::Map<String, serde_json::Value> = c
        .groups
        .iter()
        .map(|(gid, servers)| (gid.0.to_string(), serde_json::json!(servers)))
        .collect();
    serde_json::json!({
        "num": c.num.0,
        "shards": c.shards.iter().map(|g| g.0).collect::<Vec<_>>(),
        "groups": groups,
    })
}

/// The config number and shard count, then one line per group (gid, shard count, shard
/// ranges, servers), then the unassigned shards if any. Columns are aligned.
pub(crate) fn table(c: &Config) -> String {
    let mut rows = vec![[
        "GID".to_string(),
        "SHARDS".to_string(),
        "RANGES".to_string(),
        "SERVERS".to_string(),
    ]];
    for (gid, servers) in &c.groups {
        let owned = c.shards_of(*gid);
        rows.push([
            gid.0.to_string(),
            owned.len().to_string(),
            ranges(&owned),
            servers.join(","),
        ]);
    }
    let unassigned = c.shards_of(GID_NONE);
    if !unassigned.is_empty() {
        rows.push([
            "-".to_string(),
            unassigned.len().to_string(),
            ranges(&unassigned),
            "(unassigned)".to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!("config {} ({} shards)\n", c.num.0, c.shards.len());
    for r in &rows {
        let line = format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Ascending shard ids as ranges: `0-3 7 9-10`, or `-` when empty.
pub(crate) fn ranges(shards: &[ShardId]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for s in shards {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == s.0 => *end = s.0,
            _ => runs.push((s.0, s.0)),
        }
    }
    if runs.is_empty() {
        return "-".to_string();
    }
    let parts: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<AdminArgs, clap::Error> {
        let argv = ["shardkv", "admin"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Admin(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// Goal: the documented syntax parses to the right operation, flags in any position.
    #[test]
    fn admin_arguments_parse_etcdctl_style() {
        let a = parse(&["join", "1=a:7001,b:7002,c:7003", "2=d:7001", "-w", "json"])
            .expect("valid join");
        let AdminCommand::Join { groups } = a.command else {
            panic!("a join");
        };
        assert_eq!(
            groups,
            vec![
                GroupSpec {
                    gid: Gid(1),
                    servers: vec!["a:7001".into(), "b:7002".into(), "c:7003".into()],
                },
                GroupSpec {
                    gid: Gid(2),
                    servers: vec!["d:7001".into()],
                },
            ]
        );
        assert_eq!(a.conn.write_out, AdminOut::Json);
        let a = parse(&["--endpoints", "x:1", "leave", "1", "2"]).expect("valid leave");
        assert!(matches!(a.command, AdminCommand::Leave { gids } if gids == [1, 2]));
        assert_eq!(a.conn.endpoints, "x:1");
        let a = parse(&["move", "3", "2"]).expect("valid move");
        assert!(matches!(a.command, AdminCommand::Move { shard: 3, gid: 2 }));
        let a = parse(&["query"]).expect("valid query");
        assert!(matches!(a.command, AdminCommand::Query { num: None }));
        assert_eq!(a.conn.write_out, AdminOut::Table, "table is the default");
        let a = parse(&["query", "4", "-w", "text"]).expect("text is table");
        assert!(matches!(a.command, AdminCommand::Query { num: Some(4) }));
        assert_eq!(a.conn.write_out, AdminOut::Table);
    }

    /// Goal: malformed commands are usage errors (exit 2), caught before any RPC.
    #[test]
    fn bad_admin_syntax_is_a_usage_error() {
        let bad: &[&[&str]] = &[
            &["join"],
            &["join", "1"],
            &["join", "x=a:1"],
            &["join", "1="],
            &["join", "1=nohost"],
            &["leave"],
            &["leave", "one"],
            &["move", "1"],
            &["move", "a", "1"],
            &["query", "latest"],
            &["query", "-w", "yaml"],
            &["frobnicate"],
        ];
        for args in bad {
            let e = parse(args).expect_err(&format!("{args:?} is bad usage"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
            assert_ne!(e.kind(), ErrorKind::DisplayHelp);
        }
        let dup = vec![
            parse_group("1=a:1").expect("valid"),
            parse_group("1=b:1").expect("valid"),
        ];
        assert_eq!(groups_map(dup), Err(Gid(1)));
    }

    /// Goal: the table shows the number, each group's servers and shard ranges, and the
    /// unassigned shards; JSON holds the whole config.
    #[test]
    fn query_output_shows_groups_with_shard_ranges() {
        let mut c = Config::initial(16);
        c.num = ConfigNum(3);
        c.groups
            .insert(Gid(1), vec!["a:7001".into(), "b:7002".into()]);
        c.groups.insert(Gid(12), vec!["d:7001".into()]);
        c.shards = [[1; 8], [12; 8]].concat().into_iter().map(Gid).collect();
        c.shards[3] = Gid(12);
        assert_eq!(
            table(&c),
            "config 3 (16 shards)\n\
             GID  SHARDS  RANGES   SERVERS\n\
             1         7  0-2 4-7  a:7001,b:7002\n\
             12        9  3 8-15   d:7001\n"
        );
        let j = config_json(&c);
        assert_eq!(j["num"], 3);
        assert_eq!(j["shards"][3], 12);
        assert_eq!(j["groups"]["12"][0], "d:7001");
        assert_eq!(
            table(&Config::initial(4)),
            "config 0 (4 shards)\nGID  SHARDS  RANGES  SERVERS\n-         4  0-3     (unassigned)\n"
        );
        assert_eq!(ranges(&[]), "-");
    }
}
