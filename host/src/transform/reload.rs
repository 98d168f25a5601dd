//! Hot reload: the plugins directory (and the `--config` file) are watched; after a quiet period a
//! replacement chain is read, compiled, type-checked against the WIT world, instantiated and configured
//! on a thread of its own, off the hot path. Only a chain that passed all of that is handed to the
//! pipeline, which takes it between two batches ([`ChainUpdates::poll`]): every batch is processed
//! entirely by the old chain or entirely by the new one. A change that fails anywhere is logged with the
//! plugin and the reason, counted (`cdc_host_plugin_reloads_total{result="rejected"}`), and the running
//! chain stays active.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::chain::{self, Chain, ChainHealth, ChainUpdates, Halt, Stage, Supervision, resolve_entries};
use super::plugin::{Compiled, Limits, Plugin, Runtime, content_hash};
use crate::config::{ChainEntry, Config, OnQuarantine};
use crate::error::{ConfigError, PluginError, ReloadError};
use crate::metrics::Metrics;

/// Compiled components of this many recent chains stay in memory, so swapping back and forth between
/// versions does not even read the disk cache.
const RECENT_CHAINS: usize = 2;

/// One chain entry as loaded: file, content hash, configuration.
type EntryPrint = (PathBuf, String, Vec<(String, String)>);

/// Everything a chain is built from: equal fingerprints build equal chains.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    /// Per entry, in order.
    entries: Vec<EntryPrint>,
    limits: Limits,
    quarantine_after: u32,
    on_quarantine: OnQuarantine,
    /// Per entry: its own `on_quarantine`.
    entry_policies: Vec<Option<OnQuarantine>>,
}

/// Size and modification time of a file, to notice it changing while it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Option<(u64, Option<SystemTime>)>);

impl FileStamp {
    fn of(path: &Path) -> Self {
        Self(std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok())))
    }
}

/// The files a chain would be built from, read once: what is compiled is exactly what was hashed.
struct Candidate {
    entries: Vec<(ChainEntry, PathBuf, Vec<u8>)>,
    stamps: Vec<(PathBuf, FileStamp)>,
    fingerprint: Fingerprint,
    supervision_cfg: crate::config::PluginsConfig,
}

/// Whether any file changed since it was read (it is still being written).
fn files_moved(stamps: &[(PathBuf, FileStamp)]) -> bool {
    stamps.iter().any(|(p, s)| FileStamp::of(p) != *s)
}

/// Builds chains with one wasmtime runtime, keeping recently compiled components in memory.
pub struct Loader {
    runtime: Runtime,
    compiled: HashMap<String, Compiled>,
    recent: VecDeque<Vec<String>>,
    metrics: Option<Metrics>,
    halt: Halt,
}

impl Loader {
    /// A loader with the cache directory of `cfg` (compiled components persist across restarts there).
    /// Chains it builds count quarantines in `metrics` and stop the pipeline through `halt`.
    pub fn new(cfg: &Config, metrics: Option<Metrics>, halt: Halt) -> Result<Self, PluginError> {
        let cache = cfg.plugins.cache_dir.clone().or_else(crate::pipeline::default_cache_dir);
        Ok(Self {
            runtime: Runtime::new(cache)?,
            compiled: HashMap::new(),
            recent: VecDeque::new(),
            metrics,
            halt,
        })
    }

    /// Reads, compiles (memory, then disk cache, then cranelift), instantiates and configures the chain
    /// `cfg` names.
    pub fn load(&mut self, cfg: &Config) -> Result<Chain, ReloadError> {
        let candidate = self.read(cfg)?;
        self.build(candidate)
    }

