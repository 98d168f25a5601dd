//! Building and reading WIT batches natively: [`BatchBuilder`], [`ColumnReader`], [`decode_output`].
//!
//! The host packs batches itself; these helpers are for tests and benchmarks that run plugin code
//! natively through [`Runner`](crate::Runner) or [`run_batch`](crate::run_batch).

use crate::column::ColumnWriter;
pub use crate::column::{ColumnReader, InvalidUtf8};
use crate::describe::ColumnType;
use crate::event::{Op, Outcome};
pub use crate::run::{reject_all, validate_output};
use crate::value::{OwnedValue, Value};
use crate::wit;

/// Where an event came from, for [`BatchBuilder::push_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    /// Source schema (default `public`).
    pub schema: String,
    /// Source table (default `events`).
    pub table: String,
    /// Log sequence number.
    pub lsn: Option<i64>,
    /// Transaction id.
    pub txid: Option<i64>,
    /// Commit time, milliseconds since the epoch.
    pub ts_ms: i64,
    /// Whether the row was read by a snapshot.
    pub snapshot: bool,
}

impl Default for EventSource {
    fn default() -> Self {
        EventSource {
            schema: "public".to_owned(),
            table: "events".to_owned(),
            lsn: None,
            txid: None,
            ts_ms: 0,
            snapshot: false,
        }
    }
}

struct Row {
    op: Op,
    source: usize,
    after: Vec<(String, OwnedValue)>,
    before: Vec<(String, OwnedValue)>,
}

/// Packs rows of `(name, value)` pairs into a columnar [`wit::Batch`], the way the host does.
///
/// Columns appear in the order their names are first seen; a row without a column gets null there.
/// A column's type is the one set with [`column_type`](Self::column_type), or else inferred from its
/// values: the first non-null value's type, widened from int32 to int64 when both occur; decimals
/// get precision 38 and the largest scale seen. An all-null column is text.
///
/// ```
/// use cdc_sdk::batch::BatchBuilder;
/// use cdc_sdk::{Decimal, Op, Value};
/// let mut b = BatchBuilder::new();
/// b.push(Op::Create, &[("email", Value::Text("a@b.c")), ("ltv", Value::Decimal(Decimal::new(-500, 2)))]);
/// b.push(Op::Delete, &[]);
/// let batch = b.build().unwrap();
/// assert_eq!(batch.ops.len(), 2);
/// assert_eq!(batch.after.len(), 2);
/// assert_eq!(batch.after[0].present, [true, false]);
/// ```
#[derive(Default)]
pub struct BatchBuilder {
    rows: Vec<Row>,
    sources: Vec<EventSource>,
    types: Vec<(String, ColumnType)>,
}

