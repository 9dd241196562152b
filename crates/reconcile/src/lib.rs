//! Reconciliation: compares what a target should hold (the latest subject states in the store passed
//! through the current mapping, plus the stored bindings) with what it holds (a paged scan of its
//! `/Users` and `/Groups`), reports the drift ([`Report`], [`Drift`]) and produces the corrective
//! operations ([`Outcome::operations`]).
//!
//! The engine sends no writes: its operations are the same [`Operation`]s the planner produces
//! (upsert, reactivate, deactivate, delete, group add/remove), with deterministic ids
//! `reconcile:{run_id}:{target}:{subject}:{kind}[:{group}]`; the caller enqueues them through the
//! normal delivery path (`Mutation::Enqueue` + an audit record), so rate limits, per-subject ordering,
//! retries, audit and dead letters apply as for any other change. There is no deletion guard yet
//! (issue 4): a repair that deactivates or deletes many accounts is not held back by this crate.
//!
//! # Memory bound
//!
//! A run keeps, per stored subject, a compact index entry (subject id, bound resource id, the
//! account id found, the presence, interned group numbers) plus one map entry per matching key
//! (`externalId`, `userName`): under 1 KB per subject (measured: 134 MB peak for the whole
//! `scimflow reconcile` process at 100,000 accounts, docs/reconciliation.md). Subject
//! states are read from the store a page at a time and their desired resources are computed, used
//! and dropped (computed again for an account when it is met in the scan). The target is read one
//! page at a time (`reconcile.page_size`, default 100) and each page is dropped after comparison;
//! one group's member list is held at a time. The report keeps at most
//! [`Options::max_findings_per_class`] findings per class (counts stay exact; the lists say when
//! they were cut), and operations are produced for the listed findings only.
//!
//! Invariants: only managed accounts (bound in the store, or carrying a subject's matching key)
//! are ever the object of an operation; unmanaged accounts are at most reported. Secrets are never
//! compared or reported (`password` is skipped; targets never return it).

pub mod compare;
pub mod report;
pub mod scan;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;

use scimflow_config::TargetConfig;
use scimflow_core::plan::Planner;
use scimflow_core::store::{Store, StoreError};
use scimflow_core::{OpKind, Operation};
use scimflow_delivery::client::{CallError, ScimClient};
use scimflow_mapping::{Desired, Mapping, Presence};

pub use compare::{attribute_diffs, compare_account, AccountDrift};
pub use report::{AttributeDiff, DesiredError, Drift, DriftClass, Finding, Report};

use compare::get_ci;

/// The `event_kind` of corrective operations (and of their audit records).
pub const REPAIR_EVENT_KIND: &str = "scimflow.reconcile";

/// Why a run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("scanning target `{target}` failed: {error}")]
    Target { target: String, error: CallError },
    #[error("the mapping has no target `{0}`")]
    UnknownTarget(String),
}

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Identifies the run in operation ids and audit records.
    pub run_id: String,
    /// The time the mapping is evaluated at (`now` in expressions) and operations are stamped with.
    pub now: DateTime<Utc>,
    /// Findings listed per class (counts are always complete).
    pub max_findings_per_class: usize,
    /// Subject states read from the store per page.
    pub subject_page: usize,
}

impl Options {
    pub fn new(run_id: impl Into<String>, now: DateTime<Utc>) -> Options {
        Options {
            run_id: run_id.into(),
            now,
            max_findings_per_class: 10_000,
            subject_page: 1_000,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: Report,
    /// The corrective operations, in the order to enqueue them (a subject's account operation before
    /// its group operations). Empty findings produce none; unmanaged accounts never do.
    pub operations: Vec<Operation>,
}

/// Where a run is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Subjects { read: u64 },
    Users { read: u64, total: Option<u64> },
    Groups { read: u64, total: Option<u64> },
}

/// One stored subject, as compact as the comparison allows.
struct Entry {
    subject: Box<str>,
    presence: Presence,
    /// The desired state could not be computed: the account is managed but not judged.
    failed: bool,
    bound: Option<Box<str>>,
    /// The account found for it on the target.
    account: Option<Box<str>>,
    /// Interned group numbers it should belong to (only while active).
    groups: Vec<u32>,
    /// Interned group numbers its account was found in on the target.
    present: Vec<u32>,
}

#[derive(Default)]
struct Index {
    entries: Vec<Entry>,
    /// Resource id (bound, or found by matching key) → entry.
    by_id: HashMap<Box<str>, u32>,
    /// `{attribute}\0{value}` (userName lower-cased) → entry.
    by_key: HashMap<String, u32>,
    group_names: Vec<String>,
    group_numbers: HashMap<String, u32>,
}

fn match_key(attribute: &str, value: &str) -> String {
    if attribute.eq_ignore_ascii_case("userName") {
        format!("userName\0{}", value.to_lowercase())
    } else {
        format!("{attribute}\0{value}")
    }
}

struct Run<'a> {
    store: &'a dyn Store,
    mapping: &'a Mapping,
    target: &'a TargetConfig,
    opts: &'a Options,
    index: Index,
    report: Report,
    operations: Vec<Operation>,
    /// Page by cursor (RFC 9865) instead of by index.
    cursor: bool,
}

