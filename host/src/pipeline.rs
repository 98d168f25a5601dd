//! The batch loop: source → decode → transform chain → encode → Iceberg, with commits every
//! `sink.commit_rows` rows and at end of input.
//!
//! Reading, decoding and the plugin chain run on a worker thread; encoding, Parquet writing and commits
//! run on the async side, so the two overlap on two cores. Batches cross between them whole.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use iceberg::Catalog;
use iceberg::table::Table;
use iceberg_catalog_sql::SqlCatalog;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::change::{ChangeBatch, DeadLetter, RawBatch};
use crate::config::Config;
use crate::decode::{DecodeStats, Decoder};
use crate::encode::Encoder;
use crate::error::PipelineError;
use crate::metrics::Metrics;
use crate::schema::{ColType, parse_transform, parse_type};
use crate::sink::commit::{CommitMode, CommitRequest, commit};
use crate::sink::table::{METADATA_COLUMNS, TableSpec};
use crate::sink::writer::TableWriter;
use crate::sink::{catalog, compression_property, dead_letter, parquet_properties, table};
use crate::source::{FileSource, Source};
use crate::transform::chain::{self, ChainStats, ChainUpdates, resolve_entries};
use crate::transform::{Chain, Runtime};

/// What a run did, printed at the end of batch mode.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub table: String,
    pub dead_letter_table: String,
    pub chain: String,
    pub records: u64,
    pub events: u64,
    pub rows_committed: u64,
    pub dropped: u64,
    pub rejected: u64,
    pub plugin_failures: u64,
    pub dead_letters: u64,
    pub tombstones: u64,
    pub truncates: u64,
    pub toast_placeholders: u64,
    pub commits: u64,
    pub data_files: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// The default cache directory for compiled plugins.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("cdc-host"))
}

/// Loads the plugin chain the config names.
pub fn load_chain(cfg: &Config) -> Result<Chain, PipelineError> {
    let runtime = Runtime::new(cfg.plugins.cache_dir.clone().or_else(default_cache_dir))?;
    let entries = resolve_entries(&cfg.plugins.dir, &cfg.chain)?;
    let chain = Chain::load(
        &runtime,
        &cfg.plugins.dir,
        &entries,
        chain::limits(&cfg.plugins),
    )?;
    for s in chain.stages() {
        tracing::info!(plugin = %s.identity(), file = %s.origin(), "loaded plugin");
    }
    Ok(chain)
}

/// The main table's shape: declared columns, then columns the chain writes, then metadata columns.
pub fn table_spec(cfg: &Config, chain: Option<&Chain>) -> Result<TableSpec, PipelineError> {
    let mut spec = TableSpec {
        ident: table::ident(&cfg.table.namespace, &cfg.table.name)?,
        columns: Vec::new(),
        partition: Vec::new(),
        sort: cfg.table.sort.clone(),
        properties: cfg.table.properties.clone().into_iter().collect(),
    };
    for c in &cfg.table.columns {
        let ty = parse_type(&c.ty).map_err(|m| crate::error::ConfigError::Invalid {
            key: "table.columns".into(),
            message: m,
        })?;
        spec.push_column(&c.name, ty, c.doc.clone());
    }
    if let Some(chain) = chain {
        for (name, ty) in chain.written_columns() {
            spec.push_column(&name, ty, None);
        }
    }
    for (name, ty) in METADATA_COLUMNS {
        spec.push_column(name, ty, None);
    }
    for p in &cfg.table.partition {
        let t = parse_transform(&p.transform).map_err(|m| crate::error::ConfigError::Invalid {
            key: "table.partition".into(),
            message: m,
        })?;
        spec.partition.push((p.column.clone(), t));
    }
    let (k, v) = compression_property(&cfg.sink);
    spec.properties.entry(k).or_insert(v);
    Ok(spec)
}

/// Creates (or evolves) the main and dead-letter tables. Returns them.
pub async fn prepare_tables(
    cfg: &Config,
    catalog: &SqlCatalog,
    chain: Option<&Chain>,
) -> Result<(Table, Table), PipelineError> {
    catalog::ensure_namespace(catalog, &cfg.table.namespace).await?;
    let spec = table_spec(cfg, chain)?;
    let main = table::ensure(catalog, &spec).await?;
    let dlq_ident = table::ident(&cfg.table.namespace, &cfg.dead_letter_table())?;
    let dlq = table::ensure(catalog, &dead_letter::spec(dlq_ident)).await?;
    Ok((main, dlq))
}

