//! The chain of plugins, applied to one [`ChangeBatch`] at a time: one call per plugin per batch.

use std::path::Path;
use std::time::Duration;

use super::columns::{from_wit, null_wit, to_wit};
use super::plugin::{CallError, Compiled, Description, Limits, Plugin, Runtime};
use super::wit::wit_types as w;
use crate::change::{ChangeBatch, Column, DeadLetter, Op};
use crate::config::{ChainEntry, PluginsConfig};
use crate::error::PluginError;
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
}

/// Limits for every plugin, from the config.
pub fn limits(cfg: &PluginsConfig) -> Limits {
    Limits {
        memory_bytes: (cfg.memory_limit_mb as usize).saturating_mul(1024 * 1024),
        deadline: Duration::from_millis(cfg.batch_deadline_ms),
    }
}

/// The chain entries to load: the configured ones, or every `*.wasm` in `dir` by file name.
pub fn resolve_entries(
    dir: &Path,
    configured: &[ChainEntry],
) -> Result<Vec<ChainEntry>, PluginError> {
    if !dir.is_dir() {
        return Err(PluginError::MissingDir(dir.to_path_buf()));
    }
    let mut available: Vec<String> = std::fs::read_dir(dir)
        .map_err(|_| PluginError::MissingDir(dir.to_path_buf()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".wasm").map(str::to_string)
        })
        .collect();
    available.sort();
    if configured.is_empty() {
        return Ok(available
            .into_iter()
            .map(|plugin| ChainEntry {
                plugin,
                config: Default::default(),
            })
            .collect());
    }
    for e in configured {
        let path = e.path(dir);
        if !path.is_file() {
            return Err(PluginError::MissingFile {
                plugin: e.plugin.clone(),
                path,
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
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
        Ok(Self { stages })
    }

    /// A chain of the given stages.
    pub fn from_stages(stages: Vec<Box<dyn Stage>>) -> Self {
        Self { stages }
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Box<dyn Stage>] {
        &self.stages
    }

    /// Identities of the stages, comma separated (recorded in snapshot summaries).
    pub fn identity(&self) -> String {
        self.stages
            .iter()
            .map(|s| s.identity())
            .collect::<Vec<_>>()
            .join(",")
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
    /// a batch a plugin failed on become dead letters.
    pub fn apply(&mut self, batch: &mut ChangeBatch, dead: &mut Vec<DeadLetter>) -> ChainStats {
        let mut stats = ChainStats {
            events_in: batch.len() as u64,
            ..Default::default()
        };
        for stage in &mut self.stages {
            if batch.is_empty() {
                break;
            }
            let input = wit_batch(stage.description(), batch);
            let result = stage
                .process(input)
                .and_then(|out| apply_output(stage.description(), batch, out));
            match result {
                Ok(applied) => {
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
                    let first = batch.origins.first().copied().unwrap_or(0);
                    tracing::error!(
                        plugin = %e.plugin,
                        events = batch.len(),
                        first_record = first,
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
                    *batch = ChangeBatch {
                        tables: std::mem::take(&mut batch.tables),
                        ..Default::default()
                    };
                }
            }
        }
        stats.kept = batch.len() as u64;
        stats
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
            None => cols
                .0
                .iter()
                .map(|c| to_wit(&c.name, c.ty, &c.array))
                .collect(),
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
            .map(|t| w::TableRef {
                schema: t.schema.clone(),
                table: t.table.clone(),
            })
            .collect(),
        after: side(&batch.after),
        before: if d.reads_before {
            side(&batch.before)
        } else {
            Vec::new()
        },
    }
}

struct Applied {
    dropped: u64,
    /// (origin, reason)
    rejected: Vec<(u32, String)>,
}

/// Checks a plugin's output and applies it: writes, removes, then filtering.
fn apply_output(
    d: &Description,
    batch: &mut ChangeBatch,
    out: w::Output,
) -> Result<Applied, CallError> {
    let n = batch.len();
    let bad = |message: String| CallError {
        plugin: d.name.clone(),
        message,
    };
    if out.outcomes.len() != n {
        return Err(bad(format!(
            "returned {} outcomes for a batch of {n} events",
            out.outcomes.len()
        )));
    }
    let mut written = Vec::with_capacity(out.writes.len());
    for col in out.writes {
        let Some((_, ty)) = d.writes.iter().find(|(name, _)| *name == col.name) else {
            return Err(bad(format!(
                "wrote column `{}`, which its description does not declare",
                col.name
            )));
        };
        let name = col.name.clone();
        let array = from_wit(col, *ty, n).map_err(&bad)?;
        written.push(Column {
            name,
            ty: *ty,
            array,
        });
    }
    for (name, ty) in &d.writes {
        if !written.iter().any(|c| c.name == *name) {
            written.push(Column {
                name: name.clone(),
                ty: *ty,
                array: super::columns::null_array(*ty, n),
            });
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
    batch
        .retain(&keep)
        .map_err(|e| bad(format!("cannot filter the batch: {e}")))?;
    Ok(Applied { dropped, rejected })
}
