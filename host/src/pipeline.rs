//! The batch loop: source → decode → transform chain → encode → Iceberg, with commits every
//! `sink.commit_rows` rows and at end of input.
//!
//! Reading and decoding run on one thread, filtering, keying and the plugin chain on a second; encoding
//! and commits run on the async side, Parquet writing on its tasks. All of it overlaps, so every core
//! is busy. Batches cross between them whole.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use iceberg::table::Table;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::change::{ChangeBatch, DeadLetter, Op, RawBatch};
use crate::config::{Config, FilterConfig, TableMode};
use crate::decode::{DecodeStats, Decoded, Decoder};
use crate::error::{PipelineError, SinkError};
use crate::metrics::{self, Metrics, Stage};
use crate::progress;
use crate::route;
use crate::schema::{ColType, parse_transform, parse_type};
use crate::sink::catalog::Catalog;
use crate::sink::commit::committed_positions;
use crate::sink::mirror::{self, MirrorEvents};
use crate::sink::table::{METADATA_COLUMNS, TableSpec};
use crate::sink::tables::{Tables, TablesConfig, top_reasons};
use crate::sink::writer::FileSettings;
use crate::sink::{catalog, compression_property, dead_letter, parquet_properties, table};
use crate::source::{FileSource, FlushError, PipelineHandle, Source};
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
    /// Logical decoding messages (`op = "m"`), skipped.
    pub messages: u64,
    pub truncates: u64,
    pub toast_placeholders: u64,
    /// Events left out by `[filter]`.
    pub filtered: u64,
    pub commits: u64,
    pub data_files: u64,
    /// Maintenance runs (background or in line) that finished during the run.
    pub maintenance_runs: u64,
    /// Records the table already held (a resumed or repeated input): left out.
    pub already_committed: u64,
    /// The most frequent dead-letter reasons, with counts.
    pub dead_letter_reasons: Vec<(String, u64)>,
    /// Something the user should look at (e.g. most records went to the dead-letter table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    pub seconds: f64,
    pub events_per_second: f64,
    /// Seconds spent in each stage (decode, chain, encode, write, commit), threads and tasks summed:
    /// stages run side by side, so they can add up to more than `seconds`.
    pub stage_seconds: std::collections::BTreeMap<&'static str, f64>,
    /// A multi-table host: each table's run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<Summary>,
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
    let entries = if cfg.no_plugins { Vec::new() } else { resolve_entries(&cfg.plugins.dir, &cfg.chain)? };
    let chain = Chain::load(&runtime, &cfg.plugins.dir, &entries, chain::limits(&cfg.plugins))?;
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
        // A mirror table's configured key; a key taken from the records is set when it first arrives.
        identifier: if cfg.table.mode == TableMode::Mirror { cfg.table.key.clone() } else { Vec::new() },
    };
    for c in &cfg.table.columns {
        let ty = parse_type(&c.ty)
            .map_err(|m| crate::error::ConfigError::Invalid { key: "table.columns".into(), message: m })?;
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
        let t = parse_transform(&p.transform)
            .map_err(|m| crate::error::ConfigError::Invalid { key: "table.partition".into(), message: m })?;
        spec.partition.push((p.column.clone(), t));
    }
    let (k, v) = compression_property(&cfg.sink);
    spec.properties.entry(k).or_insert(v);
    // A streaming table writes a metadata file per commit: keep only the recent ones.
    spec.properties
        .entry("write.metadata.delete-after-commit.enabled".into())
        .or_insert_with(|| "true".into());
    spec.properties.entry("write.metadata.previous-versions-max".into()).or_insert_with(|| "20".into());
    Ok(spec)
}

/// Creates (or evolves) the main and dead-letter tables. Returns them.
pub async fn prepare_tables(
    cfg: &Config,
    catalog: &Catalog,
    chain: Option<&Chain>,
) -> Result<(Table, Table), PipelineError> {
    let spec = table_spec(cfg, chain)?;
    prepare_tables_as(cfg, catalog, spec).await
}

/// [`prepare_tables`] for a main table of shape `spec`.
async fn prepare_tables_as(
    cfg: &Config,
    catalog: &Catalog,
    spec: TableSpec,
) -> Result<(Table, Table), PipelineError> {
    catalog::ensure_namespace(catalog, &cfg.table.namespace).await?;
    let main = table::ensure(catalog, &spec).await?;
    let dlq_ident = table::ident(&cfg.table.namespace, &cfg.dead_letter_table())?;
    let mut dlq_spec = dead_letter::spec(dlq_ident);
    dlq_spec.properties = spec.properties.clone();
    let dlq = table::ensure(catalog, &dlq_spec).await?;
    Ok((main, dlq))
}

/// Batches queued between the transform thread and the writer. Commits finish their files in a
/// task of their own, so the writer seldom stalls: a short queue keeps memory down.
const QUEUED_BATCHES: usize = 3;

/// Decoded batches queued between the reading and the transform threads.
const DECODED_BATCHES: usize = 2;

