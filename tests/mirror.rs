//! Mirror tables (`--table-mode mirror`): every shared Debezium fixture scenario, in every converter
//! setting, replayed through the real binary and the shipped plugins, leaves the end state the
//! fixtures' README describes (the source table's rows passed through the chain), read back with
//! pyiceberg (which applies the position deletes); a host killed at a commit's compare-and-swap and
//! restarted leaves the same table as an uninterrupted run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Map, Value};

const TABLE: &str = "analytics.customers_analytics";
const DLQ: &str = "analytics.customers_analytics_dlq";

/// Runs the shipped chain in mirror mode over `input` into `warehouse` with extra flags.
fn mirror_run(dir: &Path, input: &Path, warehouse: &Path, extra: &[&str]) -> Value {
    run_shipped_with(dir, input, warehouse, &[&["--table-mode", "mirror"], extra].concat())
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn micros(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts}: {e}")).timestamp_micros()
}

/// The values a mirror row has, comparable between the expected state and the table.
fn comparable(r: &Map<String, Value>) -> BTreeMap<&'static str, Value> {
    let mut m = BTreeMap::new();
    for c in ["customer_id", "email", "full_name", "location", "customer_tier", "lifetime_value"] {
        m.insert(c, r.get(c).cloned().unwrap_or(Value::Null));
    }
    for c in ["registration_date", "notes", "loyalty_points"] {
        m.insert(c, r.get(c).cloned().unwrap_or(Value::Null));
    }
    m.insert("created_at", r.get("created_at").and_then(Value::as_str).map(micros).into());
    m
}

/// The rows of `public.customers` after every scenario but `truncate` (the fixtures'
/// `expected_source_state.json`) passed through the shipped chain: names and places joined, rows
/// without an email or with a negative lifetime value left out.
fn expected(setting: &str) -> BTreeMap<i64, BTreeMap<&'static str, Value>> {
    let path = fixtures().join(setting).join("expected_source_state.json");
    let state: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(state["after_truncate"], serde_json::json!([]));
    let mut out = BTreeMap::new();
    for r in state["rows"].as_array().unwrap() {
        let r = r.as_object().unwrap();
        let email = text(&r["email"]);
        if email.as_deref().is_none_or(str::is_empty) {
            continue;
        }
        if text(&r["lifetime_value"]).is_some_and(|v| v.parse::<f64>().unwrap() < 0.0) {
            continue;
        }
        let join = |cols: &[&str], sep: &str| {
            let parts: Vec<String> =
                cols.iter().filter_map(|c| text(&r[*c])).filter(|s| !s.is_empty()).collect();
            if parts.is_empty() { Value::Null } else { Value::String(parts.join(sep)) }
        };
        let mut row = r.clone();
        row.insert("full_name".into(), join(&["first_name", "last_name"], " "));
        row.insert("location".into(), join(&["city", "state", "country"], ", "));
        out.insert(r["customer_id"].as_i64().unwrap(), comparable(&row));
    }
    out
}

/// The mirror table's rows by key; asserts there is one row per key.
fn mirror_rows(warehouse: &Path) -> BTreeMap<i64, BTreeMap<&'static str, Value>> {
    let table = read_table(warehouse, TABLE);
    let mut out = BTreeMap::new();
    for r in rows(&table) {
        let id = r["customer_id"].as_i64().expect("customer_id is set");
        assert!(out.insert(id, comparable(r)).is_none(), "customer {id} has more than one row");
    }
    out
}

/// The scenario files of `setting` but `truncate`, in order.
fn scenario_files(setting: &str) -> Vec<PathBuf> {
    SCENARIOS
        .iter()
        .filter(|s| **s != "truncate")
        .map(|s| fixtures().join(setting).join(format!("{s}.ndjson")))
        .collect()
}

/// Every scenario but `truncate`, concatenated, in `dir/events.ndjson`.
fn before_truncate(setting: &str, dir: &Path) -> PathBuf {
    let all = all_scenarios(setting, dir);
    let text = std::fs::read_to_string(&all).unwrap();
    let truncate = std::fs::read_to_string(fixtures().join(setting).join("truncate.ndjson")).unwrap();
    let rest = text.strip_suffix(truncate.as_str()).or_else(|| text.strip_suffix(&(truncate.clone() + "\n")));
    std::fs::write(&all, rest.expect("truncate comes last")).unwrap();
    all
}

