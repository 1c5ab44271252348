//! What every command that talks to a running cluster shares: where it is (`--endpoints`,
//! `SHARDKV_ENDPOINTS`, default: the ports `shardkv up` uses), which mode, and how to print
//! (`-w text|json`), and how to connect: plaintext, or TLS with `--cacert` (the cluster's
//! CA) and `--cert`/`--key` (a client certificate the CA signed; a server with TLS on
//! refuses a connection without one), etcdctl's flag names, env `SHARDKV_CACERT`,
//! `SHARDKV_CERT`, `SHARDKV_KEY`.
//!
//! Every flag has an environment variable (`SHARDKV_TIMEOUT`, `SHARDKV_WRITE_OUT`,
//! `SHARDKV_GROUP`, `SHARDKV_CTRL_ENDPOINTS` besides the above) and may also come before
//! the subcommand (`shardkv --endpoints X get k`, see `main`).
//!
//! When every endpoint refuses connections the command fails at once (not after
//! `--timeout`), naming each address it tried, with a hint ([`check_listening`]).
//!
//! Mode: with `--group GID` the commands talk to that one replica group at `--endpoints`
//! (`--group 0`: the servers' only KV group). Without it they ask the first server that
//! answers what its default group is: a shard group (as in `shardkv up`'s cluster) makes
//! the client sharded — each key goes to the group the controller's config assigns its
//! shard to, the controller being at `--ctrl-endpoints` (default: `--endpoints`); a plain KV
//! group (or no answer) makes it a client of that one group.

use anyhow::Context;
use clap::{Args, ValueEnum};
use shardkv_client::{Client, ClientOptions, Dial, Gid, fetch_group_status_with};
use std::path::PathBuf;

/// The base port `shardkv up` uses; members listen on base, base+1, base+2.
pub const BASE_PORT_DEFAULT: u16 = 7001;

/// The endpoints of `shardkv up`'s group with the default base port.
pub const ENDPOINTS_DEFAULT: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum WriteOut {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ConnArgs {
    /// The servers to talk to: HOST:PORT (or ID=HOST:PORT), comma-separated (any servers
    /// of a sharded cluster, or the members of one group).
    #[arg(long, env = "SHARDKV_ENDPOINTS", default_value = ENDPOINTS_DEFAULT, global = true)]
    pub endpoints: String,
    /// Give up on an operation after this long (e.g. 5s, 500ms).
    #[arg(long, env = "SHARDKV_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: std::time::Duration,
    /// Output format.
    #[arg(short = 'w', long = "write-out", env = "SHARDKV_WRITE_OUT", value_enum, default_value_t = WriteOut::Text, global = true)]
    pub write_out: WriteOut,
    /// Talk to this one group at --endpoints, not the sharded cluster (0: the servers'
    /// only KV group). Default: sharded when the servers host shard groups.
    #[arg(long, env = "SHARDKV_GROUP", global = true)]
    pub group: Option<u64>,
    /// The shard controller's servers, for a sharded cluster (default: --endpoints).
    #[arg(long, env = "SHARDKV_CTRL_ENDPOINTS", global = true)]
    pub ctrl_endpoints: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The TLS flags of every command that connects to servers (etcdctl's names).
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Connect with TLS, trusting this CA certificate (PEM).
    #[arg(
        id = "tls_cacert",
        long = "cacert",
        value_name = "FILE",
        env = "SHARDKV_CACERT",
        global = true
    )]
    pub cacert: Option<PathBuf>,
    /// The client certificate (PEM) presented with TLS; needs --key and --cacert.
    #[arg(id = "tls_cert", long = "cert", value_name = "FILE", env = "SHARDKV_CERT", global = true,
        requires_all = ["tls_key", "tls_cacert"])]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        id = "tls_key",
        long = "key",
        value_name = "FILE",
        env = "SHARDKV_KEY",
        global = true,
        requires = "tls_cert"
    )]
    pub key: Option<PathBuf>,
}

