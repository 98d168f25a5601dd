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

use super::{FlushError, PipelineHandle, Source};
use crate::change::RawBatch;
use crate::config::{KafkaConfig, OffsetReset};
use crate::decode::is_json;
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
    /// Set when assigned partitions could not be started at their positions: the run must stop.
    failed: Option<String>,
}

/// Streaming: a batch that has records is cut once no record arrived for this long ...
const QUIET_GAP: Duration = Duration::from_millis(10);
/// ... or once its first record waited this long: a live stream's rows reach the table promptly.
const BATCH_LINGER: Duration = Duration::from_millis(100);

/// Records taken from what the consumer has fetched between two reads of the clock.
const CLOCK_EVERY: u32 = 256;

/// Attempts at starting assigned partitions at their positions before the run stops.
const ASSIGN_ATTEMPTS: u32 = 5;
/// Wait before the second attempt; doubled before each further one (0.2 + 0.4 + 0.8 + 1.6 s).
const ASSIGN_BACKOFF: Duration = Duration::from_millis(200);

/// Runs `op` up to `attempts` times (at least once), waiting `backoff`, then twice as long, and so on
/// between attempts; `on_retry(attempt, error, wait)` is told about each failure that is retried.
/// Returns the first success or the last error.
fn retry<T>(
    attempts: u32,
    backoff: Duration,
    mut op: impl FnMut() -> Result<T, String>,
    mut on_retry: impl FnMut(u32, &str, Duration),
) -> Result<T, String> {
    let mut wait = backoff;
    let mut attempt = 1;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= attempts => return Err(e),
            Err(e) => {
                on_retry(attempt, &e, wait);
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
                attempt += 1;
            }
        }
    }
}

/// Decides where `parts` start (see [`start_offsets`]) and assigns them there, retrying failures
/// (catalog or broker unreachable) with backoff; the error says what failed after the last attempt.
fn assign_at_positions(
    consumer: &BaseConsumer<Context>,
    handle: Option<&dyn PipelineHandle>,
    parts: &[(String, i32)],
    reset: OffsetReset,
) -> Result<TopicPartitionList, String> {
    retry(
        ASSIGN_ATTEMPTS,
        ASSIGN_BACKOFF,
        || {
            let tpl = start_offsets(consumer, handle, parts, reset)?;
            consumer.assign(&tpl).map_err(|e| format!("cannot seek the assigned partitions: {e}"))?;
            Ok(tpl)
        },
        |attempt, error, wait| {
            tracing::warn!(
                attempt,
                attempts = ASSIGN_ATTEMPTS,
                error,
                retry_in_ms = wait.as_millis() as u64,
                "starting the assigned partitions at their positions failed; retrying"
            )
        },
    )
    .map_err(|e| {
        let streams: Vec<String> = parts.iter().map(|(t, p)| stream_name(t, *p)).collect();
        format!(
            "cannot start partitions {} at their positions after {ASSIGN_ATTEMPTS} attempts: {e}. Stopping rather than reading from offsets the table does not hold; check that Kafka and the Iceberg catalog are reachable (`scripts/stack status` for the local stack) and restart",
            streams.join(", ")
        )
    })
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
                    // Shutting down: the pipeline's last commit already holds what it took.
                    Err(FlushError::Stopped) => {
                        tracing::debug!(partitions = n, "partitions revoked after the pipeline stopped")
                    }
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
            match assign_at_positions(consumer, handle.as_deref(), &parts, reset) {
                Ok(_) => {
                    tracing::info!(partitions = ?parts, "partitions assigned");
                    self.shared.lock().expect("kafka state").assigned = parts;
                }
                Err(e) => {
                    // Fetch nothing from the offsets the group handed out; the source stops the run.
                    if let Err(u) = consumer.unassign() {
                        tracing::warn!(error = %u, "cannot unassign the partitions");
                    }
                    tracing::error!(error = %e, "partitions assigned but not started");
                    let mut s = self.shared.lock().expect("kafka state");
                    s.assigned.clear();
                    s.failed.get_or_insert(e);
                }
            }
        }
    }
}

