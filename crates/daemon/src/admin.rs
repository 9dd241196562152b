//! The admin API (`admin:` in the config): operators' reads and changes on their own listener,
//! behind bearer tokens with roles.
//!
//! | method | path | role | what |
//! |---|---|---|---|
//! | GET | `/healthz`, `/readyz` | none | liveness; readiness (store can write, intake running, no pool stopped) |
//! | GET | `/api/v1/targets` | read | per target: queue depth, oldest queued age, paused, stopped, counts |
//! | POST | `/api/v1/targets/{target}/pause`, `…/resume` | operator | stop / restart starting operations (work keeps queueing) |
//! | GET | `/api/v1/dead-letters?target=&class=&subject=&after=&limit=` | read | dead letters, oldest first |
//! | POST | `/api/v1/dead-letters/redrive`, `…/discard` | operator | by `{"seqs": […]}` or `{"target", "class", "subject"}` or `{"all": true}` |
//! | POST | `/api/v1/subjects/{subject}/provision` | operator | plan the subject afresh from its latest attributes (`{"target": T}` for one target) |
//! | POST | `/api/v1/targets/{target}/reconcile` | operator | start a reconciliation run now (`{"repair": true}` queues the fixes); 202 with its run id, 409 while one runs |
//! | GET | `/api/v1/reconcile` | read | the last run of each target (drift counts, summary) and the runs in progress |
//! | GET | `/api/v1/deletions?target=` | read | deprovisionings the deletion guard staged |
//! | POST | `/api/v1/deletions/approve`, `…/reject` | operator | by `{"target", "subject"}` or `{"all": true}` |
//! | GET | `/api/v1/audit?subject=&target=&outcome=&since=&until=&after=&limit=` | read | audit records |
//!
//! Every mutating call is itself an audit record (`outcome: admin`) naming the token (never its
//! value) and what it did, committed before the answer. Bodies are limited to
//! `admin.max_body_bytes`. A redrive plans the subject again from its latest recorded attributes
//! (not the stored operation, which may be stale by now) and removes the dead letter in the same
//! atomic batch that queues the new operations: redriving twice finds nothing the second time, and
//! the new operations are idempotent (lookup before create).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use scimflow_config::{AdminConfig, AdminRole, AdminToken};
use scimflow_core::audit::AuditFilter;
use scimflow_core::store::{DeadLetter, Mutation};
use scimflow_core::AuditEntry;
use scimflow_delivery::PoolHandle;
use scimflow_store::ManagedStore;

use crate::pipeline::{Pipeline, ReplanError};

/// Shared state of the admin handlers.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn ManagedStore>,
    pub pipeline: Arc<Pipeline>,
    pub pools: BTreeMap<String, PoolHandle>,
    pub tokens: Arc<Vec<AdminToken>>,
    pub intake_stopped: Arc<AtomicBool>,
    /// Broker reachability (and lag), with the Kafka source.
    pub kafka: Option<scimflow_kafka::LagHandle>,
    pub reconciler: Arc<crate::reconciler::Reconciler>,
}

pub fn router(state: AdminState, config: &AdminConfig) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/{target}/pause", post(pause))
        .route("/api/v1/targets/{target}/resume", post(resume))
        .route("/api/v1/dead-letters", get(dead_letters))
        .route("/api/v1/dead-letters/redrive", post(redrive))
        .route("/api/v1/dead-letters/discard", post(discard))
        .route("/api/v1/subjects/{subject}/provision", post(provision))
        .route("/api/v1/targets/{target}/reconcile", post(reconcile_now))
        .route("/api/v1/reconcile", get(reconcile_runs))
        .route("/api/v1/deletions", get(deletions))
        .route("/api/v1/deletions/approve", post(approve_deletions))
        .route("/api/v1/deletions/reject", post(reject_deletions))
        .route("/api/v1/audit", get(audit))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

fn error(status: StatusCode, detail: impl Into<String>) -> Response {
    ApiError(status, detail.into()).into_response()
}

fn refuse(status: StatusCode, detail: impl Into<String>) -> ApiError {
    ApiError(status, detail.into())
}

/// A refused request: its status and why (as `{"error": …}`).
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

