//! Host configuration: a TOML file (`--config`), overridden by environment variables and flags.
//!
//! Every section is `deny_unknown_fields`, so a typo names the offending key instead of being ignored.
//! [`Config::validate`] checks what serde cannot (ranges, references between sections).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The configuration that ships with the project: the reference customers pipeline.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/cdc-host.toml");

/// Whole-host configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identifies this pipeline in metadata columns and snapshot summaries.
    #[serde(default = "default_pipeline_id")]
    pub pipeline_id: String,
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// The table of a one-table host (when there is no `[[tables]]` and no `[routing]` default).
    #[serde(default)]
    pub table: TableConfig,
    /// The tables of a multi-table host, each taking the events of its source tables or topics.
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    /// Where a multi-table host puts events of source tables no `[[tables]]` entry takes.
    #[serde(default)]
    pub routing: RoutingConfig,
    #[serde(default)]
    pub decode: DecodeConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The transform chain, in order. Empty: every `*.wasm` in the plugins directory, by file name.
    #[serde(default)]
    pub chain: Vec<ChainEntry>,
    /// Set for a table whose own chain is `chain = []`: no plugins (rather than every plugin of
    /// the directory, which an empty top-level chain means).
    #[serde(skip)]
    pub no_plugins: bool,
    #[serde(default)]
    pub sink: SinkConfig,
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub filter: FilterConfig,
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
}