    fn read(&self, cfg: &Config) -> Result<Candidate, ReloadError> {
        let dir = &cfg.plugins.dir;
        let resolved = if cfg.no_plugins { Vec::new() } else { resolve_entries(dir, &cfg.chain)? };
        let mut entries = Vec::with_capacity(resolved.len());
        let mut stamps = Vec::with_capacity(resolved.len());
        let mut fp = Vec::with_capacity(resolved.len());
        for e in resolved {
            let path = e.path(dir);
            stamps.push((path.clone(), FileStamp::of(&path)));
            let bytes = std::fs::read(&path).map_err(|err| ReloadError::Plugin {
                plugin: e.plugin.clone(),
                source: PluginError::InvalidComponent {
                    path: path.clone(),
                    message: format!("cannot read: {err}"),
                },
            })?;
            fp.push((path.clone(), content_hash(&bytes), e.config_pairs()));
            entries.push((e, path, bytes));
        }
        let policies = entries.iter().map(|(e, _, _)| e.on_quarantine).collect();
        Ok(Candidate {
            entries,
            stamps,
            fingerprint: Fingerprint {
                entries: fp,
                limits: chain::limits(&cfg.plugins),
                quarantine_after: cfg.plugins.quarantine_after,
                on_quarantine: cfg.plugins.on_quarantine,
                entry_policies: policies,
            },
            supervision_cfg: cfg.plugins.clone(),
        })
    }

    fn build(&mut self, candidate: Candidate) -> Result<Chain, ReloadError> {
        let limits = candidate.fingerprint.limits;
        let mut stages: Vec<Box<dyn Stage>> = Vec::with_capacity(candidate.entries.len());
        let mut hashes = Vec::with_capacity(candidate.entries.len());
        for ((entry, path, bytes), (_, hash, config)) in
            candidate.entries.iter().zip(&candidate.fingerprint.entries)
        {
            let wrap = |source: PluginError| ReloadError::Plugin { plugin: entry.plugin.clone(), source };
            let compiled = match self.compiled.get(hash) {
                Some(c) => c.reused(path),
                None => {
                    let c = self.runtime.compile_bytes(path, bytes).map_err(wrap)?;
                    self.compiled.insert(hash.clone(), c.clone());
                    c
                }
            };
            let (cache, load_time) = (compiled.cache, compiled.load_time);
            let plugin = Plugin::start(compiled, config.clone(), limits).map_err(wrap)?;
            tracing::info!(
                plugin = %plugin.identity(),
                file = %path.display(),
                cache = %cache,
                compile_ms = load_time.as_millis() as u64,
                "loaded plugin"
            );
            stages.push(Box::new(plugin));
            hashes.push(hash.clone());
        }
        self.recent.push_back(hashes);
        while self.recent.len() > RECENT_CHAINS {
            self.recent.pop_front();
        }
        let keep: Vec<&String> = self.recent.iter().flatten().collect();
        self.compiled.retain(|h, _| keep.contains(&h));
        let supervision =
            Supervision::new(&candidate.supervision_cfg, self.metrics.clone(), self.halt.clone());
        Ok(Chain::from_stages(stages)
            .with_supervision(supervision)
            .with_stage_policies(candidate.fingerprint.entry_policies.iter().copied()))
    }
}

/// What hot reload needs besides the files.
pub struct ReloadOptions {
    /// The effective configuration at start (file, environment and flags applied).
    pub config: Config,
    /// The config file to watch too; chain and `[plugins]` limit changes in it are applied.
    pub config_file: Option<PathBuf>,
    /// Re-reads the effective configuration after the config file changed (so flags still override
    /// it). Default: [`Config::load`] of `config_file`, validated.
    pub reread: Option<Box<dyn Fn() -> Result<Config, ConfigError> + Send>>,
    pub metrics: Metrics,
    /// How a quarantine with `on_quarantine = "stop"` stops the pipeline.
    pub halt: Halt,
}

/// A validated chain waiting for the next batch boundary.
struct Prepared {
    chain: Chain,
    identity: String,
    /// When the change that led to it was first seen.
    changed_at: Instant,
}

type Slot = Arc<Mutex<Option<Prepared>>>;

/// Watches plugins and config, and hands validated replacement chains to the pipeline.
pub struct Reloader {
    slot: Slot,
    current: String,
    metrics: Metrics,
    _watcher: RecommendedWatcher,
}

