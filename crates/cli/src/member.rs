//! `shardkv member list | add | promote | remove`: change the members of the replica groups
//! a process hosts, one server at a time, etcdctl-style (docs/membership.md).
//!
//! Which groups: `--group GID` names one (0: the shard controller); without it, every
//! group the first server that answers hosts (a `shardkv up` member hosts the controller
//! and every shard group, all with the same members), changed one after the other.
//! Where: `--endpoints` (any members; the leader of each group is found from there and from
//! the addresses the members report). A change is sent to the group's leader and waits until
//! it applied there; a refusal that may pass (another change in flight, a learner still
//! catching up, no leader yet) is retried until `--timeout`. After a change of a shard
//! group, the shard controller's record of the group's servers is replaced by its voters,
//! listed `ID=HOST:PORT` (`--ctrl-endpoints`, default `--endpoints`), so clients and other
//! groups find the new member. Output: `-w table` (the
//! default) or `-w json`. Exit status: 0 when every group took the change (or, for
//! `remove`, no longer had the member; for `add`, had it already at that address); 1 on a
//! refusal or when a group could not be reached (what was done so far is printed); 2 on
//! bad usage.

use crate::admin::AdminOut;
use crate::conn::{TlsArgs, runtime, split_list};
use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use shardkv_client::{
    ClientOptions, ConfChange, ConfChangeKind, CtrlClient, Dial, Error, Gid, MemberInfo,
    MembershipDone, Naming, NodeId, NodeStatus, Role, change_membership_with,
    fetch_group_status_with,
};
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
    /// Any servers of the groups: HOST:PORT, comma-separated.
    #[arg(long, env = "SHARDKV_ENDPOINTS", default_value = crate::conn::ENDPOINTS_DEFAULT, global = true)]
    pub endpoints: String,
    /// Only this group (0: the shard controller). Default: every group the servers host.
    #[arg(long, env = "SHARDKV_GROUP", global = true)]
    pub group: Option<u64>,
    /// The shard controller's servers, told a shard group's new servers (default:
    /// --endpoints).
    #[arg(long, env = "SHARDKV_CTRL_ENDPOINTS", global = true)]
    pub ctrl_endpoints: Option<String>,
    /// Give up on a group after this long (a promotion waits for the learner to catch up).
    #[arg(long, env = "SHARDKV_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,
    /// Change a group even while it moves shards, or remove a voter while a learner is not
    /// promoted yet (both refused by default: see docs/membership.md).
    #[arg(long, global = true)]
    pub force: bool,
    /// Output format.
    #[arg(short = 'w', long = "write-out", env = "SHARDKV_WRITE_OUT", value_enum, default_value_t = AdminOut::Table, global = true)]
    pub write_out: AdminOut,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List each group's members: id, address, voter or learner, and how far its log
    /// matches the leader's.
    List,
    /// Add a member as a non-voting learner: `add ID HOST:PORT`. Start it first with
    /// `shardkv server --join --id ID ...` (a NEW id, never one the group had).
    Add { id: u64, addr: String },
    /// Make a learner a voter once it caught up: `promote ID`.
    Promote { id: u64 },
    /// Remove a member (a voter or a learner; the leader may remove itself): `remove ID`.
    Remove { id: u64 },
}

/// How long one server gets to answer one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// The pause before asking again after a refusal that may pass.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

