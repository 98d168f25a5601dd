//! The chain of plugins, applied to one [`ChangeBatch`] at a time: one call per plugin per batch.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::columns::{from_wit, null_wit, to_wit};
use super::plugin::{CallError, Compiled, Description, Limits, Plugin, Runtime};
use super::wit::wit_types as w;
use crate::change::{ChangeBatch, Column, DeadLetter, Op};
use crate::config::{ChainEntry, OnQuarantine, PluginsConfig};
use crate::error::PluginError;
use crate::metrics::Metrics;
use crate::schema::ColType;

/// Counts from applying the chain to batches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChainStats {
    pub events_in: u64,
    pub kept: u64,
    pub dropped: u64,
    pub rejected: u64,
    /// Events sent to the dead-letter output because a plugin failed on their batch.
    pub failed: u64,
    pub plugin_failures: u64,
}

impl ChainStats {
    /// Adds another batch's counts.
    pub fn add(&mut self, o: &ChainStats) {
        self.events_in += o.events_in;
        self.kept += o.kept;
        self.dropped += o.dropped;
        self.rejected += o.rejected;
        self.failed += o.failed;
        self.plugin_failures += o.plugin_failures;
    }
}

/// One step of a chain: something that processes a WIT batch. Plugins (WASM components) are the
/// stages the host runs; the benchmark also runs the same transforms compiled natively through it.
pub trait Stage: Send {
    /// What the stage reads, writes and removes.
    fn description(&self) -> &Description;
    /// `name@version#hash`.
    fn identity(&self) -> String;
    /// Where the stage came from (a component file).
    fn origin(&self) -> String;
    /// Processes one batch.
    fn process(&mut self, batch: w::Batch) -> Result<w::Output, CallError>;
    /// The compiled component behind the stage (content hash, cache status), for plugins.
    fn compiled(&self) -> Option<&Compiled> {
        None
    }
    /// A short digest of the stage's configuration, if it has one.
    fn config_digest(&self) -> Option<String> {
        None
    }
}

impl Stage for Plugin {
    fn description(&self) -> &Description {
        &self.description
    }
    fn identity(&self) -> String {
        Plugin::identity(self)
    }
    fn origin(&self) -> String {
        self.compiled.path.display().to_string()
    }
    fn process(&mut self, batch: w::Batch) -> Result<w::Output, CallError> {
        Plugin::process(self, &batch)
    }
    fn compiled(&self) -> Option<&Compiled> {
        Some(&self.compiled)
    }
    fn config_digest(&self) -> Option<String> {
        Plugin::config_digest(self)
    }
}

/// Offers a replacement chain; the pipeline asks between batches, so every batch is processed
/// entirely by one chain (hot reload implements this).
pub trait ChainUpdates: Send {
    /// A new chain to use from the next batch on, if there is one.
    fn poll(&mut self) -> Option<Chain>;
}

/// A loaded chain of stages.
pub struct Chain {
    stages: Vec<Box<dyn Stage>>,
    /// One per stage.
    health: Vec<StageHealth>,
    supervision: Supervision,
    quarantined: ChainHealth,
}

/// Marks a quarantined stage in the chain identity (and so in snapshot summaries).
pub const QUARANTINED_MARK: &str = "[quarantined]";

/// How long a pass-through quarantine stays quiet in the log before it is reported again.
const QUARANTINE_REMINDER: Duration = Duration::from_secs(60);

/// How a chain treats plugins that keep failing (`plugins.quarantine_after`, `plugins.on_quarantine`).
#[derive(Clone, Default)]
pub struct Supervision {
    /// Consecutive failed batches after which a plugin is quarantined; 0 never quarantines.
    pub quarantine_after: u32,
    pub on_quarantine: OnQuarantine,
    /// Where quarantines are counted.
    pub metrics: Option<Metrics>,
    /// How an `on_quarantine = "stop"` quarantine stops the pipeline.
    pub halt: Halt,
}

impl Supervision {
    /// The policy the config sets.
    pub fn new(cfg: &PluginsConfig, metrics: Option<Metrics>, halt: Halt) -> Self {
        Self { quarantine_after: cfg.quarantine_after, on_quarantine: cfg.on_quarantine, metrics, halt }
    }
}

