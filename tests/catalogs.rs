//! The host against every catalog kind it commits through: the SQL catalog on SQLite (default) and on
//! the stack's PostgreSQL, and the stack's Iceberg REST catalog server (`scripts/stack up` starts
//! both). Rows are read back with pyiceberg through the same catalog, and every catalog must hold
//! exactly what the SQLite catalog holds. The REST compare-and-swap is also tested on its own,
//! including answers lost on the way back (through a proxy that drops or replaces them).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use cdc_host::sink::commit::cas::SwapOutcome;
use cdc_host::sink::commit::rest::{self, RestCas};
use common::*;
use iceberg::spec::{
    FormatVersion, ManifestListWriter, NestedField, Operation, PrimitiveType, Schema, Snapshot,
    SnapshotReference, SnapshotRetention, Summary, Type,
};
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent, TableUpdate};
use serde_json::Value;

/// Drops a test's tables from a shared catalog when the test ends, also when it fails.
struct DropTables<'a> {
    kind: &'a CatalogKind,
    warehouse: &'a Path,
    tables: Vec<String>,
}

impl Drop for DropTables<'_> {
    fn drop(&mut self) {
        for t in &self.tables {
            let kind = self.kind.clone();
            let (wh, t) = (self.warehouse.to_path_buf(), t.clone());
            // Never panic while unwinding from a failed assertion.
            let _ = std::panic::catch_unwind(move || kind.drop_table(&wh, &t));
        }
    }
}

#[test]
fn example_rows_land_in_every_catalog() {
    let kinds = catalogs();
    let input = repo().join("examples/customers.ndjson");
    let plugins = plugins_dir();
    let mut reference: Option<(Vec<String>, Vec<String>, Value)> = None;
    for kind in &kinds {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = dir.path().join("warehouse");
        let ns = unique_name(&format!("catalogs_{}", kind.name()));
        let table = format!("{ns}.customers_analytics");
        let dlq = format!("{ns}.customers_analytics_dlq");
        let _drop = DropTables { kind, warehouse: &warehouse, tables: vec![table.clone(), dlq.clone()] };

        let mut args: Vec<String> = vec![
            "--plugins".into(),
            plugins.display().to_string(),
            "--input".into(),
            input.display().to_string(),
        ];
        args.extend(kind.host_args(&warehouse, &ns));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let summary = host_ok_within(dir.path(), &args, std::time::Duration::from_secs(180));
        assert_eq!(summary["rows_committed"], 15, "{}: {summary}", kind.name());

        let main = kind.read_table(&warehouse, &table);
        assert_eq!(main["num_rows"], 15, "{}: rows read back", kind.name());
        for s in main["snapshots"].as_array().unwrap() {
            assert!(
                s["summary"]["cdc-host.commit-id"].is_string(),
                "{}: snapshot without a commit id: {s}",
                kind.name()
            );
        }
        // Tables this host creates live under its warehouse, whatever the catalog.
        let root = std::fs::canonicalize(&warehouse).unwrap();
        for f in main["files"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap();
            let local = path.trim_start_matches("file:").trim_start_matches("//");
            assert!(
                Path::new(local).starts_with(&root) && Path::new(local).is_file(),
                "{}: data file {path} is not in the warehouse {}",
                kind.name(),
                root.display()
            );
        }
        let dead = kind.read_table(&warehouse, &dlq);
        let got = (comparable_rows(&main), comparable_rows(&dead), summary.clone());
        match &reference {
            None => {
                assert_eq!(kind, &CatalogKind::Sqlite, "the first catalog is the reference");
                reference = Some(got);
            }
            Some((rows, dead_rows, sqlite_summary)) => {
                assert_eq!(&got.0, rows, "{}: rows differ from the SQLite catalog's", kind.name());
                assert_eq!(
                    &got.1,
                    dead_rows,
                    "{}: dead letters differ from the SQLite catalog's",
                    kind.name()
                );
                for key in ["records", "events", "rows_committed", "dead_letters", "dropped", "rejected"] {
                    assert_eq!(summary[key], sqlite_summary[key], "{}: summary `{key}`", kind.name());
                }
            }
        }
    }
}