pub fn run(args: MemberArgs) -> Result<ExitCode> {
    if args.command_node() == Some(0) {
        eprintln!("shardkv member: node id 0 is reserved");
        return Ok(ExitCode::from(2));
    }
    let endpoints = split_list(&args.endpoints);
    if endpoints.is_empty() {
        return Err(anyhow!("no --endpoints given"));
    }
    let dial = Dial {
        timeout: CALL_TIMEOUT.min(args.timeout),
        tls: args.tls.config()?,
    };
    runtime()?.block_on(async {
        let groups = match args.group {
            Some(g) => vec![Gid(g)],
            None => hosted_groups(&endpoints, &dial).await?,
        };
        let mut out = Vec::new();
        let mut failed = false;
        for gid in groups {
            let result = match &args.command {
                MemberCommand::List => list(&endpoints, gid, &dial).await,
                MemberCommand::Add { id, addr } => {
                    let cc = ConfChange::add_learner(NodeId(*id), addr.trim());
                    change(&endpoints, gid, cc, &dial, &args).await
                }
                MemberCommand::Promote { id } => {
                    let cc = ConfChange::promote(NodeId(*id));
                    change(&endpoints, gid, cc, &dial, &args).await
                }
                MemberCommand::Remove { id } => {
                    let cc = ConfChange::remove(NodeId(*id));
                    change(&endpoints, gid, cc, &dial, &args).await
                }
            };
            match result {
                Ok(r) => {
                    let told = match r.sharded && !matches!(args.command, MemberCommand::List) {
                        true => tell_controller(&args, &r).await,
                        false => Ok(()),
                    };
                    out.push(r);
                    if let Err(e) = told {
                        eprintln!(
                            "shardkv member: group {}: the change applied, but {e}; run the \
                             command again to tell the controller",
                            gid.0
                        );
                        failed = true;
                        break;
                    }
                }
                Err(e) => {
                    eprintln!("shardkv member: group {}: {e}", gid.0);
                    failed = true;
                    break;
                }
            }
        }
        print(&out, args.write_out, &args.command);
        Ok(ExitCode::from(u8::from(failed)))
    })
}

impl MemberArgs {
    fn command_node(&self) -> Option<u64> {
        match self.command {
            MemberCommand::List => None,
            MemberCommand::Add { id, .. }
            | MemberCommand::Promote { id }
            | MemberCommand::Remove { id } => Some(id),
        }
    }
}

/// One group's outcome: its members afterwards and, for a change, its log index (`None`:
/// nothing to do, the group was already so).
struct GroupResult {
    gid: Gid,
    index: Option<u64>,
    leader: Option<NodeId>,
    members: Vec<MemberInfo>,
    /// A shard group (the controller records its servers).
    sharded: bool,
}

/// Replaces the controller's server list of shard group `r.gid` by its voters, when it
/// differs.
async fn tell_controller(args: &MemberArgs, r: &GroupResult) -> Result<()> {
    let servers: Vec<String> = r
        .members
        .iter()
        .filter(|m| !m.learner && !m.addr.is_empty())
        .map(|m| format!("{}={}", m.id.0, m.addr))
        .collect();
    let endpoints = split_list(args.ctrl_endpoints.as_deref().unwrap_or(&args.endpoints));
    let opts = ClientOptions {
        op_timeout: args.timeout,
        tls: args.tls.config()?,
        ..ClientOptions::default()
    };
    let mut ctrl = CtrlClient::connect_with(&endpoints, opts).map_err(|e| anyhow!("{e}"))?;
    let config = ctrl
        .query(None)
        .await
        .map_err(|e| anyhow!("asking the controller: {e}"))?;
    let Some(listed) = config.groups.get(&r.gid) else {
        eprintln!(
            "shardkv member: group {} is not in the controller's latest config (it left); \
             nothing recorded there",
            r.gid.0
        );
        return Ok(());
    };
    // The same servers (ids and addresses), however written: nothing to record.
    let set = |l: &[String]| -> BTreeSet<(NodeId, String)> {
        Naming::Ids.servers(l).into_iter().collect()
    };
    if set(listed) == set(&servers) {
        return Ok(());
    }
    match ctrl.set_servers(r.gid, servers).await {
        Ok(Ok(num)) => {
            eprintln!(
                "shardkv member: the controller now lists group {}'s voters (config {})",
                r.gid.0, num.0
            );
            Ok(())
        }
        Ok(Err(refused)) => Err(anyhow!("the controller refused the new servers: {refused}")),
        Err(e) => Err(anyhow!("telling the controller the new servers: {e}")),
    }
}

