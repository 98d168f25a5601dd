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
    let again = host_ok(
        dir.path(),
        &[
            "--plugins",
            plugins_dir().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--source-id",
            "second-load",
            "--warehouse",
            wh.to_str().unwrap(),
        ],
    );
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