/// One batch's worth of work handed from the worker thread to the writer.
struct Work {
    raw: RawBatch,
    batch: ChangeBatch,
    dead: Vec<DeadLetter>,
    decode: DecodeStats,
    chain: ChainStats,
    /// Identity of the chain that processed this batch.
    chain_id: Arc<str>,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// What a run can be given besides config, source and chain.
#[derive(Default)]
pub struct RunOptions {
    /// Replacement chains, applied between batches (hot reload).
    pub updates: Option<Box<dyn ChainUpdates>>,
    /// Set to stop reading: the batch in flight finishes, everything pending is committed.
    pub stop: Arc<AtomicBool>,
    /// Commit pending rows at least this often (sources that can pause, such as Kafka).
    pub commit_interval: Option<Duration>,
}

/// Runs the whole input through the configured chain into the table (batch mode).
pub async fn run_file(
    cfg: &Config,
    source: FileSource,
    metrics: &Metrics,
) -> Result<Summary, PipelineError> {
    let chain = load_chain(cfg)?;
    run(cfg, source, chain, metrics, RunOptions::default()).await
}

/// Runs `source` through `chain` into the table until the source ends or `options.stop` is set,
/// committing every `sink.commit_rows` rows, at every chain change, and at the end.
pub async fn run<S: Source + 'static>(
    cfg: &Config,
    source: S,
    chain: Chain,
    metrics: &Metrics,
    options: RunOptions,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let catalog = catalog::open(cfg).await?;
    let (table, dlq) = prepare_tables(cfg, &catalog, Some(&chain)).await?;
    let chain_id: Arc<str> = Arc::from(chain.identity());
    let removed = chain.removed_columns();
    let declared: HashMap<String, ColType> = table::column_types(&table)
        .into_iter()
        .filter(|(n, _)| !removed.contains(n))
        .collect();

    let (tx, mut rx) = mpsc::channel::<Result<Work, PipelineError>>(2);
    let (committed_tx, committed_rx) = std::sync::mpsc::channel::<BTreeMap<String, i64>>();
    let batch_size = cfg.sink.batch_size;
    let decimal = cfg.decode.decimal_handling;
    let source_name = source.name().to_string();
    let stop = options.stop.clone();
    let mut updates = options.updates;
    let worker = std::thread::Builder::new()
        .name("decode-transform".into())
        .spawn(move || {
            let mut source = source;
            let mut chain = chain;
            let mut chain_id: Arc<str> = Arc::from(chain.identity());
            let mut decoder = Decoder::new(declared, decimal);
            while !stop.load(Ordering::Relaxed) {
                while let Ok(positions) = committed_rx.try_recv() {
                    source.committed(&positions);
                }
                if let Some(next) = updates.as_mut().and_then(|u| u.poll()) {
                    chain = next;
                    chain_id = Arc::from(chain.identity());
                }
                let mut raw = RawBatch::default();
                match source.next_batch(&mut raw, batch_size) {
                    Ok(false) => break,
                    Ok(true) if raw.is_empty() => continue,
                    Ok(true) => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        break;
                    }
                }
                let decoded = decoder.decode(&raw);
                let mut dead = decoded.dead_letters;
                let mut batch = decoded.batch;
                let chain_stats = chain.apply(&mut batch, &mut dead);
                let work = Work {
                    raw,
                    batch,
                    dead,
                    decode: decoded.stats,
                    chain: chain_stats,
                    chain_id: chain_id.clone(),
                };
                if tx.blocking_send(Ok(work)).is_err() {
                    break;
                }
            }
            // Acknowledge what the last commits made durable before the source goes away.
            drop(tx);
            while let Ok(positions) = committed_rx.recv() {
                source.committed(&positions);
            }
        })
        .map_err(|e| PipelineError::Internal(format!("cannot start the worker thread: {e}")))?;

    let mut sink = Sink::new(
        cfg,
        catalog,
        table,
        dlq,
        chain_id.clone(),
        metrics.clone(),
        committed_tx,
    )
    .await?;
    let mut summary = Summary {
        table: format!(
            "{}.{}.{}",
            cfg.catalog.name, cfg.table.namespace, cfg.table.name
        ),
        dead_letter_table: format!(
            "{}.{}.{}",
            cfg.catalog.name,
            cfg.table.namespace,
            cfg.dead_letter_table()
        ),
        chain: chain_id.to_string(),
        ..Default::default()
    };
    let interval = options.commit_interval.unwrap_or(Duration::from_secs(3600));
    let mut last_commit = Instant::now();
    let mut last_report = Instant::now();
    let mut failure = None;
    loop {
        let wait = interval.saturating_sub(last_commit.elapsed());
        let work = match tokio::time::timeout(wait, rx.recv()).await {
            Err(_) => {
                // Interval elapsed with no new batch: commit what is pending.
                if let Err(e) = sink.flush().await {
                    failure = Some(e);
                    break;
                }
                last_commit = Instant::now();
                continue;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                failure = Some(e);
                break;
            }
            Ok(Some(Ok(w))) => w,
        };
        record_stats(&mut summary, metrics, &work);
        let commits = sink.commits;
        if let Err(e) = sink.accept(work).await {
            failure = Some(e);
            break;
        }
        if last_commit.elapsed() >= interval {
            if let Err(e) = sink.flush().await {
                failure = Some(e);
                break;
            }
        }
        if sink.commits != commits {
            last_commit = Instant::now();
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                source = %source_name,
                records = summary.records,
                rows_pending = sink.pending_rows(),
                rows_committed = sink.rows_committed,
                events_per_second = (summary.events as f64 / secs) as u64,
                "progress"
            );
        }
    }
    drop(rx);
    let flushed = match failure {
        Some(e) => Err(e),
        None => sink.flush().await,
    };
    summary.chain = sink.chain_id.to_string();
    summary.rows_committed = sink.rows_committed;
    summary.commits = sink.commits;
    summary.data_files = sink.data_files;
    summary.dead_letters = sink.dead_letters;
    drop(sink); // closes the acknowledgement channel so the worker can finish
    let _ = worker.join();
    flushed?;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.events_per_second = summary.events as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}