/// The groups the first server that answers hosts.
async fn hosted_groups(endpoints: &[String], dial: &Dial) -> Result<Vec<Gid>> {
    let mut last = None;
    for a in endpoints {
        match fetch_group_status_with(a, None, dial).await {
            Ok(s) if !s.hosted.is_empty() => return Ok(s.hosted),
            Ok(s) => return Ok(vec![s.group]),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow!(
        "no server answered: {}",
        last.map_or("no endpoints".into(), |e| e.to_string())
    ))
}

/// Every member's status of group `gid` that answers, from `endpoints` and the addresses
/// they report.
async fn statuses(endpoints: &[String], gid: Gid, dial: &Dial) -> Vec<(String, NodeStatus)> {
    let mut addrs: Vec<String> = endpoints.to_vec();
    let mut out = Vec::new();
    let mut i = 0;
    while i < addrs.len() && i < 64 {
        if let Ok(s) = fetch_group_status_with(&addrs[i], Some(gid), dial).await {
            for m in &s.members {
                if !m.addr.is_empty() && !addrs.contains(&m.addr) {
                    addrs.push(m.addr.clone());
                }
            }
            out.push((addrs[i].clone(), s));
        }
        i += 1;
    }
    out
}

/// The group's members as its leader reports them (else as any member does).
async fn list(endpoints: &[String], gid: Gid, dial: &Dial) -> Result<GroupResult> {
    let all = statuses(endpoints, gid, dial).await;
    let best = all
        .iter()
        .max_by_key(|(_, s)| (s.role == Role::Leader, s.term))
        .ok_or_else(|| anyhow!("no member of the group answered"))?;
    Ok(GroupResult {
        gid,
        index: None,
        leader: best.1.leader,
        members: best.1.members.clone(),
        sharded: best.1.shards.is_some(),
    })
}

/// Sends `cc` to the group's leader until it applied, is refused for good, or `timeout`.
async fn change(
    endpoints: &[String],
    gid: Gid,
    cc: ConfChange,
    dial: &Dial,
    args: &MemberArgs,
) -> Result<GroupResult> {
    let timeout = args.timeout;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no member answered");
    loop {
        let all = statuses(endpoints, gid, dial).await;
        if let Some(done) = already(&all, &cc) {
            return Ok(GroupResult { gid, ..done });
        }
        if !args.force
            && let Some(why) = unsafe_now(&all, &cc)
        {
            return Err(anyhow!("{why} (--force to change it anyway)"));
        }
        // The leader first (as any member reports it), then every member that answered.
        let leader_addr = all.iter().find_map(|(_, s)| {
            let l = s.leader?;
            s.members.iter().find(|m| m.id == l && !m.addr.is_empty())
        });
        let mut targets: Vec<String> = leader_addr.map(|m| m.addr.clone()).into_iter().collect();
        for (a, _) in &all {
            if !targets.contains(a) {
                targets.push(a.clone());
            }
        }
        let sharded = all.iter().any(|(_, s)| s.shards.is_some());
        for t in &targets {
            match change_membership_with(t, Some(gid), &cc, dial).await {
                Ok((server, Ok(MembershipDone { index, members }))) => {
                    return Ok(GroupResult {
                        gid,
                        index: Some(index.0),
                        leader: Some(server),
                        members,
                        sharded,
                    });
                }
                Ok((_, Err(Error::NotLeader { .. }))) => continue,
                Ok((_, Err(e @ Error::Invalid { .. }))) => return Err(anyhow!("refused: {e}")),
                Ok((_, Err(e))) => {
                    last = e.to_string();
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(anyhow!("gave up after {timeout:?}: {last}"));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Why changing the group now would be unsafe, as the leader (else any member) reports it:
/// it is moving shards (the other group of a move calls it by the server list of the
/// config the move began in, which a membership change makes stale: the move could stall),
/// or `cc` removes a voter while a learner is not promoted yet (the group would be left
/// with fewer voters than the replacement meant: the next loss could take its majority).
fn unsafe_now(all: &[(String, NodeStatus)], cc: &ConfChange) -> Option<String> {
    let (_, s) = all
        .iter()
        .max_by_key(|(_, s)| (s.role == Role::Leader, s.term))?;
    if let Some(held) = &s.shards {
        let moving = held.moving().count();
        if moving > 0 {
            return Some(format!(
                "group {} is moving {moving} shards; wait until `shardkv status` shows none \
                 moving",
                s.group.0
            ));
        }
    }
    let removes_voter = cc.kind == ConfChangeKind::Remove
        && s.members.iter().any(|m| m.id == cc.node && !m.learner);
    let learners: Vec<String> = s
        .members
        .iter()
        .filter(|m| m.learner)
        .map(|m| m.id.0.to_string())
        .collect();
    (removes_voter && !learners.is_empty()).then(|| {
        format!(
            "group {} has learners not yet promoted ({}): promote them before removing a \
             voter",
            s.group.0,
            learners.join(", ")
        )
    })
}

/// The group already is as `cc` asks (an added member at that address, a promoted one a
/// voter, a removed one absent), as its leader reports: nothing to do, so a retried
/// command succeeds.
fn already(all: &[(String, NodeStatus)], cc: &ConfChange) -> Option<GroupResult> {
    let (_, s) = all.iter().find(|(_, s)| s.role == Role::Leader)?;
    let m = s.members.iter().find(|m| m.id == cc.node);
    let done = match cc.kind {
        ConfChangeKind::AddLearner => m.is_some_and(|m| m.addr == cc.addr),
        ConfChangeKind::Promote => m.is_some_and(|m| !m.learner),
        ConfChangeKind::Remove => m.is_none(),
    };
    done.then(|| GroupResult {
        gid: s.group,
        index: None,
        leader: s.leader,
        members: s.members.clone(),
        sharded: s.shards.is_some(),
    })
}

fn describe(command: &MemberCommand) -> String {
    match command {
        MemberCommand::List => "list".into(),
        MemberCommand::Add { id, addr } => format!("add {id} at {addr} as a learner"),
        MemberCommand::Promote { id } => format!("promote {id}"),
        MemberCommand::Remove { id } => format!("remove {id}"),
    }
}

fn print(out: &[GroupResult], w: AdminOut, command: &MemberCommand) {
    match w {
        AdminOut::Json => {
            let groups: Vec<serde_json::Value> = out
                .iter()
                .map(|r| {
                    let members = shardkv_server::admin::membership_json(&r.members);
                    serde_json::json!({
                        "group": r.gid.0,
                        "index": r.index,
                        "leader": r.leader.map(|l| l.0),
                        "members": members,
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "groups": groups }));
        }
        AdminOut::Table => {
            for r in out {
                if !matches!(command, MemberCommand::List) {
                    let what = describe(command);
                    match r.index {
                        Some(i) => println!("group {}: {what}: applied at log index {i}", r.gid.0),
                        None => println!("group {}: {what}: already so, nothing to do", r.gid.0),
                    }
                }
                println!(
                    "{:<6} {:<6} {:<24} {:<8} MATCH",
                    "GROUP", "ID", "ADDRESS", "ROLE"
                );
                for m in &r.members {
                    let role = match (m.learner, Some(m.id) == r.leader) {
                        (true, _) => "learner",
                        (false, true) => "leader",
                        (false, false) => "voter",
                    };
                    let matched = m.matched.map_or("-".to_string(), |i| i.0.to_string());
                    let addr = if m.addr.is_empty() { "?" } else { &m.addr };
                    println!(
                        "{:<6} {:<6} {:<24} {:<8} {matched}",
                        r.gid.0, m.id.0, addr, role
                    );
                }
            }
        }
    }
}
