//! The dead-letter table: every record that did not reach the main table, with the reason.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::SchemaRef;
use iceberg::TableIdent;

use super::table::TableSpec;
use crate::change::{DeadLetter, RawBatch};
use crate::error::SinkError;
use crate::schema::{ColType, UTC};

/// Columns of the dead-letter table.
pub const COLUMNS: [(&str, ColType, &str); 7] = [
    ("_ingestion_timestamp", ColType::TimestampTz, "when the host gave up on the record"),
    ("_pipeline_id", ColType::Text, "pipeline that read the record"),
    ("stage", ColType::Text, "decode, transform or encode"),
    ("plugin", ColType::Text, "plugin that rejected or failed on the record"),
    ("reason", ColType::Text, "why the record was not written"),
    ("source_position", ColType::Text, "input file:line or topic-partition:offset"),
    ("record", ColType::Text, "the original record"),
];

/// The dead-letter table's shape.
pub fn spec(ident: TableIdent) -> TableSpec {
    TableSpec {
        ident,
        columns: COLUMNS.iter().map(|(n, t, d)| (n.to_string(), *t, Some(d.to_string()))).collect(),
        partition: Vec::new(),
        sort: Vec::new(),
        properties: HashMap::new(),
        identifier: Vec::new(),
    }
}

/// The dead letters as a batch of the dead-letter table's Arrow schema.
pub fn to_batch(
    schema: &SchemaRef,
    letters: &[DeadLetter],
    raw: &RawBatch,
    pipeline_id: &str,
    now_micros: i64,
) -> Result<RecordBatch, SinkError> {
    let n = letters.len();
    let text = |f: &dyn Fn(&DeadLetter) -> Option<String>| -> ArrayRef {
        Arc::new(letters.iter().map(f).collect::<StringArray>())
    };
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> Result<ArrayRef, SinkError> {
            Ok(match field.name().as_str() {
                "_ingestion_timestamp" => {
                    Arc::new(TimestampMicrosecondArray::from(vec![now_micros; n]).with_timezone(UTC))
                }
                "_pipeline_id" => text(&|_| Some(pipeline_id.to_string())),
                "stage" => text(&|d| Some(d.stage.to_string())),
                "plugin" => text(&|d| d.plugin.clone()),
                "reason" => text(&|d| Some(d.reason.clone())),
                "source_position" => text(&|d| Some(raw.position(d.origin as usize))),
                "record" => {
                    text(&|d| Some(String::from_utf8_lossy(raw.record(d.origin as usize)).into_owned()))
                }
                _ => arrow_array::new_null_array(field.data_type(), n),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| SinkError::Shape { table: "dead-letter".into(), message: e.to_string() })
}
