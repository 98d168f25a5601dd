//! One mirror table's pending changes: the key index, the rows of this commit (in memory until the
//! commit, so a key changed twice before a commit is written once), and the positions to delete.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::sink::writer::{FileSettings, RowOrder};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow_cast::cast;
use arrow_schema::SchemaRef;
use arrow_select::interleave::interleave;
use arrow_select::take::take_record_batch;
use iceberg::spec::{DataContentType, ManifestContentType, Struct};
use iceberg::table::Table;

use super::files::{self, FileDeletes};
use super::held::{self, Held, HeldValues, RowValues};
use super::index::{KeyIndex, Location};
use super::{KeyedEvent, encode_keys, key_strings};
use crate::error::SinkError;
use crate::sink::commit::{Committed, RowDelta};
use crate::sink::table;
use crate::sink::table_sink::{Landing, Launch, TableSink};

/// A committed data file the index points into.
struct FileMeta {
    path: Arc<str>,
    spec_id: i32,
    partition: Struct,
}

/// Rows of one accepted batch, waiting for the commit.
struct PendingBatch {
    rows: RecordBatch,
    /// Per row: its key while the row is live (the key's current row).
    keys: RowKeys,
}

/// The keys of a pending batch's rows, in one buffer: a commit's rows cost no allocation each (a
/// boxed key per row took 32 bytes of a few hundred, and a `malloc` and `free`).
struct RowKeys {
    /// The keys given to rows, end to end.
    bytes: Vec<u8>,
    /// Per row: where its key is in `bytes`; `None` while the row is not live.
    spans: Vec<Option<(u32, u32)>>,
}

impl RowKeys {
    /// Keys for `rows` rows, none live.
    fn new(rows: usize) -> Self {
        Self { bytes: Vec::new(), spans: vec![None; rows] }
    }

    /// Row `row` is `key`'s row.
    fn set(&mut self, row: usize, key: &[u8]) {
        let start = u32::try_from(self.bytes.len()).expect("a batch's keys take less than 4 GiB");
        self.bytes.extend_from_slice(key);
        self.spans[row] = Some((start, key.len() as u32));
    }

    /// Whether row `row` is its key's row.
    fn is_live(&self, row: usize) -> bool {
        self.spans[row].is_some()
    }

    /// Row `row` is no longer live; returns its key if it was.
    fn take(&mut self, row: usize) -> Option<&[u8]> {
        let (start, len) = self.spans[row].take()?;
        Some(&self.bytes[start as usize..(start + len) as usize])
    }
}

/// What a mirror commit will change.
pub struct MirrorSink {
    key_columns: Vec<String>,
    index: KeyIndex,
    files: Vec<FileMeta>,
    file_ids: HashMap<Arc<str>, u32>,
    /// Pending batches, numbered from `base` (the rows of a commit in flight first).
    batches: Vec<PendingBatch>,
    base: u32,
    /// Batches numbered below this are being written by the commit in flight.
    flight_end: u32,
    /// Per batch in flight: the rows it writes (live when it launched).
    flight_rows: Vec<BooleanArray>,
    /// Live rows waiting for the next commit (not counting those in flight).
    live_rows: usize,
    /// Arrow memory of the batches waiting for the next commit (not counting those in flight).
    pending_bytes: usize,
    /// Data file id → positions of rows no longer live.
    deletes: BTreeMap<u32, BTreeSet<u64>>,
    /// The snapshot the index reflects.
    snapshot: Option<i64>,
    /// The row the last delete removed, with the delete's LSN: a primary-key change (delete + create
    /// at one LSN) carries TOASTed values over from it.
    last_delete: Option<(i64, Location)>,
    /// The same for a deleted row that was pending at a commit (never written): its values.
    carried_row: Option<(i64, RecordBatch)>,
    /// The same for a deleted key the chain had left out: the large values held for it.
    carried_held: Option<(i64, RowValues)>,
    /// The LSN of the last event applied, when it is a delete: a commit that ends there keeps the
    /// deleted key's large values with the table, for the create of a primary-key change that the
    /// next commit (perhaps of a restarted host) takes.
    tail_delete: Option<i64>,
    /// Large values of keys the chain left out (restored from the snapshot's file on open).
    held: HeldValues,
    /// TOAST placeholders that found no value (landed as null), since the mirror opened.
    unresolved_toast: u64,
    /// The write order of rows in the schema it was made for.
    order: Option<(SchemaRef, Arc<RowOrder>)>,
}