/// Lets a chain stop the pipeline: it sets the pipeline's stop flag (the batch in flight finishes and
/// everything pending is committed) and keeps the reason for the caller to report.
#[derive(Clone, Default)]
pub struct Halt {
    stop: Arc<AtomicBool>,
    reason: Arc<Mutex<Option<PluginError>>>,
}

impl Halt {
    /// A halt that sets `stop` (the pipeline's `RunOptions::stop`).
    pub fn new(stop: Arc<AtomicBool>) -> Self {
        Self { stop, reason: Arc::default() }
    }

    /// Why the chain stopped the pipeline, if it did.
    pub fn take_reason(&self) -> Option<PluginError> {
        self.reason.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn trigger(&self, reason: PluginError) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How many stages of a chain are quarantined; shared, so the hot reloader can tell that redeploying
/// the same files should bring a quarantined plugin back.
#[derive(Clone, Default)]
pub struct ChainHealth(Arc<AtomicUsize>);

impl ChainHealth {
    /// Quarantined stages.
    pub fn quarantined(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct StageHealth {
    /// This stage's quarantine policy (its chain entry's `on_quarantine`); unset: the chain's.
    on_quarantine: Option<OnQuarantine>,
    consecutive_failures: u32,
    quarantined: bool,
    skipped_batches: u64,
    last_report: Option<Instant>,
}

/// Limits for every plugin, from the config.
pub fn limits(cfg: &PluginsConfig) -> Limits {
    Limits {
        memory_bytes: (cfg.memory_limit_mb as usize).saturating_mul(1024 * 1024),
        deadline: Duration::from_millis(cfg.batch_deadline_ms),
    }
}

/// The chain entries to load: the configured ones, or every `*.wasm` in `dir` by file name (hidden
/// files, such as `.name.wasm` staged for an atomic rename, excluded).
pub fn resolve_entries(dir: &Path, configured: &[ChainEntry]) -> Result<Vec<ChainEntry>, PluginError> {
    if !dir.is_dir() {
        return Err(PluginError::MissingDir(dir.to_path_buf()));
    }
    let mut available: Vec<String> = std::fs::read_dir(dir)
        .map_err(|_| PluginError::MissingDir(dir.to_path_buf()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            name.strip_suffix(".wasm").map(str::to_string)
        })
        .collect();
    available.sort();
    if configured.is_empty() {
        return Ok(available
            .into_iter()
            .map(|plugin| ChainEntry { plugin, config: Default::default(), on_quarantine: None })
            .collect());
    }
    for e in configured {
        let path = e.path(dir);
        if !path.is_file() {
            return Err(PluginError::MissingFile {
                plugin: e.plugin.clone(),
                path,
                available: if available.is_empty() { "none".into() } else { available.join(", ") },
            });
        }
    }
    Ok(configured.to_vec())
}

impl Chain {
    /// Compiles, instantiates and configures every entry, in order.
    pub fn load(
        runtime: &Runtime,
        dir: &Path,
        entries: &[ChainEntry],
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let mut stages: Vec<Box<dyn Stage>> = Vec::with_capacity(entries.len());
        for e in entries {
            let compiled: Compiled = runtime.compile(&e.path(dir))?;
            stages.push(Box::new(Plugin::start(compiled, e.config_pairs(), limits)?));
        }
        Ok(Self::from_stages(stages).with_stage_policies(entries.iter().map(|e| e.on_quarantine)))
    }

    /// A chain of the given stages. It never quarantines a stage until given a [`Supervision`].
    pub fn from_stages(stages: Vec<Box<dyn Stage>>) -> Self {
        let health = stages.iter().map(|_| StageHealth::default()).collect();
        Self { stages, health, supervision: Supervision::default(), quarantined: ChainHealth::default() }
    }

    /// Sets the quarantine policy.
    pub fn with_supervision(mut self, supervision: Supervision) -> Self {
        self.supervision = supervision;
        self
    }

    /// Sets each stage's own quarantine policy, in stage order (`None`: the chain's policy).
    pub fn with_stage_policies(mut self, policies: impl IntoIterator<Item = Option<OnQuarantine>>) -> Self {
        for (h, p) in self.health.iter_mut().zip(policies) {
            h.on_quarantine = p;
        }
        self
    }

    /// The quarantine policy of each stage, in order.
    pub fn stage_policies(&self) -> Vec<OnQuarantine> {
        self.health.iter().map(|h| h.on_quarantine.unwrap_or(self.supervision.on_quarantine)).collect()
    }

    /// The shared count of quarantined stages.
    pub fn health(&self) -> ChainHealth {
        self.quarantined.clone()
    }

    /// Names of the quarantined stages.
    pub fn quarantined(&self) -> Vec<String> {
        self.stages
            .iter()
            .zip(&self.health)
            .filter(|(_, h)| h.quarantined)
            .map(|(s, _)| s.description().name.clone())
            .collect()
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Box<dyn Stage>] {
        &self.stages
    }

    /// Identities of the stages, comma separated (recorded in snapshot summaries): `name@version#hash`,
    /// then `/cfg:<digest>` for a configured stage and [`QUARANTINED_MARK`] for a quarantined one that
    /// events pass through.
    pub fn identity(&self) -> String {
        let mut out = String::new();
        for (i, (s, h)) in self.stages.iter().zip(&self.health).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&s.identity());
            if let Some(d) = s.config_digest() {
                out.push_str("/cfg:");
                out.push_str(&d);
            }
            if h.quarantined {
                out.push_str(QUARANTINED_MARK);
            }
        }
        out
    }

    /// Columns the chain adds, in order, with their types (for shaping the table).
    pub fn written_columns(&self) -> Vec<(String, ColType)> {
        let mut out: Vec<(String, ColType)> = Vec::new();
        for p in &self.stages {
            for (n, t) in &p.description().writes {
                if !out.iter().any(|(o, _)| o == n) {
                    out.push((n.clone(), *t));
                }
            }
            for r in &p.description().removes {
                out.retain(|(o, _)| o != r);
            }
        }
        out
    }

    /// Columns some plugin removes and no later plugin writes again.
    pub fn removed_columns(&self) -> Vec<String> {
        let mut removed: Vec<String> = Vec::new();
        for p in &self.stages {
            for r in &p.description().removes {
                if !removed.contains(r) {
                    removed.push(r.clone());
                }
            }
            removed.retain(|r| !p.description().writes.iter().any(|(n, _)| n == r));
        }
        removed
    }

    /// Runs every plugin on the batch. Kept events stay in `batch`; rejected events and every event of
    /// a batch a plugin failed on become dead letters. A plugin that fails `quarantine_after` batches in
    /// a row is quarantined: skipped from then on (`pass-through`), or the pipeline is stopped (`stop`).
    pub fn apply(&mut self, batch: &mut ChangeBatch, dead: &mut Vec<DeadLetter>) -> ChainStats {
        self.apply_at(batch, dead, &|origin| format!("record {origin} of the batch"))
    }

    /// [`Chain::apply`], naming records by `position` (e.g. `file:line`, `topic/partition:offset`) in
    /// the log when a plugin fails.
    pub fn apply_at(
        &mut self,
        batch: &mut ChangeBatch,
        dead: &mut Vec<DeadLetter>,
        position: &dyn Fn(u32) -> String,
    ) -> ChainStats {
        let mut stats = ChainStats { events_in: batch.len() as u64, ..Default::default() };
        let sup = &self.supervision;
        for (stage, health) in self.stages.iter_mut().zip(&mut self.health) {
            if batch.is_empty() {
                break;
            }
            let policy = health.on_quarantine.unwrap_or(sup.on_quarantine);
            if health.quarantined {
                let name = &stage.description().name;
                match policy {
                    OnQuarantine::PassThrough => {
                        health.skipped_batches += 1;
                        if let Some(m) = &sup.metrics {
                            m.plugins.skipped_batches.with_label_values(&[name]).inc();
                        }
                        if health.last_report.is_none_or(|t| t.elapsed() >= QUARANTINE_REMINDER) {
                            health.last_report = Some(Instant::now());
                            tracing::warn!(
                                plugin = %stage.identity(),
                                skipped_batches = health.skipped_batches,
                                "plugin is quarantined: batches pass through without it until it is replaced"
                            );
                        }
                    }
                    OnQuarantine::Stop => {
                        let reason = format!("plugin `{name}` is quarantined (on_quarantine = \"stop\")");
                        stats.failed += batch.len() as u64;
                        for &origin in &batch.origins {
                            dead.push(DeadLetter {
                                origin,
                                stage: "transform",
                                plugin: Some(name.clone()),
                                reason: reason.clone(),
                            });
                        }
                        *batch =
                            ChangeBatch { tables: std::mem::take(&mut batch.tables), ..Default::default() };
                    }
                }
                continue;
            }
            let events = batch.len() as u64;
            let input = wit_batch(stage.description(), batch);
            let result = stage.process(input).and_then(|out| apply_output(stage.description(), batch, out));
            match result {
                Ok(applied) => {
                    health.consecutive_failures = 0;
                    if let Some(m) = &sup.metrics {
                        let name = stage.description().name.as_str();
                        m.reference.transformations_applied.with_label_values(&[name]).inc_by(events);
                    }
                    stats.dropped += applied.dropped;
                    stats.rejected += applied.rejected.len() as u64;
                    for (i, reason) in applied.rejected {
                        dead.push(DeadLetter {
                            origin: i,
                            stage: "transform",
                            plugin: Some(stage.description().name.clone()),
                            reason,
                        });
                    }
                }
                Err(e) => {
                    stats.plugin_failures += 1;
                    stats.failed += batch.len() as u64;
                    let first = batch.origins.first().map(|&o| position(o)).unwrap_or_default();
                    let last = batch.origins.last().map(|&o| position(o)).unwrap_or_default();
                    tracing::error!(
                        plugin = %e.plugin,
                        events = batch.len(),
                        first_record = %first,
                        last_record = %last,
                        error = %e.message,
                        "plugin failed on a batch; the batch goes to the dead-letter output"
                    );
                    for &origin in &batch.origins {
                        dead.push(DeadLetter {
                            origin,
                            stage: "transform",
                            plugin: Some(e.plugin.clone()),
                            reason: e.to_string(),
                        });
                    }
                    *batch = ChangeBatch { tables: std::mem::take(&mut batch.tables), ..Default::default() };
                    health.consecutive_failures += 1;
                    if sup.quarantine_after > 0 && health.consecutive_failures >= sup.quarantine_after {
                        quarantine(sup, policy, &self.quarantined, stage.as_ref(), health, &e);
                    }
                }
            }
        }
        stats.kept = batch.len() as u64;
        stats
    }
}

fn quarantine(
    sup: &Supervision,
    policy: OnQuarantine,
    count: &ChainHealth,
    stage: &dyn Stage,
    health: &mut StageHealth,
    error: &CallError,
) {
    health.quarantined = true;
    health.last_report = Some(Instant::now());
    count.0.fetch_add(1, Ordering::Relaxed);
    let name = &stage.description().name;
    if let Some(m) = &sup.metrics {
        m.plugins.quarantines.with_label_values(&[name]).inc();
        m.plugins.quarantined.inc();
    }
    let failures = health.consecutive_failures;
    match policy {
        OnQuarantine::PassThrough => tracing::error!(
            plugin = %stage.identity(),
            failures,
            last_error = %error.message,
            "plugin quarantined after consecutive failed batches: from now on events pass through WITHOUT it \
             (on_quarantine = \"pass-through\"); deploy a fixed version to bring it back"
        ),
        OnQuarantine::Stop => {
            tracing::error!(
                plugin = %stage.identity(),
                failures,
                last_error = %error.message,
                "plugin quarantined after consecutive failed batches: stopping the pipeline \
                 (on_quarantine = \"stop\"); pending rows are committed first"
            );
            sup.halt.trigger(PluginError::Quarantined {
                plugin: name.clone(),
                failures,
                reason: error.message.clone(),
            });
        }
    }
}

fn wit_op(op: Op) -> w::Operation {
    match op {
        Op::Create => w::Operation::Create,
        Op::Update => w::Operation::Update,
        Op::Delete => w::Operation::Delete,
        Op::Read => w::Operation::Read,
        Op::Truncate => w::Operation::Truncate,
    }
}

/// The batch as a stage described by `d` sees it: only the columns it reads.
pub fn wit_batch(d: &Description, batch: &ChangeBatch) -> w::Batch {
    let n = batch.len();
    let side = |cols: &crate::change::Columns| -> Vec<w::Column> {
        match &d.reads {
            None => cols.0.iter().map(|c| to_wit(&c.name, c.ty, &c.array)).collect(),
            Some(names) => names
                .iter()
                .map(|name| match cols.get(name) {
                    Some(c) => to_wit(&c.name, c.ty, &c.array),
                    None => null_wit(name, n),
                })
                .collect(),
        }
    };
    w::Batch {
        ops: batch.ops.iter().map(|o| wit_op(*o)).collect(),
        sources: batch
            .sources
            .iter()
            .map(|s| w::SourceInfo {
                table: s.table,
                lsn: s.lsn,
                txid: s.txid,
                ts_ms: s.ts_ms,
                snapshot: s.snapshot,
            })
            .collect(),
        tables: batch
            .tables
            .iter()
            .map(|t| w::TableRef { schema: t.schema.clone(), table: t.table.clone() })
            .collect(),
        after: side(&batch.after),
        before: if d.reads_before { side(&batch.before) } else { Vec::new() },
    }
}

struct Applied {
    dropped: u64,
    /// (origin, reason)
    rejected: Vec<(u32, String)>,
}

/// Checks a plugin's output and applies it: writes, removes, then filtering.
fn apply_output(d: &Description, batch: &mut ChangeBatch, out: w::Output) -> Result<Applied, CallError> {
    let n = batch.len();
    let bad = |message: String| CallError { plugin: d.name.clone(), message };
    if out.outcomes.len() != n {
        return Err(bad(format!("returned {} outcomes for a batch of {n} events", out.outcomes.len())));
    }
    let mut written = Vec::with_capacity(out.writes.len());
    for col in out.writes {
        let Some((_, ty)) = d.writes.iter().find(|(name, _)| *name == col.name) else {
            return Err(bad(format!("wrote column `{}`, which its description does not declare", col.name)));
        };
        let name = col.name.clone();
        let array = from_wit(col, *ty, n).map_err(&bad)?;
        written.push(Column { name, ty: *ty, array });
    }
    for (name, ty) in &d.writes {
        if !written.iter().any(|c| c.name == *name) {
            written.push(Column { name: name.clone(), ty: *ty, array: super::columns::null_array(*ty, n) });
        }
    }
    let mut keep = Vec::with_capacity(n);
    let mut dropped = 0;
    let mut rejected = Vec::new();
    for (i, o) in out.outcomes.into_iter().enumerate() {
        match o {
            w::Outcome::Keep => keep.push(true),
            w::Outcome::Drop => {
                dropped += 1;
                keep.push(false);
            }
            w::Outcome::Reject(reason) => {
                let mut reason = reason;
                if reason.len() > 4096 {
                    let mut cut = 4096;
                    while !reason.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    reason.truncate(cut);
                    reason.push_str("… (truncated)");
                }
                rejected.push((batch.origins[i], reason));
                keep.push(false);
            }
        }
    }
    for c in written {
        batch.after.set(c);
    }
    for r in &d.removes {
        if !d.writes.iter().any(|(n, _)| n == r) {
            batch.after.remove(r);
            batch.before.remove(r);
        }
    }
    batch.retain(&keep).map_err(|e| bad(format!("cannot filter the batch: {e}")))?;
    Ok(Applied { dropped, rejected })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{SourceInfo, TableRef};

    /// A stage that fails where `script` says so (cycling), keeping every event otherwise.
    struct Scripted {
        d: Description,
        script: Vec<bool>,
        calls: Arc<AtomicUsize>,
    }

    impl Stage for Scripted {
        fn description(&self) -> &Description {
            &self.d
        }
        fn identity(&self) -> String {
            "flaky@1.0.0#000000000000".into()
        }
        fn origin(&self) -> String {
            "test".into()
        }
        fn process(&mut self, batch: w::Batch) -> Result<w::Output, CallError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.script[call % self.script.len()] {
                return Err(CallError { plugin: "flaky".into(), message: "boom".into() });
            }
            Ok(w::Output {
                outcomes: batch.ops.iter().map(|_| w::Outcome::Keep).collect(),
                writes: Vec::new(),
            })
        }
    }

    fn chain(script: &[bool], sup: Supervision) -> (Chain, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let d = Description {
            name: "flaky".into(),
            version: "1.0.0".into(),
            reads: Some(Vec::new()),
            reads_before: false,
            writes: Vec::new(),
            removes: Vec::new(),
        };
        let stage = Scripted { d, script: script.to_vec(), calls: calls.clone() };
        (Chain::from_stages(vec![Box::new(stage)]).with_supervision(sup), calls)
    }

    fn batch(n: usize) -> ChangeBatch {
        let source = SourceInfo { table: 0, lsn: None, txid: None, ts_ms: 0, snapshot: false };
        ChangeBatch {
            ops: vec![Op::Create; n],
            sources: vec![source; n],
            tables: vec![TableRef { schema: "public".into(), table: "t".into() }],
            origins: (0..n as u32).collect(),
            ..Default::default()
        }
    }

    fn run(chain: &mut Chain) -> (ChainStats, Vec<DeadLetter>, usize) {
        let mut b = batch(3);
        let mut dead = Vec::new();
        let stats = chain.apply(&mut b, &mut dead);
        (stats, dead, b.len())
    }

    #[test]
    fn quarantined_plugin_is_passed_by() {
        let metrics = Metrics::new();
        let sup = Supervision {
            quarantine_after: 2,
            on_quarantine: OnQuarantine::PassThrough,
            metrics: Some(metrics.clone()),
            halt: Halt::default(),
        };
        let (mut chain, calls) = chain(&[true], sup);
        for _ in 0..2 {
            let (stats, dead, kept) = run(&mut chain);
            assert_eq!((stats.plugin_failures, dead.len(), kept), (1, 3, 0));
        }
        assert_eq!(chain.quarantined(), ["flaky"]);
        assert_eq!(chain.health().quarantined(), 1);
        assert_eq!(chain.identity(), format!("flaky@1.0.0#000000000000{QUARANTINED_MARK}"));
        let (stats, dead, kept) = run(&mut chain);
        assert_eq!((stats.plugin_failures, dead.len(), kept), (0, 0, 3), "events flow on unchanged");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a quarantined plugin is not called");
        let m = &metrics.plugins;
        assert_eq!(m.quarantines.with_label_values(&["flaky"]).get(), 1);
        assert_eq!(m.skipped_batches.with_label_values(&["flaky"]).get(), 1);
        assert_eq!(m.quarantined.get(), 1);
    }

    #[test]
    fn only_consecutive_failures_count() {
        let sup = Supervision { quarantine_after: 2, ..Default::default() };
        let (mut chain, _) = chain(&[true, false], sup);
        for _ in 0..10 {
            run(&mut chain);
        }
        assert!(chain.quarantined().is_empty());
        let (mut never, _) = self::chain(&[true], Supervision::default());
        for _ in 0..10 {
            assert_eq!(run(&mut never).0.plugin_failures, 1);
        }
        assert!(never.quarantined().is_empty(), "quarantine_after = 0 never quarantines");
    }

    #[test]
    fn stop_policy_halts_and_refuses_further_batches() {
        let stop = Arc::new(AtomicBool::new(false));
        let halt = Halt::new(stop.clone());
        let sup = Supervision {
            quarantine_after: 1,
            on_quarantine: OnQuarantine::Stop,
            metrics: None,
            halt: halt.clone(),
        };
        let (mut chain, calls) = chain(&[true], sup);
        run(&mut chain);
        assert!(stop.load(Ordering::SeqCst));
        match halt.take_reason() {
            Some(PluginError::Quarantined { plugin, failures, reason }) => {
                assert_eq!((plugin.as_str(), failures, reason.as_str()), ("flaky", 1, "boom"))
            }
            other => panic!("{other:?}"),
        }
        let (stats, dead, kept) = run(&mut chain);
        assert_eq!((stats.failed, kept, calls.load(Ordering::SeqCst)), (3, 0, 1));
        assert!(dead.iter().all(|d| d.reason.contains("quarantined")));
    }
}
