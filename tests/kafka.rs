//! Kafka ingestion against the real local stack (`scripts/stack up`: PostgreSQL, Kafka, Kafka Connect
//! with Debezium): changes made in PostgreSQL reach Iceberg; crashes, broker restarts and consumer-group
//! rebalances neither lose nor duplicate a row.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::util::Timeout;
use serde_json::Value;

const TABLE: &str = "analytics.customers_analytics";

/// Serializes the tests of this file: they share one broker, and one of them restarts it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the stack for one test: `scripts/stack env`, parsed; fails with the fix when it is not up.
fn stack() -> std::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    stack_env();
    guard
}

fn stack_env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let out =
            Command::new(repo().join("scripts/stack")).arg("status").output().expect("run scripts/stack");
        assert!(
            out.status.success(),
            "the local stack is not running: start it with `scripts/stack up` (scripts/test does)\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let out =
            Command::new(repo().join("scripts/stack")).arg("env").output().expect("run scripts/stack env");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').trim_matches('"').to_string()))
            .collect()
    })
}

fn brokers() -> String {
    stack_env()["KAFKA_BOOTSTRAP_SERVERS"].clone()
}

fn psql(sql: &str) -> String {
    let out = Command::new(repo().join("scripts/stack"))
        .args(["psql", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

/// A config for Kafka tests: short commit interval, small batches.
fn kafka_config(dir: &Path, commit_rows: usize) -> PathBuf {
    kafka_config_with(dir, commit_rows, &[])
}

fn kafka_config_with(dir: &Path, commit_rows: usize, extra: &[(&str, &str)]) -> PathBuf {
    let commit = format!("commit_rows = {commit_rows}");
    let mut settings: Vec<(&str, &str)> = vec![
        ("processing_interval_seconds", "processing_interval_seconds = 1"),
        ("commit_rows", &commit),
        ("batch_size", "batch_size = 2000"),
        ("consumer_timeout_ms", "consumer_timeout_ms = 200"),
        ("session_timeout_ms", "session_timeout_ms = 10000"),
    ];
    settings.extend_from_slice(extra);
    config_with(
        dir,
        "[[chain]]\nplugin = \"name-concat\"\n[[chain]]\nplugin = \"location\"\n[[chain]]\nplugin = \"business-rules\"\n",
        &settings,
    )
}

/// A running host; killed on drop if still alive.
struct Host {
    child: Child,
    log: PathBuf,
    /// Its standard output: the JSON summary once it has ended.
    out: PathBuf,
}

impl Host {
    fn start(dir: &Path, name: &str, cfg: &Path, wh: &Path, topic: &str, group: &str, mode: &str) -> Host {
        Self::start_with(dir, name, cfg, wh, topic, group, mode, &[])
    }

    /// [`Host::start`] with extra environment variables.
    #[allow(clippy::too_many_arguments)]
    fn start_with(
        dir: &Path,
        name: &str,
        cfg: &Path,
        wh: &Path,
        topic: &str,
        group: &str,
        mode: &str,
        env: &[(&str, &str)],
    ) -> Host {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let out = dir.join(format!("{name}.out"));
        let stdout = std::fs::File::create(&out).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cdc-host"))
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "--plugins",
                plugins_dir().to_str().unwrap(),
                "--warehouse",
                wh.to_str().unwrap(),
                "--bootstrap-servers",
                &brokers(),
                "--topic",
                topic,
                "--group-id",
                group,
                "--mode",
                mode,
            ])
            .current_dir(dir)
            .env("XDG_CACHE_HOME", repo().join("target/test-cache"))
            .env("CDC_HOST_LOG", "info,librdkafka=warn")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(file)
            .spawn()
            .expect("start cdc-host");
        Host { child, log, out }
    }

    /// The JSON summary it printed when it ended.
    fn summary(&self) -> Value {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("no JSON summary ({e}): {text}\n{}", self.log_text()))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn stop(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "host did not stop within 60 s of SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "host did not finish in {limit:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
}

fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let res = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create topic");
    for r in res {
        r.expect("topic created");
    }
}

/// A Debezium change event (JSON converter, no schema) for customer `id`.
fn event(id: i64, op: &str) -> String {
    let after = serde_json::json!({
        "customer_id": id,
        "email": format!("c{id}@example.com"),
        "first_name": "Test",
        "last_name": format!("N{id}"),
        "city": "Oslo", "state": null, "country": "NO",
        "customer_tier": "gold",
        "lifetime_value": "AMgA",
        "registration_date": 19000 + (id % 400),
        "created_at": "2024-01-01T00:00:00Z",
        "notes": null,
    });
    serde_json::json!({
        "before": null,
        "after": after,
        "source": {"schema": "public", "table": "customers", "ts_ms": 1_700_000_000_000i64, "snapshot": "false"},
        "op": op,
        "ts_ms": 1_700_000_000_000i64,
    })
    .to_string()
}

/// Produces `ids` (one insert each, keyed by id) at about `per_second`.
fn produce(topic: &str, ids: std::ops::Range<i64>, per_second: usize, sent: Arc<AtomicUsize>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let started = Instant::now();
    for (n, id) in ids.enumerate() {
        let payload = event(id, "c");
        let key = format!("{{\"customer_id\":{id}}}");
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
        sent.fetch_add(1, Ordering::Relaxed);
        if n % 500 == 0 {
            producer.poll(Duration::ZERO);
            let due = Duration::from_secs_f64(n as f64 / per_second as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(300)).expect("all records delivered");
}

/// customer_id → how many rows the table holds for it.
fn counts(wh: &Path) -> BTreeMap<i64, usize> {
    let t = read_table_columns(wh, TABLE, &["customer_id"]);
    let mut out = BTreeMap::new();
    for r in rows(&t) {
        *out.entry(r["customer_id"].as_i64().unwrap()).or_insert(0) += 1;
    }
    out
}

/// Rows the table holds now (0 while it does not exist).
fn committed_rows(wh: &Path) -> u64 {
    let out = Command::new(python())
        .arg(repo().join("tests/read_table.py"))
        .args(["--warehouse", wh.to_str().unwrap(), "--table", TABLE, "--columns", "customer_id"])
        .output()
        .unwrap();
    if !out.status.success() {
        return 0;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["num_rows"].as_u64().unwrap_or(0)
}

fn wait_for_rows(wh: &Path, n: u64, limit: Duration, hosts: &[&Host]) {
    let deadline = Instant::now() + limit;
    loop {
        let have = committed_rows(wh);
        if have >= n {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = hosts.iter().map(|h| h.log_text()).collect();
            panic!("only {have} of {n} rows after {limit:?}; host logs:\n{}", logs.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn assert_exactly_once(wh: &Path, ids: std::ops::Range<i64>, hosts: &[&Host]) {
    let c = counts(wh);
    let missing: Vec<i64> = ids.clone().filter(|i| !c.contains_key(i)).take(10).collect();
    let dupes: Vec<(i64, usize)> =
        c.iter().filter(|(_, n)| **n > 1).map(|(i, n)| (*i, *n)).take(10).collect();
    let logs = || hosts.iter().map(|h| h.log_text()).collect::<Vec<_>>().join("\n----\n");
    assert!(missing.is_empty(), "rows lost, e.g. customer_id {missing:?}\n{}", logs());
    assert!(dupes.is_empty(), "rows duplicated, e.g. {dupes:?}\n{}", logs());
    assert_eq!(c.len(), ids.count());
}

#[test]
fn postgres_changes_reach_iceberg() {
    let _stack = stack();
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    // Start at the end of the shared CDC topic (it may hold other runs' history), once assigned.
    let cfg =
        kafka_config_with(dir.path(), 100_000, &[("auto_offset_reset", "auto_offset_reset = \"latest\"")]);
    let tag = unique("e2e");
    let mut host = Host::start(
        dir.path(),
        "host",
        &cfg,
        &wh,
        "postgres.public.customers",
        &unique("group"),
        "streaming",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host.log_text().contains("partitions assigned") {
        assert!(Instant::now() < deadline, "no partitions assigned within 60 s:\n{}", host.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }

    let ids: Vec<i64> = psql(&format!(
        "INSERT INTO customers (email, first_name, last_name, city, state, country, customer_tier, lifetime_value, registration_date) VALUES
         ('{tag}-a@example.com', ' Ada ', 'Lovelace', 'London', NULL, 'GB', 'gold', 1234.50, '2024-02-10'),
         ('{tag}-b@example.com', 'Alan', 'Turing', 'Wilmslow', 'Cheshire', 'GB', 'silver', 10.00, '2024-03-01'),
         ('{tag}-c@example.com', 'Grace', 'Hopper', 'Arlington', 'VA', 'US', NULL, -1.00, '2024-03-05')
         RETURNING customer_id"
    ))
    .lines()
    .filter_map(|l| l.trim().parse().ok()) // the ids; psql also prints the command tag
    .collect();
    assert_eq!(ids.len(), 3);
    psql(&format!(
        "UPDATE customers SET city = 'Cambridge', lifetime_value = 20.25 WHERE customer_id = {}",
        ids[1]
    ));
    psql(&format!("DELETE FROM customers WHERE customer_id = {}", ids[0]));

    // Expected: Ada's insert, Alan's insert and update; Grace rejected (negative); the delete dropped.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mine = loop {
        let Ok(t) = try_read_table(&wh, TABLE) else {
            assert!(Instant::now() < deadline, "table never appeared; host log:\n{}", host.log_text());
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let mine: Vec<serde_json::Map<String, Value>> = rows(&t)
            .into_iter()
            .filter(|r| r["email"].as_str().is_some_and(|e| e.starts_with(&tag)))
            .cloned()
            .collect();
        if mine.len() >= 3 {
            break mine;
        }
        assert!(
            Instant::now() < deadline,
            "changes did not arrive within 120 s; host log:\n{}",
            host.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(mine.len(), 3, "{mine:#?}");
    let ada: Vec<_> = mine.iter().filter(|r| r["customer_id"].as_i64() == Some(ids[0])).collect();
    assert_eq!(ada.len(), 1);
    assert_eq!(ada[0]["full_name"], "Ada Lovelace");
    assert_eq!(ada[0]["location"], "London, GB");
    assert_eq!(ada[0]["lifetime_value"], "1234.50");
    assert_eq!(ada[0]["registration_date"], "2024-02-10");
    assert_eq!(ada[0]["_cdc_operation"], "INSERT");
    let mut alan: Vec<_> = mine.iter().filter(|r| r["customer_id"].as_i64() == Some(ids[1])).collect();
    alan.sort_by_key(|r| r["_cdc_operation"].as_str().unwrap().to_string());
    assert_eq!(alan.len(), 2);
    assert_eq!(
        (alan[0]["_cdc_operation"].as_str(), alan[1]["_cdc_operation"].as_str()),
        (Some("INSERT"), Some("UPDATE"))
    );
    assert_eq!(alan[1]["location"], "Cambridge, Cheshire, GB");
    assert_eq!(alan[1]["lifetime_value"], "20.25");
    assert!(
        mine.iter().all(|r| r["customer_id"].as_i64() != Some(ids[2])),
        "the negative lifetime_value is rejected"
    );

    let dlq = read_table(&wh, "analytics.customers_analytics_dlq");
    let grace: Vec<_> = rows(&dlq)
        .into_iter()
        .filter(|d| d["record"].as_str().is_some_and(|r| r.contains(&format!("{tag}-c@"))))
        .collect();
    assert_eq!(grace.len(), 1);
    assert!(grace[0]["reason"].as_str().unwrap().contains("negative"));
    assert!(grace[0]["source_position"].as_str().unwrap().starts_with("postgres.public.customers/"));

    let status = host.stop();
    assert!(status.success(), "SIGTERM must end the host cleanly: {status}\n{}", host.log_text());
    let t = read_table(&wh, TABLE);
    let snap = &t["snapshots"].as_array().unwrap().last().unwrap()["summary"];
    let positions: BTreeMap<String, i64> =
        serde_json::from_str(snap["cdc-host.positions.postgres-to-iceberg"].as_str().unwrap()).unwrap();
    assert!(positions.keys().all(|k| k.starts_with("postgres.public.customers/")), "{positions:?}");
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let _stack = stack();
    const N: i64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    // Static membership: a restarted host takes over its partitions at once instead of waiting for
    // the killed one's session to time out.
    let cfg = kafka_config_with(
        dir.path(),
        5_000,
        &[("# properties", "properties = { \"group.instance.id\" = \"crash-test-host\" }")],
    );
    let topic = unique("crash");
    let group = unique("group");
    create_topic(&topic, 2);
    let sent = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (topic, sent) = (topic.clone(), sent.clone());
        std::thread::spawn(move || produce(&topic, 0..N, 6_000, sent))
    };
    // Kill the host at pseudo-random moments while the stream flows.
    let mut seed: u64 = 0x9e3779b97f4a7c15 ^ std::process::id() as u64;
    let mut kills_while_flowing = 0;
    for _ in 0..12 {
        let mut host = Host::start(dir.path(), "host", &cfg, &wh, &topic, &group, "streaming");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(600 + seed % 1500));
        host.kill();
        if sent.load(Ordering::Relaxed) < N as usize {
            kills_while_flowing += 1;
        }
    }
    producer.join().unwrap();
    assert_eq!(sent.load(Ordering::Relaxed), N as usize);
    assert!(
        kills_while_flowing >= 10,
        "only {kills_while_flowing} kills happened while records were flowing"
    );
    assert!(committed_rows(&wh) > 0, "some commits landed between the kills");
    // Drain what is left in batch mode: consume up to the end offsets, commit, exit 0.
    let mut host = Host::start(dir.path(), "drain", &cfg, &wh, &topic, &group, "batch");
    let status = host.wait(Duration::from_secs(600));
    assert!(status.success(), "{}", host.log_text());
    assert_exactly_once(&wh, 0..N, &[&host]);
}

#[test]
fn broker_restart_mid_stream_loses_and_duplicates_nothing() {
    let _stack = stack();
    const N: i64 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = kafka_config(dir.path(), 5_000);
    let topic = unique("restart");
    create_topic(&topic, 1);
    let sent = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (topic, sent) = (topic.clone(), sent.clone());
        std::thread::spawn(move || produce(&topic, 0..N, 3_000, sent))
    };
    let host = Host::start(dir.path(), "host", &cfg, &wh, &topic, &unique("group"), "streaming");
    while sent.load(Ordering::Relaxed) < (N / 3) as usize {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Crash the broker, then bring it back.
    let pid = std::fs::read_to_string(repo().join(".stack/run/kafka.pid")).expect("kafka pid file");
    unsafe_kill(pid.trim().parse().unwrap(), "KILL");
    std::thread::sleep(Duration::from_secs(5));
    let up = Command::new(repo().join("scripts/stack")).arg("up").output().unwrap();
    assert!(up.status.success(), "restarting the stack failed: {}", String::from_utf8_lossy(&up.stdout));
    producer.join().unwrap();
    wait_for_rows(&wh, N as u64, Duration::from_secs(300), &[&host]);
    let mut host = host;
    assert!(host.stop().success(), "{}", host.log_text());
    assert!(host.log_text().contains("retrying"), "the outage is logged:\n{}", host.log_text());
    assert_exactly_once(&wh, 0..N, &[&host]);
}

/// A live stream that has caught up commits its rows right away: with an hour-long interval and
/// a row trigger it never reaches, only the caught-up commit can make the rows visible, and it
/// does so again for a second burst. With `caught_up_commit_ms = 0` the same rows wait.
#[test]
fn a_caught_up_stream_commits_without_waiting_for_the_interval() {
    let _stack = stack();
    let topic = unique("caught-up");
    create_topic(&topic, 2);
    let hour = [("processing_interval_seconds", "processing_interval_seconds = 3600")];
    let run = |dir: &Path, caught_up_ms: &str| {
        let wh = dir.join("wh");
        let setting = format!("caught_up_commit_ms = {caught_up_ms}");
        let mut settings = hour.to_vec();
        settings.push(("caught_up_commit_ms", &setting));
        let cfg = kafka_config_with(dir, 1_000_000, &settings);
        let host = Host::start(dir, "host", &cfg, &wh, &topic, &unique("group"), "streaming");
        (wh, host)
    };
    let on = tempfile::tempdir().unwrap();
    let off = tempfile::tempdir().unwrap();
    let (wh, mut host) = run(on.path(), "250");
    let (wh_off, mut host_off) = run(off.path(), "0");
    wait_assigned(&host);
    wait_assigned(&host_off);
    for (burst, ids) in [0..500, 500..1_000].into_iter().enumerate() {
        produce(&topic, ids.clone(), 2_000, Arc::new(AtomicUsize::new(0)));
        wait_for_rows(&wh, ids.end as u64, Duration::from_secs(60), &[&host]);
        assert!(host.child.try_wait().unwrap().is_none(), "burst {burst}: the host is still running");
    }
    assert_eq!(committed_rows(&wh_off), 0, "without caught-up commits the rows wait for the interval");
    assert!(host.stop().success(), "{}", host.log_text());
    assert!(host_off.stop().success(), "{}", host_off.log_text());
    assert_exactly_once(&wh, 0..1_000, &[&host]);
    // Stopping commits what was pending.
    assert_exactly_once(&wh_off, 0..1_000, &[&host_off]);
}

#[test]
fn two_hosts_in_one_group_split_partitions_exactly_once() {
    let _stack = stack();
    const N: i64 = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = kafka_config(dir.path(), 5_000);
    let topic = unique("group");
    let group = unique("group");
    create_topic(&topic, 4);
    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (topic, sent, done) = (topic.clone(), sent.clone(), done.clone());
        std::thread::spawn(move || {
            produce(&topic, 0..N, 4_000, sent);
            done.store(true, Ordering::Relaxed);
        })
    };
    let a = Host::start(dir.path(), "a", &cfg, &wh, &topic, &group, "streaming");
    while sent.load(Ordering::Relaxed) < (N / 4) as usize {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second member joins mid-stream: the partitions are rebalanced between the two.
    let b = Host::start(dir.path(), "b", &cfg, &wh, &topic, &group, "streaming");
    producer.join().unwrap();
    wait_for_rows(&wh, N as u64, Duration::from_secs(300), &[&a, &b]);
    let (mut a, mut b) = (a, b);
    assert!(a.stop().success(), "{}", a.log_text());
    assert!(b.stop().success(), "{}", b.log_text());
    for (name, h) in [("a", &a), ("b", &b)] {
        let log = h.log_text();
        assert!(log.contains("partitions assigned"), "host {name} never got partitions:\n{log}");
    }
    if std::env::var_os("CDC_TEST_KEEP").is_some() {
        let _ = Command::new("cp").args(["-r", dir.path().to_str().unwrap(), "/tmp/kept-two-hosts"]).status();
    }
    assert_exactly_once(&wh, 0..N, &[&a, &b]);
}

/// Waits until the host's log says its partitions are assigned.
fn wait_assigned(host: &Host) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host.log_text().contains("partitions assigned") {
        assert!(Instant::now() < deadline, "no partitions assigned within 60 s:\n{}", host.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Rows of the table whose email starts with `tag` (none while the table does not exist).
fn tagged_rows(wh: &Path, tag: &str) -> Vec<serde_json::Map<String, Value>> {
    let Ok(t) = try_read_table(wh, TABLE) else { return Vec::new() };
    rows(&t)
        .into_iter()
        .filter(|r| r["email"].as_str().is_some_and(|e| e.starts_with(tag)))
        .cloned()
        .collect()
}

#[test]
fn postgres_delete_with_its_tombstone_leaves_no_dead_letter() {
    let _stack = stack();
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg =
        kafka_config_with(dir.path(), 100_000, &[("auto_offset_reset", "auto_offset_reset = \"latest\"")]);
    let tag = unique("tomb");
    let mut host = Host::start(
        dir.path(),
        "host",
        &cfg,
        &wh,
        "postgres.public.customers",
        &unique("group"),
        "streaming",
    );
    wait_assigned(&host);

    let id: i64 = psql(&format!(
        "INSERT INTO customers (email, first_name, last_name, country, lifetime_value, registration_date)
         VALUES ('{tag}-a@example.com', 'Tom', 'Stone', 'NO', 5.00, '2024-04-01') RETURNING customer_id"
    ))
    .lines()
    .find_map(|l| l.trim().parse().ok())
    .expect("the new customer_id");
    // Debezium writes the delete, then a tombstone (null value) with the same key.
    psql(&format!("DELETE FROM customers WHERE customer_id = {id}"));
    // The same key again: same partition, after the tombstone; once it is in the table, so is
    // everything before it.
    psql(&format!(
        "INSERT INTO customers (customer_id, email, first_name, last_name, country, lifetime_value, registration_date)
         VALUES ({id}, '{tag}-b@example.com', 'Tom', 'Again', 'NO', 6.00, '2024-04-02')"
    ));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !tagged_rows(&wh, &tag).iter().any(|r| r["email"] == format!("{tag}-b@example.com")) {
        assert!(Instant::now() < deadline, "the re-insert did not arrive in 120 s:\n{}", host.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = host.stop();
    assert!(status.success(), "{status}\n{}", host.log_text());
    psql(&format!("DELETE FROM customers WHERE customer_id = {id}"));

    let mine = tagged_rows(&wh, &tag);
    let mut seen: Vec<(&str, &str)> =
        mine.iter().map(|r| (r["email"].as_str().unwrap(), r["_cdc_operation"].as_str().unwrap())).collect();
    seen.sort();
    let (a, b) = (format!("{tag}-a@example.com"), format!("{tag}-b@example.com"));
    assert_eq!(seen, vec![(a.as_str(), "INSERT"), (b.as_str(), "INSERT")], "the delete is dropped");
    let summary = host.summary();
    assert!(summary["tombstones"].as_u64().unwrap() >= 1, "the tombstone is counted: {summary}");
    // Other writers may share the topic; none of what was read may be a decode dead letter.
    if let Ok(dlq) = try_read_table(&wh, "analytics.customers_analytics_dlq") {
        let decode: Vec<_> = rows(&dlq).into_iter().filter(|d| d["stage"] == "decode").collect();
        assert!(decode.is_empty(), "decode dead letters: {decode:#?}");
    }
}

#[test]
fn batch_mode_ends_after_transaction_markers() {
    let _stack = stack();
    const COMMITTED: i64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = kafka_config(dir.path(), 100_000);
    let topic = unique("txn");
    create_topic(&topic, 2);
    // A transactional producer: every transaction ends in a commit or abort marker that takes an
    // offset but is never delivered to a consumer; the last one ends each partition.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("transactional.id", unique("txn-producer"))
        .create()
        .expect("transactional producer");
    let timeout = Timeout::After(Duration::from_secs(30));
    producer.init_transactions(timeout).expect("init transactions");
    let send = |ids: std::ops::Range<i64>| {
        producer.begin_transaction().expect("begin");
        for id in ids {
            let (payload, key) = (event(id, "c"), format!("{{\"customer_id\":{id}}}"));
            while producer.send(BaseRecord::to(&topic).key(&key).payload(&payload)).is_err() {
                producer.poll(Duration::from_millis(50));
            }
        }
    };
    send(0..COMMITTED / 2);
    producer.commit_transaction(timeout).expect("commit");
    send(COMMITTED / 2..COMMITTED);
    producer.commit_transaction(timeout).expect("commit");
    send(COMMITTED..COMMITTED + 100);
    producer.flush(timeout).expect("aborted records written");
    producer.abort_transaction(timeout).expect("abort");

    let mut host = Host::start(dir.path(), "batch", &cfg, &wh, &topic, &unique("group"), "batch");
    let status = host.wait(Duration::from_secs(120));
    assert!(status.success(), "{status}\n{}", host.log_text());
    let summary = host.summary();
    assert_eq!(summary["records"], COMMITTED, "the aborted transaction is not read: {summary}");
    assert_eq!(summary["dead_letters"], 0, "{summary}");
    assert_exactly_once(&wh, 0..COMMITTED, &[&host]);
}

/// Kafka values that are not JSON are dead letters, also one whose text after a valid envelope would
/// read as more fields of the record the host wraps it in; the records around them land.
#[test]
fn kafka_values_that_are_not_json_are_dead_letters() {
    let _stack = stack();
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = kafka_config(dir.path(), 100_000);
    let topic = unique("notjson");
    create_topic(&topic, 1);
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("producer");
    let mut values: Vec<String> = (0..10).map(|id| event(id, "c")).collect();
    values.insert(4, format!("{},\"zzz\":1", event(100, "c")));
    values.insert(7, "garbage".to_string());
    for (n, v) in values.iter().enumerate() {
        let key = format!("{{\"customer_id\":{n}}}");
        while producer.send(BaseRecord::to(&topic).key(&key).payload(v)).is_err() {
            producer.poll(Duration::from_millis(50));
        }
    }
    producer.flush(Timeout::After(Duration::from_secs(30))).expect("records written");

    let mut host = Host::start(dir.path(), "batch", &cfg, &wh, &topic, &unique("group"), "batch");
    let status = host.wait(Duration::from_secs(120));
    assert!(status.success(), "{status}\n{}", host.log_text());
    let summary = host.summary();
    assert_eq!(summary["records"], 12, "{summary}");
    assert_eq!(summary["dead_letters"], 2, "{summary}");
    assert_exactly_once(&wh, 0..10, &[&host]);
}

/// A mirror table fed by Debezium through Kafka (the key from the Kafka record keys): an update that
/// moves a row to another partition, a primary-key change, an insert deleted again, and an update
/// that leaves a TOASTed `notes` untouched end as one row per live key with the value kept.
#[test]
fn postgres_changes_mirror_into_iceberg() {
    let _stack = stack();
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = kafka_config_with(
        dir.path(),
        100_000,
        &[("auto_offset_reset", "auto_offset_reset = \"latest\""), ("mode", "mode = \"mirror\"")],
    );
    let tag = unique("mirror");
    let mut host = Host::start(
        dir.path(),
        "host",
        &cfg,
        &wh,
        "postgres.public.customers",
        &unique("group"),
        "streaming",
    );
    wait_assigned(&host);
    let insert = |email: &str, notes: &str| -> i64 {
        psql(&format!(
            "INSERT INTO customers (email, first_name, last_name, city, country, lifetime_value, registration_date, notes)
             VALUES ('{tag}-{email}@example.com', 'Mi', 'Rror', 'Oslo', 'NO', 5.00, '2024-04-01', {notes}) RETURNING customer_id"
        ))
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("the new customer_id")
    };
    // Random text does not compress: 20 kB of it is stored out of line (TOAST).
    let big = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 640) i)";
    let a = insert("a", "'small'");
    let b = insert("b", "'gone'");
    let c = insert("c", big);
    psql(&format!(
        "UPDATE customers SET city = 'Bergen', registration_date = '2023-01-05' WHERE customer_id = {a}"
    ));
    let a2: i64 = psql("SELECT max(customer_id) + 1000 FROM customers").parse().unwrap();
    psql(&format!("UPDATE customers SET customer_id = {a2} WHERE customer_id = {a}"));
    psql(&format!("DELETE FROM customers WHERE customer_id = {b}"));
    psql(&format!("UPDATE customers SET customer_tier = 'platinum' WHERE customer_id = {c}"));
    let big_len: usize =
        psql(&format!("SELECT length(notes) FROM customers WHERE customer_id = {c}")).parse().unwrap();

    let done = |rows: &[serde_json::Map<String, Value>]| {
        let ids: std::collections::BTreeSet<i64> =
            rows.iter().filter_map(|r| r["customer_id"].as_i64()).collect();
        ids == std::collections::BTreeSet::from([a2, c])
            && rows.iter().any(|r| r["customer_id"] == c && r["customer_tier"] == "platinum")
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(&tagged_rows(&wh, &tag)) {
        assert!(
            Instant::now() < deadline,
            "the mirror did not reach the source state in 120 s: {:?}\n{}",
            tagged_rows(&wh, &tag).iter().map(|r| (&r["customer_id"], &r["email"])).collect::<Vec<_>>(),
            host.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = host.stop();
    assert!(status.success(), "{status}\n{}", host.log_text());
    psql(&format!("DELETE FROM customers WHERE customer_id IN ({a2}, {c})"));

    let rows = tagged_rows(&wh, &tag);
    assert_eq!(rows.len(), 2, "one row per live key: {rows:?}");
    let row = |id: i64| rows.iter().find(|r| r["customer_id"] == id).unwrap();
    assert_eq!(row(a2)["location"], "Bergen, NO");
    assert_eq!(row(a2)["registration_date"], "2023-01-05");
    assert_eq!(row(c)["notes"].as_str().map(str::len), Some(big_len), "the TOASTed notes are kept");
}

/// A small deterministic random source for workloads.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The rows `ids` of `public.customers` as the mirror must hold them: the shipped chain applied
/// (names and places joined, rows without an email or with a negative lifetime value left out).
fn mirror_view(ids: &std::collections::BTreeSet<i64>) -> BTreeMap<i64, Vec<Value>> {
    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let json = psql(&format!(
        "SELECT coalesce(json_agg(c), '[]') FROM (SELECT customer_id, email,
           nullif(concat_ws(' ', first_name, last_name), '') AS full_name,
           nullif(concat_ws(', ', city, state, country), '') AS location, customer_tier,
           lifetime_value::text AS lifetime_value, registration_date::text AS registration_date, notes
         FROM customers WHERE customer_id IN ({list}) AND email IS NOT NULL
           AND (lifetime_value IS NULL OR lifetime_value >= 0)) c"
    ));
    let rows: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&json).unwrap();
    rows.iter().map(|r| (r["customer_id"].as_i64().unwrap(), mirror_values(r))).collect()
}

fn mirror_values(r: &serde_json::Map<String, Value>) -> Vec<Value> {
    ["email", "full_name", "location", "customer_tier", "lifetime_value", "registration_date", "notes"]
        .iter()
        .map(|c| r.get(*c).cloned().unwrap_or(Value::Null))
        .collect()
}

fn mirror_table(wh: &Path, ids: &std::collections::BTreeSet<i64>) -> BTreeMap<i64, Vec<Value>> {
    let Ok(t) = try_read_table(wh, TABLE) else { return BTreeMap::new() };
    let mut out = BTreeMap::new();
    for r in rows(&t) {
        let Some(id) = r["customer_id"].as_i64().filter(|i| ids.contains(i)) else { continue };
        assert!(out.insert(id, mirror_values(r)).is_none(), "customer {id} has two rows");
    }
    out
}

/// A random workload in PostgreSQL (inserts, updates of every column, deletes, primary-key changes,
/// partition moves, large TOASTed notes left untouched by later updates, updates the chain rejects)
/// while the mirror host is killed (SIGKILL) and restarted: the table ends equal to a SQL view over
/// `public.customers` applying the same transforms and rules.
#[test]
fn postgres_random_workload_mirrors_through_kills() {
    let _stack = stack();
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = kafka_config_with(
        dir.path(),
        50,
        &[("auto_offset_reset", "auto_offset_reset = \"latest\""), ("mode", "mode = \"mirror\"")],
    );
    let tag = unique("rw");
    let group = unique("group");
    let start = |n: usize| {
        Host::start(
            dir.path(),
            &format!("host{n}"),
            &cfg,
            &wh,
            "postgres.public.customers",
            &group,
            "streaming",
        )
    };
    let mut host = start(0);
    wait_assigned(&host);
    let mut rng = Lcg(std::process::id() as u64);
    let mut live: Vec<i64> = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    let big = "(SELECT string_agg(md5((i * random())::text), '') FROM generate_series(1, 400) i)";
    let op = |rng: &mut Lcg, live: &mut Vec<i64>, ids: &mut std::collections::BTreeSet<i64>| {
        let r = rng.next(100);
        if r < 35 || live.is_empty() {
            let notes = if rng.next(4) == 0 { big.to_string() } else { format!("'n{}'", rng.next(1000)) };
            let id: i64 = psql(&format!(
                "INSERT INTO customers (email, first_name, last_name, city, state, country, customer_tier,
                   lifetime_value, registration_date, notes)
                 VALUES ('{tag}-{}@example.com', 'F{}', 'L', 'C{}', NULL, 'NO', 'gold', {}.25,
                   date '2023-01-01' + {}, {notes}) RETURNING customer_id",
                rng.next(1_000_000),
                rng.next(50),
                rng.next(9),
                rng.next(5000),
                rng.next(700),
            ))
            .lines()
            .find_map(|l| l.trim().parse().ok())
            .expect("customer_id");
            live.push(id);
            ids.insert(id);
            return;
        }
        let k = rng.next(live.len() as u64) as usize;
        let id = live[k];
        let set = match r {
            35..=44 => format!("customer_tier = 't{}'", rng.next(5)),
            45..=52 => format!("registration_date = date '2022-01-01' + {}", rng.next(1200)),
            53..=58 => format!("first_name = 'G{}', city = NULL, state = 'S{}'", rng.next(50), rng.next(5)),
            59..=63 => format!("lifetime_value = {}", rng.next(3000) as i64 - 500),
            64..=67 => format!("email = '{tag}-{}@example.com'", rng.next(1_000_000)),
            68..=71 => format!("notes = 'm{}', country = 'SE'", rng.next(1000)),
            72..=76 => "email = NULL".to_string(),
            77..=84 => {
                psql(&format!("DELETE FROM customers WHERE customer_id = {id}"));
                live.swap_remove(k);
                return;
            }
            85..=92 => {
                let new: i64 = psql(&format!(
                    "UPDATE customers SET customer_id = (SELECT greatest(max(customer_id), 1000000000) + 1 FROM customers)
                     WHERE customer_id = {id} RETURNING customer_id"
                ))
                .lines()
                .find_map(|l| l.trim().parse().ok())
                .expect("new customer_id");
                live[k] = new;
                ids.insert(new);
                return;
            }
            _ => format!("last_name = 'M{}', lifetime_value = NULL", rng.next(50)),
        };
        psql(&format!("UPDATE customers SET {set} WHERE customer_id = {id}"));
    };
    // A probe row lands before the workload starts (the consumer may take a moment to take its
    // `latest` position) and before any kill, so the table holds the partition's position.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut probes = std::collections::BTreeSet::new();
    while mirror_table(&wh, &probes).is_empty() {
        assert!(Instant::now() < deadline, "nothing committed in 120 s:\n{}", host.log_text());
        let id: i64 = psql(&format!(
            "INSERT INTO customers (email, lifetime_value) VALUES ('{tag}-probe@example.com', 1) RETURNING customer_id"
        ))
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("customer_id");
        probes.insert(id);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let probe_list = probes.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    psql(&format!("DELETE FROM customers WHERE customer_id IN ({probe_list})"));
    for round in 1..=3 {
        for _ in 0..60 {
            op(&mut rng, &mut live, &mut ids);
        }
        std::thread::sleep(Duration::from_millis(rng.next(1500)));
        host.kill();
        host = start(round);
    }
    for _ in 0..60 {
        op(&mut rng, &mut live, &mut ids);
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (want, got) = (mirror_view(&ids), mirror_table(&wh, &ids));
        if want == got {
            break;
        }
        if Instant::now() > deadline {
            let differ: Vec<_> = want
                .keys()
                .chain(got.keys())
                .filter(|k| want.get(k) != got.get(k))
                .map(|k| (k, want.get(k).map(|v| format!("{v:?}")), got.get(k).map(|v| format!("{v:?}"))))
                .take(5)
                .collect();
            panic!("the mirror differs from the source view: {differ:#?}\n{}", host.log_text());
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    let status = host.stop();
    assert!(status.success(), "{status}\n{}", host.log_text());
    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    psql(&format!("DELETE FROM customers WHERE customer_id IN ({list})"));
}

/// How a column compares between PostgreSQL (as the view query selects it) and the Iceberg table
/// (as pyiceberg reads it).
#[derive(Clone, Copy)]
enum Kind {
    Int,
    /// Exact decimal text, trailing zeros aside.
    Dec,
    /// JSON text, compared as JSON.
    Json,
    /// Text, or bytes as lower-case hex.
    Text,
    /// Microseconds since the epoch: PostgreSQL's number; the table's ISO time with zone.
    Tz,
    /// The same for a time without zone.
    Ts,
}

fn canonical(kind: Kind, v: &Value, from_table: bool) -> Value {
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    match (kind, v) {
        (_, Value::Null) => Value::Null,
        (Kind::Dec, Value::String(s)) => Value::String(trim(s)),
        (Kind::Json, Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}")),
        (Kind::Tz, Value::String(s)) if from_table => chrono::DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .timestamp_micros()
            .into(),
        (Kind::Ts, Value::String(s)) if from_table => {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .unwrap_or_else(|e| panic!("{s}: {e}"))
                .and_utc()
                .timestamp_micros()
                .into()
        }
        _ => v.clone(),
    }
}

/// Rows by key: PostgreSQL's `select` (columns named as in `columns`, the key first) over `keys`.
fn source_rows(
    select: &str,
    columns: &[(&str, Kind)],
    keys: &std::collections::BTreeSet<i64>,
) -> BTreeMap<i64, Vec<Value>> {
    let list = keys.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let json = psql(&format!(
        "SELECT coalesce(json_agg(r), '[]') FROM ({select} WHERE {} IN ({list})) r",
        columns[0].0
    ));
    let rows: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&json).unwrap();
    rows.iter()
        .map(|r| {
            (
                r[columns[0].0].as_i64().unwrap(),
                columns.iter().map(|(c, k)| canonical(*k, &r[*c], false)).collect(),
            )
        })
        .collect()
}

/// Rows by key of an Iceberg table of `wh`.
fn table_rows(
    wh: &Path,
    table: &str,
    columns: &[(&str, Kind)],
    keys: &std::collections::BTreeSet<i64>,
) -> BTreeMap<i64, Vec<Value>> {
    let Ok(t) = try_read_table(wh, table) else { return BTreeMap::new() };
    let mut out = BTreeMap::new();
    for r in rows(&t) {
        let Some(id) = r[columns[0].0].as_i64().filter(|i| keys.contains(i)) else { continue };
        let values =
            columns.iter().map(|(c, k)| canonical(*k, r.get(*c).unwrap_or(&Value::Null), true)).collect();
        assert!(out.insert(id, values).is_none(), "{table}: key {id} has two rows");
    }
    out
}

const ORDERS: &[(&str, Kind)] = &[
    ("order_id", Kind::Int),
    ("customer_id", Kind::Int),
    ("amount", Kind::Dec),
    ("items", Kind::Json),
    ("tags", Kind::Json),
    ("receipt", Kind::Text),
    ("placed_at", Kind::Tz),
    ("shipped_at", Kind::Ts),
];

const READINGS: &[(&str, Kind)] = &[
    ("reading_id", Kind::Int),
    ("sensor", Kind::Text),
    ("value", Kind::Dec),
    ("taken_at", Kind::Ts),
    ("noted_at", Kind::Tz),
    ("payload", Kind::Text),
    ("levels", Kind::Json),
    ("raw", Kind::Text),
];

/// Micros since the epoch of a PostgreSQL time column, for the comparison.
fn epoch_us(column: &str) -> String {
    format!("(extract(epoch FROM {column}) * 1000000)::bigint AS {column}")
}

/// Three source tables of other types than customers' captured by the one Debezium connector:
/// `mt_orders` (numeric without scale, jsonb, text[], bytea, timestamp with and without zone) and
/// `mt_readings` (numeric, json kept as written, int[], bytea, both timestamps), next to
/// `customers`. One host subscribes to the three topics by pattern and routes each to its own table:
/// customers through the reference chain, the others with declared types and no plugins, all three
/// mirrors. A random workload on the three runs while the host is killed (SIGKILL) three times; each
/// table ends equal to its source.
#[test]
fn three_postgres_tables_land_in_three_tables_through_kills() {
    let _stack = stack();
    psql(
        "CREATE TABLE IF NOT EXISTS public.mt_orders (order_id serial PRIMARY KEY, customer_id int, amount numeric,
           items jsonb, tags text[], receipt bytea, placed_at timestamptz, shipped_at timestamp)",
    );
    psql(
        "CREATE TABLE IF NOT EXISTS public.mt_readings (reading_id bigserial PRIMARY KEY, sensor text NOT NULL,
           value numeric, taken_at timestamp, noted_at timestamptz, payload json, levels int[], raw bytea)",
    );
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = kafka_config_with(
        dir.path(),
        50,
        &[("auto_offset_reset", "auto_offset_reset = \"latest\""), ("mode", "mode = \"mirror\"")],
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += r#"
[[tables]]
source = ["public.mt_orders"]
namespace = "shop"
name = "orders"
mode = "mirror"
chain = []
columns = [
  { name = "order_id", type = "int" }, { name = "customer_id", type = "int" },
  { name = "amount", type = "decimal(38,6)" }, { name = "items", type = "string" },
  { name = "tags", type = "json" }, { name = "receipt", type = "binary" },
  { name = "placed_at", type = "timestamptz" }, { name = "shipped_at", type = "timestamp" },
]

[[tables]]
topics = ["postgres.public.mt_readings"]
namespace = "shop"
name = "readings"
mode = "mirror"
chain = []
partition = [{ column = "taken_at", transform = "month" }]
columns = [
  { name = "reading_id", type = "long" }, { name = "sensor", type = "string" },
  { name = "value", type = "decimal(38,6)" }, { name = "taken_at", type = "timestamp" },
  { name = "noted_at", type = "timestamptz" }, { name = "payload", type = "string" },
  { name = "levels", type = "json" }, { name = "raw", type = "binary" },
]
"#;
    std::fs::write(&cfg, text).unwrap();
    let tag = unique("mt");
    let group = unique("group");
    let topics = r"^postgres\.public\.(customers|mt_orders|mt_readings)$";
    let start =
        |n: usize| Host::start(dir.path(), &format!("host{n}"), &cfg, &wh, topics, &group, "streaming");
    let mut host = start(0);
    wait_assigned(&host);
    let mut rng = Lcg(std::process::id() as u64 ^ 0x5eed);
    let id_of = |out: String| -> i64 { out.lines().find_map(|l| l.trim().parse().ok()).expect("an id") };
    let (mut customers, mut orders, mut readings) = (Vec::new(), Vec::new(), Vec::new());
    let (mut customer_ids, mut order_ids, mut reading_ids) = Default::default();
    let mut op = |rng: &mut Lcg| {
        let (live, all, table, key): (&mut Vec<i64>, &mut std::collections::BTreeSet<i64>, &str, &str) =
            match rng.next(3) {
                0 => (&mut customers, &mut customer_ids, "customers", "customer_id"),
                1 => (&mut orders, &mut order_ids, "mt_orders", "order_id"),
                _ => (&mut readings, &mut reading_ids, "mt_readings", "reading_id"),
            };
        let r = rng.next(100);
        if r < 45 || live.is_empty() {
            let (a, b, c) = (rng.next(1000), rng.next(100_000), rng.next(7));
            let sql = match table {
                "customers" => format!(
                    "INSERT INTO customers (email, first_name, last_name, country, lifetime_value, registration_date, notes)
                     VALUES ('{tag}-{a}@example.com', 'F{c}', 'L', 'NO', {a}.5, date '2020-01-01' + {a}, 'n{b}') RETURNING customer_id"
                ),
                "mt_orders" => format!(
                    "INSERT INTO mt_orders (customer_id, amount, items, tags, receipt, placed_at, shipped_at)
                     VALUES ({a}, round({b}::numeric / 7, {c}), '{{\"sku\": \"s{a}\", \"n\": {c}}}',
                       {tags}, {receipt}, timestamptz '2024-03-01 10:00:00+01' + interval '{b} seconds',
                       timestamp '2024-01-01' + interval '{b}001 microseconds') RETURNING order_id",
                    tags = if c == 0 { "NULL".to_string() } else { format!("ARRAY['t{a}', 'x\"{c}']") },
                    receipt = if c == 1 { "NULL".to_string() } else { format!("decode(md5('{b}'), 'hex')") },
                ),
                _ => format!(
                    "INSERT INTO mt_readings (sensor, value, taken_at, noted_at, payload, levels, raw)
                     VALUES ('s{c}', {b}.{a}, timestamp '2021-06-01' + interval '{b} minutes 17 microseconds',
                       now(), '{{ \"a\" : {a},  \"b\": [1, 2] }}', ARRAY[{a}, {c}], decode('00ff{c:02x}', 'hex'))
                     RETURNING reading_id"
                ),
            };
            let id = id_of(psql(&sql));
            live.push(id);
            all.insert(id);
            return;
        }
        let k = rng.next(live.len() as u64) as usize;
        let id = live[k];
        if r >= 85 {
            psql(&format!("DELETE FROM {table} WHERE {key} = {id}"));
            live.swap_remove(k);
            return;
        }
        let v = rng.next(10_000);
        let set = match (table, r % 3) {
            ("customers", 0) => format!("lifetime_value = {v}.25, city = 'C{v}'"),
            ("customers", 1) => format!("registration_date = date '2019-01-01' + {v}"),
            ("customers", _) => "email = NULL".to_string(),
            ("mt_orders", 0) => format!("amount = {v}.0001, tags = array_append(tags, 'u{v}')"),
            ("mt_orders", 1) => format!("items = items || '{{\"u\": {v}}}', shipped_at = NULL"),
            ("mt_orders", _) => {
                format!("receipt = '\\x{v:04x}', placed_at = placed_at - interval '{v} days'")
            }
            (_, 0) => format!("value = -{v}.5, levels = levels || {v}"),
            (_, 1) => format!("payload = '[{v}, \"x\"]', taken_at = taken_at + interval '{v} hours'"),
            _ => "raw = NULL, noted_at = NULL".to_string(),
        };
        psql(&format!("UPDATE {table} SET {set} WHERE {key} = {id}"));
    };
    // Every table holds its partition's position before the first kill (the consumer starts each
    // new partition at its end).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut probes: Vec<(String, &str, i64)> = Vec::new();
    loop {
        let landed = |table: &str| try_read_table(&wh, table).is_ok_and(|t| !rows(&t).is_empty());
        if landed(TABLE) && landed("shop.orders") && landed("shop.readings") {
            break;
        }
        assert!(Instant::now() < deadline, "the three tables did not start in 120 s:\n{}", host.log_text());
        let c = psql(&format!(
            "INSERT INTO customers (email, lifetime_value) VALUES ('{tag}-probe@example.com', 1) RETURNING customer_id"
        ));
        probes.push(("customers".into(), "customer_id", id_of(c)));
        let o = psql("INSERT INTO mt_orders (customer_id) VALUES (0) RETURNING order_id");
        probes.push(("mt_orders".into(), "order_id", id_of(o)));
        let r = psql("INSERT INTO mt_readings (sensor) VALUES ('probe') RETURNING reading_id");
        probes.push(("mt_readings".into(), "reading_id", id_of(r)));
        std::thread::sleep(Duration::from_millis(1500));
    }
    for (table, key, id) in &probes {
        psql(&format!("DELETE FROM {table} WHERE {key} = {id}"));
    }
    for round in 1..=3 {
        for _ in 0..90 {
            op(&mut rng);
        }
        std::thread::sleep(Duration::from_millis(rng.next(1500)));
        host.kill();
        host = start(round);
    }
    for _ in 0..90 {
        op(&mut rng);
    }
    let orders_view = format!(
        "SELECT order_id, customer_id, amount::text AS amount, items::text AS items, array_to_json(tags)::text AS tags,
           encode(receipt, 'hex') AS receipt, {}, {} FROM mt_orders",
        epoch_us("placed_at"),
        epoch_us("shipped_at")
    );
    let readings_view = format!(
        "SELECT reading_id, sensor, value::text AS value, {}, {}, payload::text AS payload,
           array_to_json(levels)::text AS levels, encode(raw, 'hex') AS raw FROM mt_readings",
        epoch_us("taken_at"),
        epoch_us("noted_at")
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pairs = [
            ("customers", mirror_view(&customer_ids), mirror_table(&wh, &customer_ids)),
            (
                "orders",
                source_rows(&orders_view, ORDERS, &order_ids),
                table_rows(&wh, "shop.orders", ORDERS, &order_ids),
            ),
            (
                "readings",
                source_rows(&readings_view, READINGS, &reading_ids),
                table_rows(&wh, "shop.readings", READINGS, &reading_ids),
            ),
        ];
        let differ: Vec<_> = pairs
            .iter()
            .flat_map(|(name, want, got)| {
                want.keys()
                    .chain(got.keys())
                    .filter(|k| want.get(k) != got.get(k))
                    .map(move |k| format!("{name} {k}: source {:?}, table {:?}", want.get(k), got.get(k)))
            })
            .take(6)
            .collect();
        if differ.is_empty() {
            assert!(pairs.iter().all(|(_, want, _)| !want.is_empty()), "every table has live rows");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tables differ from their sources: {differ:#?}\n{}",
            host.log_text()
        );
        std::thread::sleep(Duration::from_millis(1000));
    }
    let status = host.stop();
    assert!(status.success(), "{status}\n{}", host.log_text());
    let summary = host.summary();
    assert_eq!(summary["tables"].as_array().map(Vec::len), Some(3), "{summary}");
    for (table, key, ids) in [
        ("customers", "customer_id", &customer_ids),
        ("mt_orders", "order_id", &order_ids),
        ("mt_readings", "reading_id", &reading_ids),
    ] {
        let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        psql(&format!("DELETE FROM {table} WHERE {key} IN ({list})"));
    }
}

/// The value of a PromQL instant query (`data.result`), through Prometheus' HTTP API.
fn prometheus_query(url: &str, expr: &str) -> Vec<Value> {
    let out = Command::new("curl")
        .args(["-fsS", "-m", "10", "--get", "--data-urlencode"])
        .arg(format!("query={expr}"))
        .arg(format!("{url}/api/v1/query"))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "query {expr}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("Prometheus answers JSON");
    assert_eq!(v["status"], "success", "query {expr}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The shipped monitoring against real Prometheus: the stack's Prometheus (`scripts/stack up
/// --monitoring`, with `monitoring/prometheus.yml`) scrapes a streaming host serving its metrics on the
/// address that file names, and every PromQL expression of the Grafana dashboard
/// (`monitoring/grafana/cdc-host.json`) returns data.
#[test]
fn every_dashboard_panel_has_data_in_prometheus() {
    let _stack = stack();
    let url = stack_env().get("PROMETHEUS_URL").cloned().unwrap_or_default();
    let ready = Command::new("curl").args(["-fsS", "-m", "5", &format!("{url}/-/ready")]).output();
    assert!(
        ready.is_ok_and(|o| o.status.success()),
        "Prometheus does not answer at {url}: start it with `scripts/stack up --monitoring` (scripts/test does)"
    );
    let scrape = std::fs::read_to_string(repo().join("monitoring/prometheus.yml")).unwrap();
    let target = "127.0.0.1:9464";
    assert!(scrape.contains(target), "monitoring/prometheus.yml should scrape {target}");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("monitoring/grafana/cdc-host.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut panels: Vec<(String, String)> = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            panels.push((p["title"].as_str().unwrap().to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    let titles: std::collections::BTreeSet<&str> = panels.iter().map(|(t, _)| t.as_str()).collect();
    for wanted in [
        "Events processed / s",
        "Transformation throughput",
        "Pipeline lag",
        "Kafka consumer lag",
        "Iceberg write throughput",
        "Dead letters / s",
        "Plugin failures",
    ] {
        assert!(titles.contains(wanted), "the dashboard has no `{wanted}` panel");
    }

    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = kafka_config(dir.path(), 2_000);
    let topic = unique("monitoring");
    create_topic(&topic, 2);
    let sent = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (topic, sent) = (topic.clone(), sent.clone());
        std::thread::spawn(move || produce(&topic, 0..60_000, 2_000, sent))
    };
    let mut host = Host::start_with(
        dir.path(),
        "host",
        &cfg,
        &wh,
        &topic,
        &unique("group"),
        "streaming",
        &[("CDC_METRICS_ADDR", target)],
    );
    // Rates need two scrapes (5 s apart) inside their window; the Kafka lag is reported every 10 s.
    let started = Instant::now();
    let mut empty: Vec<&(String, String)> = panels.iter().collect();
    while !empty.is_empty() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(3));
        empty.retain(|(_, expr)| prometheus_query(&url, expr).is_empty());
    }
    assert!(
        empty.is_empty(),
        "panels without data after {:?}: {empty:?}\nhost log:\n{}",
        started.elapsed(),
        host.log_text()
    );
    // The figures are the host's: events flowed, rows were committed, this pipeline is labelled.
    let events = prometheus_query(
        &url,
        "sum(cross_storage_events_processed{pipeline_id=\"postgres-to-iceberg\", operation=\"c\"})",
    );
    let value = |r: &[Value]| r[0]["value"][1].as_str().unwrap().parse::<f64>().unwrap();
    assert!(value(&events) > 0.0, "no create events counted: {events:?}");
    let rows = prometheus_query(&url, "sum(cdc_host_rows_committed_total)");
    assert!(value(&rows) > 0.0, "no committed rows counted: {rows:?}");
    host.stop();
    producer.join().unwrap();
}