fn assert_same(setting: &str, how: &str, got: &BTreeMap<i64, BTreeMap<&str, Value>>) {
    let want = expected(setting);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{setting} ({how}): keys");
    for (id, w) in &want {
        assert_eq!(&got[id], w, "{setting} ({how}): customer {id}");
    }
}

fn truncate_empties(setting: &str, dir: &Path, warehouse: &Path) {
    let before = read_table(warehouse, TABLE)["snapshots"].as_array().unwrap().len();
    let summary = mirror_run(dir, &fixtures().join(setting).join("truncate.ndjson"), warehouse, &[]);
    assert_eq!(summary["truncates"], 1, "{summary}");
    let table = read_table(warehouse, TABLE);
    assert_eq!(table["num_rows"], 0, "{setting}: truncate leaves rows: {}", table["rows"]);
    assert_eq!(table["snapshots"].as_array().unwrap().len(), before + 1, "truncate is one snapshot");
}

/// All scenarios in one input (one commit), then the truncate; and each scenario as its own run with
/// a commit per event (deletes and TOASTed values then reach rows of committed files).
fn check_setting(setting: &str) {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("one");
    let input = before_truncate(setting, dir.path());
    let summary = mirror_run(dir.path(), &input, &wh, &[]);
    assert_eq!(summary["dead_letters"], 2, "business-rules rejects customer 5 twice: {summary}");
    let table = read_table(&wh, TABLE);
    let id = table["schema"].as_array().unwrap().iter().find(|f| f["name"] == "customer_id").unwrap().clone();
    assert_eq!(id["required"], true, "the key is a required identifier field: {id}");
    assert_same(setting, "one input", &mirror_rows(&wh));
    truncate_empties(setting, dir.path(), &wh);

    let wh = dir.path().join("each");
    for f in scenario_files(setting) {
        mirror_run(dir.path(), &f, &wh, &["--batch-size", "1", "--commit-rows", "1"]);
    }
    assert_same(setting, "a commit per event", &mirror_rows(&wh));
    let table = read_table(&wh, TABLE);
    let deletes: u64 = table["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["summary"]["added-position-deletes"].as_str())
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(deletes > 0, "updates of committed rows are position deletes");
    truncate_empties(setting, dir.path(), &wh);
    // Rows land again after a truncate.
    mirror_run(dir.path(), &fixtures().join(setting).join("insert.ndjson"), &wh, &["--source-id", "again"]);
    assert_eq!(mirror_rows(&wh).keys().copied().collect::<Vec<_>>(), vec![6, 7, 8]);
}

#[test]
fn mirror_schemas_false_decimal_precise() {
    check_setting("schemas_false__decimal_precise");
}

#[test]
fn mirror_schemas_true_decimal_precise() {
    check_setting("schemas_true__decimal_precise");
}

#[test]
fn mirror_schemas_true_decimal_string() {
    check_setting("schemas_true__decimal_string");
}

/// The table without what differs between runs (ingestion time), as sorted JSON rows.
fn stable_rows(warehouse: &Path) -> Vec<String> {
    comparable_rows(&read_table(warehouse, TABLE))
}

#[test]
fn a_mirror_host_killed_at_a_commit_resumes_to_the_same_table() {
    let setting = "schemas_true__decimal_precise";
    let dir = tempfile::tempdir().unwrap();
    let input = before_truncate(setting, dir.path());
    let flags = ["--batch-size", "1", "--commit-rows", "1", "--source-id", "events"];
    let reference = dir.path().join("reference");
    mirror_run(dir.path(), &input, &reference, &flags);
    let want = stable_rows(&reference);
    assert_same(setting, "reference", &mirror_rows(&reference));
    let want_dlq = read_table(&reference, DLQ)["num_rows"].clone();

    for point in
        ["before-swap:4", "after-swap:4", "before-swap:9", "after-swap:9", "before-swap:15", "after-swap:15"]
    {
        let wh = dir.path().join(point.replace(':', "-"));
        let mut args: Vec<String> = vec![
            "--plugins".into(),
            plugins_dir().to_str().unwrap().into(),
            "--input".into(),
            input.to_str().unwrap().into(),
            "--warehouse".into(),
            wh.to_str().unwrap().into(),
            "--table-mode".into(),
            "mirror".into(),
        ];
        args.extend(flags.iter().map(|s| s.to_string()));
        let crashed = host_command(dir.path()).args(&args).env("CDC_HOST_CRASH_AT", point).output().unwrap();
        assert!(!crashed.status.success(), "{point}: the host did not crash");
        mirror_run(dir.path(), &input, &wh, &flags);
        assert_eq!(stable_rows(&wh), want, "{point}: the table differs from an uninterrupted run");
        assert_eq!(read_table(&wh, DLQ)["num_rows"], want_dlq, "{point}: dead letters");
    }
}

/// A schemaless Debezium record of `public.customers` (fixture form, key `customer_id`).
fn record(op: &str, id: i64, before: Value, after: Value) -> String {
    record_at(op, id, before, after, Value::Null)
}

/// Like [`record`], at source LSN `lsn`.
fn record_at(op: &str, id: i64, before: Value, after: Value, lsn: Value) -> String {
    let value = serde_json::json!({
        "before": before, "after": after, "op": op,
        "source": {"schema": "public", "table": "customers", "ts_ms": 1, "snapshot": "false", "lsn": lsn},
    });
    serde_json::json!({"topic": "postgres.public.customers", "key": {"customer_id": id}, "value": value})
        .to_string()
        + "\n"
}

fn customer_row(id: i64, email: Option<&str>, days: i64, notes: &str) -> Value {
    serde_json::json!({
        "customer_id": id, "email": email, "first_name": "F", "last_name": "L", "city": "C", "state": null,
        "country": "X", "customer_tier": "gold", "lifetime_value": "10.00", "registration_date": days,
        "created_at": "2024-01-01T00:00:00Z", "notes": notes,
    })
}

/// Per position-delete file: every data file it points into is in the delete file's partition.
/// Returns how many deleted positions were checked.
fn deletes_in_their_files_partition(warehouse: &Path) -> u64 {
    let script = r#"
import sys, pyarrow.parquet as pq
sys.path.insert(0, sys.argv[1])
from read_table import open_catalog
t = open_catalog("iceberg", None, sys.argv[2]).load_table(sys.argv[3])
files = t.inspect.files().to_pylist()
part = {f["file_path"]: f["partition"] for f in files if f["content"] == 0}
n = 0
for f in files:
    if f["content"] == 1:
        for p in pq.read_table(f["file_path"].removeprefix("file://")).column("file_path").to_pylist():
            assert f["partition"] == part[p], (f["partition"], p, part.get(p))
            n += 1
print(n)
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script, repo().join("tests").to_str().unwrap(), warehouse.to_str().unwrap(), TABLE])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn partition_moves_toast_rejections_and_recreated_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (jan23, mar24) = (19372, 19800);
    let mut text = String::new();
    for id in 1..=4 {
        let notes = if id == 2 { "BIG" } else { "n" };
        text += &record("c", id, Value::Null, customer_row(id, Some("a@x"), jan23, notes));
    }
    // A partition move; a partition move whose notes are TOASTed; an update the chain rejects.
    text += &record("u", 1, Value::Null, customer_row(1, Some("a@x"), mar24, "n"));
    text += &record("u", 2, Value::Null, customer_row(2, Some("a@x"), mar24, "__debezium_unavailable_value"));
    text += &record("u", 3, Value::Null, customer_row(3, None, jan23, "n"));
    // Deleted, then created again and updated.
    text += &record("d", 4, serde_json::json!({"customer_id": 4}), Value::Null);
    text += "{\"topic\":\"postgres.public.customers\",\"key\":{\"customer_id\":4},\"value\":null}\n";
    text += &record("c", 4, Value::Null, customer_row(4, Some("b@x"), jan23, "back"));
    text += &record("u", 4, Value::Null, customer_row(4, Some("c@x"), jan23, "back"));
    // A primary-key change (delete and create at one LSN) whose TOASTed notes stay in the source.
    text += &record("c", 5, Value::Null, customer_row(5, Some("d@x"), jan23, "HUGE"));
    text += &record_at("d", 5, serde_json::json!({"customer_id": 5}), Value::Null, 77.into());
    let toasted = customer_row(6, Some("d@x"), jan23, "__debezium_unavailable_value");
    text += &record_at("c", 6, Value::Null, toasted, 77.into());
    let input = dir.path().join("moves.ndjson");
    std::fs::write(&input, text).unwrap();

    for (name, flags) in [("one", &[][..]), ("each", &["--batch-size", "1", "--commit-rows", "1"][..])] {
        let wh = dir.path().join(name);
        let summary = mirror_run(dir.path(), &input, &wh, flags);
        assert_eq!(summary["dead_letters"], 1, "{name}: the rejected update: {summary}");
        let got = mirror_rows(&wh);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![1, 2, 4, 6], "{name}");
        assert_eq!(got[&6]["notes"], "HUGE", "{name}: TOASTed notes carried over a key change");
        assert_eq!(got[&1]["registration_date"], "2024-03-18", "{name}");
        assert_eq!(got[&2]["registration_date"], "2024-03-18", "{name}");
        assert_eq!(got[&2]["notes"], "BIG", "{name}: the TOASTed value is kept across the move");
        assert_eq!(got[&4]["email"], "c@x", "{name}");
        assert_eq!(got[&4]["notes"], "back", "{name}");
        let checked = deletes_in_their_files_partition(&wh);
        if name == "each" {
            assert!(checked >= 4, "{name}: {checked} deleted positions");
        }
        // Files are sorted by the sort order and each holds one partition.
        let table = read_table(&wh, TABLE);
        for f in table["files"].as_array().unwrap() {
            assert_ne!(f["sorted"], false, "{f}");
        }
    }
}