fn shape(table: &Table, message: String) -> SinkError {
    SinkError::Shape { table: table.identifier().to_string(), message }
}

impl MirrorSink {
    /// Opens the mirror of `table` keyed by `key_columns`: rebuilds the index from the table's
    /// current snapshot (key columns of every live row, position deletes applied).
    pub async fn open(table: &Table, key_columns: Vec<String>) -> Result<Self, SinkError> {
        let started = std::time::Instant::now();
        let mut m = Self {
            key_columns,
            index: KeyIndex::default(),
            files: Vec::new(),
            file_ids: HashMap::new(),
            batches: Vec::new(),
            base: 0,
            flight_end: 0,
            flight_rows: Vec::new(),
            live_rows: 0,
            pending_bytes: 0,
            deletes: BTreeMap::new(),
            snapshot: table.metadata().current_snapshot_id(),
            last_delete: None,
            carried_row: None,
            carried_held: None,
            tail_delete: None,
            held: HeldValues::default(),
            unresolved_toast: 0,
            order: None,
        };
        if let Some(path) = crate::sink::commit::carried_value(table, held::HELD_VALUES)
            && !path.is_empty()
        {
            match HeldValues::read(table, path).await {
                Ok(mut h) => {
                    m.carried_held = h.take_carry();
                    m.held = h;
                }
                // The file is gone (e.g. another engine's orphan cleanup): updates that bring those
                // keys back carry nulls for their unchanged large values, and are counted.
                Err(e) => {
                    tracing::warn!(table = %table.identifier(), error = %e, "held TOAST values are lost")
                }
            }
        }
        let Some(current) = table.metadata().current_snapshot() else { return Ok(m) };
        let ctx = |what: &str, e: iceberg::Error| SinkError::Catalog {
            context: format!("{what} of {}", table.identifier()),
            source: Box::new(e),
        };
        let list = table
            .manifest_list_reader(current)
            .load()
            .await
            .map_err(|e| ctx("reading the manifest list", e))?;
        let mut data = Vec::new();
        let mut delete_files = Vec::new();
        let manifests: Vec<_> = list.consume_entries().into_iter().collect();
        for mf in manifests {
            let manifest =
                mf.load_manifest(table.file_io()).await.map_err(|e| ctx("reading a manifest", e))?;
            for e in manifest.entries().iter().filter(|e| e.is_alive()) {
                match (mf.content, e.data_file().content_type()) {
                    (ManifestContentType::Data, _) => data.push((
                        e.file_path().to_string(),
                        mf.partition_spec_id,
                        e.data_file().partition().clone(),
                    )),
                    (_, DataContentType::PositionDeletes) => delete_files.push(e.file_path().to_string()),
                    (_, other) => {
                        return Err(shape(
                            table,
                            format!("a mirror table cannot hold {other:?} files ({})", e.file_path()),
                        ));
                    }
                }
            }
        }
        let mut deleted: HashMap<String, BTreeSet<u64>> = HashMap::new();
        for path in &delete_files {
            for (p, pos) in files::read_deletes(table, path).await? {
                deleted.entry(p).or_default().insert(pos);
            }
        }
        let types = table::column_types(table);
        let key_columns = m.key_columns.clone();
        let names: Vec<&str> = key_columns.iter().map(String::as_str).collect();
        let mut duplicates = 0u64;
        for (path, spec_id, partition) in data {
            let id = m.file_id(Arc::from(path.as_str()), spec_id, partition);
            let batch = files::read_columns(table, &path, &names).await?;
            if batch.num_rows() as u64 > KeyIndex::MAX_FILE_ROWS {
                return Err(shape(
                    table,
                    format!(
                        "data file {path} has {} rows; a mirror table's files hold at most {} (rewrite it into smaller files)",
                        batch.num_rows(),
                        KeyIndex::MAX_FILE_ROWS
                    ),
                ));
            }
            let mut columns = Vec::new();
            for n in &names {
                let c = batch
                    .column_by_name(n)
                    .ok_or_else(|| shape(table, format!("data file {path} has no key column `{n}`")))?;
                columns.push(key_strings(c, types.get(*n).copied()).map_err(|e| shape(table, e))?);
            }
            let gone = deleted.get(&path);
            for (pos, key) in encode_keys(&columns, batch.num_rows()).into_iter().enumerate() {
                let pos = pos as u64;
                if gone.is_some_and(|g| g.contains(&pos)) {
                    continue;
                }
                let Some(key) = key else { continue };
                if let Some(Location::Committed { file, pos }) =
                    m.index.insert(&key, Location::Committed { file: id, pos })
                {
                    // Two live rows with one key (not written by a mirror host): the later one wins.
                    duplicates += 1;
                    m.deletes.entry(file).or_default().insert(pos);
                }
            }
        }
        if duplicates > 0 {
            tracing::warn!(table = %table.identifier(), duplicates, "rows sharing a key: the next commit deletes all but one");
        }
        tracing::info!(
            table = %table.identifier(),
            keys = m.index.len(),
            files = m.files.len(),
            delete_files = delete_files.len(),
            seconds = started.elapsed().as_secs_f64(),
            "mirror key index rebuilt"
        );
        Ok(m)
    }

