//! Loading, sandboxing and calling one plugin component.
//!
//! Each plugin runs in its own store with an empty WASI context (no preopened directories, no
//! environment, no sockets), a linear-memory limit and a per-call deadline (epoch interruption).
//! After a trap the instance is discarded and a fresh one is made (and configured) for the next batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::columns::from_wit_type;
use super::wit::{Level, Transform, TransformPre, cdc, wit_types as w};
use crate::error::PluginError;
use crate::schema::ColType;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// At most this many log lines per plugin call reach the host log; the rest are counted.
const LOG_LINES_PER_CALL: u32 = 100;

/// The wasmtime engine shared by all plugins, with the epoch ticker running.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    cache_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if Arc::strong_count(&self.stop) == 1 {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Runtime {
    /// Builds the engine and linker. `cache_dir` holds compiled components between runs.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&cfg).map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        let mut linker = Linker::<PluginState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        Transform::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Runtime(e.to_string()))?;
        if let Some(dir) = &cache_dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the plugin cache directory; compiling without cache");
        }
        Ok(Self { engine, linker: Arc::new(linker), cache_dir, stop })
    }

    /// Reads, compiles (or loads from cache) and type-checks a component file.
    pub fn compile(&self, path: &Path) -> Result<Compiled, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| PluginError::InvalidComponent {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        self.compile_bytes(path, &bytes)
    }

    /// Compiles (or loads from cache) and type-checks the component `bytes` read from `path`.
    pub fn compile_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Compiled, PluginError> {
        let started = Instant::now();
        let hash = content_hash(bytes);
        let (component, cache) = self.component(path, bytes, &hash)?;
        self.type_check(path, hash, component, cache, started)
    }

    /// Compiles the component `bytes` read from `path` to native code that a runtime of this same
    /// build loads with [`Self::load_precompiled`] without compiling (e.g. on another machine).
    pub fn precompile(&self, path: &Path, bytes: &[u8]) -> Result<Vec<u8>, PluginError> {
        let invalid = |message: String| PluginError::InvalidComponent { path: path.to_path_buf(), message };
        if !bytes.starts_with(b"\0asm") {
            return Err(invalid("not a WebAssembly binary (no \\0asm header)".into()));
        }
        self.engine.precompile_component(bytes).map_err(|e| invalid(format!("{e:#}")))
    }

    /// Loads and type-checks a component [`Self::precompile`] made from the component file with
    /// content hash `hash`. Fails when `native` was made by another wasmtime build or settings.
    pub fn load_precompiled(&self, path: &Path, hash: &str, native: &[u8]) -> Result<Compiled, PluginError> {
        let started = Instant::now();
        // SAFETY: wasmtime checks that `native` was produced by this wasmtime version with compatible
        // settings; the bytes come from `precompile` of the chain's owner (a trusted package), never
        // from user input directly.
        let component = unsafe { Component::deserialize(&self.engine, native) }.map_err(|e| {
            PluginError::InvalidComponent { path: path.to_path_buf(), message: format!("{e:#}") }
        })?;
        self.type_check(path, hash.to_string(), component, CacheStatus::Hit, started)
    }

    fn type_check(
        &self,
        path: &Path,
        hash: String,
        component: Component,
        cache: CacheStatus,
        started: Instant,
    ) -> Result<Compiled, PluginError> {
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            path: path.to_path_buf(),
            message: format!("{e:#} ({})", world_versions(&self.engine, &component)),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = TransformPre::new(pre).map_err(wrong_world)?;
        Ok(Compiled {
            path: path.to_path_buf(),
            hash,
            cache,
            load_time: started.elapsed(),
            pre: pre.instance_pre().clone(),
        })
    }

    /// The cache file of the component with content hash `hash`, when caching is on.
    pub fn cache_file(&self, hash: &str) -> Option<PathBuf> {
        self.cache_dir.as_ref().map(|d| d.join(format!("{hash}-{}.cwasm", wasmtime_version_tag())))
    }

    fn component(
        &self,
        path: &Path,
        bytes: &[u8],
        hash: &str,
    ) -> Result<(Component, CacheStatus), PluginError> {
        let cached = self.cache_file(hash);
        if let Some(c) = &cached
            && c.exists()
        {
            // SAFETY: the file was written by `Component::serialize` of this same wasmtime build (the
            // version tag is in the name) and is keyed by the content hash of the source component.
            match unsafe { Component::deserialize_file(&self.engine, c) } {
                Ok(comp) => return Ok((comp, CacheStatus::Hit)),
                Err(e) => {
                    tracing::warn!(file = %c.display(), error = %e, "ignoring unusable cached plugin")
                }
            }
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(PluginError::InvalidComponent {
                path: path.to_path_buf(),
                message: "not a WebAssembly binary (no \\0asm header)".into(),
            });
        }
        let comp = Component::new(&self.engine, bytes).map_err(|e| PluginError::InvalidComponent {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        if let Some(c) = &cached {
            match comp.serialize() {
                Ok(data) => {
                    // A name of its own, so concurrent hosts never interleave writes; the rename is atomic.
                    let tmp = c.with_extension(format!("{}.{}.tmp", std::process::id(), unique()));
                    if std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, c)).is_err() {
                        let _ = std::fs::remove_file(&tmp);
                        tracing::warn!(file = %c.display(), "cannot write the plugin cache");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize compiled plugin"),
            }
        }
        Ok((comp, if cached.is_some() { CacheStatus::Miss } else { CacheStatus::Off }))
    }
}

/// The contract this host implements.
pub const HOST_WORLD: &str = "cdc:transform/transform@0.1.0";

/// Both sides of a contract mismatch: which `cdc:transform` interfaces (with versions) the component
/// exports and imports, and the world this host implements.
fn world_versions(engine: &Engine, component: &Component) -> String {
    let ty = component.component_type();
    let names = |items: Vec<String>| if items.is_empty() { "none".to_string() } else { items.join(", ") };
    let ours = |n: &str| n.starts_with("cdc:transform/");
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).filter(|n| ours(n)).collect();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).filter(|n| ours(n)).collect();
    format!(
        "the component exports {} and imports {}; this host implements {HOST_WORLD}",
        names(exports),
        names(imports)
    )
}

