//! The host's per-batch data flow — [`decode`](crate::decode), the plugin
//! [`transform`](crate::transform) chain, [`encode`](crate::encode) — for an engine that reads and
//! writes itself and runs the chain inside its own workers (the Spark job's `cdc_chain` extension).
//! The rows and dead letters are those the host's append table would get from the same records.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arrow_array::{Array, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};

use crate::change::RawBatch;
use crate::config::{Config, TableMode};
use crate::decode::Decoder;
use crate::encode::Encoder;
use crate::error::{ConfigError, PluginError};
use crate::pipeline::table_spec;
use crate::schema::ColType;
use crate::sink::dead_letter;
use crate::transform::{Chain, ChainPackage, Halt, Runtime, Supervision};

/// Why a batch could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The table's shape cannot be worked out from the configuration.
    #[error("table: {0}")]
    Table(String),
    /// A plugin quarantined with `plugins.on_quarantine = "stop"`: the batch must not be written.
    #[error("the chain stopped: {0}")]
    Halted(String),
    /// Rows that cannot take the table's types (a chain writing another type than it declares).
    #[error("encoding rows: {0}")]
    Encode(String),
    /// The source brought columns the table does not have (`table.evolve_schema = true`): writing
    /// the rows without them would lose their values.
    #[error(
        "the source added column(s) {columns} (first at {position}), which the table does not have: declare them in [table] columns of the config (or set table.evolve_schema = false to leave them out) and restart; nothing of this batch was written"
    )]
    NewColumns { columns: String, position: String },
}

/// Where and how the table is laid out, as the configuration says.
#[derive(Debug, Clone)]
pub struct TableLayout {
    pub namespace: String,
    pub name: String,
    pub dead_letter_table: String,
    /// Partition fields: column and transform (`month`, `bucket[16]`, ...).
    pub partition: Vec<(String, String)>,
    pub sort: Vec<String>,
    pub pipeline_id: String,
}

/// A chain with the configuration it runs under, processing whole batches of Debezium records.
pub struct EmbeddedChain {
    // Declared before the runtime: plugins drop before the engine they run in.
    chain: Chain,
    _runtime: Runtime,
    decoder: Decoder,
    encoder: Encoder,
    schema: SchemaRef,
    dead_schema: SchemaRef,
    layout: TableLayout,
    halt: Halt,
    /// The table's column types (new columns are refused when the table follows the source's schema).
    table_types: HashMap<String, ColType>,
    evolve_schema: bool,
}

impl EmbeddedChain {
    /// Loads the packed chain. Append tables only (the Spark job's mode).
    pub fn new(package: &ChainPackage) -> Result<Self, EmbedError> {
        let cfg = package.config()?;
        if cfg.table.mode == TableMode::Mirror {
            return Err(EmbedError::Table(
                "table.mode = \"mirror\": mirror tables are kept by cdc-host; here the chain writes append tables (set table.mode = \"append\")"
                    .into(),
            ));
        }
        let runtime = Runtime::new(None)?;
        let halt = Halt::new(Arc::new(AtomicBool::new(false)));
        let chain =
            package.load(&runtime)?.with_supervision(Supervision::new(&cfg.plugins, None, halt.clone()));
        let spec = table_spec(&cfg, Some(&chain)).map_err(|e| EmbedError::Table(e.to_string()))?;
        let removed = chain.removed_columns();
        let declared: HashMap<String, ColType> = spec
            .columns
            .iter()
            .filter(|(n, _, _)| !removed.contains(n))
            .map(|(n, t, _)| (n.clone(), *t))
            .collect();
        let schema = arrow_schema(spec.columns.iter().map(|(n, t, _)| (n.as_str(), *t)));
        let table_types = spec.columns.iter().map(|(n, t, _)| (n.clone(), *t)).collect();
        let dead_schema = arrow_schema(dead_letter::COLUMNS.iter().map(|(n, t, _)| (*n, *t)));
        let layout = TableLayout {
            namespace: cfg.table.namespace.clone(),
            name: cfg.table.name.clone(),
            dead_letter_table: cfg.dead_letter_table(),
            partition: cfg.table.partition.iter().map(|p| (p.column.clone(), p.transform.clone())).collect(),
            sort: cfg.table.sort.clone(),
            pipeline_id: cfg.pipeline_id.clone(),
        };
        Ok(Self {
            chain,
            _runtime: runtime,
            decoder: Decoder::new(declared, cfg.decode.decimal_handling),
            encoder: Encoder::new(cfg.pipeline_id.clone()),
            schema,
            dead_schema,
            layout,
            halt,
            table_types,
            evolve_schema: cfg.table.evolve_schema,
        })
    }

    /// The chain's identity (plugins, versions, content hashes, configuration), as the host records it.
    pub fn identity(&self) -> String {
        self.chain.identity()
    }

    /// The rows' schema: declared columns, columns the chain writes, metadata columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The dead letters' schema (the host's dead-letter table).
    pub fn dead_letter_schema(&self) -> SchemaRef {
        self.dead_schema.clone()
    }

    /// The table the configuration names.
    pub fn layout(&self) -> &TableLayout {
        &self.layout
    }

    /// Decodes `raw`, runs the chain and returns the rows for the table and the dead letters, both
    /// in record order. `now_micros` is the rows' `_ingestion_timestamp`.
    pub fn process(
        &mut self,
        raw: &RawBatch,
        now_micros: i64,
    ) -> Result<(RecordBatch, RecordBatch), EmbedError> {
        let decoded = self.decoder.decode(raw);
        let mut dead = decoded.dead_letters;
        let mut batch = decoded.batch;
        self.chain.apply_at(&mut batch, &mut dead, &|o| raw.position(o as usize));
        if let Some(reason) = self.halt.take_reason() {
            return Err(EmbedError::Halted(reason.to_string()));
        }
        let new = Encoder::new_columns(&batch, &self.table_types);
        if self.evolve_schema && !new.is_empty() {
            let columns: Vec<&str> = new.iter().map(|(n, _)| n.as_str()).collect();
            // The first record holding a value of a new column names where it came from.
            let first = new
                .iter()
                .filter_map(|(n, _)| batch.after.get(n))
                .filter_map(|c| (0..c.array.len()).find(|&i| c.array.is_valid(i)))
                .min()
                .map_or_else(|| "an unknown record".to_string(), |i| raw.position(batch.origins[i] as usize));
            return Err(EmbedError::NewColumns { columns: columns.join(", "), position: first });
        }
        let rows = self.encoder.encode(&batch, &self.schema, now_micros).map_err(EmbedError::Encode)?;
        dead.sort_by_key(|d| d.origin);
        let letters =
            dead_letter::to_batch(&self.dead_schema, &dead, raw, &self.layout.pipeline_id, now_micros)
                .map_err(|e| EmbedError::Encode(e.to_string()))?;
        Ok((rows, letters))
    }
}

/// Nullable Arrow fields of the given columns.
fn arrow_schema<'a>(columns: impl Iterator<Item = (&'a str, ColType)>) -> SchemaRef {
    Arc::new(Schema::new(columns.map(|(n, t)| Field::new(n, t.arrow_type(), true)).collect::<Vec<_>>()))
}

/// The configuration for an embedded chain: `config` (the host's TOML) or the shipped default, with
/// the plugins directory `plugins`.
pub fn config(config: Option<&std::path::Path>, plugins: &std::path::Path) -> Result<Config, ConfigError> {
    let mut cfg = match config {
        Some(path) => Config::load(path)?,
        None => Config::shipped_default(),
    };
    cfg.plugins.dir = plugins.to_path_buf();
    cfg.validate()?;
    Ok(cfg)
}
