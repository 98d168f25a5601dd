//! What the end-to-end benchmarks share: running the host binary as a child and its peak memory,
//! and loading a generated stream into a Kafka topic.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The high-water mark of a process's resident memory, in MB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the host to completion, sampling its peak RSS; returns (seconds, peak MB, stdout).
pub fn run_host(args: &[&str], dir: &Path) -> (f64, f64, String) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cdc-host"))
        .args(args)
        .current_dir(dir)
        .env("CDC_HOST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start cdc-host");
    let pid = child.id();
    let mut peak: f64 = 0.0;
    loop {
        if let Some(mb) = peak_rss_mb(pid) {
            peak = peak.max(mb);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "cdc-host {args:?} failed");
    (started.elapsed().as_secs_f64(), peak, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A setting `scripts/stack env` prints (e.g. `KAFKA_BOOTSTRAP_SERVERS`); fails when the stack is down.
#[allow(dead_code)]
pub fn stack_env(key: &str) -> String {
    let out = Command::new(repo().join("scripts/stack")).arg("env").output().expect("scripts/stack env");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("scripts/stack env prints no {key}: is the stack up? (scripts/stack up)"))
}

#[path = "../../../tests/common/topic.rs"]
#[allow(dead_code)] // not every benchmark loads a topic
mod topic;
#[allow(unused_imports)]
pub use topic::load_topic;

/// The realistic stream of `n` records `scripts/generate-stream` writes (once; kept between runs).
#[allow(dead_code)]
pub fn realistic_stream(n: usize) -> PathBuf {
    let input = repo().join(format!("target/bench/realistic-{n}.ndjson"));
    let generated = Command::new(repo().join("scripts/generate-stream"))
        .args(["--records", &n.to_string(), "--out", input.to_str().unwrap()])
        .status()
        .expect("run scripts/generate-stream");
    assert!(generated.success(), "scripts/generate-stream failed");
    input
}

/// The host draining `topic` in batch mode into a warehouse under `dir`, with the shipped chain:
/// (seconds, peak MB, stdout).
#[allow(dead_code)]
pub fn drain_topic(dir: &Path, brokers: &str, topic: &str) -> (f64, f64, String) {
    let plugins = repo().join("plugins");
    let wh = dir.join(format!("wh-{topic}"));
    run_host(
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--bootstrap-servers",
            brokers,
            "--topic",
            topic,
            "--group-id",
            &format!("bench-{topic}"),
            "--mode",
            "batch",
        ],
        dir,
    )
}