/// What the reading thread hands the transform thread, in source order.
enum Step {
    Batch(Box<Decoding>),
    /// The source asks for everything read so far to be committed (e.g. before Kafka partitions
    /// move): it travels behind the batches read before it, so the commit holds them all.
    Flush(std::sync::mpsc::Sender<Result<(), String>>),
    /// The source has caught up (nothing new was waiting); it travels behind the batches before it.
    CaughtUp,
    /// A batch the decode helper decodes, in its place in the order.
    Ahead(std::sync::mpsc::Receiver<Box<Decoding>>),
}

/// Decodes one batch, timing it.
fn decode_batch(decoder: &mut Decoder, raw: RawBatch, swap: Option<Chain>) -> Box<Decoding> {
    let started = Instant::now();
    let decoded = decoder.decode(&raw);
    let busy = started.elapsed();
    metrics::stage_time(Stage::Decode, busy);
    Box::new(Decoding { swap, raw, decoded, busy })
}

/// A batch for the decode helper, with the chain to use from it on, and where its result goes.
type DecodeJob = (RawBatch, Option<Chain>, std::sync::mpsc::SyncSender<Box<Decoding>>);

/// Decodes batches handed over by the reading thread while that thread reads and decodes the next
/// ones: decoding is the heaviest stage before the writer, and two cores can share it. The reader
/// hands a batch over only when the helper is free, so neither waits on the other.
fn spawn_decode_helper(
    mut decoder: Decoder,
) -> Result<(std::sync::mpsc::SyncSender<DecodeJob>, std::thread::JoinHandle<()>), PipelineError> {
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<DecodeJob>(0);
    let helper = std::thread::Builder::new()
        .name("decode".into())
        .spawn(move || {
            while let Ok((raw, swap, reply)) = jobs_rx.recv() {
                if reply.send(decode_batch(&mut decoder, raw, swap)).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| PipelineError::Internal(format!("cannot start the decode thread: {e}")))?;
    Ok((jobs_tx, helper))
}

/// The path of flush requests: the reading thread's sender into the transform thread, while it reads.
type FlushPath = Arc<std::sync::Mutex<Option<std::sync::mpsc::SyncSender<Step>>>>;

/// A decoded batch on its way to the transform thread, with the chain to use from it on, if that
/// changed.
struct Decoding {
    swap: Option<Chain>,
    raw: RawBatch,
    decoded: Decoded,
    /// Time spent decoding it.
    busy: Duration,
}

/// The failure a panicked pipeline thread reports.
fn worker_panic(stage: &str, panic: Box<dyn std::any::Any + Send>) -> PipelineError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    PipelineError::Internal(format!(
        "the {stage} worker panicked: {message}; nothing after the last commit was committed"
    ))
}

/// One batch's worth of work handed from the transform thread to the writer.
struct Work {
    raw: RawBatch,
    batch: ChangeBatch,
    dead: Vec<DeadLetter>,
    decode: DecodeStats,
    chain: ChainStats,
    filtered: u64,
    /// Identity of the chain that processed this batch.
    chain_id: Arc<str>,
    /// A mirror table's keyed events (taken before the chain).
    mirror: Option<MirrorEvents>,
    /// Time spent decoding and transforming it.
    busy: Duration,
}

/// Messages from the pipeline threads to the writer.
enum Msg {
    Work(Box<Work>),
    /// Commit everything received so far, then answer.
    Flush(std::sync::mpsc::Sender<Result<(), String>>),
    Failed(PipelineError),
    /// The commit in flight finished (raised on the loop itself).
    Landed,
    /// The source has caught up: what is pending may be committed now.
    CaughtUp,
}

/// What a run can be given besides config, source and chain.
#[derive(Default)]
pub struct RunOptions {
    /// Replacement chains, applied between batches (hot reload).
    pub updates: Option<Box<dyn ChainUpdates>>,
    /// Set to stop reading: the batch in flight finishes, everything pending is committed.
    pub stop: Arc<AtomicBool>,
}

/// Leaves out events of other tables or operations (`[filter]`).
struct EventFilter {
    tables: Vec<(String, String)>,
    ops: Vec<Op>,
}

impl EventFilter {
    fn new(cfg: &FilterConfig) -> Self {
        Self {
            tables: cfg
                .tables
                .iter()
                .filter_map(|t| t.split_once('.').map(|(s, t)| (s.to_string(), t.to_string())))
                .collect(),
            ops: cfg.operations.iter().filter_map(|o| Op::from_debezium(o)).collect(),
        }
    }

    /// Whether events of source table `t` are wanted.
    fn takes_table(&self, t: &crate::change::TableRef) -> bool {
        self.tables.is_empty() || self.tables.iter().any(|(s, n)| *s == t.schema && *n == t.table)
    }

    /// Removes unwanted events; returns how many.
    fn apply(&self, batch: &mut ChangeBatch) -> Result<u64, PipelineError> {
        if self.tables.is_empty() && self.ops.is_empty() {
            return Ok(0);
        }
        let table_ok: Vec<bool> = batch
            .tables
            .iter()
            .map(|t| {
                self.tables.is_empty() || self.tables.iter().any(|(s, n)| *s == t.schema && *n == t.table)
            })
            .collect();
        let keep: Vec<bool> = batch
            .ops
            .iter()
            .zip(&batch.sources)
            .map(|(op, src)| table_ok[src.table as usize] && (self.ops.is_empty() || self.ops.contains(op)))
            .collect();
        let dropped = keep.iter().filter(|k| !**k).count() as u64;
        batch.retain(&keep).map_err(|e| PipelineError::Internal(format!("filtering a batch: {e}")))?;
        Ok(dropped)
    }
}

/// What a source can ask of the running pipeline.
struct Handle {
    /// Flush requests go behind the batches already read (gone once reading has ended).
    flush_path: FlushPath,
    runtime: tokio::runtime::Handle,
    cfg: Config,
    /// Records the source skipped because the table held them.
    held: Arc<std::sync::atomic::AtomicU64>,
}

impl PipelineHandle for Handle {
    fn flush(&self) -> Result<(), FlushError> {
        let (reply, answer) = std::sync::mpsc::channel();
        let path = self.flush_path.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let tx = path.ok_or(FlushError::Stopped)?;
        tx.send(Step::Flush(reply)).map_err(|_| FlushError::Stopped)?;
        drop(tx);
        answer.recv().map_err(|_| FlushError::Stopped)?.map_err(FlushError::Failed)
    }

    fn table_positions(&self) -> Result<BTreeMap<String, i64>, String> {
        self.runtime.block_on(async {
            let catalog = catalog::open(&self.cfg).await.map_err(|e| e.to_string())?;
            let ident =
                table::ident(&self.cfg.table.namespace, &self.cfg.table.name).map_err(|e| e.to_string())?;
            let t = catalog.load(&ident).await.map_err(|e| e.to_string())?;
            Ok(committed_positions(&t, &self.cfg.pipeline_id))
        })
    }

    fn already_held(&self, records: u64) {
        self.held.fetch_add(records, Ordering::Relaxed);
    }
}

/// Runs the whole input through the configured chain into the table (batch mode).
pub async fn run_file(cfg: &Config, source: FileSource, metrics: &Metrics) -> Result<Summary, PipelineError> {
    let chain = load_chain(cfg)?;
    run(cfg, source, chain, metrics, RunOptions::default()).await
}

/// Runs `source` through `chain` into the table until the source ends or `options.stop` is set.
/// Commits when `sink.commit_rows` rows or `sink.commit_bytes` input bytes are pending, every
/// `sink.processing_interval_seconds`, at every chain change, when the source asks (before Kafka
/// partitions move), and at the end.
pub async fn run<S: Source + 'static>(
    cfg: &Config,
    source: S,
    chain: Chain,
    metrics: &Metrics,
    options: RunOptions,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let stages_at_start = metrics::stage_seconds();
    let catalog = Arc::new(catalog::open(cfg).await?);
    let spec = table_spec(cfg, Some(&chain))?;
    let (table, dlq) = prepare_tables_as(cfg, &catalog, spec).await?;
    let chain_id: Arc<str> = Arc::from(chain.identity());
    let removed = chain.removed_columns();
    let declared: HashMap<String, ColType> =
        table::column_types(&table).into_iter().filter(|(n, _)| !removed.contains(n)).collect();

    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUED_BATCHES);
    let (committed_tx, committed_rx) = std::sync::mpsc::channel::<BTreeMap<String, i64>>();
    let held = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Two threads feed the writer: one reads and decodes (handing every batch it can to a decode
    // helper), the other filters, keys and runs the chain; batches cross between them whole and in
    // source order.
    let (decoded_tx, decoded_rx) = std::sync::mpsc::sync_channel::<Step>(DECODED_BATCHES);
    let flush_path: FlushPath = Arc::new(std::sync::Mutex::new(Some(decoded_tx.clone())));
    let handle: Arc<dyn PipelineHandle> = Arc::new(Handle {
        flush_path: flush_path.clone(),
        runtime: tokio::runtime::Handle::current(),
        cfg: cfg.clone(),
        held: held.clone(),
    });
    let batch_size = cfg.sink.batch_size;
    let decimal = cfg.decode.decimal_handling;
    let evolve_schema = cfg.table.evolve_schema;
    let mirror_mode = cfg.table.mode == TableMode::Mirror;
    // The key: configured, else the table's identifier fields, else the record keys' fields.
    let table_key =
        if cfg.table.key.is_empty() { table::identifier_fields(&table) } else { cfg.table.key.clone() };
    let key_types = declared.clone();
    let truncates_wanted = cfg.filter.operations.is_empty() || cfg.filter.operations.iter().any(|o| o == "t");
    let filter = EventFilter::new(&cfg.filter);
    let source_name = source.name().to_string();
    // Bytes the reader has read (u64::MAX: the source does not say).
    let total_bytes = source.progress().and_then(|(_, total)| total);
    let bytes_read = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let reader_bytes = bytes_read.clone();
    let stop = options.stop.clone();
    let mut updates = options.updates;
    let reader_tx = tx.clone();
    let (helper_tx, helper) =
        spawn_decode_helper(Decoder::new(declared.clone(), decimal).widening(evolve_schema))?;
    let reader = std::thread::Builder::new()
        .name("read-decode".into())
        .spawn(move || {
            // The reading loop; `reader_tx` stays outside it, so a panic can still be reported.
            let body = std::panic::AssertUnwindSafe(|| {
                let mut source = source;
                let mut decoder = Decoder::new(declared, decimal).widening(evolve_schema);
                if let Err(e) = source.start(handle) {
                    let _ = reader_tx.blocking_send(Msg::Failed(e));
                    return source;
                }
                while !stop.load(Ordering::Relaxed) {
                    while let Ok(positions) = committed_rx.try_recv() {
                        source.committed(&positions);
                    }
                    // A new chain applies from the next batch read.
                    let swap = updates.as_mut().and_then(|u| u.poll());
                    let mut raw = RawBatch::default();
                    match source.next_batch(&mut raw, batch_size) {
                        Ok(false) => break,
                        Ok(true) if raw.is_empty() => {
                            // Nothing new, but the writer learns that the source has caught up.
                            if raw.caught_up && decoded_tx.send(Step::CaughtUp).is_err() {
                                break;
                            }
                            continue;
                        }
                        Ok(true) => {}
                        Err(e) => {
                            let _ = reader_tx.blocking_send(Msg::Failed(e));
                            break;
                        }
                    }
                    if let Some((read, _)) = source.progress() {
                        reader_bytes.store(read, Ordering::Relaxed);
                    }
                    // The helper takes the batch if it is free; otherwise this thread decodes it.
                    let (reply, result) = std::sync::mpsc::sync_channel(1);
                    let (raw, swap) = match helper_tx.try_send((raw, swap, reply)) {
                        Ok(()) => {
                            if decoded_tx.send(Step::Ahead(result)).is_err() {
                                break;
                            }
                            continue;
                        }
                        Err(
                            std::sync::mpsc::TrySendError::Full((raw, swap, _))
                            | std::sync::mpsc::TrySendError::Disconnected((raw, swap, _)),
                        ) => (raw, swap),
                    };
                    if decoded_tx.send(Step::Batch(decode_batch(&mut decoder, raw, swap))).is_err() {
                        break;
                    }
                }
                source
            });
            let mut source = match std::panic::catch_unwind(body) {
                Ok(source) => Some(source),
                Err(panic) => {
                    let _ = reader_tx.blocking_send(Msg::Failed(worker_panic("read/decode", panic)));
                    None
                }
            };
            // Acknowledge what the last commits made durable before the source goes away.
            flush_path.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(decoded_tx);
            drop(reader_tx);
            while let Ok(positions) = committed_rx.recv() {
                if let Some(source) = source.as_mut() {
                    source.committed(&positions);
                }
            }
        })
        .map_err(|e| PipelineError::Internal(format!("cannot start the reader thread: {e}")))?;
    let worker_stop = options.stop.clone();
    let worker = std::thread::Builder::new()
        .name("transform".into())
        .spawn(move || {
            let body = std::panic::AssertUnwindSafe(|| {
                let mut chain = chain;
                let mut chain_id: Arc<str> = Arc::from(chain.identity());
                let fail = |e| {
                    let _ = tx.blocking_send(Msg::Failed(e));
                };
                while let Ok(step) = decoded_rx.recv() {
                    let Decoding { swap, mut raw, decoded, busy } = match step {
                        Step::Batch(d) => *d,
                        Step::Flush(reply) => {
                            // Behind every batch read before the request.
                            if tx.blocking_send(Msg::Flush(reply)).is_err() {
                                break;
                            }
                            continue;
                        }
                        Step::CaughtUp => {
                            if tx.blocking_send(Msg::CaughtUp).is_err() {
                                break;
                            }
                            continue;
                        }
                        Step::Ahead(result) => match result.recv() {
                            Ok(d) => *d,
                            Err(_) => {
                                fail(PipelineError::Internal(
                                    "the decode thread stopped; nothing after the last commit was committed"
                                        .into(),
                                ));
                                break;
                            }
                        },
                    };
                    let started = Instant::now();
                    // Stopping (a signal, or the chain halted): batches decoded ahead are left for
                    // the next run, which resumes at the positions committed.
                    if worker_stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(next) = swap {
                        chain = next;
                    }
                    // A swap or a quarantine: the rows from here on record the chain that made them.
                    let identity = chain.identity();
                    if *chain_id != *identity {
                        chain_id = Arc::from(identity);
                    }
                    crate::fault::point("worker");
                    let mut dead = decoded.dead_letters;
                    let mut batch = decoded.batch;
                    let filtered = match filter.apply(&mut batch) {
                        Ok(n) => n,
                        Err(e) => {
                            fail(e);
                            break;
                        }
                    };
                    let mirror = mirror_mode.then(|| {
                        let key = match (&table_key, &decoded.key_fields) {
                            (k, _) if !k.is_empty() => k.clone(),
                            (_, Some(k)) => k.clone(),
                            _ => Vec::new(),
                        };
                        let truncates = if truncates_wanted {
                            decoded
                                .truncates
                                .into_iter()
                                .filter(|(_, t)| filter.takes_table(t))
                                .map(|(o, _)| o)
                                .collect()
                        } else {
                            Vec::new()
                        };
                        mirror::key_events(&mut batch, truncates, &key, &key_types, &mut dead)
                    });
                    let chain_stats = chain.apply_at(&mut batch, &mut dead, &|o| raw.position(o as usize));
                    let mut mirror = mirror;
                    if let Some(m) = mirror.as_mut() {
                        m.keep_values_of_left_out(&batch.origins);
                    }
                    // Only dead letters need the record text downstream: a queued batch holds
                    // its decoded rows, not its input too.
                    let mut letters: Vec<bool> = vec![false; raw.len()];
                    for d in &dead {
                        letters[d.origin as usize] = true;
                    }
                    raw.keep_bytes_of(|i| letters[i]);
                    let work = Work {
                        raw,
                        batch,
                        dead,
                        decode: decoded.stats,
                        chain: chain_stats,
                        filtered,
                        chain_id: chain_id.clone(),
                        mirror,
                        busy: busy + started.elapsed(),
                    };
                    metrics::stage_time(Stage::Chain, started.elapsed());
                    if tx.blocking_send(Msg::Work(Box::new(work))).is_err() {
                        break;
                    }
                }
            });
            if let Err(panic) = std::panic::catch_unwind(body) {
                let _ = tx.blocking_send(Msg::Failed(worker_panic("transform", panic)));
            }
        })
        .map_err(|e| PipelineError::Internal(format!("cannot start the worker thread: {e}")))?;

    let (props, small_props) = parquet_properties(&cfg.sink)
        .map_err(|m| crate::error::ConfigError::Invalid { key: "sink.compression".into(), message: m })?;
    let tables_cfg = TablesConfig {
        pipeline_id: cfg.pipeline_id.clone(),
        evolve_schema: cfg.table.evolve_schema,
        files: FileSettings {
            props,
            small_props,
            target_file_size: cfg.sink.target_file_size_bytes,
            buffer_bytes: cfg.sink.write_buffer_bytes,
        },
        commit_rows: cfg.sink.commit_rows,
        commit_bytes: cfg.sink.commit_bytes,
        interval: Duration::from_secs(cfg.sink.processing_interval_seconds),
        caught_up_interval: (cfg.sink.caught_up_commit_ms > 0)
            .then(|| Duration::from_millis(cfg.sink.caught_up_commit_ms)),
        maintenance: cfg.maintenance.clone(),
        mirror: mirror_mode,
    };
    let mut tables =
        Tables::new(catalog, table, dlq, tables_cfg, chain_id.clone(), metrics.clone(), committed_tx);
    let mut summary = Summary {
        table: format!("{}.{}.{}", cfg.catalog.name, cfg.table.namespace, cfg.table.name),
        dead_letter_table: format!(
            "{}.{}.{}",
            cfg.catalog.name,
            cfg.table.namespace,
            cfg.dead_letter_table()
        ),
        chain: chain_id.to_string(),
        ..Default::default()
    };
    let mut last_report = Instant::now();
    let mut progress = progress::Progress::new(&source_name, total_bytes);
    let mut failure = None;
    loop {
        let wait = tables.until_due().max(Duration::from_millis(10));
        let msg = tokio::select! {
            // A commit in flight lands (is acknowledged) as soon as it is done.
            _ = tables.flight_finished() => Some(Msg::Landed),
            m = tokio::time::timeout(wait, rx.recv()) => match m {
                Err(_) => None,
                Ok(None) => break,
                Ok(Some(m)) => Some(m),
            },
        };
        let result = match msg {
            None => Ok(()),
            Some(Msg::Landed) => tables.land().await,
            Some(Msg::CaughtUp) => {
                tables.caught_up();
                Ok(())
            }
            Some(Msg::Failed(e)) => {
                failure = Some(e);
                break;
            }
            Some(Msg::Flush(reply)) => {
                let r = tables.commit_all().await;
                let _ = reply.send(r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                r
            }
            Some(Msg::Work(work)) => {
                record_stats(&mut summary, metrics, &work);
                let Work { raw, batch, dead, chain_id, mirror, busy, .. } = *work;
                let started = Instant::now();
                let r = tables.accept(&raw, batch, dead, chain_id, mirror).await;
                metrics::stage_time(Stage::Encode, started.elapsed());
                let seconds = (busy + started.elapsed()).as_secs_f64();
                metrics.reference.batch_duration_seconds.observe(seconds);
                r
            }
        };
        let result = match result {
            Ok(()) if tables.due() => tables.flush().await,
            other => other,
        };
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
        if last_report.elapsed() >= Duration::from_millis(250) {
            last_report = Instant::now();
            let read = bytes_read.load(Ordering::Relaxed);
            progress.update(&progress::Snapshot {
                records: summary.records,
                events_per_second: (summary.events as f64 / started.elapsed().as_secs_f64()) as u64,
                rows_pending: tables.pending_rows() as u64,
                rows_committed: tables.stats().rows_committed,
                bytes: (read != u64::MAX).then_some((read, total_bytes)),
            });
        }
    }
    drop(rx);
    drop(progress);
    let flushed = match failure {
        Some(e) => Err(e),
        None => match tables.commit_all().await {
            Ok(()) => tables.close().await,
            Err(e) => Err(e),
        },
    };
    let stats = tables.stats();
    summary.chain = tables.chain_id().to_string();
    summary.rows_committed = stats.rows_committed;
    summary.commits = stats.commits;
    summary.data_files = stats.data_files;
    summary.maintenance_runs = stats.maintenance_runs;
    summary.dead_letters = stats.dead_letters;
    summary.already_committed = stats.already_committed + held.load(Ordering::Relaxed);
    summary.dead_letter_reasons = top_reasons(&stats.reasons, 3);
    drop(tables); // closes the acknowledgement channel so the worker can finish
    let _ = worker.join();
    let _ = reader.join();
    let _ = helper.join();
    flushed?;
    summary.seconds = started.elapsed().as_secs_f64();
    let stages_now = metrics::stage_seconds();
    summary.stage_seconds = Stage::ALL
        .iter()
        .zip(stages_now.iter().zip(stages_at_start))
        .map(|(s, (now, then))| (s.name(), ((now - then) * 1000.0).round() / 1000.0))
        .collect();
    summary.events_per_second = summary.events as f64 / summary.seconds.max(1e-9);
    let considered = summary.records.saturating_sub(stats.already_committed);
    warn_if_needed(&mut summary, considered, &source_name);
    Ok(summary)
}

/// Builds a table's chain, and the hot reload that follows its configuration, for a multi-table
/// host (the binary's plugin loading: caches, watching, quarantine).
pub type ChainFactory = Arc<
    dyn Fn(&Config, &Metrics) -> Result<(Chain, Option<Box<dyn ChainUpdates>>), PipelineError> + Send + Sync,
>;

/// Runs a host that writes several tables (`[[tables]]`, `[routing]`): `source` is read once and
/// each record goes to its table, whose pipeline (decode, chain, commits) is [`run`] fed by the
/// router. A table's pipeline starts when its first record arrives. Every table holds its own
/// positions; the source acknowledges a position once every table it fed holds it. A table that
/// takes batches slowly holds the reader back, and so the other tables; a table whose pipeline
/// fails stops the host (the others commit what they have; each resumes from its own positions).
pub async fn run_routed<S: Source + 'static>(
    cfg: &Config,
    source: S,
    make_chain: ChainFactory,
    metrics: &metrics::MetricsSet,
    source_metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let tables: route::Queues = Arc::default();
    let held = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handle = Arc::new(route::RouterHandle {
        tables: tables.clone(),
        runtime: tokio::runtime::Handle::current(),
        cfg: cfg.clone(),
        held: held.clone(),
    });
    let (acks_tx, acks_rx) = std::sync::mpsc::channel();
    let (create_tx, mut create_rx) = mpsc::unbounded_channel::<route::Create>();
    let progress = Arc::new(route::ReadProgress::default());
    let mut starter = TableStarter {
        cfg,
        make_chain,
        metrics,
        acks: acks_tx,
        progress: progress.clone(),
        stop: stop.clone(),
        runs: Vec::new(),
    };
    // The configured tables start now (a chain that does not load stops the host before it reads);
    // default-routed ones with their first record.
    let mut started_tables = HashMap::new();
    for i in 0..cfg.entries().len() {
        let target = route::Target::Entry(i);
        let (id, queue) = starter.start(&target)?;
        tables.lock().unwrap_or_else(|e| e.into_inner()).push(queue);
        started_tables.insert(target, id);
    }
    let router = route::Router {
        progress,
        routes: route::Routes::new(cfg),
        started: started_tables,
        tables,
        create: create_tx,
        acks: acks_rx,
        stop: stop.clone(),
        batch_size: cfg.sink.batch_size,
        metrics: source_metrics,
    };
    let reader = std::thread::Builder::new()
        .name("route".into())
        .spawn(move || router.run(source, handle))
        .map_err(|e| PipelineError::Internal(format!("cannot start the router thread: {e}")))?;
    while let Some(route::Create { target, reply }) = create_rx.recv().await {
        let _ = reply.send(starter.start(&target).map_err(|e| e.to_string()));
    }
    let TableStarter { runs, acks, .. } = starter;
    drop(acks);
    let mut summary = Summary { table: String::new(), ..Default::default() };
    let mut failure = None;
    for (label, task) in runs {
        match task.await {
            Ok(Ok(s)) => summary.tables.push(s),
            Ok(Err(e)) => {
                tracing::error!(table = %label, error = %e, "table pipeline failed");
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(PipelineError::Internal(format!(
                    "{label}: the pipeline task ended abnormally: {e}"
                )));
            }
        }
    }
    let routed = reader.join().map_err(|p| worker_panic("route", p))?;
    if let Some(e) = failure {
        return Err(e);
    }
    let routed = routed?;
    if summary.tables.len() == 1 {
        // One table took everything: its run is the host's.
        let mut one = summary.tables.pop().expect("one table");
        one.records = routed.records;
        one.filtered += routed.unrouted;
        let skipped = held.load(Ordering::Relaxed);
        one.already_committed += skipped;
        if skipped > 0 && one.records == 0 {
            warn_if_needed(&mut one, 0, "the input");
        }
        one.seconds = started.elapsed().as_secs_f64();
        return Ok(one);
    }
    summary.records = routed.records;
    summary.filtered = routed.unrouted;
    summary.already_committed = held.load(Ordering::Relaxed);
    if summary.already_committed > 0 && summary.records == 0 {
        warn_if_needed(&mut summary, 0, "the input");
    }
    for t in &summary.tables {
        summary.events += t.events;
        summary.rows_committed += t.rows_committed;
        summary.dropped += t.dropped;
        summary.rejected += t.rejected;
        summary.plugin_failures += t.plugin_failures;
        summary.dead_letters += t.dead_letters;
        summary.tombstones += t.tombstones;
        summary.messages += t.messages;
        summary.truncates += t.truncates;
        summary.toast_placeholders += t.toast_placeholders;
        summary.filtered += t.filtered;
        summary.commits += t.commits;
        summary.data_files += t.data_files;
        summary.already_committed += t.already_committed;
    }
    summary.table = summary.tables.iter().map(|t| t.table.as_str()).collect::<Vec<_>>().join(", ");
    summary.seconds = started.elapsed().as_secs_f64();
    summary.events_per_second = summary.events as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}

