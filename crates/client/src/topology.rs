//! [`Sharded`]: the async driver's topology of a sharded cluster. Each group's endpoints
//! come from the router's cached config (a group's servers listed in node order, as `admin
//! join` gives them, so the i-th is the clerk's `NodeId(i + 1)`), and a refresh asks the
//! shard controller for its latest config.

use crate::ctrl_client::CtrlClient;
use crate::driver::Topology;
use crate::endpoints::{Dial, Endpoints};
use crate::in_process::Local;
use crate::{Error, ShardRouter};
use shardkv_types::Gid;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections by group, shared by the sessions of one client.
type GroupEndpoints = Arc<Mutex<BTreeMap<Gid, (Vec<String>, Arc<Endpoints>)>>>;

/// The groups of a sharded cluster, found through its controller.
pub(crate) struct Sharded {
    ctrl: CtrlClient,
    /// Each group's server list when its endpoints were made, and the endpoints.
    groups: GroupEndpoints,
    dial: Dial,
    /// The server of this process, if the client runs in one (see [`crate::in_process`]).
    local: Option<Local>,
}

impl Sharded {
    pub(crate) fn new(ctrl: CtrlClient, dial: Dial, local: Option<Local>) -> Sharded {
        Sharded {
            ctrl,
            groups: Arc::default(),
            dial,
            local,
        }
    }
}

impl Topology<ShardRouter> for Sharded {
    /// The endpoints of `gid` in the router's config; kept while its server list is the
    /// same, so connections and learned node ids survive config changes.
    fn endpoints(&mut self, router: &ShardRouter, gid: Gid) -> Result<Arc<Endpoints>, Error> {
        let servers = router
            .config()
            .and_then(|c| c.groups.get(&gid))
            .ok_or_else(|| Error::Unavailable {
                reason: format!("group {gid} is not in the cached config"),
            })?;
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, e)) = groups.get(&gid)
            && known == servers
        {
            return Ok(e.clone());
        }
        let e = Endpoints::parse(servers, self.dial.clone())?.in_process(self.local.clone());
        let e = Arc::new(e);
        groups.insert(gid, (servers.clone(), e.clone()));
        Ok(e)
    }

    /// The controller's latest config (a linearizable read), bounded by `within`.
    async fn refresh(&mut self, router: &mut ShardRouter, within: Duration) -> Result<(), Error> {
        let config = tokio::time::timeout(within, self.ctrl.query(None))
            .await
            .map_err(|_| Error::Unavailable {
                reason: format!("the controller gave no config within {within:?}"),
            })??;
        router.set_config(config);
        Ok(())
    }

    fn session(&self) -> Self {
        Sharded {
            ctrl: self.ctrl.session(),
            groups: self.groups.clone(),
            dial: self.dial.clone(),
            local: self.local.clone(),
        }
    }
}
