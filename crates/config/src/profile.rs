//! Connector profiles: what a vendor's SCIM service supports and how it answers, as data.
//!
//! A profile is a YAML file, `connectors/<vendor>/profile.yaml`. The `generic` one states what a
//! service that follows RFC 7643 / RFC 7644 and nothing more supports; it must give every section.
//! A vendor profile gives only what differs from `generic` (each fact next to the vendor's
//! documentation URL): everything it leaves out is inherited from `generic`, section by section
//! and field by field. Field reference and how to write one: `docs/connectors.md`.
//!
//! Every profile under `connectors/` is embedded in the binary ([`embedded`], [`embedded_names`]);
//! a target picks one with `connector: <vendor>` (default `generic`) or reads its own with
//! `connector_file: path` ([`parse`]). Parse errors (unknown keys, wrong types) and semantic
//! errors (an unknown filter operator, a 2xx throttle status…) are [`Diagnostic`]s at
//! file:line:column.
//!
//! Invariant: a resolved [`ConnectorProfile`] is complete — consumers never need to fall back to
//! generic behaviour themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use scimflow_core::OpKind;

use crate::Diagnostic;

/// The profile a target gets without `connector:`.
pub const GENERIC: &str = "generic";

/// Every profile shipped under `connectors/`, embedded at build time: `(name, text)`. The name is
/// the directory name and must equal the profile's `name:` (checked by the unit tests, which also
/// check that every `connectors/*/profile.yaml` is listed here).
const EMBEDDED: &[(&str, &str)] = &[
    (
        "generic",
        include_str!("../../../connectors/generic/profile.yaml"),
    ),
    (
        "atlassian",
        include_str!("../../../connectors/atlassian/profile.yaml"),
    ),
    (
        "aws-iam-identity-center",
        include_str!("../../../connectors/aws-iam-identity-center/profile.yaml"),
    ),
    (
        "canva",
        include_str!("../../../connectors/canva/profile.yaml"),
    ),
    (
        "databricks",
        include_str!("../../../connectors/databricks/profile.yaml"),
    ),
    (
        "github-emu",
        include_str!("../../../connectors/github-emu/profile.yaml"),
    ),
    (
        "miro",
        include_str!("../../../connectors/miro/profile.yaml"),
    ),
    (
        "salesforce",
        include_str!("../../../connectors/salesforce/profile.yaml"),
    ),
    (
        "slack",
        include_str!("../../../connectors/slack/profile.yaml"),
    ),
    (
        "snowflake",
        include_str!("../../../connectors/snowflake/profile.yaml"),
    ),
    (
        "zoom",
        include_str!("../../../connectors/zoom/profile.yaml"),
    ),
];

/// Filter operators of RFC 7644 §3.4.2.2 (attribute operators, table 3; logical, table 4).
pub const FILTER_OPERATORS: &[&str] = &[
    "eq", "ne", "co", "sw", "ew", "pr", "gt", "ge", "lt", "le", "and", "or", "not",
];

/// Attributes accounts can be matched by (as in a target's `matching:`).
const MATCHING_ATTRIBUTES: &[&str] = &["externalId", "userName"];

// ----- the resolved profile ----------------------------------------------------------------------

/// What one SCIM service provider supports and how it answers. Complete: every field has a value
/// (inherited from `generic` where the vendor profile is silent).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorProfile {
    /// `name:` — the directory name under `connectors/` for shipped profiles.
    pub name: String,
    pub description: String,
    /// Where the facts come from (the vendor's documentation), in the order given.
    pub sources: Vec<String>,
    /// Resource endpoint paths, relative to the target's `base_url`.
    pub resources: Resources,
    /// How an existing account is updated.
    pub update: UpdateMethod,
    /// Statuses a successful PATCH answers with (RFC 7644 §3.5.2: 200 with the resource or 204).
    pub patch_response: Vec<u16>,
    /// PATCH operations the service accepts (RFC 7644 §3.5.2: add, replace, remove).
    pub patch_operations: Vec<PatchOperation>,
    pub filter: FilterSupport,
    pub deactivate: Deactivation,
    pub delete: Deletion,
    pub groups: GroupSupport,
    pub bulk: BulkSupport,
    /// The documented request quota; `None` = not documented (no default limit).
    pub rate_limit: Option<ProfileRateLimit>,
    /// Attribute → how its *values* compare when matching an account (names are always
    /// case-insensitive, RFC 7643 §2.1). Attributes not listed compare case-exactly.
    pub case_rules: BTreeMap<String, CaseRule>,
    /// Default matching precedence for targets that do not set `matching:`.
    pub matching: Vec<String>,
    /// Statuses that mean "slow down": classified `rate_limited` and retried (RFC 6585: 429; some
    /// services throttle with 403).
    pub throttle_statuses: Vec<u16>,
    /// Statuses that mean "already exists" when answering a create (RFC 7644 §3.3: 409; some
    /// services answer otherwise): classified `conflict`, then looked up and bound.
    pub duplicate_statuses: Vec<u16>,
    /// What a user resource must or may not carry.
    pub user: UserRules,
    /// Where the profile was read from (`connectors/<name>/profile.yaml` or the custom file).
    pub origin: String,
}

