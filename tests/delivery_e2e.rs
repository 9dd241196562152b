//! Delivery features against scim2-server (a SCIM server written by others): bulk requests with
//! per-operation results.

use std::time::Duration;

use serde_json::Value;

use scimflow_e2e::{
    audit_records_per_op, example_env, json_lines, repo_root, scimflow_offline,
    wait_for_end_state, Daemon, Scenario, Scim2Server,
};

const INGEST: &str = "ingest-token-delivery";

/// The quickstart config with its `concurrency: 4` line replaced by `keys` (target keys).
fn config(dir: &std::path::Path, keys: &str) -> std::path::PathBuf {
    let quickstart = std::fs::read_to_string(repo_root().join("examples/quickstart.yaml")).unwrap();
    let config = quickstart.replace("    concurrency: 4\n", keys);
    assert_ne!(config, quickstart, "the quickstart no longer sets concurrency: 4");
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_out_in_bulk_requests_and_reach_the_exact_end_state() {
    let scim = Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
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
    assert!(bulk > 0 && bulk == writes, "{bulk} of {writes} writes in bulk: {requests:?}");
}