/// A number no other call in this process returns.
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// SHA-256 of a component file, hex: the content part of a plugin's identity and the cache key.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Already loaded by this process (hot reload keeps recent components in memory).
    Memory,
    /// Loaded from the on-disk cache (no compilation).
    Hit,
    /// Compiled, and written to the cache.
    Miss,
    /// Compiled; no cache directory.
    Off,
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CacheStatus::Memory => "memory",
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Off => "off",
        })
    }
}

fn wasmtime_version_tag() -> &'static str {
    // Bumped together with the pinned wasmtime version in host/Cargo.toml.
    "wasmtime48"
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A compiled, type-checked component, ready to instantiate.
#[derive(Clone)]
pub struct Compiled {
    pub path: PathBuf,
    /// SHA-256 of the component file.
    pub hash: String,
    /// Whether compiling was served by the cache.
    pub cache: CacheStatus,
    /// How long compiling (or loading from the cache) and type-checking took.
    pub load_time: Duration,
    pre: InstancePre<PluginState>,
}

impl Compiled {
    /// The same component as already loaded by this process, now found at `path`.
    pub fn reused(&self, path: &Path) -> Compiled {
        Compiled {
            path: path.to_path_buf(),
            cache: CacheStatus::Memory,
            load_time: Duration::ZERO,
            ..self.clone()
        }
    }
}

/// Store limits that remember when they refused memory, so the failure can be named.
struct Limiter {
    limits: StoreLimits,
    memory_denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.limits.memory_growing(current, desired, maximum)?;
        self.memory_denied |= !ok;
        Ok(ok)
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
    fn instances(&self) -> usize {
        self.limits.instances()
    }
    fn tables(&self) -> usize {
        self.limits.tables()
    }
    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Per-store state: the empty WASI context, limits and log routing.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    name: Arc<str>,
    log_lines: u32,
    log_suppressed: u64,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl cdc::transform::log::Host for PluginState {
    fn write(&mut self, level: Level, message: String) {
        if self.log_lines >= LOG_LINES_PER_CALL {
            self.log_suppressed += 1;
            return;
        }
        self.log_lines += 1;
        let plugin = &*self.name;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl cdc::transform::types::Host for PluginState {}

/// What a plugin declared about itself, checked.
#[derive(Debug, Clone)]
pub struct Description {
    pub name: String,
    pub version: String,
    /// After-image columns read; `None` means every column.
    pub reads: Option<Vec<String>>,
    pub reads_before: bool,
    pub writes: Vec<(String, ColType)>,
    pub removes: Vec<String>,
}

impl Description {
    /// Checks a description returned by a plugin.
    pub fn from_wit(d: w::Description) -> Result<Self, String> {
        if d.name.trim().is_empty() {
            return Err("empty name".into());
        }
        let reads = if d.reads.iter().any(|r| r == "*") { None } else { Some(d.reads) };
        let mut writes = Vec::with_capacity(d.writes.len());
        for c in d.writes {
            if c.name.trim().is_empty() {
                return Err("a written column has an empty name".into());
            }
            if writes.iter().any(|(n, _)| *n == c.name) {
                return Err(format!("column `{}` is declared twice in writes", c.name));
            }
            let ty = from_wit_type(&c.type_).map_err(|e| format!("column `{}`: {e}", c.name))?;
            writes.push((c.name, ty));
        }
        Ok(Self {
            name: d.name,
            version: d.version,
            reads,
            reads_before: d.reads_before,
            writes,
            removes: d.removes,
        })
    }
}

/// Limits applied to every plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: usize,
    pub deadline: Duration,
}

/// A live, configured plugin instance.
pub struct Plugin {
    pub description: Description,
    pub compiled: Compiled,
    config: Vec<(String, String)>,
    limits: Limits,
    instance: Option<(Store<PluginState>, Transform)>,
}

/// A failed call into a plugin (trap, deadline, memory limit, bad output).
#[derive(Debug, Clone)]
pub struct CallError {
    pub plugin: String,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugin `{}` failed: {}", self.plugin, self.message)
    }
}

impl Plugin {
    /// Instantiates, describes and configures a compiled component.
    pub fn start(
        compiled: Compiled,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let file_name =
            compiled.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let (store, bindings, description) = instantiate(&compiled, &file_name, &config, limits)?;
        Ok(Self { description, compiled, config, limits, instance: Some((store, bindings)) })
    }

