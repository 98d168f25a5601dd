//! Replays every shared Debezium fixture scenario through the real binary and the shipped WASM plugins
//! into a local Iceberg warehouse, then reads the tables back with pyiceberg and checks the values.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

const TABLE: &str = "analytics.customers_analytics";
const DLQ: &str = "analytics.customers_analytics_dlq";

fn s<'a>(row: &'a serde_json::Map<String, Value>, col: &str) -> Option<&'a str> {
    row.get(col).and_then(Value::as_str)
}

/// A row without the columns that differ from run to run (`created_at` defaults to `now()` in the
/// database, and each converter setting was captured in its own run).
fn stable(row: &serde_json::Map<String, Value>) -> String {
    let mut r = row.clone();
    r.remove("_ingestion_timestamp");
    r.remove("created_at");
    serde_json::to_string(&r).unwrap()
}

fn replay(dir: &std::path::Path, input: &std::path::Path) -> (Value, Value, Value) {
    let wh = dir.join("warehouse");
    let summary = run_shipped(dir, input, &wh);
    let table = read_table(&wh, TABLE);
    let dlq = read_table(&wh, DLQ);
    (summary, table, dlq)
}

fn check_replay(setting: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let input = all_scenarios(setting, dir.path());
    check_replay_of(dir.path(), &input)
}

