//! `cdc-host table ...`: schema and property changes committed to a table the host wrote, read back
//! with pyiceberg; changes Iceberg forbids are refused with the reason, and the host keeps writing the
//! changed table.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

const TABLE: &str = "analytics.customers_analytics";

fn table_cmd(dir: &Path, wh: &Path, args: &[&str]) -> Value {
    host_ok(dir, &[&["--warehouse", wh.to_str().unwrap(), "table"], args].concat())
}

fn table_err(dir: &Path, wh: &Path, args: &[&str]) -> String {
    host_err(dir, &[&["--warehouse", wh.to_str().unwrap(), "table"], args].concat())
}

/// Column name → Iceberg type, as pyiceberg reads the table.
fn schema(t: &Value) -> Vec<(String, String)> {
    t["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["type"].as_str().unwrap().to_string()))
        .collect()
}

fn type_of(t: &Value, column: &str) -> Option<String> {
    schema(t).into_iter().find(|(n, _)| n == column).map(|(_, ty)| ty)
}

fn values(t: &Value, column: &str) -> BTreeSet<String> {
    rows(t).iter().map(|r| r.get(column).map(|v| v.to_string()).unwrap_or_default()).collect()
}

#[test]
fn schema_commands_change_the_table_and_refuse_what_iceberg_forbids() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let input = repo().join("examples/customers.ndjson");
    let first = run_shipped(dir.path(), &input, &wh);
    let before = read_table(&wh, TABLE);
    let shown = table_cmd(dir.path(), &wh, &["show"]);
    assert_eq!(shown["partition"], serde_json::json!(["month(registration_date)"]), "{shown}");
    assert_eq!(shown["sort"], serde_json::json!(["customer_id"]), "{shown}");
    assert_eq!(shown["columns"].as_array().unwrap().len(), schema(&before).len());
    let notes = values(&before, "notes");

    // Add, then widen.
    let out = table_cmd(dir.path(), &wh, &["add-column", "score", "int", "--doc", "a test column"]);
    assert!(out["columns"].as_array().unwrap().iter().any(|c| c["name"] == "score" && c["type"] == "int"));
    table_cmd(dir.path(), &wh, &["widen-column", "score", "long"]);
    let err = table_err(dir.path(), &wh, &["widen-column", "score", "int"]);
    assert!(err.contains("cannot change `score` from long to int"), "{err}");
    let err = table_err(dir.path(), &wh, &["widen-column", "email", "long"]);
    assert!(err.contains("Iceberg allows only int → long"), "{err}");
    let t = read_table(&wh, TABLE);
    assert_eq!(type_of(&t, "score").as_deref(), Some("long"));
    assert_eq!(rows(&t).len(), rows(&before).len());
    assert!(rows(&t).iter().all(|r| r["score"].is_null()), "a new column is null in existing rows");
    // Adding it again with its type is a no-op; with another type an error.
    table_cmd(dir.path(), &wh, &["add-column", "score", "long"]);
    let err = table_err(dir.path(), &wh, &["add-column", "score", "string"]);
    assert!(err.contains("exists already"), "{err}");

    // The host keeps writing the changed table.
    let again = run_shipped_with(dir.path(), &input, &wh, &["--source-id", "second-load"]);
    assert_eq!(again["rows_committed"], first["rows_committed"]);
    assert_eq!(rows(&read_table(&wh, TABLE)).len(), 2 * rows(&before).len());

    // Rename: the data follows the column (matched by field id).
    table_cmd(dir.path(), &wh, &["rename-column", "notes", "remarks"]);
    let t = read_table(&wh, TABLE);
    assert_eq!(type_of(&t, "notes"), None);
    assert_eq!(values(&t, "remarks"), notes);
    let err = table_err(dir.path(), &wh, &["rename-column", "remarks", "email"]);
    assert!(err.contains("`email` exists"), "{err}");

    // Drop: refused for partition and sort columns, done for others.
    let err = table_err(dir.path(), &wh, &["drop-column", "registration_date"]);
    assert!(err.contains("partitioned by it"), "{err}");
    let err = table_err(dir.path(), &wh, &["drop-column", "customer_id"]);
    assert!(err.contains("sort order"), "{err}");
    table_cmd(dir.path(), &wh, &["drop-column", "remarks"]);
    let t = read_table(&wh, TABLE);
    assert_eq!(type_of(&t, "remarks"), None);
    assert!(rows(&t).iter().all(|r| !r.contains_key("remarks")));
    let err = table_err(dir.path(), &wh, &["widen-column", "nope", "long"]);
    assert!(err.contains("no column `nope`"), "{err}");

    // Properties.
    table_cmd(dir.path(), &wh, &["set-property", "write.metadata.previous-versions-max", "50"]);
    let t = read_table(&wh, TABLE);
    assert_eq!(t["properties"]["write.metadata.previous-versions-max"], "50");
    table_cmd(dir.path(), &wh, &["set-property", "write.metadata.previous-versions-max", "--remove"]);
    let t = read_table(&wh, TABLE);
    assert!(t["properties"].get("write.metadata.previous-versions-max").is_none());
    let err = table_err(dir.path(), &wh, &["set-property", "format-version", "3"]);
    assert!(err.contains("reserved by Iceberg"), "{err}");
}