/// The Kafka source (used when no `--input` is given).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Brokers (`KAFKA_BOOTSTRAP_SERVERS`, comma separated).
    #[serde(default = "default_bootstrap")]
    pub bootstrap_servers: Vec<String>,
    /// Topics to consume (`KAFKA_TOPIC`, comma separated).
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Where to start partitions that neither the table nor the group has a position for.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// Commit the group's offsets (after each Iceberg commit, never before) so lag tools see progress.
    /// The table's positions stay authoritative either way.
    #[serde(default = "yes")]
    pub enable_auto_commit: bool,
    /// Most records in one batch.
    #[serde(default = "default_max_poll")]
    pub max_poll_records: usize,
    #[serde(default = "default_session_timeout")]
    pub session_timeout_ms: u64,
    /// How long one batch waits for records before it goes on with what it has.
    #[serde(default = "default_consumer_timeout")]
    pub consumer_timeout_ms: u64,
    /// Raw librdkafka properties (security.protocol, ssl.*, sasl.*, ...), passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_bootstrap() -> Vec<String> {
    vec!["localhost:9092".into()]
}
fn default_topics() -> Vec<String> {
    vec!["postgres.public.customers".into()]
}
fn default_group() -> String {
    "iceberg-cdc-consumer".into()
}
fn default_max_poll() -> usize {
    10_000
}
fn default_session_timeout() -> u64 {
    30_000
}
fn default_consumer_timeout() -> u64 {
    1_000
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: default_bootstrap(),
            topics: default_topics(),
            group_id: default_group(),
            auto_offset_reset: OffsetReset::Earliest,
            enable_auto_commit: true,
            max_poll_records: default_max_poll(),
            session_timeout_ms: default_session_timeout(),
            consumer_timeout_ms: default_consumer_timeout(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Refuses librdkafka properties that switch the consumer group to incremental (cooperative)
    /// rebalancing: the Kafka source commits pending rows when partitions are revoked and re-seeks
    /// every assigned partition to the table's positions, which assumes eager assignment (each
    /// rebalance revokes everything and assigns the complete new set). Returns the offending key
    /// (as written in the config file) and what to do.
    pub fn check_assignment_protocol(&self) -> Result<(), (String, String)> {
        for (key, value) in &self.properties {
            let v = value.trim().to_ascii_lowercase();
            match key.trim() {
                "partition.assignment.strategy" if v.split(',').any(|s| s.trim() == "cooperative-sticky") => {
                    return Err((
                        format!("kafka.properties.\"{key}\""),
                        format!(
                            "`{value}`: cooperative (incremental) rebalancing is not supported; the Kafka source commits pending rows and re-seeks all its partitions on each rebalance, which needs eager assignment. Use `range`, `roundrobin` or both (the default, \"range,roundrobin\"), or remove the property"
                        ),
                    ));
                }
                "group.protocol" if v == "consumer" => {
                    return Err((
                        format!("kafka.properties.\"{key}\""),
                        format!(
                            "`{value}` (KIP-848) assigns partitions incrementally, which the Kafka source does not support (it re-seeks all its partitions on each rebalance). Use `classic` (the default) or remove the property"
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Kafka's `auto.offset.reset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    #[default]
    Earliest,
    Latest,
}

/// Which events reach the chain.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Source tables as `schema.table` (e.g. `public.customers`); empty means all.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Debezium operations (`c`, `u`, `d`, `r`); empty means all.
    #[serde(default)]
    pub operations: Vec<String>,
}

fn default_pipeline_id() -> String {
    "postgres-to-iceberg".into()
}

/// Where the Iceberg catalog lives.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Catalog name (`ICEBERG_CATALOG`).
    #[serde(default = "default_catalog_name")]
    pub name: String,
    /// Warehouse directory (`ICEBERG_WAREHOUSE`); tables and the default SQLite catalog live here.
    #[serde(default = "default_warehouse")]
    pub warehouse: PathBuf,
    /// SQL catalog URI; default `sqlite:<warehouse>/catalog.db`.
    #[serde(default)]
    pub uri: Option<String>,
}

fn default_catalog_name() -> String {
    "iceberg".into()
}
fn default_warehouse() -> PathBuf {
    PathBuf::from("./warehouse")
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self { name: default_catalog_name(), warehouse: default_warehouse(), uri: None }
    }
}

/// The target table: identity, declared columns, layout.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Namespace (`ICEBERG_NAMESPACE`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Table name (`ICEBERG_TABLE`).
    #[serde(default = "default_table")]
    pub name: String,
    /// Declared columns: they fix the types of values whatever the events carry.
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    /// Partition fields, e.g. `{ column = "registration_date", transform = "month" }`.
    #[serde(default)]
    pub partition: Vec<PartitionConfig>,
    /// Sort order columns (ascending, nulls first); rows of every data file are written in this order.
    #[serde(default)]
    pub sort: Vec<String>,
    /// Add columns that events bring beyond the declared ones.
    #[serde(default = "yes")]
    pub evolve_schema: bool,
    /// Extra Iceberg table properties used at creation.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// `append` (the change log, one row per event) or `mirror` (one row per source key: updates
    /// and deletes applied through position deletes).
    #[serde(default)]
    pub mode: TableMode,
    /// Key columns of a mirror table (its identifier fields). Empty: the fields of the Debezium
    /// record key.
    #[serde(default)]
    pub key: Vec<String>,
    /// `[[tables]]` only: source tables (`schema.table`, Debezium's `source.schema` and
    /// `source.table`) whose events land in this table.
    #[serde(default)]
    pub source: Vec<String>,
    /// `[[tables]]` only: topics whose events land in this table (a name, or a regular expression
    /// starting with `^`).
    #[serde(default)]
    pub topics: Vec<String>,
    /// `[[tables]]` only: this table's chain (default: the top-level `[[chain]]`).
    #[serde(default)]
    pub chain: Option<Vec<ChainEntry>>,
}

impl Default for TableConfig {
    fn default() -> Self {
        toml::from_str("").expect("every table setting has a default")
    }
}

/// Checks one table's settings (`at`: where it is in the config, e.g. `table` or `tables[2]`).
fn validate_table(at: &str, t: &TableConfig) -> Result<(), ConfigError> {
    let bad =
        |key: String, message: String| Err(ConfigError::Invalid { key: format!("{at}.{key}"), message });
    if t.namespace.trim().is_empty() {
        return bad("namespace".into(), "must not be empty".into());
    }
    if t.name.trim().is_empty() {
        return bad("name".into(), "must not be empty".into());
    }
    if t.key.iter().any(|k| k.trim().is_empty()) {
        return bad("key".into(), "key column names must not be empty".into());
    }
    for (i, c) in t.columns.iter().enumerate() {
        if let Err(message) = crate::schema::parse_type(&c.ty) {
            return bad(format!("columns[{i}].type"), format!("column `{}`: {message}", c.name));
        }
    }
    for (i, p) in t.partition.iter().enumerate() {
        if !t.columns.iter().any(|c| c.name == p.column) {
            return bad(
                format!("partition[{i}].column"),
                format!("`{}` is not a declared column in {at}.columns", p.column),
            );
        }
        if let Err(message) = crate::schema::parse_transform(&p.transform) {
            return bad(format!("partition[{i}].transform"), message);
        }
    }
    for (i, s) in t.sort.iter().enumerate() {
        if !t.columns.iter().any(|c| &c.name == s) {
            return bad(format!("sort[{i}]"), format!("`{s}` is not a declared column in {at}.columns"));
        }
    }
    Ok(())
}

/// `[routing]`: tables for source tables that no `[[tables]]` entry names.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// The table a source table lands in, from a template with `{schema}` and `{table}` (e.g.
    /// `raw.{schema}_{table}`: namespace `raw`), created on first sight with the types its events
    /// carry. Unset: events of such source tables are left out (logged once per source table and
    /// counted in `cdc_host_events_filtered_total`).
    pub default_table: Option<String>,
    /// The mode of those tables (`append` or `mirror`).
    #[serde(default)]
    pub mode: TableMode,
    /// The chain of those tables (default: the top-level `[[chain]]`; `[]`: no plugins).
    pub chain: Option<Vec<ChainEntry>>,
}

impl RoutingConfig {
    /// The settings of default-routed table `namespace.name`: this mode, types from the events.
    pub fn table(&self, namespace: &str, name: &str) -> TableConfig {
        TableConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            mode: self.mode,
            chain: self.chain.clone(),
            ..TableConfig::default()
        }
    }

    /// The (namespace, table) the template gives source table `schema.table`.
    pub fn table_for(&self, schema: &str, table: &str) -> Option<(String, String)> {
        let t = self.default_table.as_ref()?;
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_ascii_lowercase() } else { '_' })
                .collect()
        };
        let name = t.replace("{schema}", &clean(schema)).replace("{table}", &clean(table));
        let (ns, name) = name.rsplit_once('.')?;
        Some((ns.to_string(), name.to_string()))
    }
}

