//! Data files as readers find them: one partition each and sorted by the table's sort order,
//! whatever order records arrive in and however often the writer's buffer fills.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{comparable_rows, generate_stream, read_table, repo, run_configured_ok};
use serde_json::Value;

/// The shipped config with `write_buffer_bytes` set.
fn config(dir: &Path, buffer_bytes: usize) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let line = shipped.lines().find(|l| l.starts_with("write_buffer_bytes")).expect("write_buffer_bytes");
    let p = dir.join(format!("buffer-{buffer_bytes}.toml"));
    std::fs::write(&p, shipped.replace(line, &format!("write_buffer_bytes = {buffer_bytes}"))).unwrap();
    p
}

#[test]
fn every_file_holds_one_partition_sorted_whatever_the_write_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("stream.ndjson");
    // A realistic stream: creates, updates of earlier keys (out of key order), deletes; ~340 months.
    generate_stream(&input, 20_000, &["--seed", "3"]);
    // 1 MiB: the buffer fills many times per commit; the default holds the whole input.
    let small =
        run_configured_ok(dir.path(), &config(dir.path(), 1 << 20), &input, &dir.path().join("small"), 8192);
    let large =
        run_configured_ok(dir.path(), &config(dir.path(), 96 << 20), &input, &dir.path().join("large"), 8192);
    assert_eq!(small["rows_committed"], large["rows_committed"]);

    let table = "analytics.customers_analytics";
    let (small, large) =
        (read_table(&dir.path().join("small"), table), read_table(&dir.path().join("large"), table));
    let files = |t: &Value| t["files"].as_array().unwrap().clone();
    let partitions =
        |t: &Value| files(t).iter().map(|f| f["partition"].to_string()).collect::<BTreeSet<_>>().len();
    for t in [&small, &large] {
        assert!(files(t).iter().all(|f| f["sorted"] == true), "a data file is not sorted by customer_id");
        assert!(partitions(t) > 300, "expected ~340 month partitions, got {}", partitions(t));
    }
    assert_eq!(files(&large).len(), partitions(&large), "one write-out: one file per partition");
    assert!(
        files(&small).len() > 2 * partitions(&small),
        "the small buffer should have been written out many times"
    );
    assert_eq!(comparable_rows(&small), comparable_rows(&large), "the buffer size changed the rows");
}
