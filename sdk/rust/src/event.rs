//! The row-style view a plugin works with: [`Event`], its [`Op`] and [`Source`], and the [`Outcome`].

use std::cell::Cell;
use std::fmt;

use crate::column::{ColumnReader, ColumnWriter, NameKey};
use crate::value::{Decimal, IntoValue, Value};
use crate::wit;

/// The kind of change an event describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A row was inserted.
    Create,
    /// A row was updated.
    Update,
    /// A row was deleted (the after image is all null).
    Delete,
    /// A row was read by a snapshot.
    Read,
    /// A table was truncated.
    Truncate,
}

impl Op {
    /// Converts from the WIT enum.
    pub fn from_wit(op: wit::Operation) -> Self {
        match op {
            wit::Operation::Create => Op::Create,
            wit::Operation::Update => Op::Update,
            wit::Operation::Delete => Op::Delete,
            wit::Operation::Read => Op::Read,
            wit::Operation::Truncate => Op::Truncate,
        }
    }

    /// Converts to the WIT enum.
    pub fn to_wit(self) -> wit::Operation {
        match self {
            Op::Create => wit::Operation::Create,
            Op::Update => wit::Operation::Update,
            Op::Delete => wit::Operation::Delete,
            Op::Read => wit::Operation::Read,
            Op::Truncate => wit::Operation::Truncate,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Read => "read",
            Op::Truncate => "truncate",
        })
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source<'a> {
    /// Source schema.
    pub schema: &'a str,
    /// Source table.
    pub table: &'a str,
    /// Log sequence number, when the source has one.
    pub lsn: Option<i64>,
    /// Transaction id, when the source has one.
    pub txid: Option<i64>,
    /// Source commit time, milliseconds since the epoch.
    pub ts_ms: i64,
    /// True for rows read by the initial snapshot.
    pub snapshot: bool,
}

/// What happens to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Keep the event, with the plugin's writes applied.
    Keep,
    /// Filter the event out on purpose (counted, not an error).
    Drop,
    /// Refuse the event: it goes to the dead-letter output with this reason.
    Reject(String),
}

impl Outcome {
    /// `Outcome::Reject` with a reason.
    pub fn reject(reason: impl Into<String>) -> Self {
        Outcome::Reject(reason.into())
    }

    /// Converts to the WIT variant.
    pub fn to_wit(self) -> wit::Outcome {
        match self {
            Outcome::Keep => wit::Outcome::Keep,
            Outcome::Drop => wit::Outcome::Drop,
            Outcome::Reject(r) => wit::Outcome::Reject(r),
        }
    }

    /// Converts from the WIT variant.
    pub fn from_wit(o: wit::Outcome) -> Self {
        match o {
            wit::Outcome::Keep => Outcome::Keep,
            wit::Outcome::Drop => Outcome::Drop,
            wit::Outcome::Reject(r) => Outcome::Reject(r),
        }
    }
}

/// Which columns the plugin declared it reads.
#[derive(Debug, Clone)]
pub(crate) struct ReadSpec {
    pub(crate) all: bool,
    pub(crate) names: Vec<String>,
    pub(crate) before: bool,
}

impl ReadSpec {
    fn declares(&self, name: &str) -> bool {
        self.all || self.names.iter().any(|n| n == name)
    }
}

/// The columns of one row image, with their name keys for quick lookup.
pub(crate) struct Columns<'a> {
    readers: Vec<ColumnReader<'a>>,
    keys: Vec<NameKey>,
}

impl<'a> Columns<'a> {
    fn new(readers: Vec<ColumnReader<'a>>) -> Self {
        let keys = readers.iter().map(|r| NameKey::of(r.name())).collect();
        Columns { readers, keys }
    }

    #[inline]
    fn find(&self, name: &str) -> Option<&ColumnReader<'a>> {
        let key = NameKey::of(name);
        self.keys.iter().zip(&self.readers).find(|(k, r)| key.matches(name, k, r.name())).map(|(_, r)| r)
    }
}

/// A decoded batch: the resolved column views, built once per batch.
pub(crate) struct BatchView<'a> {
    pub(crate) ops: &'a [wit::Operation],
    pub(crate) sources: &'a [wit::SourceInfo],
    pub(crate) tables: &'a [wit::TableRef],
    pub(crate) after: Columns<'a>,
    pub(crate) before: Columns<'a>,
    pub(crate) reads: &'a ReadSpec,
}

