//! What every command that talks to a running group shares: where the group is
//! (`--endpoints`, `SHARDKV_ENDPOINTS`, default: the ports `shardkv up` uses) and how to
//! print (`-w text|json`).

use clap::{Args, ValueEnum};

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
    /// The group's servers: HOST:PORT (or ID=HOST:PORT), comma-separated.
    #[arg(long, env = "SHARDKV_ENDPOINTS", default_value = ENDPOINTS_DEFAULT, global = true)]
    pub endpoints: String,
    /// Give up on an operation after this long (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: std::time::Duration,
    /// Output format.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = WriteOut::Text, global = true)]
    pub write_out: WriteOut,
}

impl ConnArgs {
    /// A client for the group, bounded by `--timeout`.
    pub fn client(&self) -> anyhow::Result<shardkv_client::Client> {
        let opts = shardkv_client::ClientOptions {
            op_timeout: self.timeout,
            ..shardkv_client::ClientOptions::default()
        };
        shardkv_client::Client::connect_with(&self.endpoint_list(), opts)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    pub fn endpoint_list(&self) -> Vec<String> {
        self.endpoints
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
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
