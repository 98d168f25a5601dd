//! Mirror tables: one row per source key, the table equal to the source table passed through the
//! chain (`[table] mode = "mirror"`).
//!
//! - [`key_events`] (on the worker, before the chain) gives every event its key, from the source
//!   images, so a delete or a row the chain drops or rejects still names the row it removes;
//! - [`index::KeyIndex`] maps each key to its live row (pending in memory, or a committed file
//!   position), rebuilt from the table when a host starts;
//! - [`MirrorSink`] applies the changes in source order (the last change of a key within a commit
//!   wins), keeps TOASTed values, and commits new data files plus position-delete files as one
//!   row-delta snapshot through the table's fenced commit. A commit is written while the next batches
//!   are applied: a row in flight that stops being its key's row becomes a position delete of the
//!   next commit once the flight lands.

mod files;
pub mod held;
pub mod index;
mod sink;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, StringArray};
use arrow_cast::cast;
use arrow_schema::DataType;

use crate::change::{ChangeBatch, DeadLetter, Op};
use crate::schema::ColType;

pub use files::read_deletes;
pub use index::{KeyIndex, Location};
pub use sink::{Launched, MirrorFlight, MirrorSink, Written};

/// A key's values, encoded (see [`encode_keys`]).
pub type Key = Box<[u8]>;

/// One event of a mirror table, as the source sent it (before the chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedEvent {
    /// The event's record in its raw batch.
    pub origin: u32,
    /// A delete (removes the key's row whatever the chain says).
    pub delete: bool,
    pub key: Key,
    /// The source LSN: a primary-key change is a delete and a create at one LSN.
    pub lsn: Option<i64>,
    /// The event's row in [`MirrorEvents::values`] (`u32::MAX`: none).
    pub row: u32,
}

/// The keyed events of one batch in source order, and where truncates happened.
#[derive(Debug, Clone, Default)]
pub struct MirrorEvents {
    pub key_columns: Vec<String>,
    pub events: Vec<KeyedEvent>,
    /// Origins of truncate events.
    pub truncates: Vec<u32>,
    /// The text and binary columns of the events' `after` images as the source sent them (one row
    /// per event): a row the chain leaves out keeps its large values from here.
    pub values: Vec<(Arc<str>, ArrayRef)>,
}

impl MirrorEvents {
    /// After the chain: keeps the source values of the events it left out only (`kept`: the
    /// origins of the rows it kept, in order), the only ones a mirror holds values for. Memory of a
    /// queued batch then does not hold every source row twice.
    pub fn keep_values_of_left_out(&mut self, kept: &[u32]) {
        if self.values.is_empty() {
            return;
        }
        let mut is_kept = vec![false; kept.iter().max().map_or(0, |&m| m as usize + 1)];
        for &o in kept {
            is_kept[o as usize] = true;
        }
        let mut rows = Vec::new();
        for ev in &mut self.events {
            if ev.delete || is_kept.get(ev.origin as usize).copied().unwrap_or(false) {
                ev.row = u32::MAX;
            } else {
                rows.push(ev.row);
                ev.row = (rows.len() - 1) as u32;
            }
        }
        if rows.is_empty() {
            self.values.clear();
            return;
        }
        let indices = arrow_array::UInt32Array::from(rows);
        self.values = std::mem::take(&mut self.values)
            .into_iter()
            .filter_map(|(name, a)| arrow_select::take::take(&a, &indices, None).ok().map(|t| (name, t)))
            .collect();
    }
}

/// Text form of `array`'s values after casting to `ty` (the table's type), the form keys compare in.
pub fn key_strings(array: &ArrayRef, ty: Option<ColType>) -> Result<StringArray, String> {
    let typed = match ty {
        Some(t) if array.data_type() != &t.arrow_type() => {
            cast(array, &t.arrow_type()).map_err(|e| e.to_string())?
        }
        _ => array.clone(),
    };
    let text = cast(&typed, &DataType::Utf8).map_err(|e| e.to_string())?;
    Ok(text.as_any().downcast_ref::<StringArray>().ok_or("key column is not text after casting")?.clone())
}

/// Encodes the keys of rows: per row, each column's text (length-prefixed); `None` when a key
/// column is null.
pub fn encode_keys(columns: &[StringArray], rows: usize) -> Vec<Option<Key>> {
    (0..rows)
        .map(|i| {
            let mut k = Vec::with_capacity(16);
            for c in columns {
                if c.is_null(i) {
                    return None;
                }
                let v = c.value(i).as_bytes();
                k.extend_from_slice(&(v.len() as u32).to_le_bytes());
                k.extend_from_slice(v);
            }
            Some(k.into_boxed_slice())
        })
        .collect()
}

