//! Hot reload and quarantine through the real binary: the chain is swapped while events stream in on
//! stdin (nothing lost or duplicated, every batch processed by exactly one chain), bad deployments are
//! rejected while the running chain keeps working, and plugins that keep failing are quarantined.
//! Tables are read back with pyiceberg.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TABLE: &str = "analytics.customers_analytics";
const DLQ: &str = "analytics.customers_analytics_dlq";
const VERSION_COLUMN: &str = "_plugin_version";

/// A Debezium insert (bare value envelope) of customer `id`.
fn event(id: u64) -> String {
    format!(
        r#"{{"before":null,"after":{{"customer_id":{id},"email":"c{id}@example.com"}},"source":{{"connector":"postgresql","ts_ms":1700000000000,"snapshot":"false","db":"shop","schema":"public","table":"customers","lsn":{id}}},"op":"c","ts_ms":1700000000000}}"#
    ) + "\n"
}

fn events(ids: std::ops::RangeInclusive<u64>) -> String {
    ids.map(event).collect()
}

/// Puts `src` at `dest` the way plugins should be deployed: copied next to it under a hidden name,
/// then renamed into place (atomic: the watcher never sees a partly written file).
fn deploy(src: &Path, dest: &Path) {
    let tmp = dest.with_file_name(format!(".{}.tmp", dest.file_name().unwrap().to_string_lossy()));
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

fn deploy_bytes(bytes: &[u8], dest: &Path) {
    let tmp = dest.with_file_name(format!(".{}.tmp", dest.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// A config with `chain`, a short debounce and the given `[plugins]` settings (replacing the shipped
/// lines that start with the same key), written atomically to `dir/cdc-host.toml`.
fn write_config(dir: &Path, chain: &str, settings: &[(&str, &str)]) -> PathBuf {
    let mut all = vec![("debounce_ms", "debounce_ms = 50")];
    all.extend_from_slice(settings);
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let written = config_with(&staging, chain, &all);
    let dest = dir.join("cdc-host.toml");
    deploy(&written, &dest);
    dest
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of one metric sample (`name{labels}`), 0 when absent.
/// The sum of the series of `sample` (`name` or `name{label="value",...}`) in a scrape, whatever
/// other labels they carry (a host routing to tables labels each table's series with `table`).
fn metric(text: &str, sample: &str) -> f64 {
    let (name, want) = match sample.split_once('{') {
        Some((n, l)) => (n, l.trim_end_matches('}').split(',').collect::<Vec<_>>()),
        None => (sample, Vec::new()),
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}').split(',').collect::<Vec<_>>()),
                None => (series, Vec::new()),
            };
            (n == name && want.iter().all(|w| labels.contains(w)))
                .then(|| value.trim().parse::<f64>().unwrap())
        })
        .sum()
}

/// Waits until the host processed `n` batches (so the worker waits for input at a batch boundary).
fn wait_batches(port: u16, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = scrape(port);
        if metric(&text, "cdc_host_batches_total") >= n as f64 {
            return;
        }
        assert!(Instant::now() < deadline, "fewer than {n} batches processed:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cdc-host` running with `--input -`, logging JSON lines that the test can wait for.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    logs: Receiver<Value>,
    seen: Vec<Value>,
}

impl Running {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let mut child = host_command(dir)
            .args(args)
            .args(["--input", "-", "--log-json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cdc-host");
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin, logs, seen: Vec::new() }
    }

    /// The host streaming stdin with `cfg`, `plugins`, batches of `batch` and metrics on `port`.
    fn streaming(dir: &Path, cfg: &Path, plugins: &Path, wh: &Path, batch: u64, port: u16) -> Self {
        Self::start(
            dir,
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--plugins",
                plugins.to_str().unwrap(),
                "--warehouse",
                wh.to_str().unwrap(),
                "--batch-size",
                &batch.to_string(),
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ],
        )
    }

    fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits (at most `timeout`) for a log line `pred` accepts, among lines not yet waited for.
    fn wait_log(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.logs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no log line {what} within {timeout:?}:\n{}", self.log_text())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("cdc-host exited before logging {what}:\n{}", self.log_text())
                }
            }
        }
    }

    fn log_text(&self) -> String {
        self.seen.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
    }

    /// Closes stdin (end of input) and waits for the exit: (success, summary or null, every log line).
    fn finish(mut self) -> (bool, Value, Vec<Value>) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("cdc-host did not exit after end of input:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        while let Ok(v) = self.logs.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(v);
        }
        (status.success(), serde_json::from_str(&out).unwrap_or(Value::Null), self.seen)
    }
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or("")
}

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v["fields"][name].as_str().unwrap_or("")
}

