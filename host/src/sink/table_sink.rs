//! One Iceberg table's state machine: pending data files, the source positions they cover, and the
//! fenced commit that makes both durable together.
//!
//! ```text
//!   Idle --write/track--> Writing --commit--> (commit) --> Idle
//!                                   \--fenced/unknown--> Failed (every later call errors)
//! ```
//!
//! A commit can also be launched ([`TableSink::launch`]: it takes the pending positions and runs
//! elsewhere while the sink takes more records) and landed later ([`TableSink::land`]); the floor
//! rises only when it lands.
//!
//! A sink owns its positions: it *holds* everything below its floor (what the table held when it
//! opened, raised by each of its commits), skips records below it, and fences each commit against the
//! table's positions as the compare-and-swap base has them.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use iceberg::table::Table;

use super::catalog::Catalog;
use super::commit::{self, Append, CommitMeta, Committed, Fence, Positions, committed_positions};
use super::table;
use super::writer::{FileSettings, TableWriter};
use crate::change::RawBatch;
use crate::error::SinkError;
use crate::schema::ColType;

/// What a sink is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing pending.
    Idle,
    /// Files open or records tracked since the last commit.
    Writing,
    /// A commit was fenced or its outcome is unknown: this sink takes nothing more.
    Failed(String),
}

/// Counters of one sink since it opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinkStats {
    pub rows_committed: u64,
    pub commits: u64,
    pub data_files: u64,
}

/// One table being written by one pipeline.
pub struct TableSink {
    catalog: Arc<Catalog>,
    table: Table,
    pipeline_id: String,
    files: FileSettings,
    writer: Option<TableWriter>,
    /// Everything below these positions is in the table.
    floor: Positions,
    /// Per stream: (first, next) offsets of the records considered since the last commit.
    pending: BTreeMap<String, (i64, i64)>,
    state: State,
    stats: SinkStats,
}

impl TableSink {
    /// A sink for `table`, holding what the table holds for `pipeline_id`.
    pub fn new(catalog: Arc<Catalog>, table: Table, pipeline_id: &str, files: FileSettings) -> Self {
        let floor = committed_positions(&table, pipeline_id);
        Self {
            catalog,
            table,
            pipeline_id: pipeline_id.to_string(),
            files,
            writer: None,
            floor,
            pending: BTreeMap::new(),
            state: State::Idle,
            stats: SinkStats::default(),
        }
    }

    /// The table as last committed or loaded.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The table's identifier, for messages.
    pub fn name(&self) -> String {
        self.table.identifier().to_string()
    }

    /// Positions below which the table holds every record.
    pub fn floor(&self) -> &Positions {
        &self.floor
    }

    /// Raises the floor (e.g. the main table's commit implies the dead-letter table holds as much).
    pub fn raise_floor(&mut self, positions: &Positions) {
        for (s, &p) in positions {
            let f = self.floor.entry(s.clone()).or_insert(p);
            *f = (*f).max(p);
            if let Some(range) = self.pending.get_mut(s) {
                range.0 = range.0.max(p);
                if range.0 >= range.1 {
                    self.pending.remove(s);
                }
            }
        }
    }

    /// Whether the table already holds record `(stream, offset)`.
    pub fn holds(&self, stream: &str, offset: i64) -> bool {
        self.floor.get(stream).is_some_and(|&f| offset < f)
    }

    /// Per record of `raw`: whether this sink takes it (the table does not hold it yet).
    pub fn takes(&self, raw: &RawBatch) -> Vec<bool> {
        let floors: Vec<Option<i64>> = raw.streams.iter().map(|s| self.floor.get(&**s).copied()).collect();
        raw.stream
            .iter()
            .zip(&raw.offsets)
            .map(|(&s, &o)| floors[s as usize].is_none_or(|f| o >= f))
            .collect()
    }

    /// Rows written since the last commit.
    pub fn pending_rows(&self) -> usize {
        self.writer.as_ref().map_or(0, TableWriter::rows)
    }

    /// Whether anything (rows or positions) waits for a commit.
    pub fn is_pending(&self) -> bool {
        self.state == State::Writing
    }

    /// Counters since the sink opened.
    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    fn check(&self) -> Result<(), SinkError> {
        match &self.state {
            State::Failed(reason) => Err(SinkError::Shape {
                table: self.name(),
                message: format!("the sink stopped after an earlier failure: {reason}"),
            }),
            _ => Ok(()),
        }
    }

