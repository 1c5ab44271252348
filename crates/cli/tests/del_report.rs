//! `shardkv del` says whether it deleted, as etcdctl does: `1` when the key existed, `0`
//! when it did not, a `deleted` field with `-w json`, and exit 0 both ways.

mod common;

use common::cluster::Cluster;
use std::process::Output;

fn out(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn del_prints_whether_the_key_existed() {
    let c = Cluster::start(1, &[]);
    c.leader();
    out(&c.cli(&["put", "k", "v"], None));
    assert_eq!(out(&c.cli(&["del", "k"], None)), "1\n");
    assert_eq!(out(&c.cli(&["del", "k"], None)), "0\n");
    out(&c.cli(&["put", "k", ""], None));
    assert_eq!(
        out(&c.cli(&["del", "k", "-w", "json"], None)).trim(),
        r#"{"deleted":1,"ok":true}"#,
        "an empty value is a key"
    );
    assert_eq!(
        out(&c.cli(&["del", "never", "-w", "json"], None)).trim(),
        r#"{"deleted":0,"ok":true}"#
    );
}
