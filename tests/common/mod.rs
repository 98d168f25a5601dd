//! Helpers shared by the integration tests: paths, running the real `cdc-host` binary, and reading
//! tables back through pyiceberg (an independent Iceberg implementation).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// The shipped plugins directory; fails with the fix when the components are not built.
pub fn plugins_dir() -> PathBuf {
    let dir = repo().join("plugins");
    for p in ["name-concat", "location", "business-rules"] {
        assert!(
            dir.join(format!("{p}.wasm")).is_file(),
            "plugins/{p}.wasm is missing: run scripts/build-plugins (the test command in README does)"
        );
    }
    dir
}

/// A test-only component, built by scripts/build-plugins into tests/plugins/.
pub fn test_plugin(name: &str) -> PathBuf {
    let p = repo().join("tests/plugins").join(format!("{name}.wasm"));
    assert!(p.is_file(), "{} is missing: run scripts/build-plugins", p.display());
    p
}

/// The shared Debezium fixtures.
pub fn fixtures() -> PathBuf {
    let p = repo().join("../shared/fixtures/debezium");
    assert!(p.is_dir(), "shared fixtures not found at {}", p.display());
    p
}

/// The scenarios, in the order they were captured.
pub const SCENARIOS: [&str; 10] = [
    "snapshot",
    "insert",
    "update",
    "update_lifetime_value_only",
    "delete",
    "update_primary_key",
    "add_column",
    "toast_default_identity",
    "replica_identity_full",
    "truncate",
];

/// The three converter settings the fixtures were captured with.
pub const SETTINGS: [&str; 3] =
    ["schemas_false__decimal_precise", "schemas_true__decimal_precise", "schemas_true__decimal_string"];

/// Every scenario of one setting, concatenated in order, written to `dir/events.ndjson`.
pub fn all_scenarios(setting: &str, dir: &Path) -> PathBuf {
    let mut text = String::new();
    for s in SCENARIOS {
        let f = fixtures().join(setting).join(format!("{s}.ndjson"));
        text.push_str(&std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    let out = dir.join("events.ndjson");
    std::fs::write(&out, text).unwrap();
    out
}

/// The Python interpreter with pyiceberg (`CDC_TEST_PYTHON`, else the project's `.venv`).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CDC_TEST_PYTHON") {
        return p.into();
    }
    let venv = repo().join(".venv/bin/python");
    assert!(venv.is_file(), "no .venv with pyiceberg: run scripts/setup (the test command in README does)");
    venv
}

/// Runs `cdc-host` with `args` in `dir`. Compiled plugins are cached under `target/` (keyed by content
/// hash, so sharing the cache between tests is safe).
pub fn host(dir: &Path, args: &[&str]) -> Output {
    host_command(dir).args(args).output().expect("run cdc-host")
}

/// The `cdc-host` command as [`host`] runs it (shared compile cache, `info` logs, no `ICEBERG_*`
/// variables), in `dir`, for tests that drive it while it runs.
pub fn host_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdc-host"));
    cmd.current_dir(dir)
        .env("XDG_CACHE_HOME", repo().join("target/test-cache"))
        .env("CDC_HOST_LOG", std::env::var("CDC_TEST_HOST_LOG").unwrap_or_else(|_| "info".into()))
        .env_remove("ICEBERG_WAREHOUSE")
        .env_remove("ICEBERG_TABLE")
        .env_remove("ICEBERG_NAMESPACE")
        .env_remove("ICEBERG_CATALOG");
    cmd
}

/// Runs `cdc-host`, asserts it succeeded, and returns its JSON summary.
pub fn host_ok(dir: &Path, args: &[&str]) -> Value {
    let out = host(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cdc-host {args:?} failed ({}):\n{stderr}", out.status);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("summary is not JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout))
    })
}

/// Runs the shipped chain over `input` into `warehouse`; asserts success and returns the summary.
pub fn run_shipped(dir: &Path, input: &Path, warehouse: &Path) -> Value {
    host_ok(
        dir,
        &[
            "--plugins",
            plugins_dir().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            warehouse.to_str().unwrap(),
        ],
    )
}

/// Runs `cdc-host` with a config file and plugins directory over `input` into `warehouse`.
pub fn run_configured(
    dir: &Path,
    config: &Path,
    plugins: &Path,
    input: &Path,
    warehouse: &Path,
    batch_size: usize,
) -> Output {
    host(
        dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--warehouse",
            warehouse.to_str().unwrap(),
            "--batch-size",
            &batch_size.to_string(),
        ],
    )
}

/// Runs `cdc-host`, asserts it failed, and returns its stderr.
pub fn host_err(dir: &Path, args: &[&str]) -> String {
    let out = host(dir, args);
    assert!(
        !out.status.success(),
        "cdc-host {args:?} should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Reads `namespace.table` from the warehouse with pyiceberg.
pub fn read_table(warehouse: &Path, table: &str) -> Value {
    read_table_columns(warehouse, table, &[])
}

/// Like [`read_table`], for tables that may not exist yet.
pub fn try_read_table(warehouse: &Path, table: &str) -> Result<Value, String> {
    let out = Command::new(python())
        .arg(repo().join("tests/read_table.py"))
        .args(["--warehouse", warehouse.to_str().unwrap(), "--table", table])
        .output()
        .expect("run python");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("reader output is JSON"))
}

/// Like [`read_table`], reading only `columns` of each row (all when empty): fast for large tables.
pub fn read_table_columns(warehouse: &Path, table: &str, columns: &[&str]) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/read_table.py")).args([
        "--warehouse",
        warehouse.to_str().unwrap(),
        "--table",
        table,
    ]);
    if !columns.is_empty() {
        cmd.args(["--columns", &columns.join(",")]);
    }
    let out = cmd.output().expect("run python");
    assert!(
        out.status.success(),
        "pyiceberg could not read {table}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reader output is JSON")
}

/// The rows of a table read back, as JSON objects.
pub fn rows(table: &Value) -> Vec<&serde_json::Map<String, Value>> {
    table["rows"].as_array().expect("rows").iter().map(|r| r.as_object().expect("row object")).collect()
}

/// Rows of customer `id`, in `_cdc_operation` then input order is not guaranteed: sorted by a stable key.
pub fn customer<'a>(
    rows: &[&'a serde_json::Map<String, Value>],
    id: i64,
) -> Vec<&'a serde_json::Map<String, Value>> {
    rows.iter().filter(|r| r["customer_id"].as_i64() == Some(id)).copied().collect()
}

/// Writes a config file: the shipped one with its chain replaced by `chain` (TOML).
pub fn config_with_chain(dir: &Path, chain: &str) -> PathBuf {
    config_with(dir, chain, &[])
}

/// Like [`config_with_chain`], also replacing settings: each `(from, to)` replaces a line of the
/// shipped config that starts with `from`.
pub fn config_with(dir: &Path, chain: &str, settings: &[(&str, &str)]) -> PathBuf {
    let mut shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    for (from, to) in settings {
        let line =
            shipped.lines().find(|l| l.starts_with(from)).unwrap_or_else(|| panic!("no `{from}` in config"));
        shipped = shipped.replace(line, to);
    }
    let mut out = String::new();
    let mut skipping = false;
    for line in shipped.lines() {
        if line.starts_with("[[chain]]") {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with('[') {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(chain);
    let p = dir.join("cdc-host.toml");
    std::fs::write(&p, out).unwrap();
    p
}
