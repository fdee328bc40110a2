//! The flags every client command takes to find its node.

use std::path::PathBuf;

use clap::Args;
use guts_api::ApiAddress;
use guts_api::client::Target;
use serde::Serialize;

/// Where the node's control API is, and where its token is.
#[derive(Args, Debug, Clone, Default)]
pub struct ApiArgs {
    /// The node's control API: HOST:PORT or http://HOST:PORT [default: the config file's
    /// `api`, else 127.0.0.1:9080].
    #[arg(long, env = "GUTS_API", value_name = "ADDR")]
    api: Option<ApiAddress>,
    /// The node's data dir, where it writes its API token [default: the config file's
    /// `data_dir`, else the platform data dir, as for `guts node`]. GUTS_API_TOKEN, if
    /// set, is used instead.
    #[arg(long, env = "GUTS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The node's config file, read for its `api` and `data_dir` [default:
    /// ~/.config/guts/config.toml, if it exists].
    #[arg(long, env = "GUTS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ApiArgs {
    /// The node these flags name, for [`guts_api::client::Client`].
    pub fn target(&self) -> Target {
        Target {
            api: self.api.clone(),
            data_dir: self.data_dir.clone(),
            config: self.config.clone(),
        }
    }
}

/// Prints `value` as pretty JSON: what every client command prints with `--json`.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