/// Starts the pipelines of a multi-table host's tables.
struct TableStarter<'a> {
    cfg: &'a Config,
    make_chain: ChainFactory,
    metrics: &'a metrics::MetricsSet,
    acks: std::sync::mpsc::Sender<(usize, crate::sink::commit::Positions)>,
    progress: Arc<route::ReadProgress>,
    stop: Arc<AtomicBool>,
    /// Each table's label and running pipeline, in id order.
    runs: Vec<(String, tokio::task::JoinHandle<Result<Summary, PipelineError>>)>,
}

impl TableStarter<'_> {
    /// Starts the pipeline of `target`'s table: its id and where its batches go.
    fn start(&mut self, target: &route::Target) -> Result<(usize, route::Queue), PipelineError> {
        let cfg = self.cfg;
        let table = match target {
            route::Target::Entry(i) => cfg.entries()[*i].clone(),
            route::Target::Default(ns, name) => cfg.routing.table(ns, name),
            route::Target::Nowhere => return Err(PipelineError::Internal("no table to start".into())),
        };
        let table_cfg = cfg.for_table(&table);
        let label = format!("{}.{}.{}", cfg.catalog.name, table.namespace, table.name);
        let m = Metrics::for_table(&cfg.pipeline_id, &label);
        self.metrics.add(&m);
        let (chain, updates) = (self.make_chain)(&table_cfg, &m)
            .map_err(|e| PipelineError::Internal(format!("table {label}: {e}")))?;
        tracing::info!(table = %label, chain = %chain.identity(), "table pipeline starting");
        let (tx, rx) = std::sync::mpsc::sync_channel(route::QUEUED_PER_TABLE);
        let id = self.runs.len();
        let src = route::RouteSource::new(id, label.clone(), rx, self.acks.clone(), self.progress.clone());
        let options = RunOptions { updates, stop: self.stop.clone() };
        let task = tokio::spawn(async move { run(&table_cfg, src, chain, &m, options).await });
        self.runs.push((label, task));
        Ok((id, route::Queue { table: table::ident(&table.namespace, &table.name)?, tx }))
    }
}

