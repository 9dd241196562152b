//! The daemon's Prometheus metrics, in one registry served on `/metrics` (OpenMetrics text).
//!
//! Every metric is specified in `docs/specs/instrumentation.md`: name, type, labels and when it
//! moves. Labels are bounded: target names (from the config), operation kinds, outcomes, status
//! classes, event sources and results, Kafka topics and partitions. Never a subject, user id,
//! event id or attribute value.
//!
//! Counters and histograms move where the thing happens (the pipeline, the pools, the executor).
//! Gauges that describe stored state (queue depth, oldest queued age, store health) are set from
//! the store when `/metrics` is scraped ([`Metrics::encode`] takes a closure for that).

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `{target}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

/// `{target, reason}` of a lowered concurrency limit: `reason` is `rate_limited`, `no_response`,
/// `unavailable` or `latency`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConcurrencyDecreaseLabels {
    pub target: String,
    pub reason: &'static str,
}

/// `{source, result}` of an input: `source` is `kafka`, `embedded` or `http`; `result` is
/// `accepted`, `rejected`, `stale` or `duplicate`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub source: &'static str,
    pub result: &'static str,
}

/// `{target, status}` of a refused request: `status` is `401` (unauthenticated: token expired,
/// revoked, wrong) or `403` (forbidden: the credential lacks a permission).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub target: String,
    pub status: &'static str,
}

/// `{target, result}` of an operation sent inside a SCIM bulk request: `result` is `succeeded`
/// (2xx), `failed` (its own error status) or `unanswered` (the response did not mention it, or the
/// whole request failed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BulkLabels {
    pub target: String,
    pub result: &'static str,
}

/// `{target, operation, outcome, status_class}` of a finished operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub target: String,
    pub operation: &'static str,
    pub outcome: &'static str,
    pub status_class: &'static str,
}

/// `{target, method, status_class}` of one HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub target: String,
    pub method: String,
    pub status_class: &'static str,
}

/// `{target, operation}` of a confirmed change.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProvisionLabels {
    pub target: String,
    pub operation: &'static str,
}

/// `{result}` of a configuration reload: `success` or `failure`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

/// `{target, class}` of a reconciliation finding: `missing`, `orphaned`, `unmanaged`,
/// `attribute_mismatch`, `wrongly_active`, `wrongly_inactive`, `group_membership_missing`,
/// `group_membership_extra`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftLabels {
    pub target: String,
    pub class: &'static str,
}

/// `{topic, partition}` of a Kafka partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

/// The class of an HTTP status for labels: `2xx` … `5xx`, or `none` when no response came back
/// (connection error, timeout).
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "none",
    }
}

/// Request latency buckets (seconds): 5 ms … 30 s.
const REQUEST_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];

/// Time-to-provision buckets (seconds): 50 ms … 1 h (a target outage makes it long).
const PROVISION_BUCKETS: [f64; 16] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
    3600.0,
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub events: Family<EventLabels, Counter>,
    pub operations: Family<OperationLabels, Counter>,
    pub requests: HistogramFamily<RequestLabels>,
    pub time_to_provision: HistogramFamily<ProvisionLabels>,
    pub retries: Family<TargetLabel, Counter>,
    /// Operations parked in the durable queue until a later try, by target.
    pub parked: Family<TargetLabel, Counter>,
    pub throttled: Family<TargetLabel, Counter>,
    pub limiter_wait: Family<TargetLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub auth_failures: Family<AuthLabels, Counter>,
    /// Operations sent inside bulk requests, by target and result.
    pub bulk_operations: Family<BulkLabels, Counter>,
    pub dead_letters: Family<TargetLabel, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub queue_depth: Family<TargetLabel, Gauge>,
    pub queue_oldest_age: Family<TargetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub pool_stopped: Family<TargetLabel, Gauge>,
    pub staged_deletions: Family<TargetLabel, Gauge>,
    pub breaker_state: Family<TargetLabel, Gauge>,
    /// The target's current limit on requests in flight (adaptive or fixed).
    pub concurrency_limit: Family<TargetLabel, Gauge>,
    pub concurrency_decreases: Family<ConcurrencyDecreaseLabels, Counter>,
    pub breaker_opens: Family<TargetLabel, Counter>,
    pub drift: Family<DriftLabels, Gauge>,
    pub reconcile_last_run: Family<TargetLabel, Gauge>,
    pub reconcile_duration: Family<TargetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub reconcile_failed: Family<TargetLabel, Gauge>,
    pub store_healthy: Gauge,
    pub intake_stopped: Gauge,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub audit_records: Gauge,
    pub audit_checkpoint_seq: Gauge,
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS.iter().copied())
}

fn provision_histogram() -> Histogram {
    Histogram::new(PROVISION_BUCKETS.iter().copied())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("scimflow")),
            events: Family::default(),
            operations: Family::default(),
            requests: Family::new_with_constructor(request_histogram as fn() -> Histogram),
            time_to_provision: Family::new_with_constructor(
                provision_histogram as fn() -> Histogram,
            ),
            retries: Family::default(),
            parked: Family::default(),
            throttled: Family::default(),
            limiter_wait: Family::default(),
            auth_failures: Family::default(),
            bulk_operations: Family::default(),
            dead_letters: Family::default(),
            reloads: Family::default(),
            queue_depth: Family::default(),
            queue_oldest_age: Family::default(),
            pool_stopped: Family::default(),
            staged_deletions: Family::default(),
            breaker_state: Family::default(),
            concurrency_limit: Family::default(),
            concurrency_decreases: Family::default(),
            breaker_opens: Family::default(),
            drift: Family::default(),
            reconcile_last_run: Family::default(),
            reconcile_duration: Family::default(),
            reconcile_failed: Family::default(),
            store_healthy: Gauge::default(),
            intake_stopped: Gauge::default(),
            consumer_lag: Family::default(),
            audit_records: Gauge::default(),
            audit_checkpoint_seq: Gauge::default(),
        };
        {
            let mut r = m.registry.lock().expect("fresh registry");
            r.register(
                "events",
                "Inputs recorded by the pipeline, by source and result (accepted, rejected, stale, duplicate)",
                m.events.clone(),
            );
            r.register(
                "operations",
                "Finished operations by target, operation, outcome and final HTTP status class",
                m.operations.clone(),
            );
            r.register_with_unit(
                "request_duration",
                "Latency of each SCIM HTTP request by target, method and status class",
                prometheus_client::registry::Unit::Seconds,
                m.requests.clone(),
            );
            r.register_with_unit(
                "time_to_provision",
                "From the event's time to the target's confirmation, by target and operation",
                prometheus_client::registry::Unit::Seconds,
                m.time_to_provision.clone(),
            );
            r.register(
                "retries",
                "Attempts repeated after a transient failure, by target",
                m.retries.clone(),
            );
            r.register(
                "operations_parked",
                "Operations parked in the durable queue until a later try (outage, long Retry-After, retry budget spent), by target",
                m.parked.clone(),
            );
            r.register(
                "throttled_responses",
                "Responses that throttled us (429, or a profile's throttling status), by target",
                m.throttled.clone(),
            );
            r.register_with_unit(
                "rate_limiter_wait",
                "Time requests waited for a rate-limit token, by target",
                prometheus_client::registry::Unit::Seconds,
                m.limiter_wait.clone(),
            );
            r.register(
                "bulk_operations",
                "Operations sent inside SCIM bulk requests, by target and result (succeeded, failed, unanswered)",
                m.bulk_operations.clone(),
            );
            r.register(
                "auth_failures",
                "Requests refused as unauthenticated (401) or forbidden (403), by target and status",
                m.auth_failures.clone(),
            );
            r.register(
                "dead_letters",
                "Operations moved to the dead-letter store, by target",
                m.dead_letters.clone(),
            );
            r.register(
                "config_reloads",
                "Configuration reloads by result",
                m.reloads.clone(),
            );
            r.register(
                "queue_depth_operations",
                "Operations waiting in the durable queue, by target",
                m.queue_depth.clone(),
            );
            r.register_with_unit(
                "queue_oldest_age",
                "Age of the oldest operation in the durable queue (0 when empty), by target",
                prometheus_client::registry::Unit::Seconds,
                m.queue_oldest_age.clone(),
            );
            r.register(
                "pool_stopped",
                "1 when a target's delivery pool stopped because of an error",
                m.pool_stopped.clone(),
            );
            r.register(
                "staged_deletions",
                "Deactivations and deletions the deletion guard holds for an operator's approval, by target",
                m.staged_deletions.clone(),
            );
            r.register(
                "breaker_state",
                "The target's circuit breaker: 0 closed, 1 half-open (probing), 2 open (not sending)",
                m.breaker_state.clone(),
            );
            r.register(
                "breaker_opens",
                "Times the target's circuit breaker opened",
                m.breaker_opens.clone(),
            );
            r.register(
                "target_concurrency_limit",
                "The target's current limit on requests in flight (adaptive concurrency, or the fixed `concurrency`)",
                m.concurrency_limit.clone(),
            );
            r.register(
                "target_concurrency_decreases",
                "Times the target's adaptive concurrency limit was lowered, by reason (rate_limited, no_response, unavailable, latency)",
                m.concurrency_decreases.clone(),
            );
            r.register(
                "drift",
                "Findings of the last reconciliation run, by target and drift class",
                m.drift.clone(),
            );
            r.register_with_unit(
                "reconcile_last_run_timestamp",
                "When the last reconciliation run of the target finished (Unix time)",
                prometheus_client::registry::Unit::Seconds,
                m.reconcile_last_run.clone(),
            );
            r.register_with_unit(
                "reconcile_duration",
                "How long the last successful reconciliation run of the target took",
                prometheus_client::registry::Unit::Seconds,
                m.reconcile_duration.clone(),
            );
            r.register(
                "reconcile_failed",
                "1 when the last reconciliation run of the target failed",
                m.reconcile_failed.clone(),
            );
            r.register(
                "store_healthy",
                "1 while the store can persist, 0 after a write failure",
                m.store_healthy.clone(),
            );
            r.register(
                "intake_stopped",
                "1 when intake stopped because the store cannot persist",
                m.intake_stopped.clone(),
            );
            r.register(
                "kafka_consumer_lag_messages",
                "Messages behind the partition's high watermark per assigned partition, from librdkafka statistics",
                m.consumer_lag.clone(),
            );
            r.register(
                "audit_records",
                "Records in the audit hash chain (the sequence number of its head)",
                m.audit_records.clone(),
            );
            r.register(
                "audit_checkpoint_seq",
                "The audit record the newest signed checkpoint covers (0 without a signing key or before the first checkpoint)",
                m.audit_checkpoint_seq.clone(),
            );
        }
        m
    }

    /// Creates the per-target counters at zero, so that a target that never failed still has
    /// series (`rate()` and alerts see 0 instead of nothing).
    pub fn init_target(&self, target: &str) {
        let t = TargetLabel {
            target: target.to_owned(),
        };
        for f in [
            &self.retries,
            &self.parked,
            &self.throttled,
            &self.dead_letters,
        ] {
            let _ = f.get_or_create(&t);
        }
        let _ = self.limiter_wait.get_or_create(&t);
        let _ = self.pool_stopped.get_or_create(&t);
        for status in ["401", "403"] {
            let _ = self.auth_failures.get_or_create(&AuthLabels {
                target: target.to_owned(),
                status,
            });
        }
        for result in ["succeeded", "failed", "unanswered"] {
            let _ = self.bulk_operations.get_or_create(&BulkLabels {
                target: target.to_owned(),
                result,
            });
        }
        // The time-to-provision histograms at zero: a rate over them (the deprovisioning SLO)
        // then sees the first confirmations as an increase, even when they all land between two
        // scrapes.
        for operation in [
            "upsert",
            "update",
            "deactivate",
            "reactivate",
            "delete",
            "group_add",
            "group_remove",
        ] {
            let _ = self.time_to_provision.get_or_create(&ProvisionLabels {
                target: target.to_owned(),
                operation,
            });
        }
    }

    /// Creates the input counters of `source` at zero, for every result.
    pub fn init_source(&self, source: &'static str) {
        for result in ["accepted", "rejected", "stale", "duplicate"] {
            let _ = self.events.get_or_create(&EventLabels { source, result });
        }
    }

    /// Records one HTTP request.
    pub fn request(&self, target: &str, method: &str, status: Option<u16>, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                target: target.to_owned(),
                method: method.to_owned(),
                status_class: status_class(status),
            })
            .observe(took.as_secs_f64());
        let t = TargetLabel {
            target: target.to_owned(),
        };
        match status {
            Some(429) => {
                self.throttled.get_or_create(&t).inc();
            }
            Some(s @ (401 | 403)) => {
                self.auth_failures
                    .get_or_create(&AuthLabels {
                        target: t.target,
                        status: if s == 401 { "401" } else { "403" },
                    })
                    .inc();
            }
            _ => {}
        }
    }

    /// The target counter family `f` for `target`, incremented by one.
    pub fn inc_target(f: &Family<TargetLabel, Counter>, target: &str) {
        f.get_or_create(&TargetLabel {
            target: target.to_owned(),
        })
        .inc();
    }

    /// Records one input as the pipeline recorded it.
    pub fn event(&self, source: &'static str, result: &'static str) {
        self.events
            .get_or_create(&EventLabels { source, result })
            .inc();
    }

    /// The OpenMetrics text of every metric, after `refresh` has set the scrape-time gauges.
    pub fn encode(&self, refresh: impl FnOnce(&Metrics)) -> String {
        refresh(self);
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_named_typed_and_labelled_as_specified() {
        let m = Metrics::new();
        m.request("slack", "POST", Some(201), Duration::from_millis(12));
        m.request("slack", "GET", Some(429), Duration::from_millis(3));
        m.request("slack", "PATCH", Some(401), Duration::from_millis(3));
        m.event("kafka", "accepted");
        m.operations
            .get_or_create(&OperationLabels {
                target: "slack".into(),
                operation: "deactivate",
                outcome: "applied",
                status_class: "2xx",
            })
            .inc();
        m.time_to_provision
            .get_or_create(&ProvisionLabels {
                target: "slack".into(),
                operation: "deactivate",
            })
            .observe(0.3);
        let text = m.encode(|m| {
            m.queue_depth
                .get_or_create(&TargetLabel {
                    target: "slack".into(),
                })
                .set(7);
            m.store_healthy.set(1);
        });
        for want in [
            "# TYPE scimflow_request_duration_seconds histogram",
            "scimflow_request_duration_seconds_bucket{le=\"0.025\",target=\"slack\",method=\"POST\",status_class=\"2xx\"} 1",
            "scimflow_throttled_responses_total{target=\"slack\"} 1",
            "scimflow_auth_failures_total{target=\"slack\",status=\"401\"} 1",
            "scimflow_events_total{source=\"kafka\",result=\"accepted\"} 1",
            "scimflow_operations_total{target=\"slack\",operation=\"deactivate\",outcome=\"applied\",status_class=\"2xx\"} 1",
            "scimflow_time_to_provision_seconds_bucket{le=\"0.5\",target=\"slack\",operation=\"deactivate\"} 1",
            "scimflow_time_to_provision_seconds_bucket{le=\"0.25\",target=\"slack\",operation=\"deactivate\"} 0",
            "scimflow_queue_depth_operations{target=\"slack\"} 7",
            "scimflow_store_healthy 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
    }

    #[test]
    fn initialised_series_are_exported_at_zero() {
        let m = Metrics::new();
        m.init_target("zoom");
        m.init_source("kafka");
        let text = m.encode(|_| {});
        for want in [
            "scimflow_retries_total{target=\"zoom\"} 0",
            "scimflow_throttled_responses_total{target=\"zoom\"} 0",
            "scimflow_dead_letters_total{target=\"zoom\"} 0",
            "scimflow_auth_failures_total{target=\"zoom\",status=\"403\"} 0",
            "scimflow_rate_limiter_wait_seconds_total{target=\"zoom\"} 0",
            "scimflow_events_total{source=\"kafka\",result=\"stale\"} 0",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "none");
    }
}
