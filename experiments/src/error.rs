//! Typed errors of the experiments crate; the binary adds context and prints the chain.

use thiserror::Error;

/// A configuration that cannot be run.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("{0}")]
    Toml(String),
    #[error("unknown key '{key}'; allowed keys: {allowed}")]
    UnknownKey { key: String, allowed: String },
    #[error("invalid value {value} for '{key}': {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
}

/// A task that cannot be set up.
#[derive(Debug, Error)]
pub enum TaskError {
    #[error("cannot read the text file {path}: {source}")]
    Text {
        path: String,
        source: std::io::Error,
    },
    #[error("the text file {path} is too short: {chars} characters, need at least {need} for seq_len {seq_len} with a 95/5 split")]
    TextTooShort {
        path: String,
        chars: usize,
        need: usize,
        seq_len: usize,
    },
}