/// Says prominently when a run wrote mostly dead letters, or nothing because the table already
/// held the input.
fn warn_if_needed(summary: &mut Summary, considered: u64, source: &str) {
    if summary.already_committed > 0 && considered == 0 {
        tracing::info!(
            source,
            records = summary.records,
            "the table already holds this input: nothing to commit (pass another --source-id, or a new pipeline id, to load it again)"
        );
        return;
    }
    if considered == 0 || summary.dead_letters * 10 < considered {
        return;
    }
    let reasons: Vec<String> =
        summary.dead_letter_reasons.iter().map(|(r, n)| format!("{n} × {r}")).collect();
    let message = format!(
        "{} of {} records ({:.0} %) went to the dead-letter table {}; most frequent reasons: {}",
        summary.dead_letters,
        considered,
        100.0 * summary.dead_letters as f64 / considered as f64,
        summary.dead_letter_table,
        reasons.join("; ")
    );
    tracing::warn!("{message}");
    summary.warning = Some(message);
}

fn record_stats(s: &mut Summary, m: &Metrics, w: &Work) {
    let d = &w.decode;
    let c = &w.chain;
    s.records += d.records;
    s.events += d.events;
    s.tombstones += d.tombstones;
    s.messages += d.messages;
    s.truncates += d.truncates;
    s.toast_placeholders += d.toast_placeholders;
    s.filtered += w.filtered;
    s.dropped += c.dropped;
    s.rejected += c.rejected;
    s.plugin_failures += c.plugin_failures;
    m.records.inc_by(d.records);
    m.events.inc_by(d.events);
    m.tombstones.inc_by(d.tombstones);
    m.messages.inc_by(d.messages);
    m.truncates.inc_by(d.truncates);
    m.toast_placeholders.inc_by(d.toast_placeholders);
    m.filtered.inc_by(w.filtered);
    m.dropped.inc_by(c.dropped);
    m.batches.inc();
    for op in Op::ALL {
        let n = d.by_op[op.index()];
        if n > 0 {
            m.reference.events_processed.with_label_values(&[op.debezium()]).inc_by(n);
        }
    }
    if c.plugin_failures > 0
        && let Some(p) =
            w.dead.iter().find_map(|d| (d.stage == "transform").then_some(d.plugin.as_deref()).flatten())
    {
        m.plugin_failures.with_label_values(&[p]).inc_by(c.plugin_failures);
    }
}

