//! Kafka decoding per topic (issue 5): one topic in CloudEvents, one in plain JSON with an
//! envelope, and a dead-letter topic. Against the real broker (Tansu) and the real scim2-server:
//! every person ends exactly as expected whichever topic carried their events; each poison message
//! is in the rejected store *and* on the dead-letter topic with its reason; consumer lag per
//! partition is exported on /metrics for both topics.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};

use scimflow_e2e::*;
use scimflow_kafka::{Producer, REJECT_REASON_HEADER};

const CE_TOPIC: &str = "hr-ce";
const JSON_TOPIC: &str = "hr-json";
const DLQ: &str = "hr-dead-letters";

/// The same HR event as an HR system's plain JSON message.
fn as_plain_json(e: &Value) -> Value {
    json!({
        "eventId": e["id"],
        "eventType": e["type"],
        "occurredAt": e["time"],
        "worker": e["data"],
    })
}

/// A message's payload and headers.
type Record = (Vec<u8>, Vec<(String, String)>);

/// Every message on `topic`, read from the start by a fresh group.
fn read_all(bootstrap: &str, topic: &str, want: usize) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_per_topic_and_poison_to_the_dead_letter_topic() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let tansu = Tansu::start().expect("tansu (run scripts/install-test-deps.sh)");
    for t in [CE_TOPIC, JSON_TOPIC] {
        tansu.create_topic(t, 3).unwrap();
    }
    tansu.create_topic(DLQ, 1).unwrap();

    // Every person's events go to one topic, in order: even people as CloudEvents, odd people as
    // plain JSON.
    let scenario = Scenario::hr(30, 90, 5);
    let people: Vec<&String> = scenario.expected.keys().collect();
    let json_people: BTreeSet<&String> = people.iter().skip(1).step_by(2).copied().collect();
    let producer = Producer::new(&tansu.bootstrap).unwrap();
    let mut on_json = 0;
    for e in &scenario.events {
        let subject = e["subject"].as_str().unwrap();
        if json_people.contains(&subject.to_owned()) {
            let body = as_plain_json(e).to_string();
            producer
                .send(JSON_TOPIC, subject, body.as_bytes(), &[])
                .await
                .unwrap();
            on_json += 1;
        } else {
            let body = e.to_string();
            producer
                .send(CE_TOPIC, subject, body.as_bytes(), &[])
                .await
                .unwrap();
        }
    }
    assert!(on_json > 0 && on_json < scenario.events.len());
    // Poison on both topics: not JSON at all; and a plain-JSON message with no type and no key.
    producer
        .send(CE_TOPIC, "E1", b"{not json at all", &[("trace", "kept")])
        .await
        .unwrap();
    let typeless = json!({"eventId": "poison-typeless", "worker": {"firstName": "Nobody"}});
    producer
        .send(JSON_TOPIC, "", typeless.to_string().as_bytes(), &[])
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut env = example_env(&scim, "unused");
    env.push(("KAFKA_BROKERS", tansu.bootstrap.clone()));
    env.push(("KAFKA_GROUP_ID", "topics".to_owned()));
    env.push(("KAFKA_TOPIC", CE_TOPIC.to_owned()));
    env.push(("KAFKA_JSON_TOPIC", JSON_TOPIC.to_owned()));
    env.push(("KAFKA_DLQ", DLQ.to_owned()));
    let config = repo_root().join("tests/fixtures/kafka-topics.yaml");
    let daemon = Daemon::start(&config, &data, &env).unwrap();
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(120))
        .await
        .unwrap();

    // Lag per partition of both topics, from librdkafka statistics (every second here).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = reqwest::get(format!("{}/metrics", daemon.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lag_lines: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("scimflow_kafka_consumer_lag_messages{"))
            .collect();
        let both = [CE_TOPIC, JSON_TOPIC].iter().all(|t| {
            (0..3).all(|p| {
                lag_lines.iter().any(|l| {
                    l.starts_with(&format!(
                        "scimflow_kafka_consumer_lag_messages{{topic=\"{t}\",partition=\"{p}\"}} "
                    ))
                })
            })
        });
        if both {
            // Everything was consumed: no partition is behind.
            assert!(lag_lines.iter().all(|l| l.ends_with(" 0")), "{lag_lines:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no lag gauge for every partition of both topics within 30 s:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    daemon.stop().unwrap();

    let rejected = json_lines(&scimflow_offline(&["rejected"], &data).unwrap());
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    let topics: BTreeSet<&str> = rejected
        .iter()
        .map(|r| r["origin"]["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, BTreeSet::from([CE_TOPIC, JSON_TOPIC]));
    let typeless_rej = rejected
        .iter()
        .find(|r| r["origin"]["topic"] == JSON_TOPIC)
        .unwrap();
    assert_eq!(
        typeless_rej["event_id"], "poison-typeless",
        "{typeless_rej}"
    );

    // The dead-letter topic holds both poison messages as they were, with the reason.
    let dead = read_all(&tansu.bootstrap, DLQ, 2);
    assert_eq!(dead.len(), 2, "{dead:?}");
    let not_json = dead
        .iter()
        .find(|(p, _)| p.as_slice() == b"{not json at all")
        .expect("the undecodable message, byte for byte");
    assert!(
        not_json.1.iter().any(|(k, v)| k == "trace" && v == "kept"),
        "original headers are kept: {:?}",
        not_json.1
    );
    for (payload, headers) in &dead {
        let reason = headers
            .iter()
            .find(|(k, _)| k == REJECT_REASON_HEADER)
            .map(|(_, v)| v.as_str());
        assert!(
            reason.is_some_and(|r| !r.is_empty()),
            "no {REJECT_REASON_HEADER} on {:?}: {headers:?}",
            String::from_utf8_lossy(payload)
        );
    }
}
