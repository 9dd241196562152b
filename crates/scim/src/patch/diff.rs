//! Computing the minimal PATCH between two resources.
//!
//! Rules (the mapping owns only some attributes, so `new` is a partial view):
//! - Only attributes present in `new` are considered; an explicit `null` means "remove".
//! - `id`, `meta` and `schemas` are never touched; keys that are not valid attribute names are
//!   skipped; extension objects (under a schema URN key) are diffed attribute by attribute.
//! - Complex single-valued attributes (`name`, `manager`) are diffed per sub-attribute.
//! - Multi-valued attributes whose values all carry a distinct `type` are diffed per type with value
//!   filters (`replace emails[type eq "work"].value`); those whose values all carry a distinct
//!   `value` (group `members`) by value (`add members [..]`, `remove members[value eq ".."]`);
//!   anything else is replaced whole. Order of multi-valued attributes is not significant.
//! - New attributes are `add`ed, changed ones `replace`d, removed ones `remove`d.

use serde_json::{Map, Value};

use super::{PatchOperation, PatchRequest};
use crate::filter::{is_attr_name, AttrPath, CompValue, CompareOp, Filter};
use crate::path::PatchPath;
use crate::resource::{get_ci, Object};
use crate::{discovery, schemas};

/// The minimal PATCH that makes `old` agree with `new` on every attribute present in `new`.
pub fn diff(old: &Value, new: &Value) -> PatchRequest {
    let empty = Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let mut ops = Vec::new();
    if let Some(new) = new.as_object() {
        diff_top(old, new, &mut ops);
    }
    PatchRequest::new(ops)
}

fn diff_top(old: &Object, new: &Object, ops: &mut Vec<PatchOperation>) {
    let empty = Map::new();
    for (key, nv) in new {
        if ["id", "meta", "schemas"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
        {
            continue;
        }
        if schemas::is_schema_urn(key) {
            if schemas::is_core(key) {
                if let Value::Object(n) = nv {
                    diff_top(old, n, ops);
                }
                continue;
            }
            match nv {
                Value::Null if get_ci(old, key).is_some_and(|v| !v.is_null()) => {
                    ops.push(PatchOperation::remove(key.clone()));
                }
                Value::Object(n) => {
                    let o = get_ci(old, key)
                        .and_then(Value::as_object)
                        .unwrap_or(&empty);
                    for (attr, av) in n {
                        diff_attr(get_ci(o, attr), attr, Some(key), av, ops);
                    }
                }
                _ => {}
            }
            continue;
        }
        diff_attr(get_ci(old, key), key, None, nv, ops);
    }
}

/// Removes nulls from objects, recursively (they mean "absent").
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(strip_nulls)
                .collect(),
        ),
        v => v.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn path_of(attr: &AttrPath) -> Option<String> {
    Some(attr.to_string())
}

fn diff_attr(
    old: Option<&Value>,
    name: &str,
    urn: Option<&str>,
    new: &Value,
    ops: &mut Vec<PatchOperation>,
) {
    if !is_attr_name(name) {
        return;
    }
    let old = old.filter(|v| !v.is_null());
    if old.is_some_and(|o| o == new) {
        // Unchanged: nothing to do (and no path to build).
        return;
    }
    let attr = AttrPath {
        urn: urn.map(str::to_owned),
        attr: name.to_owned(),
        sub_attr: None,
    };
    match (old, new) {
        (None, Value::Null) => {}
        (Some(_), Value::Null) => ops.push(PatchOperation::remove(attr.to_string())),
        (None, n) => {
            let n = strip_nulls(n);
            if !is_empty(&n) {
                ops.push(PatchOperation::add(path_of(&attr), n));
            }
        }
        (Some(o), n) if o == n => {}
        (Some(Value::Object(o)), Value::Object(n)) => {
            for (sub, sv) in n {
                if !is_attr_name(sub) {
                    continue;
                }
                let path = attr.clone().with_sub(sub.clone());
                match (get_ci(o, sub).filter(|v| !v.is_null()), sv) {
                    (None, Value::Null) => {}
                    (Some(_), Value::Null) => ops.push(PatchOperation::remove(path.to_string())),
                    (Some(x), y) if x == y => {}
                    (None, y) => {
                        let y = strip_nulls(y);
                        if !is_empty(&y) {
                            ops.push(PatchOperation::add(path_of(&path), y));
                        }
                    }
                    (Some(_), y) => {
                        ops.push(PatchOperation::replace(path_of(&path), strip_nulls(y)))
                    }
                }
            }
        }
        (Some(Value::Array(o)), Value::Array(n)) => diff_multi(o, n, &attr, ops),
        (Some(_), n) => ops.push(PatchOperation::replace(path_of(&attr), strip_nulls(n))),
    }
}