/// A key the chain leaves out (a rule rejects it) and an update brings back while its large notes
/// stay unchanged in the source (Debezium sends the TOAST placeholder): the row comes back with the
/// notes the source holds, within one run and when a restart falls between the two; the same for a
/// left-out key whose primary key changes, and for a primary-key change split by a restart.
#[test]
fn a_left_out_key_comes_back_with_its_toasted_values() {
    let dir = tempfile::tempdir().unwrap();
    let jan23 = 19372;
    let big = |c: &str| c.repeat(3000);
    let placeholder = "__debezium_unavailable_value";
    let mut out = String::new();
    // Key 7 is in the table, then rejected twice (no email), its notes untouched each time.
    out += &record("c", 7, Value::Null, customer_row(7, Some("a@x"), jan23, &big("s")));
    out += &record("u", 7, Value::Null, customer_row(7, None, jan23, placeholder));
    out += &record("u", 7, Value::Null, customer_row(7, None, jan23 + 40, placeholder));
    // Key 8 is rejected from its first event on.
    out += &record("c", 8, Value::Null, customer_row(8, None, jan23, &big("e")));
    // Key 9 is left out, then deleted: nothing is held for it any more.
    out += &record("c", 9, Value::Null, customer_row(9, None, jan23, &big("n")));
    out += &record("d", 9, serde_json::json!({"customer_id": 9}), Value::Null);
    // Key 10 is left out, then its primary key changes to 11 (a delete and a create at one LSN).
    out += &record("c", 10, Value::Null, customer_row(10, None, jan23, &big("k")));
    out += &record_at("d", 10, serde_json::json!({"customer_id": 10}), Value::Null, 88.into());
    out += &record_at("c", 11, Value::Null, customer_row(11, None, jan23, placeholder), 88.into());
    // Key 12's primary key changes to 13 where the restart falls: between the delete and the create.
    out += &record("c", 12, Value::Null, customer_row(12, Some("e@x"), jan23, &big("p")));
    out += &record_at("d", 12, serde_json::json!({"customer_id": 12}), Value::Null, 99.into());
    let mut back = String::new();
    back += &record_at("c", 13, Value::Null, customer_row(13, Some("e@x"), jan23, placeholder), 99.into());
    back += &record("u", 7, Value::Null, customer_row(7, Some("b@x"), jan23, placeholder));
    back += &record("u", 8, Value::Null, customer_row(8, Some("c@x"), jan23, placeholder));
    back += &record("u", 11, Value::Null, customer_row(11, Some("d@x"), jan23, placeholder));
    let (first, second) = (dir.path().join("out.ndjson"), dir.path().join("back.ndjson"));
    std::fs::write(&first, &out).unwrap();
    std::fs::write(&second, &back).unwrap();
    let whole = dir.path().join("whole.ndjson");
    std::fs::write(&whole, out + &back).unwrap();

    let check = |wh: &Path, how: &str| {
        let got = mirror_rows(wh);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![7, 8, 11, 13], "{how}");
        assert_eq!(got[&13]["notes"], big("p").as_str(), "{how}: key 13 keeps the notes of key 12");
        assert_eq!(got[&11]["notes"], big("k").as_str(), "{how}: key 11 keeps the notes of key 10");
        assert_eq!(got[&7]["notes"], big("s").as_str(), "{how}: key 7 keeps the notes it had");
        assert_eq!(got[&7]["email"], "b@x", "{how}");
        assert_eq!(
            got[&8]["notes"],
            big("e").as_str(),
            "{how}: key 8 keeps the notes of its rejected insert"
        );
        // Nothing is held once both keys are back.
        assert_eq!(last_summary(wh, "cdc-host.mirror.held-values"), "", "{how}");
    };
    for (name, flags) in [("one", &[][..]), ("each", &["--batch-size", "1", "--commit-rows", "1"][..])] {
        let wh = dir.path().join(name);
        mirror_run(dir.path(), &whole, &wh, flags);
        check(&wh, name);
    }
    let wh = dir.path().join("restarted");
    mirror_run(dir.path(), &first, &wh, &[]);
    let held = last_summary(&wh, "cdc-host.mirror.held-values");
    assert!(held.as_str().is_some_and(|p| p.contains("held-values")), "keys 7 and 8 are held: {held}");
    mirror_run(dir.path(), &second, &wh, &[]);
    check(&wh, "across a restart");
}

