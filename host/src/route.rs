//! Routing for a host that writes several tables (`[[tables]]`, `[routing]`): one consumer reads
//! the topics, every record goes to the table its source table (or topic) belongs to, and each
//! table runs its own pipeline (decode, chain, sink) fed by a [`RouteSource`].
//!
//! - [`Routes`] says which table a record belongs to: the first `[[tables]]` entry whose `topics`
//!   match its topic or whose `source` names its Debezium `source.schema`/`source.table`, else the
//!   `[routing]` default table named from the source table;
//! - [`peek`] finds a record's topic and source table without decoding it;
//! - [`Acks`] turns the positions each table acknowledges into the positions the consumer may
//!   commit: a stream's position moves only as far as every table it fed holds.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use memchr::memmem::Finder;
use serde::Deserialize;

use crate::change::RawBatch;
use crate::config::{Config, RoutingConfig};
use crate::error::PipelineError;
use crate::metrics::Metrics;
use crate::sink::commit::Positions;
use crate::source::{FlushError, PipelineHandle, Source};

/// A record's topic and source table, as far as they can be told without decoding it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peeked<'a> {
    pub topic: Option<&'a str>,
    /// Debezium's `source.schema` and `source.table`.
    pub source: Option<(Cow<'a, str>, Cow<'a, str>)>,
}

#[derive(Deserialize)]
struct SourceBlock<'a> {
    #[serde(borrow)]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow)]
    table: Option<Cow<'a, str>>,
}

// Searchers built once: building one per record costs more than the search.
static SCHEMA_FIELD: LazyLock<Finder> = LazyLock::new(|| Finder::new(b"\"schema\":\""));
static TABLE_FIELD: LazyLock<Finder> = LazyLock::new(|| Finder::new(b"\"table\":\""));
/// The last match followed by an object is the envelope's `source` block: it follows the row images,
/// so a row column named `source` is not taken for it. (A forward search of the whole record is
/// vectorised; a reverse one is not, and costs more even though it stops sooner.)
static SOURCE_KEY: LazyLock<Finder> = LazyLock::new(|| Finder::new(b"\"source\""));

/// The text of `"key":"value"` (the key as `finder` searches it) in a compact JSON object, if it has
/// no escapes.
fn compact_field<'a>(obj: &'a [u8], finder: &Finder<'_>) -> Option<&'a str> {
    let at = finder.find(obj)? + finder.needle().len();
    let len = memchr::memchr(b'"', &obj[at..])?;
    let v = &obj[at..at + len];
    if v.contains(&b'\\') {
        return None;
    }
    std::str::from_utf8(v).ok()
}

/// The topic (`{"topic": ...}` of a wrapped record) and the `source` block's schema and table of a
/// Debezium record. Only the `source` object is read: a key `"source"` followed by an object can
/// only be Debezium's block (values of a column named `source` are text, numbers or null).
pub fn peek(record: &[u8]) -> Peeked<'_> {
    let mut out = Peeked::default();
    let t = record.trim_ascii_start();
    if let Some(rest) = t.strip_prefix(b"{").map(<[u8]>::trim_ascii_start)
        && let Some(rest) = rest.strip_prefix(b"\"topic\"").map(<[u8]>::trim_ascii_start)
        && let Some(rest) = rest.strip_prefix(b":").map(<[u8]>::trim_ascii_start)
        && let Some(rest) = rest.strip_prefix(b"\"")
        && let Some(end) = memchr::memchr(b'"', rest)
    {
        out.topic = std::str::from_utf8(&rest[..end]).ok();
    }
    let block_after = |at: usize| {
        let rest = record[at + 8..].trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
        rest.starts_with(b"{").then_some(rest)
    };
    if let Some(rest) = SOURCE_KEY.find_iter(record).filter_map(block_after).last() {
        // Debezium's JSON converter writes compact JSON, and the block holds no nested object.
        let block = memchr::memchr(b'}', rest).map_or(rest, |end| &rest[..end]);
        if let (Some(s), Some(t)) = (compact_field(block, &SCHEMA_FIELD), compact_field(block, &TABLE_FIELD))
        {
            out.source = Some((Cow::Borrowed(s), Cow::Borrowed(t)));
        } else if let Ok(SourceBlock { schema: Some(s), table: Some(t) }) =
            SourceBlock::deserialize(&mut serde_json::Deserializer::from_slice(rest))
        {
            out.source = Some((s, t));
        }
    }
    out
}

