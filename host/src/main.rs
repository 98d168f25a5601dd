//! `cdc-host`: the command line. Flags override environment variables, which override the config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use cdc_host::config::Config;
use cdc_host::metrics::Metrics;
use cdc_host::pipeline;
use cdc_host::source::FileSource;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

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

#[derive(Subcommand)]
enum Command {
    /// Process input into the table (the default command).
    Run(RunArgs),
    /// Create the table (and its dead-letter table) from the configured definition, then exit.
    CreateTable,
    /// Load the plugin chain and list it: identity, columns read, written and removed.
    Plugins,
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
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    /// Debezium records, one JSON object per line (`-` for stdin). Processes the whole input, commits
    /// and exits.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Events per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Rows per Iceberg commit.
    #[arg(long)]
    commit_rows: Option<usize>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
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
    if let Some(v) = run.batch_size {
        cfg.sink.batch_size = v;
    }
    if let Some(v) = run.commit_rows {
        cfg.sink.commit_rows = v;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_env("CDC_HOST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.common.log_json);
    match cli.command {
        None => run(&cli.common, &cli.run).await,
        Some(Command::Run(args)) => run(&cli.common, &args).await,
        Some(Command::CreateTable) => {
            let cfg = config(&cli.common, &cli.run)?;
            let (main, dlq) = pipeline::create_tables(&cfg).await?;
            println!(
                "{}",
                serde_json::json!({ "table": main, "dead_letter_table": dlq })
            );
            Ok(())
        }
        Some(Command::Plugins) => {
            let cfg = config(&cli.common, &cli.run)?;
            let chain = pipeline::load_chain(&cfg)?;
            for (i, p) in chain.stages().iter().enumerate() {
                let d = p.description();
                let reads = d.reads.as_ref().map_or("*".to_string(), |r| r.join(", "));
                let writes: Vec<String> = d
                    .writes
                    .iter()
                    .map(|(n, t)| format!("{n}: {t:?}"))
                    .collect();
                println!(
                    "{}. {}  file={}  reads=[{}]{}  writes=[{}]  removes=[{}]",
                    i + 1,
                    p.identity(),
                    p.origin(),
                    reads,
                    if d.reads_before { " +before" } else { "" },
                    writes.join(", "),
                    d.removes.join(", ")
                );
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
    let Some(input) = &args.input else {
        bail!(
            "no --input given: pass --input FILE (or `-` for stdin) with Debezium records, one per line"
        );
    };
    let metrics = Metrics::new();
    if let Some(addr) = args.metrics_addr {
        metrics
            .clone()
            .serve(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
    }
    let source = FileSource::open(input)?;
    let chain = pipeline::load_chain(&cfg)?;
    let options = pipeline::RunOptions::default();
    stop_on_signals(options.stop.clone())?;
    let summary = pipeline::run(&cfg, source, chain, &metrics, options).await?;
    tracing::info!(
        records = summary.records,
        rows = summary.rows_committed,
        dead_letters = summary.dead_letters,
        seconds = format!("{:.2}", summary.seconds),
        "done"
    );
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
