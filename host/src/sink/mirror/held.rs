//! Values a mirror keeps for keys that are out of the table: the large text and binary values of a
//! source row the chain dropped or rejected.
//!
//! PostgreSQL stores large values out of line (TOAST), and an update that leaves such a value alone
//! sends Debezium's placeholder instead of it. For a key the table holds, the value comes from the
//! table's row. For a key the chain left out (a rule rejected it, a plugin dropped it), the table
//! holds nothing, so when a later update brings the key back, its value would be unknown. The mirror
//! keeps those values here, and writes them to a file the snapshot names (summary key
//! [`HELD_VALUES`]) whenever they change, so a restarted host has them too.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, LargeBinaryArray, LargeStringArray, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use iceberg::table::Table;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::Key;
use crate::error::SinkError;

pub use crate::sink::commit::HELD_VALUES;

/// PostgreSQL moves values out of line only when a row is larger than this (`TOAST_TUPLE_THRESHOLD`
/// on 8 KiB pages); smaller rows always carry every value.
const TOAST_ROW_BYTES: usize = 2032;
/// An out-of-line value's pointer is 18 bytes: smaller values are never moved out of line.
const TOAST_MIN_VALUE: usize = 18;

/// One held value: text or bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Text(Arc<str>),
    Bytes(Arc<[u8]>),
}

impl Held {
    fn len(&self) -> usize {
        match self {
            Held::Text(t) => t.len(),
            Held::Bytes(b) => b.len(),
        }
    }

    /// The value as a one-value array (the caller casts it to the column's type).
    pub fn to_array(&self) -> ArrayRef {
        match self {
            Held::Text(t) => Arc::new(StringArray::from(vec![t.as_ref()])),
            Held::Bytes(b) => Arc::new(BinaryArray::from(vec![b.as_ref()])),
        }
    }

    /// Row `i` of `array` if it is a non-null text or binary value.
    pub fn from_array(array: &dyn Array, i: usize) -> Option<Held> {
        if array.is_null(i) {
            return None;
        }
        let any = array.as_any();
        match array.data_type() {
            DataType::Utf8 => any.downcast_ref::<StringArray>().map(|a| Held::Text(a.value(i).into())),
            DataType::LargeUtf8 => {
                any.downcast_ref::<LargeStringArray>().map(|a| Held::Text(a.value(i).into()))
            }
            DataType::Binary => any.downcast_ref::<BinaryArray>().map(|a| Held::Bytes(a.value(i).into())),
            DataType::LargeBinary => {
                any.downcast_ref::<LargeBinaryArray>().map(|a| Held::Bytes(a.value(i).into()))
            }
            _ => None,
        }
    }
}

/// Whether a column of this type can carry a TOASTed value.
pub fn can_hold(ty: &DataType) -> bool {
    matches!(ty, DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary)
}

/// Of a left-out row's text and binary values (column → value), those PostgreSQL may have stored out
/// of line: none when the row is too small for TOAST.
pub fn toastable(values: Vec<(Arc<str>, Held)>) -> Vec<(Arc<str>, Held)> {
    let total: usize = values.iter().map(|(_, v)| v.len()).sum();
    if total < TOAST_ROW_BYTES {
        return Vec::new();
    }
    values.into_iter().filter(|(_, v)| v.len() > TOAST_MIN_VALUE).collect()
}

/// A row's held values: column → value.
pub type RowValues = Vec<(Arc<str>, Held)>;

/// Keys in the file start with this (a key's first column would otherwise be 4 GiB long) when the
/// row holds a deleted key's values carried to a create at the LSN that follows.
const CARRY_PREFIX: [u8; 4] = [0xff; 4];

/// The held values of left-out keys.
#[derive(Debug, Default)]
pub struct HeldValues {
    by_key: HashMap<Key, Vec<(Arc<str>, Held)>>,
    /// The values of a key deleted at an LSN, for a create at the same LSN (a primary-key change)
    /// that the next commit takes: written with the next file only.
    carry: Option<(i64, RowValues)>,
    bytes: usize,
    /// Changed since the file was last written.
    dirty: bool,
}

