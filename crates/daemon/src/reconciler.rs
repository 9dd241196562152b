//! Reconciliation inside the daemon: on each target's `reconcile.interval_seconds`, and on demand
//! through the admin API (`POST /api/v1/targets/{target}/reconcile`). One run per target at a
//! time. A run reads the target (paged, under its rate limit) against the desired state of the
//! current mapping; with repair, its corrective operations go into the target's durable queue like
//! any other (ordering per subject, rate limits, retries, audit, dead letters, and the deletion
//! guard for deactivations). The last run of each target is kept for the API and the metrics
//! (`scimflow_drift`, `scimflow_reconcile_last_run_timestamp_seconds`,
//! `scimflow_reconcile_duration_seconds`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use scimflow_config::TargetConfig;
use scimflow_core::store::Store;
use scimflow_delivery::client::ScimClient;
use scimflow_delivery::PoolHandle;
use scimflow_reconcile::{Drift, Options};

use crate::pipeline::Pipeline;

/// What the last run of a target found (or why it failed).
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub run_id: String,
    /// `schedule` or `admin`.
    pub trigger: String,
    pub finished_at: DateTime<Utc>,
    pub repair: bool,
    /// The drift counts (absent when the run failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// Corrective operations queued (0 without repair).
    pub queued_operations: usize,
    /// The report's human summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs reconciliations for the daemon's targets.
pub struct Reconciler {
    store: Arc<dyn Store>,
    pipeline: Arc<Pipeline>,
    pools: BTreeMap<String, PoolHandle>,
    targets: BTreeMap<String, (TargetConfig, ScimClient)>,
    running: Mutex<HashSet<String>>,
    last: RwLock<BTreeMap<String, LastRun>>,
}

/// Why a run did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no target `{0}`")]
    Unknown(String),
    #[error("a reconciliation of `{0}` is already running")]
    Busy(String),
}

impl Reconciler {
    pub fn new(
        store: Arc<dyn Store>,
        pipeline: Arc<Pipeline>,
        pools: BTreeMap<String, PoolHandle>,
        targets: &[TargetConfig],
    ) -> anyhow::Result<Self> {
        let mut t = BTreeMap::new();
        for c in targets {
            t.insert(c.name.clone(), (c.clone(), ScimClient::new(c)?));
        }
        Ok(Reconciler {
            store,
            pipeline,
            pools,
            targets: t,
            running: Mutex::default(),
            last: RwLock::default(),
        })
    }

    /// The last run of every target that ran.
    pub fn last_runs(&self) -> BTreeMap<String, LastRun> {
        self.last
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a run of `target` is in progress.
    pub fn is_running(&self, target: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(target)
    }

    /// Starts a run of `target` in the background; returns its run id.
    pub fn start(
        self: &Arc<Self>,
        target: &str,
        repair: bool,
        trigger: &str,
    ) -> Result<String, StartError> {
        if !self.targets.contains_key(target) {
            return Err(StartError::Unknown(target.to_owned()));
        }
        if !self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.to_owned())
        {
            return Err(StartError::Busy(target.to_owned()));
        }
        let run_id = crate::reconcile_cmd::run_id(Utc::now());
        let me = self.clone();
        let (t, id, trig) = (target.to_owned(), run_id.clone(), trigger.to_owned());
        tokio::spawn(async move {
            let last = me.run(&t, &id, repair, &trig).await;
            me.last
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(t.clone(), last);
            me.running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&t);
        });
        Ok(run_id)
    }

    async fn run(&self, target: &str, run_id: &str, repair: bool, trigger: &str) -> LastRun {
        let (config, client) = &self.targets[target];
        let mapping = self.pipeline.mapping();
        let opts = Options::new(run_id, Utc::now());
        tracing::info!(
            target_name = target,
            run_id,
            repair,
            trigger,
            "reconciliation started"
        );
        let mut last = LastRun {
            run_id: run_id.to_owned(),
            trigger: trigger.to_owned(),
            finished_at: Utc::now(),
            repair,
            drift: None,
            queued_operations: 0,
            summary: None,
            error: None,
        };
        let outcome = match mapping {
            None => Err("the mapping is not available".to_owned()),
            Some(m) => scimflow_reconcile::reconcile(
                self.store.as_ref(),
                &m,
                config,
                client,
                &opts,
                &mut |_| {},
            )
            .await
            .map_err(|e| e.to_string()),
        };
        match outcome {
            Ok(o) => {
                if repair && !o.operations.is_empty() {
                    match crate::reconcile_cmd::queue(self.store.as_ref(), &o.operations, run_id)
                        .await
                    {
                        Ok(()) => {
                            last.queued_operations = o.operations.len();
                            if let Some(p) = self.pools.get(target) {
                                p.wake();
                            }
                        }
                        Err(e) => last.error = Some(format!("queueing the repairs failed: {e}")),
                    }
                }
                tracing::info!(
                    target_name = target,
                    run_id,
                    drift = o.report.summary.total(),
                    queued = last.queued_operations,
                    "reconciliation finished"
                );
                last.summary = Some(o.report.human_summary());
                last.drift = Some(o.report.summary);
            }
            Err(e) => {
                tracing::error!(target_name = target, run_id, error = %e, "reconciliation failed");
                last.error = Some(e);
            }
        }
        last.finished_at = Utc::now();
        last
    }

    /// Runs each target with `reconcile.interval_seconds` on its interval until `shutdown` (the
    /// first run one interval after the start).
    pub async fn schedule(self: Arc<Self>, shutdown: CancellationToken) {
        let scheduled: Vec<(String, Duration, bool)> = self
            .targets
            .values()
            .filter_map(|(c, _)| {
                c.reconcile
                    .interval
                    .map(|i| (c.name.clone(), i, c.reconcile.repair))
            })
            .collect();
        let mut tasks = Vec::new();
        for (target, every, repair) in scheduled {
            let me = self.clone();
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    if let Err(e) = me.start(&target, repair, "schedule") {
                        tracing::info!(target_name = %target, reason = %e, "scheduled reconciliation skipped");
                    }
                }
            }));
        }
        shutdown.cancelled().await;
        for t in tasks {
            let _ = t.await;
        }
    }
}
