//! Helpers shared by the integration tests: paths, running the real `cdc-host` binary, and reading
//! tables back through pyiceberg (an independent Iceberg implementation).

#![allow(dead_code)]

pub mod topic;

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
    run_shipped_with(dir, input, warehouse, &[])
}

/// Like [`run_shipped`], with `extra` flags.
pub fn run_shipped_with(dir: &Path, input: &Path, warehouse: &Path, extra: &[&str]) -> Value {
    let plugins = plugins_dir();
    let mut args = vec![
        "--plugins",
        plugins.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--warehouse",
        warehouse.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    host_ok(dir, &args)
}

/// Writes a realistic Debezium stream of `records` lines to `out` with `scripts/generate-stream`
/// (creates, updates of earlier keys, deletes with tombstones; `extra` flags such as `--seed`).
pub fn generate_stream(out: &Path, records: usize, extra: &[&str]) {
    let status = Command::new(repo().join("scripts/generate-stream"))
        .args(["--records", &records.to_string(), "--out", out.to_str().unwrap()])
        .args(extra)
        .status()
        .expect("run scripts/generate-stream");
    assert!(status.success(), "scripts/generate-stream failed");
}

/// [`run_configured`], asserting success; returns the summary.
pub fn run_configured_ok(
    dir: &Path,
    config: &Path,
    input: &Path,
    warehouse: &Path,
    batch_size: usize,
) -> Value {
    let out = run_configured(dir, config, &plugins_dir(), input, warehouse, batch_size);
    assert!(out.status.success(), "cdc-host failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("summary")
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

/// A table's rows without the ingestion timestamp (the one column that differs between runs), as
/// sorted JSON.
pub fn comparable_rows(table: &Value) -> Vec<String> {
    let mut out: Vec<String> = rows(table)
        .into_iter()
        .map(|r| {
            let mut r = r.clone();
            r.remove("_ingestion_timestamp");
            serde_json::to_string(&r).unwrap()
        })
        .collect();
    out.sort();
    out
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

/// Runs `cdc-host` like [`host_ok`], but kills it and fails the test when it runs longer than
/// `limit` (a hung commit must fail a test, not hang the suite).
pub fn host_ok_within(dir: &Path, args: &[&str], limit: std::time::Duration) -> Value {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out_path, err_path) = (dir.join(format!(".host-{n}.stdout")), dir.join(format!(".host-{n}.stderr")));
    let mut child = host_command(dir)
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run cdc-host");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cdc-host") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!("cdc-host {args:?} did not finish within {limit:?}; killed it. Its log:\n{stderr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stdout = std::fs::read(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = (std::fs::remove_file(&out_path), std::fs::remove_file(&err_path));
    assert!(status.success(), "cdc-host {args:?} failed ({status}):\n{stderr}");
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!("summary is not JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&stdout))
    })
}

/// `scripts/stack env`, parsed (`export KEY=value` lines), once per test binary.
pub fn stack_env() -> &'static std::collections::HashMap<String, String> {
    static ENV: std::sync::OnceLock<std::collections::HashMap<String, String>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let out =
            Command::new(repo().join("scripts/stack")).arg("env").output().expect("run scripts/stack env");
        assert!(out.status.success(), "scripts/stack env failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').trim_matches('"').to_string()))
            .collect()
    })
}

/// Fails the test with the fix when a service of the local stack does not answer.
fn require_stack(what: &str, detail: &str) -> ! {
    let status = Command::new(repo().join("scripts/stack")).arg("status").output();
    let status = status.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    panic!(
        "the local stack is not up ({what}: {detail}): start it with `scripts/stack up` (scripts/test does)\n{status}"
    )
}

/// `host:port` of a URI such as `http://127.0.0.1:8181` or `postgresql://u:p@127.0.0.1:5432/db`.
fn uri_authority(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, hp)| hp)
}

/// One plain HTTP/1.0 GET; the status code, or why there is none.
fn http_status(uri: &str, path: &str) -> Result<u16, String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let authority = uri_authority(uri);
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let timeout = std::time::Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not HTTP: {text}"))
}

/// A catalog the host commits through. Integration tests loop over [`catalogs`] so that every
/// commit path (SQL row on SQLite and PostgreSQL, REST commit request) is tested the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogKind {
    /// SQL catalog on SQLite, `<warehouse>/catalog.db` (the host's default).
    Sqlite,
    /// SQL catalog on the stack's PostgreSQL database (`ICEBERG_PG_CATALOG_URI`).
    Postgres(String),
    /// The stack's Iceberg REST catalog server (`ICEBERG_REST_URI`).
    Rest(String),
}