    /// The Arrow schema rows must have (opens the data files of the next commit).
    pub async fn arrow_schema(&mut self) -> Result<SchemaRef, SinkError> {
        self.check()?;
        if self.writer.is_none() {
            self.writer = Some(TableWriter::new(&self.table, self.files.clone()).await?);
        }
        Ok(self.writer.as_ref().expect("writer").arrow_schema().clone())
    }

    /// Writes rows (in [`Self::arrow_schema`]) into the pending data files.
    pub async fn write(&mut self, rows: RecordBatch) -> Result<(), SinkError> {
        self.arrow_schema().await?;
        self.state = State::Writing;
        self.writer.as_mut().expect("writer").write(rows).await
    }

    /// Records that the records of `raw` this sink takes are handled (written, or left out on
    /// purpose): the next commit covers their positions.
    pub fn track(&mut self, raw: &RawBatch, takes: &[bool]) {
        let mut ranges: Vec<Option<(i64, i64)>> = vec![None; raw.streams.len()];
        for ((&stream, &offset), &take) in raw.stream.iter().zip(&raw.offsets).zip(takes) {
            if !take {
                continue;
            }
            let r = ranges[stream as usize].get_or_insert((offset, offset + 1));
            r.0 = r.0.min(offset);
            r.1 = r.1.max(offset + 1);
        }
        for (name, range) in raw.streams.iter().zip(ranges) {
            let Some((first, next)) = range else { continue };
            let e = self.pending.entry(name.to_string()).or_insert((first, next));
            e.0 = e.0.min(first);
            e.1 = e.1.max(next);
            self.state = State::Writing;
        }
    }

    /// Adds columns to the table (committing pending files first, which have the old schema).
    pub async fn add_columns(
        &mut self,
        columns: &[(String, ColType)],
        chain: &str,
    ) -> Result<Option<Committed>, SinkError> {
        let committed = self.commit(chain, true).await?;
        self.table = table::add_columns(&self.catalog, self.table.clone(), columns).await?;
        Ok(committed)
    }

    /// Widens columns of the table (committing pending files first, which have the old schema).
    pub async fn widen_columns(
        &mut self,
        columns: &[(String, ColType)],
        chain: &str,
    ) -> Result<Option<Committed>, SinkError> {
        let committed = self.commit(chain, true).await?;
        for (name, ty) in columns {
            let change = super::schema_change::SchemaChange::WidenColumn { name: name.clone(), ty: *ty };
            self.table = super::schema_change::apply(&self.catalog, self.table.clone(), &change).await?;
        }
        Ok(committed)
    }

    /// The table was changed by someone else (maintenance): take the catalog's current state.
    pub async fn reload(&mut self) -> Result<(), SinkError> {
        self.table = self.catalog.load(self.table.identifier()).await?;
        Ok(())
    }

    /// Commits pending files with the positions they cover. With `positions_only`, a snapshot is
    /// made even without files when positions moved (so a restart resumes after them); without, only
    /// files make a snapshot (pending positions then wait for the next commit).
    pub async fn commit(
        &mut self,
        chain: &str,
        positions_only: bool,
    ) -> Result<Option<Committed>, SinkError> {
        self.check()?;
        let files = match self.writer.take() {
            Some(w) => {
                let rows = w.rows() as u64;
                (rows, w.close().await?)
            }
            None => (0, Vec::new()),
        };
        let (rows, files) = files;
        if files.is_empty() && (self.pending.is_empty() || !positions_only) {
            if self.pending.is_empty() {
                self.state = State::Idle;
            }
            return Ok(None);
        }
        let n = files.len() as u64;
        self.commit_op(chain, Append { files }, rows, n).await
    }

    /// Hands the pending data files (still being written) and positions to an append commit that
    /// runs elsewhere ([`AppendFlight::run`]) while this sink opens new files for the next records;
    /// [`Self::land`] takes its outcome. One commit is in flight at a time.
    /// `None`: nothing to commit.
    pub fn launch_append(&mut self, chain: &str) -> Result<Option<AppendFlight>, SinkError> {
        self.check()?;
        if self.pending.is_empty() && self.pending_rows() == 0 {
            self.state = State::Idle;
            return Ok(None);
        }
        let writer = self.writer.take();
        let rows = writer.as_ref().map_or(0, |w| w.rows() as u64);
        Ok(Some(AppendFlight { launch: self.launch(chain)?, writer, rows }))
    }

