//! Hot-reload benchmark (run in release: `cargo bench -p cdc-host --bench hot_reload`).
//!
//! Measures, on this machine:
//! (a) the time from a plugin file landing in the plugins directory (atomic rename) to the new chain
//!     processing its first batch (target ≤ 500 ms), over repeated swaps of the `stamp` plugin that
//!     alternate between a component never seen before (a fresh variant of `stamp-v2.wasm`: compiled on
//!     arrival) and `stamp-v1.wasm` (compiled before: served from the cache);
//! (b) the throughput dip around those swaps: the pipeline runs end to end (generated Debezium events
//!     → the three shipped plugins + the `stamp` test plugin → Iceberg) at full speed the whole time,
//!     and events/s in 100 ms windows around each swap are compared with the steady state;
//! (c) cold start of the `cdc-host` binary with the three shipped plugins already in the compile
//!     cache (target ≤ 1 s), against an empty cache.
//!
//! `CDC_BENCH_SWAPS` sets the number of swaps (default 10). Needs `scripts/build-plugins` first.
//! Results are printed and written to `target/bench/hot_reload.json`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdc_host::change::RawBatch;
use cdc_host::config::{ChainEntry, Config};
use cdc_host::error::PipelineError;
use cdc_host::metrics::Metrics;
use cdc_host::pipeline;
use cdc_host::source::{FileSource, Source};
use cdc_host::transform::chain::ChainUpdates;
use cdc_host::transform::{Chain, Halt, ReloadOptions, Reloader};
use serde_json::{Value, json};

/// Throughput is counted in windows of this length (a batch of 8192 events takes tens of ms).
const WINDOW: Duration = Duration::from_millis(250);
/// Windows this close to a swap do not count as steady state.
const NEAR: usize = 4;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Debezium records built from the shared fixtures, with distinct keys: one NDJSON text.
fn generated_events(n: usize) -> Vec<u8> {
    let dir = repo().join("../shared/fixtures/debezium/schemas_false__decimal_precise");
    let mut templates: Vec<Value> = Vec::new();
    for s in ["snapshot", "insert", "update"] {
        for line in std::fs::read_to_string(dir.join(format!("{s}.ndjson"))).unwrap().lines() {
            templates.push(serde_json::from_str(line).unwrap());
        }
    }
    let mut out = Vec::with_capacity(n * 900);
    for i in 0..n {
        let mut t = templates[i % templates.len()].clone();
        let id = (i + 1) as i64;
        t["key"]["customer_id"] = id.into();
        if t["value"]["after"].is_object() {
            t["value"]["after"]["customer_id"] = id.into();
        }
        serde_json::to_writer(&mut out, &t).unwrap();
        out.push(b'\n');
    }
    out
}