impl HeldValues {
    /// The value held for `key`'s column `col`.
    pub fn get(&self, key: &[u8], col: &str) -> Option<&Held> {
        self.by_key.get(key)?.iter().find(|(c, _)| &**c == col).map(|(_, v)| v)
    }

    /// Holds `values` for `key` (replacing what it held); no values: holds nothing for it.
    pub fn set(&mut self, key: &Key, values: Vec<(Arc<str>, Held)>) {
        if values.is_empty() {
            self.remove(key);
            return;
        }
        self.bytes += values.iter().map(|(c, v)| c.len() + v.len()).sum::<usize>();
        if let Some(old) = self.by_key.insert(key.clone(), values) {
            self.bytes -= old.iter().map(|(c, v)| c.len() + v.len()).sum::<usize>();
        }
        self.dirty = true;
    }

    /// The key is back in the table.
    pub fn remove(&mut self, key: &[u8]) {
        self.take(key);
    }

    /// The key is gone from the source: the values it held.
    pub fn take(&mut self, key: &[u8]) -> Option<Vec<(Arc<str>, Held)>> {
        if self.by_key.is_empty() {
            return None;
        }
        let old = self.by_key.remove(key)?;
        self.bytes -= old.iter().map(|(c, v)| c.len() + v.len()).sum::<usize>();
        self.dirty = true;
        Some(old)
    }

    /// Holds the values of a key deleted at `lsn` for the create of a primary-key change.
    pub fn set_carry(&mut self, lsn: i64, values: Vec<(Arc<str>, Held)>) {
        self.carry = Some((lsn, values));
        self.dirty = true;
    }

    /// The carried values the file held (see [`Self::set_carry`]).
    pub fn take_carry(&mut self) -> Option<(i64, RowValues)> {
        self.carry.take()
    }

    /// Truncate: nothing is held.
    pub fn clear(&mut self) {
        if !self.by_key.is_empty() {
            self.by_key.clear();
            self.bytes = 0;
            self.dirty = true;
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Bytes of values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the held values changed since [`Self::take_snapshot`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The values as a batch to write (`None`: nothing held), marking them written.
    pub fn take_snapshot(&mut self) -> Option<RecordBatch> {
        self.dirty = false;
        let carry = self.carry.take();
        if self.by_key.is_empty() && carry.is_none() {
            return None;
        }
        let carry_key: Option<Key> = carry.as_ref().map(|(lsn, _)| {
            let mut k = CARRY_PREFIX.to_vec();
            k.extend_from_slice(&lsn.to_le_bytes());
            k.into()
        });
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut cols: Vec<&str> = Vec::new();
        let mut text: Vec<Option<&str>> = Vec::new();
        let mut bytes: Vec<Option<&[u8]>> = Vec::new();
        let carried = carry_key.as_ref().zip(carry.as_ref().map(|(_, v)| v));
        for (k, values) in self.by_key.iter().chain(carried) {
            for (c, v) in values {
                keys.push(k);
                cols.push(c);
                match v {
                    Held::Text(t) => {
                        text.push(Some(t));
                        bytes.push(None);
                    }
                    Held::Bytes(b) => {
                        text.push(None);
                        bytes.push(Some(b));
                    }
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from(keys)),
            Arc::new(StringArray::from(cols)),
            Arc::new(StringArray::from(text)),
            Arc::new(BinaryArray::from(bytes)),
        ];
        Some(RecordBatch::try_new(file_schema(), columns).expect("held-values batch matches its schema"))
    }

    /// Reads the values a snapshot's file holds.
    pub async fn read(table: &Table, path: &str) -> Result<Self, SinkError> {
        let err = |e: String| SinkError::Shape {
            table: table.identifier().to_string(),
            message: format!("reading held TOAST values from {path}: {e}"),
        };
        let data = super::files::read_bytes(table, path).await.map_err(err)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(data)
            .and_then(|b| b.build())
            .map_err(|e| err(e.to_string()))?;
        let mut held = HeldValues::default();
        for batch in reader {
            let batch = batch.map_err(|e| err(e.to_string()))?;
            let col = |i: usize| batch.column(i).as_any();
            let (Some(keys), Some(cols), Some(text), Some(bytes)) = (
                col(0).downcast_ref::<BinaryArray>(),
                col(1).downcast_ref::<StringArray>(),
                col(2).downcast_ref::<StringArray>(),
                col(3).downcast_ref::<BinaryArray>(),
            ) else {
                return Err(err("unexpected columns".into()));
            };
            for i in 0..batch.num_rows() {
                let v = match (text.is_null(i), bytes.is_null(i)) {
                    (false, _) => Held::Text(text.value(i).into()),
                    (true, false) => Held::Bytes(bytes.value(i).into()),
                    (true, true) => continue,
                };
                let key = keys.value(i);
                let c: Arc<str> = cols.value(i).into();
                if let Some(lsn) = key.strip_prefix(&CARRY_PREFIX[..]) {
                    let lsn =
                        i64::from_le_bytes(lsn.try_into().map_err(|_| err("a bad carried key".into()))?);
                    held.carry.get_or_insert_with(|| (lsn, Vec::new())).1.push((c, v));
                    continue;
                }
                held.bytes += c.len() + v.len();
                held.by_key.entry(key.into()).or_default().push((c, v));
            }
        }
        Ok(held)
    }
}

fn file_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Binary, false),
        Field::new("column", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, true),
        Field::new("bytes", DataType::Binary, true),
    ]))
}

