//! Exactly once, tested by racing and killing real hosts, on every catalog kind (SQLite, the stack's
//! PostgreSQL, the stack's Iceberg REST server), reading the tables back with pyiceberg:
//! - the same input run twice: the second run commits nothing and exits 0;
//! - two hosts with the same pipeline id racing over one input: every row and every dead letter
//!   exactly once;
//! - a host killed between writing its files and the compare-and-swap, or right after it: the rerun
//!   loses and duplicates nothing (dead letters included), and `cdc-host maintain` leaves no orphan.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// Customer `id` (inserts); every 50th has no email, which the shipped chain dead-letters.
fn event(id: u64) -> String {
    let email = if id.is_multiple_of(50) { "null".to_string() } else { format!("\"c{id}@example.com\"") };
    format!(
        r#"{{"before":null,"after":{{"customer_id":{id},"email":{email},"first_name":"First{id}","last_name":"Last","city":"Oslo","state":"Oslo","country":"NO","customer_tier":"gold","lifetime_value":"AQ==","registration_date":{},"created_at":"2024-01-01T00:00:00Z","notes":"n"}},"source":{{"connector":"postgresql","ts_ms":1700000000000,"snapshot":"false","db":"shop","schema":"public","table":"customers","lsn":{id}}},"op":"c","ts_ms":1700000000000}}"#,
        18000 + (id % 400) as i64
    ) + "\n"
}

fn input(dir: &Path, n: u64) -> PathBuf {
    let p = dir.join("events.ndjson");
    let text: String = (1..=n).map(event).collect();
    std::fs::write(&p, text).unwrap();
    p
}

/// `customer_id` → how many rows hold it.
fn id_counts(table: &Value) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for r in rows(table) {
        *counts.entry(r["customer_id"].as_i64().expect("customer_id")).or_insert(0) += 1;
    }
    counts
}

/// Asserts the main table holds each valid customer of `1..=n` once and the dead-letter table each
/// customer without email once.
fn assert_exactly_once(kind: &CatalogKind, warehouse: &Path, ns: &str, n: u64) {
    let main = kind.read_table(warehouse, &format!("{ns}.customers_analytics"));
    let counts = id_counts(&main);
    let expected = (1..=n).filter(|id| id % 50 != 0).count();
    let dup: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(dup.is_empty(), "{}: duplicated customers: {dup:?}", kind.name());
    assert_eq!(counts.len(), expected, "{}: main table rows", kind.name());
    assert!(counts.keys().all(|id| id % 50 != 0), "{}: a customer without email landed", kind.name());
    let dlq = kind.read_table(warehouse, &format!("{ns}.customers_analytics_dlq"));
    let mut positions: Vec<String> =
        rows(&dlq).iter().map(|r| r["source_position"].as_str().unwrap().to_string()).collect();
    let total = positions.len();
    positions.sort();
    positions.dedup();
    assert_eq!(total, positions.len(), "{}: duplicated dead letters", kind.name());
    assert_eq!(total as u64, n / 50, "{}: dead letters", kind.name());
}

fn args<'a>(base: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().map(String::as_str).chain(extra.iter().copied()).collect()
}