impl Reloader {
    /// Starts watching, then loads the chain `options.config` names (the chain to start with; a change
    /// made while it loads is not missed). Dropping the reloader stops the watching.
    pub fn start(options: ReloadOptions) -> Result<(Chain, Reloader), ReloadError> {
        let ReloadOptions { config, config_file, reread, metrics, halt } = options;
        if !config.plugins.dir.is_dir() {
            return Err(PluginError::MissingDir(config.plugins.dir.clone()).into());
        }
        let watch_err = |path: &Path, e: &dyn std::fmt::Display| ReloadError::Watch {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let dir = &config.plugins.dir;
        let plugins_dir = std::fs::canonicalize(dir).map_err(|e| watch_err(dir, &e))?;
        let config_watch = match &config_file {
            None => None,
            Some(f) => {
                let parent = match f.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let parent = std::fs::canonicalize(&parent).map_err(|e| watch_err(&parent, &e))?;
                let name = f.file_name().map(OsString::from).unwrap_or_default();
                let symlink =
                    std::fs::symlink_metadata(f).map(|m| m.file_type().is_symlink()).unwrap_or(false);
                Some(ConfigWatch { dir: parent, name, symlink })
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx).map_err(|e| watch_err(&plugins_dir, &e))?;
        watcher.watch(&plugins_dir, RecursiveMode::NonRecursive).map_err(|e| watch_err(&plugins_dir, &e))?;
        if let Some(c) = &config_watch
            && c.dir != plugins_dir
        {
            watcher.watch(&c.dir, RecursiveMode::NonRecursive).map_err(|e| watch_err(&c.dir, &e))?;
        }

        let mut loader = Loader::new(&config, Some(metrics.clone()), halt)?;
        let candidate = loader.read(&config)?;
        let fingerprint = candidate.fingerprint.clone();
        let chain = loader.build(candidate)?;
        let slot: Slot = Arc::default();
        let identity = chain.identity();
        set_active(&metrics, &chain);
        tracing::info!(
            plugins = %plugins_dir.display(),
            config = %config_file.as_deref().map_or("(none)".into(), |p| p.display().to_string()),
            debounce_ms = config.plugins.debounce_ms,
            "hot reload: watching for plugin and chain changes"
        );
        let watch = Watch {
            loader,
            debounce: Duration::from_millis(config.plugins.debounce_ms),
            base: config,
            config_file,
            reread,
            plugins_dir,
            config_watch,
            active: fingerprint,
            active_health: chain.health(),
            slot: slot.clone(),
            metrics: metrics.clone(),
            restart_warned: Vec::new(),
        };
        std::thread::Builder::new().name("plugin-reload".into()).spawn(move || watch.run(rx)).map_err(
            |e| ReloadError::Chain(PluginError::Runtime(format!("cannot start the reload thread: {e}"))),
        )?;
        Ok((chain, Reloader { slot, current: identity, metrics, _watcher: watcher }))
    }
}

impl ChainUpdates for Reloader {
    fn poll(&mut self) -> Option<Chain> {
        let prepared = self.slot.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        let latency = prepared.changed_at.elapsed();
        tracing::info!(
            from = %self.current,
            to = %prepared.identity,
            latency_ms = latency.as_millis() as u64,
            "plugin chain swapped"
        );
        let m = &self.metrics.plugins;
        m.reloads.with_label_values(&["applied"]).inc();
        m.swap_seconds.set(latency.as_secs_f64());
        m.quarantined.set(0);
        set_active(&self.metrics, &prepared.chain);
        self.current = prepared.identity;
        Some(prepared.chain)
    }
}

/// Publishes the active chain as `cdc_host_plugin_info`, and starts its plugins' counters at zero
/// (a dashboard shows 0 rather than no data for a plugin that never failed).
pub fn set_active(metrics: &Metrics, chain: &Chain) {
    let info = &metrics.plugins.info;
    info.reset();
    for (i, s) in chain.stages().iter().enumerate() {
        let d = s.description();
        let hash = s.compiled().map_or(String::new(), |c| c.hash[..12].to_string());
        info.with_label_values(&[&(i + 1).to_string(), &d.name, &d.version, &hash]).set(1);
        metrics.plugin_failures.with_label_values(&[&d.name]);
        metrics.reference.transformations_applied.with_label_values(&[&d.name]);
    }
}

struct ConfigWatch {
    dir: PathBuf,
    name: OsString,
    /// A symlinked config (e.g. a mounted ConfigMap) changes by replacing what the link points to.
    symlink: bool,
}

/// The reload thread's state.
struct Watch {
    loader: Loader,
    debounce: Duration,
    /// The configuration at start; what may not change while running stays as it was.
    base: Config,
    config_file: Option<PathBuf>,
    reread: Option<Box<dyn Fn() -> Result<Config, ConfigError> + Send>>,
    plugins_dir: PathBuf,
    config_watch: Option<ConfigWatch>,
    /// What the newest chain handed to the pipeline was built from.
    active: Fingerprint,
    active_health: ChainHealth,
    slot: Slot,
    metrics: Metrics,
    restart_warned: Vec<String>,
}

enum Attempt {
    Prepared,
    Unchanged,
    /// Files changed while they were loaded: wait for them to settle.
    Moving,
    Rejected,
}

impl Watch {
    fn run(mut self, rx: Receiver<notify::Result<Event>>) {
        loop {
            let changed_at = loop {
                match rx.recv() {
                    Ok(Ok(ev)) if self.relevant(&ev) => {
                        tracing::debug!(event = ?ev, "plugin or config change");
                        break Instant::now();
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "watching plugin files"),
                    Err(_) => return, // the reloader is gone
                }
            };
            if !self.settle(&rx) {
                return;
            }
            match self.attempt(changed_at) {
                Attempt::Moving => {
                    tracing::info!("plugin files changed while they were loaded; waiting for them to settle")
                }
                Attempt::Prepared | Attempt::Unchanged | Attempt::Rejected => {}
            }
        }
    }

    /// Waits until no relevant change arrived for the debounce period. False: stop watching.
    fn settle(&self, rx: &Receiver<notify::Result<Event>>) -> bool {
        let mut until = Instant::now() + self.debounce;
        loop {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Ok(ev)) if self.relevant(&ev) => until = Instant::now() + self.debounce,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Changes to `*.wasm` files in the plugins directory (hidden files excluded: stage new files as
    /// `.name.wasm` or `name.wasm.tmp` and rename them into place) and to the config file.
    fn relevant(&self, ev: &Event) -> bool {
        if ev.need_rescan() {
            return true;
        }
        if let EventKind::Access(a) = ev.kind
            && a != AccessKind::Close(AccessMode::Write)
        {
            return false;
        }
        ev.paths.iter().any(|p| {
            let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else { return false };
            let name_str = name.to_string_lossy();
            let plugin = dir == self.plugins_dir && name_str.ends_with(".wasm") && !name_str.starts_with('.');
            let config =
                self.config_watch.as_ref().is_some_and(|c| dir == c.dir && (c.symlink || name == c.name));
            plugin || config
        })
    }

    fn attempt(&mut self, changed_at: Instant) -> Attempt {
        let cfg = match self.config() {
            Ok(c) => c,
            Err(e) => return self.reject(e),
        };
        let candidate = match self.loader.read(&cfg) {
            Ok(c) => c,
            Err(e) => return self.reject(e),
        };
        if candidate.fingerprint == self.active && self.active_health.quarantined() == 0 {
            tracing::info!("plugin files or config changed; the chain they describe is the active one");
            self.metrics.plugins.reloads.with_label_values(&["unchanged"]).inc();
            return Attempt::Unchanged;
        }
        let started = Instant::now();
        let fingerprint = candidate.fingerprint.clone();
        let stamps = candidate.stamps.clone();
        let chain = match self.loader.build(candidate) {
            Ok(chain) => chain,
            Err(_) if files_moved(&stamps) => return Attempt::Moving,
            Err(e) => return self.reject(e),
        };
        if files_moved(&stamps) {
            return Attempt::Moving;
        }
        let identity = chain.identity();
        self.active = fingerprint;
        self.active_health = chain.health();
        let prepare_ms = started.elapsed().as_millis() as u64;
        let superseded = self.slot.lock().unwrap_or_else(PoisonError::into_inner).replace(Prepared {
            chain,
            identity: identity.clone(),
            changed_at,
        });
        // Logged once the pipeline can take it.
        tracing::info!(
            chain = %identity,
            prepare_ms,
            "new plugin chain validated; it takes over at the next batch boundary"
        );
        if let Some(old) = superseded {
            tracing::info!(chain = %old.identity, "a validated chain was replaced by a newer one before it ran");
            self.metrics.plugins.reloads.with_label_values(&["superseded"]).inc();
        }
        Attempt::Prepared
    }

    fn reject(&self, e: ReloadError) -> Attempt {
        tracing::error!(
            plugin = e.plugin().unwrap_or("-"),
            error = %e,
            "plugin chain change rejected; the running chain stays active"
        );
        self.metrics.plugins.reloads.with_label_values(&["rejected"]).inc();
        Attempt::Rejected
    }

    /// The configuration to build from: the start configuration with the chain and the `[plugins]`
    /// limits of the current config file.
    fn config(&mut self) -> Result<Config, ReloadError> {
        let Some(file) = &self.config_file else { return Ok(self.base.clone()) };
        let new = match &self.reread {
            Some(reread) => reread()?,
            None => {
                let c = Config::load(file)?;
                c.validate()?;
                c
            }
        };
        let restart = restart_needed(&self.base, &new);
        if !restart.is_empty() && restart != self.restart_warned {
            tracing::warn!(
                keys = %restart.join(", "),
                "config changes that need a restart are not applied while running (only [[chain]] and \
                 plugins.batch_deadline_ms, memory_limit_mb, quarantine_after, on_quarantine are)"
            );
        }
        self.restart_warned = restart;
        let mut cfg = self.base.clone();
        cfg.chain = new.chain;
        cfg.no_plugins = new.no_plugins;
        cfg.plugins.batch_deadline_ms = new.plugins.batch_deadline_ms;
        cfg.plugins.memory_limit_mb = new.plugins.memory_limit_mb;
        cfg.plugins.quarantine_after = new.plugins.quarantine_after;
        cfg.plugins.on_quarantine = new.plugins.on_quarantine;
        Ok(cfg)
    }
}

/// Settings that differ between `old` and `new` and only take effect after a restart.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    const LIVE: [&str; 4] = ["batch_deadline_ms", "memory_limit_mb", "quarantine_after", "on_quarantine"];
    let flatten = |c: &Config| -> Vec<(String, serde_json::Value)> {
        let mut out = Vec::new();
        if let Ok(serde_json::Value::Object(top)) = serde_json::to_value(c) {
            for (k, v) in top {
                match (k.as_str(), v) {
                    ("chain", _) => {}
                    ("plugins", serde_json::Value::Object(p)) => out.extend(
                        p.into_iter()
                            .filter(|(pk, _)| !LIVE.contains(&pk.as_str()))
                            .map(|(pk, pv)| (format!("plugins.{pk}"), pv)),
                    ),
                    (_, v) => out.push((k, v)),
                }
            }
        }
        out
    };
    let (a, b) = (flatten(old), flatten(new));
    let mut keys: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.iter().find(|(bk, _)| bk == k).map(|(_, bv)| bv) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(b.iter().filter(|(k, _)| !a.iter().any(|(ak, _)| ak == k)).map(|(k, _)| k.clone()));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_needed_names_what_does_not_apply_live() {
        let a = Config::shipped_default();
        let mut b = a.clone();
        assert!(restart_needed(&a, &b).is_empty());
        b.chain.pop();
        b.plugins.memory_limit_mb = 64;
        b.plugins.batch_deadline_ms = 10;
        b.plugins.on_quarantine = OnQuarantine::Stop;
        assert!(restart_needed(&a, &b).is_empty(), "{:?}", restart_needed(&a, &b));
        b.sink.batch_size = 7;
        b.plugins.debounce_ms = 5;
        let mut keys = restart_needed(&a, &b);
        keys.sort();
        assert_eq!(keys, ["plugins.debounce_ms", "sink"]);
    }
}
