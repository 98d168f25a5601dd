//! Typed errors of the host library. Each says what failed, with context, and whether retrying can help.

use std::path::PathBuf;

/// A configuration problem: always names the key or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config ({origin}): {message}")]
    Parse { origin: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// A plugin could not be loaded or configured.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "plugins directory {0} does not exist: build the plugins (`scripts/build-plugins`) or pass --plugins DIR"
    )]
    MissingDir(PathBuf),
    #[error("plugin file {path} not found (chain entry `{plugin}`); available: {available}")]
    MissingFile {
        plugin: String,
        path: PathBuf,
        available: String,
    },
    #[error("{path} is not a valid WebAssembly component: {message}")]
    InvalidComponent { path: PathBuf, message: String },
    #[error(
        "{path} does not implement the `cdc:transform/transform@0.1.0` world (build it against wit/transform.wit): {message}"
    )]
    WrongWorld { path: PathBuf, message: String },
    #[error("plugin `{plugin}` rejected its configuration: {message}")]
    Configure { plugin: String, message: String },
    #[error("plugin `{plugin}` description is invalid: {message}")]
    Description { plugin: String, message: String },
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

/// An Iceberg catalog/table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot use warehouse {path}: {message}")]
    Warehouse { path: PathBuf, message: String },
    #[error("iceberg catalog: {context}: {source}")]
    Catalog {
        context: String,
        source: Box<iceberg::Error>,
    },
    #[error("writing data files for {table}: {source}")]
    Write {
        table: String,
        source: Box<iceberg::Error>,
    },
    #[error("commit to {table}: {source}")]
    Commit {
        table: String,
        source: Box<iceberg::Error>,
    },
    #[error("batch does not fit table {table}: {message}")]
    Shape { table: String, message: String },
}

impl SinkError {
    /// Whether trying the same operation again may succeed (I/O and conflicts), as opposed to a
    /// problem that needs a change of input or configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Catalog { source, .. }
            | SinkError::Write { source, .. }
            | SinkError::Commit { source, .. } => {
                source.retryable()
                    || matches!(
                        source.kind(),
                        iceberg::ErrorKind::CatalogCommitConflicts | iceberg::ErrorKind::Unexpected
                    )
            }
            SinkError::Warehouse { .. } | SinkError::Shape { .. } => false,
        }
    }
}

/// Why a pipeline run stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("reading input: {0}")]
    Input(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}