    /// The key columns.
    pub fn key_columns(&self) -> &[String] {
        &self.key_columns
    }

    /// Live rows waiting for the commit.
    pub fn pending_rows(&self) -> usize {
        self.live_rows
    }

    /// Arrow memory of the rows waiting for the commit (a mirror holds a commit's rows until it
    /// launches).
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Keys in the table (after the pending changes).
    pub fn keys(&self) -> usize {
        self.index.len()
    }

    /// Left-out keys whose large values the mirror keeps.
    pub fn held_keys(&self) -> usize {
        self.held.len()
    }

    /// TOAST placeholders that found no value to take (landed as null) since the mirror opened.
    pub fn unresolved_toast(&self) -> u64 {
        self.unresolved_toast
    }

    fn file_id(&mut self, path: Arc<str>, spec_id: i32, partition: Struct) -> u32 {
        if let Some(&id) = self.file_ids.get(&path) {
            return id;
        }
        let id = self.files.len() as u32;
        self.files.push(FileMeta { path: path.clone(), spec_id, partition });
        self.file_ids.insert(path, id);
        id
    }

    fn batch(&self, number: u32) -> &PendingBatch {
        &self.batches[(number - self.base) as usize]
    }

    fn batch_mut(&mut self, number: u32) -> &mut PendingBatch {
        &mut self.batches[(number - self.base) as usize]
    }

    /// The row at `loc` is no longer the key's row. (A row in flight is written all the same: the
    /// next commit deletes its position.)
    fn kill(&mut self, loc: Location) {
        match loc {
            Location::Pending { batch, row } => {
                let in_flight = batch < self.flight_end;
                if self.batch_mut(batch).keys.take(row as usize).is_some() && !in_flight {
                    self.live_rows -= 1;
                }
            }
            Location::Committed { file, pos } => {
                self.deletes.entry(file).or_default().insert(pos);
            }
        }
    }

    fn truncate(&mut self) {
        let locs: Vec<Location> = self.index.iter().map(|(_, l)| l).collect();
        for l in locs {
            self.kill(l);
        }
        self.index.clear();
        self.held.clear();
    }

