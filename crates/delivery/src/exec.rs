//! Executing one operation against one target, idempotently, with retries.
//!
//! The per-target stack, outermost first (one comment per layer, as in tower's builder):
//!
//! 1. **retry** — exponential backoff with full jitter (`backon`), `Retry-After` honoured, bounded by
//!    `max_attempts`; the backoff wait holds no concurrency permit;
//! 1. **circuit breaker** — per target ([`Breaker`]): while open, requests wait (no permit, no token);
//!    half-open lets one probe through;
//! 2. **rate limit** — a governor token bucket shared by the whole target; *every* attempt pays;
//! 3. **concurrency limit** — a permit of the target's [`ConcurrencyLimit`] held only for the
//!    duration of one HTTP request; the limit adapts (AIMD on 429s, timeouts and latency,
//!    [`crate::adaptive`]) unless `adaptive_concurrency: { enabled: false }`;
//! 4. **timeout** — per attempt, in the client;
//! 5. **client** — [`ScimClient`].
//!
//! Idempotency: a subject with no known id is looked up by the matching attributes (externalId, then
//! userName) before any create, and a found account is only bound if it really has the value (targets
//! that ignore or mishandle filters cannot cause a wrong binding); a 409 on create is resolved by
//! lookup + bind + converge; a 404 on update re-looks-up; 404 on delete/deactivate counts as done.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::Method;
use serde_json::{json, Value};
use tracing::Instrument as _;

use scimflow_config::profile::{
    DeactivateMethod, Deactivation, PatchOperation, ReplaceMembers, UpdateMethod,
};
use scimflow_config::{RetryPolicy, TargetConfig};
use scimflow_core::op::MatchKey;
use scimflow_core::{ErrorClass, OpKind, Operation, Outcome, RetryState};
use scimflow_scim::filter::Filter;
use scimflow_telemetry::metrics::{BulkLabels, Metrics, TargetLabel};

use scimflow_core::trace::TraceParent;

use crate::adaptive::{ConcurrencyLimit, Feedback};
use crate::breaker::{Breaker, Signal};
use crate::bulk::{Bulk, Queued};
use crate::client::{CallError, Reply, ScimClient};
use crate::retry::{self, RetryBudget};

/// What executing one operation did.
#[derive(Debug, Clone)]
pub struct ExecReport {
    pub outcome: Outcome,
    /// The resource id the subject is bound to afterwards (`None`: unknown or gone).
    pub bound_id: Option<String>,
    /// Whether `bound_id` differs from the binding the operation started with.
    pub binding_changed: bool,
    /// Every request made, as `METHOD /path` (no query strings).
    pub requests: Vec<String>,
    pub status: Option<u16>,
    pub attempts: u32,
    pub latency: Duration,
    /// The final error, when the outcome is a failure.
    pub error: Option<CallError>,
    /// Set when the operation is not finished but parked: the retry state to keep with it in the
    /// queue (its outcome and error are then those of the last attempt, not terminal).
    pub park: Option<RetryState>,
}

/// Runs operations for one target.
pub struct Executor {
    client: ScimClient,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// Targets with the same key share one limiter (see [`share_rate_limits`]).
    quota_key: Option<String>,
    concurrency: ConcurrencyLimit,
    max_attempts: u32,
    backoff: backon::ExponentialBuilder,
    retry: RetryPolicy,
    budget: RetryBudget,
    /// Group `displayName` → id on this target (dropped on 404).
    group_ids: Mutex<HashMap<String, String>>,
    /// One find-or-create at a time per group name, so that concurrent first members of a new
    /// group create it once (the others find it).
    group_creation: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where requests, retries and limiter waits are counted.
    metrics: Arc<Metrics>,
    breaker: Option<Arc<Breaker>>,
    /// Whether lookups by several matching attributes use one `or` filter (cleared when the
    /// target refuses one).
    or_lookups: AtomicBool,
    /// Whether the last request that failed transiently has not been followed by a success yet.
    failing: AtomicBool,
    /// How often the target answered again after transient failures (see [`Executor::recoveries`]).
    recoveries: std::sync::atomic::AtomicU64,
    /// Most member changes one group PATCH may carry (the profile's limit).
    member_limit: usize,
    /// Writes go out in bulk requests (`bulk:`).
    bulk: Option<Bulk>,
    /// The profile's endpoint paths (`resources`).
    users_path: String,
    groups_path: String,
    /// Updates are a PUT of the whole resource (`update: put`).
    update_put: bool,
    /// PATCH operations the target accepts (`patch_operations`).
    patch_ops: Vec<PatchOperation>,
    /// Statuses that confirm a PATCH (`patch_response`).
    patch_response: Vec<u16>,
    /// How to deactivate (`deactivate`).
    deactivation: Deactivation,
    /// Whether `members` may be replaced wholesale (`groups.replace_members`).
    replace_members: bool,
}

/// The key of the quota a target shares with others: its connector profile says the vendor's rate
/// limit is per tenant (`rate_limit.shared`, e.g. Slack's per-workspace limits), so every target
/// of that connector on the same host draws from one bucket.
fn shared_quota_key(target: &TargetConfig) -> Option<String> {
    let shared = target.profile.rate_limit.as_ref().is_some_and(|r| r.shared);
    let host = url::Url::parse(&target.base_url)
        .ok()?
        .host_str()?
        .to_ascii_lowercase();
    (shared && target.rate_limit.is_some()).then(|| format!("{}@{host}", target.profile.name))
}

/// Makes executors whose targets share a quota (same connector with a shared rate limit, same
/// host) draw from one token bucket — the first such target's; returns the groups formed, as
/// target-name lists, for the log.
pub fn share_rate_limits(execs: &mut [(&str, &mut Executor)]) -> Vec<Vec<String>> {
    let mut first: HashMap<String, (Arc<DefaultDirectRateLimiter>, Vec<String>)> = HashMap::new();
    for (name, exec) in execs.iter_mut() {
        let (Some(key), Some(limiter)) = (exec.quota_key.clone(), exec.limiter.clone()) else {
            continue;
        };
        match first.get_mut(&key) {
            Some((shared, names)) => {
                exec.limiter = Some(shared.clone());
                names.push((*name).to_owned());
            }
            None => {
                first.insert(key, (limiter, vec![(*name).to_owned()]));
            }
        }
    }
    first
        .into_values()
        .map(|(_, names)| names)
        .filter(|n| n.len() > 1)
        .collect()
}

