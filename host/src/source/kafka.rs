//! Debezium records from Apache Kafka (librdkafka), exactly once into Iceberg.
//!
//! Positions live in the table: every commit records, per topic-partition whose rows it holds, the
//! next offset to read. On start and on every partition assignment the consumer seeks to those
//! positions (then to the group's committed offsets, then to `auto_offset_reset`). Before partitions
//! are revoked everything already handed to the pipeline is committed, and records polled but not yet
//! handed over are dropped (the next owner reads them from the table's positions). Group offsets are
//! committed only after the Iceberg commit that holds the rows, for lag tooling.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{PipelineHandle, Source};
use crate::change::RawBatch;
use crate::config::{KafkaConfig, OffsetReset};
use crate::error::PipelineError;
use crate::metrics::Metrics;

/// Whether to stop at the end offsets seen at start (batch) or run until stopped (streaming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Streaming,
    Batch,
}

/// The stream name of a topic-partition in positions and dead letters.
pub fn stream_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

fn parse_stream(s: &str) -> Option<(&str, i32)> {
    let (t, p) = s.rsplit_once('/')?;
    Some((t, p.parse().ok()?))
}

/// Shared between the consumer's rebalance callbacks and the source.
struct Shared {
    handle: Option<Arc<dyn PipelineHandle>>,
    reset: OffsetReset,
    assigned: Vec<(String, i32)>,
}

struct Context {
    shared: Arc<Mutex<Shared>>,
    /// Set by a revocation: the batch being filled must be dropped.
    revoked: Arc<AtomicBool>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{log_message}"),
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka retries by itself; the host keeps polling and says why nothing arrives.
        tracing::warn!(error = %error, reason, "Kafka client error (retrying)");
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.revoked.store(true, Ordering::Relaxed);
            let handle = {
                let mut s = self.shared.lock().expect("kafka state");
                s.assigned.clear();
                s.handle.clone()
            };
            let n = tpl.count();
            if let Some(h) = handle {
                match h.flush() {
                    Ok(()) => tracing::info!(partitions = n, "partitions revoked; pending rows committed"),
                    Err(e) => {
                        tracing::error!(error = %e, "partitions revoked; committing pending rows failed")
                    }
                }
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<(String, i32)> =
                tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
            let (handle, reset) = {
                let s = self.shared.lock().expect("kafka state");
                (s.handle.clone(), s.reset)
            };
            match start_offsets(consumer, handle.as_deref(), &parts, reset) {
                Ok(with_offsets) => {
                    if let Err(e) = consumer.assign(&with_offsets) {
                        tracing::error!(error = %e, "cannot seek the assigned partitions");
                    }
                    tracing::info!(partitions = ?parts, "partitions assigned");
                }
                Err(e) => tracing::error!(error = %e, "cannot decide where to start the assigned partitions"),
            }
            self.shared.lock().expect("kafka state").assigned = parts;
        }
    }
}

