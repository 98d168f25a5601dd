//! Throughput benchmark (run in release: `cargo bench -p cdc-host --bench throughput`).
//!
//! Generates ≥ 1M Debezium events from the shared fixtures (varying keys, names, amounts and dates) and
//! measures, on this machine:
//! (a) decode + the 3-plugin WASM chain, against decode + the same three transforms compiled natively
//!     into the host (same SDK code, same batches, no WebAssembly boundary), and decode alone;
//! (b) file → Iceberg end to end (events/s) and the peak RSS of that run (measured in a child process).
//!
//! (c) the same chain written in each SDK language (`plugins/<language>/`, built by
//!     `scripts/build-plugins`): decode + chain and end to end per language, its cost relative to the
//!     Rust chain, and each component's cold compile time and cached load time.
//!
//! `CDC_BENCH_EVENTS` sets the event count (default 1,000,000); `CDC_BENCH_LANGS` the languages of (c)
//! (default `rust c go python js`; empty skips it). Results are printed and written to
//! `target/bench/throughput.json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use base64::Engine;
use cdc_host::change::{DeadLetter, RawBatch};
use cdc_host::config::{Config, DecimalHandling};
use cdc_host::decode::Decoder;
use cdc_host::metrics::Metrics;
use cdc_host::pipeline;
use cdc_host::source::FileSource;
use cdc_host::transform::wit::wit_types as hw;
use cdc_host::transform::{CallError, Chain, Description, Runtime, Stage};
use cdc_sdk::{Runner, Transform, wit as sw};
use serde_json::Value;