/// How long each server gets to say what it hosts.
const DETECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl ConnArgs {
    /// A client for the cluster (see the module docs for the mode), bounded by `--timeout`.
    /// Must not be called inside a runtime.
    pub fn client(&self) -> anyhow::Result<Client> {
        self.client_with(self.options()?)
    }

    /// Client options bounded by `--timeout`, with the TLS flags.
    pub fn options(&self) -> anyhow::Result<ClientOptions> {
        Ok(ClientOptions {
            op_timeout: self.timeout,
            tls: self.tls()?,
            ..ClientOptions::default()
        })
    }

    /// The TLS configuration the flags ask for (`None`: plaintext).
    pub fn tls(&self) -> anyhow::Result<Option<shardkv_client::ClientTlsConfig>> {
        self.tls.config()
    }

    /// How connections are opened, with `timeout`.
    pub fn dial(&self, timeout: std::time::Duration) -> anyhow::Result<Dial> {
        Ok(Dial {
            timeout,
            tls: self.tls()?,
        })
    }

    /// A client with `opts` (its `group` is set by the mode; its TLS from the flags). Must
    /// not be called inside a runtime.
    pub fn client_with(&self, opts: ClientOptions) -> anyhow::Result<Client> {
        let addrs: Vec<String> = self.endpoint_list().iter().map(|a| strip_id(a)).collect();
        check_listening(&addrs, "--endpoints (SHARDKV_ENDPOINTS)")?;
        let opts = ClientOptions {
            tls: self.tls()?,
            ..opts
        };
        let client = match self.sharded()? {
            Some(ctrl) => Client::connect_sharded(&ctrl, opts),
            None => {
                let group = Gid(self.group.unwrap_or(0));
                Client::connect_with(&self.endpoint_list(), ClientOptions { group, ..opts })
            }
        };
        client.map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The controller's endpoints when the client should be sharded, `None` for one group.
    fn sharded(&self) -> anyhow::Result<Option<Vec<String>>> {
        if self.group.is_some() {
            return Ok(None);
        }
        let addrs: Vec<String> = self.endpoint_list().iter().map(|a| strip_id(a)).collect();
        let dial = self.dial(DETECT_TIMEOUT)?;
        let sharded = runtime()?.block_on(async {
            for a in &addrs {
                if let Ok(s) = fetch_group_status_with(a, None, &dial).await {
                    return s.shards.is_some();
                }
            }
            false
        });
        let ctrl = self.ctrl_endpoints.as_deref().unwrap_or(&self.endpoints);
        Ok(sharded.then(|| split_list(ctrl)))
    }

    pub fn endpoint_list(&self) -> Vec<String> {
        split_list(&self.endpoints)
    }
}

impl TlsArgs {
    /// The TLS configuration the flags ask for (`None`: plaintext).
    pub fn config(&self) -> anyhow::Result<Option<shardkv_client::ClientTlsConfig>> {
        let Some(cacert) = &self.cacert else {
            return Ok(None);
        };
        let cert_key = self.cert.as_deref().zip(self.key.as_deref());
        let config = shardkv_client::tls::client_config(cacert, cert_key).context("TLS")?;
        Ok(Some(config))
    }
}

/// An endpoint's address: `HOST:PORT` of `ID=HOST:PORT` or `HOST:PORT`.
pub fn strip_id(endpoint: &str) -> String {
    endpoint
        .split_once('=')
        .map_or(endpoint, |(_, addr)| addr)
        .to_string()
}

/// How long each address gets to accept a TCP connection in [`check_listening`].
const LISTEN_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Fails at once, naming every address and how it failed, with a hint, when no address
/// can be reached at all: each one refuses a TCP connection (nothing listens there) or its
/// name does not resolve, so retrying for the whole `--timeout` cannot help. Any other
/// outcome (one accepts, one does not answer in time) passes: the operation's own retries
/// handle it. `flag` names where the addresses came from. Must not be called inside a
/// runtime.
pub fn check_listening(addrs: &[String], flag: &str) -> anyhow::Result<()> {
    use std::io::ErrorKind;
    let failures = runtime()?.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, addr) in addrs.iter().enumerate() {
            let addr = addr.clone();
            tasks.spawn(async move {
                let attempt = async {
                    let resolved: Vec<_> = match tokio::net::lookup_host(&addr).await {
                        Ok(r) => r.collect(),
                        Err(e) => return Some(format!("{addr} (does not resolve: {e})")),
                    };
                    match tokio::net::TcpStream::connect(&resolved[..]).await {
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                            Some(format!("{addr} (connection refused)"))
                        }
                        _ => None,
                    }
                };
                let failed = tokio::time::timeout(LISTEN_CHECK_TIMEOUT, attempt).await;
                (i, failed.ok().flatten())
            });
        }
        let mut failures = vec![None; addrs.len()];
        while let Some(r) = tasks.join_next().await {
            if let Ok((i, failure)) = r {
                failures[i] = failure;
            }
        }
        failures
    });
    let tried: Option<Vec<String>> = failures.into_iter().collect();
    match tried {
        Some(tried) if !tried.is_empty() => anyhow::bail!(
            "unavailable: no endpoint could be reached, of the {} tried: {}; is the cluster \
             running? Start a local one with `shardkv up`, or point {flag} at yours; not applied",
            addrs.len(),
            tried.join(", ")
        ),
        _ => Ok(()),
    }
}

/// A comma-separated list, trimmed, without empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A single-threaded runtime for a command that makes a few RPCs.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Bytes as JSON: a string when they are UTF-8, else `{"hex": "..."}`.
pub fn bytes_json(b: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            serde_json::json!({ "hex": hex })
        }
    }
}
