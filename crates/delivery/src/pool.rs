//! One worker pool per target: per-subject lanes over the target's durable queue.
//!
//! The dispatcher keeps at most `window` queued operations in memory (the rest stay on disk), groups
//! them into lanes by subject, and runs the head of each lane — one operation per subject at a time,
//! so one person's operations apply strictly in order while different people run concurrently.
//! An operation leaves the queue only in the same atomic batch that records its terminal audit record
//! (and binding or dead letter), so a crash at any point either redoes it (idempotently) or has it
//! recorded exactly once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use scimflow_core::partition::{Disposition, PartitionLedger};
use scimflow_core::store::{DeadLetter, Mutation, Store};
use scimflow_core::{AuditEntry, OpKind, Operation, Outcome, QueuedOp, ScheduledOp};
use scimflow_telemetry::metrics::{status_class, Metrics, OperationLabels, ProvisionLabels};

use crate::exec::{ExecReport, Executor};
use crate::guard::{self, Admission, DeletionGuard, STAGED_SLOT};

/// Counters a pool exposes (for the admin API and metrics).
#[derive(Debug, Default)]
pub struct PoolStats {
    pub applied: AtomicU64,
    pub noop: AtomicU64,
    pub failed: AtomicU64,
    /// Operations removed without delivery because their source partition moved to another
    /// instance, which processed their events.
    pub handed_over: AtomicU64,
    /// Set when the pool stopped because of an error (not at shutdown); readiness fails then.
    pub stopped_on_error: AtomicBool,
    /// Set by an operator: no new operation starts (in-flight ones finish); work keeps queueing.
    pub paused: AtomicBool,
    /// Deprovisionings the deletion guard staged since the start.
    pub staged: AtomicU64,
}

/// The handle the rest of the daemon holds for a pool.
#[derive(Clone)]
pub struct PoolHandle {
    pub target: String,
    wake: Arc<Notify>,
    pub stats: Arc<PoolStats>,
    /// The target's deletion guard, when configured.
    pub guard: Option<Arc<DeletionGuard>>,
    /// The target's circuit breaker, when configured.
    pub breaker: Option<Arc<crate::breaker::Breaker>>,
}

impl PoolHandle {
    /// Tells the pool new operations were queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops starting operations (those in flight finish); returns whether it was running.
    pub fn pause(&self) -> bool {
        !self.stats.paused.swap(true, Ordering::SeqCst)
    }

    /// Starts operations again; returns whether it was paused.
    pub fn resume(&self) -> bool {
        let was = self.stats.paused.swap(false, Ordering::SeqCst);
        self.wake();
        was
    }
}

/// A target's dispatcher.
pub struct TargetPool {
    target: String,
    store: Arc<dyn Store>,
    exec: Arc<Executor>,
    wake: Arc<Notify>,
    stats: Arc<PoolStats>,
    window: usize,
    max_lanes: usize,
    ledger: Option<Arc<PartitionLedger>>,
    guard: Option<Arc<DeletionGuard>>,
}

impl TargetPool {
    pub fn new(target: &str, store: Arc<dyn Store>, exec: Executor, concurrency: usize) -> Self {
        TargetPool {
            target: target.to_owned(),
            store,
            exec: Arc::new(exec),
            wake: Arc::new(Notify::new()),
            stats: Arc::new(PoolStats::default()),
            window: 4096,
            // Lanes waiting in backoff or on their outcome's durable commit hold no HTTP permit,
            // so allow more lanes than permits. (16 × was measured too: no clear throughput gain,
            // and a burst of people then rarely shares membership PATCHes.)
            max_lanes: concurrency * 4,
            ledger: None,
            guard: None,
        }
    }