#[test]
fn the_same_input_twice_commits_nothing_the_second_time() {
    for kind in catalogs() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = dir.path().join("warehouse");
        let ns = unique_name("twice");
        let events = input(dir.path(), 500);
        let mut base = kind.host_args(&warehouse, &ns);
        base.extend(["--plugins".into(), plugins_dir().display().to_string()]);
        let first = host_ok(dir.path(), &args(&base, &["--input", events.to_str().unwrap()]));
        assert_eq!(first["rows_committed"], 490, "{}: {first}", kind.name());
        let out = host(dir.path(), &args(&base, &["--input", events.to_str().unwrap()]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: second run failed: {stderr}", kind.name());
        let second: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(second["rows_committed"], 0, "{}: {second}", kind.name());
        assert_eq!(second["commits"], 0, "{}: {second}", kind.name());
        assert_eq!(second["already_committed"], 500, "{}: {second}", kind.name());
        assert!(stderr.contains("already holds this input"), "{}: {stderr}", kind.name());
        assert_exactly_once(&kind, &warehouse, &ns, 500);
        kind.drop_table(&warehouse, &format!("{ns}.customers_analytics"));
        kind.drop_table(&warehouse, &format!("{ns}.customers_analytics_dlq"));
    }
}

#[test]
fn two_hosts_racing_on_one_table_land_every_row_once() {
    const N: u64 = 20_000;
    let mut contended = 0;
    for kind in catalogs() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = dir.path().join("warehouse");
        let ns = unique_name("race");
        let events = input(dir.path(), N);
        let mut base = kind.host_args(&warehouse, &ns);
        base.extend(
            ["--plugins", plugins_dir().to_str().unwrap(), "--batch-size", "500", "--commit-rows", "1000"]
                .map(String::from),
        );
        // Create the tables first so both hosts race on commits, not on creation.
        host_ok(dir.path(), &args(&base, &["create-table"]));
        let spawn = |i: usize| {
            host_command(dir.path())
                .args(args(&base, &["--input", events.to_str().unwrap()]))
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.path().join(format!("host{i}.log"))).unwrap())
                .spawn()
                .expect("spawn cdc-host")
        };
        let hosts = [spawn(0), spawn(1)];
        let mut fenced = 0;
        for (i, h) in hosts.into_iter().enumerate() {
            let out = h.wait_with_output().unwrap();
            let log = std::fs::read_to_string(dir.path().join(format!("host{i}.log"))).unwrap();
            if !out.status.success() {
                assert!(
                    log.contains("another host with the same pipeline id"),
                    "{}: host {i} failed: {log}",
                    kind.name()
                );
                fenced += 1;
            }
        }
        // A fenced host stops without committing; running it again resumes from the table.
        if fenced > 0 {
            host_ok(dir.path(), &args(&base, &["--input", events.to_str().unwrap()]));
        }
        contended += fenced;
        assert_exactly_once(&kind, &warehouse, &ns, N);
        kind.drop_table(&warehouse, &format!("{ns}.customers_analytics"));
        kind.drop_table(&warehouse, &format!("{ns}.customers_analytics_dlq"));
    }
    // Otherwise the hosts never overlapped and the test proved nothing.
    assert!(contended > 0, "the two hosts never raced (no lost race, no fenced host)");
}

/// Files under the table's data directory that pyiceberg's view of the table does not list.
fn data_files_on_disk(warehouse: &Path) -> usize {
    fn walk(dir: &Path, n: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(warehouse, &mut n);
    n
}

#[test]
fn killed_before_or_after_the_swap_loses_and_duplicates_nothing() {
    const N: u64 = 5_000;
    // (crash point, which commit): the first swap of a flush is the dead-letter table's, the
    // second the main table's.
    let points = ["before-swap:1", "after-swap:1", "before-swap:2", "after-swap:2", "after-swap:5"];
    for kind in catalogs() {
        for point in points {
            let dir = tempfile::tempdir().unwrap();
            let warehouse = dir.path().join("warehouse");
            let ns = unique_name("kill");
            let events = input(dir.path(), N);
            let mut base = kind.host_args(&warehouse, &ns);
            base.extend(
                [
                    "--plugins",
                    plugins_dir().to_str().unwrap(),
                    "--batch-size",
                    "500",
                    "--commit-rows",
                    "1000",
                ]
                .map(String::from),
            );
            let crashed = host_command(dir.path())
                .args(args(&base, &["--input", events.to_str().unwrap()]))
                .env("CDC_HOST_CRASH_AT", point)
                .output()
                .unwrap();
            assert!(!crashed.status.success(), "{} {point}: the host did not crash", kind.name());
            host_ok(dir.path(), &args(&base, &["--input", events.to_str().unwrap()]));
            assert_exactly_once(&kind, &warehouse, &ns, N);
            if kind == CatalogKind::Sqlite {
                // Files of the attempt that never landed are orphans: maintenance removes them,
                // and a second pass finds nothing more. (No compaction here: the files it replaces
                // stay reachable from the snapshots kept, so the disk would hold more than the table.)
                let maintain = |dir: &Path| {
                    let out = Command::new(env!("CARGO_BIN_EXE_cdc-host"))
                        .current_dir(dir)
                        .args(args(
                            &base,
                            &[
                                "maintain",
                                "--orphans-older-than-seconds",
                                "0",
                                "--min-input-files",
                                "1000000",
                            ],
                        ))
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "maintain: {}", String::from_utf8_lossy(&out.stderr));
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(|l| serde_json::from_str::<Value>(l).unwrap())
                        .collect::<Vec<_>>()
                };
                maintain(dir.path());
                let again = maintain(dir.path());
                assert!(again.iter().all(|r| r["orphans_deleted"] == 0), "{point}: {again:?}");
                let main = kind.read_table(&warehouse, &format!("{ns}.customers_analytics"));
                let dlq = kind.read_table(&warehouse, &format!("{ns}.customers_analytics_dlq"));
                let listed = main["files"].as_array().map_or(0, Vec::len)
                    + dlq["files"].as_array().map_or(0, Vec::len);
                assert_eq!(data_files_on_disk(&warehouse), listed, "{point}: orphan data files remain");
                assert_exactly_once(&kind, &warehouse, &ns, N);
            }
            kind.drop_table(&warehouse, &format!("{ns}.customers_analytics"));
            kind.drop_table(&warehouse, &format!("{ns}.customers_analytics_dlq"));
        }
    }
}

