//! SCIM bulk as a transport: concurrent writes share `POST /Bulk` requests; each operation gets
//! its own result and its own retry. A real store and pool, the testkit SCIM server (which serves
//! `/Bulk` through its normal handlers and applies scripted faults per operation).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use scimflow_core::op::MatchKey;
use scimflow_core::store::{Mutation, Store};
use scimflow_core::{OpKind, Operation};
use scimflow_delivery::{Executor, TargetPool};
use scimflow_testkit::{FaultRule, ServerOptions, TestServer};

mod common;

fn hire(i: usize) -> Operation {
    let subject = format!("E{i:03}");
    Operation {
        id: format!("{subject}-hire@app"),
        target: "app".into(),
        subject: subject.clone(),
        event_id: format!("{subject}-hire"),
        event_kind: "hr.worker.hired".into(),
        event_time: None,
        planned_at: chrono::Utc::now(),
        kind: OpKind::Upsert,
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": subject,
            "userName": subject.to_lowercase(),
        }),
        matching: vec![MatchKey {
            attribute: "externalId".into(),
            value: subject,
            case_exact: true,
        }],
        mapping_version: "v1".into(),
        traceparent: None,
        group: None,
        create_only: Vec::new(),
        patch: None,
        manager_subject: None,
        alternatives: Default::default(),
        origin: None,
        retry: None,
    }
}

/// Queues `n` hires, runs a pool for the target (`extra` YAML) until the queue is empty.
async fn deliver(server: &TestServer, n: usize, extra: &str) -> (Arc<dyn Store>, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sled_store(dir.path());
    store
        .commit((0..n).map(|i| Mutation::Enqueue(hire(i))).collect())
        .await
        .unwrap();
    let target = common::target(
        server,
        &format!("    concurrency: 16\n    adaptive_concurrency: {{ enabled: false }}\n{extra}"),
    );
    let pool = TargetPool::new("app", store.clone(), Executor::new(&target).unwrap(), 16);
    let stats = pool.handle().stats;
    common::run_until_drained(pool, &store, Duration::from_secs(60)).await;
    // Keep the store directory alive as long as the store.
    std::mem::forget(dir);
    (
        store,
        stats.applied.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_share_bulk_requests_and_failed_items_are_retried_alone() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        bulk_max_operations: Some(50),
        ..ServerOptions::default()
    })
    .await;
    // Someone else holds E007's userName: its create fails for good (409, no account matches).
    server.insert_user(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "e007", "externalId": "someone-else",
    }));
    // Three creates fail transiently inside their bulk requests.
    server.script(
        FaultRule::status(503)
            .method(Method::POST)
            .path("/Users")
            .times(3),
    );
    let (store, applied, failed) = deliver(
        &server,
        60,
        "    bulk: { max_operations: 10, linger_ms: 20 }\n",
    )
    .await;
    assert_eq!((applied, failed), (59, 1));
    let users = server.users();
    assert_eq!(
        users.len(),
        60,
        "59 created once each, plus the one that was there"
    );
    let mut ext: Vec<&str> = users
        .iter()
        .filter_map(|u| u["externalId"].as_str())
        .collect();
    ext.sort();
    ext.dedup();
    assert_eq!(ext.len(), 60, "no duplicates");

    let log = server.bulk_log();
    let ops: usize = log.iter().map(Vec::len).sum();
    assert!(log.iter().all(|b| b.len() <= 10), "{log:?}");
    assert!(
        log.len() < 30,
        "60 creates (+ retries) in {} bulk requests",
        log.len()
    );
    let transient = log.iter().flatten().filter(|(_, _, s)| *s == 503).count();
    assert_eq!(transient, 3, "{log:?}");
    let conflicts = log.iter().flatten().filter(|(_, _, s)| *s == 409).count();
    assert_eq!(conflicts, 1);
    // 60 creates, 3 retried, and no create for the 409 retried.
    assert_eq!(ops, 63, "{log:?}");
    // Lookups never go through bulk.
    assert!(server
        .requests()
        .iter()
        .all(|r| r.method == Method::GET || r.path.ends_with("/Bulk")));
    // The dead letter carries the item's SCIM error.
    let dead = store.dead_letter_scan(None, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1.op.subject, "E007");
    assert_eq!(dead[0].1.status, Some(409));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_bulk_gets_every_write_one_by_one() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    let (_store, applied, failed) = deliver(&server, 20, "    bulk: true\n").await;
    assert_eq!((applied, failed), (20, 0));
    assert_eq!(server.users().len(), 20);
    let log = server.requests();
    let bulk = log.iter().filter(|r| r.path.ends_with("/Bulk")).count();
    assert!(bulk >= 1, "tried once");
    assert!(log
        .iter()
        .all(|r| r.path.ends_with("/Bulk") || r.status < 400 || r.status == 0));
    let direct = log
        .iter()
        .filter(|r| r.method == Method::POST && r.path.ends_with("/Users"))
        .count();
    assert_eq!(
        direct, 20,
        "each create sent directly once bulk was refused"
    );
}
