//! One host, several tables (`[table]` with `source`, `[[tables]]`, `[routing]`): records of one
//! input land in the table of their source table, each through its own chain, and a repeated input
//! adds nothing to any of them. The Kafka side (three PostgreSQL tables through Debezium, with
//! SIGKILLs) is `tests/kafka.rs`.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

const TABLE: &str = "analytics.customers_analytics";
const ORDERS: &str = "raw.public_orders";

/// A schemaless Debezium record of `public.orders`.
fn order(op: &str, id: i64, amount: &str, lsn: i64) -> String {
    let row =
        json!({"order_id": id, "amount": amount, "tags": ["a", "b"], "placed_at": "2024-05-01T08:00:00Z"});
    let (before, after) = if op == "d" { (json!({"order_id": id}), Value::Null) } else { (Value::Null, row) };
    let value = json!({
        "before": before, "after": after, "op": op,
        "source": {"schema": "public", "table": "orders", "ts_ms": 1, "lsn": lsn},
    });
    json!({"topic": "postgres.public.orders", "key": {"order_id": id}, "value": value}).to_string()
}

/// The customers fixtures with `public.orders` changes interleaved (one after every other record,
/// a delete with its tombstone among them).
fn mixed_input(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let customers = all_scenarios("schemas_false__decimal_precise", dir);
    let mut text = String::new();
    let mut n = 0;
    for (i, line) in std::fs::read_to_string(&customers).unwrap().lines().enumerate() {
        text += line;
        text.push('\n');
        if i % 2 == 1 {
            n += 1;
            text += &order("c", n, &format!("{n}.25"), 1000 + n);
            text.push('\n');
        }
    }
    text += &order("u", 1, "99.99", 5000);
    text += "\n";
    text += &order("d", 2, "", 5001);
    text += "\n{\"topic\":\"postgres.public.orders\",\"key\":{\"order_id\":2},\"value\":null}\n";
    let mixed = dir.join("mixed.ndjson");
    std::fs::write(&mixed, text).unwrap();
    (customers, mixed)
}

#[test]
fn records_land_in_the_table_of_their_source_table() {
    let dir = tempfile::tempdir().unwrap();
    let (customers, mixed) = mixed_input(dir.path());
    let orders_in = std::fs::read_to_string(&mixed).unwrap().matches("public.orders\"").count() as u64;

    let wh = dir.path().join("wh");
    let summary = run_shipped(dir.path(), &mixed, &wh);
    let tables = summary["tables"].as_array().unwrap_or_else(|| panic!("two tables: {summary}"));
    let names: Vec<&str> = tables.iter().map(|t| t["table"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["iceberg.analytics.customers_analytics", "iceberg.raw.public_orders"]);
    assert_eq!(tables[1]["records"], orders_in, "{summary}");
    assert_eq!(tables[1]["chain"], "", "the default tables' chain is empty in the shipped config");

    // The customers table is what a run over the customers records alone leaves.
    let alone = dir.path().join("alone");
    let one = run_shipped(dir.path(), &customers, &alone);
    assert!(one.get("tables").is_none(), "one table: the summary is that table's: {one}");
    assert_eq!(comparable_rows(&read_table(&wh, TABLE)), comparable_rows(&read_table(&alone, TABLE)));

    // The orders table: one row per change (append), with the types the events carry.
    let orders = read_table(&wh, ORDERS);
    let rows = rows(&orders);
    let ops = |op: &str| rows.iter().filter(|r| r["_cdc_operation"] == op).count();
    assert_eq!((ops("INSERT"), ops("UPDATE"), ops("DELETE")), ((orders_in - 3) as usize, 1, 1), "{orders}");
    let updated = rows.iter().find(|r| r["_cdc_operation"] == "UPDATE").unwrap();
    assert_eq!(updated["amount"], "99.99");
    assert_eq!(updated["tags"], "[\"a\",\"b\"]");
    let types: Vec<(&str, &str)> = orders["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert!(types.contains(&("order_id", "long")) && types.contains(&("amount", "string")), "{types:?}");

    // The same input again: every table already holds it.
    let again = run_shipped(dir.path(), &mixed, &wh);
    assert_eq!(again["rows_committed"], 0, "{again}");
    assert!(again["already_committed"].as_u64() > Some(0), "{again}");
    assert_eq!(read_table(&wh, ORDERS)["num_rows"], orders["num_rows"]);
    assert_eq!(comparable_rows(&read_table(&wh, TABLE)), comparable_rows(&read_table(&alone, TABLE)));
}

#[test]
fn routing_mistakes_are_refused_with_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let cases = [
        ("[[tables]]\nname = \"orders\"\n", "tables[0]", "takes nothing"),
        ("[[tables]]\nname = \"orders\"\nsource = [\"orders\"]\n", "tables[0].source[0]", "schema.table"),
        ("[[tables]]\nname = \"o\"\ntopics = [\"^(\"]\n", "tables[0].topics[0]", "regular expression"),
        (
            "[[tables]]\nname = \"customers_analytics\"\nsource = [\"public.c\"]\n",
            "tables[0].name",
            "two entries",
        ),
    ];
    for (extra, key, says) in cases {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, format!("{shipped}\n{extra}")).unwrap();
        let err = host_err(dir.path(), &["--config", cfg.to_str().unwrap(), "--input", "/dev/null"]);
        assert!(err.contains(key) && err.contains(says), "{extra}: {err}");
    }
    let template =
        shipped.replace("default_table = \"raw.{schema}_{table}\"", "default_table = \"raw_tables\"");
    let cfg = dir.path().join("t.toml");
    std::fs::write(&cfg, template).unwrap();
    let err = host_err(dir.path(), &["--config", cfg.to_str().unwrap(), "--input", "/dev/null"]);
    assert!(err.contains("routing.default_table") && err.contains("{table}"), "{err}");
}
