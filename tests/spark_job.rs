//! The Spark Structured Streaming job (`spark/cdc_spark_job.py` through `scripts/submit-spark-job`)
//! on the real stack: over a Kafka topic it writes exactly the rows and dead letters the host writes
//! from the same topic, a driver killed mid-stream (at chosen points and at a random moment) and
//! restarted on its checkpoint loses and duplicates nothing, and a plugin replaced while the job runs
//! takes effect between micro-batches, never inside one.
//!
//! Needs `scripts/spark-setup` and the `cdc_chain` wheel in .venv-spark (`scripts/build-spark-wheel`;
//! scripts/test builds both) and the local stack (`scripts/stack up`).

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The tests share the machine's two cores: one Spark job at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn brokers() -> String {
    stack_env().get("KAFKA_BOOTSTRAP_SERVERS").cloned().unwrap_or_else(|| {
        panic!("the local stack is not up: start it with `scripts/stack up` (scripts/test does)")
    })
}

/// A new topic of 4 partitions holding the records of an NDJSON stream. Returns how many records it
/// holds.
fn topic_with(name: &str, stream: &Path) -> usize {
    common::topic::load_topic(&brokers(), name, stream)
}

/// The host draining `topic` (batch mode) into `<namespace>.customers_analytics` of `wh`.
fn host_drains(dir: &Path, topic: &str, wh: &Path, namespace: &str) -> Value {
    let plugins = plugins_dir();
    host_ok_within(
        dir,
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--bootstrap-servers",
            &brokers(),
            "--topic",
            topic,
            "--group-id",
            &unique_name("spark-test-host"),
            "--mode",
            "batch",
            "--namespace",
            namespace,
        ],
        Duration::from_secs(300),
    )
}

/// One run of the job, in a process group of its own (a kill takes the driver and its workers).
struct Job {
    child: Child,
    log: PathBuf,
    out: PathBuf,
}