/// Offsets to start each partition at: the table's positions, else the group's committed offsets,
/// else `auto_offset_reset` (for several tables: the lower of the tables' and the group's).
fn start_offsets(
    consumer: &BaseConsumer<Context>,
    handle: Option<&dyn PipelineHandle>,
    parts: &[(String, i32)],
    reset: OffsetReset,
) -> Result<TopicPartitionList, String> {
    let table: BTreeMap<String, i64> = match handle {
        Some(h) => h.table_positions().map_err(|e| format!("cannot read the table's positions: {e}"))?,
        None => BTreeMap::new(),
    };
    let several = handle.is_some_and(|h| h.several_tables());
    let mut query = TopicPartitionList::new();
    for (t, p) in parts {
        if several || !table.contains_key(&stream_name(t, *p)) {
            query.add_partition(t, *p);
        }
    }
    let group: HashMap<(String, i32), i64> = if query.count() == 0 {
        HashMap::new()
    } else {
        consumer
            .committed_offsets(query, Duration::from_secs(10))
            .map_err(|e| format!("cannot read the group's committed offsets: {e}"))?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect()
    };
    let mut tpl = TopicPartitionList::new();
    for (t, p) in parts {
        let offset = match (table.get(&stream_name(t, *p)), group.get(&(t.clone(), *p))) {
            (Some(o), Some(g)) if several => Offset::Offset(*o.min(g)),
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
    /// Hand records over as `{"topic","key","value"}` (a mirror table takes its key from them).
    record_keys: bool,
    /// Bytes of the last full batch: the next one reserves as much up front instead of growing.
    last_batch_bytes: usize,
}

/// Appends a Kafka record to `out` as `{"topic":..,"key":..,"value":..}`. A key that is not JSON
/// becomes null. The value is copied as it is, last, without a check: the batch is marked
/// [`RawBatch::unchecked_values`] and decoding checks it, so every value is read once, not twice.
pub fn push_wrapped(
    out: &mut RawBatch,
    stream: u16,
    offset: i64,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    out.unchecked_values = true;
    out.push_with(stream, offset, |buf| wrap_record(buf, topic, key, value));
}

fn wrap_record(out: &mut Vec<u8>, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) {
    out.extend_from_slice(b"{\"topic\":");
    serde_json::to_writer(&mut *out, topic).expect("a string serialises");
    out.extend_from_slice(b",\"key\":");
    match key {
        Some(k) if is_json(k) => out.extend_from_slice(k),
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(value.unwrap_or(b"null"));
    out.push(b'}');
}

impl KafkaSource {
    /// Hands records over with their Kafka key (`{"topic","key","value"}`), for a mirror table that
    /// takes its key from the Debezium record key.
    pub fn with_record_keys(mut self, yes: bool) -> Self {
        self.record_keys = yes;
        self
    }

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
        if cfg.topics.iter().any(|t| t.starts_with('^')) {
            // A pattern subscription sees topics created later (a new source table) at the next
            // metadata refresh: every 10 s rather than librdkafka's 5 minutes.
            client.set("topic.metadata.refresh.interval.ms", "10000");
        }
        if let Err((key, message)) = cfg.check_assignment_protocol() {
            return Err(PipelineError::Source(format!("config key `{key}`: {message}")));
        }
        for (k, v) in &cfg.properties {
            client.set(k, v);
        }
        let shared = Arc::new(Mutex::new(Shared {
            handle: None,
            reset: cfg.auto_offset_reset,
            assigned: Vec::new(),
            failed: None,
        }));
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
            record_keys: false,
            last_batch_bytes: 0,
        })
    }

    /// Batch mode: assigns every partition of the topics, seeks, and records the end offsets.
    fn assign_all(&mut self) -> Result<(), PipelineError> {
        let timeout = Duration::from_secs(30);
        let mut parts = Vec::new();
        for topic in &self.cfg.topics {
            // A pattern (`^...`) takes every topic whose name it matches.
            let pattern = match topic.starts_with('^') {
                true => Some(
                    regex_lite::Regex::new(topic)
                        .map_err(|e| PipelineError::Source(format!("topic pattern `{topic}`: {e}")))?,
                ),
                false => None,
            };
            let md = self.consumer.fetch_metadata(pattern.is_none().then_some(topic.as_str()), timeout).map_err(|e| {
                PipelineError::Source(format!(
                    "cannot read metadata of topic `{topic}` from {}: {e} (is Kafka running? `scripts/stack status`)",
                    self.cfg.bootstrap_servers.join(",")
                ))
            })?;
            for t in md.topics() {
                if let Some(p) = &pattern
                    && (t.name().starts_with("__") || !p.is_match(t.name()))
                {
                    continue;
                }
                if let Some(err) = t.error() {
                    return Err(PipelineError::Source(format!("topic `{}`: {err:?}", t.name())));
                }
                for p in t.partitions() {
                    parts.push((t.name().to_string(), p.id()));
                }
            }
        }
        let handle = self.shared.lock().expect("kafka state").handle.clone();
        let tpl = assign_at_positions(&self.consumer, handle.as_deref(), &parts, self.cfg.auto_offset_reset)
            .map_err(PipelineError::Source)?;
        for (t, p) in &parts {
            // With the default `isolation.level=read_committed` this is the last stable offset.
            let (low, high) = self
                .consumer
                .fetch_watermarks(t, *p, timeout)
                .map_err(|e| PipelineError::Source(format!("end offsets of {t}/{p}: {e}")))?;
            let start = match tpl.find_partition(t, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                Some(Offset::End) => high,
                _ => low,
            };
            self.bounds.push(Bounds {
                topic: t.clone(),
                partition: *p,
                end: high,
                delivered: start.max(low),
                position: None,
            });
        }
        self.shared.lock().expect("kafka state").assigned = parts.clone();
        let total: i64 = self.bounds.iter().map(|b| (b.end - b.delivered).max(0)).sum();
        tracing::info!(
            partitions = parts.len(),
            records = total,
            "batch mode: consuming up to the end offsets seen at start"
        );
        Ok(())
    }

    fn batch_done(&self) -> bool {
        self.bounds.iter().all(|b| partition_done(b.end, b.delivered, b.position))
    }

    /// Batch mode: takes the consumer's positions, which also move past records never delivered
    /// (transaction markers, aborted transactions).
    fn refresh_positions(&mut self) {
        let positions = match self.consumer.position() {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "consumer positions not available yet");
                return;
            }
        };
        for e in positions.elements() {
            let Offset::Offset(pos) = e.offset() else { continue };
            if let Some(b) =
                self.bounds.iter_mut().find(|b| b.partition == e.partition() && b.topic == e.topic())
            {
                b.position = Some(pos);
            }
        }
    }

    /// The error of a failed partition assignment, if one happened: the run must stop.
    fn assignment_failure(&self) -> Option<PipelineError> {
        self.shared.lock().expect("kafka state").failed.clone().map(PipelineError::Source)
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
                let labels = [e.topic(), &e.partition().to_string()];
                self.metrics.consumer_lag.with_label_values(&labels).set(lag);
                self.metrics.reference.kafka_lag.with_label_values(&labels).set(lag);
                tracing::info!(topic = e.topic(), partition = e.partition(), lag, "consumer lag");
            }
        }
    }
}

