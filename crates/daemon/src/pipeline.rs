//! The pipeline stage between sources and delivery: stale/duplicate checks, planning, and the atomic
//! durable record of everything an event causes (new subject state + queued operations + audit).
//!
//! `accept` is called in source order. The ordering-sensitive part (reading the subject's prior state,
//! planning, submitting the batch to the store's single writer) happens synchronously inside the call;
//! only the wait for durability is deferred. Subject states submitted but not yet durable are kept in
//! an in-memory overlay, so back-to-back events for one person see each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::Utc;

use scimflow_core::partition::{PartitionLedger, SourcePosition};
use scimflow_core::plan::Planner;
use scimflow_core::plan::SLOT_PROVISION;
use scimflow_core::source::{EventSink, Rejection};
use scimflow_core::store::{BoxFuture, DeadLetter, Mutation, Store, StoreError};
use scimflow_core::{
    AuditEntry, Event, EventOrigin, OpKind, Operation, RejectedEvent, ScheduledOp, SubjectState,
};
use scimflow_delivery::PoolHandle;
use scimflow_telemetry::metrics::Metrics;

/// What one event produces: the batch to commit, the targets to wake once it is durable, and the
/// subject state it records (kept in the overlay until durable), and the result for metrics
/// (`accepted`, `stale` or `duplicate`).
type EventBatch = (
    Vec<Mutation>,
    Vec<String>,
    Option<SubjectState>,
    &'static str,
);

/// What [`Pipeline::replan_subject`] planned.
#[derive(Debug, Default)]
pub struct Replan {
    pub mutations: Vec<Mutation>,
    /// Operations enqueued or scheduled.
    pub operations: usize,
    /// Targets whose pools to wake after the commit.
    pub targets: Vec<String>,
}