/// Where a record goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The table at this index of [`Config::entries`].
    Entry(usize),
    /// The `[routing]` default table (namespace, name).
    Default(String, String),
    /// No table takes it.
    Nowhere,
}

enum TopicMatch {
    Exact(String),
    Regex(regex_lite::Regex),
}

struct Entry {
    topics: Vec<TopicMatch>,
    sources: Vec<(String, String)>,
}

/// Which table each source table or topic lands in.
pub struct Routes {
    entries: Vec<Entry>,
    routing: RoutingConfig,
}

impl Routes {
    /// The routes of `cfg` (validated: regexes compile, sources are `schema.table`).
    pub fn new(cfg: &Config) -> Self {
        let entries = cfg
            .entries()
            .into_iter()
            .map(|t| Entry {
                topics: t
                    .topics
                    .iter()
                    .map(|p| match p.starts_with('^') {
                        true => TopicMatch::Regex(regex_lite::Regex::new(p).expect("validated regex")),
                        false => TopicMatch::Exact(p.clone()),
                    })
                    .collect(),
                sources: t
                    .source
                    .iter()
                    .filter_map(|s| s.split_once('.').map(|(a, b)| (a.to_string(), b.to_string())))
                    .collect(),
            })
            .collect();
        Self { entries, routing: cfg.routing.clone() }
    }

    /// The table of a record from `topic` whose Debezium source is `source`. Without a source
    /// block (a tombstone), the topic's Debezium name (`prefix.schema.table`) stands for it; a record
    /// with neither goes with the first table (it is not Debezium: its dead letter lands there).
    pub fn target(&self, topic: Option<&str>, source: Option<(&str, &str)>) -> Target {
        let named = topic.and_then(|t| {
            let mut parts = t.rsplitn(3, '.');
            let table = parts.next()?;
            let schema = parts.next()?;
            parts.next().map(|_| (schema, table))
        });
        let source = source.or(named);
        for (i, e) in self.entries.iter().enumerate() {
            let by_topic = topic.is_some_and(|t| {
                e.topics.iter().any(|m| match m {
                    TopicMatch::Exact(x) => x == t,
                    TopicMatch::Regex(r) => r.is_match(t),
                })
            });
            let by_source = source.is_some_and(|(s, t)| e.sources.iter().any(|(a, b)| a == s && b == t));
            if by_topic || by_source {
                return Target::Entry(i);
            }
        }
        match source {
            Some((s, t)) => match self.routing.table_for(s, t) {
                Some((ns, name)) => Target::Default(ns, name),
                None => Target::Nowhere,
            },
            // Not a Debezium record of any table: its dead letter goes with the first table.
            None if !self.entries.is_empty() => Target::Entry(0),
            None => match self.routing.table_for("unknown", "records") {
                Some((ns, name)) => Target::Default(ns, name),
                None => Target::Nowhere,
            },
        }
    }
}

/// What the router hands a table's pipeline.
pub enum Inbound {
    Batch(RawBatch),
    /// The positions the table holds, read at a (re)assignment of partitions: records below them
    /// are left out (the consumer may start a partition lower, for another table's sake).
    Floor(Positions),
    /// Commit everything handed over so far (before Kafka partitions move), then answer.
    Flush(Sender<Result<(), FlushError>>),
}