/// Resource endpoint paths (RFC 7644 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub users: String,
    pub groups: String,
}

/// How an existing account is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMethod {
    /// RFC 7644 §3.5.2: PATCH with the changed attributes.
    Patch,
    /// RFC 7644 §3.5.1: PUT of the whole resource (for services without a usable PATCH).
    Put,
}

/// One PATCH operation name (RFC 7644 §3.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PatchOperation {
    Add,
    Replace,
    Remove,
}

impl PatchOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOperation::Add => "add",
            PatchOperation::Replace => "replace",
            PatchOperation::Remove => "remove",
        }
    }
}

/// Filtering (RFC 7644 §3.4.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSupport {
    pub supported: bool,
    /// Operators the service accepts, lowercase (a subset of [`FILTER_OPERATORS`]).
    pub operators: Vec<String>,
}

/// How an account is deactivated (`active=false` by convention; RFC 7643 §4.1.1 defines `active`).
#[derive(Debug, Clone, PartialEq)]
pub struct Deactivation {
    pub supported: bool,
    pub method: DeactivateMethod,
    /// The attribute set, e.g. `active`.
    pub path: String,
    /// The value it is set to, e.g. `false`.
    pub value: serde_json::Value,
    pub source: Option<String>,
}

/// The request that deactivates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeactivateMethod {
    Patch,
    Put,
}

/// `DELETE /Users/{id}` (RFC 7644 §3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub supported: bool,
    pub effect: DeleteEffect,
    pub source: Option<String>,
}

/// What a DELETE does to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteEffect {
    /// The account is gone.
    Hard,
    /// The account stays, deactivated or suspended (e.g. Slack: "sets a Slack user to
    /// deactivated"); the SCIM resource may or may not remain.
    Soft,
}

/// Groups (RFC 7643 §4.2) and membership changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSupport {
    pub supported: bool,
    /// Most `members` values one PATCH may add or remove; `None` = no documented limit.
    pub member_changes_per_request: Option<usize>,
    /// Whether `members` may be replaced wholesale (PATCH `replace` of `members`, or PUT).
    pub replace_members: ReplaceMembers,
    pub source: Option<String>,
}

/// Whether a group's member list may be replaced in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceMembers {
    Allowed,
    Forbidden,
}

/// `/Bulk` (RFC 7644 §3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkSupport {
    pub supported: bool,
    /// `maxOperations` (RFC 7643 §5); `None` = not documented.
    pub max_operations: Option<usize>,
    /// `maxPayloadSize` in bytes (RFC 7643 §5); `None` = not documented.
    pub max_payload_bytes: Option<usize>,
    pub source: Option<String>,
}

/// A documented quota.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRateLimit {
    pub per_second: f64,
    /// Documented burst; `None` = the config's default burst.
    pub burst: Option<u32>,
    /// Whether the quota is per tenant / organisation, shared by every client of it (every
    /// target with this connector and the same host should share one limiter).
    pub shared: bool,
    pub source: String,
}

/// How values of an attribute compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseRule {
    CaseExact,
    CaseInsensitive,
}

/// What a user resource must or may not carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRules {
    /// Attribute paths a create must set (e.g. `name.givenName`); a target whose `user:` mapping
    /// lacks one is a config error.
    pub required: Vec<String>,
    /// Multi-valued attributes the service accepts one value of only (e.g. `emails`); a mapping
    /// that writes two typed elements of one is a config error.
    pub single_value: Vec<String>,
    /// Attributes the service does not accept at all.
    pub unsupported: Vec<String>,
}