fn record_stats(s: &mut Summary, m: &Metrics, w: &Work) {
    let d = &w.decode;
    let c = &w.chain;
    s.records += d.records;
    s.events += d.events;
    s.tombstones += d.tombstones;
    s.truncates += d.truncates;
    s.toast_placeholders += d.toast_placeholders;
    s.dropped += c.dropped;
    s.rejected += c.rejected;
    s.plugin_failures += c.plugin_failures;
    m.records.inc_by(d.records);
    m.events.inc_by(d.events);
    m.tombstones.inc_by(d.tombstones);
    m.truncates.inc_by(d.truncates);
    m.toast_placeholders.inc_by(d.toast_placeholders);
    m.dropped.inc_by(c.dropped);
    m.batches.inc();
    for dl in &w.dead {
        if let Some(p) = &dl.plugin
            && c.plugin_failures > 0
            && dl.reason.starts_with("plugin ")
        {
            m.plugin_failures.with_label_values(&[p]).inc();
            break;
        }
    }
}

/// Writers and commit state for the main and dead-letter tables.
struct Sink {
    catalog: SqlCatalog,
    table: Table,
    dlq: Table,
    writer: Option<TableWriter>,
    dlq_writer: Option<TableWriter>,
    encoder: Encoder,
    table_types: HashMap<String, ColType>,
    evolve: bool,
    pipeline_id: String,
    /// The chain that produced the pending rows.
    chain_id: Arc<str>,
    positions: BTreeMap<String, i64>,
    /// Tells the source which positions the table now holds.
    committed: std::sync::mpsc::Sender<BTreeMap<String, i64>>,
    props: parquet::file::properties::WriterProperties,
    target_file_size: usize,
    commit_rows: usize,
    metrics: Metrics,
    ignored_columns: Vec<String>,
    rows_committed: u64,
    commits: u64,
    data_files: u64,
    dead_letters: u64,
}

impl Sink {
    async fn new(
        cfg: &Config,
        catalog: SqlCatalog,
        table: Table,
        dlq: Table,
        chain_id: Arc<str>,
        metrics: Metrics,
        committed: std::sync::mpsc::Sender<BTreeMap<String, i64>>,
    ) -> Result<Self, PipelineError> {
        let props =
            parquet_properties(&cfg.sink).map_err(|m| crate::error::ConfigError::Invalid {
                key: "sink.compression".into(),
                message: m,
            })?;
        Ok(Self {
            table_types: table::column_types(&table),
            catalog,
            table,
            dlq,
            writer: None,
            dlq_writer: None,
            encoder: Encoder::new(cfg.pipeline_id.clone(), cfg.table.sort.clone()),
            evolve: cfg.table.evolve_schema,
            pipeline_id: cfg.pipeline_id.clone(),
            chain_id,
            positions: BTreeMap::new(),
            committed,
            props,
            target_file_size: cfg.sink.target_file_size_bytes,
            commit_rows: cfg.sink.commit_rows,
            metrics,
            ignored_columns: Vec::new(),
            rows_committed: 0,
            commits: 0,
            data_files: 0,
            dead_letters: 0,
        })
    }

    fn pending_rows(&self) -> usize {
        self.writer.as_ref().map_or(0, TableWriter::rows)
    }