/// One table's source: the batches the router hands it. Acknowledgements go back to the router.
pub struct RouteSource {
    id: usize,
    name: String,
    inbound: Receiver<Inbound>,
    handle: Option<Arc<dyn PipelineHandle>>,
    acks: Sender<(usize, Positions)>,
    progress: Arc<ReadProgress>,
    floor: Positions,
}

/// How far the router has read its source (bytes read, and the input's size when known), for the
/// tables' progress reports.
#[derive(Debug, Default)]
pub struct ReadProgress {
    read: AtomicU64,
    /// `u64::MAX`: unknown.
    total: AtomicU64,
    known: AtomicBool,
}

impl ReadProgress {
    fn set(&self, p: Option<(u64, Option<u64>)>) {
        if let Some((read, total)) = p {
            self.read.store(read, Ordering::Relaxed);
            self.total.store(total.unwrap_or(u64::MAX), Ordering::Relaxed);
            self.known.store(true, Ordering::Relaxed);
        }
    }

    fn get(&self) -> Option<(u64, Option<u64>)> {
        if !self.known.load(Ordering::Relaxed) {
            return None;
        }
        let total = self.total.load(Ordering::Relaxed);
        Some((self.read.load(Ordering::Relaxed), (total != u64::MAX).then_some(total)))
    }
}

impl RouteSource {
    pub fn new(
        id: usize,
        name: String,
        inbound: Receiver<Inbound>,
        acks: Sender<(usize, Positions)>,
        progress: Arc<ReadProgress>,
    ) -> Self {
        Self { id, name, inbound, handle: None, acks, progress, floor: Positions::new() }
    }
}

impl RouteSource {
    /// Leaves out the records of `batch` below the floor; returns how many.
    fn leave_out_held(&self, batch: &mut RawBatch) -> u64 {
        if self.floor.is_empty() {
            return 0;
        }
        let floors: Vec<Option<i64>> = batch.streams.iter().map(|s| self.floor.get(&**s).copied()).collect();
        let held = |i: usize| floors[batch.stream[i] as usize].is_some_and(|f| batch.offsets[i] < f);
        let n = (0..batch.len()).filter(|&i| held(i)).count();
        if n == 0 {
            return 0;
        }
        let mut kept = RawBatch::new(batch.streams.clone());
        kept.caught_up = batch.caught_up;
        kept.unchecked_values = batch.unchecked_values;
        for i in (0..batch.len()).filter(|&i| !held(i)) {
            kept.push(batch.stream[i], batch.offsets[i], batch.record(i));
        }
        *batch = kept;
        n as u64
    }
}

impl Source for RouteSource {
    fn start(&mut self, handle: Arc<dyn PipelineHandle>) -> Result<(), PipelineError> {
        self.handle = Some(handle);
        Ok(())
    }

