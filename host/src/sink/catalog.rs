//! Opening the SQL catalog (SQLite by default, under the warehouse directory).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use iceberg::io::LocalFsStorageFactory;
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle, SqlCatalog,
    SqlCatalogBuilder,
};

use crate::config::Config;
use crate::error::SinkError;

/// Opens the catalog named in the config, creating the warehouse directory if needed.
pub async fn open(cfg: &Config) -> Result<SqlCatalog, SinkError> {
    let dir = &cfg.catalog.warehouse;
    let warehouse_err = |message: String| SinkError::Warehouse { path: dir.to_path_buf(), message };
    std::fs::create_dir_all(dir).map_err(|e| warehouse_err(format!("cannot create it: {e}")))?;
    let abs = std::fs::canonicalize(dir).map_err(|e| warehouse_err(e.to_string()))?;
    check_writable(&abs).map_err(warehouse_err)?;
    let uri = cfg.catalog_uri();
    let props = HashMap::from([
        (SQL_CATALOG_PROP_URI.to_string(), uri.clone()),
        (SQL_CATALOG_PROP_WAREHOUSE.to_string(), format!("file://{}", abs.display())),
        (SQL_CATALOG_PROP_BIND_STYLE.to_string(), SqlBindStyle::QMark.to_string()),
    ]);
    SqlCatalogBuilder::default()
        .with_storage_factory(Arc::new(LocalFsStorageFactory))
        .load(&cfg.catalog.name, props)
        .await
        .map_err(|source| SinkError::Catalog {
            context: format!("opening SQL catalog {uri}"),
            source: Box::new(source),
        })
}

fn check_writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".cdc-host-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("not writable: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Creates the namespace if it does not exist.
pub async fn ensure_namespace(catalog: &dyn Catalog, namespace: &str) -> Result<NamespaceIdent, SinkError> {
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