/// Member changes per group PATCH when the profile states no limit.
pub const DEFAULT_MEMBER_CHANGES: usize = 100;

impl Executor {
    pub fn new(target: &TargetConfig) -> Result<Self, crate::tls::BuildError> {
        let limiter = target.rate_limit.map(|r| {
            let per_token = Duration::from_secs_f64(1.0 / r.per_second);
            let quota = Quota::with_period(per_token)
                .expect("positive rate")
                .allow_burst(NonZeroU32::new(r.burst).unwrap_or(NonZeroU32::MIN));
            Arc::new(RateLimiter::direct(quota))
        });
        Ok(Executor {
            client: ScimClient::new(target)?,
            limiter,
            quota_key: shared_quota_key(target),
            bulk: target.bulk.as_ref().map(Bulk::new),
            users_path: target.profile.resources.users.clone(),
            groups_path: target.profile.resources.groups.clone(),
            update_put: target.profile.update == UpdateMethod::Put,
            patch_ops: target.profile.patch_operations.clone(),
            patch_response: target.profile.patch_response.clone(),
            deactivation: target.profile.deactivate.clone(),
            replace_members: target.profile.groups.replace_members == ReplaceMembers::Allowed,
            concurrency: ConcurrencyLimit::for_target(target),
            max_attempts: target.max_attempts,
            retry: target.retry,
            budget: RetryBudget::new(&target.retry),
            backoff: backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(30))
                .with_jitter()
                .without_max_times(),
            group_ids: Mutex::default(),
            group_creation: Mutex::default(),
            metrics: Arc::default(),
            breaker: target.circuit_breaker.map(|c| Arc::new(Breaker::new(c))),
            or_lookups: AtomicBool::new(
                target.profile.filter.supported
                    && target.profile.filter.operators.iter().any(|o| o == "or"),
            ),
            failing: AtomicBool::new(false),
            recoveries: std::sync::atomic::AtomicU64::new(0),
            member_limit: target
                .profile
                .groups
                .member_changes_per_request
                .unwrap_or(DEFAULT_MEMBER_CHANGES)
                .max(1),
        })
    }

    /// One request through the target's stack: breaker → rate limit → concurrency → client, with
    /// its span, breaker signal, concurrency feedback and metrics.
    async fn send_stacked(
        &self,
        target: &str,
        trace: Option<&TraceParent>,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply, CallError> {
        let (pass, permit) = loop {
            let pass = match &self.breaker {
                Some(b) => Some(b.pass().await),
                None => None,
            };
            if let Some(l) = &self.limiter {
                let waited = Instant::now();
                l.until_ready().await;
                let waited = waited.elapsed();
                if !waited.is_zero() {
                    self.metrics
                        .limiter_wait
                        .get_or_create(&TargetLabel {
                            target: target.to_owned(),
                        })
                        .inc_by(waited.as_secs_f64());
                }
            }
            let permit = self.concurrency.acquire().await;
            // The breaker may have opened while this request waited for its token or permit:
            // then it waits again (holding nothing) instead of going out.
            match (&self.breaker, &pass) {
                (Some(b), Some(p)) if !b.still_admits(p) => drop(permit),
                _ => break (pass, permit),
            }
        };
        let span = tracing::info_span!(
            "scim_request",
            http.method = %method,
            http.path = path,
            http.status = tracing::field::Empty,
        );
        // The request continues the trace: as a child of this request's exported span, or (without
        // export) as a child of the event's own context.
        let child = span
            .in_scope(scimflow_telemetry::otlp::current_traceparent)
            .or_else(|| trace.map(|t| t.child().header()));
        span.in_scope(
            || tracing::debug!(%method, path, traceparent = child.as_deref(), "scim request"),
        );
        let sent = Instant::now();
        let method_name = method.as_str().to_owned();
        let r = self
            .client
            .send(method, path, query, body, child.as_deref())
            .instrument(span.clone())
            .await;
        let status = match &r {
            Ok(reply) => Some(reply.status),
            Err(e) => e.status,
        };
        // Recovery: the first answer after transient failures tells the pool to try its parked
        // operations now rather than at their backed-off next tries.
        match &r {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    self.recoveries.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.class.is_transient() && e.retry_after != Some(Duration::ZERO) => {
                self.failing.store(true, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        permit.finish(
            sent.elapsed(),
            Feedback::of(status, r.as_ref().err().map(|e| e.class)),
        );
        if let Some(s) = status {
            span.record("http.status", s);
        }
        if let (Some(b), Some(p)) = (&self.breaker, pass) {
            b.record(p, Signal::of(status));
        }
        self.metrics
            .request(target, &method_name, status, sent.elapsed());
        r
    }

    /// A write sent inside a bulk request (see [`crate::bulk`]): queued; the first writer leads,
    /// sending batches through [`send_stacked`](Self::send_stacked) until none is left.
    async fn bulk_send(
        &self,
        bulk: &Bulk,
        target: &str,
        trace: Option<&TraceParent>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, CallError> {
        /// Fails what is still queued if the leader is dropped before it is done.
        struct Leading<'a>(&'a Bulk, bool);
        impl Drop for Leading<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.abandon();
                }
            }
        }
        let rx = match bulk.queue(method, path, body) {
            Queued::Wait(rx) => rx,
            Queued::Lead(rx) => {
                let mut leading = Leading(bulk, false);
                tokio::select! {
                    _ = tokio::time::sleep(bulk.linger()) => {}
                    _ = bulk.full() => {}
                }
                while let Some(batch) = bulk.take_batch() {
                    let request = batch.body.clone();
                    tracing::debug!(
                        target_name = target,
                        operations = batch.len(),
                        "bulk request"
                    );
                    let r = self
                        .send_stacked(target, trace, Method::POST, "/Bulk", &[], Some(&request))
                        .await;
                    let tally = bulk.distribute(batch, r, self.client.statuses());
                    for (result, n) in [
                        ("succeeded", tally.succeeded),
                        ("failed", tally.failed),
                        ("unanswered", tally.unanswered),
                    ] {
                        if n > 0 {
                            self.metrics
                                .bulk_operations
                                .get_or_create(&BulkLabels {
                                    target: target.to_owned(),
                                    result,
                                })
                                .inc_by(n as u64);
                        }
                    }
                }
                leading.1 = true;
                rx
            }
        };
        rx.await.unwrap_or_else(|_| {
            Err(CallError {
                class: ErrorClass::Retryable,
                status: None,
                scim_type: None,
                detail: "the bulk request carrying this write was cancelled".into(),
                retry_after: Some(Duration::ZERO),
            })
        })
    }

    /// Most member changes one group PATCH may carry on this target.
    pub fn member_changes_per_request(&self) -> usize {
        self.member_limit
    }

    /// Adds (or removes) several subjects' accounts to (from) one group with one request: `ops`
    /// are membership operations of one kind for one group, each with its subject's bound account
    /// id, at most [`member_changes_per_request`](Self::member_changes_per_request) of them. One
    /// `PATCH /Groups/{id}` carries every change (or, for a group that does not exist yet, the
    /// `POST /Groups` that creates it carries every member). Returns a report per operation, or
    /// `None` for one that must run on its own through [`execute`](Self::execute) — unbound
    /// accounts, and all of them when the shared request fails (so retries, parking and the
    /// per-member error handling stay those of a single operation).
    pub async fn execute_members(
        &self,
        ops: &[(&Operation, Option<String>)],
    ) -> Vec<Option<ExecReport>> {
        let start = Instant::now();
        let mut reports: Vec<Option<ExecReport>> = vec![None; ops.len()];
        let with_ids: Vec<(usize, &str)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, (_, id))| id.as_deref().map(|id| (i, id)))
            .take(self.member_limit)
            .collect();
        let (Some(&(first, _)), true) = (with_ids.first(), with_ids.len() > 1) else {
            return reports;
        };
        let op = ops[first].0;
        let (Some(name), add) = (op.group.clone(), op.kind == OpKind::GroupAdd) else {
            return reports;
        };
        let mut run = Run {
            exec: self,
            op,
            id: None,
            trusted_binding: false,
            manager: None,
            requests: Vec::new(),
            last_status: None,
            trace: op.traceparent.as_deref().and_then(TraceParent::parse),
        };
        let ids: Vec<&str> = with_ids.iter().map(|(_, id)| *id).collect();
        let outcome = run.members(&name, add, &ids).await;
        let Ok(outcome) = outcome else {
            return reports;
        };
        for (i, id) in &with_ids {
            reports[*i] = Some(ExecReport {
                outcome: outcome.clone(),
                bound_id: Some((*id).to_owned()),
                binding_changed: false,
                requests: run.requests.clone(),
                status: run.last_status,
                attempts: 1,
                latency: start.elapsed(),
                error: None,
                park: None,
            });
        }
        reports
    }

    /// How many times the target answered successfully after transient failures: when this
    /// moves, the target is back and parked operations need not wait out their backoff.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// Whether this executor draws from the same token bucket as `other`.
    pub fn shares_rate_limit_with(&self, other: &Executor) -> bool {
        matches!((&self.limiter, &other.limiter), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    /// The target's circuit breaker, when it has one.
    pub fn breaker(&self) -> Option<&Arc<Breaker>> {
        self.breaker.as_ref()
    }

    /// Counts into `metrics` (the daemon's registry) instead of a private one.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.concurrency.set_metrics(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// The target's limit on requests in flight.
    pub fn concurrency(&self) -> &ConcurrencyLimit {
        &self.concurrency
    }

    /// The metrics this executor counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Executes `op`, starting from the known binding `bound`; `manager` is the target's id of the
    /// subject's manager, when the mapping names one and it is bound.
    pub async fn execute(
        &self,
        op: &Operation,
        bound: Option<String>,
        manager: Option<String>,
    ) -> ExecReport {
        let start = Instant::now();
        let mut run = Run {
            exec: self,
            op,
            id: bound.clone(),
            trusted_binding: bound.is_some(),
            manager,
            requests: Vec::new(),
            last_status: None,
            trace: op.traceparent.as_deref().and_then(TraceParent::parse),
        };
        let mut delays = self.backoff.build();
        let prior = op.retry.as_ref();
        let before = prior.map_or(0, |r| r.attempts);
        let mut first_failure = prior.map(|r| r.first_failure);
        let mut attempts = 0;
        let mut park = None;
        let result = loop {
            // A breaker that stays open for long: park instead of waiting in memory.
            if let Some(left) = self.breaker.as_ref().and_then(|b| b.open_remaining()) {
                if left > self.retry.park_after {
                    let now = chrono::Utc::now();
                    park = Some(retry::parked(
                        prior,
                        before + attempts,
                        now,
                        first_failure.unwrap_or(now),
                        left,
                        "circuit breaker open".into(),
                    ));
                    break Err(CallError {
                        class: ErrorClass::Retryable,
                        status: None,
                        scim_type: None,
                        detail: "the target's circuit breaker is open".into(),
                        retry_after: Some(left),
                    });
                }
            }
            attempts += 1;
            if attempts == 1 && prior.is_none() {
                self.budget.deposit();
            }
            let span = tracing::info_span!("attempt", attempt = before + attempts);
            match run.attempt().instrument(span).await {
                Ok(outcome) => break Ok(outcome),
                Err(e) if e.class.is_transient() => {
                    let now = chrono::Utc::now();
                    let first = *first_failure.get_or_insert(now);
                    let age = (now - first).to_std().unwrap_or_default();
                    if age >= self.retry.give_up_after {
                        break Err(CallError {
                            detail: format!(
                                "{} (still failing {} after the first failure; given up)",
                                e.detail,
                                humantime(age)
                            ),
                            ..e
                        });
                    }
                    let backoff = delays.next().unwrap_or(Duration::from_secs(30));
                    let wait = e.retry_after.map_or(backoff, |ra| ra.max(backoff));
                    let why = if attempts >= self.max_attempts {
                        Some("attempts of this dispatch used up")
                    } else if wait > self.retry.park_after {
                        Some("long wait")
                    } else if e.retry_after != Some(Duration::ZERO) && !self.budget.withdraw() {
                        // (A "try again now" — a rebind, a refused bulk, a lost result — is not a
                        // failure of the target and takes nothing from the budget.)
                        Some("retry budget spent")
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        let parks = prior.map_or(0, |r| r.parks);
                        let wait = if wait > self.retry.park_after {
                            wait
                        } else {
                            retry::park_delay(&self.retry, parks, e.retry_after)
                        };
                        tracing::debug!(target_name = %op.target, op = %op.id, attempt = before + attempts, ?wait, reason = why, error = %e, "parking");
                        park = Some(retry::parked(
                            prior,
                            before + attempts,
                            now,
                            first,
                            wait,
                            match e.status {
                                Some(s) => format!("{} {s}", e.class.as_str()),
                                None => e.class.as_str().to_owned(),
                            },
                        ));
                        break Err(e);
                    }
                    tracing::debug!(target_name = %op.target, op = %op.id, attempt = before + attempts, ?wait, error = %e, "retrying");
                    Metrics::inc_target(&self.metrics.retries, &op.target);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => break Err(e),
            }
        };
        let binding_changed = run.id != bound;
        let (outcome, error) = match result {
            Ok(o) => (o, None),
            Err(e) => (Outcome::Failed(e.class), Some(e)),
        };
        if park.is_some() {
            Metrics::inc_target(&self.metrics.parked, &op.target);
        }
        ExecReport {
            outcome,
            bound_id: run.id,
            binding_changed,
            requests: run.requests,
            status: error.as_ref().and_then(|e| e.status).or(run.last_status),
            attempts: before + attempts,
            latency: start.elapsed(),
            error,
            park,
        }
    }
}

/// `1h 5m 3s`-style rendering of a duration (whole seconds).
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

/// State of one execution across attempts.
struct Run<'a> {
    exec: &'a Executor,
    op: &'a Operation,
    id: Option<String>,
    /// Whether `id` is the stored binding (so the account holds the previously planned state and the
    /// planner's minimal PATCH applies); false after a lookup or a rebind.
    trusted_binding: bool,
    manager: Option<String>,
    requests: Vec<String>,
    last_status: Option<u16>,
    /// The event's trace context, when it had a valid one.
    trace: Option<TraceParent>,
}

impl Run<'_> {
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply, CallError> {
        let bulk = self
            .exec
            .bulk
            .as_ref()
            .filter(|b| query.is_empty() && b.takes(&method));
        let r = match bulk {
            Some(bulk) => {
                self.requests.push(format!("{method} {path} (bulk)"));
                self.exec
                    .bulk_send(
                        bulk,
                        &self.op.target,
                        self.trace.as_ref(),
                        method,
                        path,
                        body,
                    )
                    .await
            }
            None => {
                self.requests.push(format!("{method} {path}"));
                self.exec
                    .send_stacked(
                        &self.op.target,
                        self.trace.as_ref(),
                        method,
                        path,
                        query,
                        body,
                    )
                    .await
            }
        };
        self.last_status = match &r {
            Ok(reply) => Some(reply.status),
            Err(e) => e.status,
        };
        r
    }

    async fn attempt(&mut self) -> Result<Outcome, CallError> {
        match self.op.kind {
            OpKind::Upsert | OpKind::Reactivate => self.converge(true).await,
            OpKind::Update => self.converge(false).await,
            OpKind::Deactivate => self.deactivate().await,
            OpKind::Delete => self.delete().await,
            OpKind::GroupAdd => self.membership(true).await,
            OpKind::GroupRemove => self.membership(false).await,
        }
    }

    /// Finds a group by `displayName` (verified, not trusting the filter), using the executor's cache.
    async fn find_group(&mut self, name: &str) -> Result<Option<String>, CallError> {
        if let Some(id) = self
            .exec
            .group_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(Some(id.clone()));
        }
        let filter = Filter::try_eq("displayName", name.to_owned())
            .map(|f| f.to_string())
            .map_err(|e| permanent(format!("cannot build a group filter: {e}")))?;
        let reply = self
            .call(
                Method::GET,
                &self.exec.groups_path,
                &[("filter", &filter)],
                None,
            )
            .await?;
        let found: Vec<String> = reply
            .body
            .as_ref()
            .and_then(|b| b.get("Resources"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|g| {
                g.get("displayName")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.eq_ignore_ascii_case(name))
            })
            .filter_map(|g| g.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [id] => {
                self.remember_group(name, id);
                Ok(Some(id.clone()))
            }
            many => Err(permanent(format!(
                "{} groups are named {name:?}; refusing to guess",
                many.len()
            ))),
        }
    }

    fn remember_group(&self, name: &str, id: &str) {
        self.exec
            .group_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), id.to_owned());
    }

    fn forget_group(&self, name: &str) {
        self.exec
            .group_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// One request for the membership of `ids` in group `name`: find the group (an add creates it
    /// with them, one find-or-create at a time per name, so concurrent first members create it
    /// once) and PATCH its members. Used for one operation and for several
    /// ([`Executor::execute_members`], which falls back to one at a time on any failure).
    async fn members(&mut self, name: &str, add: bool, ids: &[&str]) -> Result<Outcome, CallError> {
        let creation = if add {
            let lock = self
                .exec
                .group_creation
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default()
                .clone();
            Some(lock.lock_owned().await)
        } else {
            None
        };
        let found = self.find_group(name).await?;
        let values: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
        let Some(group) = found else {
            if !add {
                return Ok(Outcome::NoOp);
            }
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name,
                "members": values,
            });
            let reply = match self
                .call(
                    Method::POST,
                    &self.exec.groups_path.clone(),
                    &[],
                    Some(&body),
                )
                .await
            {
                Ok(reply) => reply,
                // Created concurrently elsewhere: retry, which finds it.
                Err(e) if e.class == ErrorClass::Conflict => {
                    return Err(CallError {
                        class: ErrorClass::Retryable,
                        retry_after: Some(Duration::ZERO),
                        ..e
                    })
                }
                Err(e) => return Err(e),
            };
            if let Some(id) = reply
                .body
                .as_ref()
                .and_then(|b| b.get("id"))
                .and_then(Value::as_str)
            {
                self.remember_group(name, id);
            }
            drop(creation);
            return Ok(Outcome::Applied);
        };
        drop(creation);
        match self.change_members(&group, add, ids).await {
            Ok(_) => Ok(Outcome::Applied),
            Err(e) => {
                if e.status == Some(404) {
                    self.forget_group(name);
                }
                Err(e)
            }
        }
    }

    /// Adds the subject's account to (or removes it from) the operation's group.
    async fn membership(&mut self, add: bool) -> Result<Outcome, CallError> {
        let name = self
            .op
            .group
            .clone()
            .ok_or_else(|| permanent("group operation without a group name".into()))?;
        let Some(user) = self.resolve().await? else {
            return if add {
                Err(CallError {
                    class: ErrorClass::Retryable,
                    status: None,
                    scim_type: None,
                    detail:
                        "the account does not exist yet; it must be created before joining a group"
                            .into(),
                    retry_after: None,
                })
            } else {
                Ok(Outcome::NoOp)
            };
        };
        match self.members(&name, add, &[user.as_str()]).await {
            Ok(o) => Ok(o),
            // The group is gone (`members` forgot it): retry, which finds or creates it again.
            Err(e) if e.status == Some(404) => Err(CallError {
                class: ErrorClass::Retryable,
                retry_after: Some(Duration::ZERO),
                ..e
            }),
            // Removing a member that is not there is already the desired state.
            Err(e) if !add && e.scim_type.as_deref() == Some("noTarget") => Ok(Outcome::NoOp),
            Err(e) => Err(e),
        }
    }

    /// A PATCH whose success the profile confirms: a 2xx not in its `patch_response` (e.g.
    /// Snowflake answers 204 when the change failed) is a retryable failure.
    async fn patch_call(&mut self, path: &str, patch: &Value) -> Result<Reply, CallError> {
        let reply = self.call(Method::PATCH, path, &[], Some(patch)).await?;
        let ok = &self.exec.patch_response;
        if !ok.is_empty() && !ok.contains(&reply.status) {
            return Err(CallError {
                class: ErrorClass::Retryable,
                status: Some(reply.status),
                scim_type: None,
                detail: format!(
                    "the target answered {} to a PATCH; its connector profile counts only {ok:?} as success",
                    reply.status
                ),
                retry_after: None,
            });
        }
        Ok(reply)
    }

    /// Whether every operation of `patch` is one the profile's `patch_operations` allows.
    fn patch_allowed(&self, patch: &Value) -> bool {
        patch["Operations"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|o| {
                o["op"].as_str().is_some_and(|op| {
                    self.exec
                        .patch_ops
                        .iter()
                        .any(|a| a.as_str().eq_ignore_ascii_case(op))
                })
            })
    }

    /// The owned attributes of the desired state (create-only ones left out) with the manager
    /// reference: what an update writes.
    fn owned_state(&self) -> Value {
        let mut owned = self.op.resource.clone();
        if let Some(o) = owned.as_object_mut() {
            for k in &self.op.create_only {
                o.remove(k);
            }
            if let Some(m) = &self.manager {
                let ext = o.entry(ENTERPRISE_USER).or_insert_with(|| json!({}));
                if let Some(ext) = ext.as_object_mut() {
                    ext.insert("manager".into(), json!({"value": m}));
                }
            }
        }
        owned
    }

    /// Updates account `id`: with `patch` — or, when it uses an operation the profile does not
    /// allow, a replace of every attribute of `overlay` — or, for a profile that updates with PUT,
    /// the account as read with `overlay` applied.
    async fn update_user(
        &mut self,
        id: &str,
        patch: Value,
        overlay: Value,
    ) -> Result<Reply, CallError> {
        if self.exec.update_put {
            return self.put_user(id, &overlay).await;
        }
        let patch = if self.patch_allowed(&patch) {
            patch
        } else {
            replace_patch(&overlay)
        };
        self.patch_call(&format!("{}/{id}", self.exec.users_path), &patch)
            .await
    }

    /// `GET` the account, apply `overlay` (top-level attributes replaced; extension objects merged
    /// attribute by attribute; `schemas` kept and extended), `PUT` it back (RFC 7644 §3.5.1: a
    /// PUT replaces the whole resource, so attributes this mapping does not own are sent back as
    /// read).
    async fn put_user(&mut self, id: &str, overlay: &Value) -> Result<Reply, CallError> {
        let path = format!("{}/{id}", self.exec.users_path);
        let current = self.call(Method::GET, &path, &[], None).await?;
        let mut body = current
            .body
            .filter(Value::is_object)
            .ok_or_else(|| CallError {
                class: ErrorClass::Retryable,
                status: Some(current.status),
                scim_type: None,
                detail: "the target answered a GET of the account without a resource".into(),
                retry_after: None,
            })?;
        let o = body.as_object_mut().expect("checked");
        o.remove("meta");
        for (k, v) in overlay.as_object().into_iter().flatten() {
            match (k.as_str(), v) {
                ("schemas", Value::Array(add)) => {
                    let schemas = o.entry("schemas").or_insert_with(|| json!([]));
                    if let Some(list) = schemas.as_array_mut() {
                        for s in add {
                            if !list.contains(s) {
                                list.push(s.clone());
                            }
                        }
                    }
                }
                (k, Value::Object(sub)) if k.starts_with("urn:") => {
                    let ext = o.entry(k).or_insert_with(|| json!({}));
                    match ext.as_object_mut() {
                        Some(e) => {
                            for (sk, sv) in sub {
                                e.insert(sk.clone(), sv.clone());
                            }
                        }
                        None => *ext = v.clone(),
                    }
                }
                (k, v) => {
                    o.insert(k.to_owned(), v.clone());
                }
            }
        }
        self.call(Method::PUT, &path, &[], Some(&body)).await
    }

    /// Adds `ids` to (or removes them from) group `group`: a PATCH `add`/`remove` of `members` —
    /// or, where the profile allows neither of those operations but lets `members` be replaced,
    /// the group's members as read, changed, written back with one `replace`.
    async fn change_members(
        &mut self,
        group: &str,
        add: bool,
        ids: &[&str],
    ) -> Result<Reply, CallError> {
        let path = format!("{}/{group}", self.exec.groups_path);
        let wanted = if add {
            PatchOperation::Add
        } else {
            PatchOperation::Remove
        };
        let operations: Vec<Value> = if self.exec.patch_ops.contains(&wanted) {
            if add {
                let values: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
                vec![json!({"op": "add", "path": "members", "value": values})]
            } else {
                ids.iter()
                    .map(
                        |id| json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}),
                    )
                    .collect()
            }
        } else if self.exec.replace_members
            && self.exec.patch_ops.contains(&PatchOperation::Replace)
        {
            let current = self.call(Method::GET, &path, &[], None).await?;
            let mut members: Vec<String> = current
                .body
                .as_ref()
                .and_then(|b| b.get("members"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_owned))
                .collect();
            if add {
                for id in ids {
                    if !members.iter().any(|m| m == id) {
                        members.push((*id).to_owned());
                    }
                }
            } else {
                members.retain(|m| !ids.contains(&m.as_str()));
            }
            let values: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
            vec![json!({"op": "replace", "path": "members", "value": values})]
        } else {
            return Err(permanent(format!(
                "the target's connector profile allows no PATCH `{}` and no replacing of members: group membership cannot be changed",
                wanted.as_str()
            )));
        };
        let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
        self.patch_call(&path, &patch).await
    }

    /// Finds (or re-finds) the account; binds it when found.
    async fn resolve(&mut self) -> Result<Option<String>, CallError> {
        if self.id.is_some() {
            return Ok(self.id.clone());
        }
        self.id = self.lookup().await?;
        Ok(self.id.clone())
    }

    /// Looks the account up by the matching attributes: with one `or` filter when there are several
    /// (one request instead of one per attribute), falling back to one lookup per attribute, in
    /// precedence order, when the target refuses the `or` (400; remembered for the target) or when
    /// `per_key` is set (after a 409, so a target that mishandles `or` cannot hide the account).
    async fn lookup(&mut self) -> Result<Option<String>, CallError> {
        self.lookup_with(false).await
    }

    async fn lookup_with(&mut self, per_key: bool) -> Result<Option<String>, CallError> {
        let keys = self.op.matching.clone();
        if keys.len() > 1 && !per_key && self.exec.or_lookups.load(Ordering::Relaxed) {
            let mut combined: Option<Filter> = None;
            for key in &keys {
                let f = lookup_filter(key)?;
                combined = Some(match combined {
                    None => f,
                    Some(c) => c.or(f),
                });
            }
            let filter = combined.expect("at least two keys").to_string();
            match self
                .call(
                    Method::GET,
                    &self.exec.users_path,
                    &[("filter", &filter)],
                    None,
                )
                .await
            {
                Ok(reply) => {
                    let resources = resources_of(&reply);
                    for key in &keys {
                        if let Some(found) = pick_match(&resources, key, reply.status)? {
                            return Ok(Some(found));
                        }
                    }
                    return Ok(None);
                }
                Err(e) if e.status == Some(400) => {
                    tracing::info!(target_name = %self.op.target, "target refused an `or` lookup filter; looking up one attribute at a time from now on");
                    self.exec.or_lookups.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        for key in keys {
            let filter = lookup_filter(&key)?.to_string();
            let reply = match self
                .call(
                    Method::GET,
                    &self.exec.users_path,
                    &[("filter", &filter)],
                    None,
                )
                .await
            {
                Ok(r) => r,
                // The target cannot filter on this attribute: try the next one.
                Err(e) if e.status == Some(400) => continue,
                Err(e) => return Err(e),
            };
            if let Some(found) = pick_match(&resources_of(&reply), &key, reply.status)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Makes the account exist (if `create`) with the desired attributes.
    async fn converge(&mut self, create: bool) -> Result<Outcome, CallError> {
        let Some(id) = self.resolve().await? else {
            if !create {
                return Ok(Outcome::NoOp);
            }
            return self.create().await;
        };
        let patch = self.update_patch();
        if patch["Operations"].as_array().is_none_or(Vec::is_empty) {
            return Ok(Outcome::NoOp);
        }
        let overlay = self.owned_state();
        match self.update_user(&id, patch, overlay).await {
            Ok(_) => Ok(Outcome::Applied),
            Err(e) if e.status == Some(404) => {
                // The bound account is gone: forget it, look up again next attempt (or create now).
                self.id = None;
                self.trusted_binding = false;
                match self.resolve().await? {
                    Some(_) => Err(CallError {
                        class: ErrorClass::Retryable,
                        status: Some(404),
                        scim_type: None,
                        detail: "bound account was gone; rebound by lookup".into(),
                        retry_after: Some(Duration::ZERO),
                    }),
                    None if create => self.create().await,
                    None => Ok(Outcome::NoOp),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The PATCH that brings an existing account to the desired state: the planner's minimal PATCH
    /// when the account is known to hold the previous state, otherwise a replace of every owned
    /// attribute; create-only attributes are never sent; the manager reference is added.
    fn update_patch(&self) -> Value {
        let mut patch = match (&self.op.patch, self.trusted_binding) {
            (Some(p), true) => p.clone(),
            _ => {
                let mut owned = self.op.resource.clone();
                if let Some(o) = owned.as_object_mut() {
                    for k in &self.op.create_only {
                        o.remove(k);
                    }
                }
                replace_patch(&owned)
            }
        };
        if let (Some(m), Some(ops)) = (&self.manager, patch["Operations"].as_array_mut()) {
            ops.push(json!({"op": "replace", "path": format!("{ENTERPRISE_USER}:manager"), "value": {"value": m}}));
        }
        patch
    }

    /// The create body: the desired resource plus the manager reference.
    fn create_body(&self) -> Value {
        let mut body = self.op.resource.clone();
        if let (Some(m), Some(o)) = (&self.manager, body.as_object_mut()) {
            let ext = o.entry(ENTERPRISE_USER).or_insert_with(|| json!({}));
            if let Some(ext) = ext.as_object_mut() {
                ext.insert("manager".into(), json!({"value": m}));
            }
            if let Some(Value::Array(schemas)) = o.get_mut("schemas") {
                if !schemas.iter().any(|s| s == ENTERPRISE_USER) {
                    schemas.push(json!(ENTERPRISE_USER));
                }
            }
        }
        body
    }

    async fn create(&mut self) -> Result<Outcome, CallError> {
        let body = self.create_body();
        match self
            .call(
                Method::POST,
                &self.exec.users_path.clone(),
                &[],
                Some(&body),
            )
            .await
        {
            Ok(reply) => {
                let id = reply
                    .body
                    .as_ref()
                    .and_then(|b| b.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| {
                        reply
                            .location
                            .as_deref()
                            .and_then(|l| l.rsplit('/').next())
                            .map(str::to_owned)
                    });
                match id {
                    Some(id) => {
                        self.id = Some(id);
                        Ok(Outcome::Applied)
                    }
                    // Created, but we could not read the id: find it by lookup on the next attempt.
                    None => Err(CallError {
                        class: ErrorClass::Retryable,
                        status: Some(reply.status),
                        scim_type: None,
                        detail: "create succeeded but the response carried no id; looking it up"
                            .into(),
                        retry_after: Some(Duration::ZERO),
                    }),
                }
            }
            Err(e) if e.class == ErrorClass::Conflict => {
                // Already exists: bind by lookup (one attribute at a time, so a target that
                // mishandles `or` cannot hide the account), then converge it.
                match self.lookup_with(true).await? {
                    Some(id) => {
                        self.id = Some(id.clone());
                        let patch = self.update_patch();
                        let overlay = self.owned_state();
                        self.update_user(&id, patch, overlay).await?;
                        Ok(Outcome::Applied)
                    }
                    // Someone else holds a unique value: try the mapping's candidates in order.
                    None if !self.op.alternatives.is_empty() => {
                        self.create_with_alternatives(e).await
                    }
                    None => Err(CallError {
                        detail: format!(
                            "{} (and no account matches the matching attributes)",
                            e.detail
                        ),
                        class: ErrorClass::Permanent,
                        ..e
                    }),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Retries the create with each fallback value (e.g. `userName` candidates) until one is accepted.
    async fn create_with_alternatives(&mut self, first: CallError) -> Result<Outcome, CallError> {
        let mut last = first;
        for (attr, values) in &self.op.alternatives {
            for v in values {
                let mut body = self.create_body();
                if let Some(o) = body.as_object_mut() {
                    o.insert(attr.clone(), v.clone());
                }
                match self
                    .call(
                        Method::POST,
                        &self.exec.users_path.clone(),
                        &[],
                        Some(&body),
                    )
                    .await
                {
                    Ok(reply) => {
                        let id = reply
                            .body
                            .as_ref()
                            .and_then(|b| b.get("id"))
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        return match id {
                            Some(id) => {
                                self.id = Some(id);
                                Ok(Outcome::Applied)
                            }
                            None => Err(CallError {
                                class: ErrorClass::Permanent,
                                status: Some(reply.status),
                                scim_type: None,
                                detail: format!("created with an alternative `{attr}` but the response carried no id"),
                                retry_after: None,
                            }),
                        };
                    }
                    Err(e) if e.class == ErrorClass::Conflict => last = e,
                    Err(e) => return Err(e),
                }
            }
        }
        Err(CallError {
            class: ErrorClass::Permanent,
            detail: format!("{} (every candidate value is taken)", last.detail),
            ..last
        })
    }

    async fn deactivate(&mut self) -> Result<Outcome, CallError> {
        let Some(id) = self.resolve().await? else {
            return Ok(Outcome::NoOp);
        };
        let d = &self.exec.deactivation;
        let patch = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": d.path, "value": d.value}]
        });
        let overlay = json!({ d.path.clone(): d.value.clone() });
        let put = d.method == DeactivateMethod::Put;
        let r = if put {
            self.put_user(&id, &overlay).await
        } else {
            self.patch_call(&format!("{}/{id}", self.exec.users_path), &patch)
                .await
        };
        match r {
            Ok(_) => Ok(Outcome::Applied),
            Err(e) if e.status == Some(404) => {
                self.id = None;
                Ok(Outcome::NoOp)
            }
            Err(e) => Err(e),
        }
    }

    async fn delete(&mut self) -> Result<Outcome, CallError> {
        let Some(id) = self.resolve().await? else {
            return Ok(Outcome::NoOp);
        };
        match self
            .call(
                Method::DELETE,
                &format!("{}/{id}", self.exec.users_path),
                &[],
                None,
            )
            .await
        {
            Ok(_) => {
                self.id = None;
                Ok(Outcome::Applied)
            }
            Err(e) if e.status == Some(404) => {
                self.id = None;
                Ok(Outcome::NoOp)
            }
            Err(e) => Err(e),
        }
    }
}

fn permanent(detail: String) -> CallError {
    CallError {
        class: ErrorClass::Permanent,
        status: None,
        scim_type: None,
        detail,
        retry_after: None,
    }
}

/// URN of the enterprise User extension (holds `manager`).
const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The `attr eq "value"` filter of one matching key.
fn lookup_filter(key: &MatchKey) -> Result<Filter, CallError> {
    Filter::try_eq(&key.attribute, key.value.clone()).map_err(|e| CallError {
        class: ErrorClass::Permanent,
        status: None,
        scim_type: None,
        detail: format!("cannot build a lookup filter on `{}`: {e}", key.attribute),
        retry_after: None,
    })
}

/// The `Resources` of a list response (none when absent).
fn resources_of(reply: &Reply) -> Vec<Value> {
    reply
        .body
        .as_ref()
        .and_then(|b| b.get("Resources"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The id of the one resource that really has `key`'s value; `None` when none has; an error
/// when several have (never guess) or the match has no id.
fn pick_match(
    resources: &[Value],
    key: &MatchKey,
    status: u16,
) -> Result<Option<String>, CallError> {
    let matches: Vec<&Value> = resources
        .iter()
        .filter(|r| really_matches(r, key))
        .collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => match one.get("id").and_then(Value::as_str) {
            Some(id) => Ok(Some(id.to_owned())),
            None => Err(CallError {
                class: ErrorClass::Permanent,
                status: Some(status),
                scim_type: None,
                detail: "target returned a matching account without an id".into(),
                retry_after: None,
            }),
        },
        many => Err(CallError {
            class: ErrorClass::Permanent,
            status: Some(status),
            scim_type: None,
            detail: format!(
                "{} accounts match {}; refusing to guess",
                many.len(),
                key.attribute
            ),
            retry_after: None,
        }),
    }
}

/// Whether `resource` really has the matching value (the target's filter is not trusted).
fn really_matches(resource: &Value, key: &MatchKey) -> bool {
    let Some(v) = resource.get(&key.attribute).and_then(Value::as_str) else {
        return false;
    };
    if key.case_exact {
        v == key.value
    } else {
        v.to_lowercase() == key.value.to_lowercase()
    }
}

/// A PATCH that replaces every attribute the mapping owns (idempotent).
pub fn replace_patch(resource: &Value) -> Value {
    let ops: Vec<Value> = resource
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "schemas" | "id" | "meta"))
        .flat_map(|(k, v)| match v {
            // Extension schemas are addressed attribute by attribute (`urn:…:User:department`).
            Value::Object(sub) if k.starts_with("urn:") => sub
                .iter()
                .map(|(sk, sv)| json!({"op": "replace", "path": format!("{k}:{sk}"), "value": sv}))
                .collect::<Vec<_>>(),
            _ => vec![json!({"op": "replace", "path": k, "value": v})],
        })
        .collect();
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// Shared handle type used by pools.
pub type SharedExecutor = Arc<Executor>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_respects_case_rules() {
        let r = json!({"userName": "Ada@Example.com", "externalId": "E1"});
        let k = |a: &str, v: &str, c| MatchKey {
            attribute: a.into(),
            value: v.into(),
            case_exact: c,
        };
        assert!(really_matches(&r, &k("userName", "ada@example.com", false)));
        assert!(!really_matches(&r, &k("externalId", "e1", true)));
        assert!(really_matches(&r, &k("externalId", "E1", true)));
        assert!(!really_matches(
            &json!({"userName": "x"}),
            &k("externalId", "E1", true)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_members_of_a_new_group_create_it_once() {
        use scimflow_testkit::{ServerOptions, TestServer};
        // Like scim2-server: a second group of the same name is accepted, so only the executor can
        // keep the racing members from creating one each.
        let server = TestServer::start(ServerOptions {
            token: String::new(),
            allow_duplicate_group_names: true,
            ..ServerOptions::default()
        })
        .await;
        let yaml = format!(
            "version: 1\ntargets:\n  app:\n    base_url: {}\n    allow_http: true\n    concurrency: 8\n    \
             lifecycle:\n      hr.worker.hired: upsert\n    matching: [externalId]\n    user:\n      \
             externalId: event.subject\n      userName: event.subject\n",
            server.base_url()
        );
        let cfg = scimflow_config::load_str(&yaml, "c.yaml", &|_| None).unwrap();
        let exec = Arc::new(Executor::new(&cfg.targets[0]).unwrap());
        let ids: Vec<String> = (0..8)
            .map(|i| {
                let u = server.insert_user(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("u{i}"),
                    "externalId": format!("E{i}"),
                }));
                u["id"].as_str().unwrap().to_owned()
            })
            .collect();
        let runs = ids.iter().enumerate().map(|(i, id)| {
            let exec = exec.clone();
            let op = Operation {
                id: format!("e{i}@app#+dept-x"),
                target: "app".into(),
                subject: format!("E{i}"),
                event_id: format!("e{i}"),
                event_kind: "hr.worker.hired".into(),
                event_time: None,
                planned_at: chrono::Utc::now(),
                kind: OpKind::GroupAdd,
                resource: json!({}),
                matching: Vec::new(),
                mapping_version: String::new(),
                traceparent: None,
                group: Some("dept-x".into()),
                create_only: Vec::new(),
                patch: None,
                manager_subject: None,
                alternatives: Default::default(),
                origin: None,
                retry: None,
            };
            let id = id.clone();
            async move { exec.execute(&op, Some(id), None).await }
        });
        let reports = futures::future::join_all(runs).await;
        assert!(
            reports.iter().all(|r| r.outcome == Outcome::Applied),
            "{reports:#?}"
        );
        let groups = server.groups();
        assert_eq!(
            groups.len(),
            1,
            "one group, not one per racing member: {groups:#?}"
        );
        let members = groups[0]["members"].as_array().unwrap();
        assert_eq!(members.len(), 8, "{groups:#?}");
    }
}