/// Hosts (or one host's table pipelines) opening a brand-new PostgreSQL catalog database at the same
/// time race on creating the catalog's tables; every one of them must open it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openings_racing_on_a_fresh_postgres_catalog_all_succeed() {
    use sqlx::Connection;
    let pg = catalogs()
        .into_iter()
        .find_map(|k| match k {
            CatalogKind::Postgres(uri) => Some(uri),
            _ => None,
        })
        .unwrap();
    let (server, _) = pg.rsplit_once('/').expect("PostgreSQL URI with a database");
    let db = unique_name("catalog_fresh");
    let mut admin = sqlx::PgConnection::connect(&pg).await.expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut admin).await.expect("create database");

    let dir = tempfile::tempdir().unwrap();
    let uri = format!("{server}/{db}");
    let text =
        format!("[catalog]\nuri = \"{uri}\"\nwarehouse = \"{}\"\n", dir.path().join("warehouse").display());
    let cfg = cdc_host::config::Config::from_toml(&text, "test").unwrap();
    let mut openings = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let cfg = cfg.clone();
        openings.spawn(async move { cdc_host::sink::catalog::open(&cfg).await.map(|_| ()) });
    }
    let results: Vec<_> = openings.join_all().await;
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");
    for r in results {
        r.expect("every opening of the fresh catalog succeeds");
    }
}

#[test]
fn a_missing_rest_catalog_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uri = format!("http://127.0.0.1:{port}");
    let err = host_err(
        dir.path(),
        &[
            "--plugins",
            plugins_dir().to_str().unwrap(),
            "--input",
            repo().join("examples/customers.ndjson").to_str().unwrap(),
            "--warehouse",
            warehouse.to_str().unwrap(),
            "--catalog-uri",
            &uri,
        ],
    );
    assert!(err.contains(&format!("{uri}/v1/config")) && err.contains("scripts/stack up"), "{err}");
}

// ---------------------------------------------------------------- the REST compare-and-swap alone

fn rest_uri() -> String {
    catalogs()
        .into_iter()
        .find_map(|k| match k {
            CatalogKind::Rest(uri) => Some(uri),
            _ => None,
        })
        .expect("a REST catalog")
}

/// A table of one column in a namespace of its own, created through `catalog`.
async fn new_table(catalog: &dyn Catalog, prefix: &str) -> Table {
    let ns = NamespaceIdent::new(unique_name(prefix));
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let schema = Schema::builder()
        .with_fields(vec![NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into()])
        .build()
        .unwrap();
    let creation = TableCreation::builder().name("t".to_string()).schema(schema).build();
    catalog.create_table(&ns, creation).await.unwrap()
}

async fn drop_table(catalog: &dyn Catalog, table: &Table) {
    let ident = table.identifier();
    let _ = catalog.drop_table(ident).await;
    let _ = catalog.drop_namespace(ident.namespace()).await;
}

/// The updates of an append of nothing on top of `base`: a real (empty) manifest list, the snapshot
/// and `main` moved to it.
async fn empty_append(base: &Table, snapshot_id: i64) -> Vec<TableUpdate> {
    let metadata = base.metadata();
    let sequence_number = metadata.last_sequence_number() + 1;
    let parent = metadata.current_snapshot_id();
    let path = format!("{}/metadata/snap-{snapshot_id}-test.avro", metadata.location());
    let out = base.file_io().new_output(&path).unwrap();
    ManifestListWriter::v2(out.writer().await.unwrap(), snapshot_id, parent, sequence_number)
        .close()
        .await
        .unwrap();
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent)
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis().max(metadata.last_updated_ms() + 1))
        .with_manifest_list(path)
        .with_schema_id(metadata.current_schema_id())
        .with_summary(Summary { operation: Operation::Append, additional_properties: HashMap::new() })
        .build();
    assert_eq!(metadata.format_version(), FormatVersion::V2);
    vec![
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef {
            ref_name: "main".to_string(),
            reference: SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
        },
    ]
}

