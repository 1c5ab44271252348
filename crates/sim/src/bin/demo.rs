//! A narrated run of a simulated 5-node Raft group: election, replication, a leader crash,
//! re-election, a partition and its healing, in virtual time under one seed.
//!
//! `cargo run --release -p shardkv-sim --bin demo [-- --seed N]`

use shardkv_sim::{Cluster, ClusterConfig, NetConfig};

fn main() {
    let seed = std::env::args()
        .skip_while(|a| a != "--seed")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut cfg = ClusterConfig::new(5, seed);
    cfg.net = NetConfig::unreliable();
    cfg.snapshot_every = Some(100);
    let mut c = Cluster::new(cfg);
    let say = |c: &Cluster, what: String| println!("[{:>6} ms] {what}", c.now / 1000);
    say(
        &c,
        format!("5 nodes start, seed {seed}, network: 10% loss each way, 0-26 ms delay"),
    );
    let l1 = c.check_one_leader();
    say(
        &c,
        format!("{l1} elected leader of term {}", c.state(l1).unwrap().0),
    );
    for v in 0..200u64 {
        c.one(&Cluster::cmd(v), 5, true);
    }
    say(
        &c,
        format!(
            "200 commands committed on all 5 nodes; {} requests sent so far",
            c.stats.requests
        ),
    );
    c.crash(l1);
    say(&c, format!("{l1} crashes"));
    let l2 = c.check_one_leader();
    say(
        &c,
        format!("{l2} elected leader of term {}", c.state(l2).unwrap().0),
    );
    let i = c.one(&Cluster::cmd(1000), 4, true);
    say(&c, format!("a command commits at {i} with 4 nodes"));
    c.restart(l1);
    let i = c.one(&Cluster::cmd(1001), 5, true);
    say(
        &c,
        format!("{l1} restarts from its log and catches up; index {i} on all 5"),
    );
    let minority = [l2, shardkv_types::NodeId(l2.0 % 5 + 1)];
    let majority: Vec<_> = c
        .ids()
        .into_iter()
        .filter(|x| !minority.contains(x))
        .collect();
    c.partition(&[&minority, &majority]);
    let names = |v: &[shardkv_types::NodeId]| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    say(
        &c,
        format!(
            "partition: {{{}}} | {{{}}}",
            names(&minority),
            names(&majority)
        ),
    );
    let stepped = c.run_until(2_000, |c| c.state(l2).is_some_and(|(_, l)| !l));
    say(
        &c,
        format!("old leader {l2} stepped down (CheckQuorum): {stepped}"),
    );
    let l3 = c.check_one_leader();
    say(
        &c,
        format!("{l3} leads the majority in term {}", c.state(l3).unwrap().0),
    );
    c.connect_all();
    let i = c.one(&Cluster::cmd(1002), 5, true);
    say(
        &c,
        format!(
            "healed; index {i} committed on all 5; elections so far: {}",
            c.elections.len()
        ),
    );
    say(
        &c,
        "invariants held throughout (election safety, log matching, leader completeness, state machine safety)".to_string(),
    );
}