/// SQLite, PostgreSQL and REST, in that order. Fails (never skips) when the stack's PostgreSQL or
/// REST catalog does not answer. `ICEBERG_PG_CATALOG_URI` / `ICEBERG_REST_URI` in the environment
/// override what `scripts/stack env` prints.
pub fn catalogs() -> Vec<CatalogKind> {
    let setting = |key: &str| {
        std::env::var(key)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| stack_env().get(key).cloned())
            .unwrap_or_else(|| {
                require_stack(key, "not printed by scripts/stack env (a stack script without catalogs?)")
            })
    };
    let pg = setting("ICEBERG_PG_CATALOG_URI");
    let authority = uri_authority(&pg).to_string();
    let reachable = authority.parse::<std::net::SocketAddr>().map_err(|e| e.to_string()).and_then(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).map_err(|e| e.to_string())
    });
    if let Err(e) = reachable {
        require_stack("PostgreSQL for the Iceberg SQL catalog", &format!("{authority}: {e}"));
    }
    let rest = setting("ICEBERG_REST_URI");
    match http_status(&rest, "/v1/config") {
        Ok(200) => {}
        Ok(code) => {
            require_stack("Iceberg REST catalog", &format!("GET {rest}/v1/config answered HTTP {code}"))
        }
        Err(e) => require_stack("Iceberg REST catalog", &e),
    }
    vec![CatalogKind::Sqlite, CatalogKind::Postgres(pg), CatalogKind::Rest(rest)]
}

/// A name no other test (nor an earlier run against the same long-lived catalog) uses, e.g. for a
/// namespace: `<prefix>_<hex>`, letters, digits and `_` only.
pub fn unique_name(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}_{:x}_{:x}_{n}", nanos & 0xffff_ffff_ffff, std::process::id())
}

impl CatalogKind {
    /// `sqlite`, `postgres` or `rest`, for messages and names.
    pub fn name(&self) -> &'static str {
        match self {
            CatalogKind::Sqlite => "sqlite",
            CatalogKind::Postgres(_) => "postgres",
            CatalogKind::Rest(_) => "rest",
        }
    }

    /// The `--catalog-uri` of a host writing into `warehouse`.
    pub fn uri(&self, warehouse: &Path) -> String {
        match self {
            CatalogKind::Sqlite => format!("sqlite:{}?mode=rwc", warehouse.join("catalog.db").display()),
            CatalogKind::Postgres(uri) | CatalogKind::Rest(uri) => uri.clone(),
        }
    }

    /// Whether the catalog outlives the test (shared with other tests and earlier runs): tests must
    /// then use a namespace of their own ([`unique_name`]) and drop their tables ([`Self::drop_table`]).
    pub fn is_shared(&self) -> bool {
        !matches!(self, CatalogKind::Sqlite)
    }

    /// Host arguments that select this catalog, the warehouse and the table's namespace.
    pub fn host_args(&self, warehouse: &Path, namespace: &str) -> Vec<String> {
        vec![
            "--warehouse".into(),
            warehouse.to_str().expect("utf-8 path").into(),
            "--catalog-uri".into(),
            self.uri(warehouse),
            "--namespace".into(),
            namespace.into(),
        ]
    }

    fn reader(&self, warehouse: &Path, table: &str) -> Command {
        let mut cmd = Command::new(python());
        cmd.arg(repo().join("tests/read_table.py")).args([
            "--warehouse",
            warehouse.to_str().unwrap(),
            "--table",
            table,
            "--catalog-uri",
            &self.uri(warehouse),
        ]);
        cmd
    }

    /// Reads `namespace.table` through this catalog with pyiceberg (see [`read_table`]).
    pub fn read_table(&self, warehouse: &Path, table: &str) -> Value {
        self.try_read_table(warehouse, table).unwrap_or_else(|e| {
            panic!("pyiceberg could not read {table} through the {} catalog: {e}", self.name())
        })
    }

    /// Like [`Self::read_table`], for tables that may not exist.
    pub fn try_read_table(&self, warehouse: &Path, table: &str) -> Result<Value, String> {
        let out = self.reader(warehouse, table).output().expect("run python");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(serde_json::from_slice(&out.stdout).expect("reader output is JSON"))
    }

    /// Drops `namespace.table` (and the namespace once empty) from a shared catalog; a missing
    /// table is fine. Nothing to do for SQLite (the warehouse goes with the test).
    pub fn drop_table(&self, warehouse: &Path, table: &str) {
        if !self.is_shared() {
            return;
        }
        let out =
            self.reader(warehouse, table).args(["--summary-only", "--drop"]).output().expect("run python");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("NoSuchTable"),
            "dropping {table} from the {} catalog failed: {stderr}",
            self.name()
        );
    }
}
