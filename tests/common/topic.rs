//! Loading an NDJSON stream into a Kafka topic (shared by the integration tests and the benchmarks).

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Creates `topic` (4 partitions) and produces every record of the NDJSON `stream` to it
/// (`{"key", "value"}` lines, keyed as Debezium keys them; a null value is a tombstone). Returns how
/// many records it holds.
pub fn load_topic(brokers: &str, topic: &str, stream: &Path) -> usize {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for r in rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create topic")
    {
        r.expect("topic created");
    }
    eprintln!("loading {} into {topic} ...", stream.display());
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let mut n = 0;
    for line in std::io::BufReader::new(std::fs::File::open(stream).unwrap()).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let key = v["key"].to_string();
        let payload = (!v["value"].is_null()).then(|| v["value"].to_string());
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
        n += 1;
    }
    producer.flush(Duration::from_secs(600)).expect("all records delivered");
    n
}
