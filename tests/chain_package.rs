//! The chain as other engines run it (`cdc_chain`, the Spark job's Python extension): a packed chain
//! loads without compiling, still loads when its precompiled code does not fit the build, and the
//! embedded decode → chain → encode gives exactly the rows and dead letters the host writes from the
//! same records.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use cdc_host::change::RawBatch;
use cdc_host::embed::{self, EmbeddedChain};
use cdc_host::transform::ChainPackage;
use common::*;
use serde_json::Value;

/// Columns compared between the host's table and the embedded chain's rows.
const COLUMNS: [&str; 8] = [
    "customer_id",
    "email",
    "full_name",
    "location",
    "lifetime_value",
    "registration_date",
    "notes",
    "_cdc_operation",
];

fn shipped_package() -> ChainPackage {
    let cfg = embed::config(None, &plugins_dir()).expect("shipped config");
    ChainPackage::build(&cfg).expect("pack the shipped chain")
}

/// Every row of `batch` as text values of [`COLUMNS`] (as pyiceberg prints them).
fn batch_rows(batch: &RecordBatch) -> Vec<Vec<Value>> {
    let columns: Vec<_> = COLUMNS
        .iter()
        .map(|c| {
            let a = batch.column_by_name(c).unwrap_or_else(|| panic!("no column {c}"));
            (a.data_type() == &DataType::Int64, arrow_cast::cast(a, &DataType::Utf8).unwrap())
        })
        .collect();
    (0..batch.num_rows())
        .map(|i| {
            columns
                .iter()
                .map(|(int, a)| {
                    let a = a.as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
                    match (arrow_array::Array::is_null(a, i), int) {
                        (true, _) => Value::Null,
                        (false, true) => Value::from(a.value(i).parse::<i64>().unwrap()),
                        (false, false) => Value::from(a.value(i)),
                    }
                })
                .collect()
        })
        .collect()
}

fn counted<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut out = BTreeMap::new();
    for i in items {
        *out.entry(i).or_insert(0) += 1;
    }
    out
}

#[test]
fn the_embedded_chain_writes_what_the_host_writes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("stream.ndjson");
    generate_stream(&input, 3000, &["--seed", "7"]);
    let wh = dir.path().join("wh");
    let summary = run_shipped(dir.path(), &input, &wh);

    let mut chain = EmbeddedChain::new(&shipped_package()).expect("load the packed chain");
    let (mut embedded, mut reasons) = (Vec::new(), Vec::new());
    let lines: Vec<Vec<u8>> = std::io::BufReader::new(std::fs::File::open(&input).unwrap())
        .split(b'\n')
        .map(|l| l.unwrap())
        .collect();
    // Batches of 700 records: the chain's state (column order, schemas) carries across batches.
    for (b, chunk) in lines.chunks(700).enumerate() {
        let mut raw = RawBatch::default();
        raw.streams.push(input.display().to_string().into());
        for (i, line) in chunk.iter().enumerate() {
            raw.push(0, (b * 700 + i + 1) as i64, line);
        }
        let (kept, dead) = chain.process(&raw, 0).expect("process a batch");
        assert_eq!(kept.schema(), chain.schema(), "rows in the announced schema");
        assert_eq!(dead.schema(), chain.dead_letter_schema());
        embedded.extend(batch_rows(&kept));
        let r = arrow_cast::cast(dead.column_by_name("reason").unwrap(), &DataType::Utf8).unwrap();
        let r = r.as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        reasons.extend(r.iter().map(|s| s.unwrap_or_default().to_string()));
    }

    let table = read_table_columns(&wh, "analytics.customers_analytics", &COLUMNS);
    let host_rows: Vec<Vec<Value>> =
        rows(&table).into_iter().map(|r| COLUMNS.iter().map(|c| r[*c].clone()).collect()).collect();
    assert_eq!(host_rows.len() as u64, summary["rows_committed"].as_u64().unwrap());
    assert!(host_rows.len() > 1000, "a meaningful stream: {summary}");
    let as_text = |rows: Vec<Vec<Value>>| counted(rows.into_iter().map(|r| Value::from(r).to_string()));
    assert_eq!(as_text(embedded), as_text(host_rows), "the embedded chain's rows differ from the host's");

    let dlq = read_table_columns(&wh, "analytics.customers_analytics_dlq", &["reason"]);
    let host_reasons = rows(&dlq).into_iter().map(|r| r["reason"].as_str().unwrap_or_default().to_string());
    assert_eq!(counted(reasons), counted(host_reasons), "dead letters differ from the host's");
}

#[test]
fn a_package_whose_precompiled_code_does_not_fit_compiles_its_components() {
    let package = shipped_package();
    let identity = EmbeddedChain::new(&package).unwrap().identity();
    // Another build's precompiled code (here: damaged bytes) is not loaded, the component is compiled.
    let mut v: Value = serde_json::from_slice(&package.to_bytes()).unwrap();
    for p in v["plugins"].as_array_mut().unwrap() {
        p["native"] = Value::from("AAAA");
    }
    let other = ChainPackage::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
    let chain = EmbeddedChain::new(&other).expect("compiled from the components");
    assert_eq!(chain.identity(), identity, "the same chain");

    // A package of another layout names the fix.
    v["format"] = Value::from(99);
    let err = ChainPackage::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err().to_string();
    assert!(err.contains("format 99") && err.contains("pack it again"), "{err}");
    let err = ChainPackage::from_bytes(b"not a package").unwrap_err().to_string();
    assert!(err.contains("not a chain package"), "{err}");
}

#[test]
fn a_column_the_source_adds_stops_the_embedded_chain_instead_of_being_dropped() {
    let input = repo().join("examples/customers.ndjson");
    let mut raw = RawBatch::default();
    raw.streams.push("customers".into());
    for (i, line) in
        std::fs::read(&input).unwrap().split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate()
    {
        raw.push(0, i as i64 + 1, line);
    }
    // The shipped table follows the source's schema: rows without the new column would lose it.
    let mut chain = EmbeddedChain::new(&shipped_package()).unwrap();
    let err = chain.process(&raw, 0).unwrap_err().to_string();
    assert!(
        err.contains("loyalty_points") && err.contains("customers:") && err.contains("[table] columns"),
        "{err}"
    );

    // A table that does not follow it leaves the column out, as the host does.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cdc-host.toml");
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    std::fs::write(&config, shipped.replace("evolve_schema = true", "evolve_schema = false")).unwrap();
    let cfg = embed::config(Some(&config), &plugins_dir()).unwrap();
    let mut chain = EmbeddedChain::new(&ChainPackage::build(&cfg).unwrap()).unwrap();
    let (rows, dead) = chain.process(&raw, 0).expect("processed without the new column");
    assert_eq!((rows.num_rows(), dead.num_rows()), (15, 2));
    assert!(rows.column_by_name("loyalty_points").is_none());
}

#[test]
fn a_mirror_table_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cdc-host.toml");
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    std::fs::write(&config, shipped.replacen("mode = \"append\"", "mode = \"mirror\"", 1)).unwrap();
    let cfg = embed::config(Some(&config), &plugins_dir()).unwrap();
    let err = EmbeddedChain::new(&ChainPackage::build(&cfg).unwrap()).err().expect("refused").to_string();
    assert!(err.contains("kept by cdc-host") && err.contains("table.mode = \"append\""), "{err}");
}