/// How a table follows its source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableMode {
    /// Every change event is a row (the change log).
    #[default]
    Append,
    /// One row per source key: the table equals the source table passed through the chain.
    Mirror,
}

impl std::str::FromStr for TableMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "append" => Ok(TableMode::Append),
            "mirror" => Ok(TableMode::Mirror),
            other => Err(format!("`{other}` is not a table mode (append or mirror)")),
        }
    }
}

fn default_namespace() -> String {
    "analytics".into()
}
fn default_table() -> String {
    "customers_analytics".into()
}
fn yes() -> bool {
    true
}

/// One declared column.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    pub name: String,
    /// `boolean`, `int`, `long`, `double`, `string`, `binary`, `date`, `timestamp`, `timestamptz`,
    /// `json` (stored as string) or `decimal(P,S)`.
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub doc: Option<String>,
}

/// One partition field.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    pub column: String,
    /// `identity`, `year`, `month`, `day`, `hour`, `bucket[N]`, `truncate[W]`.
    pub transform: String,
}

/// How Debezium JSON is read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeConfig {
    /// How a schemaless decimal string that reads both as base64 and as a number (digits only, length
    /// a multiple of 4, e.g. `"1234"`) is taken: `precise` (base64 big-endian unscaled bytes,
    /// Debezium's default) or `string`. Every other string tells its encoding by itself (`"1234.56"`
    /// is text, `"AeJA"` is base64), and events with schemas are decoded from their schema.
    #[serde(default)]
    pub decimal_handling: DecimalHandling,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self { decimal_handling: DecimalHandling::Precise }
    }
}