/// Every scenario of `schemas_true__decimal_string` with the embedded schemas removed, in
/// `dir/events.ndjson`: what Debezium writes with `schemas.enable=false` and
/// `decimal.handling.mode=string` (JsonConverter then writes only the payload).
fn schemaless_string_decimals(dir: &std::path::Path) -> std::path::PathBuf {
    let with_schemas = all_scenarios("schemas_true__decimal_string", dir);
    let strip = |v: &Value| match v.get("payload") {
        Some(p) if v.get("schema").is_some() => p.clone(),
        _ => v.clone(),
    };
    let text: String = std::fs::read_to_string(&with_schemas)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let line = serde_json::json!({"topic": v["topic"], "key": strip(&v["key"]), "value": strip(&v["value"])});
            line.to_string() + "\n"
        })
        .collect();
    assert!(!text.contains("\"schema\":{"), "schemas left in the stream");
    assert!(text.contains(r#""lifetime_value":"1234.56""#), "decimals are text");
    std::fs::write(&with_schemas, text).unwrap();
    with_schemas
}

/// Replays `input` (every scenario, 24 records) through the shipped configuration and checks the
/// table, the dead letters and the summary; returns the rows without the run-dependent columns.
fn check_replay_of(dir: &std::path::Path, input: &std::path::Path) -> BTreeSet<String> {
    let (summary, table, dlq) = replay(dir, input);
    let rows = rows(&table);

    // Counts: 20 change events; 3 deletes dropped; customer 5 has a negative lifetime_value twice.
    assert_eq!(summary["records"], 24, "{summary}");
    assert_eq!(summary["events"], 20, "{summary}");
    assert_eq!(summary["tombstones"], 3);
    assert_eq!(summary["truncates"], 1);
    assert_eq!(summary["dropped"], 3);
    assert_eq!(summary["rejected"], 2);
    assert_eq!(summary["toast_placeholders"], 1);
    assert_eq!(summary["dead_letters"], 2, "only business-rules' two rejections: {summary}");
    assert_eq!(summary["rows_committed"], 15);
    assert_eq!(table["num_rows"], 15);

    // Table shape: plugin columns present, their sources removed, metadata columns added.
    let columns: Vec<&str> =
        table["schema"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for c in [
        "customer_id",
        "email",
        "full_name",
        "location",
        "lifetime_value",
        "registration_date",
        "loyalty_points",
    ] {
        assert!(columns.contains(&c), "missing column {c}: {columns:?}");
    }
    for c in ["_ingestion_timestamp", "_source_system", "_cdc_operation", "_pipeline_id"] {
        assert!(columns.contains(&c), "missing metadata column {c}");
    }
    for c in ["first_name", "last_name", "city", "state", "country"] {
        assert!(!columns.contains(&c), "column {c} should have been removed by the plugins");
    }
    let ty = |name: &str| {
        table["schema"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(ty("customer_id"), "long");
    assert_eq!(ty("lifetime_value"), "decimal(12, 2)");
    assert_eq!(ty("registration_date"), "date");
    assert_eq!(ty("created_at"), "timestamptz");
    assert_eq!(table["partition_spec"][0]["source"], "registration_date");
    assert_eq!(table["partition_spec"][0]["transform"], "month");
    assert_eq!(table["sort_order"][0]["source"], "customer_id");

    // Files: sorted by customer_id; zstd, snappy below 16,384 rows (`sink.small_file_compression`).
    for f in table["files"].as_array().unwrap() {
        let codec = if f["records"].as_u64().unwrap() < 16_384 { "SNAPPY" } else { "ZSTD" };
        assert_eq!(f["codecs"], serde_json::json!([codec]), "{f}");
        assert_eq!(f["sorted"], true, "file not sorted by customer_id: {f}");
    }

    // Snapshot summary records pipeline, chain and source position.
    let snap = &table["snapshots"].as_array().unwrap().last().unwrap()["summary"];
    assert_eq!(snap["cdc-host.pipeline-id"], "postgres-to-iceberg");
    let chain = snap["cdc-host.chain"].as_str().unwrap();
    assert!(
        chain.starts_with("name-concat@")
            && chain.contains(",location@")
            && chain.contains(",business-rules@"),
        "{chain}"
    );
    assert!(snap["cdc-host.positions.postgres-to-iceberg"].as_str().unwrap().contains(":25}"), "{snap}");

    // Values.
    for r in &rows {
        assert_ne!(s(r, "_cdc_operation"), Some("DELETE"), "the analytics table keeps no delete rows");
        assert_eq!(s(r, "_source_system"), Some("postgres_cdc"));
        assert_eq!(s(r, "_pipeline_id"), Some("postgres-to-iceberg"));
        assert!(s(r, "email").is_some_and(|e| e.contains('@')));
        assert!(!r["notes"].as_str().is_some_and(|n| n.contains("__debezium_unavailable_value")));
    }
    let alice = customer(&rows, 1);
    assert_eq!(alice.len(), 3);
    assert!(alice.iter().all(|r| s(r, "full_name") == Some("Alice Anderson")));
    assert!(alice.iter().all(|r| s(r, "registration_date") == Some("2023-01-15")));
    let mut seen: Vec<(Option<&str>, Option<&str>, Option<&str>)> =
        alice.iter().map(|r| (s(r, "_cdc_operation"), s(r, "location"), s(r, "lifetime_value"))).collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (Some("INSERT"), Some("Seattle, WA, US"), Some("1234.56")),
            (Some("UPDATE"), Some("Portland, OR, US"), Some("1234.56")),
            (Some("UPDATE"), Some("Portland, OR, US"), Some("1500.00")),
        ]
    );
    let bob = customer(&rows, 2);
    let mut bob_values: Vec<_> = bob.iter().map(|r| s(r, "lifetime_value")).collect();
    bob_values.sort();
    assert_eq!(bob_values, vec![Some("1300.10"), Some("99.90")]);
    assert_eq!(customer(&rows, 3).len(), 1, "carol's snapshot row stays; her delete is dropped");
    assert_eq!(s(customer(&rows, 3)[0], "lifetime_value"), Some("0.00"));
    let dave = customer(&rows, 4);
    assert_eq!(dave.len(), 1);
    assert_eq!(s(dave[0], "location"), Some("Paris, FR"), "null state skipped");
    assert_eq!(s(dave[0], "lifetime_value"), Some("9999999999.99"));
    assert_eq!(s(dave[0], "registration_date"), Some("1999-12-31"));
    assert_eq!(customer(&rows, 104).len(), 1, "the new key of the primary-key change");
    assert!(customer(&rows, 5).is_empty(), "eve's negative lifetime_value is rejected");
    let grace = customer(&rows, 7);
    assert_eq!(grace.len(), 1);
    assert!(grace[0]["lifetime_value"].is_null() && grace[0]["registration_date"].is_null());
    assert_eq!(s(customer(&rows, 8)[0], "lifetime_value"), Some("0.01"));
    assert_eq!(customer(&rows, 9)[0]["loyalty_points"], 250);
    let ivan = customer(&rows, 10);
    assert_eq!(ivan.len(), 3);
    let toasted: Vec<_> = ivan.iter().filter(|r| r["notes"].is_null()).collect();
    assert_eq!(toasted.len(), 1, "exactly the update that did not touch notes has it null");
    assert_eq!(s(toasted[0], "location"), Some("Plovdiv, BG"));
    assert!(
        ivan.iter().filter(|r| !r["notes"].is_null()).all(|r| s(r, "notes").unwrap().starts_with("BIGNOTE"))
    );
    let created = s(alice[0], "created_at").unwrap();
    assert_eq!(created, "2024-03-01T10:15:30.123456+00:00");

    // Dead letters: both of eve's events, with the plugin, the reason and the original record.
    let dead = common::rows(&dlq);
    assert_eq!(dead.len(), 2, "{dlq}");
    for d in &dead {
        assert_eq!(s(d, "stage"), Some("transform"));
        assert_eq!(s(d, "plugin"), Some("business-rules"));
        assert!(s(d, "reason").unwrap().contains("lifetime_value"), "{d:?}");
        assert!(s(d, "reason").unwrap().contains("-42.50"), "{d:?}");
        assert!(s(d, "record").unwrap().contains("eve@example.com"));
        assert!(s(d, "source_position").unwrap().contains("events.ndjson:"));
    }

    rows.iter().map(|r| stable(r)).collect()
}

#[test]
fn replay_schemas_false_decimal_precise() {
    check_replay("schemas_false__decimal_precise");
}

#[test]
fn replay_schemas_true_decimal_precise() {
    check_replay("schemas_true__decimal_precise");
}

#[test]
fn replay_schemas_true_decimal_string() {
    check_replay("schemas_true__decimal_string");
}

/// `schemas.enable=false` with `decimal.handling.mode=string`: the shipped configuration
/// (`decimal_handling = "precise"`) recognises the text decimals by themselves.
#[test]
fn replay_schemas_false_decimal_string_with_the_shipped_config() {
    let dir = tempfile::tempdir().unwrap();
    let input = schemaless_string_decimals(dir.path());
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    assert!(shipped.contains("decimal_handling = \"precise\""), "the shipped setting is precise");
    // check_replay_of asserts the decimal values and that the only dead letters are the two events
    // business-rules rejects (none from decode).
    let rows = check_replay_of(dir.path(), &input);
    assert_eq!(rows.len(), 15);
}

#[test]
fn converter_settings_agree_row_for_row() {
    let a = check_replay("schemas_false__decimal_precise");
    let b = check_replay("schemas_true__decimal_string");
    // Without schemas `loyalty_points` is inferred as long, with schemas it is an int: same values.
    let only_a: Vec<_> = a.difference(&b).collect();
    let only_b: Vec<_> = b.difference(&a).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only without schemas: {only_a:#?}\nonly with schemas: {only_b:#?}"
    );
}

#[test]
fn bare_envelopes_and_stdin_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let src =
        std::fs::read_to_string(fixtures().join("schemas_false__decimal_precise/insert.ndjson")).unwrap();
    let bare: String =
        src.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["value"].to_string() + "\n").collect();
    let input = dir.path().join("bare.ndjson");
    std::fs::write(&input, bare).unwrap();
    let wh = dir.path().join("wh");
    let summary = run_shipped(dir.path(), &input, &wh);
    assert_eq!(summary["rows_committed"], 3);
    let rows_read = read_table(&wh, TABLE);
    let mut names: Vec<_> = rows(&rows_read).iter().map(|r| s(r, "full_name").unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["Frank Fischer", "Grace Garcia", "Judy Jones"]);
}
