//! Retries, parking and every fault class, against the testkit SCIM server, on a paused clock:
//! the server runs in the test's runtime, so backoff and `Retry-After` waits take no real time and
//! the elapsed (tokio) time says exactly how long the executor waited.

use std::time::{Duration, SystemTime};

use reqwest::Method;
use serde_json::json;
use tokio::time::Instant;

use scimflow_core::op::MatchKey;
use scimflow_core::{ErrorClass, OpKind, Operation, Outcome};
use scimflow_delivery::Executor;
use scimflow_testkit::{Fault, FaultRule, RetryAfter, ServerOptions, TestServer};

mod common;

async fn start_server() -> TestServer {
    TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await
}

/// An executor for a target on `server`; `extra` is more YAML for the target (indented 4).
fn executor(server: &TestServer, extra: &str) -> Executor {
    Executor::new(&common::target(server, extra)).expect("client builds")
}

fn hire(subject: &str) -> Operation {
    Operation {
        id: format!("{subject}-hire@app"),
        target: "app".into(),
        subject: subject.into(),
        event_id: format!("{subject}-hire"),
        event_kind: "hr.worker.hired".into(),
        event_time: None,
        planned_at: chrono::Utc::now(),
        kind: OpKind::Upsert,
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": subject,
            "userName": subject,
        }),
        matching: vec![MatchKey {
            attribute: "externalId".into(),
            value: subject.into(),
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

fn posts(server: &TestServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == Method::POST)
        .count()
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_is_waited_out() {
    let server = start_server().await;
    server.script(
        FaultRule::status_retry_after(429, RetryAfter::Seconds(7))
            .method(Method::POST)
            .path("/Users"),
    );
    let exec = executor(&server, "");
    let t = Instant::now();
    let r = exec.execute(&hire("E1"), None, None).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    let waited = t.elapsed();
    // The 429 asked for 7 s; the backoff of a first retry is at most 200 ms.
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_millis(7300),
        "{waited:?}"
    );
    assert_eq!(posts(&server), 2);
    assert!(r.park.is_none());
    assert_eq!(server.users().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_waited_out() {
    let server = start_server().await;
    // An HTTP date is absolute (whole seconds, real clock): 8 s from now is 7-8 s of waiting.
    let at = SystemTime::now() + Duration::from_secs(8);
    server.script(
        FaultRule::status_retry_after(503, RetryAfter::HttpDate(at))
            .method(Method::POST)
            .path("/Users"),
    );
    let exec = executor(&server, "");
    let t = Instant::now();
    let r = exec.execute(&hire("E1"), None, None).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited <= Duration::from_millis(8300),
        "{waited:?}"
    );
    assert_eq!(posts(&server), 2);
}

#[tokio::test(start_paused = true)]
async fn a_5xx_burst_is_retried_with_exponential_backoff() {
    let server = start_server().await;
    server.script(
        FaultRule::status(503)
            .method(Method::POST)
            .path("/Users")
            .times(4),
    );
    let exec = executor(&server, "");
    let t = Instant::now();
    let r = exec.execute(&hire("E1"), None, None).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    // Four waits of 100, 200, 400, 800 ms, each plus up to as much jitter again.
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_millis(3000),
        "{waited:?}"
    );
    assert_eq!(r.attempts, 5);
    assert_eq!(posts(&server), 5);
    assert_eq!(server.users().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_connection_resets_are_retried() {
    let server = start_server().await;
    server.script(
        FaultRule::delay(Duration::from_secs(60))
            .method(Method::POST)
            .path("/Users"),
    );
    server.script(FaultRule::reset().method(Method::POST).path("/Users"));
    let exec = executor(&server, "    timeout_ms: 2000\n");
    let r = exec.execute(&hire("E1"), None, None).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(r.attempts, 3, "timeout, reset, success");
    // The delayed request was carried out after the client gave up; the retry found it by lookup
    // or created it, but never twice.
    assert_eq!(server.users().len(), 1, "{:#?}", server.users());
}

#[tokio::test(start_paused = true)]
async fn a_create_committed_behind_a_500_is_found_not_duplicated() {
    for fault in [
        Fault::CommitThen500,
        Fault::TruncatedJson,
        Fault::InvalidJson,
    ] {
        let server = TestServer::start(ServerOptions {
            token: String::new(),
            send_location: false,
            ..ServerOptions::default()
        })
        .await;
        server.script(
            FaultRule::new(fault.clone())
                .method(Method::POST)
                .path("/Users"),
        );
        let exec = executor(&server, "");
        let r = exec.execute(&hire("E1"), None, None).await;
        assert_eq!(r.outcome, Outcome::Applied, "{fault:?}: {r:?}");
        let users = server.users();
        assert_eq!(users.len(), 1, "{fault:?}: {users:#?}");
        assert_eq!(
            r.bound_id.as_deref(),
            users[0]["id"].as_str(),
            "{fault:?}: bound to the account that was created"
        );
        assert_eq!(posts(&server), 1, "{fault:?}: the create is not repeated");
    }
}

#[tokio::test(start_paused = true)]
async fn auth_and_permanent_errors_are_not_retried() {
    for (status, class) in [(401, ErrorClass::Auth), (400, ErrorClass::Permanent)] {
        let server = start_server().await;
        server.script(
            FaultRule::status(status)
                .method(Method::POST)
                .path("/Users"),
        );
        let exec = executor(&server, "");
        let r = exec.execute(&hire("E1"), None, None).await;
        assert_eq!(r.outcome, Outcome::Failed(class), "{status}: {r:?}");
        assert_eq!(r.attempts, 1);
        assert!(r.park.is_none(), "{status}: a dead letter, not parked");
        assert_eq!(r.status, Some(status));
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_retry_after_parks_instead_of_sleeping() {
    let server = start_server().await;
    server.script(
        FaultRule::status_retry_after(429, RetryAfter::Seconds(120))
            .method(Method::POST)
            .path("/Users"),
    );
    let exec = executor(&server, "");
    let t = Instant::now();
    let before = chrono::Utc::now();
    let r = exec.execute(&hire("E1"), None, None).await;
    assert!(t.elapsed() < Duration::from_secs(1), "it did not sleep");
    let park = r.park.expect("parked");
    assert_eq!(park.attempts, 1);
    assert_eq!(park.parks, 1);
    assert_eq!(park.last_error, "rate_limited 429");
    let wait = (park.next_try - before).num_seconds();
    assert!((119..=121).contains(&wait), "next try in {wait} s");
    assert_eq!(posts(&server), 1);
}

#[tokio::test(start_paused = true)]
async fn used_up_attempts_park_then_continue_and_finally_give_up() {
    let server = start_server().await;
    server.script(
        FaultRule::status(503)
            .method(Method::POST)
            .path("/Users")
            .forever(),
    );
    let exec = executor(&server, "    max_attempts: 3\n");
    let mut op = hire("E1");
    let r = exec.execute(&op, None, None).await;
    let park = r.park.clone().expect("parked after 3 attempts");
    assert_eq!((park.attempts, park.parks), (3, 1), "{r:?}");
    let delay = (park.next_try - chrono::Utc::now()).num_seconds();
    assert!((28..=60).contains(&delay), "first parking 30-60 s: {delay}");
    // The next dispatch continues the count, and the parking delay doubles.
    op.retry = Some(park);
    let r = exec.execute(&op, None, None).await;
    let park = r.park.clone().expect("parked again");
    assert_eq!((park.attempts, park.parks), (6, 2));
    let delay = (park.next_try - chrono::Utc::now()).num_seconds();
    assert!(
        (58..=120).contains(&delay),
        "second parking 60-120 s: {delay}"
    );
    // Still failing a day after the first failure: a dead letter.
    let mut old = park;
    old.first_failure -= chrono::Duration::hours(25);
    op.retry = Some(old);
    let r = exec.execute(&op, None, None).await;
    assert!(r.park.is_none(), "{r:?}");
    assert_eq!(r.outcome, Outcome::Failed(ErrorClass::Retryable));
    assert_eq!(r.attempts, 7);
    let e = r.error.expect("error");
    assert!(e.detail.contains("given up"), "{}", e.detail);
}

#[tokio::test(start_paused = true)]
async fn a_spent_retry_budget_parks_instead_of_retrying() {
    let server = start_server().await;
    server.script(
        FaultRule::status(503)
            .method(Method::POST)
            .path("/Users")
            .times(1),
    );
    let exec = executor(
        &server,
        "    retry: { budget_percent: 0, budget_min_per_second: 0 }\n",
    );
    let r = exec.execute(&hire("E1"), None, None).await;
    let park = r.park.expect("no budget: parked at once");
    assert_eq!(park.attempts, 1);
    assert_eq!(posts(&server), 1);
    // With the default budget the same failure is retried in memory.
    let other = start_server().await;
    other.script(
        FaultRule::status(503)
            .method(Method::POST)
            .path("/Users")
            .times(1),
    );
    let r = executor(&other, "").execute(&hire("E1"), None, None).await;
    assert_eq!(r.outcome, Outcome::Applied);
    assert!(r.park.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_parks_operations_instead_of_holding_them() {
    let server = start_server().await;
    server.script(FaultRule::status(503).forever());
    let exec = executor(
        &server,
        "    circuit_breaker: { failures: 2, open_seconds: 60 }\n",
    );
    let r = exec.execute(&hire("E1"), None, None).await;
    let park = r.park.expect("parked once the breaker opened");
    assert_eq!(park.attempts, 2, "two failures opened it");
    assert_eq!(park.last_error, "circuit breaker open");
    let delay = (park.next_try - chrono::Utc::now()).num_seconds();
    assert!(
        (55..=60).contains(&delay),
        "until the breaker half-opens: {delay}"
    );
    // Another operation dispatched meanwhile parks without sending anything.
    let sent = server.request_count();
    let r = exec.execute(&hire("E2"), None, None).await;
    assert_eq!(r.park.expect("parked").attempts, 0);
    assert_eq!(server.request_count(), sent);
}

#[tokio::test]
async fn targets_whose_connector_quota_is_per_tenant_share_one_limiter() {
    let t = |name: &str, url: &str, connector: &str| {
        format!(
            "  {name}:\n    base_url: {url}\n    allow_http: true\n    connector: {connector}\n    \
             rate_limit: {{ per_second: 5 }}\n    lifecycle:\n      hr.worker.hired: upsert\n    \
             matching: [userName]\n    user:\n      userName: event.subject\n      \
             displayName: event.subject\n      name.givenName: event.subject\n      \
             name.familyName: event.subject\n      emails[type eq \"work\"].value: event.subject\n"
        )
    };
    let yaml = format!(
        "version: 1\ntargets:\n{}{}{}{}",
        t("a", "http://one.example.com/scim/v2", "slack"),
        t("b", "http://ONE.example.com/other", "slack"),
        t("c", "http://two.example.com/scim/v2", "slack"),
        t("d", "http://one.example.com/scim/v3", "generic"),
    );
    let cfg = scimflow_config::load_str(&yaml, "c.yaml", &|_| None).expect("valid config");
    let mut execs: Vec<Executor> = cfg
        .targets
        .iter()
        .map(|t| Executor::new(t).unwrap())
        .collect();
    let names: Vec<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let mut named: Vec<(&str, &mut Executor)> = names
        .iter()
        .map(String::as_str)
        .zip(execs.iter_mut())
        .collect();
    let groups = scimflow_delivery::exec::share_rate_limits(&mut named);
    assert_eq!(groups, vec![vec!["a".to_owned(), "b".to_owned()]]);
    assert!(
        execs[0].shares_rate_limit_with(&execs[1]),
        "same connector, same host"
    );
    assert!(!execs[0].shares_rate_limit_with(&execs[2]), "another host");
    assert!(
        !execs[0].shares_rate_limit_with(&execs[3]),
        "a connector without a shared quota"
    );
}