/// Debezium's `decimal.handling.mode`, for events without schemas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecimalHandling {
    #[default]
    Precise,
    String,
}

/// Plugin runtime limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory holding the `.wasm` components (`--plugins`).
    #[serde(default = "default_plugins_dir")]
    pub dir: PathBuf,
    /// Wall-clock budget for one plugin call on one batch.
    #[serde(default = "default_deadline_ms")]
    pub batch_deadline_ms: u64,
    /// Linear memory limit per plugin instance.
    #[serde(default = "default_memory_limit")]
    pub memory_limit_mb: u64,
    /// Where compiled components are cached; default `$XDG_CACHE_HOME/cdc-host` or `~/.cache/cdc-host`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Watch the plugins directory (and the `--config` file) and swap the chain while running.
    #[serde(default = "yes")]
    pub watch: bool,
    /// Quiet period after the last file change before a reload starts.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// Consecutive failed batches after which a plugin is quarantined; 0 never quarantines.
    #[serde(default = "default_quarantine_after")]
    pub quarantine_after: u32,
    /// What quarantine means: skip the plugin (`pass-through`) or stop the pipeline (`stop`).
    #[serde(default)]
    pub on_quarantine: OnQuarantine,
}

/// What happens when a plugin is quarantined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnQuarantine {
    /// Skip the plugin: events flow on without its changes (loudly logged and counted).
    #[default]
    PassThrough,
    /// Stop the pipeline (pending rows are committed first) with an error naming the plugin.
    Stop,
}

fn default_plugins_dir() -> PathBuf {
    PathBuf::from("./plugins")
}
fn default_deadline_ms() -> u64 {
    5_000
}
fn default_memory_limit() -> u64 {
    256
}
fn default_debounce_ms() -> u64 {
    200
}
fn default_quarantine_after() -> u32 {
    3
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: default_plugins_dir(),
            batch_deadline_ms: default_deadline_ms(),
            memory_limit_mb: default_memory_limit(),
            cache_dir: None,
            watch: true,
            debounce_ms: default_debounce_ms(),
            quarantine_after: default_quarantine_after(),
            on_quarantine: OnQuarantine::default(),
        }
    }
}

/// One plugin in the chain.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEntry {
    /// The component file, relative to the plugins directory (`name-concat` means `name-concat.wasm`).
    pub plugin: String,
    /// Key/value configuration passed to the plugin's `configure`.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// What happens when this plugin is quarantined; unset: `plugins.on_quarantine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_quarantine: Option<OnQuarantine>,
}

impl ChainEntry {
    /// The file this entry loads.
    pub fn path(&self, dir: &Path) -> PathBuf {
        if self.plugin.ends_with(".wasm") {
            dir.join(&self.plugin)
        } else {
            dir.join(format!("{}.wasm", self.plugin))
        }
    }

    /// Configuration as the string pairs the WIT `configure` call takes.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// Batching, files and commits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Events per batch: one decode pass and one call per plugin per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Rows per Iceberg commit (a commit happens at the latest at end of input).
    #[serde(default = "default_commit_rows")]
    pub commit_rows: usize,
    /// Target size of one data file before it rolls over.
    #[serde(default = "default_file_size")]
    pub target_file_size_bytes: usize,
    /// Parquet compression: `zstd`, `snappy`, `lz4`, `uncompressed`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// zstd level (1..=22).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Parquet compression of the small data files a stream writes (fewer than
    /// [`crate::sink::writer::SMALL_FILE_ROWS`] rows, as each commit of many partitions makes), which
    /// maintenance later compacts with zstd: making a zstd compressor and decompressor for every
    /// column chunk costs more than compressing a few hundred rows. Set it to `compression`'s value
    /// to write every file alike.
    #[serde(default = "default_small_file_compression")]
    pub small_file_compression: String,
    /// Commit when this many input bytes are pending.
    #[serde(default = "default_commit_bytes")]
    pub commit_bytes: usize,
    /// Commit pending rows at least this often (streaming).
    #[serde(default = "default_interval")]
    pub processing_interval_seconds: u64,
    /// Once a streaming source has caught up (nothing more waiting), pending rows commit as soon as
    /// this long has passed since the last commit, instead of at the triggers above (0: never).
    /// A backlog read at full speed fills whole batches and still commits by size.
    #[serde(default = "default_caught_up_commit")]
    pub caught_up_commit_ms: u64,
    /// Rows (Arrow memory) held before they are sorted and written out, one partition at a time.
    /// Bounds the writer's memory whatever the number of partitions; larger means fewer files.
    #[serde(default = "default_write_buffer")]
    pub write_buffer_bytes: usize,
}