fn is_swap_to(v: &Value, identity_part: &str) -> bool {
    message(v) == "plugin chain swapped" && field(v, "to").contains(identity_part)
}

fn is_rejection(v: &Value, plugin: &str, reason: &str) -> bool {
    message(v).starts_with("plugin chain change rejected")
        && field(v, "plugin") == plugin
        && field(v, "error").contains(reason)
}

/// A working directory with `plugins/stamp.wasm` (version 1) and more test plugins beside it.
fn stamp_dir(extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(test_plugin("stamp-v1"), plugins.join("stamp.wasm")).unwrap();
    for p in extra {
        std::fs::copy(test_plugin(p), plugins.join(format!("{p}.wasm"))).unwrap();
    }
    (dir, plugins)
}

#[test]
fn chain_swaps_while_streaming_lose_and_duplicate_nothing() {
    const SWAPS: usize = 24;
    const MIN_EVENTS: u64 = 100_000;
    const BATCH: u64 = 500;
    const CHUNK: u64 = 250;
    // Events sent quickly per swap; between budgets a trickle keeps batches completing.
    const PER_SWAP: u64 = MIN_EVENTS / SWAPS as u64 + 1_000;

    let (dir, plugins) = stamp_dir(&[]);
    let cfg = write_config(dir.path(), "[[chain]]\nplugin = \"stamp\"\n", &[]);
    let wh = dir.path().join("wh");
    let port = free_port();
    let mut host = Running::streaming(dir.path(), &cfg, &plugins, &wh, BATCH, port);
    host.wait_log("about watching", Duration::from_secs(120), |v| {
        message(v).starts_with("hot reload: watching")
    });

    let swaps_seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut stdin = host.stdin.take().unwrap();
    let writer = {
        let (swaps_seen, done) = (swaps_seen.clone(), done.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut written = 0u64;
            // The last chain gets a few batches of its own too.
            let mut until = None;
            while until.is_none_or(|u| written < u) {
                assert!(started.elapsed() < Duration::from_secs(600), "the stream took too long");
                if until.is_none() && done.load(Ordering::SeqCst) {
                    until = Some(MIN_EVENTS.max(written + 4 * BATCH));
                }
                let budget = (swaps_seen.load(Ordering::SeqCst) as u64 + 1) * PER_SWAP;
                stdin.write_all(events(written + 1..=written + CHUNK).as_bytes()).unwrap();
                written += CHUNK;
                if written >= budget {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            stdin.flush().unwrap();
            written
        })
    };

    // The first chain gets batches of its own too.
    wait_batches(port, 2);
    let mut latencies = Vec::new();
    for i in 0..SWAPS {
        let version = if i % 2 == 0 { 2 } else { 1 };
        deploy(&test_plugin(&format!("stamp-v{version}")), &plugins.join("stamp.wasm"));
        let swap = host.wait_log(
            &format!("about swap {} to stamp v{version}", i + 1),
            Duration::from_secs(120),
            |v| is_swap_to(v, &format!("stamp@{version}.0.0#")),
        );
        latencies.push(swap["fields"]["latency_ms"].as_u64().unwrap());
        swaps_seen.fetch_add(1, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer");
    let (ok, summary, logs) = host.finish();
    assert!(ok, "cdc-host failed:\n{logs:?}");
    eprintln!("{written} events, {SWAPS} swaps, file-to-active latencies (ms): {latencies:?}");

    assert_eq!(summary["records"], written, "{summary}");
    assert_eq!(summary["rows_committed"], written, "{summary}");
    assert_eq!(summary["dead_letters"], 0, "{summary}");
    assert_eq!(logs.iter().filter(|v| message(v) == "plugin chain swapped").count(), SWAPS);
    assert!(!logs.iter().any(|v| message(v).starts_with("plugin chain change rejected")));

    let table = read_table_columns(&wh, TABLE, &["customer_id", VERSION_COLUMN]);
    let rows = rows(&table);
    assert_eq!(rows.len() as u64, written);
    // Every event exactly once, with exactly one version.
    let mut version_of: BTreeMap<u64, &str> = BTreeMap::new();
    for r in &rows {
        let id = r["customer_id"].as_u64().unwrap();
        let v = r[VERSION_COLUMN].as_str().unwrap_or_else(|| panic!("row {id} has no version"));
        assert!(v == "1.0.0" || v == "2.0.0", "row {id}: {v}");
        assert!(version_of.insert(id, v).is_none(), "customer {id} written twice");
    }
    assert_eq!(version_of.keys().copied().collect::<Vec<_>>(), (1..=written).collect::<Vec<_>>());
    // Line n is event n, so batch b holds events b*BATCH+1 ..= (b+1)*BATCH: one version per batch.
    let mut per_batch: Vec<&str> = Vec::new();
    for (id, v) in &version_of {
        let b = ((id - 1) / BATCH) as usize;
        if b == per_batch.len() {
            per_batch.push(v);
        } else {
            assert_eq!(per_batch[b], *v, "batch {b} holds rows of two versions (customer {id})");
        }
    }
    assert_eq!(per_batch[0], "1.0.0");
    let changes = per_batch.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(changes, SWAPS, "each swap takes effect at a batch boundary: {per_batch:?}");

    // Each commit holds the rows of one chain, and its snapshot summary names that chain.
    let mut committed: BTreeMap<&str, u64> = BTreeMap::new();
    for s in table["snapshots"].as_array().unwrap() {
        if s["summary"].get("cdc-host.maintenance").is_some() {
            continue; // compaction rewrites rows, it adds none
        }
        let chain = s["summary"]["cdc-host.chain"].as_str().unwrap();
        let version = if chain.starts_with("stamp@1.0.0#") {
            "1.0.0"
        } else if chain.starts_with("stamp@2.0.0#") {
            "2.0.0"
        } else {
            panic!("unexpected chain {chain}")
        };
        let added: u64 = s["summary"]["added-records"].as_str().map_or(0, |n| n.parse().unwrap());
        *committed.entry(version).or_default() += added;
    }
    for version in ["1.0.0", "2.0.0"] {
        let rows = version_of.values().filter(|v| **v == version).count() as u64;
        assert_eq!(committed[version], rows, "rows committed under chain stamp@{version}");
    }
    assert!(read_table(&wh, DLQ)["num_rows"] == 0);
}

#[test]
fn bad_changes_are_rejected_and_the_running_chain_keeps_working() {
    let (dir, plugins) = stamp_dir(&["hostile"]);
    let cfg = write_config(dir.path(), "[[chain]]\nplugin = \"stamp\"\n", &[]);
    let wh = dir.path().join("wh");
    let port = free_port();
    let mut host = Running::start(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--batch-size",
            "100",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let wait = Duration::from_secs(120);
    host.wait_log("about watching", wait, |v| message(v).starts_with("hot reload: watching"));
    host.send(&events(1..=1000));
    let stamp = plugins.join("stamp.wasm");

    deploy_bytes(b"\0asm\x0d\0\x01\0 truncated garbage", &stamp);
    host.wait_log("rejecting a corrupt component", wait, |v| {
        is_rejection(v, "stamp", "stamp.wasm is not a valid WebAssembly component")
    });
    host.send(&events(1001..=2000));

    deploy(&test_plugin("not-a-transform"), &stamp);
    host.wait_log("rejecting a component of another world", wait, |v| {
        is_rejection(v, "stamp", "does not implement the `cdc:transform/transform@0.1.0` world")
    });
    host.send(&events(2001..=3000));

    // The same file as the running one again: nothing to do.
    deploy(&test_plugin("stamp-v1"), &stamp);
    host.wait_log("about an unchanged chain", wait, |v| {
        message(v).contains("the chain they describe is the active one")
    });

    write_config(
        dir.path(),
        "[[chain]]\nplugin = \"stamp\"\n\n[[chain]]\nplugin = \"hostile\"\nconfig = { mode = \"bad-config\" }\n",
        &[],
    );
    host.wait_log("rejecting a plugin whose configure fails", wait, |v| {
        is_rejection(v, "hostile", "rejected its configuration: mode bad-config always fails")
    });
    host.send(&events(3001..=4000));

    deploy_bytes(b"[plugins\nthis is not toml", &cfg);
    host.wait_log("rejecting an unreadable config", wait, |v| {
        message(v).starts_with("plugin chain change rejected") && field(v, "error").contains("cdc-host.toml")
    });
    write_config(dir.path(), "[[chain]]\nplugin = \"stamp\"\n\n[[chain]]\nplugin = \"missing\"\n", &[]);
    host.wait_log("rejecting a chain entry without a file", wait, |v| {
        is_rejection(v, "missing", "missing.wasm not found")
    });
    host.send(&events(4001..=5000));

    let metrics = scrape(port);
    assert_eq!(metric(&metrics, r#"cdc_host_plugin_reloads_total{result="rejected"}"#), 5.0, "{metrics}");
    assert_eq!(metric(&metrics, r#"cdc_host_plugin_reloads_total{result="applied"}"#), 0.0, "{metrics}");
    assert_eq!(metric(&metrics, r#"cdc_host_plugin_reloads_total{result="unchanged"}"#), 1.0, "{metrics}");
    assert!(
        metrics.contains(r#"cdc_host_plugin_info{hash=""#) && metrics.contains(r#"plugin="stamp""#),
        "{metrics}"
    );

    let (ok, summary, logs) = host.finish();
    assert!(ok, "{logs:?}");
    assert_eq!(summary["rows_committed"], 5000, "{summary}");
    assert_eq!(summary["dead_letters"], 0, "{summary}");
    assert!(summary["chain"].as_str().unwrap().starts_with("stamp@1.0.0#"), "{summary}");
    assert!(!logs.iter().any(|v| message(v) == "plugin chain swapped"));
    let table = read_table_columns(&wh, TABLE, &["customer_id", VERSION_COLUMN]);
    let rows = rows(&table);
    assert_eq!(rows.len(), 5000);
    assert!(rows.iter().all(|r| r[VERSION_COLUMN] == "1.0.0"));
}

#[test]
fn a_hostile_plugin_deployed_while_running_is_quarantined_then_replaced() {
    let (dir, plugins) = stamp_dir(&["hostile"]);
    let hostile = |mode: &str| {
        format!(
            "[[chain]]\nplugin = \"stamp\"\n\n[[chain]]\nplugin = \"hostile\"\nconfig = {{ mode = \"{mode}\", stamp = \"{mode}\" }}\n"
        )
    };
    let settings =
        [("batch_deadline_ms", "batch_deadline_ms = 200"), ("quarantine_after", "quarantine_after = 2")];
    let cfg = write_config(dir.path(), &hostile("pass"), &settings);
    let wh = dir.path().join("wh");
    let port = free_port();
    let mut host = Running::start(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--batch-size",
            "10",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let wait = Duration::from_secs(120);
    host.wait_log("about watching", wait, |v| message(v).starts_with("hot reload: watching"));
    host.send(&events(1..=20)); // batches 1-2: pass
    wait_batches(port, 2);

    write_config(dir.path(), &hostile("loop"), &settings);
    host.wait_log("about the loop chain", wait, |v| message(v).starts_with("new plugin chain validated"));
    host.send(&events(21..=30)); // batch 3: the old chain (it was read before the swap)
    host.wait_log("about the swap to the loop chain", wait, |v| message(v) == "plugin chain swapped");
    host.send(&events(31..=50)); // batches 4-5: past the deadline twice -> quarantined
    let q = host.wait_log("about the quarantine", wait, |v| message(v).starts_with("plugin quarantined"));
    assert!(field(&q, "plugin").starts_with("hostile@"), "{q}");
    assert!(field(&q, "last_error").contains("deadline"), "{q}");
    host.send(&events(51..=70)); // batches 6-7: pass through without hostile
    wait_batches(port, 7);

    write_config(dir.path(), &hostile("pass"), &settings);
    host.wait_log("about the fixed chain", wait, |v| message(v).starts_with("new plugin chain validated"));
    host.send(&events(71..=80)); // batch 8: still the quarantined chain
    host.wait_log("about the swap to the fixed chain", wait, |v| message(v) == "plugin chain swapped");
    host.send(&events(81..=100)); // batches 9-10: the fixed chain
    wait_batches(port, 10);

    let metrics = scrape(port);
    assert_eq!(metric(&metrics, r#"cdc_host_plugin_quarantines_total{plugin="hostile"}"#), 1.0, "{metrics}");
    assert_eq!(
        metric(&metrics, r#"cdc_host_plugin_skipped_batches_total{plugin="hostile"}"#),
        3.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "cdc_host_plugins_quarantined"), 0.0, "{metrics}");
    assert_eq!(metric(&metrics, r#"cdc_host_plugin_reloads_total{result="applied"}"#), 2.0, "{metrics}");

    let (ok, summary, logs) = host.finish();
    assert!(ok, "{logs:?}");
    assert_eq!(summary["rows_committed"], 80, "{summary}");
    assert_eq!(summary["plugin_failures"], 2, "{summary}");

    let table = read_table_columns(&wh, TABLE, &["customer_id", VERSION_COLUMN, "_plugin_stamp"]);
    let mut rows: Vec<(u64, Value)> = rows(&table)
        .iter()
        .map(|r| (r["customer_id"].as_u64().unwrap(), r["_plugin_stamp"].clone()))
        .collect();
    rows.sort_by_key(|(id, _)| *id);
    let expected: Vec<(u64, Value)> = (1..=30)
        .map(|id| (id, Value::from("pass")))
        .chain((51..=80).map(|id| (id, Value::Null)))
        .chain((81..=100).map(|id| (id, Value::from("pass"))))
        .collect();
    assert_eq!(rows, expected);
    let quarantined: u64 = table["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["summary"]["cdc-host.chain"].as_str().unwrap().contains("hostile@0.1.0#"))
        .filter(|s| s["summary"]["cdc-host.chain"].as_str().unwrap().ends_with("[quarantined]"))
        .map(|s| s["summary"]["added-records"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(quarantined, 30, "rows passed through are committed under the quarantine-marked chain");

    let dlq = read_table(&wh, DLQ);
    let dead = common::rows(&dlq);
    assert_eq!(dead.len(), 20);
    assert!(
        dead.iter().all(|d| d["plugin"] == "hostile" && d["reason"].as_str().unwrap().contains("deadline"))
    );
}

/// Input of `n` events in a file.
fn input_file(dir: &Path, n: u64) -> PathBuf {
    let p = dir.join("events.ndjson");
    std::fs::write(&p, events(1..=n)).unwrap();
    p
}

#[test]
fn quarantine_passes_events_through() {
    let (dir, plugins) = stamp_dir(&["hostile"]);
    let cfg = write_config(
        dir.path(),
        "[[chain]]\nplugin = \"hostile\"\nconfig = { mode = \"trap\" }\n\n[[chain]]\nplugin = \"stamp\"\n",
        &[("quarantine_after", "quarantine_after = 2")],
    );
    let input = input_file(dir.path(), 10);
    let wh = dir.path().join("wh");
    let out = run_configured(dir.path(), &cfg, &plugins, &input, &wh, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("plugin quarantined after consecutive failed batches"), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["plugin_failures"], 2, "{summary}");
    assert_eq!(summary["rows_committed"], 6, "{summary}");
    assert!(summary["chain"].as_str().unwrap().contains("[quarantined]"), "{summary}");
    let table = read_table_columns(&wh, TABLE, &["customer_id", VERSION_COLUMN]);
    let mut ids: Vec<u64> = rows(&table).iter().map(|r| r["customer_id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (5..=10).collect::<Vec<_>>());
    assert!(rows(&table).iter().all(|r| r[VERSION_COLUMN] == "1.0.0"), "later plugins still run");
    let dlq = read_table(&wh, DLQ);
    assert_eq!(common::rows(&dlq).len(), 4);
}

#[test]
fn quarantine_can_stop_the_pipeline_after_committing() {
    let (dir, plugins) = stamp_dir(&["hostile"]);
    let cfg = write_config(
        dir.path(),
        "[[chain]]\nplugin = \"stamp\"\n\n[[chain]]\nplugin = \"hostile\"\nconfig = { mode = \"trap\", after = \"2\" }\n",
        &[("quarantine_after", "quarantine_after = 1"), ("on_quarantine", "on_quarantine = \"stop\"")],
    );
    let input = input_file(dir.path(), 50);
    let wh = dir.path().join("wh");
    let out = run_configured(dir.path(), &cfg, &plugins, &input, &wh, 10);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the pipeline must stop with an error:\n{stderr}");
    assert!(
        stderr.contains("plugin `hostile` was quarantined after 1 consecutive failed batches"),
        "{stderr}"
    );
    // Batches 1-2 passed, batch 3 trapped: its rows were pending and are committed, nothing after.
    let table = read_table_columns(&wh, TABLE, &["customer_id"]);
    let mut ids: Vec<u64> = rows(&table).iter().map(|r| r["customer_id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
    let dlq = read_table(&wh, DLQ);
    let dead = common::rows(&dlq);
    assert_eq!(dead.len(), 10);
    assert!(dead.iter().all(|d| d["reason"].as_str().unwrap().contains("trapped")));
}

#[test]
fn plugins_command_shows_hash_and_compile_cache() {
    let (dir, plugins) = stamp_dir(&[]);
    let cache = dir.path().join("cache");
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(std::fs::read(plugins.join("stamp.wasm")).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // The default config names three plugins; a directory with only stamp needs an explicit chain.
    let cfg = write_config(dir.path(), "[[chain]]\nplugin = \"stamp\"\n", &[]);
    let list = || {
        let out = host_command(dir.path())
            .env("XDG_CACHE_HOME", &cache)
            .args(["plugins", "--config", cfg.to_str().unwrap(), "--plugins", plugins.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let first = list();
    assert!(first.starts_with(&format!("1. stamp@1.0.0#{}", &hash[..12])), "{first}");
    assert!(first.contains(&format!("sha256={hash}")) && first.contains("cache=miss"), "{first}");
    let second = list();
    assert!(second.contains("cache=hit"), "a restart with unchanged plugins does not recompile: {second}");
    assert!(
        cache.join("cdc-host").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&hash))
    );
}

/// A Debezium insert (bare value envelope) of customer `id` with the columns the reference chain reads.
fn customer_event(id: u64) -> String {
    format!(
        r#"{{"before":null,"after":{{"customer_id":{id},"email":"c{id}@example.com","first_name":" First{id} ","last_name":"Last","city":"Oslo","state":null,"country":"NO","lifetime_value":"AQ=="}},"source":{{"connector":"postgresql","ts_ms":1700000000000,"snapshot":"false","db":"shop","schema":"public","table":"customers","lsn":{id}}},"op":"c","ts_ms":1700000000000}}"#
    ) + "\n"
}

#[test]
fn swapping_a_rust_plugin_for_its_python_port_loses_and_duplicates_nothing() {
    const BATCH: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for p in ["name-concat", "location", "business-rules"] {
        std::fs::copy(
            repo().join("plugins/rust").join(format!("{p}.wasm")),
            plugins.join(format!("{p}.wasm")),
        )
        .unwrap_or_else(|e| panic!("plugins/rust/{p}.wasm: {e}: run scripts/build-plugins"));
    }
    let python = repo().join("plugins/python/name-concat.wasm");
    assert!(python.is_file(), "plugins/python/name-concat.wasm is missing: run scripts/build-plugins");
    // The shipped config and chain, with a short debounce.
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let cfg = dir.path().join("cdc-host.toml");
    std::fs::write(&cfg, shipped.replace("debounce_ms = 200", "debounce_ms = 50")).unwrap();
    let wh = dir.path().join("wh");
    let port = free_port();
    let mut host = Running::streaming(dir.path(), &cfg, &plugins, &wh, BATCH, port);
    host.wait_log("about watching", Duration::from_secs(300), |v| {
        message(v).starts_with("hot reload: watching")
    });
    let send = |host: &mut Running, ids: std::ops::RangeInclusive<u64>| {
        host.send(&ids.map(customer_event).collect::<String>());
    };
    send(&mut host, 1..=1000);
    wait_batches(port, 5);
    // The Python component compiles on arrival (or comes from the compile cache) off the hot path,
    // while events keep streaming.
    deploy(&python, &plugins.join("name-concat.wasm"));
    let mut next = 1001;
    let deadline = Instant::now() + Duration::from_secs(600);
    let python_hash = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(std::fs::read(&python).unwrap());
        h.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>()
    };
    loop {
        send(&mut host, next..=next + 99);
        next += 100;
        if host.seen.iter().any(|v| is_swap_to(v, &python_hash)) {
            break;
        }
        match host.logs.recv_timeout(Duration::from_millis(100)) {
            Ok(v) => host.seen.push(v),
            Err(RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("cdc-host exited: {e}:\n{}", host.log_text()),
        }
        assert!(Instant::now() < deadline, "no swap to the Python name-concat:\n{}", host.log_text());
    }
    // The new chain gets batches of its own.
    send(&mut host, next..=next + 4 * BATCH - 1);
    let written = next + 4 * BATCH - 1;
    let (ok, summary, logs) = host.finish();
    assert!(ok, "cdc-host failed:\n{logs:?}");
    assert_eq!(summary["rows_committed"], written, "{summary}");
    assert_eq!(summary["dead_letters"], 0, "{summary}");

    let table = read_table_columns(&wh, TABLE, &["customer_id", "full_name", "location"]);
    let rows = rows(&table);
    let mut seen: BTreeMap<u64, ()> = BTreeMap::new();
    for r in &rows {
        let id = r["customer_id"].as_u64().unwrap();
        assert!(seen.insert(id, ()).is_none(), "customer {id} written twice");
        assert_eq!(r["full_name"].as_str(), Some(format!("First{id} Last").as_str()), "row {id}");
        assert_eq!(r["location"].as_str(), Some("Oslo, NO"));
    }
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (1..=written).collect::<Vec<_>>());
    // Commits under both chains, each naming its own name-concat.
    // (maintenance snapshots rewrite rows and add none)
    let chains: Vec<&str> = table["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["summary"].get("cdc-host.maintenance").is_none())
        .filter_map(|s| s["summary"]["cdc-host.chain"].as_str())
        .collect();
    assert!(chains.iter().any(|c| !c.contains(&python_hash)), "{chains:?}");
    assert!(chains.last().unwrap().contains(&python_hash), "{chains:?}");
}

#[test]
fn the_shipped_business_rules_entry_fails_closed() {
    // The shipped config, with a component that traps on every batch standing in for business-rules:
    // the shipped entry's `on_quarantine = "stop"` stops the pipeline (after committing what is
    // pending) instead of letting rows through unfiltered, although the global policy is pass-through.
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for p in ["name-concat", "location"] {
        std::fs::copy(plugins_dir().join(format!("{p}.wasm")), plugins.join(format!("{p}.wasm"))).unwrap();
    }
    std::fs::copy(test_plugin("hostile"), plugins.join("business-rules.wasm")).unwrap();
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    assert!(shipped.contains("on_quarantine = \"pass-through\""), "the global policy passes through");
    let trap = shipped.replace(
        "config = { drop_deletes = true, require_email = true, min_lifetime_value = \"0\" }",
        "config = { mode = \"trap\" }",
    );
    assert_ne!(trap, shipped);
    let cfg = dir.path().join("cdc-host.toml");
    std::fs::write(&cfg, trap).unwrap();
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, (1..=80).map(customer_event).collect::<String>()).unwrap();
    let wh = dir.path().join("wh");
    let out = run_configured(dir.path(), &cfg, &plugins, &input, &wh, 10);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the pipeline must stop:\n{stderr}");
    assert!(
        stderr.contains("plugin `hostile` was quarantined after 3 consecutive failed batches"),
        "{stderr}"
    );
    // The three failed batches are dead letters (committed); nothing was written unfiltered and the
    // rest of the input was not read on.
    let rows_written = try_read_table(&wh, TABLE).map(|t| common::rows(&t).len()).unwrap_or(0);
    assert_eq!(rows_written, 0);
    let dlq = read_table(&wh, DLQ);
    let dead = common::rows(&dlq);
    assert_eq!(dead.len(), 30);
    assert!(dead.iter().all(|d| d["reason"].as_str().unwrap().contains("trapped")));
}

/// A Debezium insert of order `id` (source table `public.orders`).
fn order_event(id: u64) -> String {
    format!(
        r#"{{"before":null,"after":{{"order_id":{id},"note":"o{id}"}},"source":{{"connector":"postgresql","ts_ms":1700000000000,"snapshot":"false","db":"shop","schema":"public","table":"orders","lsn":{id}}},"op":"c","ts_ms":1700000000000}}"#
    ) + "\n"
}

/// Two tables with their own chains: a change to one entry's chain swaps that table's chain and
/// leaves the other's running as it was.
#[test]
fn a_chain_change_applies_to_the_tables_whose_chain_changed() {
    let (dir, plugins) = stamp_dir(&[]);
    let orders = |chain: &str| {
        format!(
            "[[chain]]\nplugin = \"stamp\"\n\n[[tables]]\nsource = [\"public.orders\"]\nnamespace = \"shop\"\nname = \"orders\"\nchain = {chain}\n"
        )
    };
    let cfg = write_config(dir.path(), &orders("[{ plugin = \"stamp\" }]"), &[]);
    let wh = dir.path().join("wh");
    let port = free_port();
    let mut host = Running::streaming(dir.path(), &cfg, &plugins, &wh, 100, port);
    let wait = Duration::from_secs(120);
    host.wait_log("about watching", wait, |v| message(v).starts_with("hot reload: watching"));
    host.send(&(events(1..=50) + &(1..=50).map(order_event).collect::<String>()));
    wait_batches(port, 2);

    write_config(dir.path(), &orders("[]"), &[]);
    host.wait_log("about the orders chain swapping", wait, |v| message(v) == "plugin chain swapped");
    host.send(&(events(51..=100) + &(51..=100).map(order_event).collect::<String>()));
    let (ok, summary, logs) = host.finish();
    assert!(ok, "{summary}");
    let swaps = logs.iter().filter(|v| message(v) == "plugin chain swapped").count();
    assert_eq!(swaps, 1, "only the orders table's chain changed");

    let version = |table: &str, key: &str| -> Vec<(i64, Value)> {
        let mut v: Vec<(i64, Value)> = rows(&read_table(&wh, table))
            .iter()
            .map(|r| (r[key].as_i64().unwrap(), r.get(VERSION_COLUMN).cloned().unwrap_or(Value::Null)))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    };
    let customers = version(TABLE, "customer_id");
    assert_eq!(customers.len(), 100);
    assert!(
        customers.iter().all(|(_, v)| !v.is_null()),
        "the customers chain stamps every row: {customers:?}"
    );
    let orders = version("shop.orders", "order_id");
    assert_eq!(orders.len(), 100);
    for (id, v) in orders {
        assert_eq!(v.is_null(), id > 50, "order {id}: stamped by the chain it ran through");
    }
}
