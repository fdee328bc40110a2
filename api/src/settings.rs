//! Where a client finds its node: the flags and variables it is given, else the config
//! file the node reads (`--config` / `GUTS_CONFIG`, else the default file if there is
//! one), else the defaults. A client reads only the two keys it needs, so a file written
//! for `guts node` works for `guts status` as it is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::ApiAddress;

/// The config file a node and its clients read when none is named, if it exists:
/// `~/.config/guts/config.toml` on Linux (the platform's config dir).
pub fn default_config_file() -> Option<PathBuf> {
    dirs::config_dir()
        .map(|d| d.join("guts").join("config.toml"))
        .filter(|p| p.exists())
}

/// What a client takes from a node's config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileSettings {
    /// The file's `api`: `None` if the key is absent, `Some(None)` for `"off"`.
    pub api: Option<Option<ApiAddress>>,
    /// The file's `data_dir`.
    pub data_dir: Option<PathBuf>,
}

/// A config file a client could not use, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML, or a key a client needs has a bad value.
    #[error("config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads `api` and `data_dir` from a node's TOML config file; other keys are the node's.
pub fn read_file_settings(path: &Path) -> Result<FileSettings, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |message: String| SettingsError::Invalid {
        path: path.to_owned(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| invalid(e.message().to_owned()))?;
    let string = |key: &str| -> Result<Option<&str>, SettingsError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(invalid(format!(
                "`{key}` must be a string, not {}",
                other.type_str()
            ))),
        }
    };
    let api = match string("api")? {
        None => None,
        Some("off") => Some(None),
        Some(s) => Some(Some(
            s.parse::<ApiAddress>()
                .map_err(|e| invalid(format!("`api`: {e}")))?,
        )),
    };
    Ok(FileSettings {
        api,
        data_dir: string("data_dir")?.map(PathBuf::from),
    })
}

/// The address a client connects to for an API the node binds at `addr`: a node that
/// listens on every interface is reached on loopback.
pub fn connectable(addr: ApiAddress) -> ApiAddress {
    match addr.socket_addr() {
        Some(s) if s.ip().is_unspecified() => {
            let ip = match s.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            ApiAddress::from(SocketAddr::new(ip, s.port()))
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_two_keys_a_client_needs_and_ignores_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "api = \"http://127.0.0.1:9081\"\ndata_dir = \"/srv/guts\"\nmax_connections = 5\n",
        )
        .unwrap();
        let s = read_file_settings(&path).unwrap();
        assert_eq!(s.api, Some(Some("127.0.0.1:9081".parse().unwrap())));
        assert_eq!(s.data_dir, Some(PathBuf::from("/srv/guts")));

        std::fs::write(&path, "api = \"off\"\n").unwrap();
        assert_eq!(read_file_settings(&path).unwrap().api, Some(None));

        std::fs::write(&path, "api = 9080\n").unwrap();
        let e = read_file_settings(&path).unwrap_err().to_string();
        assert!(
            e.contains("config.toml") && e.contains("`api` must be a string"),
            "{e}"
        );
        std::fs::write(&path, "api = \"127.0.0.1\"\n").unwrap();
        let e = read_file_settings(&path).unwrap_err().to_string();
        assert!(e.contains("\"127.0.0.1\"") && e.contains("no port"), "{e}");
        std::fs::write(&path, "api = [\n").unwrap();
        let e = read_file_settings(&path).unwrap_err().to_string();
        assert!(e.contains("config.toml"), "{e}");
        let e = read_file_settings(&dir.path().join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.toml"), "{e}");
    }

    #[test]
    fn an_api_on_every_interface_is_reached_on_loopback() {
        let all: ApiAddress = "0.0.0.0:9080".parse().unwrap();
        assert_eq!(connectable(all).to_string(), "127.0.0.1:9080");
        let all6: ApiAddress = "[::]:9080".parse().unwrap();
        assert_eq!(connectable(all6).to_string(), "[::1]:9080");
        let named: ApiAddress = "localhost:9080".parse().unwrap();
        assert_eq!(connectable(named).to_string(), "localhost:9080");
    }
}