fn default_write_buffer() -> usize {
    crate::sink::writer::DEFAULT_BUFFER_BYTES
}

fn default_commit_bytes() -> usize {
    256 * 1024 * 1024
}
fn default_interval() -> u64 {
    10
}

fn default_caught_up_commit() -> u64 {
    250
}

fn default_batch_size() -> usize {
    2048
}
fn default_commit_rows() -> usize {
    500_000
}
fn default_file_size() -> usize {
    128 * 1024 * 1024
}
fn default_compression() -> String {
    "zstd".into()
}
fn default_small_file_compression() -> String {
    "snappy".into()
}
fn default_zstd_level() -> i32 {
    3
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            commit_rows: default_commit_rows(),
            target_file_size_bytes: default_file_size(),
            compression: default_compression(),
            zstd_level: default_zstd_level(),
            small_file_compression: default_small_file_compression(),
            commit_bytes: default_commit_bytes(),
            processing_interval_seconds: default_interval(),
            caught_up_commit_ms: default_caught_up_commit(),
            write_buffer_bytes: default_write_buffer(),
        }
    }
}

/// Parquet compression codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zstd,
    Snappy,
    Lz4,
    Uncompressed,
}

impl SinkConfig {
    /// The configured codec.
    pub fn compression(&self) -> Result<Codec, String> {
        Codec::parse(&self.compression)
    }

    /// The codec of small data files.
    pub fn small_file_compression(&self) -> Result<Codec, String> {
        Codec::parse(&self.small_file_compression)
    }
}

impl Codec {
    fn parse(name: &str) -> Result<Self, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "zstd" => Codec::Zstd,
            "snappy" => Codec::Snappy,
            "lz4" => Codec::Lz4,
            "uncompressed" | "none" => Codec::Uncompressed,
            other => return Err(format!("unknown compression `{other}` (zstd, snappy, lz4, uncompressed)")),
        })
    }
}

/// Table maintenance (`[maintenance]`): compaction, snapshot expiry, orphan removal. A running host
/// runs it in the background after every `every_commits` commits; `cdc-host maintain` runs it once.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Run in the background of a running host.
    pub enabled: bool,
    /// A running host maintains its tables after this many commits.
    pub every_commits: u32,
    /// Snapshots of `main` kept (newest first); the current one is always kept.
    pub keep_last: usize,
    /// Snapshots older than this are expired even within `keep_last` (seconds).
    pub max_snapshot_age_seconds: u64,
    /// Files no metadata references are deleted once older than this (seconds).
    pub orphan_min_age_seconds: u64,
    /// Data files smaller than this are compacted.
    pub small_file_bytes: u64,
    /// A partition is compacted once it has this many small files.
    pub min_input_files: usize,
    /// Most bytes read by one compaction run (the rest waits for the next run).
    pub max_compaction_bytes: u64,
    /// Target size of compacted files.
    pub target_file_size_bytes: usize,
    /// A partition whose data files have at least this fraction of their rows deleted (position
    /// deletes of a mirror table) is rewritten without them, dropping its delete files.
    pub max_deleted_fraction: f64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            every_commits: 20,
            keep_last: 100,
            max_snapshot_age_seconds: 24 * 3600,
            orphan_min_age_seconds: 3600,
            small_file_bytes: 32 * 1024 * 1024,
            min_input_files: 2,
            max_compaction_bytes: 512 * 1024 * 1024,
            target_file_size_bytes: 128 * 1024 * 1024,
            max_deleted_fraction: 0.1,
        }
    }
}

