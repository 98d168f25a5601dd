//! Kafka benchmark against the local stack (`scripts/stack up` first; run in release:
//! `cargo bench -p cdc-host --bench kafka`).
//!
//! (a) Drain: pre-loads 1M realistic Debezium records (`scripts/generate-stream`) into a fresh 4-partition
//!     topic and measures the host draining it in batch mode (events/s, peak RSS), then the same
//!     stream from the file in the same run, and the ratio of the two rates.
//! (b) Freshness: drives a steady 5k changes/s through PostgreSQL → Debezium → Kafka into a streaming
//!     host and reports PostgreSQL commit → row visible in Iceberg (the snapshot that holds it), p50/p95.
//!
//! `CDC_BENCH_EVENTS` (default 1,000,000; 0 skips (a)), `CDC_BENCH_FRESHNESS_SECONDS` (default 60; 0 skips it),
//! `CDC_BENCH_TABLE_MODE` (`append` or `mirror`, for (b); its config is reported beside its figures). Results go to
//! `target/bench/kafka.json`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{repo, run_host, stack_env};

fn drain(n: usize) -> Value {
    let brokers = stack_env("KAFKA_BOOTSTRAP_SERVERS");
    let input = support::realistic_stream(n);
    let topic = format!("bench-drain-{}", std::process::id());
    let t = Instant::now();
    support::load_topic(&brokers, &topic, &input);
    eprintln!("loaded in {:.1}s; draining in batch mode ...", t.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    let plugins = repo().join("plugins");
    let (secs, peak, stdout) = support::drain_topic(dir.path(), &brokers, &topic);
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    // The same stream from the file, in the same run, for the ratio.
    let file_wh = dir.path().join("file-wh");
    let (file_secs, file_peak, file_stdout) = run_host(
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--warehouse",
            file_wh.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
        dir.path(),
    );
    let file: Value = serde_json::from_str(&file_stdout).unwrap();
    let kafka_rate = summary["records"].as_f64().unwrap() / secs;
    let file_rate = file["records"].as_f64().unwrap() / file_secs;
    serde_json::json!({
        "records": summary["records"],
        "rows_committed": summary["rows_committed"],
        "seconds_wall": secs,
        "events_per_second_wall": kafka_rate.round(),
        "events_per_second_pipeline": summary["events_per_second"].as_f64().unwrap().round(),
        "peak_rss_mb": peak.round(),
        "file_events_per_second_wall": file_rate.round(),
        "file_peak_rss_mb": file_peak.round(),
        "kafka_vs_file": (kafka_rate / file_rate * 100.0).round() / 100.0,
        "stage_seconds": summary["stage_seconds"],
        "file_stage_seconds": file["stage_seconds"],
    })
}

/// `CDC_BENCH_TABLE_MODE`: the table mode of the freshness run (`append`, default, or `mirror`).
fn table_mode() -> String {
    std::env::var("CDC_BENCH_TABLE_MODE").unwrap_or_else(|_| "append".into())
}

fn freshness(seconds: u64) -> Value {
    let brokers = stack_env("KAFKA_BOOTSTRAP_SERVERS");
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = dir.path().join("cdc-host.toml");
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    std::fs::write(
        &cfg,
        // The shipped configuration, except that only the rows this run drives count: what earlier
        // runs left in the topic is skipped.
        shipped.replace("auto_offset_reset = \"earliest\"", "auto_offset_reset = \"latest\""),
    )
    .unwrap();
    let plugins = repo().join("plugins");
    let mut host = Command::new(env!("CARGO_BIN_EXE_cdc-host"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--bootstrap-servers",
            &brokers,
            "--group-id",
            &format!("fresh-{}", std::process::id()),
            "--table-mode",
            &table_mode(),
        ])
        .current_dir(dir.path())
        // `CDC_HOST_LOG=info` shows each commit and maintenance run in target/bench/freshness-host.log.
        .env("CDC_HOST_LOG", std::env::var("CDC_HOST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(repo().join("target/bench/freshness-host.log")).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let tag = format!("fresh{}", std::process::id());
    // 500 rows every 100 ms, each its own transaction: 5k changes/s.
    let sql = format!(
        "DO $$ BEGIN FOR i IN 1..{} LOOP \
           INSERT INTO customers (email, first_name, last_name, city, country, lifetime_value, registration_date, created_at, notes) \
           SELECT '{tag}-' || i || '-' || g || '@example.com', 'F', 'L', 'Oslo', 'NO', 1.00, DATE '2024-01-01', clock_timestamp(), '{tag}' \
           FROM generate_series(1, 500) g; COMMIT; PERFORM pg_sleep(greatest(0, 0.1 - extract(epoch from clock_timestamp() - now()))); \
         END LOOP; END $$;",
        seconds * 10
    );
    eprintln!("driving 5k changes/s through PostgreSQL for {seconds}s ...");
    let mut drive =
        Command::new(repo().join("scripts/stack")).args(["psql", "-q", "-c", &sql]).spawn().unwrap();
    // Maintenance expires old snapshots while the host runs: the rows' first snapshots are read
    // every few seconds, before they go (tests/freshness.py --state).
    let state = dir.path().join("freshness-state.json");
    let python = repo().join(".venv/bin/python");
    let measure = || {
        Command::new(&python)
            .arg(repo().join("tests/freshness.py"))
            .args(["--warehouse", wh.to_str().unwrap(), "--table", "analytics.customers_analytics"])
            .args(["--notes", &tag, "--state", state.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let status = loop {
        if let Some(status) = drive.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_secs(8));
        measure();
    };
    assert!(status.success());
    std::thread::sleep(Duration::from_secs(10));
    let _ = Command::new("kill").args(["-TERM", &host.id().to_string()]).status();
    let _ = host.wait();
    let out = measure();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["config"] = serde_json::json!({
        "table_mode": table_mode(),
        "config": "shipped (config/cdc-host.toml), auto_offset_reset = latest",
        "changes_per_second": 5000,
        "seconds": seconds,
    });
    report
}

fn main() {
    let n: usize = std::env::var("CDC_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let secs: u64 =
        std::env::var("CDC_BENCH_FRESHNESS_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let fresh = if secs == 0 { Value::Null } else { freshness(secs) };
    eprintln!("freshness: {fresh}");
    let drained = if n == 0 { Value::Null } else { drain(n) };
    let report = serde_json::json!({ "drain": drained, "freshness": fresh });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    std::fs::create_dir_all(repo().join("target/bench")).unwrap();
    std::fs::write(repo().join("target/bench/kafka.json"), text).unwrap();
}
