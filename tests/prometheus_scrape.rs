//! A real Prometheus (Debian's package) scrapes the real daemon while it provisions from a real
//! Kafka-protocol broker (Tansu) into the real scim2-server, with the alert rules of
//! deploy/prometheus/alerts.yml loaded. Proves: every metric named by an alert rule or a Grafana
//! dashboard panel is present in the scrape; every rule evaluates without error on real data;
//! counts agree with the daemon; and the deprovisioning SLO rules see real time-to-provision
//! observations (the scenario's events are stamped days ago, so every deactivation counts as
//! slow and the fast-burn alert fires).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use scimflow_e2e::*;
use scimflow_testkit::procs::Prometheus;

const TOPIC: &str = "hr-metrics";

/// Every `scimflow_…` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("scimflow_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start + "scimflow_".len();
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        if before_ok && end > start + "scimflow_".len() {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

async fn scalar(prom: &Prometheus, q: &str) -> Option<f64> {
    let r = prom.query(q).await.ok()?;
    r.first()?["value"][1].as_str()?.parse().ok()
}

async fn wait_for<T>(
    what: &str,
    deadline: Duration,
    prom: &Prometheus,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < until,
            "{what} within {deadline:?}; prometheus log:\n{}",
            std::fs::read_to_string(prom.log_path())
                .map(|l| tail(&l, 20))
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_metric_the_dashboards_and_alerts_use() {
    let root = repo_root();
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let tansu = Tansu::start().expect("tansu (run scripts/install-test-deps.sh)");
    tansu.create_topic(TOPIC, 2).unwrap();
    let scenario = Scenario::hr(30, 90, 21);

    let dir = tempfile::tempdir().unwrap();
    let mut env = example_env(&scim, "unused");
    env.push(("KAFKA_BROKERS", tansu.bootstrap.clone()));
    env.push(("KAFKA_TOPIC", TOPIC.to_owned()));
    env.push(("KAFKA_GROUP_ID", "metrics".to_owned()));
    // The throttled fixture: a rate limit, so the limiter-wait counter moves too; and the admin
    // API, to run a reconciliation (whose drift gauges appear after a run).
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "admin-secret").unwrap();
    let fixture =
        std::fs::read_to_string(root.join("tests/fixtures/kafka-throttled.yaml")).unwrap();
    let daemon_config = dir.path().join("scimflow.yaml");
    std::fs::write(
        &daemon_config,
        format!(
            "{fixture}\nadmin:\n  listen: 127.0.0.1:0\n  tokens:\n    - {{ name: ops, role: operator, token: {{ file: {} }} }}\n",
            token.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&daemon_config, &dir.path().join("data"), &env).unwrap();

    let host = daemon.url.trim_start_matches("http://").to_owned();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: scimflow\n    static_configs:\n      - targets: [\"{host}\"]\n",
        root.join("deploy/prometheus/alerts.yml").display()
    );
    let prom = Prometheus::start(&config, dir.path())
        .expect("prometheus (run scripts/install-test-deps.sh)");

    // The work happens while Prometheus scrapes, so that rates over it are not 0/0.
    wait_for(
        "the first scrape",
        Duration::from_secs(30),
        &prom,
        async || (scalar(&prom, r#"up{job="scimflow"}"#).await == Some(1.0)).then_some(()),
    )
    .await;
    produce_keyed(&tansu.bootstrap, TOPIC, &scenario.events)
        .await
        .unwrap();
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(120))
        .await
        .unwrap();
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/targets/demo/reconcile",
            daemon.admin_url.as_deref().unwrap()
        ))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    // Every metric the alert rules and the dashboards name.
    let mut wanted =
        metric_names(&std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap());
    let dashboards: Vec<_> = std::fs::read_dir(root.join("deploy/grafana/dashboards"))
        .expect("deploy/grafana/dashboards")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(
        dashboards.len() >= 3,
        "executive, on-call and debug dashboards: {dashboards:?}"
    );
    for d in &dashboards {
        let text = std::fs::read_to_string(d).unwrap();
        let _: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{} names no metric", d.display());
        wanted.extend(names);
    }
    assert!(wanted.len() >= 15, "{wanted:?}");

    // Scraped: the lag gauge needs librdkafka's first statistics (5 s), the rest is there at once.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let names: BTreeSet<String> = prom
            .api("label/__name__/values")
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let missing: Vec<_> = wanted.iter().filter(|n| !names.contains(*n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "named by a rule or dashboard but not scraped within 60 s: {missing:?}\nscraped: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The scrape agrees with the daemon.
    let t = daemon.targets().await.unwrap()["demo"].clone();
    let applied = t["applied"].as_u64().unwrap() as f64;
    // (The daemon is idle now: the next scrape holds the final counts.)
    wait_for(
        "the applied count of the daemon",
        Duration::from_secs(30),
        &prom,
        async || {
            let q = r#"sum(scimflow_operations_total{target="demo",outcome="applied"})"#;
            (scalar(&prom, q).await == Some(applied)).then_some(())
        },
    )
    .await;
    let accepted = scalar(
        &prom,
        r#"scimflow_events_total{source="kafka",result="accepted"}"#,
    )
    .await;
    assert_eq!(accepted, Some(90.0));
    assert_eq!(scalar(&prom, "scimflow_store_healthy").await, Some(1.0));
    assert_eq!(
        scalar(&prom, r#"scimflow_queue_depth_operations{target="demo"}"#).await,
        Some(0.0)
    );
    let waited = scalar(
        &prom,
        r#"scimflow_rate_limiter_wait_seconds_total{target="demo"}"#,
    )
    .await;
    assert!(waited.is_some_and(|w| w > 0.0), "limiter wait {waited:?}");

    // Every rule evaluates on real data without error.
    wait_for(
        "every rule evaluated and healthy",
        Duration::from_secs(30),
        &prom,
        async || {
            let groups = prom.api("rules").await.ok()?;
            let rules: Vec<Value> = groups["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            assert!(rules.len() >= 20, "{groups}");
            for r in &rules {
                assert_ne!(
                    r["health"], "err",
                    "rule {} failed: {}",
                    r["name"], r["lastError"]
                );
            }
            rules.iter().all(|r| r["health"] == "ok").then_some(())
        },
    )
    .await;

    // The events were stamped 2026-12-01, days before this run: every deactivation was confirmed
    // long after its HR event, so the SLO's bad ratio is 1 and the fast-burn alert fires.
    let deactivations = scenario.expected.values().filter(|p| !p.active).count();
    assert!(deactivations > 0);
    let ratio = wait_for(
        "the deprovision bad ratio",
        Duration::from_secs(30),
        &prom,
        async || {
            scalar(&prom, "scimflow:deprovision_bad_ratio:rate5m")
                .await
                // NaN until two scrapes hold deactivations (a rate of 0/0).
                .filter(|v| !v.is_nan())
        },
    )
    .await;
    assert_eq!(ratio, 1.0);
    wait_for(
        "ScimflowDeprovisionSLOBurnFast firing",
        Duration::from_secs(30),
        &prom,
        async || {
            let alerts = prom.api("alerts").await.ok()?;
            alerts["alerts"]
                .as_array()?
                .iter()
                .any(|a| {
                    a["labels"]["alertname"] == "ScimflowDeprovisionSLOBurnFast"
                        && a["state"] == "firing"
                })
                .then_some(())
        },
    )
    .await;
    // And nothing that should not: no auth failures, no stopped intake.
    let alerts = prom.api("alerts").await.unwrap();
    for a in alerts["alerts"].as_array().unwrap() {
        let name = a["labels"]["alertname"].as_str().unwrap();
        assert!(
            [
                "ScimflowDeprovisionSLOBurnFast",
                "ScimflowDeprovisionSLOBurnSlow"
            ]
            .contains(&name),
            "unexpected alert {a}"
        );
    }
    daemon.stop().unwrap();
}