#[test]
fn a_mirror_table_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    run_shipped_with(
        dir.path(),
        &repo().join("examples/customers.ndjson"),
        &wh,
        &["--table-mode", "mirror", "--table", "mirror_customers"],
    );
    let err = host_err(
        dir.path(),
        &[
            "--warehouse",
            wh.to_str().unwrap(),
            "--table",
            "mirror_customers",
            "table",
            "drop-column",
            "customer_id",
        ],
    );
    assert!(err.contains("identifier field"), "{err}");
}

#[test]
fn changing_a_table_that_does_not_exist_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let err = table_err(dir.path(), &wh, &["add-column", "x", "long"]);
    assert!(err.contains("does not exist"), "{err}");
}

/// A bare Debezium create of customer `id` (JSON converter without schemas) with the given
/// `loyalty_points` and `lifetime_value` (decimal as text).
fn create(id: i64, points: i64, value: &str) -> String {
    serde_json::json!({
        "before": null,
        "after": {
            "customer_id": id, "email": format!("c{id}@example.com"), "first_name": "A", "last_name": "B",
            "city": "Oslo", "state": null, "country": "NO", "customer_tier": "gold",
            "lifetime_value": value, "registration_date": 19000, "created_at": "2024-01-01T00:00:00Z",
            "notes": null, "loyalty_points": points,
        },
        "source": {"schema": "public", "table": "customers", "ts_ms": 1_700_000_000_000i64, "snapshot": "false"},
        "op": "c",
        "ts_ms": 1_700_000_000_000i64,
    })
    .to_string()
}

/// The shipped config with `loyalty_points` declared `int`, and `evolve_schema` as given.
fn widening_config(dir: &Path, evolve: bool) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let notes = shipped.lines().find(|l| l.contains("name = \"notes\"")).unwrap();
    let evolve_line = shipped.lines().find(|l| l.starts_with("evolve_schema")).unwrap();
    let text = shipped
        .replace(notes, &format!("{notes}\n  {{ name = \"loyalty_points\", type = \"int\" }},"))
        .replace(evolve_line, &format!("evolve_schema = {evolve}"));
    let p = dir.join(format!("widening-{evolve}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_source_column_that_widens_widens_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("wide.ndjson");
    let lines = [
        create(1, 10, "100.25"),
        create(2, 5_000_000_000, "7.00"),
        create(3, 20, "12345678901234.50"),
        create(4, 30, "1.00"),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let wh = dir.path().join("wh");
    let summary = run_configured_ok(dir.path(), &widening_config(dir.path(), true), &input, &wh, 2);
    assert_eq!(summary["dead_letters"], 0, "{summary}");
    let t = read_table(&wh, TABLE);
    assert_eq!(type_of(&t, "loyalty_points").as_deref(), Some("long"));
    assert_eq!(type_of(&t, "lifetime_value").as_deref(), Some("decimal(16, 2)"));
    let by_id: std::collections::BTreeMap<i64, (Value, Value)> = rows(&t)
        .iter()
        .map(|r| {
            (r["customer_id"].as_i64().unwrap(), (r["loyalty_points"].clone(), r["lifetime_value"].clone()))
        })
        .collect();
    assert_eq!(by_id[&1], (Value::from(10), Value::from("100.25")));
    assert_eq!(by_id[&2], (Value::from(5_000_000_000i64), Value::from("7.00")));
    assert_eq!(by_id[&3], (Value::from(20), Value::from("12345678901234.50")));
    assert_eq!(by_id.len(), 4);

    // Without schema evolution the table keeps its types and the records that do not fit are dead
    // letters, as before.
    let wh = dir.path().join("fixed");
    let summary = run_configured_ok(dir.path(), &widening_config(dir.path(), false), &input, &wh, 2);
    assert_eq!(summary["dead_letters"], 2, "{summary}");
    let t = read_table(&wh, TABLE);
    assert_eq!(type_of(&t, "loyalty_points").as_deref(), Some("int"));
    assert_eq!(rows(&t).len(), 2);
}
