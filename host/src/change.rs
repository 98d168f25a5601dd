//! The data that flows between stages: raw records in, columnar change batches through the chain,
//! dead letters out.

use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, BooleanArray};
use arrow_select::filter::filter;

use crate::schema::ColType;

/// A batch of raw input records (NDJSON lines or Kafka payloads), kept for the dead-letter output.
#[derive(Debug, Default)]
pub struct RawBatch {
    /// All record bytes end to end.
    pub buf: Vec<u8>,
    /// End of record `i` in `buf` (its start is the previous end).
    pub ends: Vec<usize>,
    /// Names of the streams (input file, or Kafka topic-partition) records come from.
    pub streams: Vec<Arc<str>>,
    /// Per record: index into `streams`.
    pub stream: Vec<u16>,
    /// Per record: line number (files, 1-based) or offset (Kafka) within its stream.
    pub offsets: Vec<i64>,
    /// Bytes of records let go by [`Self::keep_bytes_of`].
    pub released: usize,
    /// The source had nothing more waiting when this batch was cut (a live stream has caught up):
    /// what is pending may be committed now rather than at the next size or time trigger.
    pub caught_up: bool,
    /// Records are Kafka records the source wrapped as `{"topic","key","value"}` (the value last)
    /// without checking that the value is JSON: decoding checks it.
    pub unchecked_values: bool,
}

/// Record buffers of dropped batches, for the next batches to read into: filling a fresh buffer costs
/// a page fault every 4 KiB (most of the time spent reading a file).
static SPARE_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Spare buffers kept at most (about the batches between reading and the chain).
const SPARE_MAX: usize = 4;

/// Buffers smaller than this are not kept.
const SPARE_MIN_BYTES: usize = 1 << 20;

/// Keeps `buf` for a next batch, if it is worth keeping and there is room.
fn keep_spare(mut buf: Vec<u8>) {
    if buf.capacity() >= SPARE_MIN_BYTES {
        let mut spare = SPARE_BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < SPARE_MAX {
            buf.clear();
            spare.push(buf);
        }
    }
}

impl Drop for RawBatch {
    fn drop(&mut self) {
        keep_spare(std::mem::take(&mut self.buf));
    }
}

impl RawBatch {
    /// An empty batch of records from `streams`.
    pub fn new(streams: Vec<Arc<str>>) -> Self {
        let mut batch = Self::default();
        batch.streams = streams;
        batch
    }

    /// Makes room for `bytes` more record bytes; an empty batch takes the buffer of a dropped one
    /// when one is large enough.
    pub fn reserve(&mut self, bytes: usize) {
        if self.buf.capacity() - self.buf.len() >= bytes {
            return;
        }
        if self.buf.is_empty() && bytes >= SPARE_MIN_BYTES {
            // Whole MiBs, so that the buffers of batches of about the same size fit each other.
            let bytes = bytes.next_multiple_of(SPARE_MIN_BYTES);
            let mut spare = SPARE_BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
            // Spare buffers too small for this batch are likely too small for the next ones too.
            spare.retain(|b| b.capacity() >= bytes);
            self.buf = spare.pop().unwrap_or_else(|| Vec::with_capacity(bytes));
            return;
        }
        self.buf.reserve(bytes);
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there is no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes of record `i`.
    pub fn record(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    /// Where record `i` came from, e.g. `events.ndjson:42`.
    pub fn position(&self, i: usize) -> String {
        format!("{}:{}", self.streams[self.stream[i] as usize], self.offsets[i])
    }

    /// Appends one record.
    pub fn push(&mut self, stream: u16, offset: i64, bytes: &[u8]) {
        self.push_with(stream, offset, |buf| buf.extend_from_slice(bytes));
    }

    /// Appends one record that `write` appends to the batch's bytes.
    pub fn push_with(&mut self, stream: u16, offset: i64, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.buf);
        self.ends.push(self.buf.len());
        self.stream.push(stream);
        self.offsets.push(offset);
    }

    /// Empties the batch, keeping its allocations and stream names.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.stream.clear();
        self.offsets.clear();
        self.released = 0;
        self.caught_up = false;
        self.unchecked_values = false;
    }

    /// Bytes the records took when read.
    pub fn input_bytes(&self) -> usize {
        self.buf.len() + self.released
    }

    /// Keeps the bytes of the records `keep` names (dead letters carry them) and lets go of the
    /// others', which become empty; positions stay.
    pub fn keep_bytes_of(&mut self, keep: impl Fn(usize) -> bool) {
        let mut buf = Vec::new();
        let mut ends = Vec::with_capacity(self.ends.len());
        for i in 0..self.ends.len() {
            if keep(i) {
                buf.extend_from_slice(self.record(i));
            }
            ends.push(buf.len());
        }
        self.released += self.buf.len() - buf.len();
        keep_spare(std::mem::replace(&mut self.buf, buf));
        self.ends = ends;
    }
}

