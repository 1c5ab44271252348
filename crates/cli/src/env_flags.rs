//! Every flag settable by an environment variable: a flag that names no variable of its own
//! gets `SHARDKV_<SUBCOMMAND>_<FLAG>` (the subcommand path and the flag's long name, upper
//! case, `-` as `_`: `shardkv bench --clients` is `SHARDKV_BENCH_CLIENTS`, `shardkv admin
//! join --timeout` is `SHARDKV_ADMIN_JOIN_TIMEOUT`). Flags with a variable of their own
//! (`--endpoints` is `SHARDKV_ENDPOINTS` everywhere) keep it, and `--help` lists each as
//! `[env: …]`. A flag given on the command line wins over its variable.

use clap::Command;

/// Flags that change what a command means rather than how it runs: set on the command line
/// only (a stray variable must not turn `cas k v` into `cas --absent k v`).
const COMMAND_LINE_ONLY: &[&str] = &["absent", "help", "version"];

/// `cmd` with a variable for every flag that has none, through all its subcommands.
pub fn with_env_for_every_flag(cmd: Command) -> Command {
    name_subcommands(cmd, "SHARDKV")
}

/// Each subcommand of `cmd` with its flags named `<prefix>_<SUBCOMMAND>_<FLAG>`.
fn name_subcommands(cmd: Command, prefix: &str) -> Command {
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    subs.into_iter().fold(cmd, |cmd, name| {
        let p = format!("{prefix}_{}", upper(&name));
        cmd.mut_subcommand(&name, |sub| name_subcommands(name_flags(sub, &p), &p))
    })
}

/// `cmd`'s own flags without a variable, named `<prefix>_<FLAG>`.
fn name_flags(cmd: Command, prefix: &str) -> Command {
    let ids: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && a.get_env().is_none())
        .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.to_string())))
        .filter(|(_, long)| !COMMAND_LINE_ONLY.contains(&long.as_str()))
        .collect();
    ids.into_iter().fold(cmd, |cmd, (id, long)| {
        let var = format!("{prefix}_{}", upper(&long));
        cmd.mut_arg(id, |a| a.env(var))
    })
}

fn upper(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag of every subcommand names a variable, but those that change a command's
    /// meaning.
    #[test]
    fn every_flag_has_a_variable() {
        fn check(cmd: &Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let Some(long) = a.get_long() else { continue };
                if !a.is_positional() && a.get_env().is_none() && !COMMAND_LINE_ONLY.contains(&long)
                {
                    missing.push(format!("{path} --{long}"));
                }
            }
            for s in cmd.get_subcommands() {
                check(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let cmd = with_env_for_every_flag(crate::Cli::command());
        let mut missing = Vec::new();
        check(&cmd, "shardkv", &mut missing);
        assert!(missing.is_empty(), "flags without a variable: {missing:?}");
        let bench = cmd.find_subcommand("bench").expect("bench");
        let clients = bench
            .get_arguments()
            .find(|a| a.get_long() == Some("clients"))
            .expect("--clients");
        assert_eq!(
            clients.get_env().and_then(|e| e.to_str()),
            Some("SHARDKV_BENCH_CLIENTS")
        );
    }
}