/// Constant-time comparison, so response timing does not reveal how much of a token matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller's token if it has at least `need`.
fn caller(st: &AdminState, headers: &HeaderMap, need: AdminRole) -> Result<AdminToken, ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "missing bearer token"))?;
    // Every token is read (files are re-read: rotation takes effect at once) and compared.
    let mut found = None;
    for t in st.tokens.iter() {
        match t.token.resolve() {
            Ok(s) if same(s.expose().as_bytes(), given.as_bytes()) => found = Some(t.clone()),
            Ok(_) => {}
            Err(e) => tracing::error!(token = %t.name, error = %e, "admin token unavailable"),
        }
    }
    let t = found.ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "unknown bearer token"))?;
    if t.role < need {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "token `{}` has role {}; this needs {}",
                t.name,
                t.role.as_str(),
                need.as_str()
            ),
        ));
    }
    Ok(t)
}

/// An optional JSON body: empty means the defaults; `shape` says what is expected.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the body must be {shape} or empty: {e}"),
        )
    })
}

/// Commits `batch` plus the audit record of this admin call.
async fn commit_audited(
    st: &AdminState,
    who: &AdminToken,
    what: String,
    target: &str,
    subject: &str,
    mut batch: Vec<Mutation>,
) -> Result<(), ApiError> {
    tracing::info!(token = %who.name, target, subject, "{what}");
    batch.push(Mutation::Audit(AuditEntry {
        target: target.to_owned(),
        subject: subject.to_owned(),
        detail: Some(format!("{what} (token `{}`)", who.name)),
        ..AuditEntry::note("admin", &st.pipeline.mapping_version())
    }));
    st.store.commit(batch).await.map(drop).map_err(|e| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store cannot record this: {e}"),
        )
    })
}

async fn readyz(State(st): State<AdminState>) -> Response {
    match crate::http::readiness(
        st.store.as_ref(),
        &st.pools,
        &st.intake_stopped,
        st.kafka.as_ref(),
    ) {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response(),
    }
}

async fn targets(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(r) = caller(&st, &headers, AdminRole::Read) {
        return r.into_response();
    }
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for (name, p) in &st.pools {
        let oldest = st
            .store
            .queue_scan(name, None, 1)
            .ok()
            .and_then(|q| q.first().map(|q| q.op.planned_at));
        out.push(json!({
            "name": name,
            "queue_depth": st.store.queue_len(name).unwrap_or(0),
            "oldest_queued_at": oldest,
            "oldest_age_seconds": oldest.map_or(0.0, |at| (now - at).num_milliseconds().max(0) as f64 / 1000.0),
            "paused": p.stats.paused.load(Ordering::SeqCst),
            "breaker": p.breaker.as_ref().map(|b| b.state().as_str()),
            "stopped": p.stats.stopped_on_error.load(Ordering::SeqCst),
            "applied": p.stats.applied.load(Ordering::Relaxed),
            "noop": p.stats.noop.load(Ordering::Relaxed),
            "failed": p.stats.failed.load(Ordering::Relaxed),
            "handed_over": p.stats.handed_over.load(Ordering::Relaxed),
        }));
    }
    Json(json!({"targets": out})).into_response()
}

async fn pause(st: State<AdminState>, path: Path<String>, headers: HeaderMap) -> Response {
    pause_or_resume(st, path, headers, true).await
}

async fn resume(st: State<AdminState>, path: Path<String>, headers: HeaderMap) -> Response {
    pause_or_resume(st, path, headers, false).await
}

async fn pause_or_resume(
    State(st): State<AdminState>,
    Path(target): Path<String>,
    headers: HeaderMap,
    pause: bool,
) -> Response {
    let who = match caller(&st, &headers, AdminRole::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let Some(pool) = st.pools.get(&target) else {
        return error(StatusCode::NOT_FOUND, format!("no target `{target}`"));
    };
    let (verb, changed) = if pause {
        ("paused", pool.pause())
    } else {
        ("resumed", pool.resume())
    };
    let what = if changed {
        format!("delivery to `{target}` {verb}")
    } else {
        format!("delivery to `{target}` was already {verb}")
    };
    if let Err(r) = commit_audited(&st, &who, what, &target, "", Vec::new()).await {
        return r.into_response();
    }
    Json(json!({"target": target, "paused": pause, "changed": changed})).into_response()
}

/// Which dead letters a list, redrive or discard is about.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selector {
    #[serde(default)]
    seqs: Option<Vec<u64>>,
    target: Option<String>,
    class: Option<String>,
    subject: Option<String>,
    #[serde(default)]
    all: bool,
    after: Option<u64>,
    limit: Option<usize>,
}