/// Offsets to start each partition at: the table's positions, else the group's committed offsets,
/// else `auto_offset_reset`.
fn start_offsets(
    consumer: &BaseConsumer<Context>,
    handle: Option<&dyn PipelineHandle>,
    parts: &[(String, i32)],
    reset: OffsetReset,
) -> Result<TopicPartitionList, String> {
    let table: BTreeMap<String, i64> = match handle {
        Some(h) => h.table_positions()?,
        None => BTreeMap::new(),
    };
    let mut query = TopicPartitionList::new();
    for (t, p) in parts {
        query.add_partition(t, *p);
    }
    let group: HashMap<(String, i32), i64> = consumer
        .committed_offsets(query, Duration::from_secs(10))
        .map(|tpl| {
            tpl.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    for (t, p) in parts {
        let offset = match (table.get(&stream_name(t, *p)), group.get(&(t.clone(), *p))) {
            (Some(o), _) => Offset::Offset(*o),
            (None, Some(o)) => Offset::Offset(*o),
            (None, None) => match reset {
                OffsetReset::Earliest => Offset::Beginning,
                OffsetReset::Latest => Offset::End,
            },
        };
        tracing::debug!(topic = %t, partition = p, ?offset, "start offset");
        tpl.add_partition_offset(t, *p, offset).map_err(|e| e.to_string())?;
    }
    Ok(tpl)
}

/// Consumes Debezium topics.
pub struct KafkaSource {
    consumer: BaseConsumer<Context>,
    shared: Arc<Mutex<Shared>>,
    revoked: Arc<AtomicBool>,
    cfg: KafkaConfig,
    mode: Mode,
    name: String,
    /// Topic-partitions of the batch being filled, with their index in `RawBatch::streams`.
    streams: Vec<(String, i32, u16)>,
    /// Batch mode: per partition, the end offset (exclusive) taken at start and the next offset.
    bounds: Vec<Bounds>,
    metrics: Metrics,
    last_lag: Instant,
    last_error: Option<Instant>,
}

impl KafkaSource {
    /// Connects (lazily: librdkafka retries unreachable brokers) and subscribes or assigns.
    pub fn new(cfg: KafkaConfig, mode: Mode, metrics: Metrics) -> Result<Self, PipelineError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", cfg.bootstrap_servers.join(","))
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
            .set("partition.assignment.strategy", "range,roundrobin")
            .set(
                "auto.offset.reset",
                match cfg.auto_offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                },
            )
            .set("client.id", "cdc-host")
            // Bound the prefetch queue (librdkafka keeps 100k messages per partition by default) and
            // refill it promptly (its default waits a second once the queue was full).
            .set("queued.min.messages", "10000")
            .set("queued.max.messages.kbytes", "16384")
            .set("fetch.queue.backoff.ms", "5");
        for (k, v) in &cfg.properties {
            client.set(k, v);
        }
        let shared =
            Arc::new(Mutex::new(Shared { handle: None, reset: cfg.auto_offset_reset, assigned: Vec::new() }));
        let revoked = Arc::new(AtomicBool::new(false));
        let consumer: BaseConsumer<Context> = client
            .create_with_context(Context { shared: shared.clone(), revoked: revoked.clone() })
            .map_err(|e| PipelineError::Source(format!("Kafka consumer configuration: {e}")))?;
        let name = cfg.topics.join(",");
        Ok(Self {
            consumer,
            shared,
            revoked,
            cfg,
            mode,
            name,
            streams: Vec::new(),
            bounds: Vec::new(),
            metrics,
            last_lag: Instant::now(),
            last_error: None,
        })
    }

    /// Batch mode: assigns every partition of the topics, seeks, and records the end offsets.
    fn assign_all(&mut self) -> Result<(), PipelineError> {
        let timeout = Duration::from_secs(30);
        let mut parts = Vec::new();
        for topic in &self.cfg.topics {
            let md = self.consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
                PipelineError::Source(format!(
                    "cannot read metadata of topic `{topic}` from {}: {e} (is Kafka running? `scripts/stack status`)",
                    self.cfg.bootstrap_servers.join(",")
                ))
            })?;
            for t in md.topics() {
                if let Some(err) = t.error() {
                    return Err(PipelineError::Source(format!("topic `{topic}`: {err:?}")));
                }
                for p in t.partitions() {
                    parts.push((topic.clone(), p.id()));
                }
            }
        }
        let handle = self.shared.lock().expect("kafka state").handle.clone();
        let tpl = start_offsets(&self.consumer, handle.as_deref(), &parts, self.cfg.auto_offset_reset)
            .map_err(PipelineError::Source)?;
        for (t, p) in &parts {
            let (low, high) = self
                .consumer
                .fetch_watermarks(t, *p, timeout)
                .map_err(|e| PipelineError::Source(format!("end offsets of {t}/{p}: {e}")))?;
            let start = match tpl.find_partition(t, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                Some(Offset::End) => high,
                _ => low,
            };
            self.bounds.push(Bounds { topic: t.clone(), partition: *p, end: high, next: start.max(low) });
        }
        self.consumer.assign(&tpl).map_err(|e| PipelineError::Source(format!("assign: {e}")))?;
        self.shared.lock().expect("kafka state").assigned = parts.clone();
        let total: i64 = self.bounds.iter().map(|b| (b.end - b.next).max(0)).sum();
        tracing::info!(
            partitions = parts.len(),
            records = total,
            "batch mode: consuming up to the end offsets seen at start"
        );
        Ok(())
    }

    fn batch_done(&self) -> bool {
        self.bounds.iter().all(|b| b.next >= b.end)
    }

    fn report_lag(&mut self) {
        if self.last_lag.elapsed() < Duration::from_secs(10) {
            return;
        }
        self.last_lag = Instant::now();
        let Ok(positions) = self.consumer.position() else { return };
        for e in positions.elements() {
            let Offset::Offset(pos) = e.offset() else { continue };
            if let Ok((_, high)) =
                self.consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1))
            {
                let lag = (high - pos).max(0);
                self.metrics
                    .consumer_lag
                    .with_label_values(&[e.topic(), &e.partition().to_string()])
                    .set(lag);
                tracing::info!(topic = e.topic(), partition = e.partition(), lag, "consumer lag");
            }
        }
    }
}

