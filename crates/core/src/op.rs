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
    /// Source time of that event (start of the time-to-provision clock).
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
}

/// An operation as it sits in a target's durable queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedOp {
    /// Position in the target's queue (assigned by the store's writer; increasing).
    pub seq: u64,
    pub op: Operation,
}