/// Whether two lists hold the same values, ignoring order.
fn multiset_eq(a: &[Value], b: &[Value]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(
        |x| match b.iter().enumerate().position(|(i, y)| !used[i] && x == y) {
            Some(i) => {
                used[i] = true;
                true
            }
            None => false,
        },
    )
}

fn diff_multi(old: &[Value], new: &[Value], attr: &AttrPath, ops: &mut Vec<PatchOperation>) {
    let new: Vec<Value> = new
        .iter()
        .filter(|v| !v.is_null())
        .map(strip_nulls)
        .collect();
    if multiset_eq(old, &new) {
        return;
    }
    if new.is_empty() {
        ops.push(PatchOperation::remove(attr.to_string()));
        return;
    }
    let exact = discovery::is_case_exact(attr.urn.as_deref(), &attr.attr, Some("value"));
    let plan = keyed_plan(old, &new, attr, "type", false)
        .or_else(|| keyed_plan(old, &new, attr, "value", exact));
    match plan {
        Some(plan) => ops.extend(plan),
        None => ops.push(PatchOperation::replace(path_of(attr), Value::Array(new))),
    }
}

/// The identity of an element under `key` (lowercased unless `exact`), if it has a scalar one.
fn element_key(v: &Value, key: &str, exact: bool) -> Option<(String, CompValue)> {
    let raw = get_ci(v.as_object()?, key)?;
    let cv = CompValue::from_json(raw)?;
    let id = match raw {
        Value::String(s) if !exact => format!("s{}", s.to_lowercase()),
        Value::String(s) => format!("s{s}"),
        Value::Null => return None,
        other => format!("o{other}"),
    };
    Some((id, cv))
}

fn keys_of(items: &[Value], key: &str, exact: bool) -> Option<Vec<(String, CompValue)>> {
    let keys: Vec<(String, CompValue)> = items
        .iter()
        .map(|v| element_key(v, key, exact))
        .collect::<Option<_>>()?;
    let mut ids: Vec<&String> = keys.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    (ids.len() == keys.len()).then_some(keys)
}

fn selector(key: &str, value: &CompValue) -> Filter {
    Filter::Compare {
        path: AttrPath::new(key),
        op: CompareOp::Eq,
        value: value.clone(),
    }
}

/// Per-element diff of a multi-valued attribute whose elements are identified by `key`.
fn keyed_plan(
    old: &[Value],
    new: &[Value],
    attr: &AttrPath,
    key: &str,
    exact: bool,
) -> Option<Vec<PatchOperation>> {
    let old_keys = keys_of(old, key, exact)?;
    let new_keys = keys_of(new, key, exact)?;
    let per_sub = key == "type";
    let mut removes = Vec::new();
    let mut updates = Vec::new();
    let mut added = Vec::new();
    for (oid, ov) in &old_keys {
        if !new_keys.iter().any(|(nid, _)| nid == oid) {
            removes.push(selector(key, ov));
        }
    }
    for ((nid, _), nel) in new_keys.iter().zip(new) {
        let Some(i) = old_keys.iter().position(|(oid, _)| oid == nid) else {
            added.push(nel.clone());
            continue;
        };
        let oel = &old[i];
        if oel == nel {
            continue;
        }
        let filter = selector(key, &old_keys[i].1);
        if !per_sub {
            updates.push(PatchOperation::replace(
                Some(PatchPath::filtered(attr.clone(), filter, None).to_string()),
                nel.clone(),
            ));
            continue;
        }
        let (o, n) = (oel.as_object()?, nel.as_object()?);
        for k in o.keys() {
            if !is_attr_name(k) {
                return None;
            }
            if get_ci(n, k).is_none() {
                let p = PatchPath::filtered(attr.clone(), filter.clone(), Some(k.clone()));
                updates.push(PatchOperation::remove(p.to_string()));
            }
        }
        for (k, v) in n {
            if !is_attr_name(k) {
                return None;
            }
            if get_ci(o, k) != Some(v) {
                let p = PatchPath::filtered(attr.clone(), filter.clone(), Some(k.clone()));
                updates.push(PatchOperation::replace(Some(p.to_string()), v.clone()));
            }
        }
    }
    let mut ops = Vec::new();
    if let Some(first) = removes.first().cloned() {
        let filter = removes.into_iter().skip(1).fold(first, Filter::or);
        ops.push(PatchOperation::remove(
            PatchPath::filtered(attr.clone(), filter, None).to_string(),
        ));
    }
    ops.extend(updates);
    if !added.is_empty() {
        ops.push(PatchOperation::add(path_of(attr), Value::Array(added)));
    }
    Some(ops)
}