/// Runs maintenance once on every table of the configuration and its dead-letter table (and, for a
/// routing host, every table of the default template's namespace).
pub async fn maintain(cfg: &Config) -> Result<Vec<crate::sink::maintain::MaintenanceReport>, PipelineError> {
    let catalog = catalog::open(cfg).await?;
    // The configured table and its dead letters; a routing host's other tables and the tables its
    // default created (every table of the template's namespace).
    let mut idents = vec![
        table::ident(&cfg.table.namespace, &cfg.table.name)?,
        table::ident(&cfg.table.namespace, &cfg.dead_letter_table())?,
    ];
    let mains =
        cfg.tables.iter().map(|t| table::ident(&t.namespace, &t.name)).collect::<Result<Vec<_>, _>>()?;
    for ident in mains.into_iter().chain(route::default_routed_tables(cfg, &catalog).await) {
        let dead_letters = format!("{}_dlq", ident.name());
        idents.push(iceberg::TableIdent::new(ident.namespace().clone(), dead_letters));
        idents.push(ident);
    }
    let mut seen = std::collections::HashSet::new();
    idents.retain(|i| seen.insert(i.clone()));
    let mut reports = Vec::new();
    for ident in idents {
        if !catalog.iceberg().table_exists(&ident).await.unwrap_or(false) {
            continue;
        }
        let t = catalog.load(&ident).await?;
        reports.push(crate::sink::maintain::run(&catalog, t, &cfg.maintenance).await?);
    }
    Ok(reports)
}

