//! Conformance of the plugin SDKs: the reference chain (`name-concat`, `location`, `business-rules`)
//! written in C, Go, Python and JavaScript, and a chain mixing languages, give the same Iceberg tables
//! as the Rust chain, row for row (the main table and the dead-letter table, `_ingestion_timestamp`
//! aside), over every shared Debezium fixture (all three converter settings) and a generated stream
//! of 100k records full of edge cases (null, blank and Unicode-whitespace parts, Unicode names,
//! missing emails, negative and huge decimals, deletes).
//!
//! The components are built by `scripts/build-plugins` into `plugins/<language>/`. The tables are
//! read back with pyiceberg.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use common::*;
use serde_json::Value;

const TABLE: &str = "analytics.customers_analytics";
const DLQ: &str = "analytics.customers_analytics_dlq";
const LANGUAGES: [&str; 4] = ["c", "go", "python", "js"];
const PLUGINS: [&str; 3] = ["name-concat", "location", "business-rules"];

/// `plugins/<language>`, checked to hold the three components.
fn language_dir(lang: &str) -> PathBuf {
    let dir = repo().join("plugins").join(lang);
    for p in PLUGINS {
        assert!(
            dir.join(format!("{p}.wasm")).is_file(),
            "plugins/{lang}/{p}.wasm is missing: run scripts/build-plugins (scripts/test does)"
        );
    }
    dir
}

/// A directory holding a chain assembled from several languages: `(plugin, language)` in chain order.
fn mixed_dir(dir: &Path, parts: &[(&str, &str)]) -> PathBuf {
    let out = dir.join("mixed-plugins");
    std::fs::create_dir_all(&out).unwrap();
    for (plugin, lang) in parts {
        std::fs::copy(language_dir(lang).join(format!("{plugin}.wasm")), out.join(format!("{plugin}.wasm")))
            .unwrap();
    }
    out
}

/// The rows of a table as canonical JSON (columns sorted, `_ingestion_timestamp` left out), sorted.
fn canonical(table: &Value) -> Vec<String> {
    let mut rows: Vec<String> = rows(table)
        .into_iter()
        .map(|r| {
            let sorted: BTreeMap<&String, &Value> =
                r.iter().filter(|(k, _)| k.as_str() != "_ingestion_timestamp").collect();
            serde_json::to_string(&sorted).unwrap()
        })
        .collect();
    rows.sort();
    rows
}

struct Tables {
    summary: Value,
    main: Vec<String>,
    dead: Vec<String>,
}

/// Runs the shipped config with the components of `plugins` over `input` into a fresh warehouse.
fn run_chain(dir: &Path, name: &str, plugins: &Path, input: &Path) -> Tables {
    let wh = dir.join(format!("wh-{name}"));
    let summary = host_ok(
        dir,
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
        ],
    );
    let main = canonical(&read_table(&wh, TABLE));
    let dead = try_read_table(&wh, DLQ).map(|t| canonical(&t)).unwrap_or_default();
    Tables { summary, main, dead }
}

/// The first difference between two sorted row lists, for the failure message.
fn first_difference(a: &[String], b: &[String]) -> String {
    let only_a: Vec<_> = a.iter().filter(|r| b.binary_search(r).is_err()).take(3).collect();
    let only_b: Vec<_> = b.iter().filter(|r| a.binary_search(r).is_err()).take(3).collect();
    format!(
        "{} vs {} rows; only in the Rust chain's: {only_a:#?}\nonly in this one's: {only_b:#?}",
        a.len(),
        b.len()
    )
}

fn assert_same(reference: &Tables, other: &Tables, what: &str) {
    for key in ["events", "rows_committed", "dropped", "rejected", "dead_letters"] {
        assert_eq!(reference.summary[key], other.summary[key], "{what}: summary `{key}` differs");
    }
    assert!(
        reference.main == other.main,
        "{what}: main table differs: {}",
        first_difference(&reference.main, &other.main)
    );
    assert!(
        reference.dead == other.dead,
        "{what}: dead letters differ: {}",
        first_difference(&reference.dead, &other.dead)
    );
}

/// Every language's chain and two mixed chains against the Rust chain, over `input`.
fn check_all_languages(dir: &Path, input: &Path) -> Tables {
    let rust = run_chain(dir, "rust", &plugins_dir(), input);
    for lang in LANGUAGES {
        let other = run_chain(dir, lang, &language_dir(lang), input);
        assert_same(&rust, &other, &format!("{lang} chain over {}", input.display()));
    }
    let mixed = mixed_dir(dir, &[("name-concat", "python"), ("location", "go"), ("business-rules", "js")]);
    assert_same(&rust, &run_chain(dir, "mixed", &mixed, input), "python -> go -> js chain");
    let mixed2 = dir.join("mixed2");
    std::fs::create_dir_all(&mixed2).unwrap();
    for (plugin, lang) in [("name-concat", "c"), ("location", "js"), ("business-rules", "go")] {
        std::fs::copy(
            language_dir(lang).join(format!("{plugin}.wasm")),
            mixed2.join(format!("{plugin}.wasm")),
        )
        .unwrap();
    }
    assert_same(&rust, &run_chain(dir, "mixed2", &mixed2, input), "c -> js -> go chain");
    rust
}