/// Gives every event of `batch` its key (from `after`, or `before` for a delete; the other image
/// when the first lacks it). Events without a key value go to `dead` and leave the batch.
pub fn key_events(
    batch: &mut ChangeBatch,
    truncates: Vec<u32>,
    key_columns: &[String],
    types: &HashMap<String, ColType>,
    dead: &mut Vec<DeadLetter>,
) -> MirrorEvents {
    let n = batch.len();
    let mut out = MirrorEvents {
        key_columns: key_columns.to_vec(),
        events: Vec::with_capacity(n),
        truncates,
        values: Vec::new(),
    };
    let reject = |reason: String, dead: &mut Vec<DeadLetter>, origin: u32| {
        dead.push(DeadLetter { origin, stage: "decode", plugin: None, reason });
    };
    if n == 0 {
        return out;
    }
    if key_columns.is_empty() {
        for &o in &batch.origins {
            reject(
                "mirror table without a key: the record has no Debezium key and `[table] key` is not set"
                    .into(),
                dead,
                o,
            );
        }
        let _ = batch.retain(&vec![false; n]);
        return out;
    }
    let side = |cols: &crate::change::Columns, name: &str| -> Result<Option<StringArray>, String> {
        cols.get(name).map(|c| key_strings(&c.array, types.get(name).copied())).transpose()
    };
    let mut after = Vec::new();
    let mut before = Vec::new();
    let mut failure = None;
    for name in key_columns {
        match (side(&batch.after, name), side(&batch.before, name)) {
            (Ok(a), Ok(b)) => {
                after.push(a);
                before.push(b);
            }
            (Err(e), _) | (_, Err(e)) => failure = Some(format!("key column `{name}`: {e}")),
        }
    }
    let mut keep = vec![true; n];
    #[allow(clippy::needless_range_loop)] // `i` indexes the ops, origins and key arrays alike
    for i in 0..n {
        let delete = batch.ops[i] == Op::Delete;
        let origin = batch.origins[i];
        if let Some(f) = &failure {
            reject(format!("mirror table: {f}"), dead, origin);
            keep[i] = false;
            continue;
        }
        let mut key = Vec::with_capacity(16);
        let mut missing = None;
        for (c, name) in key_columns.iter().enumerate() {
            let (first, second) = if delete { (&before[c], &after[c]) } else { (&after[c], &before[c]) };
            let v = [first, second].into_iter().flatten().find(|a| !a.is_null(i)).map(|a| a.value(i));
            match v {
                Some(v) => {
                    key.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    key.extend_from_slice(v.as_bytes());
                }
                None => {
                    missing = Some(name);
                    break;
                }
            }
        }
        match missing {
            Some(name) => {
                reject(format!("mirror table: the event has no value for key column `{name}`"), dead, origin);
                keep[i] = false;
            }
            None => out.events.push(KeyedEvent {
                origin,
                delete,
                key: key.into_boxed_slice(),
                lsn: batch.sources[i].lsn,
                row: out.events.len() as u32,
            }),
        }
    }
    if keep.iter().any(|k| !k) {
        let _ = batch.retain(&keep);
    }
    out.values = batch
        .after
        .0
        .iter()
        .filter(|c| held::can_hold(c.array.data_type()))
        .map(|c| (Arc::from(c.name.as_str()), c.array.clone()))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use arrow_array::Int64Array;

    use super::*;
    use crate::change::{Column, SourceInfo};

    #[test]
    fn keys_come_from_after_or_before() {
        let mut b = ChangeBatch {
            ops: vec![Op::Create, Op::Delete, Op::Update],
            sources: vec![SourceInfo { table: 0, lsn: None, txid: None, ts_ms: 0, snapshot: false }; 3],
            origins: vec![0, 1, 2],
            ..Default::default()
        };
        b.after.set(Column {
            name: "id".into(),
            ty: ColType::Int64,
            array: Arc::new(Int64Array::from(vec![Some(1), None, None])),
        });
        b.before.set(Column {
            name: "id".into(),
            ty: ColType::Int64,
            array: Arc::new(Int64Array::from(vec![None, Some(2), None])),
        });
        let mut dead = Vec::new();
        let types = HashMap::from([("id".to_string(), ColType::Int64)]);
        let ev = key_events(&mut b, vec![5], &["id".into()], &types, &mut dead);
        assert_eq!(ev.events.len(), 2);
        assert!(!ev.events[0].delete && ev.events[1].delete);
        let one =
            encode_keys(&[key_strings(&(Arc::new(Int64Array::from(vec![1])) as ArrayRef), None).unwrap()], 1);
        assert_eq!(one[0].as_ref(), Some(&ev.events[0].key));
        assert_eq!(dead.len(), 1);
        assert!(dead[0].reason.contains("key column `id`"), "{}", dead[0].reason);
        assert_eq!(b.origins, vec![0, 1]);
        assert_eq!(ev.truncates, vec![5]);
    }
}