    fn next_batch(&mut self, out: &mut RawBatch, _max: usize) -> Result<bool, PipelineError> {
        out.clear();
        out.streams.clear();
        match self.inbound.recv_timeout(Duration::from_millis(100)) {
            Ok(Inbound::Batch(b)) => {
                *out = b;
                let held = self.leave_out_held(out);
                if held > 0
                    && let Some(h) = &self.handle
                {
                    h.already_held(held);
                }
            }
            Ok(Inbound::Floor(p)) => {
                for (s, o) in p {
                    let f = self.floor.entry(s).or_insert(o);
                    *f = (*f).max(o);
                }
            }
            Ok(Inbound::Flush(reply)) => {
                let r = self.handle.as_ref().map_or(Err(FlushError::Stopped), |h| h.flush());
                let _ = reply.send(r);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(false),
        }
        Ok(true)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn progress(&self) -> Option<(u64, Option<u64>)> {
        self.progress.get()
    }

    fn committed(&mut self, positions: &Positions) {
        let _ = self.acks.send((self.id, positions.clone()));
    }
}

/// Per table and stream: the lowest offset handed over that the table does not hold yet, and the
/// offset after the last one handed over.
#[derive(Debug, Clone, Copy)]
struct Unheld {
    low: i64,
    next: i64,
}

/// The positions the consumer may acknowledge, from what each table acknowledged.
#[derive(Debug, Default)]
pub struct Acks {
    /// Per stream: the offset after the last record read.
    read: HashMap<Arc<str>, i64>,
    /// Per table: its streams with records it does not hold yet.
    tables: Vec<HashMap<Arc<str>, Unheld>>,
    /// Per stream: what was last acknowledged to the consumer.
    acknowledged: HashMap<Arc<str>, i64>,
}

impl Acks {
    /// Record `offset` of `stream` was read.
    pub fn read(&mut self, stream: &Arc<str>, offset: i64) {
        let r = self.read.entry(stream.clone()).or_insert(offset + 1);
        *r = (*r).max(offset + 1);
    }

    /// Record `offset` of `stream` went to table `table`.
    pub fn sent(&mut self, table: usize, stream: &Arc<str>, offset: i64) {
        if self.tables.len() <= table {
            self.tables.resize_with(table + 1, HashMap::new);
        }
        let u = self.tables[table].entry(stream.clone()).or_insert(Unheld { low: offset, next: offset + 1 });
        u.next = u.next.max(offset + 1);
    }

    /// Table `table` holds everything before `positions`.
    pub fn held(&mut self, table: usize, positions: &Positions) {
        let Some(streams) = self.tables.get_mut(table) else { return };
        streams.retain(|s, u| match positions.get(&**s) {
            Some(&p) if p >= u.next => false,
            Some(&p) => {
                u.low = u.low.max(p);
                true
            }
            None => true,
        });
    }

    /// Streams whose acknowledgeable position moved: the offset after the last record read, held
    /// back to the lowest offset a table does not hold yet.
    pub fn advanced(&mut self) -> Positions {
        let mut out = Positions::new();
        for (stream, &read) in &self.read {
            let low = self.tables.iter().filter_map(|t| t.get(stream)).map(|u| u.low).min();
            let p = low.map_or(read, |l| l.min(read));
            let last = self.acknowledged.entry(stream.clone()).or_insert(i64::MIN);
            if p > *last {
                *last = p;
                out.insert(stream.to_string(), p);
            }
        }
        out
    }
}

/// A request for the pipeline of a table the router met for the first time.
pub struct Create {
    pub target: Target,
    /// The new table's id and queue, or why it could not start.
    pub reply: Sender<Result<(usize, Queue), String>>,
}

/// Where a table's batches go.
#[derive(Clone)]
pub struct Queue {
    pub table: iceberg::TableIdent,
    pub tx: SyncSender<Inbound>,
}

/// Every table's queue, in id order.
pub type Queues = Arc<Mutex<Vec<Queue>>>;

/// Batches queued for one table's pipeline: a slow table holds the reader back (and with it every
/// other table) rather than buffering without bound.
pub const QUEUED_PER_TABLE: usize = 1;

/// What the consumer can ask of a multi-table host.
pub struct RouterHandle {
    pub tables: Queues,
    pub runtime: tokio::runtime::Handle,
    pub cfg: Config,
    /// Records the source skipped because every table held them.
    pub held: Arc<AtomicU64>,
}

impl PipelineHandle for RouterHandle {
    fn flush(&self) -> Result<(), FlushError> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut answers = Vec::new();
        for q in tables {
            let (reply, answer) = std::sync::mpsc::channel();
            if q.tx.send(Inbound::Flush(reply)).is_ok() {
                answers.push(answer);
            }
        }
        for a in answers {
            // A table whose pipeline stopped holds what its last commit holds.
            if let Ok(Err(FlushError::Failed(e))) = a.recv() {
                return Err(FlushError::Failed(e));
            }
        }
        Ok(())
    }

    fn table_positions(&self) -> Result<Positions, String> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.runtime
            .block_on(async {
                let catalog = crate::sink::catalog::open(&self.cfg).await?;
                lowest_positions(&self.cfg, &catalog, &tables).await
            })
            .map_err(|e| e.to_string())
    }

