use shardkv_lincheck::*;
#[test]
fn scratch() {
    let f = std::fs::File::open(std::env::var("H").unwrap()).unwrap();
    let h = read_history_jsonl(std::io::BufReader::new(f)).unwrap();
    let steps: u64 = std::env::var("S").map(|s| s.parse().unwrap()).unwrap_or(10_000_000);
    // Drop all unknown ops: if it is not linearizable even treating them as never applied... just info
    let r = check_report(&h, Budget::steps_per_key(steps));
    for k in &r.keys { println!("{:?} ops {} steps {} confs {} {:?}", String::from_utf8_lossy(&k.key), k.ops, k.steps, k.configurations, match &k.outcome { KeyOutcome::NotLinearizable{explanation} => explanation.clone(), o => format!("{o:?}")}); }
}
