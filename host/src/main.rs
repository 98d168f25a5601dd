//! `cdc-host`: the command line. Flags override environment variables, which override the config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use cdc_host::config::Config;
use cdc_host::error::{ConfigError, PipelineError};
use cdc_host::metrics::{Metrics, MetricsSet};
use cdc_host::pipeline;
use cdc_host::source::{FileSource, kafka};
use cdc_host::transform::{Chain, Halt, Loader, ReloadOptions, Reloader};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// jemalloc: less CPU than the system allocator for the many short-lived buffers of decoding and
/// Parquet writing, and a smaller peak RSS for a mirror table (measured in `benches/realistic.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One arena: batches are made on one pipeline thread and freed on another, and with an arena per
/// thread each arena keeps its own freed pages (a mirror's peak RSS: 360–368 MB against 401–402 MB
/// with the default of 4 per core, at the same speed). `_RJEM_MALLOC_CONF` still overrides it.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 10] = b"narenas:1\0";

#[derive(Parser)]
#[command(
    name = "cdc-host",
    version,
    about = "Debezium change events → WebAssembly transforms → Apache Iceberg"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Clone, Copy, Default, clap::ValueEnum)]
enum KafkaMode {
    #[default]
    Streaming,
    Batch,
}

#[derive(Subcommand)]
enum Command {
    /// Process input into the table (the default command).
    Run(RunArgs),
    /// Create the table (and its dead-letter table) from the configured definition, then exit.
    CreateTable,
    /// Maintain the table and its dead-letter table once: compact small files, expire old snapshots
    /// and delete the files only they reached, delete orphan files. Safe while a host runs (every
    /// change is a compare-and-swap commit); keep --orphans-older-than above the commit interval.
    Maintain(MaintainArgs),
    /// Load the plugin chain and list it: identity, content hash, compile cache, columns read, written
    /// and removed.
    Plugins,
    /// Plugin author tools: `plugin new --lang LANG NAME`, `plugin test PLUGIN.wasm --input FILE`.
    #[command(subcommand)]
    Plugin(cdc_host::transform::tooling::PluginCommand),
    /// Change the table's schema or properties, committed like any other change (and refused where
    /// Iceberg forbids it). Stop the hosts writing the table first, and update their config to match
    /// (e.g. a renamed declared column).
    #[command(subcommand)]
    Table(TableCommand),
}

/// `cdc-host table ...`: one change to the configured table (`--table`, `--namespace`).
#[derive(Subcommand, Clone)]
enum TableCommand {
    /// Print the table's columns, identifier fields, partition spec, sort order and properties.
    Show,
    /// Add an optional column: `add-column NAME TYPE` (types as in the config: long, string,
    /// decimal(12,2), timestamptz, ...).
    AddColumn {
        name: String,
        #[arg(value_name = "TYPE")]
        ty: String,
        /// Column documentation.
        #[arg(long)]
        doc: Option<String>,
    },
    /// Rename a column (data files keep matching it by field id).
    RenameColumn { from: String, to: String },
    /// Drop a column from the current schema (not an identifier, partition or sort column).
    DropColumn { name: String },
    /// Widen a column's type: int → long, float → double, decimal(P,S) → decimal(P',S) with P' > P.
    WidenColumn {
        name: String,
        #[arg(value_name = "TYPE")]
        ty: String,
    },
    /// Set a table property (`set-property KEY VALUE`), or remove it (`set-property KEY --remove`).
    SetProperty {
        key: String,
        #[arg(required_unless_present = "remove")]
        value: Option<String>,
        #[arg(long, conflicts_with = "value")]
        remove: bool,
    },
}

impl TableCommand {
    /// The change to make (`None`: only show the table).
    fn change(self) -> Result<Option<cdc_host::sink::schema_change::SchemaChange>> {
        use cdc_host::schema::parse_type;
        use cdc_host::sink::schema_change::SchemaChange;
        let ty = |t: &str| parse_type(t).map_err(|e| anyhow::anyhow!(e));
        Ok(Some(match self {
            TableCommand::Show => return Ok(None),
            TableCommand::AddColumn { name, ty: t, doc } => {
                SchemaChange::AddColumn { ty: ty(&t)?, name, doc }
            }
            TableCommand::RenameColumn { from, to } => SchemaChange::RenameColumn { from, to },
            TableCommand::DropColumn { name } => SchemaChange::DropColumn { name },
            TableCommand::WidenColumn { name, ty: t } => SchemaChange::WidenColumn { ty: ty(&t)?, name },
            TableCommand::SetProperty { key, value, remove } => {
                SchemaChange::SetProperty { key, value: if remove { None } else { value } }
            }
        }))
    }
}

