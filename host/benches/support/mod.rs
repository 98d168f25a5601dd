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

/// Creates `topic` (4 partitions) and produces every record of the NDJSON `stream` to it
/// (`{"key", "value"}` lines, keyed as Debezium keys them; a null value is a tombstone).
#[allow(dead_code)]
pub fn load_topic(brokers: &str, topic: &str, stream: &Path) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::io::BufRead;

    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for r in rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .unwrap()
    {
        r.unwrap();
    }
    eprintln!("loading {} into {topic} ...", stream.display());
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let file = std::io::BufReader::new(std::fs::File::open(stream).unwrap());
    for line in file.lines() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let key = v["key"].to_string();
        let payload = if v["value"].is_null() { None } else { Some(v["value"].to_string()) };
        loop {
            let mut rec = BaseRecord::to(topic).key(&key);
            if let Some(p) = &payload {
                rec = rec.payload(p);
            }
            match producer.send(rec) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(600)).unwrap();
}

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