    /// The write order of rows in `schema`.
    fn order(&mut self, table: &Table, schema: &SchemaRef) -> Result<Arc<RowOrder>, SinkError> {
        if let Some((s, order)) = &self.order
            && s == schema
        {
            return Ok(order.clone());
        }
        let order = Arc::new(RowOrder::new(table, schema).map_err(files::write_err(table))?);
        self.order = Some((schema.clone(), order.clone()));
        Ok(order)
    }

    /// Applies one batch in source order. `events` are every keyed event of the batch (before the
    /// chain); `rows` are the rows the chain kept (in the table's schema, unsorted), the event of
    /// row `i` being `origins[i]`; `toast` names the columns that carried the TOAST placeholder;
    /// `values` are the events' text and binary source values (row [`KeyedEvent::row`]).
    #[allow(clippy::too_many_arguments)] // one batch's parts, as the pipeline hands them over
    pub async fn apply(
        &mut self,
        table: &Table,
        events: &[KeyedEvent],
        truncates: &[u32],
        origins: &[u32],
        rows: Option<RecordBatch>,
        toast: &[(u32, Arc<str>)],
        values: &[(Arc<str>, ArrayRef)],
    ) -> Result<(), SinkError> {
        // Rows are kept in write order (their origins with them): the commit gathers each
        // partition's rows in blocks.
        let (rows, origins) = match rows {
            Some(r) => {
                let order = self.order(table, &r.schema())?;
                match order.sort_indices(&r).map_err(files::write_err(table))? {
                    Some(indices) => (
                        Some(take_record_batch(&r, &indices).map_err(|e| shape(table, e.to_string()))?),
                        indices.values().iter().map(|&i| origins[i as usize]).collect(),
                    ),
                    None => (Some(r), origins.to_vec()),
                }
            }
            None => (None, Vec::new()),
        };
        let b = self.base + self.batches.len() as u32;
        // Each event's row (by origin), if the chain kept one.
        let mut row_of = vec![u32::MAX; origins.iter().max().map_or(0, |&o| o as usize + 1)];
        for (i, &o) in origins.iter().enumerate() {
            row_of[o as usize] = i as u32;
        }
        let n = rows.as_ref().map_or(0, RecordBatch::num_rows);
        if let Some(r) = rows {
            self.pending_bytes += r.get_array_memory_size();
            self.batches.push(PendingBatch { rows: r, keys: RowKeys::new(n) });
        }
        let mut toast_of: HashMap<u32, Vec<&str>> = HashMap::new();
        for (o, c) in toast {
            toast_of.entry(*o).or_default().push(c);
        }
        // Values the TOASTed cells take: (row, column) → one-value array.
        let mut patches: HashMap<(u32, String), ArrayRef> = HashMap::new();
        let mut file_cache: HashMap<u32, RecordBatch> = HashMap::new();
        let mut truncates = truncates.iter().copied().peekable();
        for ev in events {
            while truncates.peek().is_some_and(|&t| t < ev.origin) {
                truncates.next();
                self.truncate();
            }
            self.tail_delete = ev.lsn.filter(|_| ev.delete);
            // A new key created at the LSN of a delete is a primary-key change: its TOASTed values
            // are the deleted key's (its row's, or the values held for it).
            let carried = match (self.last_delete, ev.lsn) {
                (Some((lsn, loc)), Some(l)) if lsn == l => Some(loc),
                _ => None,
            };
            let carried_held = match (&self.carried_held, ev.lsn) {
                (Some((lsn, v)), Some(l)) if *lsn == l => v.clone(),
                _ => Vec::new(),
            };
            let row = match row_of.get(ev.origin as usize) {
                Some(&r) if !ev.delete && r != u32::MAX => Some(r),
                _ => None,
            };
            let Some(row) = row else {
                // A delete, or a row the chain dropped or rejected: the key has no row. A left-out
                // row keeps its large values, for an update that brings the key back.
                if ev.delete {
                    if let (Some(gone), Some(lsn)) = (self.held.take(&ev.key), ev.lsn) {
                        self.carried_held = Some((lsn, gone));
                    }
                } else {
                    let cols = toast_of.get(&ev.origin).map_or(&[][..], Vec::as_slice);
                    let from = self.index.get(&ev.key).or(carried);
                    let kept = self
                        .left_out_values(
                            table,
                            ev,
                            cols,
                            values,
                            (from, &carried_held),
                            b,
                            &patches,
                            &mut file_cache,
                        )
                        .await?;
                    self.held.set(&ev.key, kept);
                }
                if let Some(old) = self.index.remove(&ev.key) {
                    self.kill(old);
                    if let (true, Some(lsn)) = (ev.delete, ev.lsn) {
                        self.last_delete = Some((lsn, old));
                    }
                }
                continue;
            };
            // Where the key's values were (only TOAST placeholders need it).
            let old = if toast_of.is_empty() { None } else { self.index.get(&ev.key).or(carried) };
            if let (Some(cols), None, Some((lsn, r)), Some(l)) =
                (toast_of.get(&ev.origin), old, &self.carried_row, ev.lsn)
                && *lsn == l
            {
                for col in cols {
                    if let Some(c) = r.column_by_name(col) {
                        patches.insert((row, col.to_string()), c.clone());
                    }
                }
            }
            if let (Some(cols), Some(old)) = (toast_of.get(&ev.origin), old) {
                for col in cols {
                    let Some(v) = self.held_value(table, old, col, b, &patches, &mut file_cache).await?
                    else {
                        continue;
                    };
                    patches.insert((row, col.to_string()), v);
                }
            }
            if let Some(cols) = toast_of.get(&ev.origin) {
                // A key the chain left out comes back: its large values are the ones held.
                for col in cols {
                    if patches.contains_key(&(row, col.to_string())) {
                        continue;
                    }
                    let from_held = self.held.get(&ev.key, col).or_else(|| find(&carried_held, col));
                    match from_held {
                        Some(v) => {
                            patches.insert((row, col.to_string()), v.to_array());
                        }
                        None => self.unresolved_toast += 1,
                    }
                }
            }
            self.held.remove(&ev.key);
            if let Some(old) = self.index.insert(&ev.key, Location::Pending { batch: b, row }) {
                self.kill(old);
            }
            self.batch_mut(b).keys.set(row as usize, &ev.key);
            self.live_rows += 1;
        }
        for _ in truncates {
            self.truncate();
            self.tail_delete = None;
        }
        if !patches.is_empty() {
            let pending = self.batch_mut(b);
            pending.rows = patch(&pending.rows, &patches)
                .map_err(|e| shape(table, format!("keeping TOASTed values: {e}")))?;
        }
        // A batch whose rows all died stays until the commit: a later event may still read its
        // values (TOAST carried over a primary-key change).
        Ok(())
    }

