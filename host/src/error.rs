//! Typed errors of the host library. Each says what failed, with context, and whether retrying can help.

use std::path::PathBuf;

/// A configuration problem: always names the key or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
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
    MissingFile { plugin: String, path: PathBuf, available: String },
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
    #[error("chain package: {0}")]
    Package(String),
    #[error(
        "plugin `{plugin}` was quarantined after {failures} consecutive failed batches and plugins.on_quarantine = \"stop\" (last failure: {reason}); pending rows were committed"
    )]
    Quarantined { plugin: String, failures: u32, reason: String },
}

/// A plugin chain change that was not applied (the running chain stays active), or hot reload could
/// not start.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "cannot watch {path} for plugin changes (set plugins.watch = false to run without hot reload): {message}"
    )]
    Watch { path: PathBuf, message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("chain entry `{plugin}`: {source}")]
    Plugin { plugin: String, source: PluginError },
    #[error(transparent)]
    Chain(#[from] PluginError),
}

impl ReloadError {
    /// The plugin (chain entry) the error is about, if it is about one.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            ReloadError::Plugin { plugin, .. } => Some(plugin),
            ReloadError::Chain(PluginError::MissingFile { plugin, .. }) => Some(plugin),
            _ => None,
        }
    }
}

/// An Iceberg catalog/table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot use warehouse {path}: {message}")]
    Warehouse { path: PathBuf, message: String },
    #[error("iceberg catalog: {context}: {source}")]
    Catalog { context: String, source: Box<iceberg::Error> },
    #[error("writing data files for {table}: {source}")]
    Write { table: String, source: Box<iceberg::Error> },
    #[error("commit to {table}: {source}")]
    Commit { table: String, source: Box<iceberg::Error> },
    #[error("batch does not fit table {table}: {message}")]
    Shape { table: String, message: String },
    /// A change to the table that Iceberg (or the table's use) forbids.
    #[error("{table}: {message}")]
    Refused { table: String, message: String },
    #[error(
        "refusing to commit to {table}: another host with the same pipeline id already committed these records ({streams}); nothing of this host's pending work was committed. Run it again to resume from the table's positions, and make sure only one host runs each pipeline id"
    )]
    Fenced { table: String, streams: String },
    #[error("catalog database: {context}: {message}")]
    CatalogDb { context: String, message: String },
    #[error("commit to {table} refused: {message}")]
    Validation { table: String, message: String },
    #[error("commit to {table} lost {attempts} races in a row with other writers (last: {last}); will retry")]
    Conflicts { table: String, attempts: u32, last: String },
    #[error("the catalog rejected the commit to {table}: {message}")]
    Rejected { table: String, message: String },
    #[error(
        "commit {commit_id} to {table}: outcome unknown ({message}); stopped without retrying. Run the host again: it resumes from what the table holds, so nothing is lost or duplicated"
    )]
    CommitUnknown { table: String, commit_id: String, message: String },
    #[error("iceberg REST catalog: {context}: {message}")]
    Rest { context: String, message: String },
    /// Written files could not be made durable: nothing was published. The data a failed sync could
    /// not write may be gone from the page cache, so syncing again proves nothing.
    #[error(
        "cannot make written files durable ({message}); nothing was committed. Check the warehouse's disk, then run the host again: it resumes from what the table holds"
    )]
    Durability { message: String },
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
            SinkError::CatalogDb { .. } | SinkError::Conflicts { .. } | SinkError::Rest { .. } => true,
            SinkError::Warehouse { .. }
            | SinkError::Shape { .. }
            | SinkError::Refused { .. }
            | SinkError::Fenced { .. }
            | SinkError::Validation { .. }
            | SinkError::Rejected { .. }
            | SinkError::CommitUnknown { .. }
            | SinkError::Durability { .. } => false,
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
    #[error("source: {0}")]
    Source(String),
    #[error("{0}")]
    Internal(String),
}
