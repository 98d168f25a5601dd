//! Prometheus metrics for every counter a user would graph, and an optional `/metrics` endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::change::Op;

/// A stage of the pipeline, for the time spent in it ([`stage_time`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading and decoding records (the reading thread).
    Decode,
    /// Filter, mirror keys and the plugin chain (the transform thread).
    Chain,
    /// Rows in the table's schema, dead letters, a mirror's key index (the writer's loop).
    Encode,
    /// Ordering rows and writing Parquet data and delete files (the writing tasks, summed).
    Write,
    /// Manifests, metadata and the catalog's compare-and-swap.
    Commit,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 5] = [Stage::Decode, Stage::Chain, Stage::Encode, Stage::Write, Stage::Commit];

    /// The stage's label.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Chain => "chain",
            Stage::Encode => "encode",
            Stage::Write => "write",
            Stage::Commit => "commit",
        }
    }
}

/// `cdc_host_stage_seconds_total{stage}`: time spent in each stage by this process (threads and tasks
/// summed, so stages that overlap can add up to more than the wall time).
static STAGE_SECONDS: std::sync::LazyLock<prometheus::CounterVec> = std::sync::LazyLock::new(|| {
    prometheus::CounterVec::new(
        Opts::new(
            "cdc_host_stage_seconds_total",
            "seconds spent in each pipeline stage (threads and tasks summed)",
        ),
        &["stage"],
    )
    .expect("metric")
});

/// Counts `elapsed` as time spent in `stage`.
pub fn stage_time(stage: Stage, elapsed: std::time::Duration) {
    STAGE_SECONDS.with_label_values(&[stage.name()]).inc_by(elapsed.as_secs_f64());
}

/// Seconds spent so far in each stage, in [`Stage::ALL`] order.
pub fn stage_seconds() -> [f64; 5] {
    Stage::ALL.map(|s| STAGE_SECONDS.with_label_values(&[s.name()]).get())
}

/// The host's metrics.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub records: IntCounter,
    pub events: IntCounter,
    pub rows_written: IntCounter,
    pub dropped: IntCounter,
    /// By stage (decode, transform, encode).
    pub dead_letters: IntCounterVec,
    pub tombstones: IntCounter,
    /// Logical decoding messages (`op = "m"`) skipped.
    pub messages: IntCounter,
    pub truncates: IntCounter,
    pub toast_placeholders: IntCounter,
    /// Mirror rows whose TOAST placeholder had no value to take (landed as null).
    pub toast_unresolved: IntCounter,
    /// Keys a mirror holds large values for while the chain leaves them out.
    pub held_keys: IntGauge,
    pub commits: IntCounter,
    pub data_files: IntCounter,
    /// By plugin.
    pub plugin_failures: IntCounterVec,
    pub batches: IntCounter,
    pub pending_rows: IntGauge,
    /// Events left out by `[filter]`.
    pub filtered: IntCounter,
    /// Records behind the end of each partition (by topic, partition).
    pub consumer_lag: IntGaugeVec,
    /// Seconds between the source commit (`ts_ms`) of the newest committed event and its commit.
    pub pipeline_lag_seconds: Gauge,
    /// Hot reload, quarantine and the active chain.
    pub plugins: PluginMetrics,
    /// The reference design's metrics, by their names there.
    pub reference: ReferenceMetrics,
}

/// The metrics the reference design names (`cross_storage_*`), each labelled with the pipeline
/// (`pipeline_id`) and the Iceberg table it writes (`table`).
#[derive(Clone)]
pub struct ReferenceMetrics {
    /// `cross_storage_events_processed{operation}`: change events decoded, by Debezium operation
    /// (`c`, `u`, `d`, `r`, `t`).
    pub events_processed: IntCounterVec,
    /// `cross_storage_transformations_applied{transformation}`: events each plugin processed.
    pub transformations_applied: IntCounterVec,
    /// `cross_storage_pipeline_lag_seconds`: source commit of the newest committed event → its
    /// Iceberg commit.
    pub pipeline_lag_seconds: Gauge,
    /// `cross_storage_batch_duration_seconds`: time a batch spends being decoded, transformed and
    /// handed to the table (queue waits left out).
    pub batch_duration_seconds: Histogram,
    /// `cross_storage_kafka_lag{topic, partition}`: records behind the end of each partition.
    pub kafka_lag: IntGaugeVec,
}

