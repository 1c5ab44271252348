//! `shardkv status`: each member's id, address, role, term, commit and applied index, and
//! whether it answered. Against a sharded cluster (servers that host shard groups) it shows
//! the controller's latest config (the shard → group map, as compact ranges), then every
//! group's members (the controller as group 0) with the config each shard group member
//! applied, then every shard in migration as each group's leader sees it.
//!
//! Exit status 1, with a warning per group on stderr, when any group it shows (the one group
//! at `--endpoints`, or the controller and every shard group) has no leader or fewer than a
//! majority of its members answered, or the controller gave no config; 0 when all are well.

use crate::admin::{config_json, table};
use crate::conn::{ConnArgs, WriteOut, runtime, split_list};
use anyhow::Result;
use clap::Args;
use shardkv_client::{
    ClientOptions, Config, CtrlClient, Dial, Gid, NodeStatus, Role, fetch_group_status_with,
    role_name,
};
use std::process::ExitCode;
use std::time::Duration;

/// How long each member gets to answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the controller gets to give its config.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// One member's answer (or why there is none), with its address.
type Answer = (String, Result<NodeStatus, String>);

/// A group's members as they answered.
struct GroupView {
    gid: Gid,
    members: Vec<Answer>,
}

pub fn run(args: StatusArgs) -> Result<ExitCode> {
    let addrs: Vec<String> = args
        .conn
        .endpoint_list()
        .iter()
        .map(|a| {
            a.split_once('=')
                .map_or(a.as_str(), |(_, addr)| addr)
                .to_string()
        })
        .collect();
    let rt = runtime()?;
    let dial = args.conn.dial(STATUS_TIMEOUT)?;
    let answers = rt.block_on(ask_all(&addrs, None, &dial));
    let sharded = answers
        .iter()
        .any(|(_, r)| r.as_ref().is_ok_and(|s| s.shards.is_some()));
    if !sharded {
        match args.conn.write_out {
            WriteOut::Json => println!(
                "{}",
                serde_json::Value::Array(answers.iter().map(member_json).collect())
            ),
            WriteOut::Text => print_members(&answers),
        }
        let group = GroupView {
            gid: Gid(args.conn.group.unwrap_or(0)),
            members: answers,
        };
        return Ok(exit(&problems(&[group], None)));
    }
    let ctrl_addrs = args
        .conn
        .ctrl_endpoints
        .as_deref()
        .map_or_else(|| addrs.clone(), split_list);
    let (config, groups) = rt.block_on(sharded_view(&ctrl_addrs, &dial))?;
    match args.conn.write_out {
        WriteOut::Json => println!("{}", sharded_json(config.as_ref(), &groups)),
        WriteOut::Text => print_sharded(config.as_ref(), &groups),
    }
    Ok(exit(&problems(&groups, Some(config.is_some()))))
}