impl ConnectorProfile {
    /// Whether values of `attribute` compare case-exactly when matching an account. Attribute
    /// names compare case-insensitively (RFC 7643 §2.1); attributes without a rule are case-exact.
    pub fn case_exact(&self, attribute: &str) -> bool {
        self.case_rules
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(attribute))
            .is_none_or(|(_, r)| *r == CaseRule::CaseExact)
    }

    /// Whether `status` means the service is throttling.
    pub fn is_throttle(&self, status: u16) -> bool {
        self.throttle_statuses.contains(&status)
    }

    /// Whether `status`, answering a create, means the resource already exists.
    pub fn is_duplicate(&self, status: u16) -> bool {
        self.duplicate_statuses.contains(&status)
    }

    /// Whether filters with `operator` (e.g. `or`) are accepted.
    pub fn supports_filter_operator(&self, operator: &str) -> bool {
        self.filter.supported
            && self
                .filter
                .operators
                .iter()
                .any(|o| o.eq_ignore_ascii_case(operator))
    }

    /// Whether PATCH accepts `op`.
    pub fn supports_patch_operation(&self, op: PatchOperation) -> bool {
        self.patch_operations.contains(&op)
    }

    /// Why `kind` cannot be sent to this service, or `None` when it can.
    pub fn unsupported(&self, kind: OpKind) -> Option<String> {
        let why = |what: &str, source: &Option<String>| match source {
            Some(s) => format!("{what} (per {s})"),
            None => what.to_owned(),
        };
        match kind {
            OpKind::Delete if !self.delete.supported => Some(why(
                &format!("`{}` does not support DELETE of users", self.name),
                &self.delete.source,
            )),
            OpKind::Deactivate | OpKind::Reactivate if !self.deactivate.supported => Some(why(
                &format!("`{}` does not support deactivating users", self.name),
                &self.deactivate.source,
            )),
            OpKind::GroupAdd | OpKind::GroupRemove if !self.groups.supported => Some(why(
                &format!("`{}` does not support groups", self.name),
                &self.groups.source,
            )),
            _ => None,
        }
    }

    /// A complete profile with nothing supported, for resolving the base profile itself.
    fn blank(origin: &str) -> Self {
        ConnectorProfile {
            name: String::new(),
            description: String::new(),
            sources: Vec::new(),
            resources: Resources {
                users: "/Users".into(),
                groups: "/Groups".into(),
            },
            update: UpdateMethod::Patch,
            patch_response: Vec::new(),
            patch_operations: Vec::new(),
            filter: FilterSupport {
                supported: false,
                operators: Vec::new(),
            },
            deactivate: Deactivation {
                supported: false,
                method: DeactivateMethod::Patch,
                path: "active".into(),
                value: serde_json::Value::Bool(false),
                source: None,
            },
            delete: Deletion {
                supported: false,
                effect: DeleteEffect::Hard,
                source: None,
            },
            groups: GroupSupport {
                supported: false,
                member_changes_per_request: None,
                replace_members: ReplaceMembers::Allowed,
                source: None,
            },
            bulk: BulkSupport {
                supported: false,
                max_operations: None,
                max_payload_bytes: None,
                source: None,
            },
            rate_limit: None,
            case_rules: BTreeMap::new(),
            matching: Vec::new(),
            throttle_statuses: Vec::new(),
            duplicate_statuses: Vec::new(),
            user: UserRules::default(),
            origin: origin.to_owned(),
        }
    }
}

// ----- embedded profiles -------------------------------------------------------------------------

type Parsed = Result<Arc<ConnectorProfile>, Vec<Diagnostic>>;

fn embedded_all() -> &'static [(&'static str, Parsed)] {
    static ALL: OnceLock<Vec<(&'static str, Parsed)>> = OnceLock::new();
    ALL.get_or_init(|| {
        let generic_text = EMBEDDED
            .iter()
            .find(|(n, _)| *n == GENERIC)
            .map(|(_, t)| *t)
            .expect("the generic profile is embedded");
        let generic = resolve_text(generic_text, &origin_of(GENERIC), None).map(Arc::new);
        EMBEDDED
            .iter()
            .map(|(name, text)| {
                let parsed = if *name == GENERIC {
                    generic.clone()
                } else {
                    match &generic {
                        Ok(g) => resolve_text(text, &origin_of(name), Some(g)).map(Arc::new),
                        Err(_) => Err(vec![Diagnostic::file_level(
                            &origin_of(name),
                            "the generic profile it builds on is invalid",
                        )]),
                    }
                };
                (*name, parsed)
            })
            .collect()
    })
}

fn origin_of(name: &str) -> String {
    format!("connectors/{name}/profile.yaml")
}

/// The names of the embedded profiles, `generic` first, then alphabetically.
pub fn embedded_names() -> Vec<&'static str> {
    EMBEDDED.iter().map(|(n, _)| *n).collect()
}

