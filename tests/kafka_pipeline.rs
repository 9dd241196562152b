//! The Kafka source end to end: the real binary consuming from a real Kafka-protocol broker (Tansu)
//! and provisioning into the real scim2-server.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use scimflow_e2e::*;
use scimflow_kafka::Producer;

const TOPIC: &str = "hr-events";

fn kafka_env(scim: &Scim2Server, tansu: &Tansu, group: &str) -> Vec<(&'static str, String)> {
    let mut env = example_env(scim, "unused");
    env.push(("KAFKA_BROKERS", tansu.bootstrap.clone()));
    env.push(("KAFKA_TOPIC", TOPIC.to_owned()));
    env.push(("KAFKA_GROUP_ID", group.to_owned()));
    env
}

async fn produce(tansu: &Tansu, events: &[Value]) {
    let producer = Producer::new(&tansu.bootstrap).unwrap();
    for e in events {
        let key = e["subject"].as_str().unwrap_or("");
        producer
            .send(TOPIC, key, e.to_string().as_bytes(), &[])
            .await
            .unwrap();
    }
}

fn setup() -> (Scim2Server, Tansu) {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let tansu = Tansu::start().expect("tansu (run scripts/install-test-deps.sh)");
    tansu.create_topic(TOPIC, 3).unwrap();
    (scim, tansu)
}

/// Every operation id with its number of terminal audit records.
fn terminal_records(data: &Path) -> HashMap<String, usize> {
    let audit = json_lines(&scimflow_offline(&["audit", "export"], data).unwrap());
    let mut per_op = HashMap::new();
    for r in &audit {
        if let Some(op) = r["op_id"].as_str().filter(|s| !s.is_empty()) {
            *per_op.entry(op.to_owned()).or_default() += 1;
        }
    }
    per_op
}

fn ids(users: &[Value]) -> BTreeSet<String> {
    users
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_events_reach_the_expected_end_state_and_a_full_replay_changes_nothing() {
    let (scim, tansu) = setup();
    let scenario = Scenario::hr(100, 300, 42);
    produce(&tansu, &scenario.events).await;

    let dir = tempfile::tempdir().unwrap();
    let config = repo_root().join("examples/kafka.yaml");
    let daemon = Daemon::start(
        &config,
        &dir.path().join("a"),
        &kafka_env(&scim, &tansu, "g1"),
    )
    .unwrap();
    let users = wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(120))
        .await
        .unwrap();
    daemon.stop().unwrap();
    let per_op = terminal_records(&dir.path().join("a"));
    assert_eq!(per_op.len(), 300);
    assert!(per_op.values().all(|&n| n == 1));

    // A new consumer group re-reads the whole topic, with a fresh store (no id map, no subject state):
    // every account is found by lookup, nothing is created twice, the end state is unchanged.
    let daemon = Daemon::start(
        &config,
        &dir.path().join("b"),
        &kafka_env(&scim, &tansu, "g2"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = daemon.targets().await.unwrap();
        let demo = &t["demo"];
        let done = demo["applied"].as_u64().unwrap()
            + demo["noop"].as_u64().unwrap()
            + demo["failed"].as_u64().unwrap();
        if done == 300 && demo["queue_depth"] == 0 {
            assert_eq!(demo["failed"], 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replay did not finish: {demo}\n{}",
            tail(&daemon.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = scim.list_users().await.unwrap();
    assert!(
        diff_users(&after, &scenario.expected).is_empty(),
        "{:?}",
        diff_users(&after, &scenario.expected)
    );
    assert_eq!(
        ids(&users),
        ids(&after),
        "the replay created or replaced accounts"
    );
    daemon.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_then_restart_reaches_the_same_state_exactly_once() {
    let (scim, tansu) = setup();
    let scenario = Scenario::hr(100, 300, 4242);
    produce(&tansu, &scenario.events).await;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Throttled to 60 requests/s, so the run takes several seconds and can be killed in the middle.
    let config = repo_root().join("tests/fixtures/kafka-throttled.yaml");
    let env = kafka_env(&scim, &tansu, "g-kill");
    let daemon = Daemon::start(&config, &data, &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let applied = daemon.targets().await.unwrap()["demo"]["applied"]
            .as_u64()
            .unwrap();
        if applied >= 40 {
            assert!(applied < 300, "the run finished before it could be killed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress: {}",
            tail(&daemon.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.kill9();
    let mid = scim.list_users().await.unwrap();
    assert!(
        mid.len() < 100 || !diff_users(&mid, &scenario.expected).is_empty(),
        "killed too late to prove anything"
    );

    let daemon = Daemon::start(&config, &data, &env).unwrap();
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(180))
        .await
        .unwrap();
    daemon.stop().unwrap();

    let per_op = terminal_records(&data);
    assert_eq!(
        per_op.len(),
        300,
        "every event's operation has a terminal record"
    );
    let repeated: Vec<_> = per_op.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        repeated.is_empty(),
        "operations with more than one terminal record: {repeated:?}"
    );
    let verify = scimflow_offline(&["audit", "verify"], &data).unwrap();
    assert!(verify.contains("audit chain intact"), "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_rejected_store_and_every_other_event_arrives() {
    let (scim, tansu) = setup();
    let scenario = Scenario::hr(20, 60, 99);
    let producer = Producer::new(&tansu.bootstrap).unwrap();
    let good = &scenario.events;
    let mut no_subject = good[0].clone();
    no_subject["id"] = json!("poison-no-subject");
    no_subject.as_object_mut().unwrap().remove("subject");
    let mut unknown = good[0].clone();
    unknown["id"] = json!("poison-unknown-type");
    unknown["type"] = json!("hr.worker.teleported");
    for (i, e) in good.iter().enumerate() {
        producer
            .send(
                TOPIC,
                e["subject"].as_str().unwrap(),
                e.to_string().as_bytes(),
                &[],
            )
            .await
            .unwrap();
        match i {
            10 => producer
                .send(TOPIC, "E10003", b"{not json at all", &[])
                .await
                .unwrap(),
            // No subject attribute and no key: nothing names the person.
            20 => producer
                .send(TOPIC, "", no_subject.to_string().as_bytes(), &[])
                .await
                .unwrap(),
            30 => producer
                .send(TOPIC, "E10004", unknown.to_string().as_bytes(), &[])
                .await
                .unwrap(),
            _ => {}
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = repo_root().join("examples/kafka.yaml");
    let daemon = Daemon::start(&config, &data, &kafka_env(&scim, &tansu, "g-poison")).unwrap();
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(120))
        .await
        .unwrap();
    daemon.stop().unwrap();

    let rejected = json_lines(&scimflow_offline(&["rejected"], &data).unwrap());
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("event is not valid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"event has no `subject` attribute"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"event type `hr.worker.teleported` is not one the mapping handles"),
        "{reasons:?}"
    );
    for r in &rejected {
        assert_eq!(r["origin"]["source"], "kafka", "{r}");
        assert_eq!(r["origin"]["topic"], TOPIC);
    }
    let named: Vec<&str> = rejected
        .iter()
        .filter_map(|r| r["event_id"].as_str())
        .collect();
    assert!(
        named.contains(&"poison-no-subject") && named.contains(&"poison-unknown-type"),
        "{named:?}"
    );
}
