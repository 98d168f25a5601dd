//! Decoding alone: Debezium JSON lines → columnar batches on one thread (run in release: `cargo bench
//! -p cdc-host --bench decode`).
//!
//! Reads the realistic stream the `realistic` benchmark generates (`target/bench/realistic-1000000.ndjson`,
//! or the file `CDC_BENCH_INPUT` names) into batches of the shipped size, then decodes every batch with
//! the shipped table's column types, `CDC_BENCH_REPEAT` times (default 5). Prints records/s and MB/s of
//! each pass and the best; the input is in memory, so this is the decoder's CPU cost only.

mod support;

use std::collections::HashMap;
use std::io::BufRead;
use std::time::Instant;

use cdc_host::change::RawBatch;
use cdc_host::config::Config;
use cdc_host::decode::Decoder;
use cdc_host::schema::{ColType, parse_type};
use support::repo;

fn main() {
    let input = std::env::var("CDC_BENCH_INPUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/bench/realistic-1000000.ndjson"));
    let file = std::fs::File::open(&input).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `cargo bench -p cdc-host --bench realistic` once to generate it)",
            input.display()
        )
    });
    let repeat: usize = std::env::var("CDC_BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let cfg = Config::shipped_default();
    let declared: HashMap<String, ColType> = cfg
        .table
        .columns
        .iter()
        .map(|c| (c.name.clone(), parse_type(&c.ty).expect("shipped type")))
        .collect();
    let mut batches = vec![RawBatch::default()];
    for (n, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.expect("read input");
        if batches.last().unwrap().len() == cfg.sink.batch_size {
            batches.push(RawBatch::default());
        }
        let b = batches.last_mut().unwrap();
        if b.streams.is_empty() {
            b.streams.push("input".into());
        }
        b.push(0, n as i64 + 1, &line);
    }
    let records: usize = batches.iter().map(RawBatch::len).sum();
    let bytes: usize = batches.iter().map(|b| b.buf.len()).sum();
    let mut best = f64::MAX;
    for pass in 1..=repeat {
        let mut decoder = Decoder::new(declared.clone(), cfg.decode.decimal_handling).widening(true);
        let start = Instant::now();
        let mut events = 0;
        for b in &batches {
            events += decoder.decode(b).batch.len();
        }
        let s = start.elapsed().as_secs_f64();
        best = best.min(s);
        println!(
            "pass {pass}: {records} records ({events} events) in {s:.3} s: {:.0} records/s, {:.0} MB/s",
            records as f64 / s,
            bytes as f64 / s / 1e6
        );
    }
    println!("best: {:.0} records/s, {:.0} MB/s", records as f64 / best, bytes as f64 / best / 1e6);
}