impl Job {
    fn start(
        dir: &Path,
        run: &str,
        topic: &str,
        wh: &Path,
        namespace: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Job {
        Self::start_with(dir, run, topic, wh, namespace, &plugins_dir(), args, env)
    }

    /// [`Job::start`] with another plugins directory.
    #[allow(clippy::too_many_arguments)]
    fn start_with(
        dir: &Path,
        run: &str,
        topic: &str,
        wh: &Path,
        namespace: &str,
        plugins: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Job {
        let log = dir.join(format!("{run}.log"));
        let out = dir.join(format!("{run}.out"));
        let child = Command::new(repo().join("scripts/submit-spark-job"))
            .args(["--plugins", plugins.to_str().unwrap()])
            .args(args)
            .current_dir(repo())
            .env("KAFKA_BOOTSTRAP_SERVERS", brokers())
            .env("KAFKA_TOPIC", topic)
            .env("ICEBERG_WAREHOUSE", wh)
            .env("ICEBERG_NAMESPACE", namespace)
            .env("CHECKPOINT_LOCATION", dir.join("checkpoint"))
            .env("SPARK_MASTER", "local[2]")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .expect("run scripts/submit-spark-job");
        Job { child, log, out }
    }

    /// Waits for the end; the exit status and the log.
    fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s, self.log_text());
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("the Spark job did not finish within {limit:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for a successful end; the JSON summary line it printed.
    fn summary(&mut self, limit: Duration) -> Value {
        let (status, log) = self.wait(limit);
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        assert!(status.success(), "the Spark job failed ({status}):\n{out}\n{log}");
        let line = out
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no summary:\n{out}\n{log}"));
        serde_json::from_str(line).unwrap()
    }

    /// SIGKILL to the whole process group (driver JVM and Python processes).
    fn kill(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }

    /// What it printed (spark-submit puts the Python driver's output on its stdout).
    fn log_text(&self) -> String {
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        out + &std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// Rows of a table as sorted JSON without `_ingestion_timestamp`; missing tables are empty.
fn table_rows(wh: &Path, table: &str) -> Vec<String> {
    try_read_table(wh, table).map(|t| comparable_rows(&t)).unwrap_or_default()
}

/// Snapshots the job committed to `table` so far.
fn job_snapshots(wh: &Path, table: &str) -> usize {
    try_read_table(wh, table)
        .map(|t| {
            t["snapshots"]
                .as_array()
                .map(|s| s.iter().filter(|s| s["summary"]["cdc-spark.batch"].is_string()).count())
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn assert_same_tables(wh: &Path, host_ns: &str, job_ns: &str) {
    for t in ["customers_analytics", "customers_analytics_dlq"] {
        let host = table_rows(wh, &format!("{host_ns}.{t}"));
        let job = table_rows(wh, &format!("{job_ns}.{t}"));
        assert!(!host.is_empty(), "the host wrote no rows to {t}");
        if host != job {
            let missing = host.iter().filter(|r| !job.contains(r)).count();
            let extra = job.len() as i64 - host.len() as i64 + missing as i64;
            panic!(
                "{t}: the job's {} rows differ from the host's {}: {missing} missing, {extra} extra",
                job.len(),
                host.len()
            );
        }
    }
}

#[test]
fn the_job_writes_what_the_host_writes_from_the_same_topic() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("stream.ndjson");
    generate_stream(&stream, 4000, &["--seed", "11"]);
    let topic = unique_name("spark-same");
    let records = topic_with(&topic, &stream);
    let wh = dir.path().join("wh");
    let host = host_drains(dir.path(), &topic, &wh, "host");

    let mut job = Job::start(dir.path(), "once", &topic, &wh, "job", &["--once"], &[]);
    let summary = job.summary(Duration::from_secs(600));
    assert_eq!(summary["rows"], host["rows_committed"], "job {summary}, host {host}");
    assert_eq!(summary["dead_letters"], host["dead_letters"], "job {summary}, host {host}");
    assert!(host["dead_letters"].as_u64().unwrap() > 0, "the stream holds rejected records: {host}");
    assert!(records > 4000, "tombstones are records too: {records}");
    assert_same_tables(&wh, "host", "job");
    let table = read_table(&wh, "job.customers_analytics");
    let chains: Vec<&Value> =
        table["snapshots"].as_array().unwrap().iter().map(|s| &s["summary"]["cdc-host.chain"]).collect();
    assert!(
        chains.iter().all(|c| c.as_str() == host["chain"].as_str()),
        "every snapshot names the host's chain {}: {chains:?}",
        host["chain"]
    );

    // A second run on the same checkpoint finds nothing new.
    let mut again = Job::start(dir.path(), "again", &topic, &wh, "job", &["--once"], &[]);
    let summary = again.summary(Duration::from_secs(300));
    assert_eq!(summary["rows"], 0, "{summary}");
    assert_same_tables(&wh, "host", "job");
}

#[test]
fn a_killed_driver_restarted_on_its_checkpoint_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("stream.ndjson");
    generate_stream(&stream, 6000, &["--seed", "12"]);
    let topic = unique_name("spark-kill");
    topic_with(&topic, &stream);
    let wh = dir.path().join("wh");
    host_drains(dir.path(), &topic, &wh, "host");
    let small = ["--max-offsets-per-trigger", "1000", "--trigger-interval", "1 second"];

    // Killed at chosen points of a micro-batch: after its rows are committed but before its dead
    // letters are, and after both but before Spark's checkpoint records the batch.
    for (run, point) in [("main", "after-rows:2"), ("both", "after-dead-letters:2")] {
        let mut job =
            Job::start(dir.path(), run, &topic, &wh, "job", &small, &[("CDC_SPARK_CRASH_AT", point)]);
        let (status, log) = job.wait(Duration::from_secs(600));
        assert!(
            !status.success() && log.contains("CDC_SPARK_CRASH_AT"),
            "{run}: the job did not crash at {point}:\n{log}"
        );
    }

    // Killed from outside at a moment of its own: once its first micro-batch has landed.
    let mut job = Job::start(dir.path(), "killed", &topic, &wh, "job", &small, &[]);
    let before = job_snapshots(&wh, "job.customers_analytics");
    let deadline = Instant::now() + Duration::from_secs(300);
    while job_snapshots(&wh, "job.customers_analytics") == before {
        assert!(Instant::now() < deadline, "no micro-batch landed:\n{}", job.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
    job.kill();

    let mut last = Job::start(dir.path(), "restart", &topic, &wh, "job", &["--once"], &[]);
    last.summary(Duration::from_secs(600));
    assert_same_tables(&wh, "host", "job");
}

/// Per snapshot of `table`, oldest first: the chain it records and how many rows of each
/// `_plugin_version` the table holds at that snapshot (read with pyiceberg).
fn versions_by_snapshot(wh: &Path, table: &str) -> Vec<(String, BTreeMap<String, u64>)> {
    let script = r#"
import json, sys
from pyiceberg.catalog.sql import SqlCatalog
wh, name = sys.argv[1], sys.argv[2]
t = SqlCatalog("iceberg", uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}").load_table(name)
out = []
for s in sorted(t.snapshots(), key=lambda s: s.sequence_number):
    col = t.scan(snapshot_id=s.snapshot_id, selected_fields=("_plugin_version",)).to_arrow().column(0).to_pylist()
    counts = {}
    for v in col:
        counts[str(v)] = counts.get(str(v), 0) + 1
    out.append([s.summary.additional_properties.get("cdc-host.chain", ""), counts])
print(json.dumps(out))
"#;
    let out = Command::new(python()).args(["-c", script, wh.to_str().unwrap(), table]).output().unwrap();
    assert!(out.status.success(), "pyiceberg: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_plugin_replaced_while_the_job_runs_applies_between_micro_batches() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(test_plugin("stamp-v1"), plugins.join("stamp.wasm")).unwrap();
    // The shipped table with a chain of one plugin that stamps its version on every row.
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let table_part = &shipped[..shipped.find("[[chain]]").expect("the shipped config lists its chain")];
    let config = dir.path().join("cdc-host.toml");
    // The columns the shipped plugins would fold away stay out of the table.
    let table_part = table_part.replace("evolve_schema = true", "evolve_schema = false");
    std::fs::write(&config, format!("{table_part}[[chain]]\nplugin = \"stamp\"\n")).unwrap();
    let stream = dir.path().join("stream.ndjson");
    generate_stream(&stream, 4000, &["--seed", "13"]);
    let topic = unique_name("spark-reload");
    topic_with(&topic, &stream);
    let wh = dir.path().join("wh");

    let args = ["--once", "--config", config.to_str().unwrap(), "--max-offsets-per-trigger", "400"];
    let mut job = Job::start_with(dir.path(), "reload", &topic, &wh, "job", &plugins, &args, &[]);
    let deadline = Instant::now() + Duration::from_secs(300);
    while job_snapshots(&wh, "job.customers_analytics") == 0 {
        assert!(Instant::now() < deadline, "no micro-batch landed:\n{}", job.log_text());
        assert!(
            job.child.try_wait().unwrap().is_none(),
            "the job ended before the swap:\n{}",
            job.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Swapped as a deployment does it: written beside, then renamed over the old file.
    std::fs::copy(test_plugin("stamp-v2"), plugins.join(".stamp.wasm.new")).unwrap();
    std::fs::rename(plugins.join(".stamp.wasm.new"), plugins.join("stamp.wasm")).unwrap();
    let summary = job.summary(Duration::from_secs(600));

    let snapshots = versions_by_snapshot(&wh, "job.customers_analytics");
    let mut before: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for (chain, counts) in &snapshots {
        // The rows this snapshot added all carry the version of the chain it records.
        let version = if chain.starts_with("stamp@1.0.0") { "1.0.0" } else { "2.0.0" };
        assert!(chain.starts_with(&format!("stamp@{version}")), "snapshot chain {chain}");
        for (v, n) in counts {
            let added = n - before.get(v).copied().unwrap_or(0);
            assert!(
                added == 0 || v == version,
                "a micro-batch of chain {chain} holds {added} rows stamped {v}"
            );
        }
        seen.insert(version);
        before = counts.clone();
    }
    assert_eq!(seen.len(), 2, "rows of both versions: {snapshots:?}");
    assert_eq!(before.values().sum::<u64>(), summary["rows"].as_u64().unwrap(), "{summary}");
}