/// The same records over and over, for as long as the pipeline reads.
struct Endless {
    data: Arc<Vec<u8>>,
    pos: usize,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.data.len() {
            self.pos = 0;
        }
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A source that notes when each batch was read and how big it was.
struct Timed {
    inner: FileSource,
    marks: Arc<Mutex<Vec<(Instant, usize)>>>,
}

impl Source for Timed {
    fn next_batch(&mut self, out: &mut RawBatch, max: usize) -> Result<bool, PipelineError> {
        let more = self.inner.next_batch(out, max)?;
        self.marks.lock().unwrap().push((Instant::now(), out.len()));
        Ok(more)
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// Notes when each new chain took over.
struct Recorder {
    inner: Reloader,
    swaps: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl ChainUpdates for Recorder {
    fn poll(&mut self) -> Option<Chain> {
        let chain = self.inner.poll()?;
        self.swaps.lock().unwrap().push((Instant::now(), chain.identity()));
        Some(chain)
    }
}

fn deploy(bytes: &[u8], dest: &Path) {
    let tmp = dest.with_file_name(".stamp.wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// The component with a custom section appended: the same plugin, a different file (content hash),
/// so the host has never compiled it.
fn variant(component: &[u8], n: u32) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            out.push(if v == 0 { byte } else { byte | 0x80 });
            if v == 0 {
                break;
            }
        }
    }
    let name = b"cdc-host-bench-variant";
    let mut section = Vec::new();
    leb(name.len(), &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(&n.to_le_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section
    leb(section.len(), &mut out);
    out.extend_from_slice(&section);
    out
}

#[derive(Default)]
struct Stats {
    latency_ms: Vec<f64>,
    around: Vec<f64>,
    worst: Vec<f64>,
}

impl Stats {
    fn report(&self, baseline: f64) -> Value {
        let mut sorted = self.latency_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        json!({
            "file_to_active_ms": {
                "min": round1(sorted[0]),
                "median": round1(percentile(&sorted, 0.5)),
                "max": round1(*sorted.last().unwrap()),
                "all": self.latency_ms.iter().map(|x| round1(*x)).collect::<Vec<_>>(),
            },
            "throughput_around_swap_vs_steady": (mean(&self.around) / baseline * 1000.0).round() / 1000.0,
            "worst_window_vs_steady": (mean(&self.worst) / baseline * 1000.0).round() / 1000.0,
        })
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// (a) and (b): swaps while the pipeline runs flat out.
fn swaps_under_load(swaps: usize, work: &Path) -> Value {
    let plugins = work.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for p in ["name-concat", "location", "business-rules"] {
        std::fs::copy(repo().join(format!("plugins/{p}.wasm")), plugins.join(format!("{p}.wasm")))
            .expect("build the plugins first: scripts/build-plugins");
    }
    let read = |v: u32| {
        std::fs::read(repo().join(format!("tests/plugins/stamp-v{v}.wasm")))
            .expect("build the plugins first: scripts/build-plugins")
    };
    let (v1, v2) = (read(1), read(2));
    std::fs::write(plugins.join("stamp.wasm"), &v1).unwrap();

    let mut cfg = Config::shipped_default();
    cfg.plugins.dir = plugins.clone();
    cfg.plugins.cache_dir = Some(work.join("cache"));
    cfg.catalog.warehouse = work.join("warehouse");
    cfg.chain.push(ChainEntry { plugin: "stamp".into(), config: Default::default(), on_quarantine: None });
    let debounce_ms = cfg.plugins.debounce_ms;
    let batch_size = cfg.sink.batch_size;

    let metrics = Metrics::new();
    let options = pipeline::RunOptions::default();
    let stop = options.stop.clone();
    let (chain, reloader) = Reloader::start(ReloadOptions {
        config: cfg.clone(),
        config_file: None,
        reread: None,
        metrics: metrics.clone(),
        halt: Halt::new(stop.clone()),
    })
    .unwrap();
    let swap_marks = Arc::new(Mutex::new(Vec::new()));
    let batch_marks = Arc::new(Mutex::new(Vec::new()));
    let source = Timed {
        inner: FileSource::from_reader("bench", Endless { data: Arc::new(generated_events(50_000)), pos: 0 }),
        marks: batch_marks.clone(),
    };
    let options = pipeline::RunOptions {
        updates: Some(Box::new(Recorder { inner: reloader, swaps: swap_marks.clone() })),
        ..options
    };
    let started = Instant::now();
    let runner = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(pipeline::run(&cfg, source, chain, &Metrics::new(), options)).unwrap()
    });

    std::thread::sleep(Duration::from_secs(4)); // steady state
    let mut landed = Vec::new();
    for i in 0..swaps {
        let bytes = if i % 2 == 0 { variant(&v2, i as u32) } else { v1.clone() };
        let t = Instant::now();
        deploy(&bytes, &plugins.join("stamp.wasm"));
        landed.push(t);
        let deadline = t + Duration::from_secs(30);
        while swap_marks.lock().unwrap().len() < i + 1 {
            assert!(Instant::now() < deadline, "swap {} did not happen", i + 1);
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(2_500));
    }
    stop.store(true, Ordering::SeqCst);
    let summary = runner.join().unwrap();
    let swapped = swap_marks.lock().unwrap().clone();
    let marks = batch_marks.lock().unwrap().clone();

    // Events per window, by the time each batch was read.
    let end = marks.last().map(|(t, _)| *t).unwrap();
    let window_of = |t: Instant| (t.duration_since(started).as_secs_f64() / WINDOW.as_secs_f64()) as usize;
    let windows = window_of(end);
    let mut per_window = vec![0usize; windows + 1];
    for (t, n) in &marks {
        per_window[window_of(*t)] += n;
    }
    let rate = |w: usize| per_window[w] as f64 / WINDOW.as_secs_f64();
    // Steady state: after warm-up, away from any swap.
    let near_swap = |w: usize| {
        landed.iter().zip(&swapped).any(|(l, (s, _))| w + NEAR >= window_of(*l) && w <= window_of(*s) + NEAR)
    };
    let mut steady: Vec<f64> = (8..windows).filter(|w| !near_swap(*w)).map(rate).collect();
    steady.sort_by(f64::total_cmp);
    let baseline = percentile(&steady, 0.5);
    // Around each swap: from the file landing to 1 s after the new chain took over.
    let (mut new, mut known) = (Stats::default(), Stats::default());
    for (i, (l, (s, _))) in landed.iter().zip(&swapped).enumerate() {
        let stats = if i % 2 == 0 { &mut new } else { &mut known };
        stats.latency_ms.push(s.duration_since(*l).as_secs_f64() * 1000.0);
        let (a, b) = (window_of(*l), window_of(*s + Duration::from_secs(1)).min(windows));
        let events: usize = per_window[a..=b].iter().sum();
        stats.around.push(events as f64 / ((b - a + 1) as f64 * WINDOW.as_secs_f64()));
        stats.worst.push((a..=b).map(rate).fold(f64::INFINITY, f64::min));
    }
    let read: usize = marks.iter().map(|(_, n)| n).sum();
    assert_eq!(summary.records as usize, read, "every event read was processed");

    json!({
        "swaps": swaps,
        "chain": "name-concat, location, business-rules, stamp (stamp swapped between v1 and v2)",
        "batch_size": batch_size,
        "debounce_ms": debounce_ms,
        "steady_events_per_second": baseline.round(),
        "window_ms": WINDOW.as_millis() as u64,
        "around_swap": "from the file landing to 1 s after the new chain took over",
        "new_component": new.report(baseline),
        "known_component": known.report(baseline),
        "events": summary.records,
        "rows_committed": summary.rows_committed,
        "commits": summary.commits,
        "seconds": round1(summary.seconds),
    })
}

/// Spawns the binary on stdin input and returns the time until its chain is loaded and watched.
fn time_to_ready(work: &Path, cache: &Path) -> (f64, BTreeMap<String, String>) {
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cdc-host"))
        .args(["--plugins", repo().join("plugins").to_str().unwrap(), "--input", "-", "--log-json"])
        .args(["--warehouse", work.join("cold-warehouse").to_str().unwrap()])
        .env("XDG_CACHE_HOME", cache)
        .env("CDC_HOST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cache_status = BTreeMap::new();
    let mut ready = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap_or(Value::Null);
        let f = &v["fields"];
        if f["message"] == "loaded plugin" {
            let name = f["plugin"].as_str().unwrap_or("").split('@').next().unwrap_or("").to_string();
            cache_status
                .insert(name, format!("{} ({} ms)", f["cache"].as_str().unwrap_or(""), f["compile_ms"]));
        }
        if f["message"].as_str().is_some_and(|m| m.starts_with("hot reload: watching")) {
            ready = Some(t.elapsed().as_secs_f64() * 1000.0);
            break;
        }
    }
    drop(child.stdin.take());
    let _ = child.wait();
    (ready.expect("the host did not get ready"), cache_status)
}

/// Wall time of `cdc-host plugins` (load and list the chain, then exit).
fn time_plugins_command(cache: &Path) -> f64 {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cdc-host"))
        .args(["plugins", "--plugins", repo().join("plugins").to_str().unwrap()])
        .env("XDG_CACHE_HOME", cache)
        .env("CDC_HOST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64() * 1000.0
}

/// (c): cold starts with an empty and with a warm compile cache.
fn cold_start(work: &Path) -> Value {
    let cache = work.join("cold-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let (uncached, uncached_status) = time_to_ready(work, &cache);
    let mut warm = Vec::new();
    let mut warm_status = BTreeMap::new();
    for _ in 0..5 {
        let (ms, status) = time_to_ready(work, &cache);
        warm.push(ms);
        warm_status = status;
    }
    warm.sort_by(f64::total_cmp);
    let mut plugins_cmd: Vec<f64> = (0..5).map(|_| time_plugins_command(&cache)).collect();
    plugins_cmd.sort_by(f64::total_cmp);
    json!({
        "plugins": 3,
        "to_chain_ready_ms_cached": { "median": round1(percentile(&warm, 0.5)), "max": round1(*warm.last().unwrap()) },
        "to_chain_ready_ms_empty_cache": round1(uncached),
        "plugins_command_ms_cached": { "median": round1(percentile(&plugins_cmd, 0.5)), "max": round1(*plugins_cmd.last().unwrap()) },
        "per_plugin_cached": warm_status,
        "per_plugin_empty_cache": uncached_status,
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let swaps: usize = std::env::var("CDC_BENCH_SWAPS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let work = repo().join("target/bench/hot-reload");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    eprintln!("(a, b) {swaps} swaps while the pipeline runs at full speed ...");
    let under_load = swaps_under_load(swaps, &work);
    eprintln!("(c) cold start with cached and uncached plugins ...");
    let cold = cold_start(&work);

    let report = json!({ "swap_under_load": under_load, "cold_start": cold });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    std::fs::write(repo().join("target/bench/hot_reload.json"), text).unwrap();
    let _ = std::fs::remove_dir_all(&work);
}