    /// The large text and binary values of a row the chain left out, as the source has them: the
    /// event's own values, its TOAST placeholders (`toasted`) taking the values the key had (`from`:
    /// its row, else the values held for it or for the key it was created from).
    #[allow(clippy::too_many_arguments)]
    async fn left_out_values(
        &self,
        table: &Table,
        ev: &KeyedEvent,
        toasted: &[&str],
        values: &[(Arc<str>, ArrayRef)],
        from: (Option<Location>, &[(Arc<str>, Held)]),
        current: u32,
        patches: &HashMap<(u32, String), ArrayRef>,
        cache: &mut HashMap<u32, RecordBatch>,
    ) -> Result<Vec<(Arc<str>, Held)>, SinkError> {
        let mut out = Vec::new();
        let row = ev.row as usize;
        for (col, array) in values.iter().filter(|(_, a)| row < a.len()) {
            let v = match Held::from_array(array.as_ref(), row) {
                Some(v) => Some(v),
                None if toasted.contains(&&**col) => match from.0 {
                    Some(loc) => self
                        .held_value(table, loc, col, current, patches, cache)
                        .await?
                        .and_then(|a| Held::from_array(a.as_ref(), 0)),
                    None => self.held.get(&ev.key, col).or_else(|| find(from.1, col)).cloned(),
                },
                None => None,
            };
            if let Some(v) = v {
                out.push((col.clone(), v));
            }
        }
        Ok(held::toastable(out))
    }

