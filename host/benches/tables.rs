//! Several tables in one host (run in release: `cargo bench -p cdc-host --bench tables`).
//!
//! A realistic stream of 900k records (`scripts/generate-stream`) goes once into one table and once
//! split over three source tables of 300k records each (`customers`, `customers_b`, `customers_c`,
//! by key) into three tables of one host, each with the reference chain, the shipped configuration
//! otherwise: records/s of both and the ratio (target: three tables keep at least 80 % of one).
//! `CDC_BENCH_EVENTS` sets the record count (default 900,000); `CDC_BENCH_RUNS` the runs of each
//! (default 3). Results go to `target/bench/tables.json`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use support::{repo, run_host};

const TABLES: [&str; 3] = ["customers", "customers_b", "customers_c"];

/// The stream with each record moved to source table `TABLES[key % 3]` (its tombstone follows it).
fn split(stream: &Path, out: &Path) {
    let text = std::fs::read_to_string(stream).unwrap();
    let mut split = String::with_capacity(text.len() + text.len() / 50);
    for line in text.lines() {
        let key: u64 = line
            .split_once("\"customer_id\":")
            .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        let table = TABLES[(key % 3) as usize];
        if table == "customers" {
            split.push_str(line);
        } else {
            split.push_str(
                &line
                    .replace("\"postgres.public.customers\"", &format!("\"postgres.public.{table}\""))
                    .replace("\"table\":\"customers\"", &format!("\"table\":\"{table}\"")),
            );
        }
        split.push('\n');
    }
    std::fs::write(out, split).unwrap();
}

/// The shipped configuration with a `[[tables]]` entry like `[table]` for each other source table.
fn three_table_config(out: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let start = shipped.find("\n[table]\n").expect("[table]") + 1;
    let end = start + 1 + shipped[start + 1..].find("\n[").expect("next section");
    let table = &shipped[start..end];
    let mut text = shipped.clone();
    for t in &TABLES[1..] {
        text.push('\n');
        text.push_str(
            &table
                .replace("[table]", "[[tables]]")
                .replace("\"public.customers\"", &format!("\"public.{t}\""))
                .replace("\"customers_analytics\"", &format!("\"{t}_analytics\"")),
        );
    }
    let p = out.join("three-tables.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(config: &Path, input: &Path, warehouse: &Path) -> Value {
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--plugins",
        repo().join("plugins").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--warehouse",
        warehouse.to_str().unwrap(),
    ]
    .map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (wall, peak, stdout) = run_host(&args, &repo());
    let s: Value = serde_json::from_str(&stdout).expect("summary");
    let tables = s["tables"].as_array().map_or(1, Vec::len);
    json!({
        "tables": tables,
        "records": s["records"],
        "rows_committed": s["rows_committed"],
        "records_per_second": (s["records"].as_f64().unwrap() / s["seconds"].as_f64().unwrap()).round(),
        "wall_seconds": (wall * 100.0).round() / 100.0,
        "peak_rss_mb": peak.round(),
    })
}

fn main() {
    let n: usize = std::env::var("CDC_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(900_000);
    let runs: usize = std::env::var("CDC_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let bench = repo().join("target/bench");
    std::fs::create_dir_all(&bench).unwrap();
    let stream = bench.join(format!("realistic-{n}.ndjson"));
    let status = Command::new(repo().join("scripts/generate-stream"))
        .args(["--records", &n.to_string(), "--out", stream.to_str().unwrap()])
        .status()
        .expect("run scripts/generate-stream");
    assert!(status.success());
    let three = bench.join(format!("realistic-{n}-3-tables.ndjson"));
    split(&stream, &three);
    let dir = tempfile::tempdir_in(&bench).unwrap();
    let config = three_table_config(dir.path());
    let shipped = repo().join("config/cdc-host.toml");
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let r = run(&shipped, &stream, &dir.path().join(format!("one-{i}")));
        eprintln!("one table: {r}");
        one.push(r);
        let r = run(&config, &three, &dir.path().join(format!("three-{i}")));
        eprintln!("three tables: {r}");
        assert_eq!(r["tables"], 3, "{r}");
        many.push(r);
    }
    let median = |v: &[Value]| {
        let mut x: Vec<f64> = v.iter().map(|r| r["records_per_second"].as_f64().unwrap()).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let report = json!({
        "records": n,
        "one_table": one,
        "three_tables": many,
        "median_records_per_second": { "one_table": median(&one), "three_tables": median(&many) },
        "three_over_one": ((median(&many) / median(&one)) * 1000.0).round() / 1000.0,
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    std::fs::write(bench.join("tables.json"), text).unwrap();
}