impl ReferenceMetrics {
    /// `table: None`: the registry labels every metric with its table.
    fn register(registry: &Registry, pipeline_id: &str, table: Option<&str>) -> Self {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: T) -> T {
            registry.register(Box::new(m.clone())).expect("register");
            m
        }
        let opts = |name: &str, help: &str| {
            let o = Opts::new(name, help).const_label("pipeline_id", pipeline_id);
            match table {
                Some(t) => o.const_label("table", t),
                None => o,
            }
        };
        let counters = |name: &str, help: &str, labels: &[&str]| {
            reg(registry, IntCounterVec::new(opts(name, help), labels).expect("metric"))
        };
        Self {
            events_processed: counters(
                "cross_storage_events_processed",
                "change events decoded, by Debezium operation",
                &["operation"],
            ),
            transformations_applied: counters(
                "cross_storage_transformations_applied",
                "events each transformation (plugin) processed",
                &["transformation"],
            ),
            pipeline_lag_seconds: reg(
                registry,
                Gauge::with_opts(opts(
                    "cross_storage_pipeline_lag_seconds",
                    "seconds from the source commit of the newest committed event to its Iceberg commit",
                ))
                .expect("metric"),
            ),
            batch_duration_seconds: reg(
                registry,
                Histogram::with_opts(
                    HistogramOpts::from(opts(
                        "cross_storage_batch_duration_seconds",
                        "seconds a batch spends being decoded, transformed and handed to the table",
                    ))
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                )
                .expect("metric"),
            ),
            kafka_lag: reg(
                registry,
                IntGaugeVec::new(
                    opts("cross_storage_kafka_lag", "records behind the end of the partition"),
                    &["topic", "partition"],
                )
                .expect("metric"),
            ),
        }
    }
}

/// Metrics of the plugin chain's life: reloads, quarantines, which chain is active.
#[derive(Clone)]
pub struct PluginMetrics {
    /// Chain reloads by result: `applied`, `rejected`, `unchanged`, `superseded`.
    pub reloads: IntCounterVec,
    /// By plugin.
    pub quarantines: IntCounterVec,
    /// Quarantined plugins in the active chain.
    pub quarantined: IntGauge,
    /// Batches that passed a quarantined plugin by, by plugin.
    pub skipped_batches: IntCounterVec,
    /// Seconds from the file change to the new chain processing its first batch, for the last swap.
    pub swap_seconds: Gauge,
    /// 1 for each plugin of the active chain, by position, plugin, version and content hash.
    pub info: IntGaugeVec,
}

