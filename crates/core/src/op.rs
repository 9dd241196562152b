//! SCIM operations: what the mapping stage wants done on one target for one subject.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The lifecycle action an operation performs on the target's User resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Create if absent (after a lookup by the matching attributes), otherwise converge with PATCH.
    Upsert,
    /// Converge an existing account with PATCH; never creates.
    Update,
    /// Set `active=false` on an existing account (absent account: nothing to do).
    Deactivate,
    /// Set `active=true` (and converge attributes) on the existing account; creates it if absent.
    Reactivate,
    /// DELETE the account (404 counts as done).
    Delete,
    /// Add the subject's account to the group named by [`Operation::group`] (created if absent).
    GroupAdd,
    /// Remove the subject's account from the group named by [`Operation::group`].
    GroupRemove,
}

impl OpKind {
    /// Stable lowercase name, used in audit records and as a bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Upsert => "upsert",
            OpKind::Update => "update",
            OpKind::Deactivate => "deactivate",
            OpKind::Reactivate => "reactivate",
            OpKind::Delete => "delete",
            OpKind::GroupAdd => "group_add",
            OpKind::GroupRemove => "group_remove",
        }
    }

    /// Whether this operation removes access (counted by the deletion guard).
    pub fn is_deprovision(self) -> bool {
        matches!(self, OpKind::Deactivate | OpKind::Delete)
    }
}

impl std::str::FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "upsert" | "create" => OpKind::Upsert,
            "update" => OpKind::Update,
            "deactivate" => OpKind::Deactivate,
            "reactivate" => OpKind::Reactivate,
            "delete" => OpKind::Delete,
            other => {
                return Err(format!(
                    "unknown lifecycle action `{other}` (expected one of: create, upsert, update, deactivate, reactivate, delete, ignore)"
                ))
            }
        })
    }
}

/// One attribute used to find an existing account on the target, in precedence order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchKey {
    /// SCIM attribute path, e.g. `externalId` or `userName`.
    pub attribute: String,
    /// The value the account must have.
    pub value: String,
    /// Whether the target compares this attribute case-insensitively (RFC 7643: `userName` is
    /// case-insensitive, `externalId` case-exact).
    #[serde(default)]
    pub case_exact: bool,
}

/// One SCIM effect wanted on one target for one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Deterministic id: the same event mapped again yields the same id.
    pub id: String,
    /// Target name from the config.
    pub target: String,
    /// The subject (person id) this operation is for.
    pub subject: String,
    /// Event that caused it.
    pub event_id: String,
    /// Type of that event.
    pub event_kind: String,
    /// Start of the time-to-provision clock: the source time of that event, or, for an
    /// effective-dated operation, the time it fell due (set when it is released).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<DateTime<Utc>>,
    /// When the operation was planned.
    pub planned_at: DateTime<Utc>,
    pub kind: OpKind,
    /// Desired SCIM User resource (the attributes the mapping owns).
    pub resource: serde_json::Value,
    /// How to find an existing account, in precedence order.
    pub matching: Vec<MatchKey>,
    /// Content hash of the mapping that produced it.
    pub mapping_version: String,
    /// W3C trace context to continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// For group operations: the group's `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Attributes of `resource` sent only when the account is created, never in updates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create_only: Vec<String>,
    /// The minimal PATCH from the previously planned state to `resource`, when there was one; used
    /// instead of replacing every owned attribute when the account already exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<serde_json::Value>,
    /// The subject id of the person's manager, resolved to the target's id at delivery time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_subject: Option<String>,
    /// Fallback values per attribute (e.g. `userName` candidates), tried in order when a create is
    /// refused as a uniqueness conflict with an account that is not this subject's.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub alternatives: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
    /// The Kafka message it was planned from (set by the pipeline; `None` for the embedded source
    /// and for effective-dated operations, which stay with the instance that scheduled them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::partition::SourcePosition>,
    /// Delivery state of an operation whose attempts failed transiently and which waits, parked in
    /// the durable queue, for its next try (`None`: never tried, or not parked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryState>,
}

/// Why and until when a queued operation is parked (kept with it in the durable queue, so a
/// restart neither forgets the backoff nor starts the attempt count again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryState {
    /// Attempts made so far, over every dispatch.
    pub attempts: u32,
    /// How often it was parked (the parking backoff's exponent).
    pub parks: u32,
    /// When the first attempt failed (retrying gives up `give_up_after` later).
    pub first_failure: DateTime<Utc>,
    /// Not tried again before this time.
    pub next_try: DateTime<Utc>,
    /// The last failure: error class, and status when there was a response (no target text: that
    /// stays in logs and, if it ends there, in the dead letter).
    pub last_error: String,
}

/// An operation as it sits in a target's durable queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedOp {
    /// Position in the target's queue (assigned by the store's writer; increasing).
    pub seq: u64,
    pub op: Operation,
}

/// An operation held until `due` (effective dating: a future hire, the last working day).
///
/// At most one operation is scheduled per `(target, subject, slot)`: scheduling again with the same
/// slot moves it (replaces the previous one), and a later event can cancel it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledOp {
    pub due: DateTime<Utc>,
    /// Distinguishes independent schedules of one subject on one target (e.g. the lifecycle action).
    pub slot: String,
    pub op: Operation,
}