/// `cdc-host maintain` settings (override `[maintenance]`).
#[derive(Args, Clone)]
struct MaintainArgs {
    /// Snapshots of `main` to keep.
    #[arg(long)]
    keep_last: Option<usize>,
    /// Expire snapshots older than this many seconds (within --keep-last too).
    #[arg(long)]
    max_snapshot_age_seconds: Option<u64>,
    /// Delete unreferenced files older than this many seconds.
    #[arg(long)]
    orphans_older_than_seconds: Option<u64>,
    /// Compact a partition once it has this many small files.
    #[arg(long)]
    min_input_files: Option<usize>,
}

/// Settings shared by every command.
#[derive(Args, Clone)]
struct Common {
    /// TOML config file; default: the built-in reference pipeline (config/cdc-host.toml).
    #[arg(long, global = true, env = "CDC_HOST_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of plugin components (`*.wasm`).
    #[arg(long, global = true)]
    plugins: Option<PathBuf>,
    /// Iceberg warehouse directory.
    #[arg(long, global = true, env = "ICEBERG_WAREHOUSE")]
    warehouse: Option<PathBuf>,
    /// SQL catalog URI (default: sqlite:<warehouse>/catalog.db).
    #[arg(long, global = true)]
    catalog_uri: Option<String>,
    /// Catalog name.
    #[arg(long, global = true, env = "ICEBERG_CATALOG")]
    catalog: Option<String>,
    /// Table namespace.
    #[arg(long, global = true, env = "ICEBERG_NAMESPACE")]
    namespace: Option<String>,
    /// Table name.
    #[arg(long, global = true, env = "ICEBERG_TABLE")]
    table: Option<String>,
    /// Pipeline id written to `_pipeline_id` and snapshot summaries.
    #[arg(long, global = true)]
    pipeline_id: Option<String>,
    /// `append` (the change log) or `mirror` (one row per source key) — `[table] mode`.
    #[arg(long, global = true)]
    table_mode: Option<cdc_host::config::TableMode>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    /// Debezium records, one JSON object per line (`-` for stdin). Processes the whole input, commits
    /// and exits. Without it the host consumes Kafka.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Names the input stream in the table's positions (default: the input file's absolute path;
    /// `stdin` for `-`): the same data given under another path or on stdin resumes where it left off.
    #[arg(long)]
    source_id: Option<String>,
    /// Kafka: `streaming` runs until SIGTERM/SIGINT; `batch` consumes up to the end offsets seen at
    /// start, commits and exits 0.
    #[arg(long, value_enum, default_value_t = KafkaMode::Streaming)]
    mode: KafkaMode,
    /// Kafka brokers, comma separated.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap_servers: Option<String>,
    /// Kafka topics, comma separated.
    #[arg(long, env = "KAFKA_TOPIC")]
    topic: Option<String>,
    /// Kafka consumer group.
    #[arg(long)]
    group_id: Option<String>,
    /// Events per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Rows per Iceberg commit.
    #[arg(long)]
    commit_rows: Option<usize>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464, which
    /// monitoring/prometheus.yml scrapes).
    #[arg(long, env = "CDC_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
}