/// Debezium operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Update,
    Delete,
    Read,
    Truncate,
}

impl Op {
    /// Every operation, in the order of [`Op::index`].
    pub const ALL: [Op; 5] = [Op::Create, Op::Update, Op::Delete, Op::Read, Op::Truncate];

    /// The operation's place in [`Op::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Debezium's `op` code (`c`, `u`, `d`, `r`, `t`).
    pub fn debezium(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }

    /// Parses Debezium's `op` field.
    pub fn from_debezium(s: &str) -> Option<Op> {
        Some(match s {
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            "t" => Op::Truncate,
            _ => return None,
        })
    }

    /// The `_cdc_operation` value: snapshot reads count as inserts.
    pub fn cdc_operation(self) -> &'static str {
        match self {
            Op::Create | Op::Read => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Truncate => "TRUNCATE",
        }
    }
}

/// Where a change came from in the source database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceInfo {
    /// Index into [`ChangeBatch::tables`].
    pub table: u32,
    pub lsn: Option<i64>,
    pub txid: Option<i64>,
    pub ts_ms: i64,
    pub snapshot: bool,
}

/// A source table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub schema: String,
    pub table: String,
}

/// A named, typed column of a batch.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
    pub array: ArrayRef,
}

/// Ordered columns with lookup by name.
#[derive(Debug, Clone, Default)]
pub struct Columns(pub Vec<Column>);

impl Columns {
    /// The column called `name`.
    pub fn get(&self, name: &str) -> Option<&Column> {
        self.0.iter().find(|c| c.name == name)
    }

    /// Adds or replaces a column.
    pub fn set(&mut self, column: Column) {
        match self.0.iter_mut().find(|c| c.name == column.name) {
            Some(slot) => *slot = column,
            None => self.0.push(column),
        }
    }

    /// Removes a column if present.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|c| c.name != name);
    }

    fn filter(&mut self, mask: &BooleanArray) -> Result<(), arrow_schema::ArrowError> {
        for c in &mut self.0 {
            c.array = filter(&c.array, mask)?;
        }
        Ok(())
    }
}

/// Decoded change events, column by column.
#[derive(Debug, Clone, Default)]
pub struct ChangeBatch {
    pub ops: Vec<Op>,
    pub sources: Vec<SourceInfo>,
    pub tables: Vec<TableRef>,
    pub after: Columns,
    pub before: Columns,
    /// Per event: the index of its record in the [`RawBatch`] it was decoded from.
    pub origins: Vec<u32>,
    /// `after` columns that carried Debezium's TOAST placeholder (decoded as null): (origin, column).
    /// A mirror table keeps the value it holds for them.
    pub toast: Vec<(u32, Arc<str>)>,
}

impl ChangeBatch {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there is no event.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Keeps the events where `keep[i]` is true.
    pub fn retain(&mut self, keep: &[bool]) -> Result<(), arrow_schema::ArrowError> {
        if keep.iter().all(|k| *k) {
            return Ok(());
        }
        let mask = BooleanArray::from(keep.to_vec());
        self.after.filter(&mask)?;
        self.before.filter(&mask)?;
        let mut i = 0;
        self.ops.retain(|_| (keep[i], i += 1).0);
        let mut i = 0;
        self.sources.retain(|_| (keep[i], i += 1).0);
        let mut i = 0;
        self.origins.retain(|_| (keep[i], i += 1).0);
        Ok(())
    }
}

/// A record that did not make it to the table, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Index of the record in its [`RawBatch`].
    pub origin: u32,
    /// `decode`, `transform` or `encode`.
    pub stage: &'static str,
    /// The plugin that rejected or failed on the record, if any.
    pub plugin: Option<String>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array};

    #[test]
    fn retain_filters_every_part() {
        let mut b = ChangeBatch {
            ops: vec![Op::Create, Op::Delete, Op::Update],
            sources: vec![SourceInfo { table: 0, lsn: None, txid: None, ts_ms: 1, snapshot: false }; 3],
            origins: vec![0, 1, 2],
            ..Default::default()
        };
        b.after.set(Column {
            name: "id".into(),
            ty: ColType::Int64,
            array: Arc::new(Int64Array::from(vec![1, 2, 3])),
        });
        b.retain(&[true, false, true]).unwrap();
        assert_eq!(b.ops, vec![Op::Create, Op::Update]);
        assert_eq!(b.origins, vec![0, 2]);
        let ids = b.after.get("id").unwrap().array.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values().to_vec(), vec![1, 3]);
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn raw_batch_positions() {
        let mut r = RawBatch::new(vec![Arc::from("in.ndjson")]);
        r.push(0, 1, b"{}");
        r.push(0, 2, b"[1]");
        assert_eq!(r.record(1), b"[1]");
        assert_eq!(r.position(1), "in.ndjson:2");
    }
}
