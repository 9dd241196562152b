//! Adaptive concurrency against the in-process SCIM test server: a run of 429s drives the
//! executor's limit down to its floor, and once the target answers again it climbs back to the
//! target's `concurrency`; with `adaptive_concurrency: { enabled: false }` it stays put.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use scimflow_core::Operation;
use scimflow_delivery::Executor;
use scimflow_telemetry::metrics::Metrics;
use scimflow_testkit::{FaultRule, RetryAfter, ServerOptions, TestServer};

fn executor(server: &TestServer, adaptive: &str) -> Executor {
    let yaml = format!(
        "version: 1\ntargets:\n  app:\n    base_url: {}\n    allow_http: true\n    concurrency: 16\n    \
         max_attempts: 1\n{adaptive}    lifecycle:\n      hr.worker.hired: upsert\n    matching: [externalId]\n    \
         user:\n      externalId: event.subject\n      userName: event.subject\n",
        server.base_url()
    );
    let cfg = scimflow_config::load_str(&yaml, "c.yaml", &|_| None).unwrap();
    Executor::new(&cfg.targets[0]).unwrap()
}

/// An upsert of a new person `i` (one lookup, one create).
fn hire(i: usize) -> Operation {
    serde_json::from_value(json!({
        "id": format!("e{i}@app"),
        "target": "app",
        "subject": format!("E{i}"),
        "event_id": format!("e{i}"),
        "event_kind": "hr.worker.hired",
        "planned_at": "2026-12-04T00:00:00Z",
        "kind": "upsert",
        "resource": {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": format!("E{i}"),
            "userName": format!("u{i}"),
        },
        "matching": [{"attribute": "externalId", "value": format!("E{i}"), "case_exact": true}],
        "mapping_version": "test",
    }))
    .unwrap()
}

/// `workers` tasks execute new hires until `done` says stop (checked after each operation) or
/// 20 s pass; returns the lowest limit seen after any operation.
async fn drive(
    exec: &Arc<Executor>,
    workers: usize,
    done: impl Fn(&Executor) -> bool + Send + Sync + 'static,
) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let lowest = Arc::new(AtomicUsize::new(usize::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(done);
    let deadline = Instant::now() + Duration::from_secs(20);
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (exec, next, lowest, stop, done) = (
                exec.clone(),
                next.clone(),
                lowest.clone(),
                stop.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let _ = exec.execute(&hire(i), None, None).await;
                    lowest.fetch_min(exec.concurrency().limit(), Ordering::Relaxed);
                    if done(&exec) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    lowest.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_backs_off_under_429s_and_recovers() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        latency: Duration::from_millis(2),
        ..ServerOptions::default()
    })
    .await;
    let metrics = Arc::new(Metrics::new());
    let exec = Arc::new(
        executor(&server, "    adaptive_concurrency: { initial: 16 }\n")
            .with_metrics(metrics.clone()),
    );
    assert_eq!(exec.concurrency().limit(), 16);
    assert!(metrics
        .encode(|_| {})
        .contains("scimflow_target_concurrency_limit{target=\"app\"} 16"));

    // The target throttles every request for a while.
    server.script(
        FaultRule::status_retry_after(429, RetryAfter::Seconds(1))
            .path("/Users")
            .forever(),
    );
    let lowest = drive(&exec, 24, |e| e.concurrency().limit() == 1).await;
    assert_eq!(lowest, 1, "the limit should fall to its floor under 429s");
    let throttled = server.requests().iter().filter(|r| r.status == 429).count();
    // 16 → 8 → 4 → 2 → 1: once per flight, so a handful of decreases, not one per 429.
    let text = metrics.encode(|_| {});
    assert!(
        text.contains(
            "scimflow_target_concurrency_decreases_total{target=\"app\",reason=\"rate_limited\"} 4"
        ),
        "{throttled} 429s; metrics:\n{text}"
    );
    assert!(text.contains("scimflow_target_concurrency_limit{target=\"app\"} 1"));

    // It answers again: the limit climbs back to the target's concurrency, one per window.
    server.clear_faults();
    server.clear_requests();
    let lowest = drive(&exec, 24, |e| e.concurrency().limit() == 16).await;
    assert_eq!(exec.concurrency().limit(), 16, "the limit should recover");
    assert!(lowest >= 1);
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.status != 429));
    // 15 windows of max(limit, 8) answers: at least that many requests, and not absurdly more.
    let windows: usize = (1..16).map(|l: usize| l.max(8)).sum();
    assert!(
        requests.len() >= windows && requests.len() < windows * 4,
        "{} requests to climb from 1 to 16 (windows: {windows})",
        requests.len()
    );
    assert!(metrics
        .encode(|_| {})
        .contains("scimflow_target_concurrency_limit{target=\"app\"} 16"));
    assert_eq!(exec.concurrency().in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_it_keeps_the_configured_concurrency() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    let exec = Arc::new(executor(
        &server,
        "    adaptive_concurrency: { enabled: false }\n",
    ));
    assert!(!exec.concurrency().is_adaptive());
    server.script(FaultRule::status(429).path("/Users").times(64));
    let lowest = drive(&exec, 24, {
        let seen = Arc::new(AtomicUsize::new(0));
        move |_| seen.fetch_add(1, Ordering::Relaxed) >= 100
    })
    .await;
    assert_eq!(lowest, 16);
    assert_eq!(exec.concurrency().limit(), 16);
}