#[test]
fn every_language_matches_rust_on_the_fixtures() {
    for setting in SETTINGS {
        let dir = tempfile::tempdir().unwrap();
        let input = all_scenarios(setting, dir.path());
        let rust = check_all_languages(dir.path(), &input);
        // The reference outcome (see tests/replay.rs): 15 rows, eve's two events rejected.
        assert_eq!(rust.main.len(), 15, "{setting}");
        assert_eq!(rust.dead.len(), 2, "{setting}");
        assert!(rust.dead.iter().all(|d| d.contains("lifetime_value -42.50 is negative")), "{:?}", rust.dead);
    }
}

/// Debezium's base64 big-endian two's complement encoding of an unscaled decimal.
fn decimal_bytes(unscaled: i64) -> String {
    let bytes = unscaled.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

/// `n` records from the fixture templates, varied to exercise every branch of the transforms.
fn generate(n: usize, path: &Path) {
    let dir = fixtures().join("schemas_false__decimal_precise");
    let mut templates: Vec<Value> = Vec::new();
    for s in ["snapshot", "insert", "update", "delete"] {
        for line in std::fs::read_to_string(dir.join(format!("{s}.ndjson"))).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if !v["value"].is_null() {
                templates.push(v);
            }
        }
    }
    let names: [Option<&str>; 12] = [
        Some("Ada"),
        Some("  Grace "),
        Some(""),
        Some("   "),
        None,
        Some("Zoë"),
        Some("Ñúñez"),
        Some("\u{00a0}Ken\u{2003}"),
        Some("\tLin\n"),
        Some("李"),
        Some("O'Brien"),
        Some("\u{3000}\u{205f}"),
    ];
    let places: [Option<&str>; 8] = [
        Some("Seattle"),
        None,
        Some(" WA "),
        Some(""),
        Some("Ciudad de México"),
        Some("\u{2028}FR"),
        Some("東京"),
        Some("US"),
    ];
    let emails: [Option<&str>; 6] =
        [Some("a@example.com"), None, Some(""), Some("  "), Some(" b@example.com "), Some("\u{00a0}")];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    for i in 0..n {
        let mut t = templates[next(templates.len())].clone();
        let id = (i % 5000 + 1) as i64;
        t["key"]["customer_id"] = id.into();
        if let Some(after) = t["value"].get_mut("after").filter(|a| a.is_object()) {
            after["customer_id"] = id.into();
            after["first_name"] = names[next(names.len())].into();
            after["last_name"] = names[next(names.len())].into();
            after["city"] = places[next(places.len())].into();
            after["state"] = places[next(places.len())].into();
            after["country"] = places[next(places.len())].into();
            after["email"] = emails[next(emails.len())].map(|e| format!("{e}{i}")).into();
            if next(10) == 0 {
                after["email"] = emails[next(emails.len())].into();
            }
            let unscaled: i64 = match next(8) {
                0 => -(next(100_000) as i64),
                1 => 0,
                2 => 999_999_999_999,
                3 => -1,
                _ => next(10_000_000) as i64,
            };
            after["lifetime_value"] =
                if next(12) == 0 { Value::Null } else { decimal_bytes(unscaled).into() };
            after["registration_date"] = (15000 + next(6000) as i64).into();
        }
        if let Some(before) = t["value"].get_mut("before").filter(|b| b.is_object()) {
            before["customer_id"] = id.into();
        }
        serde_json::to_writer(&mut out, &t).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

#[test]
fn every_language_matches_rust_on_100k_generated_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("generated.ndjson");
    generate(100_000, &input);
    let rust = check_all_languages(dir.path(), &input);
    // The stream reaches every branch: kept rows, both rejections, dropped deletes.
    assert_eq!(rust.summary["events"], 100_000, "{}", rust.summary);
    assert!(rust.summary["dropped"].as_u64().unwrap() > 1000, "{}", rust.summary);
    assert!(rust.main.len() > 20_000, "{}", rust.main.len());
    assert!(rust.dead.iter().any(|d| d.contains("missing email")));
    assert!(rust.dead.iter().any(|d| d.contains("is negative")));
    assert!(rust.main.iter().any(|r| r.contains("\"full_name\":null")));
    assert!(rust.main.iter().any(|r| r.contains("Zoë Ñúñez") || r.contains("Ñúñez Zoë")));
}