#[test]
fn maintenance_compacts_expires_and_keeps_every_row() {
    const N: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    let events = input(dir.path(), N);
    let wh = warehouse.to_str().unwrap();
    let plugins = plugins_dir();
    let base = [
        "--plugins",
        plugins.to_str().unwrap(),
        "--warehouse",
        wh,
        "--batch-size",
        "100",
        "--commit-rows",
        "100",
    ];
    host_ok(dir.path(), &[&base[..], &["--input", events.to_str().unwrap()]].concat());
    let before = read_table(&warehouse, "analytics.customers_analytics");
    let files_before = before["files"].as_array().unwrap().len();
    let snapshots_before = before["snapshots"].as_array().unwrap().len();
    assert!(snapshots_before >= 10, "expected many small commits: {snapshots_before}");
    // A stream's small files are snappy (`sink.small_file_compression`); what compaction writes is zstd.
    let codecs = |f: &Value| f["codecs"].clone();
    assert!(
        before["files"].as_array().unwrap().iter().all(|f| codecs(f) == serde_json::json!(["SNAPPY"])),
        "{}",
        before["files"]
    );

    let out = host(
        dir.path(),
        &[
            &base[..],
            &["maintain", "--min-input-files", "2", "--keep-last", "1", "--orphans-older-than-seconds", "0"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "maintain: {}", String::from_utf8_lossy(&out.stderr));
    let reports: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(reports[0]["compacted_files_in"].as_u64().unwrap() > 0, "{reports:?}");
    assert!(reports[0]["expired_snapshots"].as_u64().unwrap() > 0, "{reports:?}");

    let after = read_table(&warehouse, "analytics.customers_analytics");
    let files = after["files"].as_array().unwrap();
    assert!(files.len() < files_before, "{} files after compaction, {files_before} before", files.len());
    assert!(files.iter().all(|f| f["sorted"] != false), "a compacted file is not sorted: {files:?}");
    let paths_before: Vec<&Value> = before["files"].as_array().unwrap().iter().map(|f| &f["path"]).collect();
    let compacted: Vec<&Value> = files.iter().filter(|f| !paths_before.contains(&&f["path"])).collect();
    assert!(!compacted.is_empty(), "{files:?}");
    assert!(compacted.iter().all(|f| codecs(f) == serde_json::json!(["ZSTD"])), "{compacted:?}");
    assert_eq!(after["snapshots"].as_array().unwrap().len(), 1, "{}", after["snapshots"]);
    let key = |t: &Value| {
        let mut v: Vec<String> = rows(t)
            .iter()
            .map(|r| format!("{}|{}|{}", r["customer_id"], r["full_name"], r["location"]))
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&before), key(&after), "compaction changed the rows");
    assert_eq!(
        data_files_on_disk(&warehouse),
        files.len()
            + read_table(&warehouse, "analytics.customers_analytics_dlq")["files"].as_array().unwrap().len()
    );
    // The table still resumes where it was: the same input commits nothing.
    let again = host_ok(dir.path(), &[&base[..], &["--input", events.to_str().unwrap()]].concat());
    assert_eq!(again["rows_committed"], 0, "{again}");
}

/// Background maintenance runs alongside the commits that follow it: with a run every commit
/// (compaction, expiry down to two snapshots) racing ~30 small commits, every row and dead letter
/// lands once, every data file the table lists is readable, and no commit loses a race.
#[test]
fn background_maintenance_races_the_commits_and_keeps_every_row() {
    const N: u64 = 6_000;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    let events = input(dir.path(), N);
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let chain = &shipped[shipped.find("[[chain]]").unwrap()..shipped.find("[sink]").unwrap()];
    let config = config_with(
        dir.path(),
        chain,
        &[("every_commits", "every_commits = 1"), ("keep_last", "keep_last = 2")],
    );
    let plugins = plugins_dir();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--plugins",
        plugins.to_str().unwrap(),
        "--warehouse",
        warehouse.to_str().unwrap(),
        "--batch-size",
        "100",
        "--commit-rows",
        "100",
        "--input",
        events.to_str().unwrap(),
    ];
    let out = host(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["commits"].as_u64().unwrap() >= 20, "{summary}");
    assert!(summary["maintenance_runs"].as_u64().unwrap() >= 2, "{summary}");
    // The host's commits and its maintenance take turns: neither loses a race to the other.
    assert!(!stderr.contains("lost a commit race"), "{stderr}");
    assert_exactly_once(&CatalogKind::Sqlite, &warehouse, "analytics", N);
    // (Reading the tables opened every data file they list.)
    let main = read_table(&warehouse, "analytics.customers_analytics");
    let files = main["files"].as_array().unwrap().len();
    let snapshots = main["snapshots"].as_array().unwrap().len() as u64;
    assert!(snapshots < summary["commits"].as_u64().unwrap(), "expiry ran: {snapshots} snapshots");
    let written = summary["data_files"].as_u64().unwrap();
    assert!((files as u64) < written, "compaction ran: {files} files of {written} written");
}

