//! The tables one pipeline writes: the main table and its dead-letter table, each a [`TableSink`],
//! plus what ties them together — encoding, schema evolution, commit triggers, acknowledgements and
//! background maintenance.
//!
//! A commit overlaps the next batches: its files are finished and committed by a task while the
//! pipeline keeps accepting into new files, and it is acknowledged when it lands (at most one in
//! flight; the next commit, a schema change or maintenance lands it first). Background maintenance
//! of an append table runs alongside the commits; a schema change waits for it.
//!
//! Per flush, the dead-letter table commits first, then the main table; each commit carries its
//! table's positions and is fenced. A main-table commit implies the dead-letter table holds every
//! dead letter below its positions, so after a crash between the two commits the replay skips the
//! dead letters already landed, and a restart resumes from the main table's positions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::writer::FileSettings;
use arrow_array::RecordBatch;
use iceberg::table::Table;

use super::catalog::Catalog;
use super::commit::Positions;
use super::dead_letter;
use super::maintain::{self, MaintenancePolicy, MaintenanceReport};
use super::mirror::{Launched, MirrorEvents, MirrorSink, Written};
use super::table;
use super::table_sink::{Landing, TableSink};
use crate::change::{ChangeBatch, DeadLetter, RawBatch};
use crate::encode::Encoder;
use crate::error::{PipelineError, SinkError};
use crate::metrics::Metrics;
use crate::schema::ColType;

/// Settings of the tables' writing and commits.
#[derive(Debug, Clone)]
pub struct TablesConfig {
    pub pipeline_id: String,
    pub evolve_schema: bool,
    pub files: FileSettings,
    pub commit_rows: usize,
    pub commit_bytes: usize,
    pub interval: Duration,
    /// Once the source has caught up, pending rows commit as soon as this long has passed since
    /// the last commit (and no commit is in flight); `None`: only the triggers above commit.
    pub caught_up_interval: Option<Duration>,
    pub maintenance: MaintenancePolicy,
    /// A mirror table (one row per key) rather than the change log.
    pub mirror: bool,
}

/// Counters of a run, for its summary.
#[derive(Debug, Clone, Default)]
pub struct TablesStats {
    pub rows_committed: u64,
    pub commits: u64,
    pub data_files: u64,
    pub dead_letters: u64,
    /// Records left out because the table already held them (a resumed input).
    pub already_committed: u64,
    /// Dead-letter reasons and how often they occurred.
    pub reasons: HashMap<String, u64>,
    pub maintenance_runs: u64,
}

/// The main and dead-letter tables of one pipeline.
pub struct Tables {
    catalog: Arc<Catalog>,
    main: TableSink,
    dead_letters: TableSink,
    cfg: TablesConfig,
    encoder: Encoder,
    table_types: HashMap<String, ColType>,
    ignored_columns: Vec<String>,
    /// The chain that produced the pending rows.
    chain_id: Arc<str>,
    pending_bytes: usize,
    /// Newest source commit time (ms) among pending events.
    pending_ts_ms: i64,
    last_commit: Instant,
    /// The source had nothing more waiting after the last batch it handed over.
    caught_up: bool,
    metrics: Metrics,
    /// Tells the source which positions the table now holds.
    acknowledge: std::sync::mpsc::Sender<Positions>,
    stats: TablesStats,
    commits_since_maintenance: u32,
    maintenance: Option<tokio::task::JoinHandle<Result<Vec<MaintenanceReport>, SinkError>>>,
    /// A mirror table's index and pending changes (opened with the first batch, once the key is
    /// known).
    mirror: Option<MirrorSink>,
    /// A commit writing and committing while the next batches come in.
    flight: Option<Flight>,
}

/// What a commit in flight wrote.
enum Wrote {
    /// An append commit: its data files.
    Append(u64),
    /// A mirror commit: where its rows landed (the key index follows).
    Mirror(Written),
}

impl Wrote {
    fn data_files(&self) -> u64 {
        match self {
            Wrote::Append(n) => *n,
            Wrote::Mirror(w) => w.data_files,
        }
    }
}

type FlightOutcome = Result<(Landing, Wrote), SinkError>;

