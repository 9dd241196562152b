//! The daemon's HTTP listener: the embedded source's ingest endpoint, health and readiness, and a
//! read-only view of the targets.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Notify;

use scimflow_config::SecretRef;
use scimflow_core::source::EventSink;
use scimflow_delivery::PoolHandle;
use scimflow_store::ManagedStore;
use scimflow_telemetry::metrics::{
    DriftLabels, Metrics, PartitionLabels, ReloadLabels, TargetLabel,
};

use crate::embedded::{ingest, rejection_body, IngestError};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ManagedStore>,
    pub sink: Arc<dyn EventSink>,
    pub ingest_token: Option<SecretRef>,
    /// Wakes the embedded-log tailer; `None` when the Kafka source is in use.
    pub log_wake: Option<Arc<Notify>>,
    pub pools: BTreeMap<String, PoolHandle>,
    pub mapping_version: String,
    pub reload: Arc<crate::reload::ReloadStats>,
    /// Set when intake stopped because the store cannot persist.
    pub intake_stopped: Arc<std::sync::atomic::AtomicBool>,
    /// Per-partition consumer lag; `None` when the embedded source is in use.
    pub kafka_lag: Option<scimflow_kafka::LagHandle>,
    /// The registry `/metrics` serves.
    pub metrics: Arc<Metrics>,
    /// Signs audit checkpoints, when a key is configured.
    pub checkpointer: Option<Arc<crate::checkpoint::Checkpointer>>,
    /// The last reconciliation runs, for their metrics.
    pub reconciler: Option<Arc<crate::reconciler::Reconciler>>,
}

/// Builds the router. Ingest bodies are limited to 64 events' worth of the per-event limit.
pub fn router(state: AppState) -> Router {
    let body_limit = state
        .sink
        .max_event_bytes()
        .saturating_mul(64)
        .max(1024 * 1024);
    Router::new()
        .route("/api/v1/events", post(post_events))
        .route("/api/v1/targets", get(get_targets))
        .route("/api/v1/scheduled", get(get_scheduled))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn scim_error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

/// Constant-time comparison, so response timing does not reveal how much of a token matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(headers: &HeaderMap, want: &Option<SecretRef>) -> Result<(), Box<Response>> {
    let Some(r) = want else {
        return Err(Box::new(scim_error(
            StatusCode::FORBIDDEN,
            None,
            "the ingest endpoint is disabled: configure ingest.token",
        )));
    };
    let secret = r.resolve().map_err(|e| {
        tracing::error!(error = %e, "ingest token unavailable");
        Box::new(scim_error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the ingest token is not available",
        ))
    })?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same(g.as_bytes(), secret.expose().as_bytes()) => Ok(()),
        _ => Err(Box::new(scim_error(
            StatusCode::UNAUTHORIZED,
            None,
            "missing or wrong bearer token",
        ))),
    }
}

async fn post_events(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&headers, &st.ingest_token) {
        return *r;
    }
    let Some(wake) = &st.log_wake else {
        return scim_error(
            StatusCode::CONFLICT,
            None,
            "this instance consumes from Kafka; publish events to the configured topic",
        );
    };
    match ingest(
        &body,
        st.store.as_ref(),
        st.sink.as_ref(),
        &st.mapping_version,
    )
    .await
    {
        Ok(r) => {
            if !r.accepted.is_empty() {
                wake.notify_one();
            }
            for _ in &r.rejected {
                st.metrics.event("http", "rejected");
            }
            if r.rejected.is_empty() {
                (
                    StatusCode::ACCEPTED,
                    Json(json!({"accepted": r.accepted.len(), "ids": r.accepted})),
                )
                    .into_response()
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "application/scim+json")],
                    rejection_body(&r).to_string(),
                )
                    .into_response()
            }
        }
        Err(IngestError::Body(m)) => scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"), &m),
        Err(e @ IngestError::Store(_)) => {
            tracing::error!(error = %e, "ingest failed");
            scim_error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "events could not be stored; retry later",
            )
        }
    }
}

