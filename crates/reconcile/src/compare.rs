//! Pure comparison of one account on the target with what the mapping wants for its subject.
//!
//! Only what the mapping owns is compared: the keys of the desired resource (minus `schemas`,
//! create-only attributes and `password`, which targets never return), sub-attribute by
//! sub-attribute, and typed multi-valued elements (`emails[type eq "work"]`) by their `type`.
//! Whatever else the account holds (attributes the target adds, other email types) is not drift.

use serde_json::{Map, Value};

use scimflow_mapping::{Desired, Presence};

use crate::report::{AttributeDiff, DriftClass};

/// What is wrong with one managed account, before group memberships.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountDrift {
    /// The account should not exist (or not be active) any more; `repair` is the operation that
    /// removes it (`None`: the target's `out_of_scope: ignore` says to leave it alone).
    Orphaned {
        detail: &'static str,
        repair: Option<scimflow_core::OpKind>,
    },
    WronglyActive,
    WronglyInactive,
    AttributeMismatch(Vec<AttributeDiff>),
}

impl AccountDrift {
    pub fn class(&self) -> DriftClass {
        match self {
            AccountDrift::Orphaned { .. } => DriftClass::Orphaned,
            AccountDrift::WronglyActive => DriftClass::WronglyActive,
            AccountDrift::WronglyInactive => DriftClass::WronglyInactive,
            AccountDrift::AttributeMismatch(_) => DriftClass::AttributeMismatch,
        }
    }
}

/// The account's `active` flag; `None` when the target does not say (not compared then).
pub fn account_active(account: &Value) -> Option<bool> {
    get_ci(account.as_object()?, "active").and_then(Value::as_bool)
}

/// Everything wrong with `account` given `desired` (empty: in sync). An active subject can have
/// both a wrong `active` flag and attribute mismatches.
pub fn compare_account(desired: &Desired, account: &Value) -> Vec<AccountDrift> {
    use scimflow_core::OpKind;
    let active = account_active(account);
    match desired.presence {
        Presence::Active => {
            let mut out = Vec::new();
            if active == Some(false) {
                out.push(AccountDrift::WronglyInactive);
            }
            let diffs = attribute_diffs(&desired.resource, &desired.create_only, account);
            if !diffs.is_empty() {
                out.push(AccountDrift::AttributeMismatch(diffs));
            }
            out
        }
        Presence::Inactive if active == Some(true) => vec![AccountDrift::WronglyActive],
        Presence::Inactive | Presence::Unknown => Vec::new(),
        Presence::Absent => vec![AccountDrift::Orphaned {
            detail: "deleted by its lifecycle",
            repair: Some(OpKind::Delete),
        }],
        Presence::OutOfScope {
            action: Some(OpKind::Delete),
        } => vec![AccountDrift::Orphaned {
            detail: "out of scope (out_of_scope: delete)",
            repair: Some(OpKind::Delete),
        }],
        Presence::OutOfScope { action } if active != Some(false) => {
            vec![AccountDrift::Orphaned {
                detail: if action.is_some() {
                    "out of scope (out_of_scope: deactivate)"
                } else {
                    "out of scope (out_of_scope: ignore — reported, not repaired)"
                },
                repair: action,
            }]
        }
        Presence::OutOfScope { .. } => Vec::new(),
    }
}

/// The attributes of `desired` (a resource as the mapping builds it) whose values `account` does not
/// hold, leaf by leaf.
pub fn attribute_diffs(
    desired: &Map<String, Value>,
    create_only: &[String],
    account: &Value,
) -> Vec<AttributeDiff> {
    let empty = Map::new();
    let actual = account.as_object().unwrap_or(&empty);
    let mut out = Vec::new();
    for (key, want) in desired {
        if key == "schemas"
            || key.eq_ignore_ascii_case("active")
            || key.eq_ignore_ascii_case("password")
            || create_only.iter().any(|c| c.eq_ignore_ascii_case(key))
        {
            continue;
        }
        compare_value(key, key, want, get_ci(actual, key), &mut out);
    }
    out
}

