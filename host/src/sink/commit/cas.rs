//! The compare-and-swap that publishes new table metadata: the only way a commit lands.
//!
//! A swap is built on one base (the table as loaded, with its metadata location) and succeeds only
//! if the catalog still points at that base. Two implementations: a SQL catalog row guarded by its
//! `metadata_location` ([`super::sql`]), and a REST commit with requirements ([`super::rest`]).

use iceberg::table::Table;
use iceberg::{TableIdent, TableUpdate};

use super::rest::RestCas;
use super::sql::SqlCas;
use crate::error::SinkError;

/// What one swap attempt did.
#[derive(Debug)]
pub enum SwapOutcome {
    /// The catalog now points at the new metadata; the table as committed.
    Committed(Table),
    /// The catalog moved on from the base (another writer committed first): nothing landed, rebuild
    /// on the new base.
    Conflict(String),
    /// The catalog refused the change for a reason a retry cannot fix.
    Rejected(String),
    /// The request may or may not have landed (a lost response, a server error) and reading the
    /// table back did not tell: the caller must stop and check what landed.
    Unknown(String),
}

/// A catalog's compare-and-swap.
pub enum Cas {
    Sql(SqlCas),
    Rest(RestCas),
}

impl Cas {
    /// Publishes `updates` on top of `base` if and only if the catalog still points at `base`.
    pub async fn swap(&self, base: &Table, updates: Vec<TableUpdate>) -> Result<SwapOutcome, SinkError> {
        match self {
            Cas::Sql(c) => c.swap(base, updates).await,
            Cas::Rest(c) => c.swap(base, updates).await,
        }
    }

    /// The metadata location the catalog holds for `ident` now (None: no such table).
    pub async fn current_location(&self, ident: &TableIdent) -> Result<Option<String>, SinkError> {
        match self {
            Cas::Sql(c) => c.current_location(ident).await,
            Cas::Rest(c) => c.current_location(ident).await,
        }
    }
}