const BATCH: usize = 8192;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Generates `n` events from the fixture templates into `path` (kept between runs).
fn generate(n: usize, path: &Path) {
    if path.exists() && std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false) {
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let dir = repo().join("../shared/fixtures/debezium/schemas_false__decimal_precise");
    let mut templates: Vec<Value> = Vec::new();
    for s in ["snapshot", "insert", "update", "update_lifetime_value_only", "delete", "add_column"] {
        for line in std::fs::read_to_string(dir.join(format!("{s}.ndjson"))).unwrap().lines() {
            templates.push(serde_json::from_str(line).unwrap());
        }
    }
    let first = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"];
    let last = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"];
    let cities =
        [("Seattle", "WA", "US"), ("Toronto", "ON", "CA"), ("Paris", "", "FR"), ("Austin", "TX", "US")];
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    for i in 0..n {
        let mut t = templates[i % templates.len()].clone();
        let id = (i + 1) as i64;
        if t["key"].is_object() {
            t["key"]["customer_id"] = id.into();
        }
        if let Some(after) = t["value"].get_mut("after").filter(|a| a.is_object()) {
            after["customer_id"] = id.into();
            after["email"] = format!("user{i}@example.com").into();
            after["first_name"] = first[i % first.len()].into();
            after["last_name"] = last[(i / 8) % last.len()].into();
            let (c, s, k) = cities[i % cities.len()];
            after["city"] = c.into();
            after["state"] = if s.is_empty() { Value::Null } else { s.into() };
            after["country"] = k.into();
            let unscaled = ((i as i64 * 7919) % 10_000_000) - if i % 97 == 0 { 20_000_000 } else { 0 };
            let bytes = unscaled.to_be_bytes();
            let skip = bytes.iter().take(7).take_while(|b| **b == 0 || **b == 0xff).count();
            let trimmed = if skip > 0 && ((bytes[skip] & 0x80 != 0) != (bytes[skip - 1] == 0xff)) {
                &bytes[skip - 1..]
            } else {
                &bytes[skip..]
            };
            after["lifetime_value"] = base64::engine::general_purpose::STANDARD.encode(trimmed).into();
            after["registration_date"] = (17000 + (i % 3000) as i64).into();
        }
        if let Some(before) = t["value"].get_mut("before").filter(|b| b.is_object()) {
            before["customer_id"] = id.into();
        }
        serde_json::to_writer(&mut out, &t).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

/// The same three transforms, compiled natively and run through the SDK's batch loop.
struct Native<T: Transform> {
    runner: Runner<T>,
    description: Description,
    name: String,
}

impl<T: Transform + Send> Native<T> {
    fn new(config: &[(&str, &str)]) -> Self {
        let config = cdc_sdk::Config::from_pairs(config.iter().copied());
        let runner = Runner::<T>::configure(&config).unwrap();
        let d = runner.description().to_wit();
        let host = hw::Description {
            name: d.name.clone(),
            version: d.version,
            reads: d.reads,
            reads_before: d.reads_before,
            writes: d
                .writes
                .into_iter()
                .map(|c| hw::ColumnDef { name: c.name, type_: to_host_type(c.type_), doc: c.doc })
                .collect(),
            removes: d.removes,
        };
        Self { runner, name: d.name, description: Description::from_wit(host).unwrap() }
    }
}

fn to_host_type(t: sw::ColumnType) -> hw::ColumnType {
    use hw::ColumnType as H;
    use sw::ColumnType as S;
    match t {
        S::Boolean => H::Boolean,
        S::Int32 => H::Int32,
        S::Int64 => H::Int64,
        S::Float64 => H::Float64,
        S::Text => H::Text,
        S::Bytes => H::Bytes,
        S::Decimal(d) => H::Decimal(hw::DecimalType { precision: d.precision, scale: d.scale }),
        S::Date => H::Date,
        S::Timestamp => H::Timestamp,
        S::Timestamptz => H::Timestamptz,
        S::Json => H::Json,
    }
}

impl<T: Transform + Send> Stage for Native<T> {
    fn description(&self) -> &Description {
        &self.description
    }
    fn identity(&self) -> String {
        format!("{}@native", self.name)
    }
    fn origin(&self) -> String {
        "native".into()
    }
    fn process(&mut self, batch: hw::Batch) -> Result<hw::Output, CallError> {
        let out = self.runner.process(&to_sdk_batch(batch));
        Ok(from_sdk_output(out))
    }
}

// The host and the SDK generate the same WIT types from the same file; these move the buffers across
// (no copy), which is what a native transform linked into the host would see.
fn to_sdk_values(v: hw::ColumnValues) -> sw::ColumnValues {
    use hw::ColumnValues as H;
    use sw::ColumnValues as S;
    let var = |a: hw::VarArray| sw::VarArray { offsets: a.offsets, data: a.data };
    match v {
        H::Boolean(x) => S::Boolean(x),
        H::Int32(x) => S::Int32(x),
        H::Int64(x) => S::Int64(x),
        H::Float64(x) => S::Float64(x),
        H::Text(a) => S::Text(var(a)),
        H::Bytes(a) => S::Bytes(var(a)),
        H::Decimal(d) => S::Decimal(sw::DecimalArray {
            type_: sw::DecimalType { precision: d.type_.precision, scale: d.type_.scale },
            unscaled: d.unscaled,
        }),
        H::Date(x) => S::Date(x),
        H::Timestamp(x) => S::Timestamp(x),
        H::Timestamptz(x) => S::Timestamptz(x),
        H::Json(a) => S::Json(var(a)),
    }
}

fn from_sdk_values(v: sw::ColumnValues) -> hw::ColumnValues {
    use hw::ColumnValues as H;
    use sw::ColumnValues as S;
    let var = |a: sw::VarArray| hw::VarArray { offsets: a.offsets, data: a.data };
    match v {
        S::Boolean(x) => H::Boolean(x),
        S::Int32(x) => H::Int32(x),
        S::Int64(x) => H::Int64(x),
        S::Float64(x) => H::Float64(x),
        S::Text(a) => H::Text(var(a)),
        S::Bytes(a) => H::Bytes(var(a)),
        S::Decimal(d) => H::Decimal(hw::DecimalArray {
            type_: hw::DecimalType { precision: d.type_.precision, scale: d.type_.scale },
            unscaled: d.unscaled,
        }),
        S::Date(x) => H::Date(x),
        S::Timestamp(x) => H::Timestamp(x),
        S::Timestamptz(x) => H::Timestamptz(x),
        S::Json(a) => H::Json(var(a)),
    }
}

fn to_sdk_batch(b: hw::Batch) -> sw::Batch {
    let cols = |cs: Vec<hw::Column>| {
        cs.into_iter()
            .map(|c| sw::Column { name: c.name, present: c.present, values: to_sdk_values(c.values) })
            .collect()
    };
    sw::Batch {
        ops: b
            .ops
            .into_iter()
            .map(|o| match o {
                hw::Operation::Create => sw::Operation::Create,
                hw::Operation::Update => sw::Operation::Update,
                hw::Operation::Delete => sw::Operation::Delete,
                hw::Operation::Read => sw::Operation::Read,
                hw::Operation::Truncate => sw::Operation::Truncate,
            })
            .collect(),
        sources: b
            .sources
            .into_iter()
            .map(|s| sw::SourceInfo {
                table: s.table,
                lsn: s.lsn,
                txid: s.txid,
                ts_ms: s.ts_ms,
                snapshot: s.snapshot,
            })
            .collect(),
        tables: b.tables.into_iter().map(|t| sw::TableRef { schema: t.schema, table: t.table }).collect(),
        after: cols(b.after),
        before: cols(b.before),
    }
}

fn from_sdk_output(o: sw::Output) -> hw::Output {
    hw::Output {
        outcomes: o
            .outcomes
            .into_iter()
            .map(|x| match x {
                sw::Outcome::Keep => hw::Outcome::Keep,
                sw::Outcome::Drop => hw::Outcome::Drop,
                sw::Outcome::Reject(r) => hw::Outcome::Reject(r),
            })
            .collect(),
        writes: o
            .writes
            .into_iter()
            .map(|c| hw::Column { name: c.name, present: c.present, values: from_sdk_values(c.values) })
            .collect(),
    }
}

fn native_chain() -> Chain {
    Chain::from_stages(vec![
        Box::new(Native::<name_concat::NameConcat>::new(&[])),
        Box::new(Native::<location::Location>::new(&[])),
        Box::new(Native::<business_rules::BusinessRules>::new(&[])),
    ])
}

fn read_batches(path: &Path) -> Vec<RawBatch> {
    let mut src = FileSource::open(path).unwrap();
    let mut out = Vec::new();
    loop {
        let mut raw = RawBatch::default();
        if !src.read_batch(&mut raw, BATCH).unwrap() {
            return out;
        }
        out.push(raw);
    }
}

fn declared() -> std::collections::HashMap<String, cdc_host::schema::ColType> {
    Config::shipped_default()
        .table
        .columns
        .iter()
        .map(|c| (c.name.clone(), cdc_host::schema::parse_type(&c.ty).unwrap()))
        .collect()
}

/// Events per second for decode (+ chain, if any), best of `runs`.
fn measure(batches: &[RawBatch], chain: &mut Option<Chain>, runs: usize) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut kept = 0;
    let events: usize = batches.iter().map(RawBatch::len).sum();
    for _ in 0..runs {
        let mut decoder = Decoder::new(declared(), DecimalHandling::Precise);
        let t = Instant::now();
        kept = 0;
        for raw in batches {
            let d = decoder.decode(raw);
            let mut batch = d.batch;
            let mut dead: Vec<DeadLetter> = d.dead_letters;
            if let Some(c) = chain.as_mut() {
                c.apply(&mut batch, &mut dead);
            }
            kept += batch.len() as u64;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    (events as f64 / best, kept)
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        })
        .unwrap_or(0)
}

fn e2e_child(input: &Path, warehouse: &Path, plugins: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = Config::shipped_default();
    cfg.plugins.dir = plugins.to_path_buf();
    cfg.catalog.warehouse = warehouse.to_path_buf();
    let summary =
        rt.block_on(pipeline::run_file(&cfg, FileSource::open(input).unwrap(), &Metrics::new())).unwrap();
    println!(
        "{}",
        serde_json::json!({
            "events": summary.events,
            "rows": summary.rows_committed,
            "seconds": summary.seconds,
            "events_per_second": summary.events_per_second,
            "commits": summary.commits,
            "data_files": summary.data_files,
            "peak_rss_mb": vm_hwm_kb() as f64 / 1024.0,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--e2e-child") {
        e2e_child(Path::new(&args[i + 1]), Path::new(&args[i + 2]), Path::new(&args[i + 3]));
        return;
    }
    let n: usize = std::env::var("CDC_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = repo().join("target/bench");
    let input = dir.join(format!("events-{n}.ndjson"));
    eprintln!("generating {n} events into {} ...", input.display());
    generate(n, &input);
    let batches = read_batches(&input);
    let events: usize = batches.iter().map(RawBatch::len).sum();

    eprintln!("(a) decode only / + native chain / + WASM chain ...");
    let (decode_only, _) = measure(&batches, &mut None, 3);
    let mut native = Some(native_chain());
    let (native_eps, native_kept) = measure(&batches, &mut native, 3);
    let mut cfg = Config::shipped_default();
    cfg.plugins.dir = repo().join("plugins");
    let mut wasm = Some(pipeline::load_chain(&cfg).expect("build the plugins first: scripts/build-plugins"));
    let (wasm_eps, wasm_kept) = measure(&batches, &mut wasm, 3);
    assert_eq!(native_kept, wasm_kept, "native and WASM chains must keep the same events");

    let languages = per_language(&batches, &input, &dir, decode_only);
    drop(batches);

    eprintln!("(b) file -> Iceberg end to end (child process) ...");
    let e2e = end_to_end(&input, &dir, &repo().join("plugins"));

    let report = serde_json::json!({
        "events": events,
        "batch_size": BATCH,
        "decode_only_events_per_second": decode_only.round(),
        "decode_native_chain_events_per_second": native_eps.round(),
        "decode_wasm_chain_events_per_second": wasm_eps.round(),
        "wasm_cost_vs_native": (native_eps / wasm_eps * 1000.0).round() / 1000.0,
        "chain_only_ns_per_event_native": (1e9 / native_eps - 1e9 / decode_only).round(),
        "chain_only_ns_per_event_wasm": (1e9 / wasm_eps - 1e9 / decode_only).round(),
        "kept_events": wasm_kept,
        "end_to_end": e2e,
        "languages": languages,
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    std::fs::write(dir.join("throughput.json"), text).unwrap();
}

/// File -> Iceberg with the chain in `plugins`, in a child process (for its peak RSS).
fn end_to_end(input: &Path, dir: &Path, plugins: &Path) -> Value {
    let wh = dir.join("warehouse");
    let _ = std::fs::remove_dir_all(&wh);
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--e2e-child", input.to_str().unwrap(), wh.to_str().unwrap(), plugins.to_str().unwrap()])
        .env("CDC_HOST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (c): per language, decode + chain events/s (best of 2), the cost relative to the Rust chain, end to
/// end events/s, and per component the cold compile time (no cache) and the cached load time.
fn per_language(batches: &[RawBatch], input: &Path, dir: &Path, decode_only: f64) -> Value {
    let langs = std::env::var("CDC_BENCH_LANGS").unwrap_or_else(|_| "rust c go python js".into());
    // Chain-only cost is the difference to decoding alone: take the best decode-only figure seen.
    let decode_only = decode_only.max(measure(batches, &mut None, 3).0);
    let mut out = serde_json::Map::new();
    let mut rust = None;
    for lang in langs.split_whitespace() {
        let plugins = repo().join("plugins").join(lang);
        if !plugins.join("business-rules.wasm").is_file() {
            eprintln!("(c) {lang}: plugins/{lang} not built, skipped (scripts/build-plugins)");
            continue;
        }
        eprintln!("(c) {lang}: compile, decode + chain, end to end ...");
        let cache = dir.join(format!("cache-{lang}"));
        let _ = std::fs::remove_dir_all(&cache);
        let mut components = serde_json::Map::new();
        for p in ["name-concat", "location", "business-rules"] {
            let file = plugins.join(format!("{p}.wasm"));
            let cold = Runtime::new(None).unwrap().compile(&file).unwrap().load_time;
            let cached_rt = Runtime::new(Some(cache.clone())).unwrap();
            cached_rt.compile(&file).unwrap();
            let cached = cached_rt.compile(&file).unwrap();
            assert_eq!(cached.cache.to_string(), "hit");
            components.insert(
                p.into(),
                serde_json::json!({
                    "bytes": std::fs::metadata(&file).unwrap().len(),
                    "cold_compile_ms": cold.as_millis(),
                    "cached_load_ms": (cached.load_time.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
                }),
            );
        }
        let mut cfg = Config::shipped_default();
        cfg.plugins.dir = plugins.clone();
        cfg.plugins.cache_dir = Some(cache);
        let mut chain = Some(pipeline::load_chain(&cfg).unwrap());
        let (eps, _) = measure(batches, &mut chain, 2);
        let chain_ns = 1e9 / eps - 1e9 / decode_only;
        let (rust_eps, rust_ns) = *rust.get_or_insert((eps, chain_ns));
        let e2e = end_to_end(input, dir, &plugins);
        out.insert(
            lang.into(),
            serde_json::json!({
                "decode_chain_events_per_second": eps.round(),
                "decode_chain_vs_rust": (rust_eps / eps * 100.0).round() / 100.0,
                "chain_only_ns_per_event": chain_ns.round(),
                "chain_cost_vs_rust": (chain_ns / rust_ns * 100.0).round() / 100.0,
                "end_to_end_events_per_second": e2e["events_per_second"],
                "components": components,
            }),
        );
    }
    Value::Object(out)
}
