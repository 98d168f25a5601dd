//! Data files as readers find them: one partition each and sorted by the table's sort order,
//! whatever order records arrive in and however often the writer's buffer fills.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{comparable_rows, plugins_dir, read_table, repo, run_configured};
use serde_json::Value;

/// A realistic stream: creates, updates of earlier keys (out of key order), deletes; ~340 months.
fn generate(out: &Path, records: usize) {
    let status = Command::new(repo().join("scripts/generate-stream"))
        .args(["--records", &records.to_string(), "--out", out.to_str().unwrap(), "--seed", "3"])
        .status()
        .expect("run scripts/generate-stream");
    assert!(status.success());
}

/// The shipped config with `write_buffer_bytes` set.
fn config(dir: &Path, buffer_bytes: usize) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(repo().join("config/cdc-host.toml")).unwrap();
    let line = shipped.lines().find(|l| l.starts_with("write_buffer_bytes")).expect("write_buffer_bytes");
    let p = dir.join(format!("buffer-{buffer_bytes}.toml"));
    std::fs::write(&p, shipped.replace(line, &format!("write_buffer_bytes = {buffer_bytes}"))).unwrap();
    p
}

fn run(dir: &Path, config: &Path, input: &Path, warehouse: &Path) -> Value {
    let out = run_configured(dir, config, &plugins_dir(), input, warehouse, 8192);
    assert!(out.status.success(), "cdc-host failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("summary")
}

#[test]
fn every_file_holds_one_partition_sorted_whatever_the_write_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("stream.ndjson");
    generate(&input, 20_000);
    // 1 MiB: the buffer fills many times per commit; the default holds the whole input.
    let small = run(dir.path(), &config(dir.path(), 1 << 20), &input, &dir.path().join("small"));
    let large = run(dir.path(), &config(dir.path(), 96 << 20), &input, &dir.path().join("large"));
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