impl Selector {
    fn matches(&self, seq: u64, d: &DeadLetter) -> bool {
        self.seqs.as_ref().is_none_or(|s| s.contains(&seq))
            && self.target.as_ref().is_none_or(|t| *t == d.op.target)
            && self.class.as_ref().is_none_or(|c| c == d.class.as_str())
            && self.subject.as_ref().is_none_or(|s| *s == d.op.subject)
    }

    fn is_empty(&self) -> bool {
        self.seqs.is_none()
            && self.target.is_none()
            && self.class.is_none()
            && self.subject.is_none()
    }

    /// Matching dead letters after `after`, oldest first, at most `limit`.
    fn scan(
        &self,
        store: &dyn ManagedStore,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, ApiError> {
        let mut out = Vec::new();
        let mut after = self.after;
        loop {
            let page = store.dead_letter_scan(after, 1000).map_err(|e| {
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read dead letters: {e}"),
                )
            })?;
            let Some(&(last, _)) = page.last() else {
                return Ok(out);
            };
            for (seq, d) in page {
                if self.matches(seq, &d) {
                    out.push((seq, d));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            after = Some(last);
        }
    }
}

fn dead_letter_json(seq: u64, d: &DeadLetter) -> Value {
    json!({
        "seq": seq,
        "failed_at": d.failed_at,
        "target": d.op.target,
        "subject": d.op.subject,
        "operation": d.op.kind.as_str(),
        "op_id": d.op.id,
        "event_id": d.op.event_id,
        "class": d.class.as_str(),
        "status": d.status,
        "scim_type": d.scim_type,
        "detail": d.detail,
        "attempts": d.attempts,
        "mapping_failure": d.event.is_some(),
    })
}

/// `GET /api/v1/dead-letters` parameters.
#[derive(Debug, Default, Deserialize)]
struct DeadLetterQuery {
    target: Option<String>,
    class: Option<String>,
    subject: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

async fn dead_letters(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<DeadLetterQuery>,
) -> Response {
    if let Err(r) = caller(&st, &headers, AdminRole::Read) {
        return r.into_response();
    }
    let sel = Selector {
        target: q.target,
        class: q.class,
        subject: q.subject,
        after: q.after,
        limit: q.limit,
        ..Selector::default()
    };
    let limit = sel.limit.unwrap_or(1000).min(10_000);
    match sel.scan(st.store.as_ref(), limit) {
        Ok(items) => Json(json!({
            "dead_letters": items.iter().map(|(s, d)| dead_letter_json(*s, d)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

/// A selector from a POST body; an empty one is refused (say `"all": true` to mean everything).
fn body_selector(body: &[u8]) -> Result<Selector, ApiError> {
    let sel: Selector = serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON selector {{seqs|target|class|subject|all}}: {e}"),
        )
    })?;
    if sel.is_empty() && !sel.all {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "select dead letters by `seqs`, `target`, `class` or `subject`, or send `\"all\": true`",
        ));
    }
    Ok(sel)
}

async fn redrive(
    State(st): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match caller(&st, &headers, AdminRole::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let sel = match body_selector(&body) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let items = match sel.scan(st.store.as_ref(), usize::MAX) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let (mut redriven, mut operations, mut failed) = (0, 0, Vec::new());
    for (seq, d) in items {
        let tag = format!("redrive-{seq}");
        match st
            .pipeline
            .replan_subject(&d.op.subject, Some(&d.op.target), &tag)
        {
            Ok(plan) => {
                let mut batch = plan.mutations;
                batch.push(Mutation::RemoveDeadLetter { seq });
                let what = format!(
                    "dead letter #{seq} ({} {}) redriven: {} operation(s) planned from the latest state",
                    d.op.kind.as_str(),
                    d.op.id,
                    plan.operations
                );
                if let Err(r) =
                    commit_audited(&st, &who, what, &d.op.target, &d.op.subject, batch).await
                {
                    return r.into_response();
                }
                st.pipeline.wake(&plan.targets);
                redriven += 1;
                operations += plan.operations;
            }
            Err(e @ (ReplanError::Unknown(_) | ReplanError::Plan(_))) => {
                failed.push(json!({"seq": seq, "error": e.to_string()}));
            }
            Err(ReplanError::Store(e)) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            }
        }
    }
    Json(json!({"redriven": redriven, "operations": operations, "failed": failed})).into_response()
}

async fn discard(
    State(st): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match caller(&st, &headers, AdminRole::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let sel = match body_selector(&body) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let items = match sel.scan(st.store.as_ref(), usize::MAX) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let n = items.len();
    for (seq, d) in items {
        let what = format!(
            "dead letter #{seq} ({} {}, {}) discarded",
            d.op.kind.as_str(),
            d.op.id,
            d.class.as_str()
        );
        let batch = vec![Mutation::RemoveDeadLetter { seq }];
        if let Err(r) = commit_audited(&st, &who, what, &d.op.target, &d.op.subject, batch).await {
            return r.into_response();
        }
    }
    Json(json!({"discarded": n})).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionBody {
    target: Option<String>,
}

async fn provision(
    State(st): State<AdminState>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match caller(&st, &headers, AdminRole::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let b: ProvisionBody = match optional_body(&body, r#"{"target": NAME}"#) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if let Some(t) = &b.target {
        if !st.pools.contains_key(t) {
            return error(StatusCode::NOT_FOUND, format!("no target `{t}`"));
        }
    }
    let tag = format!("provision-{}", chrono::Utc::now().timestamp_millis());
    let plan = match st
        .pipeline
        .replan_subject(&subject, b.target.as_deref(), &tag)
    {
        Ok(p) => p,
        Err(ReplanError::Unknown(s)) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no recorded state for subject `{s}`"),
            )
        }
        Err(e @ ReplanError::Plan(_)) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(ReplanError::Store(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let what = format!(
        "provision now: {} operation(s) planned from the latest state",
        plan.operations
    );
    let target = b.target.clone().unwrap_or_default();
    if let Err(r) = commit_audited(&st, &who, what, &target, &subject, plan.mutations).await {
        return r.into_response();
    }
    st.pipeline.wake(&plan.targets);
    Json(json!({"subject": subject, "operations": plan.operations, "targets": plan.targets}))
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    subject: Option<String>,
    target: Option<String>,
    outcome: Option<String>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    after: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Err(r) = caller(&st, &headers, AdminRole::Read) {
        return r.into_response();
    }
    let f = AuditFilter {
        subject: q.subject,
        target: q.target,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
    };
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let mut out = Vec::new();
    let mut after = q.after;
    while out.len() < limit {
        let page = match st.store.audit_scan(after, 1000) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        out.extend(page.into_iter().filter(|r| f.matches(&r.entry)));
        after = Some(last);
    }
    out.truncate(limit);
    let next = out.last().map(|r| r.seq);
    Json(json!({"records": out, "next_after": next})).into_response()
}

/// Which staged deletions an approve or reject is about.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StagedSelector {
    target: Option<String>,
    subject: Option<String>,
    #[serde(default)]
    all: bool,
}

#[derive(Debug, Default, Deserialize)]
struct StagedQuery {
    target: Option<String>,
}

/// The staged deprovisionings of `target` (or all targets), oldest target first.
fn staged(
    st: &AdminState,
    target: Option<&str>,
) -> Result<Vec<scimflow_core::ScheduledOp>, ApiError> {
    st.store
        .scheduled_list(target, usize::MAX)
        .map(|v| {
            v.into_iter()
                .filter(|s| s.slot == scimflow_delivery::guard::STAGED_SLOT)
                .collect()
        })
        .map_err(|e| {
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the staged deletions: {e}"),
            )
        })
}

fn staged_json(s: &scimflow_core::ScheduledOp) -> Value {
    json!({
        "target": s.op.target,
        "subject": s.op.subject,
        "operation": s.op.kind.as_str(),
        "op_id": s.op.id,
        "event_id": s.op.event_id,
        "planned_at": s.op.planned_at,
    })
}

async fn deletions(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<StagedQuery>,
) -> Response {
    if let Err(r) = caller(&st, &headers, AdminRole::Read) {
        return r.into_response();
    }
    match staged(&st, q.target.as_deref()) {
        Ok(items) => Json(json!({"staged": items.iter().map(staged_json).collect::<Vec<_>>()}))
            .into_response(),
        Err(r) => r.into_response(),
    }
}

/// The staged deletions a POST body selects; an empty selector is refused.
fn select_staged(
    st: &AdminState,
    body: &[u8],
) -> Result<Vec<scimflow_core::ScheduledOp>, ApiError> {
    let sel: StagedSelector = serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON selector {{target|subject|all}}: {e}"),
        )
    })?;
    if sel.target.is_none() && sel.subject.is_none() && !sel.all {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "select staged deletions by `target` and/or `subject`, or send `\"all\": true`",
        ));
    }
    Ok(staged(st, sel.target.as_deref())?
        .into_iter()
        .filter(|s| sel.subject.as_ref().is_none_or(|x| *x == s.op.subject))
        .collect())
}

fn unstage(s: &scimflow_core::ScheduledOp) -> Mutation {
    Mutation::Unschedule {
        target: s.op.target.clone(),
        subject: s.op.subject.clone(),
        slot: s.slot.clone(),
    }
}

async fn approve_deletions(
    State(st): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match caller(&st, &headers, AdminRole::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let items = match select_staged(&st, &body) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let (mut approved, mut failed) = (0, Vec::new());
    for s in items {
        let tag = format!("approved-{}", chrono::Utc::now().timestamp_micros());
        let plan = match st
            .pipeline
            .replan_subject(&s.op.subject, Some(&s.op.target), &tag)
        {
            Ok(p) => p,
            Err(ReplanError::Store(e)) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            Err(e) => {
                failed.push(
                    json!({"subject": s.op.subject, "target": s.op.target, "error": e.to_string()}),
                );
                continue;
            }
        };
        // Past the guard: the approval is registered before the operations are queued.
        if let Some(g) = st.pools.get(&s.op.target).and_then(|p| p.guard.as_ref()) {
            for m in &plan.mutations {
                if let Mutation::Enqueue(op) = m {
                    g.approve(&op.id);
                }
            }
        }
        let mut batch = plan.mutations;
        batch.push(unstage(&s));
        let what = format!(
            "staged {} {} approved: {} operation(s) planned from the latest state",
            s.op.kind.as_str(),
            s.op.id,
            plan.operations
        );
        if let Err(r) = commit_audited(&st, &who, what, &s.op.target, &s.op.subject, batch).await {
            return r.into_response();
        }
        st.pipeline.wake(&plan.targets);
        approved += 1;
    }
    Json(json!({"approved": approved, "failed": failed})).into_response()
}

async fn reject_deletions(
    State(st): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match caller(&st, &headers, AdminRole::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let items = match select_staged(&st, &body) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let n = items.len();
    for s in items {
        let what = format!(
            "staged {} {} rejected: not sent, the account stays as it is",
            s.op.kind.as_str(),
            s.op.id
        );
        let batch = vec![unstage(&s)];
        if let Err(r) = commit_audited(&st, &who, what, &s.op.target, &s.op.subject, batch).await {
            return r.into_response();
        }
    }
    Json(json!({"rejected": n})).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileBody {
    #[serde(default)]
    repair: bool,
}

async fn reconcile_now(
    State(st): State<AdminState>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match caller(&st, &headers, AdminRole::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let b: ReconcileBody = match optional_body(&body, r#"{"repair": BOOL}"#) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let run_id = match st.reconciler.start(&target, b.repair, "admin") {
        Ok(id) => id,
        Err(e @ crate::reconciler::StartError::Unknown(_)) => {
            return error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e @ crate::reconciler::StartError::Busy(_)) => {
            return error(StatusCode::CONFLICT, e.to_string())
        }
    };
    let what = format!(
        "reconciliation {run_id} of `{target}` started{}",
        if b.repair { " with repair" } else { "" }
    );
    if let Err(r) = commit_audited(&st, &who, what, &target, "", Vec::new()).await {
        return r.into_response();
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"target": target, "run_id": run_id, "repair": b.repair})),
    )
        .into_response()
}

async fn reconcile_runs(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(r) = caller(&st, &headers, AdminRole::Read) {
        return r.into_response();
    }
    let running: Vec<&String> = st
        .pools
        .keys()
        .filter(|t| st.reconciler.is_running(t))
        .collect();
    Json(json!({"last": st.reconciler.last_runs(), "running": running})).into_response()
}