/// A commit in flight.
struct Flight {
    task: tokio::task::JoinHandle<FlightOutcome>,
    /// Its outcome, once finished and not yet landed.
    done: Option<FlightOutcome>,
    rows: u64,
    started: Instant,
    /// Newest source commit time (ms) among its events.
    newest_ts_ms: i64,
}

impl Tables {
    pub fn new(
        catalog: Arc<Catalog>,
        main: Table,
        dead_letters: Table,
        cfg: TablesConfig,
        chain_id: Arc<str>,
        metrics: Metrics,
        acknowledge: std::sync::mpsc::Sender<Positions>,
    ) -> Self {
        let table_types = table::column_types(&main);
        let main = TableSink::new(catalog.clone(), main, &cfg.pipeline_id, cfg.files.clone());
        let mut dead_letters =
            TableSink::new(catalog.clone(), dead_letters, &cfg.pipeline_id, cfg.files.clone());
        // The main table's positions imply the dead-letter table holds as much.
        dead_letters.raise_floor(main.floor());
        Self {
            catalog,
            encoder: Encoder::new(cfg.pipeline_id.clone()),
            main,
            dead_letters,
            cfg,
            table_types,
            ignored_columns: Vec::new(),
            chain_id,
            pending_bytes: 0,
            pending_ts_ms: 0,
            last_commit: Instant::now(),
            caught_up: false,
            metrics,
            acknowledge,
            stats: TablesStats::default(),
            commits_since_maintenance: 0,
            maintenance: None,
            mirror: None,
            flight: None,
        }
    }

    /// The positions the main table holds (where a source resumes).
    pub fn resume_positions(&self) -> &Positions {
        self.main.floor()
    }

    /// The chain of the pending (or last committed) rows.
    pub fn chain_id(&self) -> &Arc<str> {
        &self.chain_id
    }

    /// Rows waiting for the next commit.
    pub fn pending_rows(&self) -> usize {
        match &self.mirror {
            Some(m) => m.pending_rows(),
            None => self.main.pending_rows(),
        }
    }

    /// Counters since the tables opened.
    pub fn stats(&self) -> TablesStats {
        let mut s = self.stats.clone();
        let m = self.main.stats();
        s.rows_committed = m.rows_committed;
        s.commits = m.commits;
        s.data_files = m.data_files;
        s
    }

    /// Time until a time trigger fires: the interval, or a caught-up commit (a commit in flight
    /// wakes the writer when it lands).
    pub fn until_due(&self) -> Duration {
        let elapsed = self.last_commit.elapsed();
        let interval = self.cfg.interval.saturating_sub(elapsed);
        match self.cfg.caught_up_interval {
            Some(soon) if self.caught_up && self.flight.is_none() && self.main.is_pending() => {
                interval.min(soon.saturating_sub(elapsed))
            }
            _ => interval,
        }
    }

    /// The source has caught up (nothing new was waiting).
    pub fn caught_up(&mut self) {
        self.caught_up = true;
    }

    /// Whether a commit trigger has fired. A mirror also commits when the rows it holds for the
    /// commit reach the write buffer's size (it holds them in memory until the commit launches).
    pub fn due(&self) -> bool {
        self.main.is_pending()
            && (self.pending_rows() >= self.cfg.commit_rows
                || self.pending_bytes >= self.cfg.commit_bytes
                || self.mirror.as_ref().is_some_and(|m| m.pending_bytes() >= self.cfg.files.buffer_bytes)
                || self.last_commit.elapsed() >= self.cfg.interval
                || self.caught_up_due())
    }

    /// The source has caught up and the commit before has landed: a live stream's rows commit now
    /// instead of at the interval, while a backlog read at full speed (full batches) still commits
    /// by size.
    fn caught_up_due(&self) -> bool {
        self.caught_up
            && self.flight.is_none()
            && self.cfg.caught_up_interval.is_some_and(|soon| self.last_commit.elapsed() >= soon)
    }

