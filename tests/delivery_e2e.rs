//! Delivery features against scim2-server (a SCIM server written by others): bulk requests with
//! per-operation results.

use std::time::Duration;

use serde_json::Value;

use scimflow_e2e::{
    audit_records_per_op, example_env, json_lines, repo_root, scimflow_offline, wait_for_end_state,
    Daemon, Scenario, Scim2Server,
};

const INGEST: &str = "ingest-token-delivery";

/// The quickstart config with its `concurrency: 4` line replaced by `keys` (target keys).
fn config(dir: &std::path::Path, keys: &str) -> std::path::PathBuf {
    let quickstart = std::fs::read_to_string(repo_root().join("examples/quickstart.yaml")).unwrap();
    let config = quickstart.replace("    concurrency: 4\n", keys);
    assert_ne!(
        config, quickstart,
        "the quickstart no longer sets concurrency: 4"
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_out_in_bulk_requests_and_reach_the_exact_end_state() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "    bulk: { max_operations: 25, linger_ms: 20 }\n    concurrency: 16\n",
    );
    let data = dir.path().join("data");
    let daemon = Daemon::start(&path, &data, &example_env(&scim, INGEST)).unwrap();
    let scenario = Scenario::hr(60, 180, 5);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", daemon.url))
        .bearer_auth(INGEST)
        .json(&Value::Array(scenario.events.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(120))
        .await
        .unwrap();
    daemon.stop().unwrap();
    // Every operation recorded once; the writes say they went in bulk requests.
    let per_op = audit_records_per_op(&data).unwrap();
    assert_eq!(per_op.len(), 180);
    assert!(per_op.values().all(|n| *n == 1));
    let audit = json_lines(&scimflow_offline(&["audit", "export"], &data).unwrap());
    let requests: Vec<&str> = audit
        .iter()
        .flat_map(|r| r["requests"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let bulk = requests.iter().filter(|r| r.ends_with("(bulk)")).count();
    let writes = requests.iter().filter(|r| !r.starts_with("GET")).count();
    assert!(
        bulk > 0 && bulk == writes,
        "{bulk} of {writes} writes in bulk: {requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_on_create_binds_the_account_another_instance_just_created() {
    // Two independent instances (separate stores) hire the same person on one scim2-server. Their
    // creates wait in a 1.5 s bulk linger, so both lookups happen before either create: the
    // second create gets 409 uniqueness and must bind the first one's account and converge it.
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "    concurrency: 4\n    bulk: { linger_ms: 1500 }\n",
    );
    let env = example_env(&scim, INGEST);
    let a = Daemon::start(&path, &dir.path().join("a"), &env).unwrap();
    let b = Daemon::start(&path, &dir.path().join("b"), &env).unwrap();
    let scenario = Scenario::hr(1, 2, 9);
    let hire = scenario.events[0].clone();
    assert_eq!(hire["type"], "hr.worker.hired");
    let client = reqwest::Client::new();
    let post = |daemon: &Daemon| {
        client
            .post(format!("{}/api/v1/events", daemon.url))
            .bearer_auth(INGEST)
            .json(&Value::Array(vec![hire.clone()]))
            .send()
    };
    let (ra, rb) = tokio::join!(post(&a), post(&b));
    assert_eq!(ra.unwrap().status(), 202);
    assert_eq!(rb.unwrap().status(), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = |t: &std::collections::HashMap<String, Value>| t["demo"]["queue_depth"] == 0;
        if done(&a.targets().await.unwrap()) && done(&b.targets().await.unwrap()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both delivered within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop().unwrap();
    b.stop().unwrap();
    let users = scim.list_users().await.unwrap();
    assert_eq!(users.len(), 1, "one account, not two: {users:#?}");
    let id = users[0]["id"].as_str().unwrap();
    // Both instances applied it, bound to the same account; one of them through the 409.
    let mut conflicts = 0;
    for data in ["a", "b"] {
        let audit =
            json_lines(&scimflow_offline(&["audit", "export"], &dir.path().join(data)).unwrap());
        let hire_record = audit
            .iter()
            .find(|r| r["event_id"] == hire["id"])
            .unwrap_or_else(|| panic!("{data}: no audit record for the hire: {audit:#?}"));
        assert_eq!(hire_record["outcome"], "applied", "{data}: {hire_record}");
        let requests: Vec<&str> = hire_record["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        // A lookup, a create; after a 409: a lookup per attribute and the converging PATCH.
        if requests.len() > 2 {
            conflicts += 1;
            assert!(
                requests
                    .last()
                    .unwrap()
                    .starts_with(&format!("PATCH /Users/{id}")),
                "{data}: {requests:?}"
            );
        }
    }
    assert_eq!(conflicts, 1, "exactly one instance saw the conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_are_chunked_to_the_profile_limit_on_scim2_server() {
    // A custom connector profile allows 5 member changes per request; 30 people join one group.
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("profile.yaml"),
        "name: chunky\nversion: 1\ndescription: five member changes per request\n\
         sources: [https://www.rfc-editor.org/rfc/rfc7644]\n\
         groups: { member_changes_per_request: 5 }\n",
    )
    .unwrap();
    let path = config(
        dir.path(),
        "    concurrency: 4\n    connector_file: profile.yaml\n    groups:\n      - name: '\"all-staff\"'\n",
    );
    let data = dir.path().join("data");
    let daemon = Daemon::start(&path, &data, &example_env(&scim, INGEST)).unwrap();
    let scenario = Scenario::hr(30, 60, 17);
    let hires: Vec<Value> = scenario
        .events
        .iter()
        .filter(|e| e["type"] == "hr.worker.hired")
        .cloned()
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", daemon.url))
        .bearer_auth(INGEST)
        .json(&Value::Array(hires))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let groups = loop {
        let groups = scim.list_groups().await.unwrap();
        let full = groups
            .iter()
            .any(|g| g["members"].as_array().is_some_and(|m| m.len() == 30));
        if full && daemon.targets().await.unwrap()["demo"]["queue_depth"] == 0 {
            break groups;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "30 members within 60 s: {groups:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    daemon.stop().unwrap();
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let mut members: Vec<&str> = groups[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    members.sort();
    members.dedup();
    assert_eq!(members.len(), 30);
    // Every membership change recorded once; those that shared a request say how many shared it.
    let audit = json_lines(&scimflow_offline(&["audit", "export"], &data).unwrap());
    let joins: Vec<&Value> = audit
        .iter()
        .filter(|r| r["operation"] == "group_add")
        .collect();
    assert_eq!(joins.len(), 30);
    let shared: Vec<u64> = joins
        .iter()
        .filter_map(|r| r["detail"].as_str())
        .filter_map(|d| d.strip_prefix("shared: "))
        .filter_map(|d| d.split(' ').next()?.parse().ok())
        .collect();
    assert!(shared.iter().all(|n| *n <= 5), "{shared:?}");
    assert!(
        !shared.is_empty(),
        "some changes shared a request: {joins:#?}"
    );
}
