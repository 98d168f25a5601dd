//! Schema and property changes a user asks for (`cdc-host table ...`), committed through the commit
//! layer (compare-and-swap on the table's metadata, retried on a lost race), and refused with the reason
//! where Iceberg forbids them.

use std::collections::HashMap;

use iceberg::TableUpdate;
use iceberg::spec::{NestedField, PrimitiveType, Type};
use iceberg::table::Table;

use super::catalog::Catalog;
use super::commit;
use crate::error::SinkError;
use crate::schema::ColType;

/// Table properties Iceberg reserves (they live elsewhere in the metadata).
const RESERVED_PROPERTIES: [&str; 9] = [
    "format-version",
    "uuid",
    "snapshot-count",
    "current-snapshot-summary",
    "current-snapshot-id",
    "current-snapshot-timestamp-ms",
    "current-schema",
    "default-partition-spec",
    "default-sort-order",
];

/// One change to a table.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaChange {
    /// A new optional column.
    AddColumn { name: String, ty: ColType, doc: Option<String> },
    /// A new name for a column (data files keep matching it by field id).
    RenameColumn { from: String, to: String },
    /// Removes a column from the current schema (older snapshots keep it).
    DropColumn { name: String },
    /// A wider type: int → long, float → double, decimal(P,S) → decimal(P',S) with P' > P.
    WidenColumn { name: String, ty: ColType },
    /// Sets a table property (`None`: removes it).
    SetProperty { key: String, value: Option<String> },
}

fn refused(table: &Table, message: String) -> SinkError {
    SinkError::Refused { table: table.identifier().to_string(), message }
}

/// Applies `change` to `table` as one metadata commit; returns the table as committed. A change that
/// is already in place (the column has that name or type, the property that value) commits nothing.
pub async fn apply(catalog: &Catalog, table: Table, change: &SchemaChange) -> Result<Table, SinkError> {
    let table = commit::update_metadata(catalog, table, |base| updates(base, change)).await?;
    tracing::info!(table = %table.identifier(), ?change, "table changed");
    Ok(table)
}

/// The metadata updates `change` makes on `base` (none when it is in place already).
fn updates(base: &Table, change: &SchemaChange) -> Result<Vec<TableUpdate>, SinkError> {
    let metadata = base.metadata();
    let current = metadata.current_schema();
    let column = |name: &str| {
        current.field_by_name(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = current.as_struct().fields().iter().map(|f| f.name.as_str()).collect();
            refused(base, format!("no column `{name}` (columns: {})", names.join(", ")))
        })
    };
    let mut fields: Vec<_> = current.as_struct().fields().to_vec();
    let mut identifier: Vec<i32> = current.identifier_field_ids().collect();
    match change {
        SchemaChange::SetProperty { key, value } => {
            if RESERVED_PROPERTIES.contains(&key.as_str()) {
                return Err(refused(
                    base,
                    format!("`{key}` is reserved by Iceberg: it is not set through table properties"),
                ));
            }
            let now = metadata.properties().get(key);
            return Ok(match value {
                Some(v) if now != Some(v) => {
                    vec![TableUpdate::SetProperties { updates: HashMap::from([(key.clone(), v.clone())]) }]
                }
                None if now.is_some() => vec![TableUpdate::RemoveProperties { removals: vec![key.clone()] }],
                _ => Vec::new(),
            });
        }
        SchemaChange::AddColumn { name, ty, doc } => {
            if let Some(f) = current.field_by_name(name) {
                if ColType::from_iceberg(&f.field_type) == Some(*ty) {
                    return Ok(Vec::new());
                }
                return Err(refused(base, format!("column `{name}` exists already, as {}", f.field_type)));
            }
            let mut f = NestedField::optional(metadata.last_column_id() + 1, name, ty.iceberg_type());
            f.doc = doc.clone();
            fields.push(f.into());
        }
        SchemaChange::RenameColumn { from, to } => {
            if current.field_by_name(to).is_some() {
                if current.field_by_name(from).is_none() {
                    return Ok(Vec::new()); // renamed already
                }
                return Err(refused(base, format!("cannot rename `{from}` to `{to}`: `{to}` exists")));
            }
            let id = column(from)?.id;
            for f in fields.iter_mut().filter(|f| f.id == id) {
                let mut r = (**f).clone();
                r.name = to.clone();
                *f = r.into();
            }
        }
        SchemaChange::DropColumn { name } => {
            let Some(f) = current.field_by_name(name).cloned() else {
                return Ok(Vec::new()); // dropped already
            };
            if identifier.contains(&f.id) {
                return Err(refused(
                    base,
                    format!("cannot drop `{name}`: it is an identifier field (the mirror table's key)"),
                ));
            }
            if metadata.default_partition_spec().fields().iter().any(|p| p.source_id == f.id) {
                return Err(refused(
                    base,
                    format!(
                        "cannot drop `{name}`: the table is partitioned by it (change the partition spec first)"
                    ),
                ));
            }
            if metadata.default_sort_order().fields.iter().any(|s| s.source_id == f.id) {
                return Err(refused(
                    base,
                    format!(
                        "cannot drop `{name}`: the table's sort order uses it (change the sort order first)"
                    ),
                ));
            }
            fields.retain(|x| x.id != f.id);
            identifier.retain(|&i| i != f.id);
        }
        SchemaChange::WidenColumn { name, ty } => {
            let f = column(name)?;
            let to = ty.iceberg_type();
            if f.field_type.as_ref() == &to {
                return Ok(Vec::new());
            }
            if !widens(&f.field_type, &to) {
                return Err(refused(
                    base,
                    format!(
                        "cannot change `{name}` from {} to {to}: Iceberg allows only int → long, float → double and decimal(P,S) → decimal(P',S) with P' > P",
                        f.field_type
                    ),
                ));
            }
            for x in fields.iter_mut().filter(|x| x.id == f.id) {
                let mut r = (**x).clone();
                r.field_type = Box::new(to.clone());
                *x = r.into();
            }
        }
    }
    super::table::new_schema(base, fields, identifier)
}

/// Whether Iceberg allows promoting `from` to `to`.
fn widens(from: &Type, to: &Type) -> bool {
    use PrimitiveType as P;
    match (from, to) {
        (Type::Primitive(a), Type::Primitive(b)) => match (a, b) {
            (P::Int, P::Long) | (P::Float, P::Double) => true,
            (P::Decimal { precision: p, scale: s }, P::Decimal { precision: q, scale: t }) => s == t && q > p,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_iceberg_promotions_widen() {
        let p = |t: PrimitiveType| Type::Primitive(t);
        assert!(widens(&p(PrimitiveType::Int), &p(PrimitiveType::Long)));
        assert!(widens(&p(PrimitiveType::Float), &p(PrimitiveType::Double)));
        let dec = |precision, scale| p(PrimitiveType::Decimal { precision, scale });
        assert!(widens(&dec(10, 2), &dec(12, 2)));
        assert!(!widens(&dec(12, 2), &dec(10, 2)));
        assert!(!widens(&dec(10, 2), &dec(12, 3)));
        assert!(!widens(&p(PrimitiveType::Long), &p(PrimitiveType::Int)));
        assert!(!widens(&p(PrimitiveType::Int), &p(PrimitiveType::String)));
    }
}
