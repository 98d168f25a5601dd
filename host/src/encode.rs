//! [`ChangeBatch`] → Arrow [`RecordBatch`] in the table's schema: metadata columns added, types cast
//! to the table's. Rows keep event order (row `i` is the event of `origins[i]`); the writer orders
//! them by partition and sort order ([`crate::sink::writer::RowOrder`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, new_null_array};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::SchemaRef;

use crate::change::ChangeBatch;
use crate::schema::{ColType, UTC};

/// `_source_system` value.
pub const SOURCE_SYSTEM: &str = "postgres_cdc";

/// Builds table rows from change batches.
#[derive(Debug, Clone)]
pub struct Encoder {
    pipeline_id: String,
}

impl Encoder {
    /// An encoder writing `pipeline_id` into `_pipeline_id`.
    pub fn new(pipeline_id: String) -> Self {
        Self { pipeline_id }
    }

    /// Columns of `batch` the table (whose types are `table`) does not have yet.
    pub fn new_columns(batch: &ChangeBatch, table: &HashMap<String, ColType>) -> Vec<(String, ColType)> {
        batch
            .after
            .0
            .iter()
            .filter(|c| !table.contains_key(&c.name))
            .map(|c| (c.name.clone(), c.ty))
            .collect()
    }

    /// Columns of `batch` whose type is a widening of the table's (`int` → `long`, a larger decimal
    /// precision at the same scale): the source column was widened.
    pub fn widened_columns(batch: &ChangeBatch, table: &HashMap<String, ColType>) -> Vec<(String, ColType)> {
        batch
            .after
            .0
            .iter()
            .filter(|c| table.get(&c.name).is_some_and(|&t| widens(t, c.ty)))
            .map(|c| (c.name.clone(), c.ty))
            .collect()
    }

    /// The batch as rows of `schema`, in event order. Columns the schema lacks are left out.
    pub fn encode(
        &self,
        batch: &ChangeBatch,
        schema: &SchemaRef,
        now_micros: i64,
    ) -> Result<RecordBatch, String> {
        let n = batch.len();
        let strict = CastOptions { safe: false, ..Default::default() };
        let columns = schema
            .fields()
            .iter()
            .map(|field| -> Result<ArrayRef, String> {
                let name = field.name().as_str();
                let array: ArrayRef = match name {
                    "_ingestion_timestamp" => {
                        Arc::new(TimestampMicrosecondArray::from(vec![now_micros; n]).with_timezone(UTC))
                    }
                    "_source_system" => Arc::new(StringArray::from(vec![SOURCE_SYSTEM; n])),
                    "_cdc_operation" => {
                        Arc::new(batch.ops.iter().map(|o| Some(o.cdc_operation())).collect::<StringArray>())
                    }
                    "_pipeline_id" => Arc::new(StringArray::from(vec![self.pipeline_id.as_str(); n])),
                    _ => match batch.after.get(name) {
                        Some(c) => c.array.clone(),
                        None => new_null_array(field.data_type(), n),
                    },
                };
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    cast_with_options(&array, field.data_type(), &strict).map_err(|e| {
                        format!("column `{name}` cannot be stored as {}: {e}", field.data_type())
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
    }
}

/// Whether `to` is a widening of `from` the table can follow.
fn widens(from: ColType, to: ColType) -> bool {
    match (from, to) {
        (ColType::Int32, ColType::Int64) => true,
        (ColType::Decimal { precision: p, scale: s }, ColType::Decimal { precision: q, scale: t }) => {
            s == t && q > p
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Column, Op, SourceInfo};
    use arrow_array::{Array, Int64Array, cast::AsArray, types::Int64Type};
    use arrow_schema::{DataType, Field, Schema};

    #[test]
    fn adds_metadata_and_casts_in_event_order() {
        let mut b = ChangeBatch {
            ops: vec![Op::Update, Op::Read],
            sources: vec![SourceInfo { table: 0, lsn: None, txid: None, ts_ms: 0, snapshot: false }; 2],
            origins: vec![0, 1],
            ..Default::default()
        };
        b.after.set(Column {
            name: "customer_id".into(),
            ty: ColType::Int64,
            array: Arc::new(Int64Array::from(vec![9, 3])),
        });
        b.after.set(Column {
            name: "extra".into(),
            ty: ColType::Text,
            array: Arc::new(StringArray::from(vec!["a", "b"])),
        });
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Int64, true),
            Field::new("email", DataType::Utf8, true),
            Field::new("_cdc_operation", DataType::Utf8, true),
            Field::new("_source_system", DataType::Utf8, true),
            Field::new("_pipeline_id", DataType::Utf8, true),
            Field::new("_ingestion_timestamp", ColType::TimestampTz.arrow_type(), true),
        ]));
        let table: HashMap<String, ColType> = [("customer_id".to_string(), ColType::Int64)].into();
        assert_eq!(Encoder::new_columns(&b, &table), vec![("extra".to_string(), ColType::Text)]);
        let rows = Encoder::new("p1".into()).encode(&b, &schema, 7).unwrap();
        assert_eq!(rows.column(0).as_primitive::<Int64Type>().values().to_vec(), vec![9, 3]);
        assert!(rows.column(1).is_null(0));
        let ops = rows.column(2).as_string::<i32>();
        assert_eq!((ops.value(0), ops.value(1)), ("UPDATE", "INSERT"));
        assert_eq!(rows.column(3).as_string::<i32>().value(0), "postgres_cdc");
        assert_eq!(rows.column(4).as_string::<i32>().value(1), "p1");
    }
}
