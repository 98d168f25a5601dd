//! Compare-and-swap on a SQL catalog (the `iceberg_tables` table that Java's `JdbcCatalog` and
//! pyiceberg's `SqlCatalog` share; SQLite or PostgreSQL).
//!
//! The new metadata file is written first, then the table's row is updated only where
//! `metadata_location` still equals the base's: exactly one row updated means the commit landed, none
//! means another writer got there first. An error from the update itself is resolved by reading the
//! row back.

use std::str::FromStr;
use std::sync::Arc;

use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent, TableUpdate};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::cas::SwapOutcome;
use crate::error::SinkError;

/// The SQL catalog's row guarded by `metadata_location`.
pub struct SqlCas {
    pool: AnyPool,
    catalog: String,
    /// PostgreSQL takes `$1`-style placeholders, SQLite `?`.
    dollar: bool,
}

impl SqlCas {
    /// Connects to the catalog database at `uri` (the catalog itself must have created its tables).
    pub async fn connect(uri: &str, catalog: &str) -> Result<Self, SinkError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().max_connections(2).connect(uri).await.map_err(|e| {
            SinkError::CatalogDb { context: format!("connecting to {}", redact(uri)), message: e.to_string() }
        })?;
        let dollar = uri.starts_with("postgres");
        Ok(Self { pool, catalog: catalog.to_string(), dollar })
    }

    fn sql(&self, query: &str) -> String {
        if !self.dollar {
            return query.to_string();
        }
        let mut out = String::with_capacity(query.len() + 8);
        let mut n = 0;
        for c in query.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The metadata location the catalog row holds now.
    pub async fn current_location(&self, ident: &TableIdent) -> Result<Option<String>, SinkError> {
        let q = self.sql(
            "SELECT metadata_location FROM iceberg_tables
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        );
        let row: Option<(Option<String>,)> = sqlx::query_as(&q)
            .bind(&self.catalog)
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| SinkError::CatalogDb {
                context: format!("reading the catalog row of {ident}"),
                message: e.to_string(),
            })?;
        Ok(row.and_then(|(l,)| l))
    }

    /// Writes the new metadata file and points the catalog row at it if it still points at `base`.
    pub async fn swap(&self, base: &Table, updates: Vec<TableUpdate>) -> Result<SwapOutcome, SinkError> {
        let ident = base.identifier();
        let name = ident.to_string();
        let iceberg_err = |context: &str| {
            let context = format!("{context} of {name}");
            move |e: iceberg::Error| SinkError::Catalog { context, source: Box::new(e) }
        };
        let base_location =
            base.metadata_location_result().map_err(iceberg_err("metadata location"))?.to_string();
        let mut builder = base.metadata().clone().into_builder(Some(base_location.clone()));
        for update in updates {
            builder = match update.apply(builder) {
                Ok(b) => b,
                Err(e) => return Ok(SwapOutcome::Rejected(format!("applying an update to {name}: {e}"))),
            };
        }
        let built = match builder.build() {
            Ok(b) => b,
            Err(e) => return Ok(SwapOutcome::Rejected(format!("building new metadata of {name}: {e}"))),
        };
        let metadata = built.metadata;
        let location = MetadataLocation::from_str(&base_location)
            .map_err(iceberg_err("parsing the metadata location"))?
            .with_next_version()
            .with_new_metadata(&metadata);
        metadata.write_to(base.file_io(), &location).await.map_err(iceberg_err("writing new metadata"))?;
        let new_location = location.to_string();
        // Everything the new metadata names is on disk before the catalog points at it.
        crate::sink::storage::sync_written().await?;

        let q = self.sql(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?
               AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)
               AND metadata_location = ?",
        );
        let result = sqlx::query(&q)
            .bind(&new_location)
            .bind(&base_location)
            .bind(&self.catalog)
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .bind(&base_location)
            .execute(&self.pool)
            .await;
        let landed = match result {
            Ok(r) if r.rows_affected() == 1 => true,
            Ok(_) => false,
            // The update may have landed before the error: the row says which.
            Err(e) => match self.current_location(ident).await {
                Ok(Some(l)) if l == new_location => true,
                Ok(_) => false,
                Err(read) => {
                    return Ok(SwapOutcome::Unknown(format!(
                        "updating the catalog row of {name} failed ({e}) and reading it back failed too ({read})"
                    )));
                }
            },
        };
        if !landed {
            let _ = base.file_io().delete(&new_location).await;
            return Ok(SwapOutcome::Conflict(format!("{name} changed since {base_location}")));
        }
        delete_expired_metadata(base, &built.expired_metadata_logs, &metadata).await;
        let table = Table::builder()
            .identifier(ident.clone())
            .file_io(base.file_io().clone())
            .metadata(Arc::new(metadata))
            .metadata_location(new_location)
            .runtime(iceberg::Runtime::current())
            .build()
            .map_err(iceberg_err("opening the committed table"))?;
        Ok(SwapOutcome::Committed(table))
    }
}

/// Deletes metadata files that fell out of the metadata log, where the table asks for it
/// (`write.metadata.delete-after-commit.enabled`, keeping `write.metadata.previous-versions-max`).
async fn delete_expired_metadata(
    base: &Table,
    expired: &[iceberg::spec::MetadataLog],
    new: &iceberg::spec::TableMetadata,
) {
    let enabled = new
        .properties()
        .get("write.metadata.delete-after-commit.enabled")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !enabled {
        return;
    }
    for log in expired {
        if let Err(e) = base.file_io().delete(&log.metadata_file).await {
            tracing::debug!(file = %log.metadata_file, error = %e, "could not delete an old metadata file");
        }
    }
}

/// A connection URI without its password, for messages.
pub fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &uri[s + 3..at];
            match cred.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &uri[..s + 3], &uri[at..]),
                None => uri.to_string(),
            }
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgresql://u:secret@localhost/db"), "postgresql://u:***@localhost/db");
        assert_eq!(redact("sqlite:/tmp/c.db"), "sqlite:/tmp/c.db");
    }
}
