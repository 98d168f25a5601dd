//! Data files as readers find them: one partition each and sorted by the table's sort order,
//! whatever order records arrive in and however often the writer's buffer fills, and however large
//! one partition is; small files snappy, the others zstd.

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
        // Small files (under 16,384 rows) are snappy: `sink.small_file_compression`.
        assert!(files(t).iter().all(|f| f["codecs"] == serde_json::json!(["SNAPPY"])), "{}", t["files"]);
        assert!(partitions(t) > 300, "expected ~340 month partitions, got {}", partitions(t));
    }
    assert_eq!(files(&large).len(), partitions(&large), "one write-out: one file per partition");
    assert!(
        files(&small).len() > 2 * partitions(&small),
        "the small buffer should have been written out many times"
    );
    assert_eq!(comparable_rows(&small), comparable_rows(&large), "the buffer size changed the rows");
}

/// One partition larger than a writer lane's share is written as several files side by side: each
/// sorted, their key ranges one after the other, every row once.
#[test]
fn a_large_partition_is_split_into_sorted_files_with_disjoint_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("stream.ndjson");
    // 100k creates in one month: one commit, one write-out, one partition.
    generate_stream(&input, 100_000, &["--months", "1", "--creates", "1.0", "--deletes", "0", "--seed", "5"]);
    let wh = dir.path().join("wh");
    let cfg = config(dir.path(), 512 << 20);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let interval = text.lines().find(|l| l.starts_with("processing_interval_seconds")).unwrap();
    std::fs::write(&cfg, text.replace(interval, "processing_interval_seconds = 3600")).unwrap();
    let summary = run_configured_ok(dir.path(), &cfg, &input, &wh, 8192);
    assert_eq!(summary["commits"], 1, "{summary}");
    let table = read_table(&wh, "analytics.customers_analytics");
    let files = table["files"].as_array().unwrap();
    assert!(files.len() >= 2, "one partition of 100k rows should be split: {} file(s)", files.len());
    assert!(files.iter().all(|f| f["sorted"] == true), "a data file is not sorted by customer_id");
    // Files of 16,384 rows or more are `sink.compression` (zstd).
    assert!(files.iter().all(|f| f["codecs"] == serde_json::json!(["ZSTD"])), "{files:?}");
    let partitions: BTreeSet<String> = files.iter().map(|f| f["partition"].to_string()).collect();
    assert_eq!(partitions.len(), 1);
    let mut ranges: Vec<(i64, i64)> =
        files.iter().map(|f| (f["range"][0].as_i64().unwrap(), f["range"][1].as_i64().unwrap())).collect();
    ranges.sort();
    assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "key ranges overlap: {ranges:?}");
    let records: u64 = files.iter().map(|f| f["records"].as_u64().unwrap()).sum();
    assert_eq!(Some(records), summary["rows_committed"].as_u64());
    let ids: BTreeSet<i64> =
        common::rows(&table).iter().map(|r| r["customer_id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len() as u64, records, "a row was written twice");
}