impl<'a> BatchView<'a> {
    /// Validates the batch's shape and resolves its columns. The error describes the first problem.
    pub(crate) fn new(batch: &'a wit::Batch, reads: &'a ReadSpec) -> Result<Self, String> {
        let len = batch.ops.len();
        if batch.sources.len() != len {
            return Err(format!("{} sources for {len} events", batch.sources.len()));
        }
        if let Some(s) = batch.sources.iter().find(|s| s.table as usize >= batch.tables.len()) {
            return Err(format!(
                "source table index {} out of range ({} tables)",
                s.table,
                batch.tables.len()
            ));
        }
        let resolve = |cols: &'a [wit::Column], image: &str| {
            cols.iter()
                .map(|c| ColumnReader::new(c, len).map_err(|e| format!("{image} column `{}`: {e}", c.name)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(BatchView {
            ops: &batch.ops,
            sources: &batch.sources,
            tables: &batch.tables,
            after: Columns::new(resolve(&batch.after, "after")?),
            before: Columns::new(resolve(&batch.before, "before")?),
            reads,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }
}

/// The declared write columns of one batch, filled event by event.
pub(crate) struct Writes {
    pub(crate) columns: Vec<ColumnWriter>,
    pub(crate) keys: Vec<NameKey>,
}

impl Writes {
    pub(crate) fn new(columns: Vec<ColumnWriter>) -> Self {
        let keys = columns.iter().map(|c| NameKey::of(c.name())).collect();
        Writes { columns, keys }
    }
}

/// One change event, seen as a row: read the declared columns by name, set the declared writes.
///
/// Reading never allocates: text and bytes borrow from the batch for the lifetime `'a`, so a value read
/// from the event can be passed straight back to [`Event::set`]. Mistakes (reading a column not
/// declared in `reads`, writing one not declared in `writes`, a value of the wrong type) do not panic:
/// the SDK records the first one and the event is rejected with a reason naming the column.
pub struct Event<'a> {
    pub(crate) view: &'a BatchView<'a>,
    pub(crate) writes: &'a mut Writes,
    pub(crate) row: usize,
    pub(crate) error: Cell<Option<String>>,
}

impl<'a> Event<'a> {
    /// Records a mistake; the event will be rejected with the first one recorded.
    pub fn fail(&self, reason: impl Into<String>) {
        let current = self.error.take();
        self.error.set(Some(current.unwrap_or_else(|| reason.into())));
    }

    /// The first mistake recorded for this event, if any.
    pub fn error(&self) -> Option<String> {
        let current = self.error.take();
        let copy = current.clone();
        self.error.set(current);
        copy
    }

    /// The position of this event in its batch.
    pub fn position(&self) -> usize {
        self.row
    }

    /// The kind of change.
    pub fn op(&self) -> Op {
        Op::from_wit(self.view.ops[self.row])
    }

    /// Where the change came from.
    pub fn source(&self) -> Source<'a> {
        let s = &self.view.sources[self.row];
        let t = &self.view.tables[s.table as usize];
        Source {
            schema: &t.schema,
            table: &t.table,
            lsn: s.lsn,
            txid: s.txid,
            ts_ms: s.ts_ms,
            snapshot: s.snapshot,
        }
    }

    #[inline]
    fn read(&self, columns: &Columns<'a>, name: &str, image: &str) -> Value<'a> {
        match columns.find(name) {
            Some(col) => match col.get(self.row) {
                Ok(v) => v,
                Err(e) => {
                    self.fail(format!("{image} column `{name}`: {e}"));
                    Value::Null
                }
            },
            None => {
                if !self.view.reads.declares(name) {
                    self.fail(format!("column `{name}` is read but not declared in the plugin's reads"));
                }
                Value::Null
            }
        }
    }

    /// The after-image value of `name` (null for a delete, or when the table has no such column).
    #[inline]
    pub fn get(&self, name: &str) -> Value<'a> {
        self.read(&self.view.after, name, "after")
    }

    /// The before-image value of `name`; needs `reads_before(true)` in the description.
    #[inline]
    pub fn before(&self, name: &str) -> Value<'a> {
        if !self.view.reads.before {
            self.fail(format!(
                "before image of `{name}` is read but the plugin does not declare reads_before"
            ));
            return Value::Null;
        }
        self.read(&self.view.before, name, "before")
    }

    /// Whether the after-image value of `name` is null.
    pub fn is_null(&self, name: &str) -> bool {
        self.get(name).is_null()
    }

    #[inline]
    fn typed<T>(&self, name: &str, expected: &str, f: impl Fn(&Value<'a>) -> Option<T>) -> Option<T> {
        let v = self.get(name);
        if v.is_null() {
            return None;
        }
        let out = f(&v);
        if out.is_none() {
            self.fail(format!("column `{name}` holds {}, expected {expected}", v.type_name()));
        }
        out
    }

    /// The after-image text of `name`; `None` when null. Another type is a recorded mistake.
    #[inline]
    pub fn text(&self, name: &str) -> Option<&'a str> {
        self.typed(name, "text", Value::as_text)
    }

    /// The after-image JSON document of `name`; `None` when null.
    pub fn json(&self, name: &str) -> Option<&'a str> {
        self.typed(name, "json", Value::as_json)
    }

