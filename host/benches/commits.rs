//! Commit cost over a table's life: 10,000 small appends (one row, one data file each, positions in
//! every snapshot) to one table through the host's own commit path, with the default maintenance
//! policy running every `every_commits` commits as a running host does. Reports the median commit
//! time of commits 100–200 and of the last 100, and the size of the metadata directory.
//!
//!   cargo bench -p cdc-host --bench commits [-- COMMITS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, new_null_array};
use cdc_host::change::RawBatch;
use cdc_host::config::Config;
use cdc_host::pipeline::table_spec;
use cdc_host::sink::maintain;
use cdc_host::sink::table_sink::TableSink;
use cdc_host::sink::writer::FileSettings;
use cdc_host::sink::{catalog, parquet_properties, table};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn dir_size(dir: &std::path::Path) -> (usize, u64) {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .fold((0, 0), |(n, b), e| (n + 1, b + e.metadata().map(|m| m.len()).unwrap_or(0)))
        })
        .unwrap_or((0, 0))
}

#[tokio::main]
async fn main() {
    let commits: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::shipped_default();
    cfg.catalog.warehouse = dir.path().to_path_buf();
    let catalog = Arc::new(catalog::open(&cfg).await.unwrap());
    catalog::ensure_namespace(&catalog, &cfg.table.namespace).await.unwrap();
    let spec = table_spec(&cfg, None).unwrap();
    let t = table::ensure(&catalog, &spec).await.unwrap();
    let location = t.metadata().location().trim_start_matches("file:").trim_start_matches("//").to_string();
    let metadata_dir = std::path::PathBuf::from(location).join("metadata");
    let (props, small_props) = parquet_properties(&cfg.sink).unwrap();
    let mut sink = TableSink::new(
        catalog.clone(),
        t,
        &cfg.pipeline_id,
        FileSettings { props, small_props, target_file_size: 1 << 20, buffer_bytes: 1 << 20 },
    );
    let policy = cfg.maintenance.clone();
    let mut times = Vec::with_capacity(commits);
    let mut maintenance = Duration::ZERO;
    let started = Instant::now();
    for i in 0..commits {
        let schema = sink.arrow_schema().await.unwrap();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                if f.name() == "customer_id" {
                    Arc::new(Int64Array::from(vec![i as i64]))
                } else {
                    new_null_array(f.data_type(), 1)
                }
            })
            .collect();
        sink.write(RecordBatch::try_new(schema, columns).unwrap()).await.unwrap();
        let mut raw = RawBatch::new(vec![Arc::from("bench")]);
        raw.push(0, i as i64 + 1, b"{}");
        sink.track(&raw, &[true]);
        let t0 = Instant::now();
        sink.commit("bench", true).await.unwrap();
        times.push(t0.elapsed());
        if (i + 1) % policy.every_commits as usize == 0 {
            let t0 = Instant::now();
            maintain::run(&catalog, sink.table().clone(), &policy).await.unwrap();
            sink.reload().await.unwrap();
            maintenance += t0.elapsed();
        }
        if (i + 1) % 1000 == 0 {
            let (files, bytes) = dir_size(&metadata_dir);
            eprintln!(
                "{:>6} commits  last: {:>6.2} ms  metadata dir: {files} files, {:.1} KiB",
                i + 1,
                times[i].as_secs_f64() * 1000.0,
                bytes as f64 / 1024.0
            );
        }
    }
    let early = median(&mut times[100.min(commits)..200.min(commits)].to_vec());
    let late = median(&mut times[commits.saturating_sub(100)..].to_vec());
    let (files, bytes) = dir_size(&metadata_dir);
    let snapshots = sink.table().metadata().snapshots().len();
    println!(
        "commits: {commits} in {:.1} s (maintenance {:.1} s of it)",
        started.elapsed().as_secs_f64(),
        maintenance.as_secs_f64()
    );
    println!("median commit, commits 100-200: {:.2} ms", early.as_secs_f64() * 1000.0);
    println!("median commit, last 100:        {:.2} ms", late.as_secs_f64() * 1000.0);
    println!("ratio last/early: {:.2}x (target <= 1.5x)", late.as_secs_f64() / early.as_secs_f64());
    println!("metadata dir: {files} files, {:.1} KiB; snapshots kept: {snapshots}", bytes as f64 / 1024.0);
}
