//! A long target outage, compressed in time: the real daemon, the testkit SCIM server answering 503
//! to everything, parking timings scaled from minutes to seconds. Work parks durably (it survives
//! a SIGKILL mid-outage with its attempt counts), the target is not hammered, and after recovery
//! everything arrives: per-person order kept, nothing duplicated, no dead letter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use scimflow_e2e::{
    audit_records_per_op, diff_users, json_lines, repo_root, scimflow_offline, Daemon, Scenario,
};
use scimflow_testkit::{FaultRule, ServerOptions, TestServer};

const INGEST: &str = "ingest-token-outage";

async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(daemon: &Daemon, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}{{target=\"demo\"}} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_parks_work_durably_and_everything_arrives_in_order_after_it() {
    let server = TestServer::start(ServerOptions::default()).await;
    // The outage: every request fails until the faults are cleared.
    server.script(FaultRule::status(503).forever());

    let dir = tempfile::tempdir().unwrap();
    let quickstart = std::fs::read_to_string(repo_root().join("examples/quickstart.yaml")).unwrap();
    // Minutes become seconds: park after 1 s of waiting, park for 1 s doubling to 3 s; the breaker
    // opens after 5 failures for 2 s (up to 4 s).
    let config = quickstart.replace(
        "    concurrency: 4\n",
        "    concurrency: 4\n    max_attempts: 3\n    \
         retry: { park_after_seconds: 1, park_delay_seconds: 1, max_park_delay_seconds: 3 }\n    \
         circuit_breaker: { failures: 5, open_seconds: 2, max_open_seconds: 4 }\n",
    );
    assert_ne!(
        config, quickstart,
        "the quickstart no longer sets concurrency: 4"
    );
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config).unwrap();
    let data = dir.path().join("data");
    let env = [
        ("SCIM_BASE_URL", server.base_url().to_owned()),
        ("SCIM_TOKEN", server.token().to_owned()),
        ("SCIMFLOW_INGEST_TOKEN", INGEST.to_owned()),
    ];
    let daemon = Daemon::start(&config_path, &data, &env).unwrap();

    // 40 people, 110 events: hires, updates and terminations, interleaved across people.
    let scenario = Scenario::hr(40, 110, 23);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", daemon.url))
        .bearer_auth(INGEST)
        .json(&Value::Array(scenario.events.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    until("operations parked", Duration::from_secs(60), || async {
        metric(&daemon, "scimflow_operations_parked_total").await >= 4
    })
    .await;
    let outage_start = Instant::now();

    // SIGKILL mid-outage: the parked state is in the store.
    daemon.kill9();
    let queued = json_lines(
        &scimflow_offline(&["queue", "--target", "demo"], &data).expect("scimflow queue"),
    );
    assert_eq!(queued.len(), 110, "every operation is still queued");
    let parked: Vec<&Value> = queued
        .iter()
        .filter(|q| q["next_try"].is_string())
        .collect();
    assert!(
        !parked.is_empty(),
        "parked operations keep their retry state"
    );
    assert!(
        parked
            .iter()
            .all(|q| q["attempts"].as_u64().is_some() && q["last_error"].is_string()),
        "{parked:#?}"
    );
    let dead = scimflow_offline(&["dlq"], &data).unwrap();
    assert!(
        dead.trim().is_empty(),
        "no dead letter in an outage: {dead}"
    );

    // Restarted, still down for a while: it keeps parking, and does not hammer the target.
    let daemon = Daemon::start(&config_path, &data, &env).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = server.requests().len();
    let outage = outage_start.elapsed().as_secs_f64();
    // Unthrottled retrying would be hundreds of requests a second; the breaker and parking keep it
    // to a trickle.
    assert!(
        (during as f64) < 60.0 + 10.0 * outage,
        "{during} requests in a {outage:.1} s outage"
    );

    // Recovery.
    server.clear_faults();
    until("the end state", Duration::from_secs(120), || async {
        diff_users(&server.users(), &scenario.expected).is_empty()
    })
    .await;
    until("an empty queue", Duration::from_secs(60), || async {
        daemon.targets().await.unwrap()["demo"]["queue_depth"] == 0
    })
    .await;
    daemon.stop().unwrap();

    // Nothing duplicated: one create per person, one terminal audit record per operation.
    let creates = server
        .requests()
        .iter()
        .filter(|r| r.method == Method::POST && r.path.ends_with("/Users") && r.status == 201)
        .count();
    assert_eq!(creates, 40);
    let per_op = audit_records_per_op(&data).unwrap();
    assert_eq!(per_op.len(), 110);
    assert!(per_op.values().all(|n| *n == 1), "{per_op:?}");
    let dead = scimflow_offline(&["dlq"], &data).unwrap();
    assert!(dead.trim().is_empty(), "no dead letter: {dead}");

    // Per-person order: each person's operations were recorded in event order.
    let audit = json_lines(&scimflow_offline(&["audit", "export"], &data).unwrap());
    let mut last: HashMap<String, String> = HashMap::new();
    for r in audit.iter().filter(|r| r["outcome"] == "applied") {
        let subject = r["subject"].as_str().unwrap().to_owned();
        let event = r["event_id"].as_str().unwrap().to_owned();
        // Event ids are numbered per person in order (evt-000001 …), which is the event order.
        if let Some(before) = last.get(&subject) {
            assert!(
                *before < event,
                "{subject}: {event} was applied after {before}"
            );
        }
        last.insert(subject, event);
    }
    assert_eq!(last.len(), 40);
}