    /// The value column `col` has in the key's current row at `loc` (`None`: the table has no such
    /// column there).
    async fn held_value(
        &self,
        table: &Table,
        loc: Location,
        col: &str,
        current: u32,
        patches: &HashMap<(u32, String), ArrayRef>,
        cache: &mut HashMap<u32, RecordBatch>,
    ) -> Result<Option<ArrayRef>, SinkError> {
        Ok(match loc {
            Location::Pending { batch, row } => {
                if batch == current
                    && let Some(v) = patches.get(&(row, col.to_string()))
                {
                    return Ok(Some(v.clone()));
                }
                self.batch(batch).rows.column_by_name(col).map(|c| c.slice(row as usize, 1))
            }
            Location::Committed { file, pos } => {
                let batch = match cache.entry(file) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let all: Vec<&str> = table
                            .metadata()
                            .current_schema()
                            .as_struct()
                            .fields()
                            .iter()
                            .map(|f| f.name.as_str())
                            .collect();
                        e.insert(files::read_columns(table, &self.files[file as usize].path, &all).await?)
                    }
                };
                batch.column_by_name(col).map(|c| c.slice(pos as usize, 1))
            }
        })
    }

    /// Whether the next commit changes the table (or the values held for left-out keys).
    pub fn has_changes(&self) -> bool {
        self.live_rows > 0 || !self.deletes.is_empty() || self.held.is_dirty()
    }

    /// Whether a commit is in flight.
    pub fn in_flight(&self) -> bool {
        self.flight_end > self.base
    }

    /// Starts the commit of the pending rows and deletes as one row delta with the positions `sink`
    /// tracks: returns the work that writes its files and commits, to run while this mirror takes
    /// more batches ([`Self::land`] takes its outcome). Without changes, commits the positions
    /// alone, here. The previous flight must have landed.
    pub async fn launch(
        &mut self,
        sink: &mut TableSink,
        chain: &str,
        settings: &FileSettings,
    ) -> Result<Launched, SinkError> {
        debug_assert!(!self.in_flight(), "one mirror commit in flight at a time");
        self.carry_deleted_row();
        self.hold_tail_delete(sink.table()).await?;
        self.pending_bytes = 0;
        if !self.has_changes() {
            self.base += self.batches.len() as u32;
            self.flight_end = self.base;
            self.batches.clear();
            self.last_delete = self.last_delete.filter(|(_, l)| matches!(l, Location::Committed { .. }));
            return Ok(Launched::Landed(sink.commit(chain, true).await?.map(Box::new)));
        }
        let flight_rows: Vec<BooleanArray> = self
            .batches
            .iter()
            .map(|p| (0..p.rows.num_rows()).map(|r| Some(p.keys.is_live(r))).collect())
            .collect();
        let rows: Vec<RecordBatch> = self.batches.iter().map(|p| p.rows.clone()).collect();
        let mut deletes: BTreeMap<Arc<str>, FileDeletes> = BTreeMap::new();
        for (file, positions) in std::mem::take(&mut self.deletes) {
            let f = &self.files[file as usize];
            deletes.insert(
                f.path.clone(),
                FileDeletes { spec_id: f.spec_id, partition: f.partition.clone(), positions },
            );
        }
        let held = self.held.is_dirty().then(|| self.held.take_snapshot());
        let flight = MirrorFlight {
            launch: sink.launch(chain)?,
            held,
            settings: settings.clone(),
            rows: Arc::new(rows),
            keep: flight_rows.clone(),
            deletes,
            starting_snapshot: self.snapshot,
            data_rows: self.live_rows as u64,
        };
        self.flight_end = self.base + self.batches.len() as u32;
        self.flight_rows = flight_rows;
        self.live_rows = 0;
        Ok(Launched::Flight(Box::new(flight)))
    }

    /// Takes a landed flight: the index points at the rows' file positions, and rows that stopped
    /// being their key's row while in flight become position deletes of the next commit.
    pub fn land(&mut self, table: &Table, written: Written) -> Result<(), SinkError> {
        let spec_id = table.metadata().default_partition_spec_id();
        let ids: Vec<u32> =
            written.files.into_iter().map(|(p, part)| self.file_id(p, spec_id, part)).collect();
        let mut placed = written.placed.into_iter();
        let flight_rows = std::mem::take(&mut self.flight_rows);
        for (i, mask) in flight_rows.iter().enumerate() {
            let number = self.base + i as u32;
            for row in (0..mask.len()).filter(|&r| mask.value(r)) {
                let (file, pos) = placed
                    .next()
                    .ok_or_else(|| shape(table, "a row in flight was not written".to_string()))?;
                let loc = Location::Committed { file: ids[file as usize], pos };
                match self.batches[i].keys.take(row) {
                    Some(key) => {
                        self.index.insert(key, loc);
                    }
                    None => {
                        self.deletes.entry(ids[file as usize]).or_default().insert(pos);
                    }
                }
                if let Some((lsn, Location::Pending { batch, row: r })) = self.last_delete
                    && batch == number
                    && r as usize == row
                {
                    self.last_delete = Some((lsn, loc));
                }
            }
        }
        // A deleted row in flight that was not written lives on in `carried_row`.
        if let Some((_, Location::Pending { batch, .. })) = self.last_delete
            && batch < self.flight_end
        {
            self.last_delete = None;
        }
        self.batches.drain(..(self.flight_end - self.base) as usize);
        self.base = self.flight_end;
        self.snapshot = table.metadata().current_snapshot_id();
        Ok(())
    }

    /// When the commit ends with a delete, holds the deleted key's large values (under the delete's
    /// LSN) in the commit's file of held values: the create of a primary-key change at that LSN
    /// takes them even if the host restarts before the next commit.
    async fn hold_tail_delete(&mut self, table: &Table) -> Result<(), SinkError> {
        let Some(lsn) = self.tail_delete.take() else { return Ok(()) };
        let values = match (&self.last_delete, &self.carried_held) {
            (Some((l, loc)), _) if *l == lsn => {
                let loc = *loc;
                let mut cache = HashMap::new();
                let none = HashMap::new();
                let mut out = Vec::new();
                for (name, ty) in table::column_types(table) {
                    if !held::can_hold(&ty.arrow_type()) {
                        continue;
                    }
                    let v = self.held_value(table, loc, &name, u32::MAX, &none, &mut cache).await?;
                    if let Some(v) = v.and_then(|a| Held::from_array(a.as_ref(), 0)) {
                        out.push((Arc::from(name.as_str()), v));
                    }
                }
                held::toastable(out)
            }
            (_, Some((l, v))) if *l == lsn => v.clone(),
            _ => return Ok(()),
        };
        if !values.is_empty() {
            self.held.set_carry(lsn, values);
        }
        Ok(())
    }

    /// Keeps the values of a deleted pending row a primary-key change may still need (the commit
    /// drops pending rows that are not live).
    fn carry_deleted_row(&mut self) {
        if let Some((lsn, Location::Pending { batch, row })) = self.last_delete {
            let r = self.batch(batch).rows.slice(row as usize, 1);
            self.carried_row = Some((lsn, r));
        }
    }

    /// The snapshot the index reflects, after someone else changed the table without moving rows
    /// (e.g. snapshot expiry).
    pub fn rebase(&mut self, table: &Table) {
        self.snapshot = table.metadata().current_snapshot_id();
    }
}