fn owned(pairs: &[(&str, Value<'_>)]) -> Vec<(String, OwnedValue)> {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), OwnedValue::from(*v))).collect()
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        BatchBuilder::default()
    }

    /// Fixes the type of column `name` (both images) instead of inferring it.
    pub fn column_type(&mut self, name: &str, ty: ColumnType) -> &mut Self {
        self.types.retain(|(n, _)| n != name);
        self.types.push((name.to_owned(), ty));
        self
    }

    /// Adds an event with an after image, from the default source.
    pub fn push(&mut self, op: Op, after: &[(&str, Value<'_>)]) -> &mut Self {
        self.push_event(op, &EventSource::default(), after, &[])
    }

    /// Adds an event with everything: source, after image and before image.
    pub fn push_event(
        &mut self,
        op: Op,
        source: &EventSource,
        after: &[(&str, Value<'_>)],
        before: &[(&str, Value<'_>)],
    ) -> &mut Self {
        self.push_owned(op, source, owned(after), owned(before))
    }

    pub(crate) fn push_owned(
        &mut self,
        op: Op,
        source: &EventSource,
        after: Vec<(String, OwnedValue)>,
        before: Vec<(String, OwnedValue)>,
    ) -> &mut Self {
        let source = match self.sources.iter().position(|s| s == source) {
            Some(i) => i,
            None => {
                self.sources.push(source.clone());
                self.sources.len() - 1
            }
        };
        self.rows.push(Row { op, source, after, before });
        self
    }

    /// The number of events added.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no event was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn infer(&self, name: &str, image: fn(&Row) -> &[(String, OwnedValue)]) -> ColumnType {
        if let Some((_, t)) = self.types.iter().find(|(n, _)| n == name) {
            return *t;
        }
        let mut ty: Option<ColumnType> = None;
        let values = self
            .rows
            .iter()
            .flat_map(|r| image(r).iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_value()));
        for v in values {
            let t = match v {
                Value::Null => continue,
                Value::Bool(_) => ColumnType::Boolean,
                Value::Int32(_) => ColumnType::Int32,
                Value::Int64(_) => ColumnType::Int64,
                Value::Float64(_) => ColumnType::Float64,
                Value::Text(_) => ColumnType::Text,
                Value::Bytes(_) => ColumnType::Bytes,
                Value::Decimal(d) => ColumnType::Decimal { precision: 38, scale: d.scale },
                Value::Date(_) => ColumnType::Date,
                Value::Timestamp(_) => ColumnType::Timestamp,
                Value::TimestampTz(_) => ColumnType::TimestampTz,
                Value::Json(_) => ColumnType::Json,
            };
            ty = Some(match (ty, t) {
                (None, t) => t,
                (Some(ColumnType::Int32), ColumnType::Int64) => ColumnType::Int64,
                (Some(ColumnType::Decimal { scale: a, .. }), ColumnType::Decimal { scale: b, .. }) => {
                    ColumnType::Decimal { precision: 38, scale: a.max(b) }
                }
                (Some(prev), _) => prev,
            });
        }
        ty.unwrap_or(ColumnType::Text)
    }

    fn columns(
        &self,
        image: fn(&Row) -> &[(String, OwnedValue)],
        label: &str,
    ) -> Result<Vec<wit::Column>, String> {
        let mut names: Vec<&str> = Vec::new();
        for r in &self.rows {
            for (n, _) in image(r) {
                if !names.contains(&n.as_str()) {
                    names.push(n);
                }
            }
        }
        names
            .into_iter()
            .map(|name| {
                let mut w = ColumnWriter::new(name, self.infer(name, image), self.rows.len());
                for (i, r) in self.rows.iter().enumerate() {
                    if let Some((_, v)) = image(r).iter().rev().find(|(n, _)| n == name) {
                        w.put(i, v.as_value()).map_err(|e| format!("{label} image of event {i}: {e}"))?;
                    }
                    w.fill_null(i);
                }
                Ok(w.finish())
            })
            .collect()
    }

    /// Packs the events into a batch. Fails, naming the column and event, when a value does not fit
    /// its column's type.
    pub fn build(&self) -> Result<wit::Batch, String> {
        let mut tables: Vec<wit::TableRef> = Vec::new();
        let table_of: Vec<u32> = self
            .sources
            .iter()
            .map(|s| {
                let i = tables
                    .iter()
                    .position(|t| t.schema == s.schema && t.table == s.table)
                    .unwrap_or_else(|| {
                        tables.push(wit::TableRef { schema: s.schema.clone(), table: s.table.clone() });
                        tables.len() - 1
                    });
                i as u32
            })
            .collect();
        Ok(wit::Batch {
            ops: self.rows.iter().map(|r| r.op.to_wit()).collect(),
            sources: self
                .rows
                .iter()
                .map(|r| {
                    let s = &self.sources[r.source];
                    wit::SourceInfo {
                        table: table_of[r.source],
                        lsn: s.lsn,
                        txid: s.txid,
                        ts_ms: s.ts_ms,
                        snapshot: s.snapshot,
                    }
                })
                .collect(),
            tables,
            after: self.columns(|r| &r.after, "after")?,
            before: self.columns(|r| &r.before, "before")?,
        })
    }
}

/// One event's result, decoded from a [`wit::Output`]: its outcome and the values of the write columns.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    /// What happens to the event.
    pub outcome: Outcome,
    /// `(column, value)` for every write column, in declared order.
    pub writes: Vec<(String, OwnedValue)>,
}

/// Decodes an output into one [`DecodedEvent`] per event. Fails when the output is malformed.
pub fn decode_output(output: &wit::Output) -> Result<Vec<DecodedEvent>, String> {
    let len = output.outcomes.len();
    let readers = output
        .writes
        .iter()
        .map(|c| ColumnReader::new(c, len).map_err(|e| format!("write column `{}`: {e}", c.name)))
        .collect::<Result<Vec<_>, _>>()?;
    output
        .outcomes
        .iter()
        .enumerate()
        .map(|(row, o)| {
            let writes = readers
                .iter()
                .map(|r| {
                    r.get(row)
                        .map(|v| (r.name().to_owned(), OwnedValue::from(v)))
                        .map_err(|e| format!("write column `{}`: {e}", r.name()))
                })
                .collect::<Result<_, _>>()?;
            Ok(DecodedEvent { outcome: Outcome::from_wit(o.clone()), writes })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decimal;

    #[test]
    fn builds_columns_sources_and_types() {
        let mut b = BatchBuilder::new();
        let other = EventSource {
            schema: "crm".into(),
            table: "people".into(),
            lsn: Some(7),
            txid: Some(9),
            ts_ms: 1000,
            snapshot: true,
        };
        b.push(Op::Create, &[("a", Value::Int32(1)), ("d", Value::Decimal(Decimal::new(5, 1)))]);
        b.push_event(
            Op::Update,
            &other,
            &[("a", Value::Int64(1 << 40)), ("d", Value::Decimal(Decimal::new(-1234, 3)))],
            &[("a", Value::Int32(2))],
        );
        b.push(Op::Delete, &[("z", Value::Null)]);
        let batch = b.build().unwrap();
        assert_eq!(batch.ops.len(), 3);
        assert_eq!(batch.tables.len(), 2);
        assert_eq!(batch.sources[1].table, 1);
        assert_eq!(batch.sources[1].lsn, Some(7));
        assert_eq!(batch.after.len(), 3);
        assert_eq!(batch.before.len(), 1);
        assert!(matches!(batch.after[0].values, wit::ColumnValues::Int64(_)));
        let d = ColumnReader::new(&batch.after[1], 3).unwrap();
        assert_eq!(d.column_type(), ColumnType::Decimal { precision: 38, scale: 3 });
        assert_eq!(d.get(0).unwrap().to_string(), "0.500");
        assert_eq!(d.get(1).unwrap().to_string(), "-1.234");
        assert_eq!(batch.after[2].present, [false, false, false]);
        let before = ColumnReader::new(&batch.before[0], 3).unwrap();
        assert_eq!(before.get(1), Ok(Value::Int32(2)));
        assert_eq!(before.get(0), Ok(Value::Null));
    }

    #[test]
    fn type_conflicts_name_the_column_and_event() {
        let mut b = BatchBuilder::new();
        b.push(Op::Create, &[("a", Value::Text("x"))]);
        b.push(Op::Create, &[("a", Value::Bool(true))]);
        let e = b.build().unwrap_err();
        assert!(e.contains("`a`") && e.contains("event 1"), "{e}");
        b.column_type("a", ColumnType::Json);
        assert!(b.build().is_err());
    }

    #[test]
    fn decode_output_roundtrip() {
        let mut w = ColumnWriter::new("x", ColumnType::Text, 2);
        w.put(0, Value::Text("v")).unwrap();
        w.fill_null(1);
        let out = wit::Output {
            outcomes: vec![wit::Outcome::Keep, wit::Outcome::Reject("r".into())],
            writes: vec![w.finish()],
        };
        let d = decode_output(&out).unwrap();
        assert_eq!(d[0].outcome, Outcome::Keep);
        assert_eq!(d[0].writes, [("x".to_owned(), OwnedValue::Text("v".into()))]);
        assert_eq!(d[1].outcome, Outcome::Reject("r".into()));
        assert_eq!(d[1].writes[0].1, OwnedValue::Null);
    }
}