/// Writes `batch` (from [`HeldValues::take_snapshot`]) next to the table's metadata; returns its
/// location.
pub async fn write(table: &Table, batch: RecordBatch) -> Result<String, SinkError> {
    let path = format!(
        "{}/metadata/cdc-host-held-values-{}.parquet",
        table.metadata().location().trim_end_matches('/'),
        uuid::Uuid::new_v4()
    );
    let err = |e: String| SinkError::Write {
        table: table.identifier().to_string(),
        source: Box::new(iceberg::Error::new(
            iceberg::ErrorKind::Unexpected,
            format!("writing held TOAST values to {path}: {e}"),
        )),
    };
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).map_err(|e| err(e.to_string()))?;
    w.write(&batch).map_err(|e| err(e.to_string()))?;
    w.close().map_err(|e| err(e.to_string()))?;
    table
        .file_io()
        .new_output(&path)
        .map_err(|e| err(e.to_string()))?
        .write(buf.into())
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rows_large_enough_for_toast_are_held() {
        let small = vec![("notes".into(), Held::Text("x".repeat(500).into()))];
        assert!(toastable(small).is_empty());
        let big = vec![
            ("notes".into(), Held::Text("x".repeat(3000).into())),
            ("email".into(), Held::Text("a@b.c".into())),
        ];
        let held = toastable(big);
        assert_eq!(held.len(), 1);
        assert_eq!(&*held[0].0, "notes");
    }

    #[test]
    fn values_round_trip_through_a_batch() {
        let mut h = HeldValues::default();
        let key: Key = b"k1".to_vec().into();
        h.set(
            &key,
            vec![
                ("notes".into(), Held::Text("long".into())),
                ("blob".into(), Held::Bytes(vec![1, 2].into())),
            ],
        );
        assert!(h.is_dirty());
        let batch = h.take_snapshot().unwrap();
        assert!(!h.is_dirty());
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(h.get(b"k1", "notes"), Some(&Held::Text("long".into())));
        h.remove(b"k1");
        assert_eq!(h.bytes(), 0);
        assert!(h.is_dirty() && h.take_snapshot().is_none());
    }
}