    /// Takes one batch: rows to the main table, dead letters to the dead-letter table, both
    /// leaving out records their table already holds.
    pub async fn accept(
        &mut self,
        raw: &RawBatch,
        mut batch: ChangeBatch,
        mut dead: Vec<DeadLetter>,
        chain_id: Arc<str>,
        mirror: Option<MirrorEvents>,
    ) -> Result<(), PipelineError> {
        if chain_id != self.chain_id {
            // Every commit holds rows of one chain: its snapshot summary names it.
            self.flush().await?;
            tracing::info!(from = %self.chain_id, to = %chain_id, "transform chain changed");
            self.chain_id = chain_id;
        }
        self.caught_up = raw.caught_up;
        let takes = self.main.takes(raw);
        let held = takes.iter().filter(|t| !**t).count();
        if held > 0 {
            self.stats.already_committed += held as u64;
            let keep: Vec<bool> = batch.origins.iter().map(|&o| takes[o as usize]).collect();
            batch
                .retain(&keep)
                .map_err(|e| PipelineError::Internal(format!("skipping held records: {e}")))?;
        }
        if let Some(events) = mirror {
            self.accept_mirror(batch, &mut dead, &takes, events).await?;
        } else if !batch.is_empty()
            && let Some(rows) = self.encode(&batch, &mut dead).await?
        {
            self.main.write(rows).await?;
        }
        self.main.track(raw, &takes);
        self.metrics.pending_rows.set(self.pending_rows() as i64);

        let dlq_takes = self.dead_letters.takes(raw);
        dead.retain(|d| dlq_takes[d.origin as usize]);
        if !dead.is_empty() {
            let schema = self.dead_letters.arrow_schema().await?;
            let rows = dead_letter::to_batch(&schema, &dead, raw, &self.cfg.pipeline_id, now_micros())?;
            self.dead_letters.write(rows).await?;
            for d in &dead {
                self.metrics.dead_letters.with_label_values(&[d.stage]).inc();
                *self.stats.reasons.entry(reason_class(&d.reason)).or_insert(0) += 1;
            }
            self.stats.dead_letters += dead.len() as u64;
        }
        self.dead_letters.track(raw, &dlq_takes);
        self.pending_bytes += raw.input_bytes();
        Ok(())
    }