/// The embedded profile `name`: `None` when there is none by that name, `Some(Err(..))` when it
/// does not parse (a build defect the unit tests catch).
pub fn embedded(name: &str) -> Option<Result<Arc<ConnectorProfile>, Vec<Diagnostic>>> {
    embedded_all()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p.clone())
}

/// The embedded `generic` profile.
///
/// # Panics
/// When the embedded generic profile does not parse (a build defect the unit tests catch).
pub fn generic() -> Arc<ConnectorProfile> {
    match embedded(GENERIC) {
        Some(Ok(p)) => p,
        Some(Err(d)) => panic!("the embedded generic profile is invalid: {d:?}"),
        None => panic!("the generic profile is not embedded"),
    }
}

/// Parses a custom profile (`connector_file:`) from `text`, read from `file`, over `generic`.
pub fn parse(text: &str, file: &str) -> Result<ConnectorProfile, Vec<Diagnostic>> {
    let base = match embedded(GENERIC) {
        Some(Ok(g)) => g,
        _ => {
            return Err(vec![Diagnostic::file_level(
                file,
                "the generic profile it builds on is invalid",
            )])
        }
    };
    resolve_text(text, file, Some(&base))
}

// ----- raw form ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Spanned<String>,
    version: Spanned<u32>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    sources: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    resources: Option<RawResources>,
    #[serde(default)]
    update: Option<Spanned<String>>,
    #[serde(default)]
    patch_response: Option<Vec<Spanned<u16>>>,
    #[serde(default)]
    patch_operations: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    filter: Option<RawFilter>,
    #[serde(default)]
    deactivate: Option<RawDeactivate>,
    #[serde(default)]
    delete: Option<RawDelete>,
    #[serde(default)]
    groups: Option<RawGroups>,
    #[serde(default)]
    bulk: Option<RawBulk>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    case_rules: Option<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    matching: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    throttle_statuses: Option<Vec<Spanned<u16>>>,
    #[serde(default)]
    duplicate_statuses: Option<Vec<Spanned<u16>>>,
    #[serde(default)]
    user: Option<RawUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default)]
    users: Option<Spanned<String>>,
    #[serde(default)]
    groups: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    supported: Option<bool>,
    #[serde(default)]
    operators: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeactivate {
    #[serde(default)]
    supported: Option<bool>,
    #[serde(default)]
    method: Option<Spanned<String>>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    source: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelete {
    #[serde(default)]
    supported: Option<bool>,
    #[serde(default)]
    effect: Option<Spanned<String>>,
    #[serde(default)]
    source: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroups {
    #[serde(default)]
    supported: Option<bool>,
    #[serde(default)]
    member_changes_per_request: Option<Spanned<usize>>,
    #[serde(default)]
    replace_members: Option<Spanned<String>>,
    #[serde(default)]
    source: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulk {
    #[serde(default)]
    supported: Option<bool>,
    #[serde(default)]
    max_operations: Option<Spanned<usize>>,
    #[serde(default)]
    max_payload_bytes: Option<Spanned<usize>>,
    #[serde(default)]
    source: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_second: Spanned<f64>,
    #[serde(default)]
    burst: Option<Spanned<u32>>,
    #[serde(default)]
    shared: bool,
    source: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    #[serde(default)]
    required: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    single_value: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    unsupported: Option<Vec<Spanned<String>>>,
}

// ----- resolution --------------------------------------------------------------------------------

/// Parses `text` and resolves it over `base` (`None`: it is the base and must give every section).
fn resolve_text(
    text: &str,
    file: &str,
    base: Option<&ConnectorProfile>,
) -> Result<ConnectorProfile, Vec<Diagnostic>> {
    let raw: RawProfile = serde_saphyr::from_str(text).map_err(|e| {
        vec![Diagnostic::from_yaml(file, &e)
            .with_hint("profile keys are described in docs/connectors.md")]
    })?;
    let mut d = Vec::new();
    let p = resolve(raw, file, base, &mut d);
    if d.is_empty() {
        Ok(p)
    } else {
        d.sort_by_key(|x| (x.line, x.column));
        Err(d)
    }
}

fn resolve(
    raw: RawProfile,
    file: &str,
    base: Option<&ConnectorProfile>,
    d: &mut Vec<Diagnostic>,
) -> ConnectorProfile {
    let at = |loc: Location, msg: String| Diagnostic::at(file, loc, msg);
    let mut p = base
        .cloned()
        .unwrap_or_else(|| ConnectorProfile::blank(file));
    p.origin = file.to_owned();
    if base.is_none() {
        let missing: Vec<&str> = [
            ("description", raw.description.is_some()),
            ("sources", raw.sources.is_some()),
            ("resources", raw.resources.is_some()),
            ("update", raw.update.is_some()),
            ("patch_response", raw.patch_response.is_some()),
            ("patch_operations", raw.patch_operations.is_some()),
            ("filter", raw.filter.is_some()),
            ("deactivate", raw.deactivate.is_some()),
            ("delete", raw.delete.is_some()),
            ("groups", raw.groups.is_some()),
            ("bulk", raw.bulk.is_some()),
            ("case_rules", raw.case_rules.is_some()),
            ("matching", raw.matching.is_some()),
            ("throttle_statuses", raw.throttle_statuses.is_some()),
            ("duplicate_statuses", raw.duplicate_statuses.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| !present)
        .map(|(k, _)| k)
        .collect();
        if !missing.is_empty() {
            d.push(
                Diagnostic::file_level(
                    file,
                    format!(
                        "the base profile must give every section; missing: {}",
                        missing.join(", ")
                    ),
                )
                .with_hint("vendor profiles may leave sections out; the base one may not"),
            );
        }
    }
    if raw.version.value != 1 {
        d.push(at(
            raw.version.referenced,
            format!("unsupported profile version {}", raw.version.value),
        ));
    }
    let name = raw.name.value.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        d.push(
            at(
                raw.name.referenced,
                format!("profile name `{}` is not allowed", raw.name.value),
            )
            .with_hint("use lowercase letters, digits and `-` (the directory name)"),
        );
    }
    p.name = name.to_owned();
    if let Some(desc) = raw.description {
        p.description = desc;
    }
    if let Some(sources) = raw.sources {
        if sources.is_empty() {
            d.push(Diagnostic::file_level(file, "`sources` is empty"));
        }
        for s in &sources {
            check_url(file, s, "sources", d);
        }
        p.sources = sources.into_iter().map(|s| s.value).collect();
    }
    if let Some(r) = raw.resources {
        for (field, v, slot) in [
            ("users", r.users, &mut p.resources.users),
            ("groups", r.groups, &mut p.resources.groups),
        ] {
            if let Some(v) = v {
                if !v.value.starts_with('/') || v.value.contains(char::is_whitespace) {
                    d.push(at(
                        v.referenced,
                        format!("resources.{field} must be a path starting with `/`"),
                    ));
                }
                *slot = v.value;
            }
        }
    }
    if let Some(u) = raw.update {
        match u.value.as_str() {
            "patch" => p.update = UpdateMethod::Patch,
            "put" => p.update = UpdateMethod::Put,
            other => d.push(
                at(u.referenced, format!("unknown update method `{other}`"))
                    .with_hint("choose patch or put"),
            ),
        }
    }
    if let Some(list) = raw.patch_response {
        p.patch_response = statuses(file, list, "patch_response", 200..=299, d);
    }
    if let Some(ops) = raw.patch_operations {
        let mut out = Vec::new();
        for o in ops {
            match o.value.to_ascii_lowercase().as_str() {
                "add" => out.push(PatchOperation::Add),
                "replace" => out.push(PatchOperation::Replace),
                "remove" => out.push(PatchOperation::Remove),
                other => d.push(
                    at(o.referenced, format!("unknown PATCH operation `{other}`"))
                        .with_hint("RFC 7644 §3.5.2 defines add, replace and remove"),
                ),
            }
        }
        out.sort();
        out.dedup();
        p.patch_operations = out;
    }
    if let Some(f) = raw.filter {
        if let Some(s) = f.supported {
            p.filter.supported = s;
        }
        if let Some(ops) = f.operators {
            let mut out = Vec::new();
            for o in ops {
                let lower = o.value.to_ascii_lowercase();
                if FILTER_OPERATORS.contains(&lower.as_str()) {
                    out.push(lower);
                } else {
                    d.push(
                        at(
                            o.referenced,
                            format!("unknown filter operator `{}`", o.value),
                        )
                        .with_hint(format!(
                            "RFC 7644 §3.4.2.2 defines: {}",
                            FILTER_OPERATORS.join(", ")
                        )),
                    );
                }
            }
            p.filter.operators = out;
        }
        if !p.filter.supported {
            p.filter.operators.clear();
        }
    }
    if let Some(x) = raw.deactivate {
        if let Some(s) = x.supported {
            p.deactivate.supported = s;
        }
        if let Some(m) = x.method {
            match m.value.to_ascii_uppercase().as_str() {
                "PATCH" => p.deactivate.method = DeactivateMethod::Patch,
                "PUT" => p.deactivate.method = DeactivateMethod::Put,
                other => d.push(
                    at(m.referenced, format!("unknown deactivate method `{other}`"))
                        .with_hint("choose PATCH or PUT"),
                ),
            }
        }
        if let Some(path) = x.path {
            if path.value.trim().is_empty() {
                d.push(at(path.referenced, "deactivate.path is empty".into()));
            }
            p.deactivate.path = path.value;
        }
        if let Some(v) = x.value {
            p.deactivate.value = v;
        }
        if let Some(s) = x.source {
            check_url(file, &s, "deactivate.source", d);
            p.deactivate.source = Some(s.value);
        }
    }
    if let Some(x) = raw.delete {
        if let Some(s) = x.supported {
            p.delete.supported = s;
        }
        if let Some(e) = x.effect {
            match e.value.as_str() {
                "hard" => p.delete.effect = DeleteEffect::Hard,
                "soft" => p.delete.effect = DeleteEffect::Soft,
                other => d.push(
                    at(e.referenced, format!("unknown delete effect `{other}`")).with_hint(
                        "choose hard (the account is gone) or soft (it stays, deactivated)",
                    ),
                ),
            }
        }
        if let Some(s) = x.source {
            check_url(file, &s, "delete.source", d);
            p.delete.source = Some(s.value);
        }
    }
    if let Some(g) = raw.groups {
        if let Some(s) = g.supported {
            p.groups.supported = s;
        }
        if let Some(n) = g.member_changes_per_request {
            if n.value == 0 {
                d.push(at(
                    n.referenced,
                    "groups.member_changes_per_request must be positive".into(),
                ));
            }
            p.groups.member_changes_per_request = Some(n.value.max(1));
        }
        if let Some(r) = g.replace_members {
            match r.value.as_str() {
                "allowed" => p.groups.replace_members = ReplaceMembers::Allowed,
                "forbidden" => p.groups.replace_members = ReplaceMembers::Forbidden,
                other => d.push(
                    at(r.referenced, format!("unknown replace_members `{other}`"))
                        .with_hint("choose allowed or forbidden"),
                ),
            }
        }
        if let Some(s) = g.source {
            check_url(file, &s, "groups.source", d);
            p.groups.source = Some(s.value);
        }
    }
    if let Some(b) = raw.bulk {
        if let Some(s) = b.supported {
            p.bulk.supported = s;
        }
        for (field, v, slot) in [
            (
                "max_operations",
                b.max_operations,
                &mut p.bulk.max_operations,
            ),
            (
                "max_payload_bytes",
                b.max_payload_bytes,
                &mut p.bulk.max_payload_bytes,
            ),
        ] {
            if let Some(v) = v {
                if v.value == 0 {
                    d.push(at(v.referenced, format!("bulk.{field} must be positive")));
                }
                *slot = Some(v.value.max(1));
            }
        }
        if let Some(s) = b.source {
            check_url(file, &s, "bulk.source", d);
            p.bulk.source = Some(s.value);
        }
        if !p.bulk.supported {
            p.bulk.max_operations = None;
            p.bulk.max_payload_bytes = None;
        }
    }
    if let Some(r) = raw.rate_limit {
        if !(r.per_second.value > 0.0 && r.per_second.value.is_finite()) {
            d.push(at(
                r.per_second.referenced,
                "rate_limit.per_second must be positive".into(),
            ));
        }
        if let Some(b) = &r.burst {
            if b.value == 0 {
                d.push(at(b.referenced, "rate_limit.burst must be positive".into()));
            }
        }
        check_url(file, &r.source, "rate_limit.source", d);
        p.rate_limit = Some(ProfileRateLimit {
            per_second: r.per_second.value,
            burst: r.burst.map(|b| b.value.max(1)),
            shared: r.shared,
            source: r.source.value,
        });
    }
    if let Some(rules) = raw.case_rules {
        for (attr, rule) in rules {
            let rule_value = match rule.value.as_str() {
                "case_exact" => CaseRule::CaseExact,
                "case_insensitive" => CaseRule::CaseInsensitive,
                other => {
                    d.push(
                        at(
                            rule.referenced,
                            format!("unknown case rule `{other}` for `{attr}`"),
                        )
                        .with_hint("choose case_exact or case_insensitive"),
                    );
                    continue;
                }
            };
            // Attribute names are case-insensitive (RFC 7643 §2.1): a vendor's rule replaces the
            // base's for the same attribute however it is spelled.
            p.case_rules.retain(|a, _| !a.eq_ignore_ascii_case(&attr));
            p.case_rules.insert(attr, rule_value);
        }
    }
    if let Some(m) = raw.matching {
        if m.is_empty() {
            d.push(Diagnostic::file_level(file, "`matching` is empty"));
        }
        let mut out = Vec::new();
        for a in m {
            if MATCHING_ATTRIBUTES.contains(&a.value.as_str()) {
                out.push(a.value);
            } else {
                d.push(
                    at(
                        a.referenced,
                        format!("cannot match accounts by `{}`", a.value),
                    )
                    .with_hint("supported matching attributes: externalId, userName"),
                );
            }
        }
        p.matching = out;
    }
    if let Some(list) = raw.throttle_statuses {
        p.throttle_statuses = statuses(file, list, "throttle_statuses", 400..=599, d);
    }
    if let Some(list) = raw.duplicate_statuses {
        p.duplicate_statuses = statuses(file, list, "duplicate_statuses", 400..=599, d);
    }
    if let Some(both) = p
        .throttle_statuses
        .iter()
        .find(|s| p.duplicate_statuses.contains(s))
    {
        d.push(
            Diagnostic::file_level(
                file,
                format!("status {both} is both a throttle status and a duplicate status"),
            )
            .with_hint("a status can mean only one of \"slow down\" and \"already exists\""),
        );
    }
    if let Some(u) = raw.user {
        for (field, list, slot) in [
            ("required", u.required, &mut p.user.required),
            ("single_value", u.single_value, &mut p.user.single_value),
            ("unsupported", u.unsupported, &mut p.user.unsupported),
        ] {
            if let Some(list) = list {
                for v in &list {
                    if v.value.trim().is_empty() || v.value.contains(char::is_whitespace) {
                        d.push(at(
                            v.referenced,
                            format!("user.{field}: `{}` is not an attribute path", v.value),
                        ));
                    }
                }
                *slot = list.into_iter().map(|v| v.value).collect();
            }
        }
    }
    if p.update == UpdateMethod::Patch && p.patch_operations.is_empty() {
        d.push(
            Diagnostic::file_level(file, "`update: patch` but `patch_operations` is empty")
                .with_hint("list the PATCH operations the service accepts, or use `update: put`"),
        );
    }
    p
}

/// Status codes in `range`, each reported where written when outside it.
fn statuses(
    file: &str,
    list: Vec<Spanned<u16>>,
    field: &str,
    range: std::ops::RangeInclusive<u16>,
    d: &mut Vec<Diagnostic>,
) -> Vec<u16> {
    let mut out = Vec::new();
    for s in list {
        if range.contains(&s.value) {
            if !out.contains(&s.value) {
                out.push(s.value);
            }
        } else {
            d.push(Diagnostic::at(
                file,
                s.referenced,
                format!(
                    "{field}: {} is not between {} and {}",
                    s.value,
                    range.start(),
                    range.end()
                ),
            ));
        }
    }
    out
}

fn check_url(file: &str, s: &Spanned<String>, field: &str, d: &mut Vec<Diagnostic>) {
    if !s.value.starts_with("https://") || s.value.contains(char::is_whitespace) {
        d.push(
            Diagnostic::at(
                file,
                s.referenced,
                format!("{field}: `{}` is not an https URL", s.value),
            )
            .with_hint("cite the vendor's own documentation page"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_profile_parses_and_is_named_after_its_directory() {
        for name in embedded_names() {
            let p = match embedded(name) {
                Some(Ok(p)) => p,
                Some(Err(d)) => panic!(
                    "{name}: {}",
                    d.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                None => panic!("{name} is listed but not found"),
            };
            assert_eq!(p.name, name, "profile `name:` must be the directory name");
            assert!(!p.sources.is_empty(), "{name} cites no source");
            assert!(!p.description.is_empty(), "{name} has no description");
            assert!(!p.matching.is_empty(), "{name}");
            assert!(!p.throttle_statuses.is_empty(), "{name}");
            assert!(!p.duplicate_statuses.is_empty(), "{name}");
            assert_eq!(p.origin, format!("connectors/{name}/profile.yaml"));
        }
        assert_eq!(embedded_names()[0], GENERIC);
    }

    #[test]
    fn every_connector_directory_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../connectors");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().join("profile.yaml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = embedded_names().iter().map(|n| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add the new profile to EMBEDDED");
        assert!(embedded.len() >= 11, "generic plus at least ten vendors");
    }

    #[test]
    fn the_generic_profile_is_the_rfc_behaviour() {
        let g = generic();
        assert_eq!(g.update, UpdateMethod::Patch);
        assert_eq!(g.patch_response, vec![200, 204]);
        assert_eq!(
            g.patch_operations,
            vec![
                PatchOperation::Add,
                PatchOperation::Replace,
                PatchOperation::Remove
            ]
        );
        assert_eq!(g.filter.operators.len(), FILTER_OPERATORS.len());
        assert!(g.deactivate.supported && g.delete.supported && g.groups.supported);
        assert_eq!(g.delete.effect, DeleteEffect::Hard);
        assert_eq!(g.groups.member_changes_per_request, None);
        assert!(!g.bulk.supported);
        assert_eq!(g.rate_limit, None);
        assert_eq!(g.matching, vec!["externalId", "userName"]);
        assert_eq!(g.throttle_statuses, vec![429]);
        assert_eq!(g.duplicate_statuses, vec![409]);
        assert!(!g.case_exact("userName"));
        assert!(
            !g.case_exact("USERNAME"),
            "attribute names are case-insensitive"
        );
        assert!(g.case_exact("externalId"));
        assert!(
            g.case_exact("employeeNumber"),
            "unlisted attributes are case-exact"
        );
        assert_eq!(g.resources.users, "/Users");
    }

    #[test]
    fn vendor_profiles_inherit_what_they_leave_out() {
        let aws = embedded("aws-iam-identity-center").unwrap().unwrap();
        assert_eq!(aws.groups.member_changes_per_request, Some(100));
        assert_eq!(aws.groups.replace_members, ReplaceMembers::Forbidden);
        assert!(aws.supports_filter_operator("eq") && aws.supports_filter_operator("AND"));
        assert!(!aws.supports_filter_operator("or"));
        assert_eq!(aws.patch_response, generic().patch_response, "inherited");
        for required in [
            "userName",
            "displayName",
            "name.givenName",
            "name.familyName",
        ] {
            assert!(
                aws.user.required.iter().any(|r| r == required),
                "{required}"
            );
        }
        let slack = embedded("slack").unwrap().unwrap();
        assert_eq!(slack.delete.effect, DeleteEffect::Soft);
        let rl = slack.rate_limit.as_ref().unwrap();
        assert!(rl.shared);
        assert_eq!((rl.per_second, rl.burst), (3.0, Some(20)));
        let gh = embedded("github-emu").unwrap().unwrap();
        assert!(gh.is_throttle(403) && gh.is_throttle(429));
        let sf = embedded("salesforce").unwrap().unwrap();
        assert!(sf.unsupported(OpKind::Delete).is_some());
        assert!(sf.unsupported(OpKind::Deactivate).is_none());
        let snow = embedded("snowflake").unwrap().unwrap();
        assert_eq!(snow.patch_operations, vec![PatchOperation::Replace]);
        let canva = embedded("canva").unwrap().unwrap();
        assert!(canva.case_exact("userName"));
    }

    fn errors(text: &str) -> String {
        parse(text, "p.yaml")
            .unwrap_err()
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_custom_profile_overlays_generic() {
        let p = parse(
            "name: acme\nversion: 1\ndescription: Acme\nsources: [https://acme.example/scim]\nduplicate_statuses: [409, 500]\ngroups: { member_changes_per_request: 50 }\n",
            "acme.yaml",
        )
        .unwrap();
        assert_eq!(p.duplicate_statuses, vec![409, 500]);
        assert_eq!(p.groups.member_changes_per_request, Some(50));
        assert!(p.groups.supported, "inherited from generic");
        assert_eq!(p.throttle_statuses, vec![429]);
        assert_eq!(p.origin, "acme.yaml");
    }

    #[test]
    fn profile_errors_are_located() {
        let text = "name: acme\nversion: 1\nthrottle_statuses: [429, 200]\nfilter: { operators: [eq, like] }\nupdate: post\ndelete: { effect: purge }\nrate_limit: { per_second: 0, source: http://acme.example }\n";
        let e = errors(text);
        for want in [
            "p.yaml:3:26: error: throttle_statuses: 200 is not between 400 and 599",
            "p.yaml:4:27: error: unknown filter operator `like`",
            "p.yaml:5:9: error: unknown update method `post`",
            "p.yaml:6:19: error: unknown delete effect `purge`",
            "rate_limit.per_second must be positive",
            "rate_limit.source: `http://acme.example` is not an https URL",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        let e = errors("name: acme\nversion: 1\nthrotle_statuses: [429]\n");
        assert!(
            e.contains("p.yaml:3:1") && e.contains("throtle_statuses"),
            "{e}"
        );
        let e = errors("name: acme\nversion: 1\nthrottle_statuses: [409]\n");
        assert!(
            e.contains("409 is both a throttle status and a duplicate status"),
            "{e}"
        );
    }
}