/// Why a subject could not be planned again.
#[derive(Debug, thiserror::Error)]
pub enum ReplanError {
    #[error("no recorded state for subject `{0}`")]
    Unknown(String),
    #[error("the mapping fails for it: {0}")]
    Plan(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The event sink shared by all sources.
pub struct Pipeline {
    store: Arc<dyn Store>,
    planner: RwLock<Arc<dyn Planner>>,
    pools: HashMap<String, PoolHandle>,
    pending: Arc<Mutex<HashMap<String, SubjectState>>>,
    max_event_bytes: usize,
    /// With a partitioned source (Kafka): where queued work came from, and partition ownership.
    ledger: Option<Arc<PartitionLedger>>,
    metrics: Arc<Metrics>,
    /// The compiled mapping behind the planner, when it is one (reconciliation needs it).
    mapping: RwLock<Option<Arc<scimflow_mapping::Mapping>>>,
}

impl Pipeline {
    pub fn new(
        store: Arc<dyn Store>,
        planner: Arc<dyn Planner>,
        pools: HashMap<String, PoolHandle>,
        max_event_bytes: usize,
    ) -> Self {
        Pipeline {
            store,
            planner: RwLock::new(planner),
            pools,
            pending: Arc::default(),
            max_event_bytes,
            ledger: None,
            metrics: Arc::default(),
            mapping: RwLock::new(None),
        }
    }

    /// Plans with `mapping` from now on, and keeps it for reconciliation.
    pub fn set_mapping(&self, mapping: Arc<scimflow_mapping::Mapping>) {
        *self.mapping.write().unwrap_or_else(PoisonError::into_inner) = Some(mapping.clone());
        self.set_planner(mapping);
    }

    /// The mapping in use, when the planner is a compiled mapping.
    pub fn mapping(&self) -> Option<Arc<scimflow_mapping::Mapping>> {
        self.mapping
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts inputs into `metrics` (the daemon's registry).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Tracks queued operations by source partition (for the Kafka source's commits and
    /// scale-out handover).
    pub fn with_ledger(mut self, ledger: Arc<PartitionLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Replaces the mapping; events accepted from now on are planned with it.
    pub fn set_planner(&self, planner: Arc<dyn Planner>) {
        *self.planner.write().unwrap_or_else(PoisonError::into_inner) = planner;
    }

    fn planner(&self) -> Arc<dyn Planner> {
        self.planner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The version of the mapping in use.
    pub fn mapping_version(&self) -> String {
        self.planner().version().to_owned()
    }

    /// Plans `subject` afresh from its latest recorded attributes, for `only` one target or all:
    /// what "provision now" and a dead-letter redrive enqueue. The plan ignores the prior state
    /// (no minimal PATCH: the target's account may differ from what was last sent; lookup by the
    /// matching attributes before any create keeps it idempotent), and its event id is
    /// `{last event id}~{tag}`, so its operations have ids (and terminal audit records) of their
    /// own. The caller commits [`Replan::mutations`] and wakes [`Replan::targets`].
    pub fn replan_subject(
        &self,
        subject: &str,
        only: Option<&str>,
        tag: &str,
    ) -> Result<Replan, ReplanError> {
        let state = self
            .prior(subject)?
            .ok_or_else(|| ReplanError::Unknown(subject.to_owned()))?;
        let event = Event {
            id: format!("{}~{tag}", state.last_event_id),
            source: "scimflow:admin".into(),
            kind: state.last_kind.clone(),
            subject: state.subject.clone(),
            time: state.last_time,
            data: state.data.clone(),
            traceparent: None,
        };
        let planner = self.planner();
        let plan = planner.plan(&event, None);
        let wanted = |t: &str| only.is_none_or(|o| o == t);
        if let Some(e) = plan.errors.iter().find(|e| wanted(&e.target)) {
            return Err(ReplanError::Plan(e.to_string()));
        }
        let mut out = Replan::default();
        for op in plan.ops.into_iter().filter(|o| wanted(&o.target)) {
            if !out.targets.contains(&op.target) {
                out.targets.push(op.target.clone());
            }
            out.operations += 1;
            out.mutations.push(Mutation::Enqueue(op));
        }
        for s in plan.scheduled.into_iter().filter(|s| wanted(&s.op.target)) {
            out.operations += 1;
            out.mutations.push(Mutation::Audit(op_audit(
                &s.op,
                "scheduled",
                Some(format!("due {}", s.due)),
            )));
            out.mutations.push(Mutation::Schedule(s));
        }
        Ok(out)
    }

    /// Wakes the pools of `targets` (after their operations were committed).
    pub fn wake(&self, targets: &[String]) {
        for t in targets {
            if let Some(p) = self.pools.get(t) {
                p.wake();
            }
        }
    }

    fn prior(&self, subject: &str) -> Result<Option<SubjectState>, StoreError> {
        if let Some(s) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(subject)
        {
            return Ok(Some(s.clone()));
        }
        self.store.subject(subject)
    }

    fn event_batch(
        &self,
        event: &Event,
        position: Option<SourcePosition>,
    ) -> Result<EventBatch, StoreError> {
        let planner = self.planner();
        let prior = self.prior(&event.subject)?;
        if let Some(why) = prior.as_ref().and_then(|p| p.staleness(event)) {
            let outcome = match why {
                scimflow_core::Staleness::Duplicate => "duplicate",
                scimflow_core::Staleness::Older => "stale",
            };
            tracing::debug!(event_id = %event.id, outcome, "event skipped");
            return Ok((
                vec![Mutation::Audit(event_audit(
                    event,
                    outcome,
                    None,
                    planner.version(),
                ))],
                Vec::new(),
                None,
                outcome,
            ));
        }
        let mut plan = planner.plan(event, prior.as_ref());
        // A minimal PATCH assumes the target holds the prior state as mapped by *this* mapping; after
        // a mapping change, replace every owned attribute instead.
        let remapped = prior.as_ref().is_some_and(|p| {
            !p.mapping_version.is_empty() && p.mapping_version != planner.version()
        });
        // Likewise when another instance may have applied newer events for this subject since
        // the prior state was recorded here (the partition moved between instances meanwhile).
        let foreign = match (&self.ledger, &position, &prior) {
            (Some(ledger), Some(_), Some(p)) => !p
                .position
                .as_ref()
                .is_some_and(|pp| ledger.continuous_since(pp)),
            _ => false,
        };
        if remapped || foreign {
            for op in plan
                .ops
                .iter_mut()
                .chain(plan.scheduled.iter_mut().map(|s| &mut s.op))
            {
                op.patch = None;
            }
        }
        let mut state = SubjectState::advance(prior.as_ref(), event);
        state.mapping_version = planner.version().to_owned();
        state.position = position.clone();
        let mut batch = vec![Mutation::PutSubject(state.clone())];
        let mut woken = Vec::new();
        for c in &plan.cancel {
            batch.push(Mutation::Unschedule {
                target: c.target.clone(),
                subject: c.subject.clone(),
                slot: c.slot.clone(),
            });
        }
        let now = Utc::now();
        // With span export on, operations continue the current (consume) span's trace.
        let mut plan = plan;
        if let Some(tp) = scimflow_telemetry::otlp::current_traceparent() {
            for op in plan
                .ops
                .iter_mut()
                .chain(plan.scheduled.iter_mut().map(|s| &mut s.op))
            {
                op.traceparent = Some(tp.clone());
            }
        }
        for op in plan.ops {
            // A future-dated hire is pending: fold this change into it instead of provisioning early.
            let pending = if matches!(
                op.kind,
                OpKind::Upsert | OpKind::Update | OpKind::GroupAdd | OpKind::GroupRemove
            ) && !plan
                .cancel
                .iter()
                .any(|c| c.target == op.target && c.slot == SLOT_PROVISION)
            {
                self.store
                    .scheduled_get(&op.target, &op.subject, SLOT_PROVISION)?
                    .filter(|p| p.due > now)
            } else {
                None
            };
            match pending {
                Some(p) => {
                    let slot = match (&op.kind, &op.group) {
                        (OpKind::GroupAdd | OpKind::GroupRemove, Some(g)) => {
                            format!("{SLOT_PROVISION}:group:{g}")
                        }
                        _ => SLOT_PROVISION.to_owned(),
                    };
                    let mut op = op;
                    if slot == SLOT_PROVISION {
                        // Keep the pending action (create or reactivate) with the newest attributes.
                        op.kind = p.op.kind;
                        op.patch = None;
                    }
                    batch.push(Mutation::Audit(op_audit(
                        &op,
                        "scheduled",
                        Some(format!("held with the pending provisioning due {}", p.due)),
                    )));
                    batch.push(Mutation::Schedule(ScheduledOp {
                        due: p.due,
                        slot,
                        op,
                    }));
                }
                None => {
                    let mut op = op;
                    if let (Some(ledger), Some(pos)) = (&self.ledger, &position) {
                        ledger.opened(pos);
                        op.origin = Some(pos.clone());
                    }
                    woken.push(op.target.clone());
                    batch.push(Mutation::Enqueue(op));
                }
            }
        }
        for s in plan.scheduled {
            batch.push(Mutation::Audit(op_audit(
                &s.op,
                "scheduled",
                Some(format!("due {}", s.due)),
            )));
            batch.push(Mutation::Schedule(s));
        }
        for err in plan.errors {
            tracing::warn!(event_id = %event.id, target_name = %err.target, error = %err, "mapping failed for this event and target");
            let mut entry = event_audit(
                event,
                "plan_error",
                Some(err.to_string()),
                planner.version(),
            );
            entry.target = err.target.clone();
            entry.op_id = format!("{}@{}", event.id, err.target);
            batch.push(Mutation::Audit(entry));
            batch.push(Mutation::DeadLetter(plan_dead_letter(
                event,
                &err,
                planner.version(),
            )));
        }
        Ok((batch, woken, Some(state), "accepted"))
    }
}

/// The Kafka position of an event, when it came from Kafka.
fn source_position(origin: &EventOrigin) -> Option<SourcePosition> {
    match origin {
        EventOrigin::Kafka {
            topic,
            partition,
            offset,
        } => Some(SourcePosition {
            topic: topic.clone(),
            partition: *partition,
            offset: *offset,
        }),
        _ => None,
    }
}

/// A dead letter for an event the mapping could not plan for one target; it keeps the event so a
/// redrive plans it again (after the mapping is fixed).
fn plan_dead_letter(
    event: &Event,
    err: &scimflow_core::plan::PlanError,
    version: &str,
) -> DeadLetter {
    DeadLetter {
        op: Operation {
            id: format!("{}@{}", event.id, err.target),
            target: err.target.clone(),
            subject: event.subject.clone(),
            event_id: event.id.clone(),
            event_kind: event.kind.clone(),
            event_time: event.time,
            planned_at: Utc::now(),
            kind: OpKind::Upsert,
            resource: serde_json::Value::Null,
            matching: Vec::new(),
            mapping_version: version.to_owned(),
            traceparent: event.traceparent.clone(),
            group: None,
            create_only: Vec::new(),
            patch: None,
            manager_subject: None,
            alternatives: Default::default(),
            origin: None,
            retry: None,
        },
        failed_at: Utc::now(),
        class: scimflow_core::ErrorClass::Permanent,
        status: None,
        scim_type: None,
        detail: format!("mapping failed: {err}"),
        attempts: 0,
        event: Some(event.clone()),
    }
}

/// An audit entry about one operation that is not (yet) a delivery outcome.
fn op_audit(op: &Operation, outcome: &str, detail: Option<String>) -> AuditEntry {
    AuditEntry {
        event_id: op.event_id.clone(),
        subject: op.subject.clone(),
        target: op.target.clone(),
        operation: op.kind.as_str().to_owned(),
        detail,
        trace_id: op
            .traceparent
            .as_deref()
            .and_then(scimflow_delivery::pool::trace_id),
        ..AuditEntry::note(outcome, &op.mapping_version)
    }
}

fn event_audit(event: &Event, outcome: &str, detail: Option<String>, version: &str) -> AuditEntry {
    AuditEntry {
        event_id: event.id.clone(),
        subject: event.subject.clone(),
        operation: event.kind.clone(),
        detail,
        trace_id: event
            .traceparent
            .as_deref()
            .and_then(scimflow_delivery::pool::trace_id),
        ..AuditEntry::note(outcome, version)
    }
}

/// The batch that keeps a rejected input.
pub fn rejection_batch(origin: EventOrigin, rej: Rejection, version: &str) -> Vec<Mutation> {
    let audit = AuditEntry {
        event_id: rej.event_id.clone().unwrap_or_default(),
        detail: Some(format!("{origin}: {}", rej.reason)),
        ..AuditEntry::note("rejected", version)
    };
    vec![
        Mutation::Reject(RejectedEvent {
            at: Utc::now(),
            origin,
            event_id: rej.event_id,
            reason: rej.reason,
            excerpt: rej.excerpt,
        }),
        Mutation::Audit(audit),
    ]
}

impl EventSink for Pipeline {
    fn accepts_type(&self, kind: &str) -> bool {
        self.planner().accepts_type(kind)
    }

    fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    fn accept(
        &self,
        origin: EventOrigin,
        input: Result<Event, Rejection>,
        extra: Vec<Mutation>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let source = match &origin {
            EventOrigin::Kafka { .. } => "kafka",
            EventOrigin::Embedded { .. } => "embedded",
            EventOrigin::HttpIngest { .. } => "http",
        };
        let (mut batch, woken, state, result) = match input {
            Ok(event) => {
                // One span per event, in the event's trace; the operations planned inside it carry
                // its context on to delivery.
                let span = tracing::info_span!(
                    "consume",
                    source,
                    event_id = %event.id,
                    event_type = %event.kind,
                );
                scimflow_telemetry::otlp::set_parent(&span, event.traceparent.as_deref());
                let _entered = span.enter();
                match self.event_batch(&event, source_position(&origin)) {
                    Ok(x) => x,
                    Err(e) => return Box::pin(async move { Err(e) }),
                }
            }
            Err(rej) => {
                tracing::warn!(%origin, event_id = ?rej.event_id, reason = %rej.reason, "event rejected");
                (
                    rejection_batch(origin, rej, self.planner().version()),
                    Vec::new(),
                    None,
                    "rejected",
                )
            }
        };
        batch.extend(extra);
        // Events the mapping could not plan for a target become dead letters there.
        let planning_dead_letters: Vec<String> = batch
            .iter()
            .filter_map(|m| match m {
                Mutation::DeadLetter(d) => Some(d.op.target.clone()),
                _ => None,
            })
            .collect();
        if let Some(s) = &state {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(s.subject.clone(), s.clone());
        }
        let durable = self.store.commit(batch);
        let pending = self.pending.clone();
        let metrics = self.metrics.clone();
        let pools: Vec<PoolHandle> = woken
            .iter()
            .filter_map(|t| self.pools.get(t).cloned())
            .collect();
        Box::pin(async move {
            let r = durable.await;
            if let Some(s) = state {
                let mut p = pending.lock().unwrap_or_else(PoisonError::into_inner);
                if p.get(&s.subject)
                    .is_some_and(|cur| cur.last_event_id == s.last_event_id)
                {
                    p.remove(&s.subject);
                }
            }
            r?;
            metrics.event(source, result);
            for t in &planning_dead_letters {
                Metrics::inc_target(&metrics.dead_letters, t);
            }
            for p in pools {
                p.wake();
            }
            Ok(())
        })
    }
}