    async fn accept(&mut self, work: Work) -> Result<(), PipelineError> {
        let Work {
            raw,
            batch,
            mut dead,
            chain_id,
            ..
        } = work;
        if chain_id != self.chain_id {
            // Every commit holds rows of one chain: its snapshot summary names it.
            self.flush().await?;
            tracing::info!(from = %self.chain_id, to = %chain_id, "transform chain changed");
            self.chain_id = chain_id;
        }
        if !batch.is_empty() {
            let new = Encoder::new_columns(&batch, &self.table_types);
            if !new.is_empty() {
                if self.evolve {
                    // Data files of the old schema are committed before the schema changes.
                    self.flush().await?;
                    let t = table::add_columns(&self.catalog, self.table.clone(), &new).await?;
                    self.table_types = table::column_types(&t);
                    self.table = t;
                } else {
                    for (n, _) in new {
                        if !self.ignored_columns.contains(&n) {
                            tracing::warn!(column = %n, "column not in the table and table.evolve_schema = false: not stored");
                            self.ignored_columns.push(n);
                        }
                    }
                }
            }
            if self.writer.is_none() {
                self.writer = Some(
                    TableWriter::new(&self.table, self.props.clone(), self.target_file_size)
                        .await?,
                );
            }
            let writer = self.writer.as_mut().expect("writer");
            match self
                .encoder
                .encode(&batch, writer.arrow_schema(), now_micros())
            {
                Ok(rows) => writer.write(rows).await?,
                Err(reason) => {
                    tracing::error!(events = batch.len(), error = %reason, "batch does not fit the table; sent to the dead-letter table");
                    dead.extend(batch.origins.iter().map(|&origin| DeadLetter {
                        origin,
                        stage: "encode",
                        plugin: None,
                        reason: reason.clone(),
                    }));
                }
            }
            self.metrics.pending_rows.set(self.pending_rows() as i64);
        }
        if !dead.is_empty() {
            if self.dlq_writer.is_none() {
                self.dlq_writer = Some(
                    TableWriter::new(&self.dlq, self.props.clone(), self.target_file_size).await?,
                );
            }
            let w = self.dlq_writer.as_mut().expect("dlq writer");
            let rows = dead_letter::to_batch(
                w.arrow_schema(),
                &dead,
                &raw,
                &self.pipeline_id,
                now_micros(),
            )?;
            w.write(rows).await?;
            for d in &dead {
                self.metrics
                    .dead_letters
                    .with_label_values(&[d.stage])
                    .inc();
            }
            self.dead_letters += dead.len() as u64;
        }
        for i in 0..raw.len() {
            let stream = raw.streams[raw.stream[i] as usize].to_string();
            let next = raw.offsets[i] + 1;
            let e = self.positions.entry(stream).or_insert(next);
            *e = (*e).max(next);
        }
        if self.pending_rows() >= self.commit_rows {
            self.flush().await?;
        }
        Ok(())
    }

    /// Closes open files and commits them: dead letters first, then the main table with positions.
    async fn flush(&mut self) -> Result<(), PipelineError> {
        if let Some(w) = self.dlq_writer.take() {
            let files = w.close().await?;
            if !files.is_empty() {
                let req = CommitRequest {
                    data_files: files,
                    pipeline_id: self.pipeline_id.clone(),
                    chain: self.chain_id.to_string(),
                    positions: BTreeMap::new(),
                };
                self.dlq = commit(&self.catalog, self.dlq.clone(), CommitMode::Append, req).await?;
            }
        }
        if let Some(w) = self.writer.take() {
            let rows = w.rows() as u64;
            let files = w.close().await?;
            if !files.is_empty() {
                let n = files.len() as u64;
                let req = CommitRequest {
                    data_files: files,
                    pipeline_id: self.pipeline_id.clone(),
                    chain: self.chain_id.to_string(),
                    positions: self.positions.clone(),
                };
                self.table =
                    commit(&self.catalog, self.table.clone(), CommitMode::Append, req).await?;
                self.rows_committed += rows;
                self.commits += 1;
                self.data_files += n;
                self.metrics.rows_written.inc_by(rows);
                self.metrics.commits.inc();
                self.metrics.data_files.inc_by(n);
                self.metrics.pending_rows.set(0);
                tracing::info!(rows, files = n, "committed");
                // Only now may the source acknowledge these positions (e.g. commit Kafka offsets).
                let _ = self.committed.send(self.positions.clone());
            }
        }
        Ok(())
    }
}

/// Creates the tables the config describes (with the columns the chain adds, if it loads) and returns
/// their identifiers.
pub async fn create_tables(cfg: &Config) -> Result<(String, String), PipelineError> {
    let chain = match load_chain(cfg) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "plugins not loaded: the table gets the declared and metadata columns only");
            None
        }
    };
    let catalog = catalog::open(cfg).await?;
    let (main, dlq) = prepare_tables(cfg, &catalog, chain.as_ref()).await?;
    Ok((main.identifier().to_string(), dlq.identifier().to_string()))
}

/// The catalog, for read-only tools.
pub async fn open_catalog(cfg: &Config) -> Result<impl Catalog, PipelineError> {
    Ok(catalog::open(cfg).await?)
}