    fn several_tables(&self) -> bool {
        true
    }

    fn already_held(&self, records: u64) {
        self.held.fetch_add(records, Ordering::Relaxed);
    }
}

/// Per stream, the lowest position any table of this host holds (the configured tables, and the
/// default-routed tables of this and earlier runs). Each running table (`running`) is told what its
/// table holds, to leave that out: a partition may start lower (another table's position, the
/// group's offset).
async fn lowest_positions(
    cfg: &Config,
    catalog: &crate::sink::catalog::Catalog,
    running: &[Queue],
) -> Result<Positions, crate::error::SinkError> {
    let mut idents = Vec::new();
    for t in cfg.entries() {
        idents.push(crate::sink::table::ident(&t.namespace, &t.name)?);
    }
    for i in default_routed_tables(cfg, catalog).await {
        if !idents.contains(&i) {
            idents.push(i);
        }
    }
    let mut low = Positions::new();
    for ident in idents {
        let Ok(table) = catalog.load(&ident).await else { continue };
        let held = crate::sink::commit::committed_positions(&table, &cfg.pipeline_id);
        for (stream, &p) in &held {
            let l = low.entry(stream.clone()).or_insert(p);
            *l = (*l).min(p);
        }
        if let Some(q) = running.iter().find(|q| q.table == ident) {
            let _ = q.tx.send(Inbound::Floor(held));
        }
    }
    Ok(low)
}

/// The tables the `[routing]` default created (in this run or earlier ones): the tables of the
/// template's namespace, without their dead-letter twins (`<name>_dlq`).
pub async fn default_routed_tables(
    cfg: &Config,
    catalog: &crate::sink::catalog::Catalog,
) -> Vec<iceberg::TableIdent> {
    let Some((ns, _)) = cfg.routing.table_for("s", "t") else { return Vec::new() };
    let Ok(list) = catalog.iceberg().list_tables(&iceberg::NamespaceIdent::new(ns)).await else {
        return Vec::new();
    };
    let is_twin = |i: &iceberg::TableIdent| {
        i.name().strip_suffix("_dlq").is_some_and(|main| list.iter().any(|m| m.name() == main))
    };
    list.iter().filter(|i| !is_twin(i)).cloned().collect()
}

/// The topic of a record of `stream`: the record's own (`{"topic": ...}`), else the topic of a
/// Kafka stream (`topic/partition`).
fn topic_of<'a>(peeked: &Peeked<'a>, stream: &'a str) -> Option<&'a str> {
    peeked.topic.or_else(|| {
        let (t, p) = stream.rsplit_once('/')?;
        p.bytes().all(|b| b.is_ascii_digit()).then_some(t)
    })
}

/// The reading side of a multi-table host: reads the source, hands each record to its table's
/// pipeline (asking for pipelines of tables met for the first time), and acknowledges to the source
/// what every table holds.
pub struct Router {
    pub routes: Routes,
    /// Tables whose pipelines already run: their ids.
    pub started: HashMap<Target, usize>,
    pub tables: Queues,
    pub create: tokio::sync::mpsc::UnboundedSender<Create>,
    pub acks: Receiver<(usize, Positions)>,
    pub stop: Arc<AtomicBool>,
    pub batch_size: usize,
    pub metrics: Metrics,
    pub progress: Arc<ReadProgress>,
}

/// No table takes the record.
const NOWHERE: u32 = u32::MAX;

/// The last record routed (its stream index in the batch, topic and source table) and its table:
/// records of one stream, topic and source table come in runs.
struct Recent {
    stream: usize,
    topic: Option<String>,
    source: Option<(String, String)>,
    id: u32,
}

