//! The drift report: what a run found, per class and per subject, as a JSON artifact and a human
//! summary, plus [`Drift`], the counts the daemon can export as metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds of drift. The serialized names are also the bounded `class` label for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftClass {
    /// The subject should have an active account and the target has none.
    Missing,
    /// A managed account (bound in the store, or matched by the mapping's keys) of a subject that is
    /// out of scope or was deleted by its lifecycle, still present (and active).
    Orphaned,
    /// An account this system does not manage; reported only when the target's
    /// `reconcile.report_unmanaged` asks for it, never repaired.
    Unmanaged,
    /// Attributes the mapping owns hold other values than the mapping wants.
    AttributeMismatch,
    /// The account is active but should be inactive.
    WronglyActive,
    /// The account is inactive but should be active.
    WronglyInactive,
    /// The subject should be a member of a group and is not.
    GroupMembershipMissing,
    /// The subject is a member of a group the mapping does not put it in.
    GroupMembershipExtra,
}

impl DriftClass {
    pub const ALL: [DriftClass; 8] = [
        DriftClass::Missing,
        DriftClass::Orphaned,
        DriftClass::Unmanaged,
        DriftClass::AttributeMismatch,
        DriftClass::WronglyActive,
        DriftClass::WronglyInactive,
        DriftClass::GroupMembershipMissing,
        DriftClass::GroupMembershipExtra,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftClass::Missing => "missing",
            DriftClass::Orphaned => "orphaned",
            DriftClass::Unmanaged => "unmanaged",
            DriftClass::AttributeMismatch => "attribute_mismatch",
            DriftClass::WronglyActive => "wrongly_active",
            DriftClass::WronglyInactive => "wrongly_inactive",
            DriftClass::GroupMembershipMissing => "group_membership_missing",
            DriftClass::GroupMembershipExtra => "group_membership_extra",
        }
    }
}

/// One attribute whose value differs, with both values (the mapping never owns secrets that a
/// target returns: `password` is not compared).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeDiff {
    /// The attribute path, e.g. `title`, `name.givenName`, `emails[type eq "work"].value`.
    pub attribute: String,
    /// What the mapping wants.
    pub desired: Value,
    /// What the target holds (`null`: absent).
    pub actual: Value,
}

/// One drift of one subject (or, for unmanaged accounts, one account).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub class: DriftClass,
    /// The subject, when the account is managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The account's id on the target, when there is an account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// The account's `userName` (unmanaged accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// For `attribute_mismatch`: every differing attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeDiff>,
    /// For group membership drift: the group's `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Why, in words (e.g. "out of scope", "the bound account is gone").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether a corrective operation was produced for it.
    pub repairable: bool,
}

impl Finding {
    pub(crate) fn new(class: DriftClass) -> Finding {
        Finding {
            class,
            subject: None,
            resource_id: None,
            user_name: None,
            attributes: Vec::new(),
            group: None,
            detail: None,
            repairable: false,
        }
    }
}

/// The counts of one run on one target: what the daemon exports as metrics (`drift` by target and
/// class, last run time, duration) once reconciliation is scheduled inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub target: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Findings per class; every class is present (zero included).
    pub counts: BTreeMap<DriftClass, u64>,
    /// Subject states read from the store.
    pub subjects: u64,
    /// Accounts read from the target's `/Users`.
    pub accounts_scanned: u64,
    /// Groups read from the target's `/Groups` (0 when the mapping has no group rules).
    pub groups_scanned: u64,
    /// Subjects whose desired state could not be computed (mapping errors).
    pub desired_errors: u64,
}

impl Drift {
    pub(crate) fn new(target: &str, started_at: DateTime<Utc>) -> Drift {
        Drift {
            target: target.to_owned(),
            started_at,
            duration_ms: 0,
            counts: DriftClass::ALL.iter().map(|c| (*c, 0)).collect(),
            subjects: 0,
            accounts_scanned: 0,
            groups_scanned: 0,
            desired_errors: 0,
        }
    }

    /// Findings of every class but `unmanaged` (which is information, not drift to repair).
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(c, _)| **c != DriftClass::Unmanaged)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn count(&self, class: DriftClass) -> u64 {
        self.counts.get(&class).copied().unwrap_or(0)
    }
}

/// A subject whose desired state could not be computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredError {
    pub subject: String,
    pub error: String,
}

/// The JSON artifact of one run on one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    pub target: String,
    pub mapping_version: String,
    pub summary: Drift,
    /// Findings per class, each list in the order found (at most `max_findings_per_class`; the
    /// counts in `summary` are always complete).
    pub findings: BTreeMap<DriftClass, Vec<Finding>>,
    /// Classes whose list was cut at `max_findings_per_class`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<DriftClass>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub desired_errors: Vec<DesiredError>,
    /// Group names held by more than one group on the target (their members are compared as one
    /// group; the duplicates themselves are not repaired).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicate_groups: Vec<String>,
    /// Operations still queued for this target when the run started: their effect is not on the
    /// target yet, so part of the drift may be work in flight.
    pub queued_operations: u64,
    /// Ids of the corrective operations produced (in queue order).
    pub repair_operations: Vec<String>,
}

impl Report {
    /// Every finding of `class`.
    pub fn of(&self, class: DriftClass) -> &[Finding] {
        self.findings.get(&class).map_or(&[], Vec::as_slice)
    }

    /// Counts per class, one line each, for a terminal.
    pub fn human_summary(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "reconcile {}: {} subject(s), {} account(s) and {} group(s) scanned in {:.1}s",
            s.target,
            s.subjects,
            s.accounts_scanned,
            s.groups_scanned,
            s.duration_ms as f64 / 1000.0
        );
        for class in DriftClass::ALL {
            let _ = writeln!(out, "  {:<26} {}", class.as_str(), s.count(class));
        }
        if s.desired_errors > 0 {
            let _ = writeln!(
                out,
                "  {:<26} {} (see desired_errors in the report)",
                "mapping errors", s.desired_errors
            );
        }
        if !self.truncated.is_empty() {
            let names: Vec<&str> = self.truncated.iter().map(|c| c.as_str()).collect();
            let _ = writeln!(out, "  lists cut short: {}", names.join(", "));
        }
        if !self.duplicate_groups.is_empty() {
            let _ = writeln!(
                out,
                "  note: several groups share the name {} (compared as one)",
                self.duplicate_groups.join(", ")
            );
        }
        if self.queued_operations > 0 {
            let _ = writeln!(
                out,
                "  note: {} operation(s) were still queued for this target; run the daemon until idle for an exact picture",
                self.queued_operations
            );
        }
        let _ = write!(out, "  drift total (without unmanaged): {}", s.total());
        out
    }
}
