//! The audit mirror: every audit record the store chained is also produced to a Kafka topic (real
//! Tansu), at least once, even across a SIGKILL in the middle of a run; what arrives matches the
//! store's log record for record (sequence number and hash), so a SIEM can verify the chain.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;

use scimflow_e2e::*;

const TOPIC: &str = "hr-mirror";
const AUDIT_TOPIC: &str = "scimflow-audit";

/// Every record on the audit topic, by sequence number, until `want` distinct ones arrived.
fn mirrored(bootstrap: &str, want: u64) -> (BTreeMap<u64, Value>, usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "audit-reader")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    consumer.subscribe(&[AUDIT_TOPIC]).unwrap();
    let mut out = BTreeMap::new();
    let mut messages = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while (out.len() as u64) < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let seq = v["seq"].as_u64().unwrap();
            let header_seq = m.headers().and_then(|h| {
                use rdkafka::message::Headers as _;
                h.iter()
                    .find(|h| h.key == "seq")
                    .and_then(|h| h.value)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            });
            assert_eq!(header_seq, Some(seq.to_string()));
            if let Some(prev) = out.insert(seq, v.clone()) {
                assert_eq!(
                    prev, v,
                    "record #{seq} mirrored twice with different content"
                );
            }
            messages += 1;
        }
    }
    (out, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_record_reaches_the_mirror_topic_across_a_kill() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let tansu = Tansu::start().expect("tansu (run scripts/install-test-deps.sh)");
    tansu.create_topic(TOPIC, 2).unwrap();
    tansu.create_topic(AUDIT_TOPIC, 2).unwrap();
    let scenario = Scenario::hr(40, 120, 17);
    produce_keyed(&tansu.bootstrap, TOPIC, &scenario.events)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let fixture =
        std::fs::read_to_string(repo_root().join("tests/fixtures/kafka-throttled.yaml")).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("{fixture}\naudit:\n  kafka_topic: {AUDIT_TOPIC}\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut env = example_env(&scim, "unused");
    env.push(("KAFKA_BROKERS", tansu.bootstrap.clone()));
    env.push(("KAFKA_TOPIC", TOPIC.to_owned()));
    env.push(("KAFKA_GROUP_ID", "mirror".to_owned()));

    // SIGKILL in the middle (the target is throttled to 60 requests/s, so it takes a while).
    let daemon = Daemon::start(&config, &data, &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while terminal_count(&daemon, "demo").await.unwrap() < 30 {
        assert!(
            Instant::now() < deadline,
            "no progress\n{}",
            tail(&daemon.log(), 20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.kill9();
    let daemon = Daemon::start(&config, &data, &env).unwrap();
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(180))
        .await
        .unwrap();
    daemon.stop().unwrap();

    // The store's log is the truth; the topic holds every record of it, unchanged.
    let log = json_lines(&scimflow_offline(&["audit", "export"], &data).unwrap());
    let n = log.len() as u64;
    assert!(n >= 120, "{n} audit records");
    let (topic, messages) = mirrored(&tansu.bootstrap, n);
    assert_eq!(topic.len() as u64, n, "records missing from the mirror");
    for r in &log {
        let seq = r["seq"].as_u64().unwrap();
        assert_eq!(
            topic.get(&seq),
            Some(r),
            "record #{seq} differs on the topic"
        );
    }
    eprintln!(
        "{n} records, {messages} messages (at least once: {} repeated)",
        messages as u64 - n
    );
}