impl Recent {
    fn new(stream: usize, p: &Peeked, id: u32) -> Self {
        let source = p.source.as_ref().map(|(a, b)| (a.to_string(), b.to_string()));
        Self { stream, topic: p.topic.map(str::to_string), source, id }
    }

    fn matches(&self, stream: usize, p: &Peeked) -> bool {
        self.stream == stream
            && p.topic == self.topic.as_deref()
            && p.source.as_ref().map(|(a, b)| (&**a, &**b))
                == self.source.as_ref().map(|(a, b)| (a.as_str(), b.as_str()))
    }
}

/// What a router did.
#[derive(Debug, Default)]
pub struct Routed {
    pub records: u64,
    /// Records no table takes.
    pub unrouted: u64,
}

impl Router {
    /// Runs until the source ends, `stop` is set or a table's pipeline stops.
    pub fn run<S: Source>(
        self,
        mut source: S,
        handle: Arc<dyn PipelineHandle>,
    ) -> Result<Routed, PipelineError> {
        let Router { routes, started, tables, create, acks, stop, batch_size, metrics, progress } = self;
        progress.set(source.progress());
        let mut book = Acks::default();
        let mut ids = started;
        let mut warned: std::collections::HashSet<(String, String)> = Default::default();
        let mut out = Routed::default();
        let mut last: HashMap<Arc<str>, u32> = HashMap::new();
        // Tables handed records since the source last caught up.
        let mut awaiting: std::collections::HashSet<u32> = Default::default();
        let mut failure = source.start(handle).err();
        let mut raw = RawBatch::default();
        while failure.is_none() && !stop.load(Ordering::Relaxed) {
            while let Ok((id, positions)) = acks.try_recv() {
                book.held(id, &positions);
            }
            let advanced = book.advanced();
            if !advanced.is_empty() {
                source.committed(&advanced);
            }
            match source.next_batch(&mut raw, batch_size) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            out.records += raw.len() as u64;
            progress.set(source.progress());
            let n = raw.len();
            // Per record: its table's id (NOWHERE: no table takes it).
            let mut to: Vec<u32> = Vec::with_capacity(n);
            let mut in_stream: Vec<Option<u32>> = raw.streams.iter().map(|s| last.get(s).copied()).collect();
            // The last (stream, topic, source table) resolved, and its id: runs of one table are common.
            let mut cached: Option<Recent> = None;
            for i in 0..n {
                let s = raw.stream[i] as usize;
                let peeked = peek(raw.record(i));
                let id = match (&peeked, in_stream[s], &cached) {
                    // A tombstone (no topic of its own, no source block) follows its delete.
                    (Peeked { topic: None, source: None }, Some(id), _) => id,
                    (p, _, Some(recent)) if recent.matches(s, p) => recent.id,
                    (p, _, _) => {
                        let source_table = p.source.as_ref().map(|(a, b)| (&**a, &**b));
                        let target = routes.target(topic_of(p, &raw.streams[s]), source_table);
                        let id = match target {
                            Target::Nowhere => {
                                if let Some((a, b)) = source_table
                                    && warned.insert((a.to_string(), b.to_string()))
                                {
                                    tracing::warn!(source_table = %format!("{a}.{b}"), "no table takes this source table ([table]/[[tables]] source or topics) and [routing] has no default_table: its events are left out");
                                }
                                NOWHERE
                            }
                            target => match ids.get(&target) {
                                Some(&id) => id as u32,
                                None => {
                                    let (reply, answer) = std::sync::mpsc::channel();
                                    let asked = create.send(Create { target: target.clone(), reply }).is_ok();
                                    match answer.recv() {
                                        Ok(Ok((id, queue))) if asked => {
                                            tables.lock().unwrap_or_else(|e| e.into_inner()).push(queue);
                                            ids.insert(target, id);
                                            id as u32
                                        }
                                        Ok(Err(e)) => {
                                            failure = Some(PipelineError::Internal(e));
                                            break;
                                        }
                                        _ => {
                                            failure =
                                                Some(PipelineError::Internal("the host is stopping".into()));
                                            break;
                                        }
                                    }
                                }
                            },
                        };
                        cached = Some(Recent::new(s, p, id));
                        id
                    }
                };
                in_stream[s] = Some(id);
                to.push(id);
            }
            if failure.is_some() {
                break;
            }
            for (s, id) in in_stream.iter().enumerate() {
                if let Some(id) = id {
                    last.insert(raw.streams[s].clone(), *id);
                }
            }
            // Acknowledgement bookkeeping, per stream and table rather than per record.
            let mut read_to = vec![i64::MIN; raw.streams.len()];
            let mut sent: HashMap<(u32, usize), (i64, i64)> = HashMap::new();
            for (i, &id) in to.iter().enumerate() {
                let (s, o) = (raw.stream[i] as usize, raw.offsets[i]);
                read_to[s] = read_to[s].max(o);
                if id == NOWHERE {
                    out.unrouted += 1;
                    metrics.filtered.inc();
                    continue;
                }
                let r = sent.entry((id, s)).or_insert((o, o));
                *r = (r.0.min(o), r.1.max(o));
            }
            for (s, &o) in read_to.iter().enumerate().filter(|(_, o)| **o > i64::MIN) {
                book.read(&raw.streams[s], o);
            }
            for ((id, s), (low, high)) in sent {
                book.sent(id as usize, &raw.streams[s], low);
                book.sent(id as usize, &raw.streams[s], high);
            }
            let queues = tables.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let caught_up = raw.caught_up;
            let mut parts: Vec<(u32, RawBatch)> = Vec::new();
            match to.first() {
                // The whole batch goes to one table: hand it over as it is.
                Some(&id) if id != NOWHERE && to.iter().all(|&t| t == id) => {
                    parts.push((id, std::mem::take(&mut raw)));
                }
                _ => {
                    let mut by_id: HashMap<u32, RawBatch> = HashMap::new();
                    for (i, &id) in to.iter().enumerate() {
                        if id == NOWHERE {
                            continue;
                        }
                        let part = by_id.entry(id).or_insert_with(|| {
                            let mut part = RawBatch::default();
                            part.unchecked_values = raw.unchecked_values;
                            part
                        });
                        let stream = &raw.streams[raw.stream[i] as usize];
                        let s = match part.streams.iter().position(|x| x == stream) {
                            Some(s) => s,
                            None => {
                                part.streams.push(stream.clone());
                                part.streams.len() - 1
                            }
                        };
                        part.push(s as u16, raw.offsets[i], raw.record(i));
                    }
                    parts.extend(by_id);
                }
            }
            // The source caught up: every table still holding records of a batch before learns it
            // (from its part of this batch, or from an empty one), so it can commit them now.
            if caught_up {
                for (id, part) in parts.iter_mut() {
                    part.caught_up = true;
                    awaiting.remove(id);
                }
                parts.extend(awaiting.drain().map(|id| {
                    let mut marker = RawBatch::default();
                    marker.caught_up = true;
                    (id, marker)
                }));
            } else {
                awaiting.extend(parts.iter().map(|(id, _)| *id));
            }
            for (id, mut part) in parts {
                // Queued batches hold their bytes only, not the growth slack of filling them (a
                // source that sized its buffer up front has little: that buffer is kept for reuse).
                if part.buf.capacity() - part.buf.len() > part.buf.len() / 4 {
                    part.buf.shrink_to_fit();
                }
                if queues[id as usize].tx.send(Inbound::Batch(part)).is_err() {
                    // That table's pipeline ended: asked to (a signal, a quarantine that stops), or it
                    // failed. Either way the others stop too (each resumes at its own positions).
                    if !stop.swap(true, Ordering::Relaxed) {
                        failure.get_or_insert_with(|| {
                            PipelineError::Internal("a table's pipeline stopped; see its error above".into())
                        });
                    }
                }
            }
        }
        // The tables finish what they were handed and commit; acknowledge what they then hold.
        tables.lock().unwrap_or_else(|e| e.into_inner()).clear();
        drop(create);
        while let Ok((id, positions)) = acks.recv() {
            book.held(id, &positions);
            let advanced = book.advanced();
            if !advanced.is_empty() {
                source.committed(&advanced);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        c
    }

    #[test]
    fn records_are_peeked_without_decoding() {
        let wrapped = br#"{"topic":"postgres.public.orders","key":{"id":1},"value":{"before":null,"after":{"id":1,"source":"web"},"source":{"version":"3","schema":"public","table":"orders","lsn":5},"op":"c"}}"#;
        let p = peek(wrapped);
        assert_eq!(p.topic, Some("postgres.public.orders"));
        assert_eq!(p.source, Some(("public".into(), "orders".into())));
        let spaced = br#"{"payload": {"after": {"source": null}, "source" : {"schema": "s", "table": "t"}}}"#;
        assert_eq!(peek(spaced).source, Some(("s".into(), "t".into())));
        assert_eq!(peek(br#" { "topic" : "a.b.c", "value": null}"#).topic, Some("a.b.c"));
        let escaped = br#"{"source":{"schema":"s","table":"a\"b"}}"#;
        assert_eq!(peek(escaped).source, Some(("s".into(), "a\"b".into())));
        assert_eq!(peek(b"null"), Peeked::default());
        let nested = br#"{"after":{"source":{"schema":"no","table":"no"}},"source":{"schema":"s","table":"t"},"op":"c"}"#;
        assert_eq!(peek(nested).source, Some(("s".into(), "t".into())));
    }

    #[test]
    fn entries_match_topics_or_sources_before_the_default() {
        let c = cfg(r#"
            [[tables]]
            name = "customers"
            source = ["public.customers"]
            [[tables]]
            name = "audit"
            topics = ["^audit\\..*"]
            [routing]
            default_table = "raw.{schema}_{table}"
        "#);
        let r = Routes::new(&c);
        assert_eq!(r.target(Some("x"), Some(("public", "customers"))), Target::Entry(0));
        assert_eq!(r.target(Some("audit.log"), Some(("public", "customers"))), Target::Entry(0));
        assert_eq!(r.target(Some("audit.log"), None), Target::Entry(1));
        assert_eq!(r.target(Some("postgres.public.customers"), None), Target::Entry(0), "a tombstone");
        assert_eq!(
            r.target(Some("postgres.Sales.Order-Lines"), Some(("Sales", "Order-Lines"))),
            Target::Default("raw".into(), "sales_order_lines".into())
        );
        let none = cfg("[[tables]]\nname = \"c\"\nsource = [\"public.c\"]\n");
        assert_eq!(Routes::new(&none).target(None, Some(("public", "x"))), Target::Nowhere);
        assert_eq!(Routes::new(&none).target(None, None), Target::Entry(0), "not Debezium: dead-lettered");
    }

    #[test]
    fn acknowledgements_wait_for_every_table_a_stream_fed() {
        let s: Arc<str> = Arc::from("t/0");
        let mut a = Acks::default();
        for (o, table) in [(10, 0), (11, 1), (12, 0), (13, 2)] {
            a.read(&s, o);
            if table < 2 {
                a.sent(table, &s, o);
            }
        }
        assert!(a.advanced().get("t/0").is_some_and(|&p| p == 10), "nothing held yet");
        a.held(0, &Positions::from([("t/0".to_string(), 13)]));
        assert_eq!(a.advanced()["t/0"], 11, "table 1 still lacks 11");
        a.held(1, &Positions::from([("t/0".to_string(), 12)]));
        assert_eq!(a.advanced()["t/0"], 14, "all held, 13 went nowhere");
        assert!(a.advanced().is_empty());
    }
}