    /// `name@version` and a short content hash.
    pub fn identity(&self) -> String {
        format!("{}@{}#{}", self.description.name, self.description.version, &self.compiled.hash[..12])
    }

    /// A short digest of the configuration, when there is one (two configurations of the same
    /// component are different transforms).
    pub fn config_digest(&self) -> Option<String> {
        if self.config.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        for (k, v) in &self.config {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        Some(hex(&h.finalize()[..4]))
    }

    /// Runs `process` on one batch under the deadline.
    pub fn process(&mut self, batch: &w::Batch) -> Result<w::Output, CallError> {
        let name = self.description.name.clone();
        let err = |message: String| CallError { plugin: name.clone(), message };
        if self.instance.is_none() {
            let (store, bindings, _) =
                instantiate(&self.compiled, &self.description.name, &self.config, self.limits)
                    .map_err(|e| err(format!("cannot restart after an earlier failure: {e}")))?;
            self.instance = Some((store, bindings));
        }
        let (store, bindings) = self.instance.as_mut().expect("instance present");
        store.data_mut().log_lines = 0;
        let ticks = (self.limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1;
        store.set_epoch_deadline(ticks);
        let result = bindings.cdc_transform_transformer().call_process(&mut *store, batch);
        let suppressed = std::mem::take(&mut store.data_mut().log_suppressed);
        if suppressed > 0 {
            tracing::warn!(plugin = %name, suppressed, "plugin log lines over the per-batch limit were dropped");
        }
        match result {
            Ok(out) => Ok(out),
            Err(e) => {
                let denied = store.data().limiter.memory_denied;
                // The instance may be in any state after a trap: never call it again.
                self.instance = None;
                Err(err(describe_trap(&e, self.limits, denied)))
            }
        }
    }
}

fn describe_trap(e: &wasmtime::Error, limits: Limits, memory_denied: bool) -> String {
    let trap = e.downcast_ref::<wasmtime::Trap>();
    if matches!(trap, Some(wasmtime::Trap::Interrupt)) {
        return format!(
            "exceeded the {} ms batch deadline (plugins.batch_deadline_ms)",
            limits.deadline.as_millis()
        );
    }
    let what = match trap {
        Some(t) => format!("trapped: {t}"),
        None => format!("{e:#}"),
    };
    if memory_denied {
        format!(
            "{what}: it asked for more than the memory limit of {} MiB (plugins.memory_limit_mb)",
            limits.memory_bytes / (1024 * 1024)
        )
    } else {
        what
    }
}

fn instantiate(
    compiled: &Compiled,
    name: &str,
    config: &[(String, String)],
    limits: Limits,
) -> Result<(Store<PluginState>, Transform, Description), PluginError> {
    let engine = compiled.pre.engine();
    let state = PluginState {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
        limiter: Limiter {
            limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).instances(16).build(),
            memory_denied: false,
        },
        name: Arc::from(name),
        log_lines: 0,
        log_suppressed: 0,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    let ticks = (limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1;
    store.set_epoch_deadline(ticks);
    let path = compiled.path.clone();
    let instance = compiled.pre.instantiate(&mut store).map_err(|e| PluginError::InvalidComponent {
        path: path.clone(),
        message: format!("cannot instantiate: {e:#}"),
    })?;
    let bindings = Transform::new(&mut store, &instance)
        .map_err(|e| PluginError::WrongWorld { path: path.clone(), message: format!("{e:#}") })?;
    let guest = bindings.cdc_transform_transformer();
    // Each call gets the whole deadline: instantiating a large component (an interpreter's memory
    // image) on a loaded machine must not eat into `describe`'s.
    store.set_epoch_deadline(ticks);
    let desc = guest.call_describe(&mut store).map_err(|e| PluginError::Description {
        plugin: name.to_string(),
        message: describe_trap(&e, limits, store.data().limiter.memory_denied),
    })?;
    let description = Description::from_wit(desc)
        .map_err(|message| PluginError::Description { plugin: name.to_string(), message })?;
    store.data_mut().name = Arc::from(description.name.as_str());
    store.set_epoch_deadline(ticks);
    match guest.call_configure(&mut store, config) {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            return Err(PluginError::Configure { plugin: description.name, message });
        }
        Err(e) => {
            return Err(PluginError::Configure {
                plugin: description.name,
                message: describe_trap(&e, limits, store.data().limiter.memory_denied),
            });
        }
    }
    Ok((store, bindings, description))
}