    /// Encodes `batch` as rows of the main table (adding the columns it brings first). A batch that
    /// does not fit the table goes to the dead-letter table instead.
    async fn encode(
        &mut self,
        batch: &ChangeBatch,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<Option<RecordBatch>, PipelineError> {
        self.evolve(batch).await?;
        let schema = self.main.arrow_schema().await?;
        let newest = batch.sources.iter().map(|s| s.ts_ms).max().unwrap_or(0);
        self.pending_ts_ms = self.pending_ts_ms.max(newest);
        match self.encoder.encode(batch, &schema, now_micros()) {
            Ok(rows) => Ok(Some(rows)),
            Err(reason) => {
                tracing::error!(events = batch.len(), error = %reason, "batch does not fit the table; sent to the dead-letter table");
                dead.extend(batch.origins.iter().map(|&origin| DeadLetter {
                    origin,
                    stage: "encode",
                    plugin: None,
                    reason: reason.clone(),
                }));
                Ok(None)
            }
        }
    }

    /// A mirror table's share of [`Self::accept`]: every keyed event changes the key's row, in
    /// source order.
    async fn accept_mirror(
        &mut self,
        batch: ChangeBatch,
        dead: &mut Vec<DeadLetter>,
        takes: &[bool],
        mut events: MirrorEvents,
    ) -> Result<(), PipelineError> {
        events.events.retain(|e| takes[e.origin as usize]);
        events.truncates.retain(|&o| takes[o as usize]);
        if events.events.is_empty() && events.truncates.is_empty() {
            return Ok(());
        }
        self.open_mirror(&events.key_columns).await?;
        // A delete removes its key's row whatever the chain did with it: it never is a row.
        let mut batch = batch;
        if batch.ops.contains(&crate::change::Op::Delete) {
            let keep: Vec<bool> = batch.ops.iter().map(|o| *o != crate::change::Op::Delete).collect();
            batch.retain(&keep).map_err(|e| {
                PipelineError::Internal(format!("leaving deletes out of a mirror's rows: {e}"))
            })?;
        }
        let rows = if batch.is_empty() { None } else { self.encode(&batch, dead).await? };
        let table = self.main.table().clone();
        let mirror = self.mirror.as_mut().expect("opened");
        let unresolved = mirror.unresolved_toast();
        mirror
            .apply(
                &table,
                &events.events,
                &events.truncates,
                &batch.origins,
                rows,
                &batch.toast,
                &events.values,
            )
            .await?;
        let new = mirror.unresolved_toast() - unresolved;
        if new > 0 {
            if unresolved == 0 {
                tracing::warn!(
                    table = %self.main.name(),
                    "an update carried Debezium's placeholder for an unchanged large (TOASTed) value that this \
                     mirror never saw; it lands as null. Set REPLICA IDENTITY FULL on the source table so \
                     every update carries all values (counted in cdc_host_toast_unresolved_total)"
                );
            }
            self.metrics.toast_unresolved.inc_by(new);
        }
        self.metrics.held_keys.set(mirror.held_keys() as i64);
        Ok(())
    }

    /// Opens the mirror (once): the key columns become the table's identifier fields, and the key
    /// index is rebuilt from the table.
    async fn open_mirror(&mut self, key_columns: &[String]) -> Result<(), PipelineError> {
        if let Some(m) = &self.mirror {
            if m.key_columns() != key_columns {
                return Err(PipelineError::Internal(format!(
                    "mirror table key changed from {:?} to {key_columns:?}",
                    m.key_columns()
                )));
            }
            return Ok(());
        }
        if table::identifier_fields(self.main.table()) != key_columns {
            let t =
                table::set_identifier_fields(&self.catalog, self.main.table().clone(), key_columns).await?;
            drop(t);
            self.main.reload().await?;
        }
        let m = MirrorSink::open(self.main.table(), key_columns.to_vec()).await?;
        self.mirror = Some(m);
        Ok(())
    }

    /// Adds the columns `batch` brings to the table (or warns once that they are not stored).
    async fn evolve(&mut self, batch: &ChangeBatch) -> Result<(), PipelineError> {
        let wider = Encoder::widened_columns(batch, &self.table_types);
        if !wider.is_empty() && self.cfg.evolve_schema {
            // The source widened a column (the decoder met a value the old type cannot hold).
            self.commit_all().await?;
            self.main.widen_columns(&wider, &self.chain_id).await?;
            self.table_types = table::column_types(self.main.table());
            tracing::info!(columns = ?wider, "widened columns of the table");
        }
        let new = Encoder::new_columns(batch, &self.table_types);
        if new.is_empty() {
            return Ok(());
        }
        if self.cfg.evolve_schema {
            // Data files of the old schema are committed before the schema changes.
            self.commit_all().await?;
            self.main.add_columns(&new, &self.chain_id).await?;
            self.table_types = table::column_types(self.main.table());
        } else {
            for (n, _) in new {
                if !self.ignored_columns.contains(&n) {
                    tracing::warn!(column = %n, "column not in the table and table.evolve_schema = false: not stored");
                    self.ignored_columns.push(n);
                }
            }
        }
        Ok(())
    }

    /// Commits what is pending: dead letters first, then the main table with the positions it
    /// reaches (a positions-only snapshot when no row survived). A mirror commit is launched: its
    /// files are written and committed while the next batches come in, and it lands (is
    /// acknowledged) later; the commit before it lands first. An append commit lands here.
    pub async fn flush(&mut self) -> Result<(), PipelineError> {
        self.land().await?;
        if self.maintenance.as_ref().is_some_and(|m| m.is_finished()) {
            self.finish_maintenance().await?;
        }
        let started = Instant::now();
        self.last_commit = started;
        if !self.main.is_pending() {
            return Ok(());
        }
        let chain = self.chain_id.to_string();
        let rows = self.pending_rows() as u64;
        self.dead_letters.commit(&chain, false).await?;
        let newest_ts_ms = std::mem::take(&mut self.pending_ts_ms);
        self.pending_bytes = 0;
        let Some(mirror) = self.mirror.as_mut() else {
            let Some(flight) = self.main.launch_append(&chain)? else { return Ok(()) };
            let rows = flight.rows;
            let task = tokio::spawn(async move {
                let (landing, files) = flight.run().await?;
                Ok((landing, Wrote::Append(files)))
            });
            self.flight = Some(Flight { task, done: None, rows, started, newest_ts_ms });
            return Ok(());
        };
        // Compaction moves the rows the key index points at: it runs with nothing pending or in
        // flight, right after this commit lands.
        let maintain = self.cfg.maintenance.enabled
            && self.commits_since_maintenance + 1 >= self.cfg.maintenance.every_commits;
        match mirror.launch(&mut self.main, &chain, &self.cfg.files).await? {
            Launched::Landed(None) => {}
            Launched::Landed(Some(c)) => {
                self.committed(c.positions, rows, 0, started, newest_ts_ms, c.attempts);
            }
            Launched::Flight(f) => {
                let rows = f.data_rows;
                let task = tokio::spawn(async move {
                    let (landing, written) = f.run().await?;
                    Ok((landing, Wrote::Mirror(written)))
                });
                self.flight = Some(Flight { task, done: None, rows, started, newest_ts_ms });
            }
        }
        if maintain {
            self.land().await?;
        }
        let policy = &self.cfg.maintenance;
        if policy.enabled && self.commits_since_maintenance >= policy.every_commits {
            self.mirror_maintenance().await?;
        }
        Ok(())
    }

    /// Commits everything pending and waits until it landed, and for background maintenance (a
    /// schema change follows).
    pub async fn commit_all(&mut self) -> Result<(), PipelineError> {
        self.flush().await?;
        self.land().await?;
        self.finish_maintenance().await
    }

    /// Resolves once the commit in flight has finished (never, without one). Cancel-safe: the
    /// outcome waits for [`Self::land`].
    pub async fn flight_finished(&mut self) {
        match &mut self.flight {
            Some(f) if f.done.is_none() => {
                let outcome = (&mut f.task).await;
                f.done = Some(outcome.unwrap_or_else(|e| {
                    Err(SinkError::Shape {
                        table: self.main.name(),
                        message: format!("the commit task ended abnormally: {e}"),
                    })
                }));
            }
            _ => std::future::pending().await,
        }
    }

    /// Waits for the commit in flight (if any) and takes its outcome: the table, the key index and
    /// the acknowledged positions move on.
    pub async fn land(&mut self) -> Result<(), PipelineError> {
        if self.flight.as_ref().is_some_and(|f| f.done.is_none()) {
            self.flight_finished().await;
        }
        let Some(flight) = self.flight.take() else { return Ok(()) };
        let (landing, wrote) = flight.done.expect("finished")?;
        let files = wrote.data_files();
        let committed = self.main.land(landing, flight.rows, files)?;
        let append = match wrote {
            Wrote::Mirror(written) => {
                self.mirror.as_mut().expect("a mirror flight").land(self.main.table(), written)?;
                false
            }
            Wrote::Append(_) => true,
        };
        let Flight { rows, started, newest_ts_ms, .. } = flight;
        self.committed(committed.positions, rows, files, started, newest_ts_ms, committed.attempts);
        if append {
            self.maybe_start_maintenance();
        }
        Ok(())
    }

    /// After a main-table commit landed: counts, logs and acknowledges it.
    fn committed(
        &mut self,
        positions: Positions,
        rows: u64,
        files: u64,
        started: Instant,
        newest_ts_ms: i64,
        attempts: u32,
    ) {
        self.dead_letters.raise_floor(&positions);
        self.metrics.rows_written.inc_by(rows);
        self.metrics.commits.inc();
        self.metrics.data_files.inc_by(files);
        self.metrics.pending_rows.set(self.pending_rows() as i64);
        let seconds = started.elapsed().as_secs_f32();
        if newest_ts_ms > 0 {
            let lag = (chrono::Utc::now().timestamp_millis() - newest_ts_ms) as f64 / 1000.0;
            self.metrics.pipeline_lag_seconds.set(lag);
            self.metrics.reference.pipeline_lag_seconds.set(lag);
            tracing::info!(rows, files, pipeline_lag_seconds = lag, attempts, seconds, "committed");
        } else {
            tracing::info!(rows, files, attempts, seconds, "committed");
        }
        // Only now may the source acknowledge these positions (e.g. commit Kafka offsets).
        let _ = self.acknowledge.send(positions);
        self.commits_since_maintenance += 1;
    }

    /// A mirror table's maintenance: in line, right after a commit landed (nothing is pending or in
    /// flight then), since compaction moves the rows the key index points at; the index is rebuilt
    /// after a compaction.
    async fn mirror_maintenance(&mut self) -> Result<(), PipelineError> {
        self.commits_since_maintenance = 0;
        let policy = self.cfg.maintenance.clone();
        let main_name = self.main.name();
        let mut compacted = false;
        for t in [self.main.table().clone(), self.dead_letters.table().clone()] {
            match maintain::run(&self.catalog, t, &policy).await {
                Ok(r) => {
                    compacted |= r.table == main_name && r.compacted_files_in > 0;
                    if !r.is_empty() {
                        tracing::info!(report = %r, "maintenance");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "maintenance failed; it runs again later"),
            }
        }
        self.stats.maintenance_runs += 1;
        self.main.reload().await?;
        self.dead_letters.reload().await?;
        if let Some(m) = self.mirror.as_mut() {
            if compacted {
                let keys = m.key_columns().to_vec();
                *m = MirrorSink::open(self.main.table(), keys).await?;
            } else {
                m.rebase(self.main.table());
            }
        }
        Ok(())
    }

    /// Starts background maintenance when the policy says it is due. It runs while the pipeline
    /// keeps writing and committing: their commits take turns ([`Catalog::committing`]), each
    /// starting from the table the other left (a rewrite checks that the files it replaces are
    /// still live and that no delete came in), so a commit never waits for the whole run.
    fn maybe_start_maintenance(&mut self) {
        let policy = &self.cfg.maintenance;
        if !policy.enabled
            || self.maintenance.is_some()
            || self.commits_since_maintenance < policy.every_commits
        {
            return;
        }
        self.commits_since_maintenance = 0;
        let catalog = self.catalog.clone();
        let tables = [self.main.table().clone(), self.dead_letters.table().clone()];
        let policy = policy.clone();
        self.maintenance = Some(tokio::spawn(async move {
            let mut reports = Vec::new();
            for t in tables {
                reports.push(maintain::run(&catalog, t, &policy).await?);
            }
            Ok(reports)
        }));
    }

    /// Waits for background maintenance, then takes the tables as it left them.
    async fn finish_maintenance(&mut self) -> Result<(), PipelineError> {
        let Some(task) = self.maintenance.take() else { return Ok(()) };
        match task.await {
            Ok(Ok(reports)) => {
                self.stats.maintenance_runs += 1;
                for r in reports.iter().filter(|r| !r.is_empty()) {
                    tracing::info!(report = %r, "maintenance");
                }
            }
            // Maintenance failing leaves the table as it was: log it, keep streaming.
            Ok(Err(e)) => tracing::warn!(error = %e, "background maintenance failed; it runs again later"),
            Err(e) => tracing::warn!(error = %e, "background maintenance task ended abnormally"),
        }
        self.main.reload().await?;
        self.dead_letters.reload().await?;
        if let Some(m) = self.mirror.as_mut() {
            m.rebase(self.main.table());
        }
        Ok(())
    }

    /// Lands the commit in flight and finishes background work (at the end of a run).
    pub async fn close(&mut self) -> Result<(), PipelineError> {
        self.land().await?;
        self.finish_maintenance().await
    }
}

/// A dead-letter reason without its record-specific details (values in backquotes, numbers), to
/// count the most frequent kinds.
fn reason_class(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(160));
    let mut in_quote = false;
    for c in reason.chars() {
        match c {
            '`' => {
                if !in_quote {
                    out.push_str("`…`");
                }
                in_quote = !in_quote;
            }
            _ if in_quote => {}
            _ => out.push(c),
        }
        if out.len() >= 160 {
            break;
        }
    }
    out
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The most frequent dead-letter reasons, most frequent first.
pub fn top_reasons(reasons: &HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = reasons.iter().map(|(r, c)| (r.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_classes_drop_values() {
        assert_eq!(reason_class("`abc` is not a base64 decimal"), "`…` is not a base64 decimal");
        let mut r = HashMap::new();
        r.insert("a".to_string(), 2);
        r.insert("b".to_string(), 5);
        assert_eq!(top_reasons(&r, 1), vec![("b".to_string(), 5)]);
    }
}
