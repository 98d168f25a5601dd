//! Opening the catalog the config names: a SQL catalog (SQLite under the warehouse by default, or
//! PostgreSQL) or an Iceberg REST catalog, each with the compare-and-swap commits go through.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use iceberg::table::Table;
use iceberg::{CatalogBuilder, NamespaceIdent, TableIdent};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle,
    SqlCatalogBuilder,
};

use super::commit::cas::Cas;
use super::commit::rest;
use super::commit::sql::{SqlCas, redact};
use super::storage::WarehouseFsFactory;
use crate::config::Config;
use crate::error::SinkError;

/// An open catalog: its iceberg-rust client (load, create, list) and its compare-and-swap (every
/// commit of the host).
pub struct Catalog {
    inner: Arc<dyn iceberg::Catalog>,
    cas: Cas,
    uri: String,
    /// Per table: held while one of this host's commits makes its attempt (see [`Self::committing`]).
    committers: std::sync::Mutex<HashMap<TableIdent, Arc<tokio::sync::Mutex<Option<String>>>>>,
}

/// One commit attempt's turn at a table among this host's commits; knows the metadata file this
/// host's last commit to the table made.
pub struct CommitTurn(tokio::sync::OwnedMutexGuard<Option<String>>);

impl CommitTurn {
    /// Whether this host has committed to the table since `base` (so `base` would lose the race).
    pub fn is_stale(&self, base: &Table) -> bool {
        self.0.as_deref().is_some_and(|last| Some(last) != base.metadata_location())
    }

    /// Records the table a commit made.
    pub fn landed(&mut self, table: &Table) {
        *self.0 = table.metadata_location().map(String::from);
    }
}

impl Catalog {
    fn new(inner: Arc<dyn iceberg::Catalog>, cas: Cas, uri: String) -> Self {
        Self { inner, cas, uri, committers: Default::default() }
    }

    /// Waits until no other commit of this host to `ident` is making an attempt; the turn lasts
    /// until it drops. This host's own commits (a pipeline's, background maintenance's) take turns
    /// instead of losing compare-and-swap races to each other and backing off; other writers still
    /// race.
    pub async fn committing(&self, ident: &TableIdent) -> CommitTurn {
        let lock = self.committers.lock().expect("not poisoned").entry(ident.clone()).or_default().clone();
        CommitTurn(lock.lock_owned().await)
    }

    /// The iceberg-rust catalog client.
    pub fn iceberg(&self) -> &dyn iceberg::Catalog {
        self.inner.as_ref()
    }

    /// The compare-and-swap commits go through.
    pub fn cas(&self) -> &Cas {
        &self.cas
    }

    /// The catalog's URI (password redacted), for messages.
    pub fn uri(&self) -> String {
        redact(&self.uri)
    }

    /// Loads the table as the catalog holds it now.
    pub async fn load(&self, ident: &TableIdent) -> Result<Table, SinkError> {
        self.inner.load_table(ident).await.map_err(|source| SinkError::Catalog {
            context: format!("loading table {ident}"),
            source: Box::new(source),
        })
    }
}

/// Opens the catalog named in the config, creating the warehouse directory if needed.
pub async fn open(cfg: &Config) -> Result<Catalog, SinkError> {
    let dir = &cfg.catalog.warehouse;
    let warehouse_err = |message: String| SinkError::Warehouse { path: dir.to_path_buf(), message };
    std::fs::create_dir_all(dir).map_err(|e| warehouse_err(format!("cannot create it: {e}")))?;
    let abs = std::fs::canonicalize(dir).map_err(|e| warehouse_err(e.to_string()))?;
    check_writable(&abs).map_err(warehouse_err)?;
    let uri = cfg.catalog_uri();
    if uri.starts_with("http://") || uri.starts_with("https://") {
        let (inner, cas) = rest::open(&uri, &abs, &cfg.catalog.name).await?;
        return Ok(Catalog::new(inner, Cas::Rest(cas), uri));
    }
    let bind = if uri.starts_with("postgres") { SqlBindStyle::DollarNumeric } else { SqlBindStyle::QMark };
    let props = HashMap::from([
        (SQL_CATALOG_PROP_URI.to_string(), uri.clone()),
        (SQL_CATALOG_PROP_WAREHOUSE.to_string(), format!("file://{}", abs.display())),
        (SQL_CATALOG_PROP_BIND_STYLE.to_string(), bind.to_string()),
    ]);
    // Opening creates the catalog's own tables when they are missing. Two hosts (or a host's table
    // pipelines) opening a fresh database at once race on that: PostgreSQL fails the loser's
    // `CREATE TABLE IF NOT EXISTS` with a unique violation. The winner's tables are then there, so
    // the loser opens again.
    let mut attempt = 1;
    let inner = loop {
        let opened = SqlCatalogBuilder::default()
            .with_storage_factory(Arc::new(WarehouseFsFactory))
            .load(&cfg.catalog.name, props.clone())
            .await;
        match opened {
            Ok(inner) => break inner,
            Err(e) if attempt < OPEN_ATTEMPTS && lost_creation_race(&e) => {
                tracing::debug!(attempt, error = %e, "another writer created the catalog's tables meanwhile; opening again");
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64)).await;
                attempt += 1;
            }
            Err(source) => {
                return Err(SinkError::Catalog {
                    context: format!("opening SQL catalog {}", redact(&uri)),
                    source: Box::new(source),
                });
            }
        }
    };
    let cas = SqlCas::connect(&uri, &cfg.catalog.name).await?;
    Ok(Catalog::new(Arc::new(inner), Cas::Sql(cas), uri))
}

/// How many times a SQL catalog is opened when concurrent openings race on creating its tables.
const OPEN_ATTEMPTS: u32 = 5;

/// Whether opening failed because another connection created the catalog's tables at the same time
/// (PostgreSQL: a unique violation on the type or relation name; SQLite: "already exists").
fn lost_creation_race(e: &iceberg::Error) -> bool {
    let text = e.to_string();
    text.contains("duplicate key value violates unique constraint") || text.contains("already exists")
}

fn check_writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".cdc-host-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("not writable: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Creates the namespace if it does not exist.
pub async fn ensure_namespace(catalog: &Catalog, namespace: &str) -> Result<NamespaceIdent, SinkError> {
    let catalog = catalog.iceberg();
    let ns = NamespaceIdent::from_strs(namespace.split('.')).map_err(|source| SinkError::Catalog {
        context: format!("namespace `{namespace}`"),
        source: Box::new(source),
    })?;
    let exists = catalog.namespace_exists(&ns).await.map_err(|source| SinkError::Catalog {
        context: format!("looking up namespace `{namespace}`"),
        source: Box::new(source),
    })?;
    if !exists {
        match catalog.create_namespace(&ns, HashMap::new()).await {
            Ok(_) => {}
            Err(e) if e.kind() == iceberg::ErrorKind::NamespaceAlreadyExists => {}
            // Another writer created it meanwhile (some catalogs report that as a constraint error).
            Err(_) if catalog.namespace_exists(&ns).await.unwrap_or(false) => {}
            Err(source) => {
                return Err(SinkError::Catalog {
                    context: format!("creating namespace `{namespace}`"),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(ns)
}
