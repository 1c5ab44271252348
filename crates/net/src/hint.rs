//! Leader hints with an address. A `NotLeader` or `LostLeadership` answer names the leader
//! by node id (`Error.leader`); a client that was given only some members' addresses (one
//! follower, say) cannot map that id to a server. So the answering server also fills
//! `Error.leader_addr` with where clients reach that leader, from its group's address book
//! (the members' `--peers` addresses: the one gRPC port serves clients and peers alike).
//!
//! On the way in, a hint address is only a suggestion: it is read back only for those two
//! codes and a leader id, and only when it looks like `HOST:PORT` within
//! [`HINT_ADDR_BYTES_MAX`]; the client decides whether to dial it (bounded, see
//! `shardkv-client`'s `Endpoints`).

use crate::pb::{self, ErrorCode, ctrl_reply::Result as CtrlResult, kv_reply::Result as KvResult};
use shardkv_types::NodeId;

/// The longest hint address read from the wire (a DNS name is at most 253 bytes, a port 5).
pub const HINT_ADDR_BYTES_MAX: usize = 260;

/// Fills the leader address of `e` by `lookup`, when `e` is a leader hint naming a leader.
pub fn fill(e: &mut pb::Error, lookup: impl FnOnce(NodeId) -> Option<String>) {
    if !names_a_leader(e) {
        return;
    }
    if let Some(addr) = lookup(NodeId(e.leader)) {
        e.leader_addr = addr;
    }
}

/// [`fill`] on a Kv service reply.
pub fn fill_kv(r: &mut pb::KvReply, lookup: impl FnOnce(NodeId) -> Option<String>) {
    if let Some(KvResult::Error(e)) = &mut r.result {
        fill(e, lookup);
    }
}

/// [`fill`] on a Ctrl service reply.
pub fn fill_ctrl(r: &mut pb::CtrlReply, lookup: impl FnOnce(NodeId) -> Option<String>) {
    if let Some(CtrlResult::Error(e)) = &mut r.result {
        fill(e, lookup);
    }
}

/// The leader and its address that `e` hints at, if it is a leader hint with a plausible
/// `HOST:PORT` address.
pub fn read(e: &pb::Error) -> Option<(NodeId, String)> {
    let addr = e.leader_addr.trim();
    let plausible = addr.len() <= HINT_ADDR_BYTES_MAX
        && addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        })
        && !addr.contains(|c: char| c.is_whitespace() || c == '/' || c == ',' || c == '=');
    (names_a_leader(e) && plausible).then(|| (NodeId(e.leader), addr.to_string()))
}

/// [`read`] on a Kv service reply.
pub fn read_kv(r: &pb::KvReply) -> Option<(NodeId, String)> {
    match &r.result {
        Some(KvResult::Error(e)) => read(e),
        _ => None,
    }
}

/// [`read`] on a Ctrl service reply.
pub fn read_ctrl(r: &pb::CtrlReply) -> Option<(NodeId, String)> {
    match &r.result {
        Some(CtrlResult::Error(e)) => read(e),
        _ => None,
    }
}

fn names_a_leader(e: &pb::Error) -> bool {
    let hint = [
        ErrorCode::NotLeader as i32,
        ErrorCode::LostLeadership as i32,
    ];
    e.leader != 0 && hint.contains(&e.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{ctrl_reply_to_wire, reply_to_wire};
    use shardkv_rsm::Error;

    fn book(id: NodeId) -> Option<String> {
        (id == NodeId(3)).then(|| "db-3.example:7001".to_string())
    }

    #[test]
    fn a_leader_hint_carries_the_leaders_address_when_the_server_knows_it() {
        // Goal: the address travels with NotLeader and LostLeadership naming a leader, and
        // with nothing else. Method: fill replies as the services do, read them back.
        let hinted = [
            Error::NotLeader {
                leader: Some(NodeId(3)),
            },
            Error::LostLeadership {
                leader: Some(NodeId(3)),
            },
        ];
        for e in hinted {
            let mut r = reply_to_wire(NodeId(1), Err(e.clone()));
            fill_kv(&mut r, book);
            assert_eq!(
                read_kv(&r),
                Some((NodeId(3), "db-3.example:7001".into())),
                "{e:?}"
            );
            let mut c = ctrl_reply_to_wire(NodeId(1), Err(e.clone()));
            fill_ctrl(&mut c, book);
            assert_eq!(read_ctrl(&c), Some((NodeId(3), "db-3.example:7001".into())));
        }
        let unknown = [
            Error::NotLeader { leader: None },
            Error::NotLeader {
                leader: Some(NodeId(4)),
            },
            Error::Busy,
        ];
        for e in unknown {
            let mut r = reply_to_wire(NodeId(1), Err(e.clone()));
            fill_kv(&mut r, book);
            assert_eq!(read_kv(&r), None, "{e:?}");
        }
        let mut ok = reply_to_wire(NodeId(1), Ok(shardkv_kv::KvOutput::Done));
        fill_kv(&mut ok, |_| panic!("no lookup for an answer"));
        assert_eq!(read_kv(&ok), None);
    }

    #[test]
    fn an_implausible_hint_address_is_ignored() {
        // Goal: a hint is only dialled when it looks like HOST:PORT of bounded length.
        let e = |addr: &str| pb::Error {
            code: ErrorCode::NotLeader as i32,
            leader: 2,
            leader_addr: addr.to_string(),
            ..Default::default()
        };
        assert_eq!(
            read(&e("10.0.0.2:7001")),
            Some((NodeId(2), "10.0.0.2:7001".into()))
        );
        assert_eq!(
            read(&e("[::1]:7001")),
            Some((NodeId(2), "[::1]:7001".into()))
        );
        let long = format!("{}:1", "a".repeat(HINT_ADDR_BYTES_MAX));
        for bad in [
            "", "host", ":7001", "host:0", "host:x", "h/x:1", "a b:1", "1=h:1", &long,
        ] {
            assert_eq!(read(&e(bad)), None, "{bad:?}");
        }
        let no_leader = pb::Error {
            leader: 0,
            ..e("h:1")
        };
        assert_eq!(read(&no_leader), None);
    }
}