/// Prints each problem on stderr: failure when there is any.
fn exit(problems: &[String]) -> ExitCode {
    for p in problems {
        eprintln!("WARNING: {p}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What is wrong with the cluster as the answers show it: per group, no leader among the
/// members that answered, or no majority answering; `config`: whether the controller gave
/// its config (`None`: not a sharded cluster).
fn problems(groups: &[GroupView], config: Option<bool>) -> Vec<String> {
    let mut out = Vec::new();
    if config == Some(false) {
        out.push("the shard controller gave no config: no quorum or no leader".to_string());
    }
    for g in groups {
        let asked = g.members.len();
        let answered = g.members.iter().filter(|(_, r)| r.is_ok()).count();
        let leader = g
            .members
            .iter()
            .any(|(_, r)| r.as_ref().is_ok_and(|s| s.role == Role::Leader));
        let name = match g.gid {
            Gid(0) if config.is_some() => "group 0 (controller)".to_string(),
            Gid(0) => "the group".to_string(),
            Gid(n) => format!("group {n}"),
        };
        if answered * 2 <= asked {
            out.push(format!(
                "{name}: only {answered} of {asked} members answered: no quorum"
            ));
        }
        if !leader {
            out.push(format!("{name}: no member answered as leader"));
        }
    }
    out
}

/// The controller's latest config (`None` if it gave none in time) and every group's
/// members: the controller's at `ctrl_addrs`, each shard group's at its config servers.
async fn sharded_view(
    ctrl_addrs: &[String],
    dial: &Dial,
) -> Result<(Option<Config>, Vec<GroupView>)> {
    let opts = ClientOptions {
        op_timeout: CONFIG_TIMEOUT,
        tls: dial.tls.clone(),
        ..ClientOptions::default()
    };
    let mut ctrl =
        CtrlClient::connect_with(ctrl_addrs, opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = ctrl.query(None).await.ok();
    let mut groups = vec![GroupView {
        gid: Gid(0),
        members: ask_all(ctrl_addrs, Some(Gid(0)), dial).await,
    }];
    for (gid, servers) in config.iter().flat_map(|c| c.groups.iter()) {
        groups.push(GroupView {
            gid: *gid,
            members: ask_all(servers, Some(*gid), dial).await,
        });
    }
    Ok((config, groups))
}

/// Asks every address for the status of `group`, concurrently; answers in order.
async fn ask_all(addrs: &[String], group: Option<Gid>, dial: &Dial) -> Vec<Answer> {
    let handles: Vec<_> = addrs
        .iter()
        .map(|a| {
            let addr = a.clone();
            let dial = dial.clone();
            tokio::spawn(async move {
                let r = fetch_group_status_with(&addr, group, &dial)
                    .await
                    .map_err(|e| e.to_string());
                (addr, r)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("status task does not panic"));
    }
    out
}

/// The member whose view of its group's shards counts: the leader, else the reachable one
/// that applied the most.
fn best_view(members: &[Answer]) -> Option<&NodeStatus> {
    let ok = || members.iter().filter_map(|(_, r)| r.as_ref().ok());
    ok().find(|s| s.role == Role::Leader)
        .or_else(|| ok().max_by_key(|s| s.applied))
}

/// Every shard in migration: (group, config, shard, state) as each group's best view has it.
fn migrating(groups: &[GroupView]) -> Vec<(Gid, u64, u64, &'static str)> {
    let mut out = Vec::new();
    for g in groups {
        let Some(held) = best_view(&g.members).and_then(|s| s.shards.as_ref()) else {
            continue;
        };
        for (shard, phase) in held.moving() {
            out.push((g.gid, held.config.0, shard.0, phase.name()));
        }
    }
    out
}

fn print_sharded(config: Option<&Config>, groups: &[GroupView]) {
    match config {
        Some(c) => print!("{}", table(c)),
        None => println!("config: the controller did not answer"),
    }
    println!();
    let rows: Vec<(Option<Gid>, &Answer)> = groups
        .iter()
        .flat_map(|g| g.members.iter().map(move |a| (Some(g.gid), a)))
        .collect();
    print_rows(&rows);
    println!();
    let moving = migrating(groups);
    if moving.is_empty() {
        println!("no shard in migration");
    }
    for (gid, num, shard, state) in moving {
        println!(
            "in migration: group {} (config {num}) shard {shard} {state}",
            gid.0
        );
    }
}

fn print_members(answers: &[Answer]) {
    let rows: Vec<(Option<Gid>, &Answer)> = answers.iter().map(|a| (None, a)).collect();
    print_rows(&rows);
}

/// The member table; a GROUP and a CONFIG column when the rows name groups.
fn print_rows(rows: &[(Option<Gid>, &Answer)]) {
    let grouped = rows.iter().any(|(g, _)| g.is_some());
    let head = format!(
        "{:<4} {:<22} {:<13} {:>6} {:>6} {:>10} {:>10} {:<8} {:<9}",
        "ID", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "NO-SPACE", "REACHABLE"
    );
    if grouped {
        println!("{:<6} {:>6} {head}", "GROUP", "CONFIG");
    } else {
        println!("{head}");
    }
    for (gid, (addr, r)) in rows {
        let line = match r {
            Ok(s) => format!(
                "{:<4} {:<22} {:<13} {:>6} {:>6} {:>10} {:>10} {:<8} yes",
                s.id.0,
                addr,
                role_name(s.role),
                s.term.0,
                s.leader.map_or("-".to_string(), |l| l.0.to_string()),
                s.commit.0,
                s.applied.0,
                if s.no_space { "yes" } else { "no" }
            ),
            Err(e) => format!(
                "{:<4} {:<22} {:<13} {:>6} {:>6} {:>10} {:>10} {:<8} no ({e})",
                "-", addr, "-", "-", "-", "-", "-", "-"
            ),
        };
        if grouped {
            let name = match gid {
                Some(Gid(0)) => "0/ctrl".to_string(),
                Some(g) => g.0.to_string(),
                None => "-".to_string(),
            };
            let config = r
                .as_ref()
                .ok()
                .and_then(|s| s.shards.as_ref())
                .map_or("-".to_string(), |h| h.config.0.to_string());
            println!("{name:<6} {config:>6} {line}");
        } else {
            println!("{line}");
        }
    }
}

fn member_json((addr, r): &Answer) -> serde_json::Value {
    shardkv_server::admin::member_json(addr, r)
}

fn sharded_json(config: Option<&Config>, groups: &[GroupView]) -> serde_json::Value {
    let groups_json: Vec<serde_json::Value> = groups
        .iter()
        .map(|g| {
            serde_json::json!({
                "gid": g.gid.0,
                "members": g.members.iter().map(member_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let moving: Vec<serde_json::Value> = migrating(groups)
        .into_iter()
        .map(|(gid, num, shard, state)| {
            serde_json::json!({"gid": gid.0, "config": num, "shard": shard, "state": state})
        })
        .collect();
    serde_json::json!({
        "config": config.map(config_json),
        "groups": groups_json,
        "migrating": moving,
    })
}