/// What [`MirrorSink::launch`] started.
pub enum Launched {
    /// Nothing changed: the positions were committed in place (if they moved).
    Landed(Option<Box<Committed>>),
    /// Files to write and a commit to make.
    Flight(Box<MirrorFlight>),
}

/// A mirror commit's work, run apart from the mirror: write the rows in flight and the position
/// deletes, then commit both as one row delta.
pub struct MirrorFlight {
    launch: Launch,
    /// The held values to write, when they changed (`Some(None)`: none held any more).
    held: Option<Option<RecordBatch>>,
    settings: FileSettings,
    rows: Arc<Vec<RecordBatch>>,
    keep: Vec<BooleanArray>,
    deletes: BTreeMap<Arc<str>, FileDeletes>,
    starting_snapshot: Option<i64>,
    /// Rows the commit adds.
    pub data_rows: u64,
}

/// The files a landed flight wrote: per data file its path and partition, and per row in flight
/// (in batch and row order) the file (index into `files`) and position it landed at.
pub struct Written {
    files: Vec<(Arc<str>, Struct)>,
    placed: Vec<(u32, u64)>,
    /// Data files written.
    pub data_files: u64,
}

impl MirrorFlight {
    /// Writes the files and commits; the landing is for [`TableSink::land`], the files for
    /// [`MirrorSink::land`].
    pub async fn run(mut self) -> Result<(Landing, Written), SinkError> {
        let table = self.launch.table().clone();
        match self.held.take() {
            Some(Some(batch)) => {
                let path = held::write(&table, batch).await?;
                self.launch.set_property(held::HELD_VALUES, path);
            }
            Some(None) => self.launch.set_property(held::HELD_VALUES, String::new()),
            None => {}
        }
        let (data, deletes) = tokio::join!(
            files::write_data(&table, &self.settings, self.rows, &self.keep),
            files::write_deletes(&table, &self.settings, &self.deletes)
        );
        let (data, placed) = data?;
        let deletes = deletes?;
        let written = Written {
            files: data.iter().map(|f| (Arc::from(f.file_path()), f.partition().clone())).collect(),
            placed,
            data_files: data.len() as u64,
        };
        let op = RowDelta {
            data,
            deletes,
            referenced: self.deletes.keys().map(|p| p.to_string()).collect(),
            starting_snapshot: self.starting_snapshot,
        };
        Ok((self.launch.commit(op).await, written))
    }
}

