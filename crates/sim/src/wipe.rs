//! A member whose data directory is wiped, and its restart through the server's start-up
//! check (an empty directory is refused unless the start bootstraps a new member).

use crate::app::App;
use crate::cluster::Sim;
use shardkv_storage::{Identity, StorageError};
use shardkv_types::NodeId;

impl<A: App> Sim<A> {
    /// Crashes `id` and empties its disk, as if its data directory was deleted. It stays
    /// down until [`Sim::restart_checked`].
    pub fn wipe(&mut self, id: NodeId) {
        self.crash(id);
        let seed = self.rng.next_u64();
        self.nodes.get_mut(&id).expect("node").store.wipe(seed);
    }

    /// Restarts `id` as `shardkv server [--bootstrap]` does: the data directory is checked
    /// first, and on refusal the node stays down and the error is returned.
    pub fn restart_checked(&mut self, id: NodeId, bootstrap: bool) -> Result<(), StorageError> {
        self.crash(id);
        let gid = self.gid_of(id);
        let given = Identity {
            cluster_id: 0,
            cluster_token: "sim".into(),
            group_id: gid,
            node_id: id,
            voters: self
                .members(gid)
                .into_iter()
                .map(|m| (m, m.to_string()))
                .collect(),
            service: "sim".into(),
            learners: Default::default(),
            initial_voters: self.members(gid).into_iter().collect(),
            initial_learners: Default::default(),
        };
        let node = self.nodes.get_mut(&id).expect("node");
        node.store.check_identity(&given, bootstrap)?;
        self.restart(id);
        Ok(())
    }
}
