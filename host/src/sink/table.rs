//! Table definitions: creating a table from its declared shape, and adding columns later.

use std::collections::HashMap;

use iceberg::spec::{
    NestedField, NullOrder, Schema, SortDirection, SortField, SortOrder, Transform, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableCreation, TableIdent, TableUpdate};

use super::catalog::Catalog;
use super::commit;

use crate::error::SinkError;
use crate::schema::ColType;

/// The metadata columns the host adds to every analytics row.
pub const METADATA_COLUMNS: [(&str, ColType); 4] = [
    ("_ingestion_timestamp", ColType::TimestampTz),
    ("_source_system", ColType::Text),
    ("_cdc_operation", ColType::Text),
    ("_pipeline_id", ColType::Text),
];

/// The shape a table is created with.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub ident: TableIdent,
    /// Columns in order: name, type, doc.
    pub columns: Vec<(String, ColType, Option<String>)>,
    pub partition: Vec<(String, Transform)>,
    pub sort: Vec<String>,
    pub properties: HashMap<String, String>,
    /// Identifier fields (a mirror table's key): required columns.
    pub identifier: Vec<String>,
}

impl TableSpec {
    /// Adds a column unless one of that name is already there.
    pub fn push_column(&mut self, name: &str, ty: ColType, doc: Option<String>) {
        if !self.columns.iter().any(|(n, _, _)| n == name) {
            self.columns.push((name.to_string(), ty, doc));
        }
    }

    fn schema(&self) -> Result<Schema, iceberg::Error> {
        let fields = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, ty, doc))| {
                let mut f = if self.identifier.contains(name) {
                    NestedField::required(i as i32 + 1, name, ty.iceberg_type())
                } else {
                    NestedField::optional(i as i32 + 1, name, ty.iceberg_type())
                };
                if let Some(d) = doc {
                    f = f.with_doc(d);
                }
                f.into()
            })
            .collect::<Vec<_>>();
        let ids: Vec<i32> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, (n, _, _))| self.identifier.contains(n))
            .map(|(i, _)| i as i32 + 1)
            .collect();
        Schema::builder().with_schema_id(0).with_identifier_field_ids(ids).with_fields(fields).build()
    }
}

fn catalog_err(context: String) -> impl FnOnce(iceberg::Error) -> SinkError {
    move |source| SinkError::Catalog { context, source: Box::new(source) }
}

/// Loads the table, creating it from `spec` if missing; adds declared columns it lacks.
pub async fn ensure(catalog: &Catalog, spec: &TableSpec) -> Result<Table, SinkError> {
    let ident = &spec.ident;
    let iceberg = catalog.iceberg();
    let exists =
        iceberg.table_exists(ident).await.map_err(catalog_err(format!("looking up table {ident}")))?;
    if exists {
        let table = iceberg.load_table(ident).await.map_err(catalog_err(format!("loading table {ident}")))?;
        let have = column_types(&table);
        let missing: Vec<(String, ColType)> = spec
            .columns
            .iter()
            .filter(|(n, _, _)| !have.contains_key(n))
            .map(|(n, t, _)| (n.clone(), *t))
            .collect();
        return add_columns(catalog, table, &missing).await;
    }
    let schema = spec.schema().map_err(catalog_err(format!("building the schema of {ident}")))?;
    let mut partition = UnboundPartitionSpec::builder().with_spec_id(0);
    for (column, transform) in &spec.partition {
        let field = schema.field_by_name(column).ok_or_else(|| SinkError::Shape {
            table: ident.to_string(),
            message: format!("partition column `{column}` is not a column"),
        })?;
        let name = match transform {
            Transform::Identity => column.clone(),
            t => format!("{column}_{}", t.to_string().split('[').next().unwrap_or("part")),
        };
        partition = partition
            .add_partition_field(field.id, name, *transform)
            .map_err(catalog_err(format!("partition field on `{column}`")))?;
    }
    let mut sort = SortOrder::builder();
    sort.with_order_id(1);
    for column in &spec.sort {
        let field = schema.field_by_name(column).ok_or_else(|| SinkError::Shape {
            table: ident.to_string(),
            message: format!("sort column `{column}` is not a column"),
        })?;
        sort.with_sort_field(
            SortField::builder()
                .source_id(field.id)
                .transform(Transform::Identity)
                .direction(SortDirection::Ascending)
                .null_order(NullOrder::First)
                .build(),
        );
    }
    let sort_order = if spec.sort.is_empty() {
        SortOrder::unsorted_order()
    } else {
        sort.build(&schema).map_err(catalog_err(format!("sort order of {ident}")))?
    };
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .partition_spec(partition.build())
        .sort_order(sort_order)
        .properties(spec.properties.clone())
        .build();
    match iceberg.create_table(ident.namespace(), creation).await {
        Ok(t) => {
            tracing::info!(table = %ident, "created table");
            Ok(t)
        }
        // Another host created it meanwhile: use theirs.
        Err(e) if e.kind() == iceberg::ErrorKind::TableAlreadyExists => {
            iceberg.load_table(ident).await.map_err(catalog_err(format!("loading table {ident}")))
        }
        Err(source) => {
            Err(SinkError::Catalog { context: format!("creating table {ident}"), source: Box::new(source) })
        }
    }
}