    /// The after-image bytes of `name`; `None` when null.
    pub fn bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.typed(name, "bytes", Value::as_bytes)
    }

    /// The after-image boolean of `name`; `None` when null.
    pub fn boolean(&self, name: &str) -> Option<bool> {
        self.typed(name, "boolean", Value::as_bool)
    }

    /// The after-image integer (int32 or int64) of `name`; `None` when null.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.typed(name, "int32 or int64", Value::as_int)
    }

    /// The after-image float64 (or integer) of `name`; `None` when null.
    pub fn float(&self, name: &str) -> Option<f64> {
        self.typed(name, "float64", Value::as_float)
    }

    /// The after-image decimal (or integer, as scale 0) of `name`; `None` when null.
    #[inline]
    pub fn decimal(&self, name: &str) -> Option<Decimal> {
        self.typed(name, "decimal", Value::as_decimal)
    }

    /// The after-image date (days since 1970-01-01) of `name`; `None` when null.
    pub fn date(&self, name: &str) -> Option<i32> {
        self.typed(name, "date", Value::as_date)
    }

    /// The after-image timestamp or timestamptz (microseconds) of `name`; `None` when null.
    pub fn timestamp(&self, name: &str) -> Option<i64> {
        self.typed(name, "timestamp", Value::as_timestamp)
    }

    #[inline]
    fn writer(&mut self, name: &str) -> Option<&mut ColumnWriter> {
        let key = NameKey::of(name);
        let found = self
            .writes
            .keys
            .iter()
            .zip(&self.writes.columns)
            .position(|(k, c)| key.matches(name, k, c.name()));
        match found {
            Some(i) => Some(&mut self.writes.columns[i]),
            None => {
                self.fail(format!("column `{name}` is written but not declared in the plugin's writes"));
                None
            }
        }
    }

    #[inline]
    fn record(&self, result: Result<(), String>) {
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// Sets a declared write column: `&str`, `Option<&str>`, `String`, `i64`, [`Decimal`], [`Value`], ...
    ///
    /// Text is copied straight into the packed output buffer. Integers widen to int64, float64 and
    /// decimal columns; decimals are rescaled to the column's scale when that is exact. Setting the
    /// same column twice keeps the last value. A column not set is null.
    #[inline]
    pub fn set(&mut self, name: &str, value: impl IntoValue) {
        let row = self.row;
        if let Some(w) = self.writer(name) {
            let result = value.with_value(|v| w.put(row, v));
            self.record(result);
        }
    }

    /// Sets a declared write column to null.
    pub fn set_null(&mut self, name: &str) {
        self.set(name, Value::Null);
    }

    /// Sets a declared text column to `parts` joined by `separator` (null when there are no parts),
    /// without building an intermediate `String`.
    #[inline]
    pub fn set_joined<'p>(&mut self, name: &str, parts: impl IntoIterator<Item = &'p str>, separator: &str) {
        let row = self.row;
        if let Some(w) = self.writer(name) {
            let result = w.put_joined(row, parts, separator);
            self.record(result);
        }
    }

    /// Sets a declared text column to formatted text, e.g. `event.set_fmt("k", format_args!("{a}-{b}"))`,
    /// without building an intermediate `String`.
    pub fn set_fmt(&mut self, name: &str, args: fmt::Arguments<'_>) {
        let row = self.row;
        if let Some(w) = self.writer(name) {
            let result = w.put_fmt(row, args);
            self.record(result);
        }
    }
}

impl fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Event");
        s.field("position", &self.row).field("op", &self.op());
        for c in &self.view.after.readers {
            match c.get(self.row) {
                Ok(v) => s.field(c.name(), &v),
                Err(e) => s.field(c.name(), &e),
            };
        }
        s.finish()
    }
}