/// Batch mode: how far one partition goes.
struct Bounds {
    topic: String,
    partition: i32,
    end: i64,
    next: i64,
}

/// The index of a topic-partition in `out.streams`, adding it on first sight (no allocation after).
fn stream_index(
    streams: &mut Vec<(String, i32, u16)>,
    out: &mut RawBatch,
    topic: &str,
    partition: i32,
) -> u16 {
    if let Some((_, _, i)) = streams.iter().find(|(t, p, _)| *p == partition && t == topic) {
        return *i;
    }
    out.streams.push(Arc::from(stream_name(topic, partition)));
    let i = (out.streams.len() - 1) as u16;
    streams.push((topic.to_string(), partition, i));
    i
}

impl Source for KafkaSource {
    fn start(&mut self, handle: Arc<dyn PipelineHandle>) -> Result<(), PipelineError> {
        self.shared.lock().expect("kafka state").handle = Some(handle);
        match self.mode {
            Mode::Batch => self.assign_all(),
            Mode::Streaming => {
                let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
                self.consumer
                    .subscribe(&topics)
                    .map_err(|e| PipelineError::Source(format!("subscribe to {topics:?}: {e}")))
            }
        }
    }

    fn next_batch(&mut self, out: &mut RawBatch, max: usize) -> Result<bool, PipelineError> {
        out.clear();
        out.streams.clear();
        self.streams.clear();
        if self.mode == Mode::Batch && self.batch_done() {
            return Ok(false);
        }
        let max = max.min(self.cfg.max_poll_records).max(1);
        let deadline = Instant::now() + Duration::from_millis(self.cfg.consumer_timeout_ms);
        while out.len() < max {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let polled = self.consumer.poll(deadline - now);
            if self.revoked.swap(false, Ordering::Relaxed) {
                // Partitions changed hands inside that poll: what was polled before is not ours to
                // hand over any more; whoever owns the partitions now reads it from the table's positions.
                out.clear();
                out.streams.clear();
                self.streams.clear();
            }
            let Some(polled) = polled else { break };
            match polled {
                Ok(m) => {
                    self.last_error = None;
                    let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
                    if self.mode == Mode::Batch {
                        let Some(b) =
                            self.bounds.iter_mut().find(|b| b.partition == partition && b.topic == topic)
                        else {
                            continue;
                        };
                        if offset >= b.end {
                            b.next = b.end;
                            continue;
                        }
                        b.next = offset + 1;
                    }
                    let stream = stream_index(&mut self.streams, out, topic, partition);
                    out.push(stream, offset, m.payload().unwrap_or(b"null"));
                    if self.mode == Mode::Batch && self.batch_done() {
                        break;
                    }
                }
                Err(e) => {
                    if self.last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, brokers = %self.cfg.bootstrap_servers.join(","), "Kafka poll failed; retrying");
                        self.last_error = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        if self.mode == Mode::Streaming {
            self.report_lag();
        }
        Ok(true)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn committed(&mut self, positions: &BTreeMap<String, i64>) {
        if !self.cfg.enable_auto_commit {
            return;
        }
        let assigned = self.shared.lock().expect("kafka state").assigned.clone();
        let mut tpl = TopicPartitionList::new();
        for (stream, next) in positions {
            let Some((t, p)) = parse_stream(stream) else { continue };
            if assigned.iter().any(|(at, ap)| at == t && *ap == p) {
                let _ = tpl.add_partition_offset(t, p, Offset::Offset(*next));
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(error = %e, "committing group offsets failed (the table's positions stay authoritative)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_round_trip() {
        let s = stream_name("postgres.public.customers", 3);
        assert_eq!(s, "postgres.public.customers/3");
        assert_eq!(parse_stream(&s), Some(("postgres.public.customers", 3)));
        assert_eq!(parse_stream("file.ndjson"), None);
    }
}