impl PluginMetrics {
    fn register(registry: &Registry) -> Self {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: T) -> T {
            registry.register(Box::new(m.clone())).expect("register");
            m
        }
        let vec = |name: &str, help: &str, label: &str| {
            reg(registry, IntCounterVec::new(Opts::new(name, help), &[label]).expect("metric"))
        };
        Self {
            reloads: vec("cdc_host_plugin_reloads_total", "plugin chain reloads by result", "result"),
            quarantines: vec("cdc_host_plugin_quarantines_total", "plugins quarantined", "plugin"),
            quarantined: reg(
                registry,
                IntGauge::new("cdc_host_plugins_quarantined", "quarantined plugins in the active chain")
                    .expect("metric"),
            ),
            skipped_batches: vec(
                "cdc_host_plugin_skipped_batches_total",
                "batches that passed a quarantined plugin by",
                "plugin",
            ),
            swap_seconds: reg(
                registry,
                Gauge::new(
                    "cdc_host_plugin_swap_seconds",
                    "seconds from the plugin or config change to the new chain being active (last swap)",
                )
                .expect("metric"),
            ),
            info: reg(
                registry,
                IntGaugeVec::new(
                    Opts::new("cdc_host_plugin_info", "the active chain: 1 per plugin"),
                    &["position", "plugin", "version", "hash"],
                )
                .expect("metric"),
            ),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry (the reference metrics with empty pipeline and
    /// table labels).
    pub fn new() -> Self {
        Self::for_pipeline("", "")
    }

    /// Registers every metric in a fresh registry, the reference metrics labelled with
    /// `pipeline_id` and `table`.
    pub fn for_pipeline(pipeline_id: &str, table: &str) -> Self {
        let m = Self::build(Registry::new(), pipeline_id, Some(table));
        m.registry.register(Box::new(STAGE_SECONDS.clone())).expect("register");
        m
    }

    /// The metrics of one table of a multi-table host: every metric labelled `table` (serve them
    /// with the host's other tables' through a [`MetricsSet`]).
    pub fn for_table(pipeline_id: &str, table: &str) -> Self {
        let labels = HashMap::from([("table".to_string(), table.to_string())]);
        let registry = Registry::new_custom(None, Some(labels)).expect("valid registry labels");
        Self::build(registry, pipeline_id, None)
    }

    fn build(registry: Registry, pipeline_id: &str, table: Option<&str>) -> Self {
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(format!("cdc_host_{name}"), help).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let vec = |name: &str, help: &str, label: &str| {
            let c =
                IntCounterVec::new(Opts::new(format!("cdc_host_{name}"), help), &[label]).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(format!("cdc_host_{name}"), help).expect("metric");
            registry.register(Box::new(g.clone())).expect("register");
            g
        };
        let pending_rows =
            IntGauge::new("cdc_host_pending_rows", "rows written but not yet committed").expect("metric");
        registry.register(Box::new(pending_rows.clone())).expect("register");
        let consumer_lag = IntGaugeVec::new(
            Opts::new("cdc_host_consumer_lag", "records behind the end of the partition"),
            &["topic", "partition"],
        )
        .expect("metric");
        registry.register(Box::new(consumer_lag.clone())).expect("register");
        let pipeline_lag_seconds = Gauge::new(
            "cdc_host_pipeline_lag_seconds",
            "seconds from the source commit of the newest committed event to its Iceberg commit",
        )
        .expect("metric");
        registry.register(Box::new(pipeline_lag_seconds.clone())).expect("register");
        let m = Self {
            records: counter("records_total", "input records read"),
            events: counter("events_total", "change events decoded"),
            rows_written: counter("rows_committed_total", "rows committed to the table"),
            dropped: counter("events_dropped_total", "events filtered out by plugins"),
            dead_letters: vec("dead_letters_total", "records sent to the dead-letter table", "stage"),
            tombstones: counter("tombstones_total", "tombstone records (null value) skipped"),
            messages: counter("logical_messages_total", "logical decoding messages (op m) skipped"),
            truncates: counter("truncates_total", "truncate events seen"),
            toast_placeholders: counter(
                "toast_placeholders_total",
                "Debezium TOAST placeholders met (an append table stores null, a mirror keeps the value)",
            ),
            toast_unresolved: counter(
                "toast_unresolved_total",
                "mirror rows whose unchanged large value was not known and landed as null",
            ),
            held_keys: gauge("mirror_held_keys", "left-out keys whose large values a mirror keeps"),
            commits: counter("commits_total", "Iceberg commits to the main table"),
            data_files: counter("data_files_total", "data files committed"),
            plugin_failures: vec("plugin_failures_total", "batches a plugin failed on", "plugin"),
            batches: counter("batches_total", "batches processed"),
            pending_rows,
            filtered: counter("events_filtered_total", "events left out by the [filter] config"),
            consumer_lag,
            pipeline_lag_seconds,
            plugins: PluginMetrics::register(&registry),
            reference: ReferenceMetrics::register(&registry, pipeline_id, table),
            registry,
        };
        // Series that exist from the start (a dashboard shows 0 rather than no data).
        for stage in ["decode", "transform", "encode"] {
            m.dead_letters.with_label_values(&[stage]);
        }
        for op in Op::ALL {
            m.reference.events_processed.with_label_values(&[op.debezium()]);
        }
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("encode metrics");
        String::from_utf8(buf).expect("utf-8 metrics")
    }

    /// Serves `GET /metrics` on `addr` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        let set = MetricsSet::default();
        set.add(&self);
        set.serve(addr).await
    }
}

/// The metrics of several registries (a multi-table host: one per table, one for the source),
/// served as one exposition.
#[derive(Clone, Default)]
pub struct MetricsSet(Arc<Mutex<Vec<Registry>>>);

impl MetricsSet {
    /// Serves `metrics` too (from now on).
    pub fn add(&self, metrics: &Metrics) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(metrics.registry.clone());
    }

    /// The text exposition of every registry, families of one name merged.
    pub fn render(&self) -> String {
        let mut families: Vec<prometheus::proto::MetricFamily> = Vec::new();
        for r in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for f in r.gather() {
                match families.iter_mut().find(|x| x.name() == f.name()) {
                    Some(x) => {
                        for m in f.get_metric() {
                            if !x.get_metric().iter().any(|y| y.get_label() == m.get_label()) {
                                x.mut_metric().push(m.clone());
                            }
                        }
                    }
                    None => families.push(f),
                }
            }
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&families, &mut buf).expect("encode metrics");
        String::from_utf8(buf).expect("utf-8 metrics")
    }

    /// Serves `GET /metrics` on `addr` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "serving metrics at /metrics");
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let body = self.render();
                tokio::spawn(async move {
                    let mut req = [0u8; 1024];
                    let _ = sock.read(&mut req).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body.as_bytes()).await;
                });
            }
        });
        Ok(())
    }
}