/// Where rejected events go.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Iceberg table name in the same namespace; default `<table>_dlq`.
    #[serde(default)]
    pub table: Option<String>,
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError::Parse { origin: origin.to_string(), message: e.to_string() })
    }

    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_path_buf(), source: e })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The shipped default configuration.
    pub fn shipped_default() -> Self {
        Self::from_toml(DEFAULT_CONFIG, "built-in default").expect("shipped default config parses")
    }

    /// The dead-letter table name.
    pub fn dead_letter_table(&self) -> String {
        self.dead_letter.table.clone().unwrap_or_else(|| format!("{}_dlq", self.table.name))
    }

    /// The SQL catalog URI.
    pub fn catalog_uri(&self) -> String {
        self.catalog.uri.clone().unwrap_or_else(|| {
            format!("sqlite:{}?mode=rwc", self.catalog.warehouse.join("catalog.db").display())
        })
    }

    /// Whether this host routes events to tables (`[[tables]]` entries or a `[routing]` default).
    pub fn is_multi_table(&self) -> bool {
        !self.tables.is_empty() || self.routing.default_table.is_some()
    }

    /// Whether a table of this host may take its key from the records' Kafka keys (a mirror table
    /// without a configured key): only then do Kafka records travel with their topic and key
    /// (`{"topic","key","value"}`), which costs a copy and a parse per record.
    pub fn needs_record_keys(&self) -> bool {
        let keyless_mirror = |t: &TableConfig| t.mode == TableMode::Mirror && t.key.is_empty();
        if !self.is_multi_table() {
            return keyless_mirror(&self.table);
        }
        self.entries().into_iter().any(keyless_mirror)
            || (self.routing.default_table.is_some() && self.routing.mode == TableMode::Mirror)
    }

    /// The tables a routing host names, in matching order: `[table]` when it says what it takes
    /// (`source` or `topics`), then the `[[tables]]` entries.
    pub fn entries(&self) -> Vec<&TableConfig> {
        let first = (!self.table.source.is_empty() || !self.table.topics.is_empty()).then_some(&self.table);
        first.into_iter().chain(&self.tables).collect()
    }

    /// The configuration of one table of a multi-table host: `table` as the host's one table, with
    /// its own chain (or the host's) and its own dead-letter table.
    pub fn for_table(&self, table: &TableConfig) -> Config {
        let mut c = self.clone();
        c.table = table.clone();
        c.table.source.clear();
        c.table.topics.clear();
        if let Some(chain) = c.table.chain.take() {
            c.no_plugins = chain.is_empty();
            c.chain = chain;
        }
        c.tables.clear();
        c.routing = RoutingConfig::default();
        c.dead_letter.table = None;
        c.filter.tables.clear();
        c
    }

    /// The configuration of table `namespace.name` of a multi-table host: its `[[tables]]` entry,
    /// else the `[routing]` default.
    pub fn table_config(&self, namespace: &str, name: &str) -> Option<Config> {
        if let Some(t) = self.entries().into_iter().find(|t| t.namespace == namespace && t.name == name) {
            return Some(self.for_table(t));
        }
        self.routing.default_table.as_ref()?;
        Some(self.for_table(&self.routing.table(namespace, name)))
    }

    fn validate_routing(&self) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        let mut names = std::collections::HashSet::new();
        let offset = usize::from(!self.table.source.is_empty() || !self.table.topics.is_empty());
        for (i, t) in self.entries().into_iter().enumerate() {
            let at = match (i, offset) {
                (0, 1) => "table".to_string(),
                (i, o) => format!("tables[{}]", i - o),
            };
            let i = at.as_str();
            validate_table(i, t)?;
            if t.source.is_empty() && t.topics.is_empty() {
                return bad(
                    i.to_string(),
                    format!(
                        "table `{}.{}` takes nothing: give it `source = [\"schema.table\"]` or `topics = [...]`",
                        t.namespace, t.name
                    ),
                );
            }
            if !names.insert((t.namespace.clone(), t.name.clone())) {
                return bad(
                    format!("{i}.name"),
                    format!("`{}.{}` is named by two entries", t.namespace, t.name),
                );
            }
            for (j, s) in t.source.iter().enumerate() {
                if s.split('.').count() != 2 {
                    return bad(format!("{i}.source[{j}]"), format!("`{s}`: write schema.table"));
                }
            }
            for (j, topic) in t.topics.iter().enumerate() {
                if topic.starts_with('^')
                    && let Err(e) = regex_lite::Regex::new(topic)
                {
                    return bad(
                        format!("{i}.topics[{j}]"),
                        format!("`{topic}` is not a regular expression: {e}"),
                    );
                }
            }
        }
        if let Some(t) = &self.routing.default_table
            && (!t.contains("{table}") || self.routing.table_for("s", "t").is_none())
        {
            return bad(
                "routing.default_table".into(),
                format!(
                    "`{t}`: write namespace.name with {{table}} (and {{schema}}) in it, e.g. raw.{{schema}}_{{table}}"
                ),
            );
        }
        Ok(())
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| Err(ConfigError::Invalid { key: key.to_string(), message });
        if self.pipeline_id.trim().is_empty() {
            return bad("pipeline_id", "must not be empty".into());
        }
        if self.catalog.name.trim().is_empty() {
            return bad("catalog.name", "must not be empty".into());
        }
        if self.is_multi_table() {
            self.validate_routing()?;
        } else {
            validate_table("table", &self.table)?;
            for (key, set) in [
                ("table.source", !self.table.source.is_empty()),
                ("table.topics", !self.table.topics.is_empty()),
                ("table.chain", self.table.chain.is_some()),
            ] {
                if set {
                    return bad(key, "routes events only in a host with [routing] default_table or [[tables]] entries (a one-table host takes every event): add one, or remove this key".into());
                }
            }
        }
        if self.sink.batch_size == 0 {
            return bad("sink.batch_size", "must be at least 1".into());
        }
        if self.sink.commit_rows == 0 {
            return bad("sink.commit_rows", "must be at least 1".into());
        }
        if self.sink.write_buffer_bytes < 1 << 20 {
            return bad("sink.write_buffer_bytes", "must be at least 1048576 (1 MiB)".into());
        }
        if self.sink.target_file_size_bytes < 1024 {
            return bad("sink.target_file_size_bytes", "must be at least 1024".into());
        }
        self.sink
            .compression()
            .map_err(|message| ConfigError::Invalid { key: "sink.compression".into(), message })?;
        self.sink
            .small_file_compression()
            .map_err(|message| ConfigError::Invalid { key: "sink.small_file_compression".into(), message })?;
        if !(1..=22).contains(&self.sink.zstd_level) {
            return bad("sink.zstd_level", format!("{} is not a zstd level (1-22)", self.sink.zstd_level));
        }
        if self.plugins.batch_deadline_ms == 0 {
            return bad("plugins.batch_deadline_ms", "must be at least 1".into());
        }
        if self.plugins.memory_limit_mb < 1 {
            return bad("plugins.memory_limit_mb", "must be at least 1".into());
        }
        if self.plugins.debounce_ms > 60_000 {
            return bad(
                "plugins.debounce_ms",
                "must be at most 60000 (a reload waits this long after the last change)".into(),
            );
        }
        if self.sink.processing_interval_seconds == 0 {
            return bad("sink.processing_interval_seconds", "must be at least 1".into());
        }
        if self.kafka.bootstrap_servers.is_empty()
            || self.kafka.bootstrap_servers.iter().any(|b| b.trim().is_empty())
        {
            return bad("kafka.bootstrap_servers", "must list at least one host:port".into());
        }
        if self.kafka.topics.is_empty() || self.kafka.topics.iter().any(|t| t.trim().is_empty()) {
            return bad("kafka.topics", "must name at least one topic".into());
        }
        if self.kafka.group_id.trim().is_empty() {
            return bad("kafka.group_id", "must not be empty".into());
        }
        if self.kafka.max_poll_records == 0 {
            return bad("kafka.max_poll_records", "must be at least 1".into());
        }
        if let Err((key, message)) = self.kafka.check_assignment_protocol() {
            return bad(&key, message);
        }
        for (i, op) in self.filter.operations.iter().enumerate() {
            if crate::change::Op::from_debezium(op).is_none() {
                return bad(
                    &format!("filter.operations[{i}]"),
                    format!("`{op}` is not a Debezium op (c, u, d, r, t)"),
                );
            }
        }
        for (i, t) in self.filter.tables.iter().enumerate() {
            if t.split('.').count() != 2 {
                return bad(&format!("filter.tables[{i}]"), format!("`{t}`: write schema.table"));
            }
        }
        for (i, c) in self.chain.iter().enumerate() {
            if c.plugin.trim().is_empty() {
                return bad(&format!("chain[{i}].plugin"), "must name a component file".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_is_valid() {
        let c = Config::shipped_default();
        c.validate().unwrap();
        assert_eq!(c.table.namespace, "analytics");
        assert_eq!(c.table.name, "customers_analytics");
        assert_eq!(c.catalog.name, "iceberg");
        assert_eq!(c.chain.len(), 3);
        assert_eq!(c.dead_letter_table(), "customers_analytics_dlq");
    }

    #[test]
    fn kafka_records_carry_their_keys_only_for_a_mirror_without_a_key() {
        let mut c = Config::shipped_default();
        assert!(c.is_multi_table() && !c.needs_record_keys(), "append tables route without keys");
        c.routing.mode = TableMode::Mirror;
        assert!(c.needs_record_keys(), "a routed mirror table takes its key from the records");
        c.routing.mode = TableMode::Append;
        c.table.mode = TableMode::Mirror;
        assert!(c.needs_record_keys(), "the [table] entry is a mirror without a key");
        c.table.key = vec!["customer_id".into()];
        assert!(!c.needs_record_keys(), "a configured key is read from the rows");
        c.routing.default_table = None;
        c.table.key.clear();
        assert!(!c.is_multi_table() && c.needs_record_keys(), "one mirror table without a key");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[table]\nnmae = \"x\"\n", "t").unwrap_err().to_string();
        assert!(err.contains("nmae"), "{err}");
    }

    #[test]
    fn cooperative_rebalancing_is_refused_with_the_fix() {
        let mut c = Config::shipped_default();
        c.kafka.properties.insert("partition.assignment.strategy".into(), "cooperative-sticky".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("kafka.properties.\"partition.assignment.strategy\""), "{err}");
        assert!(err.contains("cooperative") && err.contains("range,roundrobin"), "{err}");
        c.kafka.properties.insert("partition.assignment.strategy".into(), "Range, COOPERATIVE-STICKY".into());
        assert!(c.validate().is_err());
        c.kafka.properties.insert("partition.assignment.strategy".into(), "roundrobin".into());
        c.validate().unwrap();
        c.kafka.properties.insert("group.protocol".into(), "consumer".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("group.protocol") && err.contains("classic"), "{err}");
        c.kafka.properties.insert("group.protocol".into(), "classic".into());
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = Config::shipped_default();
        c.sink.batch_size = 0;
        assert!(c.validate().unwrap_err().to_string().contains("sink.batch_size"));
        let mut c = Config::shipped_default();
        c.sink.compression = "brotli9000".into();
        assert!(c.validate().unwrap_err().to_string().contains("sink.compression"));
        let mut c = Config::shipped_default();
        c.sink.small_file_compression = "brotli".into();
        assert!(c.validate().unwrap_err().to_string().contains("sink.small_file_compression"));
        let mut c = Config::shipped_default();
        c.table.columns[0].ty = "decimal(99,2)".into();
        assert!(c.validate().unwrap_err().to_string().contains("table.columns[0].type"));
    }
}
