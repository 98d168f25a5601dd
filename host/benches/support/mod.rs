//! What the end-to-end benchmarks share: running the host binary as a child and its peak memory.

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