/// Readiness: the store can write, intake has not stopped, the Kafka broker (with the Kafka
/// source) is reachable, and no target's pool stopped on an error. The error says why not.
pub fn readiness(
    store: &dyn ManagedStore,
    pools: &BTreeMap<String, PoolHandle>,
    intake_stopped: &std::sync::atomic::AtomicBool,
    kafka: Option<&scimflow_kafka::LagHandle>,
) -> Result<(), String> {
    if intake_stopped.load(std::sync::atomic::Ordering::SeqCst) {
        let why = store
            .last_error()
            .unwrap_or_else(|| "the store failed".into());
        return Err(format!("intake stopped: {why}"));
    }
    let stopped: Vec<&str> = pools
        .iter()
        .filter(|(_, p)| {
            p.stats
                .stopped_on_error
                .load(std::sync::atomic::Ordering::SeqCst)
        })
        .map(|(n, _)| n.as_str())
        .collect();
    if let Some(why) = kafka.and_then(|k| k.brokers_unreachable()) {
        return Err(why);
    }
    if !stopped.is_empty() {
        return Err(format!(
            "delivery stopped for target(s) {}",
            stopped.join(", ")
        ));
    }
    if store.healthy() {
        Ok(())
    } else {
        Err(store.last_error().unwrap_or_else(|| "store stopped".into()))
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    match readiness(
        st.store.as_ref(),
        &st.pools,
        &st.intake_stopped,
        st.kafka_lag.as_ref(),
    ) {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response(),
    }
}

async fn get_targets(State(st): State<AppState>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = Vec::new();
    for (name, p) in &st.pools {
        out.push(json!({
            "name": name,
            "queue_depth": st.store.queue_len(name).unwrap_or(0),
            "applied": p.stats.applied.load(Relaxed),
            "noop": p.stats.noop.load(Relaxed),
            "failed": p.stats.failed.load(Relaxed),
            "handed_over": p.stats.handed_over.load(Relaxed),
        }));
    }
    Json(json!({"targets": out})).into_response()
}

/// `/metrics`: every metric of docs/specs/instrumentation.md, OpenMetrics text. Gauges of stored
/// state (queue depth and oldest age, store health, audit chain length, consumer lag) are read at
/// scrape time.
async fn metrics(State(st): State<AppState>) -> Response {
    use std::sync::atomic::Ordering::{Relaxed, SeqCst};
    let text = st.metrics.encode(|m| {
        for (result, n) in [
            ("success", st.reload.success.load(Relaxed)),
            ("failure", st.reload.failure.load(Relaxed)),
        ] {
            let c = m.reloads.get_or_create(&ReloadLabels { result });
            c.inc_by(n.saturating_sub(c.get()));
        }
        m.store_healthy.set(i64::from(st.store.healthy()));
        m.intake_stopped
            .set(i64::from(st.intake_stopped.load(SeqCst)));
        let now = chrono::Utc::now();
        for (name, p) in &st.pools {
            let t = TargetLabel {
                target: name.clone(),
            };
            let depth = st.store.queue_len(name).unwrap_or(0);
            m.queue_depth
                .get_or_create(&t)
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
            let oldest = st
                .store
                .queue_scan(name, None, 1)
                .ok()
                .and_then(|q| q.first().map(|q| q.op.planned_at))
                .map_or(0.0, |at| {
                    (now - at).num_milliseconds().max(0) as f64 / 1000.0
                });
            m.queue_oldest_age.get_or_create(&t).set(oldest);
            m.pool_stopped
                .get_or_create(&t)
                .set(i64::from(p.stats.stopped_on_error.load(SeqCst)));
            if let Some(b) = &p.breaker {
                m.breaker_state.get_or_create(&t).set(b.state().as_gauge());
                let c = m.breaker_opens.get_or_create(&t);
                c.inc_by(b.times_opened().saturating_sub(c.get()));
            }
            let staged = st
                .store
                .scheduled_list(Some(name), usize::MAX)
                .map(|v| {
                    v.iter()
                        .filter(|s| s.slot == scimflow_delivery::guard::STAGED_SLOT)
                        .count()
                })
                .unwrap_or(0);
            m.staged_deletions
                .get_or_create(&t)
                .set(i64::try_from(staged).unwrap_or(i64::MAX));
        }
        if let Some(r) = &st.reconciler {
            for (target, run) in r.last_runs() {
                let t = TargetLabel {
                    target: target.clone(),
                };
                m.reconcile_last_run
                    .get_or_create(&t)
                    .set(run.finished_at.timestamp());
                m.reconcile_failed
                    .get_or_create(&t)
                    .set(i64::from(run.error.is_some()));
                if let Some(d) = &run.drift {
                    m.reconcile_duration
                        .get_or_create(&t)
                        .set(d.duration_ms as f64 / 1000.0);
                    for (class, n) in &d.counts {
                        m.drift
                            .get_or_create(&DriftLabels {
                                target: target.clone(),
                                class: class.as_str(),
                            })
                            .set(i64::try_from(*n).unwrap_or(i64::MAX));
                    }
                }
            }
        }
        if let Some(c) = &st.checkpointer {
            m.audit_checkpoint_seq
                .set(i64::try_from(c.signed_seq()).unwrap_or(i64::MAX));
        }
        if let Ok(Some(head)) = st.store.audit_last() {
            m.audit_records
                .set(i64::try_from(head.seq).unwrap_or(i64::MAX));
        }
        if let Some(lag) = &st.kafka_lag {
            // Only the partitions assigned now: a revoked partition's series disappears.
            m.consumer_lag.clear();
            for (topic, partition, v) in lag.snapshot() {
                m.consumer_lag
                    .get_or_create(&PartitionLabels {
                        topic,
                        partition: partition.to_string(),
                    })
                    .set(v);
            }
        }
    });
    (
        [(
            header::CONTENT_TYPE,
            scimflow_telemetry::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct ScheduledQuery {
    target: Option<String>,
    limit: Option<usize>,
}

/// Operations held for a future time (effective dating), earliest first.
async fn get_scheduled(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<ScheduledQuery>,
) -> Response {
    match st.store.scheduled_list(q.target.as_deref(), q.limit.unwrap_or(1000).min(10_000)) {
        Ok(items) => Json(json!({"scheduled": items.iter().map(crate::offline::scheduled_json).collect::<Vec<_>>()})).into_response(),
        Err(e) => scim_error(StatusCode::SERVICE_UNAVAILABLE, None, &format!("cannot read the schedule: {e}")),
    }
}
