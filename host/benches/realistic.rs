//! End-to-end benchmark on realistic records (run in release: `cargo bench -p cdc-host --bench
//! realistic`).
//!
//! The stream comes from `scripts/generate-stream`: 1M Debezium records (~850 bytes, every column
//! filled, non-ASCII names, some long notes, ~340 month partitions; 70 % creates, 25 % updates of
//! live keys, 5 % deletes with tombstones). Measured, each with the shipped configuration:
//! (a) file → append table: records/s and peak RSS;
//! (b) file → mirror table: records/s and peak RSS;
//! (c) `cdc-host maintain` on that mirror, then a full pyiceberg scan against a freshly written
//!     table with the same rows;
//! (d) a mirror holding 1M live keys (a creates-only stream) restarted: seconds from start to its
//!     first commit (the key index is rebuilt from the table first);
//! (e) file → append table on the same kind of stream with its dates spread over 1, 336 and 3,000
//!     months: peak RSS should not grow with the number of partitions.
//!
//! `CDC_BENCH_EVENTS` sets the record count (default 1,000,000), `CDC_BENCH_REPEAT` how many times
//! (a) and (b) run, alternating (default 3; the median and ranges are reported). Results are printed
//! and written to `target/bench/realistic.json`.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::{repo, run_host};

fn generate(out: &Path, records: usize, extra: &[&str]) {
    let status = Command::new(repo().join("scripts/generate-stream"))
        .args(["--records", &records.to_string(), "--out", out.to_str().unwrap()])
        .args(extra)
        .status()
        .expect("run scripts/generate-stream");
    assert!(status.success());
}

/// The host's flags for a file run with the shipped config and chain.
fn host_args(input: &Path, warehouse: &Path, mode: &str) -> Vec<String> {
    let flags = [
        ("--config", repo().join("config/cdc-host.toml")),
        ("--plugins", repo().join("plugins")),
        ("--input", input.to_path_buf()),
        ("--warehouse", warehouse.to_path_buf()),
    ];
    let mut args: Vec<String> =
        flags.iter().flat_map(|(f, p)| [f.to_string(), p.to_string_lossy().into_owned()]).collect();
    args.extend(["--table-mode".to_string(), mode.to_string()]);
    args
}

/// One file run: records/s (from the run's own summary) and peak RSS.
fn file_run(input: &Path, warehouse: &Path, mode: &str) -> Value {
    let args = host_args(input, warehouse, mode);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (wall, peak, stdout) = run_host(&args, &repo());
    let summary: Value = serde_json::from_str(&stdout).expect("summary");
    json!({
        "mode": mode,
        "records": summary["records"],
        "records_per_second": (summary["records"].as_f64().unwrap() / summary["seconds"].as_f64().unwrap()).round(),
        "seconds": summary["seconds"],
        "wall_seconds": (wall * 100.0).round() / 100.0,
        "peak_rss_mb": peak.round(),
        "commits": summary["commits"],
        "data_files": summary["data_files"],
        "stage_seconds": summary["stage_seconds"],
    })
}

/// Runs of one case: the median records/s and the ranges of records/s and peak RSS, with each run.
fn summarize(runs: Vec<Value>) -> Value {
    let mut rates: Vec<f64> = runs.iter().map(|r| r["records_per_second"].as_f64().unwrap()).collect();
    rates.sort_by(f64::total_cmp);
    let rss: Vec<f64> = runs.iter().map(|r| r["peak_rss_mb"].as_f64().unwrap()).collect();
    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    let min = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    json!({
        "records_per_second_median": rates[rates.len() / 2],
        "records_per_second_range": [min(&rates), max(&rates)],
        "peak_rss_mb_range": [min(&rss), max(&rss)],
        "runs": runs,
    })
}

fn python() -> String {
    repo().join(".venv/bin/python").to_str().unwrap().to_string()
}

fn main() {
    let n: usize = std::env::var("CDC_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let bench = repo().join("target/bench");
    std::fs::create_dir_all(&bench).unwrap();
    let stream = bench.join(format!("realistic-{n}.ndjson"));
    generate(&stream, n, &[]);
    let dir = tempfile::tempdir_in(&bench).unwrap();

    // (a) and (b), alternating, `CDC_BENCH_REPEAT` times each (single runs vary by ±15 % here).
    let repeat: usize =
        std::env::var("CDC_BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let (mut appends, mut mirrors) = (Vec::new(), Vec::new());
    for i in 0..repeat {
        let append = file_run(&stream, &dir.path().join(format!("append-{i}")), "append");
        eprintln!("append: {append}");
        appends.push(append);
        let mirror = file_run(&stream, &dir.path().join(format!("mirror-{i}")), "mirror");
        eprintln!("mirror: {mirror}");
        mirrors.push(mirror);
    }
    let mirror_wh = dir.path().join(format!("mirror-{}", repeat - 1));
    let (append, mirror) = (summarize(appends), summarize(mirrors));

    // (c) maintain, then scan against a fresh copy.
    let (maintain_seconds, _, _) =
        run_host(&["maintain", "--warehouse", mirror_wh.to_str().unwrap()], &repo());
    let out = Command::new(python())
        .arg(repo().join("host/benches/scan.py"))
        .args(["--warehouse", mirror_wh.to_str().unwrap(), "--table", "analytics.customers_analytics"])
        .output()
        .expect("run scan.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut scan: Value = serde_json::from_slice(&out.stdout).unwrap();
    scan["maintain_seconds"] = json!((maintain_seconds * 100.0).round() / 100.0);
    eprintln!("scan after maintain: {scan}");

    // (d) restart of a mirror holding n live keys.
    let creates = bench.join(format!("creates-{n}.ndjson"));
    generate(&creates, n, &["--creates", "1.0", "--deletes", "0", "--seed", "11"]);
    let keys_wh = dir.path().join("keys");
    let loaded = file_run(&creates, &keys_wh, "mirror");
    let more = dir.path().join("more.ndjson");
    generate(&more, 100, &["--first-key", &(n + 1).to_string(), "--creates", "1.0", "--deletes", "0"]);
    let args = host_args(&more, &keys_wh, "mirror");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (restart_seconds, restart_rss, _) = run_host(&args, &repo());
    let restart = json!({
        "live_keys": loaded["records"],
        "seconds_to_first_commit": (restart_seconds * 100.0).round() / 100.0,
        "peak_rss_mb": restart_rss.round(),
    });
    eprintln!("restart: {restart}");

    // (e) the same stream shape over 1, 336 and 3,000 month partitions.
    let mut by_partitions = Vec::new();
    for months in [1, 336, 3000] {
        let input = bench.join(format!("realistic-{n}-{months}m.ndjson"));
        generate(&input, n, &["--months", &months.to_string()]);
        let run = file_run(&input, &dir.path().join(format!("append-{months}m")), "append");
        eprintln!("append over {months} months: {run}");
        by_partitions.push(json!({ "months": months, "run": run }));
    }

    let report = json!({
        "config": "config/cdc-host.toml (shipped), release build",
        "append_by_partitions": by_partitions,
        "append": append,
        "mirror": mirror,
        "mirror_scan_after_maintain": scan,
        "mirror_restart": restart,
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    std::fs::write(bench.join("realistic.json"), text).unwrap();
}