    /// Commits `op` (whose files are already written) with the pending positions, fenced; counts
    /// `rows` and `data_files`. A failure deletes the op's files (unless the outcome is unknown) and
    /// stops the sink.
    pub async fn commit_op<O: FilesOp>(
        &mut self,
        chain: &str,
        op: O,
        rows: u64,
        data_files: u64,
    ) -> Result<Option<Committed>, SinkError> {
        let launch = self.launch(chain)?;
        let landing = launch.commit(op).await;
        self.land(landing, rows, data_files).map(Some)
    }

    /// Hands the pending positions to a commit that runs elsewhere (while this sink takes more
    /// records); [`Self::land`] takes its outcome. One commit is in flight at a time.
    pub fn launch(&mut self, chain: &str) -> Result<Launch, SinkError> {
        self.check()?;
        let fence = Fence {
            pipeline_id: self.pipeline_id.clone(),
            starts: self.pending.iter().map(|(s, (first, _))| (s.clone(), *first)).collect(),
            positions: self.pending.iter().map(|(s, (_, next))| (s.clone(), *next)).collect(),
        };
        self.pending.clear();
        self.state = State::Idle;
        Ok(Launch {
            catalog: self.catalog.clone(),
            base: self.table.clone(),
            meta: CommitMeta {
                pipeline_id: self.pipeline_id.clone(),
                chain: chain.to_string(),
                properties: Default::default(),
                fence: Some(fence),
            },
        })
    }

    /// Takes the outcome of a launched commit that holds `rows` rows in `data_files` files: the
    /// table and floor move on, or the sink stops.
    pub fn land(&mut self, landing: Landing, rows: u64, data_files: u64) -> Result<Committed, SinkError> {
        match landing.result {
            Ok(c) => {
                self.table = c.table.clone();
                self.raise_floor(&landing.positions);
                self.stats.rows_committed += rows;
                self.stats.commits += 1;
                self.stats.data_files += data_files;
                Ok(c)
            }
            Err(e) => {
                // Every commit failure stops the run: the table's positions say where to resume.
                self.state = State::Failed(e.to_string());
                Err(e)
            }
        }
    }
}

/// A commit launched by [`TableSink::launch`]: the table it builds on and its fenced metadata.
pub struct Launch {
    catalog: Arc<Catalog>,
    base: Table,
    meta: CommitMeta,
}

impl Launch {
    /// The table the commit builds on.
    pub fn table(&self) -> &Table {
        &self.base
    }

    /// Adds a summary property to the snapshot.
    pub fn set_property(&mut self, key: &str, value: String) {
        self.meta.properties.insert(key.to_string(), value);
    }

    /// Commits `op` (whose files are written). A failure that certainly did not land deletes the
    /// op's files.
    pub async fn commit<O: FilesOp>(self, op: O) -> Landing {
        let result = commit::commit(&self.catalog, self.base.clone(), &op, &self.meta).await;
        if let Err(e) = &result
            && !matches!(e, SinkError::CommitUnknown { .. })
        {
            for f in op.written_files() {
                let _ = self.base.file_io().delete(f.file_path()).await;
            }
        }
        let positions = self.meta.fence.map(|f| f.positions).unwrap_or_default();
        Landing { result, positions }
    }
}

/// An append commit's work, run apart from its sink: finish writing the data files, then commit
/// them with the positions they cover.
pub struct AppendFlight {
    launch: Launch,
    writer: Option<TableWriter>,
    /// Rows the commit adds.
    pub rows: u64,
}

impl AppendFlight {
    /// Writes what the files still buffer and commits them; returns the landing and the number of
    /// data files.
    pub async fn run(self) -> Result<(Landing, u64), SinkError> {
        let files = match self.writer {
            Some(w) => w.close().await?,
            None => Vec::new(),
        };
        let n = files.len() as u64;
        Ok((self.launch.commit(Append { files }).await, n))
    }
}

/// The outcome of a launched commit, for [`TableSink::land`].
pub struct Landing {
    result: Result<Committed, SinkError>,
    /// The positions the commit covers.
    positions: Positions,
}

/// A snapshot operation that adds files this sink wrote (deleted again when its commit fails).
pub trait FilesOp: commit::SnapshotOperation {
    fn written_files(&self) -> Vec<&iceberg::spec::DataFile>;
}

impl FilesOp for Append {
    fn written_files(&self) -> Vec<&iceberg::spec::DataFile> {
        self.files.iter().collect()
    }
}

impl FilesOp for commit::RowDelta {
    fn written_files(&self) -> Vec<&iceberg::spec::DataFile> {
        self.data.iter().chain(&self.deletes).collect()
    }
}
