//! The mapping-stage port: `plan(event, prior state) -> operations`.

use crate::{Event, Operation, ScheduledOp, SubjectState};

/// A mapping failure for one event on one target. It is recorded in the audit log (outcome
/// `plan_error`, with this message); other targets and other events are unaffected. (Keeping such
/// events in the dead-letter store for redrive arrives with the full mapping language.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target `{target}`: {reason} (in `{expression}`)")]
pub struct PlanError {
    pub target: String,
    /// The mapping expression (or attribute) that failed.
    pub expression: String,
    pub reason: String,
}

/// A scheduled operation to cancel: the slot of one subject on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub target: String,
    pub subject: String,
    pub slot: String,
}

/// What a planner produced for one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Operations to enqueue, at most a few per target, in the order they must apply.
    pub ops: Vec<Operation>,
    /// Operations to hold until their due time (effective dating).
    pub scheduled: Vec<ScheduledOp>,
    /// Scheduled operations this event makes obsolete.
    pub cancel: Vec<Cancel>,
    /// Per-target failures.
    pub errors: Vec<PlanError>,
}

/// The schedule slot of provisioning operations (a future hire or rehire).
pub const SLOT_PROVISION: &str = "provision";
/// The schedule slot of deprovisioning operations (a last working day).
pub const SLOT_DEPROVISION: &str = "deprovision";

/// The mapping stage. Implementations are pure: no I/O, deterministic for a given input, so the
/// same event planned twice yields the same operation ids.
pub trait Planner: Send + Sync + 'static {
    /// Content hash of the mapping in force; recorded on every operation and audit record.
    fn version(&self) -> &str;

    /// Whether the mapping knows this event type (unknown types are rejected at decode time).
    fn accepts_type(&self, kind: &str) -> bool;

    /// Plans the operations `event` causes, given the subject's previous state.
    fn plan(&self, event: &Event, prior: Option<&SubjectState>) -> Plan;
}