/// Adds optional columns to the table (no-op for an empty list), through the commit layer's
/// compare-and-swap: a lost race recomputes the schema from the new base.
pub async fn add_columns(
    catalog: &Catalog,
    table: Table,
    columns: &[(String, ColType)],
) -> Result<Table, SinkError> {
    if columns.is_empty() {
        return Ok(table);
    }
    let ident = table.identifier().clone();
    let table = commit::update_metadata(catalog, table, |base| {
        let metadata = base.metadata();
        let current = metadata.current_schema();
        let missing: Vec<&(String, ColType)> =
            columns.iter().filter(|(n, _)| current.field_by_name(n).is_none()).collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let mut next_id = metadata.last_column_id();
        let mut fields = current.as_struct().fields().to_vec();
        for (name, ty) in missing {
            next_id += 1;
            fields.push(NestedField::optional(next_id, name, ty.iceberg_type()).into());
        }
        new_schema(base, fields, current.identifier_field_ids().collect())
    })
    .await?;
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    tracing::info!(table = %ident, columns = ?names, "added columns to the table");
    Ok(table)
}

/// Makes `names` the table's identifier fields (required columns), unless they already are.
pub async fn set_identifier_fields(
    catalog: &Catalog,
    table: Table,
    names: &[String],
) -> Result<Table, SinkError> {
    let ident = table.identifier().clone();
    commit::update_metadata(catalog, table, |base| {
        let metadata = base.metadata();
        let current = metadata.current_schema();
        let mut ids = Vec::new();
        for n in names {
            let f = current.field_by_name(n).ok_or_else(|| SinkError::Shape {
                table: ident.to_string(),
                message: format!("key column `{n}` is not a column of the table"),
            })?;
            ids.push(f.id);
        }
        let mut have: Vec<i32> = current.identifier_field_ids().collect();
        have.sort_unstable();
        let mut want = ids.clone();
        want.sort_unstable();
        if have == want {
            return Ok(Vec::new());
        }
        let fields: Vec<_> = current
            .as_struct()
            .fields()
            .iter()
            .map(|f| {
                if ids.contains(&f.id) && !f.required {
                    let mut r = (**f).clone();
                    r.required = true;
                    r.into()
                } else {
                    f.clone()
                }
            })
            .collect();
        new_schema(base, fields, ids)
    })
    .await
}

/// The updates that make a schema of `fields` (with `identifier` field ids) the table's current one.
pub fn new_schema(
    base: &Table,
    fields: Vec<iceberg::spec::NestedFieldRef>,
    identifier: Vec<i32>,
) -> Result<Vec<TableUpdate>, SinkError> {
    let metadata = base.metadata();
    let schema_id = metadata.schemas_iter().map(|s| s.schema_id()).max().unwrap_or(0) + 1;
    let schema = Schema::builder()
        .with_schema_id(schema_id)
        .with_identifier_field_ids(identifier)
        .with_fields(fields)
        .build()
        .map_err(catalog_err(format!("building the new schema of {}", base.identifier())))?;
    Ok(vec![TableUpdate::AddSchema { schema }, TableUpdate::SetCurrentSchema { schema_id: -1 }])
}

/// The names of the table's identifier fields.
pub fn identifier_fields(table: &Table) -> Vec<String> {
    let schema = table.metadata().current_schema();
    schema.identifier_field_ids().filter_map(|id| schema.name_by_field_id(id).map(str::to_string)).collect()
}

/// The host types of the table's current columns.
pub fn column_types(table: &Table) -> HashMap<String, ColType> {
    let schema = table.metadata().current_schema();
    schema
        .as_struct()
        .fields()
        .iter()
        .filter_map(|f| ColType::from_iceberg(&f.field_type).map(|t| (f.name.clone(), t)))
        .collect()
}

/// A table identifier from a dotted namespace and a name.
pub fn ident(namespace: &str, name: &str) -> Result<TableIdent, SinkError> {
    let ns = NamespaceIdent::from_strs(namespace.split('.'))
        .map_err(catalog_err(format!("namespace `{namespace}`")))?;
    Ok(TableIdent::new(ns, name.to_string()))
}