/// The current snapshot's summary value `key` (pyiceberg).
fn last_summary(warehouse: &Path, key: &str) -> Value {
    let script = r#"
import sys, json
sys.path.insert(0, sys.argv[1])
from read_table import open_catalog
t = open_catalog("iceberg", None, sys.argv[2]).load_table(sys.argv[3])
print(json.dumps(t.current_snapshot().summary.additional_properties.get(sys.argv[4])))
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script, repo().join("tests").to_str().unwrap(), warehouse.to_str().unwrap(), TABLE, key])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A commit's files are written while the next batches arrive: updates and deletes then reach keys
/// whose rows are still being written. A realistic stream committed every few hundred rows must leave
/// the table the same stream committed at once leaves.
#[test]
fn commits_overlapping_later_changes_leave_the_table_one_commit_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("stream.ndjson");
    generate_stream(&input, 10_000, &["--months", "24", "--seed", "5"]);
    let (once, often) = (dir.path().join("once"), dir.path().join("often"));
    let one = mirror_run(dir.path(), &input, &once, &["--commit-rows", "1000000"]);
    assert_eq!(one["commits"], 1);
    let many = mirror_run(dir.path(), &input, &often, &["--batch-size", "50", "--commit-rows", "200"]);
    assert!(many["commits"].as_u64().unwrap() > 30, "expected many commits: {many}");
    let rows = mirror_rows(&often);
    assert_eq!(rows.len() as u64, one["rows_committed"].as_u64().unwrap());
    assert_eq!(rows, mirror_rows(&once), "committing often changed the table");
    assert_eq!(comparable_rows(&read_table(&often, TABLE)), comparable_rows(&read_table(&once, TABLE)));
}