fn committed(outcome: SwapOutcome, what: &str) -> Table {
    match outcome {
        SwapOutcome::Committed(t) => t,
        other => panic!("{what}: expected Committed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_swap_is_a_compare_and_swap() {
    let uri = rest_uri();
    let dir = tempfile::tempdir().unwrap();
    let (catalog, cas) =
        rest::open(&uri, &std::fs::canonicalize(dir.path()).unwrap(), "iceberg").await.unwrap();
    let base = new_table(catalog.as_ref(), "cas").await;
    let ident = base.identifier().clone();
    let root = format!("file://{}", std::fs::canonicalize(dir.path()).unwrap().display());
    assert!(base.metadata().location().starts_with(&root), "table at {}", base.metadata().location());

    // First commit on the base lands; the catalog now points at the answer's metadata.
    let one = committed(cas.swap(&base, empty_append(&base, 1001).await).await.unwrap(), "first commit");
    assert_eq!(one.metadata().current_snapshot_id(), Some(1001));
    assert_eq!(cas.current_location(&ident).await.unwrap().as_deref(), one.metadata_location());
    assert_eq!(catalog.load_table(&ident).await.unwrap().metadata().current_snapshot_id(), Some(1001));

    // Another commit built on the same (now stale) base loses the race: nothing lands.
    match cas.swap(&base, empty_append(&base, 1002).await).await.unwrap() {
        SwapOutcome::Conflict(reason) => assert!(reason.contains("main"), "{reason}"),
        other => panic!("stale base: expected Conflict, got {other:?}"),
    }
    let now = catalog.load_table(&ident).await.unwrap();
    assert_eq!(now.metadata().current_snapshot_id(), Some(1001));
    assert!(now.metadata().snapshot_by_id(1002).is_none());

    // Rebuilt on the new base, it lands, with the right parent.
    let two = committed(cas.swap(&one, empty_append(&one, 1002).await).await.unwrap(), "rebuilt commit");
    assert_eq!(two.metadata().current_snapshot().unwrap().parent_snapshot_id(), Some(1001));

    // An update the server refuses is rejected with its message.
    let bad = vec![TableUpdate::SetCurrentSchema { schema_id: 42 }];
    match cas.swap(&two, bad).await.unwrap() {
        SwapOutcome::Rejected(message) => assert!(message.contains("HTTP 400"), "{message}"),
        other => panic!("bad update: expected Rejected, got {other:?}"),
    }

    drop_table(catalog.as_ref(), &two).await;
    assert_eq!(cas.current_location(&ident).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_swaps_racing_on_one_base_have_one_winner() {
    let uri = rest_uri();
    let dir = tempfile::tempdir().unwrap();
    let (catalog, cas) =
        rest::open(&uri, &std::fs::canonicalize(dir.path()).unwrap(), "iceberg").await.unwrap();
    let cas = Arc::new(cas);
    let mut base = new_table(catalog.as_ref(), "cas_race").await;
    for round in 0..3i64 {
        let mut racers = Vec::new();
        for i in 0..8i64 {
            let updates = empty_append(&base, 4000 + round * 100 + i).await;
            let (cas, base) = (cas.clone(), base.clone());
            racers.push(tokio::spawn(async move { cas.swap(&base, updates).await.unwrap() }));
        }
        let mut winners = Vec::new();
        for racer in racers {
            match racer.await.unwrap() {
                SwapOutcome::Committed(t) => winners.push(t),
                SwapOutcome::Conflict(_) => {}
                other => panic!("round {round}: a racer got {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one of 8 racing commits lands");
        let now = catalog.load_table(base.identifier()).await.unwrap();
        assert_eq!(now.metadata().current_snapshot_id(), winners[0].metadata().current_snapshot_id());
        assert_eq!(now.metadata().snapshots().count() as i64, round + 1, "losers left no snapshot");
        base = now;
    }
    drop_table(catalog.as_ref(), &base).await;
}

/// What the proxy does with the next commit request (`POST .../tables/<t>`); everything else is
/// passed through.
const PASS: u8 = 0;
/// Forward it, then answer 502 (the commit landed, the answer was lost).
const FORWARD_THEN_502: u8 = 1;
/// Forward it, then close the connection without an answer.
const FORWARD_THEN_HANG_UP: u8 = 2;
/// Answer 503 without forwarding (nothing landed).
const REFUSE_503: u8 = 3;
/// Forward it, answer 502, then answer 503 to every later request (the catalog became unreachable).
const FORWARD_THEN_502_THEN_DOWN: u8 = 4;
/// The state after [`FORWARD_THEN_502_THEN_DOWN`]: every request gets a 503.
const DOWN: u8 = 5;

/// A one-request-per-connection HTTP proxy in front of the REST catalog that can tamper with the
/// next commit request (see the constants above). Returns its URI.
async fn tampering_proxy(upstream: String, mode: Arc<AtomicU8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (client, upstream, mode) = (client.clone(), upstream.clone(), mode.clone());
            tokio::spawn(async move {
                // Read the head, then the body by Content-Length.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[head_end..head_end + length].to_vec();
                let mut first = head.lines().next().unwrap_or("").split_whitespace();
                let (method, path) =
                    (first.next().unwrap_or("GET").to_string(), first.next().unwrap_or("/").to_string());
                let is_commit = method == "POST" && path.contains("/tables/") && !path.ends_with("/metrics");
                let action = match mode.load(Ordering::SeqCst) {
                    DOWN => DOWN,
                    m if is_commit && m == FORWARD_THEN_502_THEN_DOWN => {
                        mode.store(DOWN, Ordering::SeqCst);
                        m
                    }
                    _ if is_commit => mode.swap(PASS, Ordering::SeqCst),
                    _ => PASS,
                };
                if action == REFUSE_503 || action == DOWN {
                    let msg = r#"{"error":{"message":"try later","type":"ServiceUnavailableException","code":503}}"#;
                    let answer = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{msg}",
                        msg.len()
                    );
                    let _ = sock.write_all(answer.as_bytes()).await;
                    return;
                }
                let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let mut request = client.request(method, format!("{upstream}{path}")).body(body);
                if is_commit || length > 0 {
                    request = request.header("content-type", "application/json");
                }
                let response = request.send().await.expect("upstream REST catalog");
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                match action {
                    FORWARD_THEN_HANG_UP => {}
                    FORWARD_THEN_502 | FORWARD_THEN_502_THEN_DOWN => {
                        let _ = sock
                            .write_all(
                                b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            )
                            .await;
                    }
                    _ => {
                        let head = format!(
                            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            status.as_u16(),
                            status.canonical_reason().unwrap_or(""),
                            bytes.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(&bytes).await;
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_swap_resolves_lost_answers_by_reading_the_table_back() {
    let upstream = rest_uri();
    let mode = Arc::new(AtomicU8::new(PASS));
    let proxy = tampering_proxy(upstream, mode.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (catalog, cas): (_, RestCas) =
        rest::open(&proxy, &std::fs::canonicalize(dir.path()).unwrap(), "iceberg").await.unwrap();
    let base = new_table(catalog.as_ref(), "cas_lost").await;
    let ident = base.identifier().clone();

    // The commit landed but a 502 came back: reading the table back finds its snapshot.
    mode.store(FORWARD_THEN_502, Ordering::SeqCst);
    let one =
        committed(cas.swap(&base, empty_append(&base, 2001).await).await.unwrap(), "landed, answered 502");
    assert_eq!(one.metadata().current_snapshot_id(), Some(2001));

    // The commit landed and the connection was closed without an answer: the same.
    mode.store(FORWARD_THEN_HANG_UP, Ordering::SeqCst);
    let two = committed(cas.swap(&one, empty_append(&one, 2002).await).await.unwrap(), "landed, no answer");
    assert_eq!(two.metadata().current_snapshot_id(), Some(2002));

    // A 503 for a commit that never reached the catalog: the table lacks it, so nothing landed.
    mode.store(REFUSE_503, Ordering::SeqCst);
    match cas.swap(&two, empty_append(&two, 2003).await).await.unwrap() {
        SwapOutcome::Conflict(reason) => assert!(reason.contains("503"), "{reason}"),
        other => panic!("refused with 503: expected Conflict (not landed), got {other:?}"),
    }
    let now = catalog.load_table(&ident).await.unwrap();
    assert_eq!(now.metadata().current_snapshot_id(), Some(2002));
    assert!(now.metadata().snapshot_by_id(2003).is_none());

    drop_table(catalog.as_ref(), &now).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_swap_is_unknown_when_the_table_cannot_be_read_back() {
    let upstream = rest_uri();
    let mode = Arc::new(AtomicU8::new(PASS));
    let proxy = tampering_proxy(upstream.clone(), mode.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let wh = std::fs::canonicalize(dir.path()).unwrap();
    let (catalog, cas) = rest::open(&proxy, &wh, "iceberg").await.unwrap();
    let base = new_table(catalog.as_ref(), "cas_unknown").await;
    let ident: TableIdent = base.identifier().clone();

    // The commit lands, a 502 comes back, and every read after it fails: the outcome cannot be told.
    mode.store(FORWARD_THEN_502_THEN_DOWN, Ordering::SeqCst);
    match cas.swap(&base, empty_append(&base, 3001).await).await.unwrap() {
        SwapOutcome::Unknown(message) => {
            assert!(message.contains("502") && message.contains("failed too"), "{message}")
        }
        other => panic!("landed, unreadable: expected Unknown, got {other:?}"),
    }
    // It had landed (read directly from the catalog).
    let (direct, _) = rest::open(&upstream, &wh, "iceberg").await.unwrap();
    let table = direct.load_table(&ident).await.unwrap();
    assert_eq!(table.metadata().current_snapshot_id(), Some(3001));
    drop_table(direct.as_ref(), &table).await;
}
