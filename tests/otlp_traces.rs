//! OpenTelemetry traces over OTLP/HTTP from the real binary: an event carrying a W3C
//! `traceparent` is provisioned into the real scim2-server, and the spans the daemon exports —
//! decoded with the OpenTelemetry project's protobuf definitions — form one trace continuing the
//! event's: consume (child of the producer's span) → deliver → attempt → one span per SCIM request
//! with its method, path and status. An event without a `traceparent` starts a trace of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::{json, Value};

use scimflow_e2e::*;

#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: Vec<(String, String)>,
}

impl Span {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal OTLP/HTTP trace receiver on 127.0.0.1:0; returns its base URL and what it received.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let got: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut out = sink.lock().unwrap();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push(Span {
                                name: s.name,
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                                attributes: s
                                    .attributes
                                    .into_iter()
                                    .map(|kv| {
                                        let v = kv.value.and_then(|v| v.value).map(|v| {
                                            use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
                                            match v {
                                                V::StringValue(s) => s,
                                                V::IntValue(i) => i.to_string(),
                                                V::BoolValue(b) => b.to_string(),
                                                V::DoubleValue(d) => d.to_string(),
                                                other => format!("{other:?}"),
                                            }
                                        });
                                        (kv.key, v.unwrap_or_default())
                                    })
                                    .collect(),
                            });
                        }
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_trace_continues_through_delivery_into_every_scim_request() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let (otlp, spans) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = example_env(&scim, "ingest-token");
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", otlp));
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "100".into()));
    let daemon = Daemon::start(
        &repo_root().join("examples/quickstart.yaml"),
        &dir.path().join("data"),
        &env,
    )
    .unwrap();
    let scenario = Scenario::hr(2, 4, 9);
    let mut hires: Vec<Value> = scenario
        .events
        .iter()
        .filter(|e| e["type"] == "hr.worker.hired")
        .cloned()
        .collect();
    hires[0]["traceparent"] = json!(format!("00-{TRACE}-{PRODUCER_SPAN}-01"));
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", daemon.url))
        .bearer_auth("ingest-token")
        .json(&hires)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    // Both accounts exist, and the spans of both deliveries arrived.
    let deadline = Instant::now() + Duration::from_secs(60);
    let all = loop {
        let users = scim.list_users().await.unwrap().len();
        let got = spans.lock().unwrap().clone();
        let delivered = got.iter().filter(|s| s.name == "deliver").count();
        if users == 2 && delivered >= 2 {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "{users} users, spans so far: {:?}\n{}",
            got.iter().map(|s| &s.name).collect::<Vec<_>>(),
            tail(&daemon.log(), 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The traced event: one trace, the producer's span → consume → deliver → attempt → requests.
    let traced: Vec<&Span> = all.iter().filter(|s| s.trace_id == TRACE).collect();
    let one = |name: &str, parent: &str| -> &Span {
        traced
            .iter()
            .copied()
            .find(|s| s.name == name && s.parent == parent)
            .unwrap_or_else(|| panic!("no `{name}` span under {parent}: {traced:#?}"))
    };
    let consume = one("consume", PRODUCER_SPAN);
    assert_eq!(
        consume.attr("event_id"),
        hires[0]["id"].as_str(),
        "{consume:?}"
    );
    let deliver = one("deliver", &consume.span_id);
    assert_eq!(deliver.attr("target_name"), Some("demo"), "{deliver:?}");
    let attempt = one("attempt", &deliver.span_id);
    let requests: Vec<&&Span> = traced
        .iter()
        .filter(|s| s.name == "scim_request" && s.parent == attempt.span_id)
        .collect();
    // A new person: lookups by the matching attributes, then the create.
    assert!(requests.len() >= 2, "{traced:#?}");
    assert!(
        requests
            .iter()
            .any(|r| r.attr("http.method") == Some("POST")
                && r.attr("http.path") == Some("/Users")
                && r.attr("http.status") == Some("201")),
        "{requests:#?}"
    );
    assert!(
        requests.iter().all(|r| r.attr("http.status").is_some()),
        "{requests:#?}"
    );

    // The other event had no trace context: its consume span starts a trace of its own.
    let other = all
        .iter()
        .find(|s| s.name == "consume" && s.attr("event_id") == hires[1]["id"].as_str())
        .expect("the second event's consume span");
    assert_ne!(other.trace_id, TRACE);
    assert!(other.parent.is_empty(), "{other:?}");
    assert!(
        all.iter()
            .any(|s| s.name == "deliver" && s.trace_id == other.trace_id),
        "the second delivery is in the second event's trace"
    );
    daemon.stop().unwrap();
}
