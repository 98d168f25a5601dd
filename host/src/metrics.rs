//! Prometheus metrics for every counter a user would graph, and an optional `/metrics` endpoint.

use std::net::SocketAddr;

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
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
        Self {
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
                "unavailable TOAST values written as null",
            ),
            commits: counter("commits_total", "Iceberg commits to the main table"),
            data_files: counter("data_files_total", "data files committed"),
            plugin_failures: vec("plugin_failures_total", "batches a plugin failed on", "plugin"),
            batches: counter("batches_total", "batches processed"),
            pending_rows,
            filtered: counter("events_filtered_total", "events left out by the [filter] config"),
            consumer_lag,
            pipeline_lag_seconds,
            plugins: PluginMetrics::register(&registry),
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("encode metrics");
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