/// Batch mode: how far one partition goes.
struct Bounds {
    topic: String,
    partition: i32,
    /// The end offset (exclusive) taken at start.
    end: i64,
    /// One past the last record handed over (the start offset before the first).
    delivered: i64,
    /// The consumer's position, when known.
    position: Option<i64>,
}

/// Batch mode: whether a partition is read up to `end`. The last delivered record alone cannot
/// tell: transaction markers (and records of aborted transactions) take offsets but are never
/// delivered, so a topic written with transactions ends in offsets no record reaches. The consumer's
/// position moves past them.
fn partition_done(end: i64, delivered: i64, position: Option<i64>) -> bool {
    delivered >= end || position.is_some_and(|p| p >= end)
}

/// The index of a topic-partition in `out.streams`, adding it on first sight (no allocation after).
pub fn stream_index(
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
        if let Some(e) = self.assignment_failure() {
            return Err(e);
        }
        if self.mode == Mode::Batch {
            self.refresh_positions();
            if self.batch_done() {
                return Ok(false);
            }
        }
        let max = max.min(self.cfg.max_poll_records).max(1);
        out.reserve(self.last_batch_bytes + self.last_batch_bytes / 8);
        let streaming = self.mode == Mode::Streaming;
        let mut deadline = Instant::now() + Duration::from_millis(self.cfg.consumer_timeout_ms);
        let mut first_at = None;
        let mut now = Instant::now();
        // Records taken since the clock was last read.
        let mut unclocked = 0;
        while out.len() < max {
            if now >= deadline {
                // A live stream delivered less than a batch in that time: it has caught up.
                out.caught_up = streaming && !out.is_empty();
                break;
            }
            // Streaming: once a batch has records, it is cut when nothing more is waiting or when
            // its first record is BATCH_LINGER old (a backlog read at full speed fills batches long
            // before either; while the consumer starts fetching, it may not).
            if streaming && first_at.is_none() && !out.is_empty() {
                first_at = Some(now);
                deadline = deadline.min(now + BATCH_LINGER);
            }
            // A record already fetched is taken without waiting and without reading the clock (at
            // full speed, a clock read per record was ~2 % of a drain); the clock is read when
            // nothing is waiting, and every CLOCK_EVERY records.
            let mut polled = None;
            if unclocked < CLOCK_EVERY {
                polled = self.consumer.poll(Duration::ZERO);
                unclocked += 1;
            }
            if polled.is_none() {
                now = Instant::now();
                unclocked = 0;
                if now >= deadline {
                    continue;
                }
                let wait = if first_at.is_some() { (deadline - now).min(QUIET_GAP) } else { deadline - now };
                polled = self.consumer.poll(wait);
                now = Instant::now();
            }
            if let Some(e) = self.assignment_failure() {
                // Whatever this poll brought comes from offsets the table does not vouch for.
                out.clear();
                return Err(e);
            }
            if self.revoked.swap(false, Ordering::Relaxed) {
                // Partitions changed hands inside that poll: what was polled before is not ours to
                // hand over any more; whoever owns the partitions now reads it from the table's positions.
                out.clear();
                out.streams.clear();
                self.streams.clear();
            }
            let Some(polled) = polled else {
                // Nothing waiting: the consumer has read everything the brokers had for it.
                out.caught_up = streaming;
                break;
            };
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
                            b.delivered = b.end;
                            continue;
                        }
                        b.delivered = offset + 1;
                    }
                    let stream = stream_index(&mut self.streams, out, topic, partition);
                    // A null value is a tombstone: handed over as `null`, which decode counts as one.
                    if self.record_keys {
                        push_wrapped(out, stream, offset, topic, m.key(), m.payload());
                    } else {
                        out.push(stream, offset, m.payload().unwrap_or(b"null"));
                    }
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
                    unclocked = CLOCK_EVERY;
                }
            }
        }
        if out.len() == max {
            self.last_batch_bytes = out.buf.len();
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
    fn records_wrapped_with_their_keys() {
        let mut out = Vec::new();
        wrap_record(&mut out, "t\"1", Some(br#"{"id":1}"#), Some(br#"{"op":"c"}"#));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"topic": "t\"1", "key": {"id": 1}, "value": {"op": "c"}}));
        out.clear();
        wrap_record(&mut out, "t", Some(b"not json"), None);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"topic": "t", "key": null, "value": null}));
        out.clear();
        wrap_record(&mut out, "t", None, Some(b"garbage"));
        assert_eq!(out, br#"{"topic":"t","key":null,"value":garbage}"#);
    }

    #[test]
    fn batch_end_uses_the_consumer_position() {
        // Records 0..=98 delivered, the commit marker at 99: the last delivered offset never reaches
        // the end (100), the position does once the marker is consumed.
        assert!(!partition_done(100, 99, None));
        assert!(!partition_done(100, 99, Some(99)));
        assert!(partition_done(100, 99, Some(100)));
        // An aborted transaction at the end: nothing of it is delivered, the position passes it.
        assert!(partition_done(100, 40, Some(100)));
        // Delivered up to the end (non-transactional topic), position not known yet.
        assert!(partition_done(100, 100, None));
        // Records arrived after the start: the position may run past the end.
        assert!(partition_done(100, 100, Some(250)));
        // Empty partition (start == end).
        assert!(partition_done(0, 0, None));
        assert!(!partition_done(5, 0, Some(0)));
    }

    #[test]
    fn retry_backs_off_then_succeeds_or_gives_the_last_error() {
        let mut calls = 0;
        let mut waits = Vec::new();
        let r = retry(
            5,
            Duration::from_millis(1),
            || {
                calls += 1;
                if calls < 3 { Err(format!("fail {calls}")) } else { Ok(calls) }
            },
            |attempt, e, wait| waits.push((attempt, e.to_string(), wait)),
        );
        assert_eq!(r, Ok(3));
        assert_eq!(
            waits,
            vec![
                (1, "fail 1".to_string(), Duration::from_millis(1)),
                (2, "fail 2".to_string(), Duration::from_millis(2))
            ]
        );

        let mut calls = 0;
        let mut retried = 0;
        let r: Result<(), String> = retry(
            3,
            Duration::ZERO,
            || {
                calls += 1;
                Err(format!("seek failed ({calls})"))
            },
            |_, _, _| retried += 1,
        );
        assert_eq!(r, Err("seek failed (3)".to_string()));
        assert_eq!((calls, retried), (3, 2));

        let mut calls = 0;
        let r: Result<(), String> = retry(
            0,
            Duration::ZERO,
            || {
                calls += 1;
                Err("once".to_string())
            },
            |_, _, _| unreachable!("no retry with a single attempt"),
        );
        assert_eq!((r, calls), (Err("once".to_string()), 1));
    }

    #[test]
    fn cooperative_assignment_is_refused_at_construction() {
        let mut cfg = KafkaConfig::default();
        cfg.properties.insert("partition.assignment.strategy".into(), "cooperative-sticky".into());
        let err = match KafkaSource::new(cfg, Mode::Streaming, Metrics::new()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("cooperative-sticky must be refused"),
        };
        assert!(err.contains("partition.assignment.strategy") && err.contains("eager"), "{err}");
    }

    #[test]
    fn stream_names_round_trip() {
        let s = stream_name("postgres.public.customers", 3);
        assert_eq!(s, "postgres.public.customers/3");
        assert_eq!(parse_stream(&s), Some(("postgres.public.customers", 3)));
        assert_eq!(parse_stream("file.ndjson"), None);
    }
}