    /// Stages deactivations and deletions above the guard's limits instead of sending them.
    pub fn with_guard(mut self, guard: Arc<DeletionGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Delivers operations from a partitioned source only while their partition is owned here
    /// (see [`PartitionLedger::disposition`]), and reports each finished one to the ledger.
    pub fn with_ledger(mut self, ledger: Arc<PartitionLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    pub fn handle(&self) -> PoolHandle {
        PoolHandle {
            target: self.target.clone(),
            wake: self.wake.clone(),
            stats: self.stats.clone(),
            guard: self.guard.clone(),
            breaker: self.exec.breaker().cloned(),
        }
    }

    /// Runs until `shutdown`; then lets in-flight operations finish for up to `drain`. Whatever did
    /// not finish stays in the durable queue for the next start.
    pub async fn run(self, shutdown: CancellationToken, drain: Duration) {
        let mut cursor: Option<u64> = None;
        let mut loaded = 0usize;
        let mut lanes: HashMap<String, VecDeque<QueuedOp>> = HashMap::new();
        let mut order: VecDeque<String> = VecDeque::new();
        let mut busy: HashSet<String> = HashSet::new();
        // Lanes whose head belongs to a partition not owned here (re-checked every round).
        let mut held: Vec<String> = Vec::new();
        // A task ends with, per lane it ran, the subject and either the parked head or how many
        // operations finished.
        let mut tasks: JoinSet<Result<Vec<LaneDone>, String>> = JoinSet::new();
        // Lanes whose head is parked, by next try (the head stays in its lane meanwhile).
        let mut parked: Vec<(chrono::DateTime<Utc>, String)> = Vec::new();
        let mut seen_recoveries = self.exec.recoveries();
        loop {
            // Refill the in-memory window from the durable queue.
            if loaded < self.window {
                match self
                    .store
                    .queue_scan(&self.target, cursor, self.window - loaded)
                {
                    Ok(items) => {
                        for q in items {
                            cursor = Some(q.seq);
                            loaded += 1;
                            let lane = lanes.entry(q.op.subject.clone()).or_default();
                            if lane.is_empty() && !busy.contains(&q.op.subject) {
                                order.push_back(q.op.subject.clone());
                            }
                            lane.push_back(q);
                        }
                    }
                    Err(e) => {
                        tracing::error!(target_name = %self.target, error = %e, "cannot read the queue; pool stops");
                        self.stats.stopped_on_error.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            }
            // The target answered again after failures: parked heads need not wait out their
            // backoff (the rate limit, adaptive concurrency and breaker pace them).
            let recoveries = self.exec.recoveries();
            if recoveries != seen_recoveries {
                seen_recoveries = recoveries;
                if !parked.is_empty() {
                    tracing::info!(target_name = %self.target, parked = parked.len(), "the target answers again; parked operations are tried now");
                }
                let now = Utc::now();
                for (due, subject) in &mut parked {
                    *due = now;
                    if let Some(r) = lanes
                        .get_mut(subject.as_str())
                        .and_then(|l| l.front_mut())
                        .and_then(|h| h.op.retry.as_mut())
                    {
                        r.next_try = now;
                    }
                }
            }
            // Lanes whose parked head is due go back in line.
            let now = Utc::now();
            parked.retain(|(due, subject)| {
                let keep = *due > now;
                if !keep {
                    order.push_back(subject.clone());
                }
                keep
            });
            // Start the head of every idle lane, up to the lane limit (none while paused).
            order.extend(held.drain(..));
            while busy.len() < self.max_lanes && !self.stats.paused.load(Ordering::SeqCst) {
                let Some(subject) = order.pop_front() else {
                    break;
                };
                let Some(q) = lanes.get(&subject).and_then(|l| l.front()).cloned() else {
                    continue;
                };
                // Loaded parked from the queue (e.g. after a restart): wait for its next try.
                if let Some(due) = q.op.retry.as_ref().map(|r| r.next_try).filter(|d| *d > now) {
                    parked.push((due, subject));
                    continue;
                }
                let disposition = match (&self.ledger, &q.op.origin) {
                    (Some(ledger), Some(pos)) => ledger.start(pos),
                    _ => Disposition::Deliver,
                };
                if disposition == Disposition::Hold {
                    held.push(subject);
                    continue;
                }
                // Queued attribute updates behind the head go out with it, as one request.
                let mut run = vec![q.clone()];
                if disposition == Disposition::Deliver && coalescible(&q.op) {
                    for f in lanes[&subject].iter().skip(1).take(MAX_COALESCE - 1) {
                        if !coalescible(&f.op) || f.op.retry.is_some() {
                            break;
                        }
                        if let (Some(ledger), Some(pos)) = (&self.ledger, &f.op.origin) {
                            if ledger.start(pos) != Disposition::Deliver {
                                break;
                            }
                        }
                        run.push(f.clone());
                    }
                }
                // Other idle lanes whose head changes the same group's membership the same way go
                // out with this one as one PATCH (at most the profile's member changes per request).
                let mut members = Vec::new();
                if disposition == Disposition::Deliver
                    && is_membership(&q.op)
                    && q.op.retry.is_none()
                {
                    let limit = self.exec.member_changes_per_request();
                    let mut i = 0;
                    while i < order.len() && members.len() + 1 < limit {
                        let other = &order[i];
                        let fits = other != &subject
                            && !busy.contains(other)
                            && lanes.get(other).and_then(|l| l.front()).is_some_and(|h| {
                                h.op.kind == q.op.kind
                                    && h.op.group == q.op.group
                                    && h.op.retry.is_none()
                            });
                        if fits {
                            let head = lanes[other].front().cloned().expect("checked");
                            let ok = match (&self.ledger, &head.op.origin) {
                                (Some(ledger), Some(pos)) => {
                                    ledger.start(pos) == Disposition::Deliver
                                }
                                _ => true,
                            };
                            if ok {
                                let other = order.remove(i).expect("in range");
                                busy.insert(other);
                                members.push(head);
                                continue;
                            }
                        }
                        i += 1;
                    }
                }
                busy.insert(subject.clone());
                let (store, exec, stats, ledger, guard) = (
                    self.store.clone(),
                    self.exec.clone(),
                    self.stats.clone(),
                    self.ledger.clone(),
                    self.guard.clone(),
                );
                if !members.is_empty() {
                    members.insert(0, q);
                    tasks.spawn(run_members(store, exec, stats, ledger, members));
                    continue;
                }
                tasks.spawn(async move {
                    let r = if disposition == Disposition::HandOver {
                        hand_over(store, exec.metrics(), stats, &q)
                            .await
                            .map(|()| None)
                    } else {
                        let r = run_one(store, exec, stats, guard.as_deref(), &run).await;
                        for q in &run {
                            if let (Some(ledger), Some(pos)) = (&ledger, &q.op.origin) {
                                ledger.finish(pos);
                            }
                        }
                        r
                    };
                    if matches!(r, Ok(None)) {
                        for q in &run {
                            if let (Some(ledger), Some(pos)) = (&ledger, &q.op.origin) {
                                ledger.closed(pos);
                            }
                        }
                    }
                    r.map(|parked| {
                        let finished = if parked.is_some() { 0 } else { run.len() };
                        vec![LaneDone {
                            subject,
                            parked,
                            finished,
                        }]
                    })
                });
            }
            tokio::select! {
                Some(done) = tasks.join_next() => {
                    match done {
                        Ok(Ok(done)) => {
                            for LaneDone { subject, parked: requeued, finished } in done {
                                busy.remove(&subject);
                                if let Some(requeued) = requeued {
                                    // Parked: the lane keeps its (updated) head and waits for
                                    // the next try.
                                    let due = requeued.op.retry.as_ref().map_or(Utc::now(), |r| r.next_try);
                                    if let Some(head) = lanes.get_mut(&subject).and_then(|l| l.front_mut()) {
                                        *head = requeued;
                                    }
                                    parked.push((due, subject));
                                    continue;
                                }
                                loaded -= finished;
                                let lane = lanes.get_mut(&subject).expect("lane of a running op");
                                lane.drain(..finished.min(lane.len()));
                                if lane.is_empty() {
                                    lanes.remove(&subject);
                                } else {
                                    order.push_back(subject);
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::error!(target_name = %self.target, error = %e, "cannot record an outcome; pool stops");
                            self.stats.stopped_on_error.store(true, Ordering::SeqCst);
                        break;
                        }
                        Err(e) => {
                            tracing::error!(target_name = %self.target, error = %e, "worker task failed; pool stops");
                            self.stats.stopped_on_error.store(true, Ordering::SeqCst);
                        break;
                        }
                    }
                }
                _ = self.wake.notified() => {}
                _ = next_due(&parked) => {}
                // Safety net: re-scan periodically even without a wake-up.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if !tasks.is_empty() {
            tracing::info!(target_name = %self.target, in_flight = tasks.len(), "draining in-flight operations");
            let _ =
                tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
                    .await;
            tasks.abort_all();
        }
    }
}

/// What a task did with one lane.
struct LaneDone {
    subject: String,
    /// The head, parked with its retry state (nothing finished).
    parked: Option<QueuedOp>,
    /// How many operations from the lane's front finished.
    finished: usize,
}

fn is_membership(op: &Operation) -> bool {
    matches!(op.kind, OpKind::GroupAdd | OpKind::GroupRemove)
}

/// Runs the heads of several lanes that change one group's membership the same way: one PATCH
/// for all whose account is bound ([`Executor::execute_members`]), each of the others (or all, if
/// the shared request fails) on its own as usual.
async fn run_members(
    store: Arc<dyn Store>,
    exec: Arc<Executor>,
    stats: Arc<PoolStats>,
    ledger: Option<Arc<PartitionLedger>>,
    heads: Vec<QueuedOp>,
) -> Result<Vec<LaneDone>, String> {
    let mut bound = Vec::with_capacity(heads.len());
    for q in &heads {
        bound.push(
            store
                .binding(&q.op.target, &q.op.subject)
                .map_err(|e| e.to_string())?,
        );
    }
    let pairs: Vec<(&Operation, Option<String>)> = heads.iter().map(|q| &q.op).zip(bound).collect();
    let span = tracing::info_span!(
        "deliver",
        target_name = %heads[0].op.target,
        op = %heads[0].op.id,
        members = heads.len(),
    );
    let reports = exec.execute_members(&pairs).instrument(span).await;
    let shared = reports.iter().filter(|r| r.is_some()).count();
    let mut batch = Vec::new();
    let mut done = Vec::with_capacity(heads.len());
    let mut alone = Vec::new();
    for (q, report) in heads.iter().zip(reports) {
        match report {
            Some(r) => {
                let mut b = outcome_batch(q, &r);
                for m in &mut b {
                    if let Mutation::Audit(a) = m {
                        a.detail = Some(format!(
                            "shared: {shared} membership changes of this group went out in one request"
                        ));
                    }
                }
                batch.extend(b);
                match &r.outcome {
                    Outcome::Applied => stats.applied.fetch_add(1, Ordering::Relaxed),
                    Outcome::NoOp => stats.noop.fetch_add(1, Ordering::Relaxed),
                    Outcome::Failed(_) => stats.failed.fetch_add(1, Ordering::Relaxed),
                };
                record_metrics(exec.metrics(), &q.op, &r);
                done.push(LaneDone {
                    subject: q.op.subject.clone(),
                    parked: None,
                    finished: 1,
                });
            }
            None => alone.push(q.clone()),
        }
    }
    let commit = if batch.is_empty() {
        Ok(())
    } else {
        store
            .commit(batch)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let singles = futures::future::join_all(alone.iter().map(|q| {
        run_one(
            store.clone(),
            exec.clone(),
            stats.clone(),
            None,
            std::slice::from_ref(q),
        )
    }))
    .await;
    let mut failed = commit.err();
    for (q, r) in alone.iter().zip(singles) {
        match r {
            Ok(parked) => done.push(LaneDone {
                subject: q.op.subject.clone(),
                finished: usize::from(parked.is_none()),
                parked,
            }),
            Err(e) => failed = Some(e),
        }
    }
    for q in &heads {
        if let (Some(ledger), Some(pos)) = (&ledger, &q.op.origin) {
            ledger.finish(pos);
            if failed.is_none()
                && done
                    .iter()
                    .any(|d| d.subject == q.op.subject && d.finished > 0)
            {
                ledger.closed(pos);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// Executes one queued operation and durably records its outcome.
async fn run_one(
    store: Arc<dyn Store>,
    exec: Arc<Executor>,
    stats: Arc<PoolStats>,
    guard: Option<&DeletionGuard>,
    run: &[QueuedOp],
) -> Result<Option<QueuedOp>, String> {
    let q = &run[0];
    let merged = (run.len() > 1).then(|| coalesce(run));
    let op = merged.as_ref().unwrap_or(&q.op);
    if let (Some(g), true) = (guard, op.kind.is_deprovision()) {
        if let Admission::Stage(why) = g
            .admit(store.as_ref(), &op.target, &op.id)
            .map_err(|e| e.to_string())?
        {
            tracing::warn!(target_name = %op.target, op = %op.id, reason = %why, "deprovisioning staged for approval");
            let batch = vec![
                Mutation::Dequeue {
                    target: op.target.clone(),
                    seq: q.seq,
                },
                Mutation::Audit(AuditEntry {
                    event_id: op.event_id.clone(),
                    subject: op.subject.clone(),
                    target: op.target.clone(),
                    op_id: op.id.clone(),
                    operation: op.kind.as_str().to_owned(),
                    detail: Some(why),
                    trace_id: op.traceparent.as_deref().and_then(trace_id),
                    ..AuditEntry::note("staged", &op.mapping_version)
                }),
                Mutation::Schedule(ScheduledOp {
                    due: guard::never(),
                    slot: STAGED_SLOT.to_owned(),
                    op: op.clone(),
                }),
            ];
            store.commit(batch).await.map_err(|e| e.to_string())?;
            stats.staged.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
    }
    let bound = store
        .binding(&op.target, &op.subject)
        .map_err(|e| e.to_string())?;
    let manager = match &op.manager_subject {
        Some(m) => store.binding(&op.target, m).map_err(|e| e.to_string())?,
        None => None,
    };
    // One span per delivery, in the event's trace (the trace id of its `traceparent`).
    let span = tracing::info_span!(
        "deliver",
        target_name = %op.target,
        op = %op.id,
        event_id = %op.event_id,
        trace_id = op.traceparent.as_deref().and_then(trace_id).as_deref(),
    );
    scimflow_telemetry::otlp::set_parent(&span, op.traceparent.as_deref());
    let report = exec.execute(op, bound, manager).instrument(span).await;
    if let Some(state) = &report.park {
        // Not finished: keep it in the queue, in place, with its retry state (and any binding
        // learned on the way); no terminal audit record yet.
        if let Some(e) = &report.error {
            tracing::info!(target_name = %op.target, op = %op.id, attempts = state.attempts, next_try = %state.next_try, class = e.class.as_str(), status = ?e.status, error = %e, "operation parked until its next try");
        }
        let mut requeued = q.clone();
        requeued.op.retry = Some(state.clone());
        let mut batch = vec![Mutation::Requeue {
            seq: q.seq,
            op: requeued.op.clone(),
        }];
        if report.binding_changed {
            batch.push(binding_mutation(op, report.bound_id.as_deref()));
        }
        store.commit(batch).await.map_err(|e| e.to_string())?;
        return Ok(Some(requeued));
    }
    // One terminal record per operation, all in one batch; coalesced ones say so.
    let mut batch = Vec::with_capacity(run.len() * 2);
    for q in run {
        let mut b = outcome_batch(q, &report);
        if run.len() > 1 {
            for m in &mut b {
                if let Mutation::Audit(a) = m {
                    let note = format!(
                        "coalesced: {} queued updates of this subject went out as one request",
                        run.len()
                    );
                    a.detail = Some(match a.detail.take() {
                        Some(d) => format!("{d} ({note})"),
                        None => note,
                    });
                }
            }
        }
        batch.extend(b);
        match &report.outcome {
            Outcome::Applied => stats.applied.fetch_add(1, Ordering::Relaxed),
            Outcome::NoOp => stats.noop.fetch_add(1, Ordering::Relaxed),
            Outcome::Failed(_) => stats.failed.fetch_add(1, Ordering::Relaxed),
        };
        record_metrics(exec.metrics(), &q.op, &report);
    }
    if let Some(e) = &report.error {
        tracing::warn!(target_name = %op.target, op = %op.id, class = e.class.as_str(), status = ?e.status, error = %e, "operation failed");
    }
    store
        .commit(batch)
        .await
        .map(|_| None)
        .map_err(|e| e.to_string())
}

/// At most this many queued operations of one subject go out as one request.
pub const MAX_COALESCE: usize = 32;

/// Whether an operation may be merged with the queued ones of its subject: attribute updates
/// (create-or-update and update), not lifecycle changes or group memberships.
fn coalescible(op: &Operation) -> bool {
    matches!(op.kind, OpKind::Upsert | OpKind::Update)
}

/// Merges a run of one subject's queued attribute updates (oldest first) into one operation: the
/// last one's desired state; an upsert if any of them may create; as its minimal PATCH the PATCHes
/// of all of them in order when each has one — applied in sequence (RFC 7644 §3.5.2) that is the
/// same change as sending them one by one — and otherwise none (the executor then replaces every
/// owned attribute, which converges too). The head's retry state carries over.
pub fn coalesce(run: &[QueuedOp]) -> Operation {
    let last = &run[run.len() - 1].op;
    let mut op = last.clone();
    if run.iter().any(|q| q.op.kind == OpKind::Upsert) {
        op.kind = OpKind::Upsert;
    }
    op.retry = run[0].op.retry.clone();
    op.patch = run
        .iter()
        .map(|q| {
            q.op.patch
                .as_ref()
                .and_then(|p| p.get("Operations"))
                .and_then(serde_json::Value::as_array)
        })
        .collect::<Option<Vec<_>>>()
        .map(|parts| {
            let ops: Vec<serde_json::Value> = parts.into_iter().flatten().cloned().collect();
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": ops,
            })
        });
    op
}

/// Sleeps until the earliest parked lane is due (forever when none is).
async fn next_due(parked: &[(chrono::DateTime<Utc>, String)]) {
    match parked.iter().map(|(due, _)| *due).min() {
        Some(due) => {
            let wait = (due - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}

/// The mutation that records a changed binding (`None`: the account is gone).
fn binding_mutation(op: &Operation, bound: Option<&str>) -> Mutation {
    match bound {
        Some(id) => Mutation::Bind {
            target: op.target.clone(),
            subject: op.subject.clone(),
            id: id.to_owned(),
        },
        None => Mutation::Unbind {
            target: op.target.clone(),
            subject: op.subject.clone(),
        },
    }
}

/// Counts a finished operation: by outcome and final status class; for a confirmed change, the
/// time from the event to the confirmation; for a failure, the dead letter it became.
fn record_metrics(m: &Metrics, op: &Operation, r: &ExecReport) {
    let outcome = match &r.outcome {
        Outcome::Applied => "applied",
        Outcome::NoOp => "noop",
        Outcome::Failed(_) => "failed",
    };
    m.operations
        .get_or_create(&OperationLabels {
            target: op.target.clone(),
            operation: op.kind.as_str(),
            outcome,
            status_class: status_class(r.status),
        })
        .inc();
    match &r.outcome {
        Outcome::Applied => {
            let Some(from) = op.event_time else { return };
            let took = (chrono::Utc::now() - from).to_std().unwrap_or_default();
            m.time_to_provision
                .get_or_create(&ProvisionLabels {
                    target: op.target.clone(),
                    operation: op.kind.as_str(),
                })
                .observe(took.as_secs_f64());
        }
        Outcome::Failed(_) if r.error.is_some() => Metrics::inc_target(&m.dead_letters, &op.target),
        Outcome::Failed(_) => {}
        Outcome::NoOp => {}
    }
}

/// Removes an operation whose source partition moved to another instance that committed past
/// it (so that instance processed its event), with an audit record saying so.
async fn hand_over(
    store: Arc<dyn Store>,
    metrics: &Metrics,
    stats: Arc<PoolStats>,
    q: &QueuedOp,
) -> Result<(), String> {
    let op = &q.op;
    let detail = op.origin.as_ref().map(|p| {
        format!(
            "{}/{} moved to another instance, which committed past offset {}",
            p.topic, p.partition, p.offset
        )
    });
    tracing::debug!(target_name = %op.target, op = %op.id, "operation handed over");
    let batch = vec![
        Mutation::Dequeue {
            target: op.target.clone(),
            seq: q.seq,
        },
        Mutation::Audit(AuditEntry {
            event_id: op.event_id.clone(),
            subject: op.subject.clone(),
            target: op.target.clone(),
            op_id: op.id.clone(),
            operation: op.kind.as_str().to_owned(),
            detail,
            trace_id: op.traceparent.as_deref().and_then(trace_id),
            ..AuditEntry::note("handed_over", &op.mapping_version)
        }),
    ];
    store.commit(batch).await.map_err(|e| e.to_string())?;
    stats.handed_over.fetch_add(1, Ordering::Relaxed);
    metrics
        .operations
        .get_or_create(&OperationLabels {
            target: op.target.clone(),
            operation: op.kind.as_str(),
            outcome: "handed_over",
            status_class: "none",
        })
        .inc();
    Ok(())
}

/// The atomic batch that finishes an operation: dequeue + audit (+ binding, + dead letter).
pub fn outcome_batch(q: &QueuedOp, r: &ExecReport) -> Vec<Mutation> {
    let op = &q.op;
    let mut batch = vec![Mutation::Dequeue {
        target: op.target.clone(),
        seq: q.seq,
    }];
    if r.binding_changed {
        batch.push(binding_mutation(op, r.bound_id.as_deref()));
    }
    if let (Outcome::Failed(class), Some(e)) = (&r.outcome, &r.error) {
        batch.push(Mutation::DeadLetter(DeadLetter {
            op: op.clone(),
            failed_at: Utc::now(),
            class: *class,
            status: e.status,
            scim_type: e.scim_type.clone(),
            detail: e.detail.clone(),
            attempts: r.attempts,
            event: None,
        }));
    }
    batch.push(Mutation::Audit(AuditEntry {
        time: Utc::now(),
        outcome: r.outcome.as_str().to_owned(),
        event_id: op.event_id.clone(),
        subject: op.subject.clone(),
        target: op.target.clone(),
        op_id: op.id.clone(),
        operation: op.kind.as_str().to_owned(),
        requests: r.requests.clone(),
        status: r.status,
        error_class: r.error.as_ref().map(|e| e.class.as_str().to_owned()),
        scim_type: r.error.as_ref().and_then(|e| e.scim_type.clone()),
        detail: r.error.as_ref().map(|e| e.detail.clone()),
        attempts: r.attempts,
        latency_ms: r.latency.as_millis() as u64,
        attributes: attribute_names(&op.resource),
        mapping_version: op.mapping_version.clone(),
        trace_id: op.traceparent.as_deref().and_then(trace_id),
    }));
    batch
}

/// Names of the attributes an operation sets (values are never audited).
fn attribute_names(resource: &serde_json::Value) -> Vec<String> {
    resource
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "schemas")
        .flat_map(|(k, v)| match v {
            serde_json::Value::Object(sub) if k.starts_with("urn:") => {
                sub.keys().map(|s| format!("{k}:{s}")).collect()
            }
            _ => vec![k.clone()],
        })
        .collect()
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (_, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}
