//! The simulator's events: what its queue holds ([`Event`]) and what it hands to the
//! client drivers ([`ClientEvent`]).

use shardkv_types::NodeId;

/// Who sent a client-style request, so that the answer finds its way back: a simulated
/// client, or a node of some group asking another group (config polls, shard pulls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A simulated client at this address.
    Client(u64),
    /// A node, at the incarnation that asked (a restarted node gets no stale answers).
    Node { id: NodeId, incarnation: u64 },
}

/// An event in the simulation's queue.
#[derive(Debug)]
pub(crate) enum Event {
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    /// An encoded [`Envelope`](crate::wire::Envelope) from `from` to `to`.
    Raft {
        from: NodeId,
        to: NodeId,
        incarnation: u64,
        bytes: Vec<u8>,
        request: bool,
    },
    Request {
        origin: Origin,
        req: u64,
        to: NodeId,
        incarnation: u64,
        bytes: Vec<u8>,
    },
    Response {
        origin: Origin,
        req: u64,
        from: NodeId,
        bytes: Vec<u8>,
    },
    ClientTimer {
        client: u64,
        token: u64,
    },
}

/// Something that happened to a simulated client, for its driver to handle.
#[derive(Debug)]
pub enum ClientEvent<R> {
    Response {
        client: u64,
        client_req: u64,
        from: NodeId,
        response: R,
    },
    Timer {
        client: u64,
        token: u64,
    },
}

impl<R> ClientEvent<R> {
    /// The client this event is for.
    pub fn client(&self) -> u64 {
        match self {
            ClientEvent::Response { client, .. } | ClientEvent::Timer { client, .. } => *client,
        }
    }
}