/// The value `values` hold for column `col`.
fn find<'a>(values: &'a [(Arc<str>, Held)], col: &str) -> Option<&'a Held> {
    values.iter().find(|(c, _)| &**c == col).map(|(_, v)| v)
}

/// `rows` with the cells of `patches` ((row, column) → one value) replaced.
fn patch(rows: &RecordBatch, patches: &HashMap<(u32, String), ArrayRef>) -> Result<RecordBatch, String> {
    let schema = rows.schema();
    let mut columns = rows.columns().to_vec();
    for (c, field) in schema.fields().iter().enumerate() {
        let mut values: Vec<ArrayRef> = Vec::new();
        let mut indices: Vec<(usize, usize)> = (0..rows.num_rows()).map(|i| (0, i)).collect();
        for ((row, col), v) in patches {
            if col != field.name() {
                continue;
            }
            let v = if v.data_type() == field.data_type() {
                v.clone()
            } else if v.null_count() == v.len() {
                new_null_array(field.data_type(), 1)
            } else {
                cast(v, field.data_type()).map_err(|e| e.to_string())?
            };
            values.push(v);
            indices[*row as usize] = (values.len(), 0);
        }
        if values.is_empty() {
            continue;
        }
        let mut sources: Vec<&dyn Array> = vec![columns[c].as_ref()];
        sources.extend(values.iter().map(|v| v.as_ref()));
        columns[c] = interleave(&sources, &indices).map_err(|e| e.to_string())?;
    }
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::RowKeys;

    #[test]
    fn row_keys_are_live_until_taken() {
        let mut keys = RowKeys::new(3);
        keys.set(2, b"k2");
        keys.set(0, b"");
        keys.set(1, b"key one");
        assert!((0..3).all(|r| keys.is_live(r)));
        assert_eq!(keys.take(1), Some(&b"key one"[..]));
        assert_eq!(keys.take(1), None);
        assert!(!keys.is_live(1));
        assert_eq!(keys.take(2), Some(&b"k2"[..]));
        assert_eq!(keys.take(0), Some(&b""[..]), "an empty key is a key");
    }
}