/// Reconciles `target`: reads the desired state from `store` and `mapping`, scans the target with
/// `client`, and returns the report and the corrective operations. Sends no writes.
pub async fn reconcile(
    store: &dyn Store,
    mapping: &Mapping,
    target: &TargetConfig,
    client: &ScimClient,
    opts: &Options,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome, ReconcileError> {
    if !mapping.target_names().any(|t| t == target.name) {
        return Err(ReconcileError::UnknownTarget(target.name.clone()));
    }
    let started = std::time::Instant::now();
    let limiter = scan::limiter(target);
    let mut run = Run {
        store,
        mapping,
        target,
        opts,
        index: Index::default(),
        report: Report {
            run_id: opts.run_id.clone(),
            target: target.name.clone(),
            mapping_version: mapping.version().to_owned(),
            summary: Drift::new(&target.name, opts.now),
            findings: BTreeMap::new(),
            truncated: Vec::new(),
            desired_errors: Vec::new(),
            duplicate_groups: Vec::new(),
            queued_operations: store.queue_len(&target.name)?,
            repair_operations: Vec::new(),
        },
        operations: Vec::new(),
        cursor: match target.reconcile.pagination {
            scimflow_config::Pagination::Index => false,
            scimflow_config::Pagination::Cursor => true,
            scimflow_config::Pagination::Auto => {
                scan::offers_cursors(client, limiter.as_ref()).await
            }
        },
    };
    tracing::debug!(target_name = %target.name, cursor = run.cursor, "reconciliation scan paging");
    run.index_subjects(progress)?;
    run.scan_users(client, limiter.as_ref(), progress).await?;
    run.missing()?;
    if mapping.has_group_rules(&target.name) {
        run.scan_groups(client, limiter.as_ref(), progress).await?;
    }
    let mut report = run.report;
    report.summary.duration_ms = started.elapsed().as_millis() as u64;
    report.repair_operations = run.operations.iter().map(|o| o.id.clone()).collect();
    Ok(Outcome {
        report,
        operations: run.operations,
    })
}

impl Run<'_> {
    fn t(&self) -> &str {
        &self.target.name
    }

    fn desired(&self, subject: &str) -> Result<Option<Desired>, StoreError> {
        let Some(state) = self.store.subject(subject)? else {
            return Ok(None);
        };
        Ok(self
            .mapping
            .desired(&state, self.t(), self.opts.now)
            .ok()
            .flatten())
    }

    /// Phase 1: every stored subject → an index entry (no resources kept).
    fn index_subjects(
        &mut self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), ReconcileError> {
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .subject_scan(after.as_deref(), self.opts.subject_page.max(1))?;
            let Some(last) = page.last() else { break };
            after = Some(last.subject.clone());
            for state in page {
                self.report.summary.subjects += 1;
                let bound = self.store.binding(self.t(), &state.subject)?;
                let n = self.index.entries.len() as u32;
                let mut entry = Entry {
                    subject: state.subject.clone().into_boxed_str(),
                    presence: Presence::Unknown,
                    failed: false,
                    bound: bound.map(String::into_boxed_str),
                    account: None,
                    groups: Vec::new(),
                    present: Vec::new(),
                };
                match self.mapping.desired(&state, self.t(), self.opts.now) {
                    Ok(Some(d)) => {
                        entry.presence = d.presence;
                        for k in &d.matching {
                            self.index
                                .by_key
                                .entry(match_key(&k.attribute, &k.value))
                                .or_insert(n);
                        }
                        for g in d.groups {
                            let gi = match self.index.group_numbers.get(&g) {
                                Some(gi) => *gi,
                                None => {
                                    let gi = self.index.group_names.len() as u32;
                                    self.index.group_names.push(g.clone());
                                    self.index.group_numbers.insert(g, gi);
                                    gi
                                }
                            };
                            entry.groups.push(gi);
                        }
                    }
                    Ok(None) => return Err(ReconcileError::UnknownTarget(self.t().to_owned())),
                    Err(e) => {
                        entry.failed = true;
                        self.report.summary.desired_errors += 1;
                        if self.report.desired_errors.len() < self.opts.max_findings_per_class {
                            self.report.desired_errors.push(DesiredError {
                                subject: state.subject.clone(),
                                error: e.to_string(),
                            });
                        }
                    }
                }
                if let Some(id) = &entry.bound {
                    self.index.by_id.insert(id.clone(), n);
                }
                self.index.entries.push(entry);
            }
            progress(Progress::Subjects {
                read: self.report.summary.subjects,
            });
        }
        Ok(())
    }

    /// Records a finding; `false` when the class's list is full (then no operation is produced).
    fn push(&mut self, finding: Finding) -> bool {
        let class = finding.class;
        *self.report.summary.counts.entry(class).or_default() += 1;
        let list = self.report.findings.entry(class).or_default();
        if list.len() >= self.opts.max_findings_per_class {
            if !self.report.truncated.contains(&class) {
                self.report.truncated.push(class);
            }
            return false;
        }
        list.push(finding);
        true
    }

    /// Marks the last finding of `class` as repaired.
    fn mark_repairable(&mut self, class: DriftClass) {
        if let Some(f) = self
            .report
            .findings
            .get_mut(&class)
            .and_then(|l| l.last_mut())
        {
            f.repairable = true;
        }
    }

    /// The entry an account belongs to: its bound id, else its matching keys.
    fn owner(&self, id: &str, account: &Value) -> Option<u32> {
        if let Some(n) = self.index.by_id.get(id) {
            return Some(*n);
        }
        let obj = account.as_object()?;
        self.target.matching.iter().find_map(|attr| {
            let v = match get_ci(obj, attr)? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            self.index.by_key.get(&match_key(attr, &v)).copied()
        })
    }

    /// Phase 2: the target's users, page by page.
    async fn scan_users(
        &mut self,
        client: &ScimClient,
        limiter: Option<&governor::DefaultDirectRateLimiter>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), ReconcileError> {
        let attrs = self.mapping.owned_attributes(self.t());
        let mut pager = scan::Pager::new(
            client,
            limiter,
            "/Users",
            &attrs,
            self.target.reconcile.page_size,
            self.target.max_attempts,
            self.cursor,
        );
        while let Some(page) = pager
            .next_page()
            .await
            .map_err(|error| ReconcileError::Target {
                target: self.t().to_owned(),
                error,
            })?
        {
            for account in page {
                self.report.summary.accounts_scanned += 1;
                self.account(&account)?;
            }
            progress(Progress::Users {
                read: self.report.summary.accounts_scanned,
                total: pager.total().map(|t| t as u64),
            });
        }
        Ok(())
    }

    fn account(&mut self, account: &Value) -> Result<(), ReconcileError> {
        let Some(id) = account.get("id").and_then(Value::as_str) else {
            return Ok(());
        };
        let Some(n) = self.owner(id, account) else {
            if self.target.reconcile.report_unmanaged {
                let mut f = Finding::new(DriftClass::Unmanaged);
                f.resource_id = Some(id.to_owned());
                f.user_name = account
                    .as_object()
                    .and_then(|o| get_ci(o, "userName"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                self.push(f);
            }
            return Ok(());
        };
        let entry = &mut self.index.entries[n as usize];
        let subject = entry.subject.to_string();
        if let Some(first) = &entry.account {
            if &**first == id {
                // The same account again (a target whose pages shifted during the scan).
                return Ok(());
            }
            // A second account for the same subject: reported, never guessed at.
            let detail = format!("a second account for this subject (the first is {first})");
            let mut f = Finding::new(DriftClass::Orphaned);
            f.subject = Some(subject);
            f.resource_id = Some(id.to_owned());
            f.detail = Some(detail);
            self.push(f);
            return Ok(());
        }
        entry.account = Some(id.into());
        if entry.bound.as_deref() != Some(id) {
            self.index.by_id.insert(id.into(), n);
        }
        let entry = &self.index.entries[n as usize];
        if entry.failed || entry.presence == Presence::Unknown {
            return Ok(());
        }
        let Some(desired) = self.desired(&subject)? else {
            return Ok(());
        };
        let drift = compare_account(&desired, account);
        let mut main: Option<OpKind> = None;
        for d in drift {
            let class = d.class();
            let mut f = Finding::new(class);
            f.subject = Some(subject.clone());
            f.resource_id = Some(id.to_owned());
            let repair = match d {
                AccountDrift::Orphaned { detail, repair } => {
                    f.detail = Some(detail.to_owned());
                    repair
                }
                AccountDrift::WronglyActive => Some(OpKind::Deactivate),
                AccountDrift::WronglyInactive => Some(OpKind::Reactivate),
                AccountDrift::AttributeMismatch(diffs) => {
                    f.attributes = diffs;
                    Some(OpKind::Upsert)
                }
            };
            if self.push(f) && repair.is_some() {
                self.mark_repairable(class);
                // Reactivate also converges the attributes: one operation for both.
                main = match (main, repair) {
                    (Some(OpKind::Reactivate), _) => Some(OpKind::Reactivate),
                    (_, r) => r,
                };
            }
        }
        if let Some(kind) = main {
            let op = self.op(&subject, kind, &desired, None);
            self.operations.push(op);
        }
        Ok(())
    }

    /// Phase 3: active subjects without an account.
    fn missing(&mut self) -> Result<(), ReconcileError> {
        for n in 0..self.index.entries.len() {
            let e = &self.index.entries[n];
            if e.failed || e.presence != Presence::Active || e.account.is_some() {
                continue;
            }
            let subject = e.subject.to_string();
            let mut f = Finding::new(DriftClass::Missing);
            f.subject = Some(subject.clone());
            f.detail = Some(match &e.bound {
                Some(id) => format!("the bound account {id} is gone"),
                None => "never provisioned".to_owned(),
            });
            if !self.push(f) {
                continue;
            }
            let Some(desired) = self.desired(&subject)? else {
                continue;
            };
            self.mark_repairable(DriftClass::Missing);
            self.operations
                .push(self.op(&subject, OpKind::Upsert, &desired, None));
            for g in &desired.groups {
                self.operations
                    .push(self.op(&subject, OpKind::GroupAdd, &desired, Some(g)));
            }
        }
        Ok(())
    }

    /// Phase 4: memberships of the groups the mapping puts anyone in. Groups are identified by
    /// `displayName`, as the executor finds them; several groups with one name count as one (the
    /// union of their members) and the name is listed in `duplicate_groups`.
    async fn scan_groups(
        &mut self,
        client: &ScimClient,
        limiter: Option<&governor::DefaultDirectRateLimiter>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), ReconcileError> {
        // Member lists can be long: fewer groups per page keeps each body small.
        let count = self.target.reconcile.page_size.min(20);
        let attrs = vec!["displayName".to_owned(), "members".to_owned()];
        let mut pager = scan::Pager::new(
            client,
            limiter,
            "/Groups",
            &attrs,
            count,
            self.target.max_attempts,
            self.cursor,
        );
        let mut seen = vec![0u32; self.index.group_names.len()];
        while let Some(page) = pager
            .next_page()
            .await
            .map_err(|error| ReconcileError::Target {
                target: self.t().to_owned(),
                error,
            })?
        {
            for group in page {
                self.report.summary.groups_scanned += 1;
                let Some(name) = group.get("displayName").and_then(Value::as_str) else {
                    continue;
                };
                let Some(gi) = self.index.group_numbers.get(name).copied() else {
                    continue;
                };
                seen[gi as usize] += 1;
                let members = group
                    .get("members")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m.get("value").and_then(Value::as_str));
                for id in members {
                    let Some(n) = self.index.by_id.get(id).copied() else {
                        continue;
                    };
                    let e = &mut self.index.entries[n as usize];
                    // Only the subject's found account counts as the subject's membership.
                    if e.account.as_deref() == Some(id) && !e.present.contains(&gi) {
                        e.present.push(gi);
                    }
                }
            }
            progress(Progress::Groups {
                read: self.report.summary.groups_scanned,
                total: pager.total().map(|t| t as u64),
            });
        }
        for (gi, n) in seen.iter().enumerate() {
            if *n > 1 {
                self.report
                    .duplicate_groups
                    .push(self.index.group_names[gi].clone());
            }
        }
        for n in 0..self.index.entries.len() {
            self.memberships(n)?;
        }
        Ok(())
    }

    /// Compares the groups one subject's account is in with the groups it should be in (adds
    /// before removals, as the planner orders them).
    fn memberships(&mut self, n: usize) -> Result<(), ReconcileError> {
        let e = &self.index.entries[n];
        if e.failed || e.presence != Presence::Active || e.account.is_none() {
            return Ok(());
        }
        let missing = e.groups.iter().filter(|g| !e.present.contains(g));
        let extra = e.present.iter().filter(|g| !e.groups.contains(g));
        let found: Vec<(u32, DriftClass)> = missing
            .map(|g| (*g, DriftClass::GroupMembershipMissing))
            .chain(extra.map(|g| (*g, DriftClass::GroupMembershipExtra)))
            .collect();
        if found.is_empty() {
            return Ok(());
        }
        let subject = e.subject.to_string();
        let account = e.account.as_deref().map(str::to_owned);
        let mut desired = None;
        for (gi, class) in found {
            let name = self.index.group_names[gi as usize].clone();
            let mut f = Finding::new(class);
            f.subject = Some(subject.clone());
            f.resource_id = account.clone();
            f.group = Some(name.clone());
            if !self.push(f) {
                continue;
            }
            if desired.is_none() {
                desired = self.desired(&subject)?;
            }
            let Some(d) = &desired else { continue };
            self.mark_repairable(class);
            let kind = if class == DriftClass::GroupMembershipMissing {
                OpKind::GroupAdd
            } else {
                OpKind::GroupRemove
            };
            let op = self.op(&subject, kind, d, Some(&name));
            self.operations.push(op);
        }
        Ok(())
    }

    /// A corrective operation, shaped like the planner's.
    fn op(&self, subject: &str, kind: OpKind, desired: &Desired, group: Option<&str>) -> Operation {
        let t = self.t();
        let run = &self.opts.run_id;
        let id = match group {
            None => format!("reconcile:{run}:{t}:{subject}:{}", kind.as_str()),
            Some(g) => format!("reconcile:{run}:{t}:{subject}:{}:{g}", kind.as_str()),
        };
        let account_op = group.is_none();
        let mut resource = desired.resource.clone();
        match kind {
            OpKind::Deactivate => {
                resource.insert("active".into(), Value::Bool(false));
            }
            OpKind::Upsert | OpKind::Reactivate => {
                resource.insert("active".into(), Value::Bool(true));
            }
            _ => {}
        }
        Operation {
            id,
            target: t.to_owned(),
            subject: subject.to_owned(),
            event_id: format!("reconcile:{run}"),
            event_kind: REPAIR_EVENT_KIND.to_owned(),
            event_time: None,
            planned_at: self.opts.now,
            kind,
            // Group operations need only the account's matching keys (as the planner's).
            resource: if account_op {
                Value::Object(resource)
            } else {
                Value::Null
            },
            matching: desired.matching.clone(),
            mapping_version: self.mapping.version().to_owned(),
            traceparent: None,
            group: group.map(str::to_owned),
            create_only: if account_op {
                desired.create_only.clone()
            } else {
                Vec::new()
            },
            // No minimal PATCH: the executor replaces every owned attribute, which is what
            // converging an account of unknown content needs.
            patch: None,
            manager_subject: if account_op {
                desired.manager_subject.clone()
            } else {
                None
            },
            alternatives: if account_op {
                desired.alternatives.clone()
            } else {
                BTreeMap::new()
            },
            origin: None,
            retry: None,
        }
    }
}

#[cfg(test)]
mod tests;