#[test]
fn a_worker_panic_fails_the_run_and_commits_nothing_after_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    let events = input(dir.path(), 2_000);
    let plugins = plugins_dir();
    let args = [
        "--plugins",
        plugins.to_str().unwrap(),
        "--warehouse",
        warehouse.to_str().unwrap(),
        "--batch-size",
        "500",
        "--commit-rows",
        "500",
        "--input",
        events.to_str().unwrap(),
    ];
    let out = host_command(dir.path()).args(args).env("CDC_HOST_CRASH_AT", "worker:3").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a panicking worker must fail the run");
    assert!(stderr.contains("worker panicked"), "{stderr}");
    // The rerun resumes from what was committed before the panic and completes the table.
    host_ok(dir.path(), &args);
    assert_exactly_once(&CatalogKind::Sqlite, &warehouse, "analytics", 2_000);
}

#[test]
fn a_run_that_dead_letters_most_records_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    let p = dir.path().join("bad.ndjson");
    let mut text: String = (1..=30).map(|i| format!("{{\"not\": \"debezium {i}\"}}\n")).collect();
    text.push_str(&event(1));
    std::fs::write(&p, text).unwrap();
    let out = host(
        dir.path(),
        &[
            "--plugins",
            plugins_dir().to_str().unwrap(),
            "--warehouse",
            warehouse.to_str().unwrap(),
            "--input",
            p.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["dead_letters"], 30, "{summary}");
    let warning = summary["warning"].as_str().expect("a warning in the summary");
    assert!(warning.contains("30 of 31 records"), "{warning}");
    assert!(stderr.contains("WARN") && stderr.contains("dead-letter table"), "{stderr}");
    let reasons = summary["dead_letter_reasons"].as_array().unwrap();
    assert_eq!(reasons[0][1], 30, "{summary}");
}

/// A snapshot names only files already on disk: whatever a commit wrote (data files, manifests, the
/// manifest list, the metadata file) was synced before the catalog pointed at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_names_only_synced_files() {
    use cdc_host::sink::storage;
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let mut cfg = cdc_host::config::Config::from_toml(&text, "test").unwrap();
    cfg.catalog.warehouse = dir.path().join("warehouse");
    cfg.no_plugins = true;
    let source = cdc_host::source::FileSource::open(&input(dir.path(), 2_000)).unwrap();
    let summary =
        cdc_host::pipeline::run_file(&cfg, source, &cdc_host::metrics::Metrics::new()).await.unwrap();
    assert_eq!(summary.rows_committed, 2_000);

    let catalog = cdc_host::sink::catalog::open(&cfg).await.unwrap();
    let ident = iceberg::TableIdent::from_strs(["analytics", "customers_analytics"]).unwrap();
    let table = catalog.load(&ident).await.unwrap();
    let snapshot = table.metadata().current_snapshot().expect("a snapshot");
    let mut named =
        vec![table.metadata_location().unwrap().to_string(), snapshot.manifest_list().to_string()];
    let manifests = table.manifest_list_reader(snapshot).load().await.unwrap();
    for m in manifests.entries() {
        named.push(m.manifest_path.clone());
        let manifest = m.load_manifest(table.file_io()).await.unwrap();
        named.extend(manifest.entries().iter().map(|e| e.data_file().file_path().to_string()));
    }
    assert!(named.len() >= 5, "the snapshot names its data files: {named:?}");
    let waiting = storage::unsynced();
    for f in &named {
        assert!(!waiting.contains(&storage::local_path(f)), "the snapshot names {f}, which was never synced");
    }
    assert!(storage::synced_total() >= named.len() as u64, "files were synced through the warehouse storage");
}