fn config(common: &Common, run: &RunArgs) -> Result<Config> {
    let mut cfg = match &common.config {
        Some(path) => Config::load(path)?,
        None => Config::shipped_default(),
    };
    if let Some(v) = &common.plugins {
        cfg.plugins.dir = v.clone();
    }
    if let Some(v) = &common.warehouse {
        cfg.catalog.warehouse = v.clone();
    }
    if let Some(v) = &common.catalog_uri {
        cfg.catalog.uri = Some(v.clone());
    }
    if let Some(v) = &common.catalog {
        cfg.catalog.name = v.clone();
    }
    if let Some(v) = &common.namespace {
        cfg.table.namespace = v.clone();
    }
    if let Some(v) = &common.table {
        cfg.table.name = v.clone();
    }
    if let Some(v) = &common.pipeline_id {
        cfg.pipeline_id = v.clone();
    }
    if let Some(v) = common.table_mode {
        cfg.table.mode = v;
    }
    if let Some(v) = run.batch_size {
        cfg.sink.batch_size = v;
    }
    if let Some(v) = run.commit_rows {
        cfg.sink.commit_rows = v;
    }
    let list = |v: &str| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if let Some(v) = &run.bootstrap_servers {
        cfg.kafka.bootstrap_servers = list(v);
    }
    if let Some(v) = &run.topic {
        cfg.kafka.topics = list(v);
    }
    if let Some(v) = &run.group_id {
        cfg.kafka.group_id = v.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_env("CDC_HOST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(cdc_host::progress::LogWriterMaker)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse_from(cdc_host::transform::tooling::plugin_test_args(std::env::args_os()));
    init_logging(cli.common.log_json);
    match cli.command {
        None => run(&cli.common, &cli.run).await,
        Some(Command::Run(args)) => run(&cli.common, &args).await,
        Some(Command::Table(command)) => {
            let cfg = config(&cli.common, &cli.run)?;
            let table = pipeline::change_table(&cfg, command.change()?.as_ref()).await?;
            println!("{table}");
            Ok(())
        }
        Some(Command::CreateTable) => {
            let cfg = config(&cli.common, &cli.run)?;
            let (main, dlq) = pipeline::create_tables(&cfg).await?;
            println!("{}", serde_json::json!({ "table": main, "dead_letter_table": dlq }));
            Ok(())
        }
        Some(Command::Maintain(args)) => {
            let mut cfg = config(&cli.common, &cli.run)?;
            let m = &mut cfg.maintenance;
            if let Some(v) = args.keep_last {
                m.keep_last = v;
            }
            if let Some(v) = args.max_snapshot_age_seconds {
                m.max_snapshot_age_seconds = v;
            }
            if let Some(v) = args.orphans_older_than_seconds {
                m.orphan_min_age_seconds = v;
            }
            if let Some(v) = args.min_input_files {
                m.min_input_files = v;
            }
            for report in pipeline::maintain(&cfg).await? {
                tracing::info!(report = %report, "maintenance");
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
        Some(Command::Plugins) => {
            let cfg = config(&cli.common, &cli.run)?;
            let chain = pipeline::load_chain(&cfg)?;
            for (i, p) in chain.stages().iter().enumerate() {
                let d = p.description();
                let reads = d.reads.as_ref().map_or("*".to_string(), |r| r.join(", "));
                let writes: Vec<String> = d.writes.iter().map(|(n, t)| format!("{n}: {t:?}")).collect();
                let compiled = p.compiled().map_or(String::new(), |c| {
                    let toolchain = cdc_host::transform::tooling::toolchain_of(&c.path);
                    format!(
                        "  sha256={}  cache={} ({} ms)  {toolchain}",
                        c.hash,
                        c.cache,
                        c.load_time.as_millis()
                    )
                });
                println!(
                    "{}. {}  file={}{}  reads=[{}]{}  writes=[{}]  removes=[{}]",
                    i + 1,
                    p.identity(),
                    p.origin(),
                    compiled,
                    reads,
                    if d.reads_before { " +before" } else { "" },
                    writes.join(", "),
                    d.removes.join(", ")
                );
            }
            Ok(())
        }
        Some(Command::Plugin(cmd)) => {
            if !cmd.run(&config(&cli.common, &cli.run)?)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// SIGINT/SIGTERM: stop reading, finish the batch in flight, commit, exit 0. A second signal exits at once.
fn stop_on_signals(stop: Arc<AtomicBool>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        for round in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if round > 0 {
                tracing::warn!("second signal: exiting without committing pending rows");
                std::process::exit(130);
            }
            tracing::info!(
                "stopping: finishing the batch in flight and committing (signal again to exit at once)"
            );
            stop.store(true, Ordering::Relaxed);
        }
    });
    Ok(())
}

async fn run(common: &Common, args: &RunArgs) -> Result<()> {
    let cfg = config(common, args)?;
    if cfg.is_multi_table() {
        return run_tables(cfg, common, args).await;
    }
    let table = format!("{}.{}.{}", cfg.catalog.name, cfg.table.namespace, cfg.table.name);
    let metrics = Metrics::for_pipeline(&cfg.pipeline_id, &table);
    if let Some(addr) = args.metrics_addr {
        metrics.clone().serve(addr).await.with_context(|| format!("cannot serve metrics on {addr}"))?;
    }
    let mut options = pipeline::RunOptions::default();
    let halt = Halt::new(options.stop.clone());
    let chain = plugin_chain(&cfg, common, args, &metrics, &halt, &mut options, None)?;
    stop_on_signals(options.stop.clone())?;
    let summary = match &args.input {
        Some(input) => {
            let source = file_source(input, args)?;
            pipeline::run(&cfg, source, chain, &metrics, options).await?
        }
        None => {
            let mode = kafka_mode(args);
            tracing::info!(
                brokers = %cfg.kafka.bootstrap_servers.join(","),
                topics = %cfg.kafka.topics.join(","),
                group = %cfg.kafka.group_id,
                "consuming Kafka"
            );
            // A mirror table without a configured key takes it from the records' Kafka keys.
            let source = kafka::KafkaSource::new(cfg.kafka.clone(), mode, metrics.clone())?
                .with_record_keys(cfg.needs_record_keys());
            pipeline::run(&cfg, source, chain, &metrics, options).await?
        }
    };
    finish(&summary, &halt)
}

/// A host writing several tables: one source, a pipeline per table (started with its first record).
async fn run_tables(cfg: Config, common: &Common, args: &RunArgs) -> Result<()> {
    let metrics = MetricsSet::default();
    let source_metrics = Metrics::for_pipeline(&cfg.pipeline_id, "");
    metrics.add(&source_metrics);
    if let Some(addr) = args.metrics_addr {
        metrics.clone().serve(addr).await.with_context(|| format!("cannot serve metrics on {addr}"))?;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let halt = Halt::new(stop.clone());
    let (common_c, args_c, halt_c) = (common.clone(), args.clone(), halt.clone());
    let make_chain: pipeline::ChainFactory = Arc::new(move |table_cfg: &Config, m: &Metrics| {
        let mut options = pipeline::RunOptions::default();
        let table = Some((table_cfg.table.namespace.clone(), table_cfg.table.name.clone()));
        let chain = plugin_chain(table_cfg, &common_c, &args_c, m, &halt_c, &mut options, table)
            .map_err(|e| PipelineError::Internal(format!("{e:#}")))?;
        Ok((chain, options.updates))
    });
    stop_on_signals(stop.clone())?;
    let summary = match &args.input {
        Some(input) => {
            let source = file_source(input, args)?;
            pipeline::run_routed(&cfg, source, make_chain, &metrics, source_metrics, stop).await?
        }
        None => {
            let mode = kafka_mode(args);
            tracing::info!(
                brokers = %cfg.kafka.bootstrap_servers.join(","),
                topics = %cfg.kafka.topics.join(","),
                group = %cfg.kafka.group_id,
                tables = cfg.tables.len(),
                default_table = cfg.routing.default_table.as_deref().unwrap_or("-"),
                "consuming Kafka into several tables"
            );
            // Records carry their topic and Kafka key when a mirror table may take its key from
            // them (the router tells a record's topic from its partition otherwise).
            let source = kafka::KafkaSource::new(cfg.kafka.clone(), mode, source_metrics.clone())?
                .with_record_keys(cfg.needs_record_keys());
            pipeline::run_routed(&cfg, source, make_chain, &metrics, source_metrics, stop).await?
        }
    };
    finish(&summary, &halt)
}

/// The input file (or stdin), named `--source-id` when given.
fn file_source(input: &std::path::Path, args: &RunArgs) -> Result<FileSource> {
    let source = FileSource::open(input)?;
    Ok(match &args.source_id {
        Some(id) => source.with_name(id),
        None => source,
    })
}

fn kafka_mode(args: &RunArgs) -> kafka::Mode {
    match args.mode {
        KafkaMode::Streaming => kafka::Mode::Streaming,
        KafkaMode::Batch => kafka::Mode::Batch,
    }
}

/// Logs and prints a run's summary; a chain that stopped the run makes it fail.
fn finish(summary: &pipeline::Summary, halt: &Halt) -> Result<()> {
    tracing::info!(
        tables = summary.tables.len().max(1),
        records = summary.records,
        rows = summary.rows_committed,
        dead_letters = summary.dead_letters,
        seconds = format!("{:.2}", summary.seconds),
        "done"
    );
    println!("{}", serde_json::to_string_pretty(summary)?);
    if let Some(quarantined) = halt.take_reason() {
        return Err(quarantined.into());
    }
    Ok(())
}

/// The chain to start with; with `plugins.watch`, also the hot reloader that replaces it while running
/// (it watches the plugins directory and the `--config` file, re-read with the same overrides).
fn plugin_chain(
    cfg: &Config,
    common: &Common,
    args: &RunArgs,
    metrics: &Metrics,
    halt: &Halt,
    options: &mut pipeline::RunOptions,
    table: Option<(String, String)>,
) -> Result<Chain> {
    if !cfg.plugins.watch {
        let chain = Loader::new(cfg, Some(metrics.clone()), halt.clone())?.load(cfg)?;
        cdc_host::transform::reload::set_active(metrics, &chain);
        return Ok(chain);
    }
    let config_file = common.config.clone();
    let (common, args) = (common.clone(), args.clone());
    let reread = move || {
        let full = config(&common, &args).map_err(|e| match e.downcast::<ConfigError>() {
            Ok(e) => e,
            Err(e) => ConfigError::Parse { origin: "config".into(), message: format!("{e:#}") },
        })?;
        // A table of a multi-table host follows its own entry's chain.
        match &table {
            Some((ns, name)) => full.table_config(ns, name).ok_or_else(|| ConfigError::Invalid {
                key: "tables".into(),
                message: format!("table {ns}.{name} is no longer configured; its chain stays as it is"),
            }),
            None => Ok(full),
        }
    };
    let (chain, reloader) = Reloader::start(ReloadOptions {
        config: cfg.clone(),
        config_file,
        reread: Some(Box::new(reread)),
        metrics: metrics.clone(),
        halt: halt.clone(),
    })?;
    options.updates = Some(Box::new(reloader));
    Ok(chain)
}
