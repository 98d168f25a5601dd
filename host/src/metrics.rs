//! Prometheus metrics for every counter a user would graph, and an optional `/metrics` endpoint.

use std::net::SocketAddr;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
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
    pub truncates: IntCounter,
    pub toast_placeholders: IntCounter,
    pub commits: IntCounter,
    pub data_files: IntCounter,
    /// By plugin.
    pub plugin_failures: IntCounterVec,
    pub batches: IntCounter,
    pub pending_rows: IntGauge,
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
            let c = IntCounterVec::new(Opts::new(format!("cdc_host_{name}"), help), &[label])
                .expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let pending_rows = IntGauge::new(
            "cdc_host_pending_rows",
            "rows written but not yet committed",
        )
        .expect("metric");
        registry
            .register(Box::new(pending_rows.clone()))
            .expect("register");
        Self {
            records: counter("records_total", "input records read"),
            events: counter("events_total", "change events decoded"),
            rows_written: counter("rows_committed_total", "rows committed to the table"),
            dropped: counter("events_dropped_total", "events filtered out by plugins"),
            dead_letters: vec(
                "dead_letters_total",
                "records sent to the dead-letter table",
                "stage",
            ),
            tombstones: counter("tombstones_total", "tombstone records (null value) skipped"),
            truncates: counter("truncates_total", "truncate events seen"),
            toast_placeholders: counter(
                "toast_placeholders_total",
                "unavailable TOAST values written as null",
            ),
            commits: counter("commits_total", "Iceberg commits to the main table"),
            data_files: counter("data_files_total", "data files committed"),
            plugin_failures: vec(
                "plugin_failures_total",
                "batches a plugin failed on",
                "plugin",
            ),
            batches: counter("batches_total", "batches processed"),
            pending_rows,
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
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
