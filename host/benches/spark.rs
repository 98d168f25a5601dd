//! Spark job benchmark against the local stack (`scripts/stack up`, `scripts/spark-setup` and a
//! release `cdc_chain` wheel, `scripts/build-spark-wheel`, first; `cargo bench -p cdc-host --bench spark`).
//!
//! Loads 1M realistic Debezium records (`scripts/generate-stream`) into a fresh 4-partition topic, then
//! drains it three times, one after the other:
//! - the Spark job as the reference design writes it, without transforms (`--identity`): values decoded
//!   with Spark SQL, an identity `mapInArrow`, the same partitioned, sorted table layout,
//! - the Spark job with the WASM chain (`cdc_chain`: the host's decoding, the shipped chain, metadata
//!   columns; rows and dead letters),
//! - cdc-host in batch mode,
//!
//! and reports records/s (over the job's own processing time, Spark's start excluded, and over the
//! wall clock) and the peak RSS of each run's whole process tree (driver JVM and Python workers).
//! `CDC_BENCH_EVENTS` (default 1,000,000), `SPARK_MASTER` (default `local[2]`). Results go to
//! `target/bench/spark.json`.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{repo, stack_env};

/// Resident memory of `pid` and all its descendants, in MB.
fn tree_rss_mb(pid: u32) -> f64 {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // The parent pid is the second field after the command name's closing parenthesis.
        if let Some(ppid) = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
        {
            children.entry(ppid).or_default().push(p);
        }
    }
    let (mut total_kb, mut stack) = (0.0, vec![pid]);
    while let Some(p) = stack.pop() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/status"))
            && let Some(kb) =
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1))
        {
            total_kb += kb.parse::<f64>().unwrap_or(0.0);
        }
        stack.extend(children.get(&p).into_iter().flatten());
    }
    total_kb / 1024.0
}

/// Runs the Spark job with `--once` over `topic`; returns its summary with wall seconds and peak RSS.
fn spark_run(dir: &Path, topic: &str, namespace: &str, extra: &[&str]) -> Value {
    let started = Instant::now();
    let mut child = Command::new(repo().join("scripts/submit-spark-job"))
        .args(["--once", "--plugins", repo().join("plugins").to_str().unwrap()])
        .args(extra)
        .current_dir(repo())
        .env("KAFKA_BOOTSTRAP_SERVERS", stack_env("KAFKA_BOOTSTRAP_SERVERS"))
        .env("KAFKA_TOPIC", topic)
        .env("ICEBERG_WAREHOUSE", dir.join("wh"))
        .env("ICEBERG_NAMESPACE", namespace)
        .env("CHECKPOINT_LOCATION", dir.join(format!("checkpoint-{namespace}")))
        .env("SPARK_MASTER", std::env::var("SPARK_MASTER").unwrap_or_else(|_| "local[2]".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run scripts/submit-spark-job");
    let mut peak: f64 = 0.0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(tree_rss_mb(child.id()));
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Spark job failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).expect("the job's summary line");
    let mut summary: Value = serde_json::from_str(line).unwrap();
    summary["seconds_wall"] = Value::from(started.elapsed().as_secs_f64());
    summary["peak_rss_mb"] = Value::from(peak.round());
    summary
}

fn main() {
    let n: usize = std::env::var("CDC_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let brokers = stack_env("KAFKA_BOOTSTRAP_SERVERS");
    let input = support::realistic_stream(n);
    let topic = format!("bench-spark-{}", std::process::id());
    support::load_topic(&brokers, &topic, &input);
    let records =
        std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&input).unwrap())).count();

    let dir = tempfile::tempdir().unwrap();
    eprintln!("Spark job, identity mapInArrow ...");
    let identity = spark_run(dir.path(), &topic, "identity", &["--identity"]);
    eprintln!("Spark job, WASM chain ...");
    let chain = spark_run(dir.path(), &topic, "chain", &[]);
    eprintln!("cdc-host, batch mode ...");
    let (host_secs, host_peak, stdout) = support::drain_topic(dir.path(), &brokers, &topic);
    let host: Value = serde_json::from_str(&stdout).unwrap();

    let rate = |secs: f64| (records as f64 / secs).round();
    let job = |s: &Value| {
        serde_json::json!({
            "records_per_second": rate(s["seconds"].as_f64().unwrap()),
            "records_per_second_wall": rate(s["seconds_wall"].as_f64().unwrap()),
            "seconds": s["seconds"],
            "seconds_wall": s["seconds_wall"],
            "rows": s["rows"],
            "dead_letters": s["dead_letters"],
            "batches": s["batches"],
            "peak_rss_mb": s["peak_rss_mb"],
        })
    };
    let (chain_rate, identity_rate) =
        (rate(chain["seconds"].as_f64().unwrap()), rate(identity["seconds"].as_f64().unwrap()));
    let result = serde_json::json!({
        "records": records,
        "spark_master": std::env::var("SPARK_MASTER").unwrap_or_else(|_| "local[2]".into()),
        "identity_map_in_arrow": job(&identity),
        "wasm_chain": job(&chain),
        "chain_vs_identity": (chain_rate / identity_rate * 100.0).round() / 100.0,
        "cdc_host": {
            "records_per_second_wall": rate(host_secs),
            "seconds_wall": host_secs,
            "rows": host["rows_committed"],
            "dead_letters": host["dead_letters"],
            "peak_rss_mb": host_peak.round(),
        },
        "chain_vs_cdc_host": (chain_rate / rate(host_secs) * 100.0).round() / 100.0,
    });
    let text = serde_json::to_string_pretty(&result).unwrap();
    println!("{text}");
    let out = repo().join("target/bench/spark.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, text).unwrap();
}
