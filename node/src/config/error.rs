//! What is wrong with a configuration, naming the value.

use std::path::PathBuf;

/// A configuration that cannot be used. Every variant names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for a [`Config`](super::Config).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Values that are each fine but contradict each other.
    #[error("inconsistent settings: {0}")]
    Inconsistent(String),
    /// A value is out of range or of the wrong form.
    #[error("invalid {field} value {value:?}: {reason}")]
    Invalid {
        /// The setting, as named in the config file.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

impl ConfigError {
    /// `field` holds `value`, which is wrong for `reason`.
    pub fn invalid(field: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The first of `fields` that is zero, as an error.
pub(crate) fn at_least_one(fields: &[(&'static str, u64)]) -> Result<(), ConfigError> {
    match fields.iter().find(|(_, v)| *v == 0) {
        Some((field, _)) => Err(ConfigError::invalid(field, 0, "must be at least 1")),
        None => Ok(()),
    }
}

/// The first of `fields` that is zero long, as an error.
pub(crate) fn not_zero(fields: &[(&'static str, std::time::Duration)]) -> Result<(), ConfigError> {
    match fields.iter().find(|(_, v)| v.is_zero()) {
        Some((field, v)) => Err(ConfigError::invalid(
            field,
            humantime::format_duration(*v),
            "must be greater than zero",
        )),
        None => Ok(()),
    }
}
