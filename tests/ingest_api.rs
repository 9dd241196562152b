//! The embedded source end to end: `POST /api/v1/events` on the real binary, provisioning into the
//! real scim2-server.

use std::time::Duration;

use serde_json::{json, Value};

use scimflow_e2e::*;

const INGEST_TOKEN: &str = "ingest-test-token";

async fn post(daemon: &Daemon, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/events", daemon.url))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("ingest request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_events_via_http_reach_the_expected_end_state() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let config = repo_root().join("examples/quickstart.yaml");
    let daemon = Daemon::start(
        &config,
        &dir.path().join("data"),
        &example_env(&scim, INGEST_TOKEN),
    )
    .unwrap();

    let scenario = Scenario::hr(100, 300, 7);
    for chunk in scenario.events.chunks(25) {
        let (status, body) = post(&daemon, &Value::Array(chunk.to_vec()), Some(INGEST_TOKEN)).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["accepted"], chunk.len());
    }
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(120))
        .await
        .unwrap();

    // Posting everything again changes nothing: every event is recognised as already applied.
    let before = scim.list_users().await.unwrap();
    for chunk in scenario.events.chunks(100) {
        let (status, _) = post(&daemon, &Value::Array(chunk.to_vec()), Some(INGEST_TOKEN)).await;
        assert_eq!(status, 202);
    }
    let after = wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(60))
        .await
        .unwrap();
    let ids = |v: &[Value]| {
        v.iter()
            .map(|u| u["id"].to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        ids(&before),
        ids(&after),
        "replay must not create or replace accounts"
    );
    daemon.stop().unwrap();

    // Exactly one terminal audit record per operation, and the chain verifies.
    let data = dir.path().join("data");
    let audit = json_lines(&scimflow_offline(&["audit", "export"], &data).unwrap());
    let mut per_op = std::collections::HashMap::<String, usize>::new();
    for r in &audit {
        if let Some(op) = r["op_id"].as_str().filter(|s| !s.is_empty()) {
            *per_op.entry(op.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(per_op.len(), 300, "one operation per event");
    assert!(
        per_op.values().all(|&n| n == 1),
        "an operation has more than one terminal record"
    );
    let duplicates = audit.iter().filter(|r| r["outcome"] == "duplicate").count();
    assert_eq!(
        duplicates, 300,
        "the replayed events are audited as duplicates"
    );
    let verify = scimflow_offline(&["audit", "verify"], &data).unwrap();
    assert!(
        verify.contains("audit chain intact: 600 records"),
        "{verify}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_with_a_reason_and_everything_else_arrives() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let config = repo_root().join("examples/quickstart.yaml");
    let daemon = Daemon::start(
        &config,
        &dir.path().join("data"),
        &example_env(&scim, INGEST_TOKEN),
    )
    .unwrap();
    let scenario = Scenario::hr(10, 30, 11);

    // No token, wrong token.
    let (status, body) = post(&daemon, &scenario.events[0], None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    let (status, _) = post(&daemon, &scenario.events[0], Some("wrong")).await;
    assert_eq!(status, 401);

    // Not JSON at all.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", daemon.url))
        .bearer_auth(INGEST_TOKEN)
        .body("{\"this is\": not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    // A batch with an event without a subject and one of an unknown type among good ones.
    let mut no_subject = scenario.events[0].clone();
    no_subject["id"] = json!("bad-no-subject");
    no_subject.as_object_mut().unwrap().remove("subject");
    let mut unknown = scenario.events[0].clone();
    unknown["id"] = json!("bad-unknown-type");
    unknown["type"] = json!("hr.worker.teleported");
    let mut batch = vec![no_subject, unknown];
    batch.extend(scenario.events.iter().cloned());
    let (status, body) = post(&daemon, &Value::Array(batch), Some(INGEST_TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["accepted"], 30, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("event #0 (id bad-no-subject): event has no `subject` attribute"),
        "{detail}"
    );
    assert!(
        detail.contains("event #1 (id bad-unknown-type): event type `hr.worker.teleported` is not one the mapping handles"),
        "{detail}"
    );

    // A single bad event on its own.
    let (status, body) = post(
        &daemon,
        &json!({"specversion": "1.0", "id": "x"}),
        Some(INGEST_TOKEN),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("(id x)"),
        "{body}"
    );

    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(60))
        .await
        .unwrap();
    daemon.stop().unwrap();

    let rejected = json_lines(&scimflow_offline(&["rejected"], &dir.path().join("data")).unwrap());
    let ids: Vec<&str> = rejected
        .iter()
        .filter_map(|r| r["event_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec!["bad-no-subject", "bad-unknown-type", "x"],
        "{rejected:?}"
    );
}