fn compare_value(
    path: &str,
    name: &str,
    want: &Value,
    have: Option<&Value>,
    out: &mut Vec<AttributeDiff>,
) {
    match want {
        Value::Object(sub) => {
            let have_obj = have.and_then(Value::as_object);
            let urn = path.starts_with("urn:");
            for (k, w) in sub {
                if k.eq_ignore_ascii_case("password") {
                    continue;
                }
                let p = if urn && path == name {
                    format!("{path}:{k}")
                } else {
                    format!("{path}.{k}")
                };
                compare_value(&p, k, w, have_obj.and_then(|o| get_ci(o, k)), out);
            }
        }
        Value::Array(items) if items.iter().all(is_typed) && !items.is_empty() => {
            let have_items = have.and_then(Value::as_array);
            for item in items {
                let ty = item["type"].as_str().unwrap_or_default();
                let found = have_items.and_then(|hs| {
                    hs.iter().find(|h| {
                        h.get("type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.eq_ignore_ascii_case(ty))
                    })
                });
                let fields = item.as_object().expect("typed items are objects");
                for (k, w) in fields {
                    // `type` selects the element; `primary` is the planner's hint for a new list.
                    if k == "type" || k == "primary" {
                        continue;
                    }
                    let p = format!("{path}[type eq \"{ty}\"].{k}");
                    let h = found.and_then(Value::as_object).and_then(|o| get_ci(o, k));
                    compare_value(&p, k, w, h, out);
                }
            }
        }
        _ => {
            let equal = match (want, have) {
                (Value::String(a), Some(Value::String(b)))
                    if name.eq_ignore_ascii_case("userName") =>
                {
                    a.eq_ignore_ascii_case(b)
                }
                (w, Some(h)) => w == h,
                (Value::Null, None) => true,
                (_, None) => false,
            };
            if !equal {
                out.push(AttributeDiff {
                    attribute: path.to_owned(),
                    desired: want.clone(),
                    actual: have.cloned().unwrap_or(Value::Null),
                });
            }
        }
    }
}

fn is_typed(v: &Value) -> bool {
    v.get("type").is_some_and(Value::is_string)
}

/// A member of `m` by SCIM's case-insensitive attribute names (exact match first).
pub(crate) fn get_ci<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scimflow_core::OpKind;
    use serde_json::json;
    use std::collections::{BTreeMap, BTreeSet};

    const EXT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn desired(presence: Presence) -> Desired {
        let resource = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
            "externalId": "E1",
            "userName": "ada@example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"type": "work", "primary": true, "value": "ada@example.com"}],
            "title": "Engineer",
            EXT: {"department": "R&D"},
            "active": presence == Presence::Active,
        });
        Desired {
            presence,
            resource: resource.as_object().unwrap().clone(),
            create_only: Vec::new(),
            matching: Vec::new(),
            groups: BTreeSet::new(),
            manager_subject: None,
            alternatives: BTreeMap::new(),
        }
    }

    /// The account as a target returns it: what was written plus what the target adds.
    fn account(active: bool) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
            "id": "u-1",
            "externalId": "E1",
            "userName": "Ada@Example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": "Ada Lovelace"},
            "emails": [
                {"type": "home", "value": "ada@home.example"},
                {"type": "work", "value": "ada@example.com", "primary": false}
            ],
            "title": "Engineer",
            EXT: {"department": "R&D", "costCenter": "1"},
            "active": active,
            "meta": {"resourceType": "User"}
        })
    }

    #[test]
    fn an_account_holding_what_the_mapping_owns_is_in_sync() {
        assert!(compare_account(&desired(Presence::Active), &account(true)).is_empty());
        assert!(compare_account(&desired(Presence::Inactive), &account(false)).is_empty());
        assert!(compare_account(&desired(Presence::Unknown), &account(true)).is_empty());
    }

    #[test]
    fn attribute_mismatches_name_every_differing_leaf_with_both_values() {
        let mut a = account(true);
        a["title"] = json!("Manager");
        a["name"]["familyName"] = json!("Byron");
        a["emails"][1]["value"] = json!("old@example.com");
        a[EXT].as_object_mut().unwrap().remove("department");
        let drift = compare_account(&desired(Presence::Active), &a);
        let [AccountDrift::AttributeMismatch(diffs)] = drift.as_slice() else {
            panic!("expected one attribute mismatch, got {drift:?}");
        };
        let got: Vec<(&str, Value, Value)> = diffs
            .iter()
            .map(|d| (d.attribute.as_str(), d.desired.clone(), d.actual.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("name.familyName", json!("Lovelace"), json!("Byron")),
                (
                    "emails[type eq \"work\"].value",
                    json!("ada@example.com"),
                    json!("old@example.com")
                ),
                ("title", json!("Engineer"), json!("Manager")),
                (
                    &format!("{EXT}:department") as &str,
                    json!("R&D"),
                    Value::Null
                ),
            ]
        );
    }

    #[test]
    fn create_only_and_password_are_not_compared() {
        let mut d = desired(Presence::Active);
        d.create_only = vec!["title".into()];
        d.resource.insert("password".into(), json!("s3cret"));
        let mut a = account(true);
        a["title"] = json!("Manager");
        assert!(compare_account(&d, &a).is_empty());
    }

    #[test]
    fn active_flag_drift_in_both_directions() {
        assert_eq!(
            compare_account(&desired(Presence::Active), &account(false)),
            vec![AccountDrift::WronglyInactive]
        );
        assert_eq!(
            compare_account(&desired(Presence::Inactive), &account(true)),
            vec![AccountDrift::WronglyActive]
        );
        // A target that does not report `active` is not judged on it.
        let mut a = account(true);
        a.as_object_mut().unwrap().remove("active");
        assert!(compare_account(&desired(Presence::Inactive), &a).is_empty());
    }

    #[test]
    fn orphans_by_lifecycle_and_scope() {
        let orphan = |p, active| {
            compare_account(&desired(p), &account(active))
                .into_iter()
                .map(|d| match d {
                    AccountDrift::Orphaned { repair, .. } => Some(repair),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            orphan(Presence::Absent, false),
            vec![Some(Some(OpKind::Delete))]
        );
        let deact = Presence::OutOfScope {
            action: Some(OpKind::Deactivate),
        };
        assert_eq!(orphan(deact, true), vec![Some(Some(OpKind::Deactivate))]);
        assert!(orphan(deact, false).is_empty(), "already deactivated");
        let ignore = Presence::OutOfScope { action: None };
        assert_eq!(orphan(ignore, true), vec![Some(None)], "reported only");
    }
}