#[test]
fn compaction_applies_position_deletes_and_the_index_follows() {
    let setting = "schemas_true__decimal_precise";
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("warehouse");
    for f in scenario_files(setting) {
        mirror_run(dir.path(), &f, &wh, &["--batch-size", "1", "--commit-rows", "1"]);
    }
    assert_ne!(last_summary(&wh, "total-delete-files"), "0");
    // `cdc-host maintain`: every partition with deleted rows is rewritten without them.
    let out = host_command(dir.path())
        .args(["--warehouse", wh.to_str().unwrap(), "maintain", "--orphans-older-than-seconds", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "maintain: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(report["delete_files_removed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(last_summary(&wh, "total-delete-files"), "0", "{report}");
    assert_same(setting, "compacted", &mirror_rows(&wh));
    // A host started on the compacted table rebuilds its index from the rewritten files.
    let update = fixtures().join(setting).join("replica_identity_full.ndjson");
    mirror_run(
        dir.path(),
        &update,
        &wh,
        &["--source-id", "again", "--batch-size", "1", "--commit-rows", "1"],
    );
    assert_same(setting, "updated after compaction", &mirror_rows(&wh));

    // A running mirror host compacts in line every few commits and keeps going on the new files.
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let config = dir.path().join("maintained.toml");
    std::fs::write(
        &config,
        shipped
            .replace("every_commits = 20", "every_commits = 3")
            .replace("min_input_files = 5", "min_input_files = 2")
            .replace("mode = \"append\"", "mode = \"mirror\""),
    )
    .unwrap();
    let wh = dir.path().join("maintained");
    let input = before_truncate(setting, dir.path());
    let summary = host_ok(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--plugins",
            plugins_dir().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--batch-size",
            "1",
            "--commit-rows",
            "1",
        ],
    );
    assert!(summary["commits"].as_u64().unwrap() > 6, "{summary}");
    let table = read_table(&wh, TABLE);
    let compactions = table["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["summary"]["cdc-host.maintenance"] == "compaction")
        .count();
    assert!(compactions > 0, "no compaction ran in the host");
    assert_same(setting, "compacted while running", &mirror_rows(&wh));
}

/// Spark's Python (`CDC_TEST_SPARK_PYTHON`, else `.venv-spark` from `scripts/spark-setup`) and the jars
/// it needs, when installed.
fn spark() -> Option<(PathBuf, String)> {
    let python = std::env::var_os("CDC_TEST_SPARK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv-spark/bin/python"));
    let m2 = PathBuf::from(std::env::var_os("HOME")?).join(".m2/repository");
    let jars = [
        "org/apache/iceberg/iceberg-spark-runtime-4.1_2.13/1.11.0/iceberg-spark-runtime-4.1_2.13-1.11.0.jar",
        "org/xerial/sqlite-jdbc/3.50.3.0/sqlite-jdbc-3.50.3.0.jar",
    ]
    .map(|j| m2.join(j));
    (python.is_file() && jars.iter().all(|j| j.is_file()))
        .then(|| (python, jars.map(|j| j.to_string_lossy().into_owned()).join(",")))
}

#[test]
fn spark_reads_the_mirror_like_pyiceberg() {
    let (python, jars) = spark()
        .expect("Spark is not installed: run scripts/spark-setup (scripts/test does) to install pyspark and the Iceberg runtime");
    let setting = "schemas_true__decimal_string";
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("warehouse");
    // A commit per event: the table has many position-delete files.
    for f in scenario_files(setting) {
        mirror_run(dir.path(), &f, &wh, &["--batch-size", "1", "--commit-rows", "1"]);
    }
    let columns =
        "customer_id, email, full_name, location, customer_tier, lifetime_value, registration_date, notes";
    let out = std::process::Command::new(python)
        .arg(repo().join("tests/read_table_spark.py"))
        .args([wh.to_str().unwrap(), TABLE, columns, &jars])
        .output()
        .unwrap();
    assert!(out.status.success(), "spark: {}", String::from_utf8_lossy(&out.stderr));
    let spark: Vec<Vec<Value>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let r: Map<String, Value> = serde_json::from_str(l).unwrap();
            columns.split(", ").map(|c| r[c].clone()).collect()
        })
        .collect();
    let table = read_table(&wh, TABLE);
    let mut pyiceberg: Vec<Vec<Value>> = rows(&table)
        .into_iter()
        .map(|r| {
            columns
                .split(", ")
                .map(|c| match &r[c] {
                    Value::Null => Value::Null,
                    Value::String(s) => Value::String(s.clone()),
                    other => Value::String(other.to_string()),
                })
                .collect()
        })
        .collect();
    pyiceberg.sort_by_key(|r| r[0].as_str().unwrap().parse::<i64>().unwrap());
    assert_eq!(spark.len(), expected(setting).len());
    assert_eq!(spark, pyiceberg, "Spark and pyiceberg read the same rows");
}
