//! Failure handling through the real binary: bad input lines, hostile plugins, bad configuration,
//! missing or corrupt plugins, unusable warehouses. The host names the cause and the fix, never loses
//! a record silently, and survives plugins that trap, loop or exhaust memory.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const TABLE: &str = "analytics.customers_analytics";
const DLQ: &str = "analytics.customers_analytics_dlq";

fn insert_events(dir: &Path) -> PathBuf {
    let p = dir.join("insert.ndjson");
    std::fs::copy(fixtures().join("schemas_false__decimal_precise/insert.ndjson"), &p).unwrap();
    p
}

/// A plugins directory holding the hostile test component.
fn hostile_dir(dir: &Path) -> PathBuf {
    let p = dir.join("plugins");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::copy(test_plugin("hostile"), p.join("hostile.wasm")).unwrap();
    p
}

fn run_hostile(mode: &str, setting: &[(&str, &str)]) -> (Value, Vec<serde_json::Map<String, Value>>, String) {
    run_hostile_with(mode, &format!("mode = \"{mode}\""), setting)
}

/// Runs the hostile plugin with `config` (TOML inline-table content) over three events.
fn run_hostile_with(
    mode: &str,
    config: &str,
    setting: &[(&str, &str)],
) -> (Value, Vec<serde_json::Map<String, Value>>, String) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = hostile_dir(dir.path());
    let cfg = config_with(
        dir.path(),
        &format!("[[chain]]\nplugin = \"hostile\"\nconfig = {{ {config} }}\n"),
        setting,
    );
    let input = insert_events(dir.path());
    let wh = dir.path().join("wh");
    let out = run_configured(dir.path(), &cfg, &plugins, &input, &wh, 2);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the host must survive a `{mode}` plugin:\n{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dlq = read_table(&wh, DLQ);
    let dead = rows(&dlq).into_iter().cloned().collect();
    (summary, dead, stderr)
}

fn assert_contained(mode: &str, setting: &[(&str, &str)], reason: &str) {
    let (summary, dead, stderr) = run_hostile(mode, setting);
    assert_eq!(summary["rows_committed"], 0, "{summary}");
    assert_eq!(summary["plugin_failures"], 2, "two batches (3 events, batch size 2), both failed: {summary}");
    assert_eq!(dead.len(), 3, "every event of the failed batches is dead-lettered");
    for d in &dead {
        assert_eq!(d["plugin"], "hostile");
        assert_eq!(d["stage"], "transform");
        let r = d["reason"].as_str().unwrap();
        assert!(r.contains(reason), "reason for `{mode}` should mention `{reason}`: {r}");
        assert!(d["record"].as_str().unwrap().contains("example.com"));
    }
    assert!(stderr.contains("plugin failed on a batch"), "{stderr}");
    // The log names the records of the failed batches by their input position.
    assert!(stderr.contains("insert.ndjson:1") && stderr.contains("insert.ndjson:3"), "{stderr}");
}

#[test]
fn trapping_plugin_is_contained() {
    assert_contained("trap", &[], "trapped");
}

#[test]
fn unreachable_plugin_is_contained() {
    assert_contained("unreachable", &[], "trapped");
}

#[test]
fn endless_loop_hits_the_deadline() {
    assert_contained("loop", &[("batch_deadline_ms", "batch_deadline_ms = 200")], "deadline");
}

#[test]
fn memory_bomb_hits_the_limit() {
    assert_contained("alloc", &[("memory_limit_mb", "memory_limit_mb = 32")], "memory limit");
}

#[test]
fn huge_output_hits_the_memory_limit() {
    // 64 MiB reasons per event: the output cannot even be built within 32 MiB.
    assert_contained("huge", &[("memory_limit_mb", "memory_limit_mb = 32")], "memory limit");
}

#[test]
fn huge_reasons_are_cut() {
    // Outputs within the memory limit cross over (bounded by it) and reasons are cut to 4 KiB.
    let (summary, dead, _) = run_hostile_with("huge", "mode = \"huge\", huge_bytes = \"1000000\"", &[]);
    assert_eq!(summary["plugin_failures"], 0, "{summary}");
    assert_eq!(summary["rejected"], 3, "{summary}");
    assert_eq!(dead.len(), 3);
    for d in &dead {
        let r = d["reason"].as_str().unwrap();
        assert!(r.len() <= 4096 + "… (truncated)".len() && r.ends_with("… (truncated)"), "{}", r.len());
    }
}

#[test]
fn wrong_output_shape_is_refused() {
    assert_contained("wrong-length", &[], "outcomes");
}

#[test]
fn pass_through_plugin_keeps_everything() {
    let (summary, dead, _) = run_hostile("pass", &[]);
    assert_eq!(summary["rows_committed"], 3, "{summary}");
    assert!(dead.is_empty());
}

