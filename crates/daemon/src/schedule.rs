//! Releases scheduled operations (effective dating) when they fall due: each due operation is
//! unscheduled and enqueued in one atomic batch, with an audit record, then its target pool is woken.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use scimflow_core::store::{Mutation, Store, StoreError};
use scimflow_core::AuditEntry;
use scimflow_delivery::PoolHandle;

/// How often due operations are looked for.
const TICK: Duration = Duration::from_secs(1);

/// Runs until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    pools: HashMap<String, PoolHandle>,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    loop {
        release_due(store.as_ref(), &pools).await?;
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Releases everything due now; returns how many operations were released.
pub async fn release_due(
    store: &dyn Store,
    pools: &HashMap<String, PoolHandle>,
) -> Result<usize, StoreError> {
    let now = Utc::now();
    let mut due = store.scheduled_due(now, 1024)?;
    // Same due time: the account's own operation before its group memberships.
    due.sort_by(|a, b| {
        (a.due, &a.op.target, &a.op.subject, &a.slot).cmp(&(
            b.due,
            &b.op.target,
            &b.op.subject,
            &b.slot,
        ))
    });
    if due.is_empty() {
        return Ok(0);
    }
    let mut batch = Vec::with_capacity(due.len() * 3);
    let mut targets = Vec::new();
    for s in &due {
        batch.push(Mutation::Unschedule {
            target: s.op.target.clone(),
            subject: s.op.subject.clone(),
            slot: s.slot.clone(),
        });
        batch.push(Mutation::Audit(AuditEntry {
            time: now,
            event_id: s.op.event_id.clone(),
            subject: s.op.subject.clone(),
            target: s.op.target.clone(),
            operation: s.op.kind.as_str().into(),
            detail: Some(format!("due {}", s.due)),
            ..AuditEntry::note("released", &s.op.mapping_version)
        }));
        let mut op = s.op.clone();
        op.planned_at = now;
        // Time to provision counts from when the change was due, not from the announcement.
        op.event_time = Some(op.event_time.map_or(s.due, |t| t.max(s.due)));
        batch.push(Mutation::Enqueue(op));
        targets.push(s.op.target.clone());
    }
    store.commit(batch).await?;
    tracing::info!(released = due.len(), "scheduled operations released");
    for t in targets {
        if let Some(p) = pools.get(&t) {
            p.wake();
        }
    }
    Ok(due.len())
}