/// Applies a schema or property change to the configured table (none: only describes it); returns
/// the table's columns (name and type, in order), partition spec, sort order and properties afterwards.
pub async fn change_table(
    cfg: &Config,
    change: Option<&crate::sink::schema_change::SchemaChange>,
) -> Result<serde_json::Value, PipelineError> {
    let catalog = catalog::open(cfg).await?;
    let ident = table::ident(&cfg.table.namespace, &cfg.table.name)?;
    if !catalog.iceberg().table_exists(&ident).await.unwrap_or(false) {
        return Err(PipelineError::Sink(SinkError::Refused {
            table: ident.to_string(),
            message: "the table does not exist: run the host (or `cdc-host create-table`) first".into(),
        }));
    }
    let mut t = catalog.load(&ident).await?;
    if let Some(change) = change {
        t = crate::sink::schema_change::apply(&catalog, t, change).await?;
    }
    let metadata = t.metadata();
    let schema = metadata.current_schema();
    let name_of = |id: i32| schema.name_by_field_id(id).unwrap_or("?").to_string();
    let partition: Vec<String> = metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| format!("{}({})", f.transform, name_of(f.source_id)))
        .collect();
    let sort: Vec<String> =
        metadata.default_sort_order().fields.iter().map(|f| name_of(f.source_id)).collect();
    let columns: Vec<serde_json::Value> = metadata
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| serde_json::json!({ "id": f.id, "name": f.name, "type": f.field_type.to_string(), "required": f.required }))
        .collect();
    Ok(serde_json::json!({
        "table": ident.to_string(),
        "schema_id": metadata.current_schema_id(),
        "columns": columns,
        "identifier_fields": table::identifier_fields(&t),
        "partition": partition,
        "sort": sort,
        "snapshot_id": metadata.current_snapshot_id(),
        "properties": metadata.properties(),
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{SourceInfo, TableRef};

    #[test]
    fn filter_keeps_configured_tables_and_operations() {
        let src = |table| SourceInfo { table, lsn: None, txid: None, ts_ms: 0, snapshot: false };
        let mut batch = ChangeBatch {
            ops: vec![Op::Create, Op::Delete, Op::Update, Op::Create],
            sources: vec![src(0), src(0), src(1), src(1)],
            tables: vec![
                TableRef { schema: "public".into(), table: "customers".into() },
                TableRef { schema: "public".into(), table: "orders".into() },
            ],
            origins: vec![0, 1, 2, 3],
            ..Default::default()
        };
        let all = EventFilter::new(&FilterConfig::default());
        assert_eq!(all.apply(&mut batch.clone()).unwrap(), 0);
        let f = EventFilter::new(&FilterConfig {
            tables: vec!["public.customers".into()],
            operations: vec!["c".into(), "u".into()],
        });
        assert_eq!(f.apply(&mut batch).unwrap(), 3);
        assert_eq!(batch.origins, vec![0]);
        // Truncates of a mirror table follow the table filter too.
        assert!(f.takes_table(&TableRef { schema: "public".into(), table: "customers".into() }));
        assert!(!f.takes_table(&TableRef { schema: "public".into(), table: "orders".into() }));
    }
}