#[test]
fn unreadable_lines_are_dead_lettered_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good =
        std::fs::read_to_string(fixtures().join("schemas_false__decimal_precise/insert.ndjson")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(1, "{this is not json");
    lines.insert(2, r#"{"topic":"t","key":null,"value":{"before":null,"after":{"customer_id":"NaN-id"},"source":{},"op":"c"}}"#);
    let input = dir.path().join("mixed.ndjson");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let wh = dir.path().join("wh");
    let summary = run_shipped(dir.path(), &input, &wh);
    assert_eq!(summary["rows_committed"], 3, "{summary}");
    let dlq = read_table(&wh, DLQ);
    let dead = rows(&dlq);
    assert_eq!(dead.len(), 2);
    let mut by_pos: Vec<_> =
        dead.iter().map(|d| (d["source_position"].as_str().unwrap().to_string(), *d)).collect();
    by_pos.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(by_pos[0].0.ends_with("mixed.ndjson:2"));
    assert_eq!(by_pos[0].1["stage"], "decode");
    assert_eq!(by_pos[0].1["record"], "{this is not json");
    assert!(by_pos[1].1["reason"].as_str().unwrap().contains("customer_id"), "{:?}", by_pos[1].1);
    assert_eq!(read_table(&wh, TABLE)["num_rows"], 3);
}

#[test]
fn failing_configure_names_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = hostile_dir(dir.path());
    let cfg = config_with_chain(
        dir.path(),
        "[[chain]]\nplugin = \"hostile\"\nconfig = { mode = \"bad-config\" }\n",
    );
    let input = insert_events(dir.path());
    let err = host_err(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
    );
    assert!(err.contains("plugin `hostile` rejected its configuration"), "{err}");
    assert!(err.contains("bad-config"), "{err}");
}

#[test]
fn missing_plugins_dir_says_how_to_build_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = insert_events(dir.path());
    let err =
        host_err(dir.path(), &["--plugins", "/nonexistent/plugins", "--input", input.to_str().unwrap()]);
    assert!(err.contains("plugins directory /nonexistent/plugins does not exist"), "{err}");
    assert!(err.contains("scripts/build-plugins"), "{err}");
}

#[test]
fn missing_chain_entry_lists_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = hostile_dir(dir.path());
    let input = insert_events(dir.path());
    let err =
        host_err(dir.path(), &["--plugins", plugins.to_str().unwrap(), "--input", input.to_str().unwrap()]);
    assert!(err.contains("name-concat.wasm not found") && err.contains("available: hostile"), "{err}");
}

#[test]
fn corrupt_and_foreign_components_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("broken.wasm"), b"\0asm\x0d\0\x01\0garbage").unwrap();
    let input = insert_events(dir.path());
    // Runs a chain of the one named plugin; returns stderr of the failed run.
    let run_chain_of = |plugin: &str| {
        let cfg = config_with_chain(dir.path(), &format!("[[chain]]\nplugin = \"{plugin}\"\n"));
        let args = ["--config", cfg.to_str().unwrap(), "--plugins", plugins.to_str().unwrap()];
        host_err(dir.path(), &[&args[..], &["--input", input.to_str().unwrap()]].concat())
    };
    let err = run_chain_of("broken");
    assert!(err.contains("broken.wasm is not a valid WebAssembly component"), "{err}");

    std::fs::copy(test_plugin("not-a-transform"), plugins.join("cli.wasm")).unwrap();
    let err = run_chain_of("cli");
    assert!(err.contains("does not implement the `cdc:transform/transform@0.1.0` world"), "{err}");
    // Both sides of the contract are named.
    assert!(
        err.contains(
            "the component exports none and imports none; this host implements cdc:transform/transform@0.1.0"
        ),
        "{err}"
    );
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[table]\nname = \"t\"\n[sink]\nbatch_sise = 10\n").unwrap();
    let err = host_err(dir.path(), &["--config", cfg.to_str().unwrap(), "--input", "x"]);
    assert!(err.contains("batch_sise"), "{err}");
    let err = host_err(dir.path(), &["--batch-size", "0", "--input", "x"]);
    assert!(err.contains("sink.batch_size"), "{err}");
}

#[test]
fn unwritable_warehouse_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let input = insert_events(dir.path());
    let wh = file.join("warehouse");
    let err = host_err(
        dir.path(),
        &[
            "--plugins",
            plugins_dir().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
        ],
    );
    assert!(err.contains("cannot use warehouse"), "{err}");
}

#[test]
fn create_table_shapes_the_table_before_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let out = host_ok(
        dir.path(),
        &["create-table", "--plugins", plugins_dir().to_str().unwrap(), "--warehouse", wh.to_str().unwrap()],
    );
    assert_eq!(out["table"], TABLE);
    let t = read_table(&wh, TABLE);
    assert_eq!(t["num_rows"], 0);
    let cols: Vec<&str> =
        t["schema"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        cols,
        vec![
            "customer_id",
            "email",
            "full_name",
            "location",
            "customer_tier",
            "lifetime_value",
            "registration_date",
            "created_at",
            "notes",
            "_ingestion_timestamp",
            "_source_system",
            "_cdc_operation",
            "_pipeline_id"
        ]
    );
    assert_eq!(t["properties"]["write.parquet.compression-codec"], "zstd");
    // Running it again is harmless.
    host_ok(
        dir.path(),
        &["create-table", "--plugins", plugins_dir().to_str().unwrap(), "--warehouse", wh.to_str().unwrap()],
    );
}

#[test]
fn plugins_command_lists_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let out = host(dir.path(), &["plugins", "--plugins", plugins_dir().to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("1. name-concat@") && lines[0].contains("writes=[full_name: Text]"),
        "{text}"
    );
    assert!(lines[1].contains("location@") && lines[1].contains("removes=[city, state, country]"), "{text}");
    assert!(lines[2].contains("business-rules@"), "{text}");
}
