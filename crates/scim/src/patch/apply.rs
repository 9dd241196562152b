//! Applying PATCH operations to JSON resources (RFC 7644 §3.5.2.1–3).
//!
//! Semantics beyond the RFC text, chosen for interoperability:
//! - `add` to a multi-valued attribute appends values that are not already there: a value is a
//!   duplicate when it is equal, or has the same `value` and no or the same `type`.
//! - `add` with a value filter that matches nothing creates the element when the filter is a
//!   conjunction of `eq` comparisons (`emails[type eq "work"].value`), as Azure AD expects.
//! - A `null` value removes the target; `remove` of something absent is a no-op (idempotent).
//! - `remove` of a multi-valued attribute with a `value` array removes just those values (Azure AD).
//! - `"True"`/`"False"` strings for `active` and `primary` are stored as booleans.
//! - When a value with `"primary": true` is written, other values of that attribute lose their
//!   primary flag (RFC 7643 §2.4).
//! - `id`, `meta` and `schemas` cannot be targeted (`mutability`); in a path-less value, `meta` and
//!   `schemas` are ignored and `id` must equal the current id.

use serde_json::{Map, Value};

use super::{PatchError, PatchOpKind, PatchOperation, PatchRequest};
use crate::error::ScimType;
use crate::filter::{AttrPath, CompareOp, Filter};
use crate::path::{parse_path, PatchPath};
use crate::resource::{get_ci, get_ci_mut, key_ci, remove_ci, set_ci, Object};
use crate::schemas;

/// Applies every operation of `req` to `resource`, atomically.
pub fn apply_patch(resource: &mut Value, req: &PatchRequest) -> Result<(), PatchError> {
    let mut work = resource.clone();
    for (i, op) in req.operations.iter().enumerate() {
        apply_operation(&mut work, op).map_err(|e| e.at(i))?;
    }
    *resource = work;
    Ok(())
}

/// Applies one operation to `resource`. Not atomic on its own: a failing operation may have
/// changed part of a multi-attribute value; [`apply_patch`] restores the original.
pub fn apply_operation(resource: &mut Value, op: &PatchOperation) -> Result<(), PatchError> {
    let Value::Object(obj) = resource else {
        return Err(PatchError::new(
            ScimType::InvalidValue,
            "the resource is not a json object",
        ));
    };
    match op.path.as_deref().map(str::trim) {
        None | Some("") => apply_without_path(obj, op),
        Some(p) if schemas::is_schema_urn(p) => apply_to_schema(obj, p, op),
        Some(p) => {
            let path = parse_path(p).map_err(|e| {
                PatchError::new(ScimType::InvalidPath, format!("invalid path: {e}"))
            })?;
            apply_at_path(obj, &path, op)
        }
    }
}

fn invalid_value(msg: impl Into<String>) -> PatchError {
    PatchError::new(ScimType::InvalidValue, msg)
}

fn invalid_path(msg: impl Into<String>) -> PatchError {
    PatchError::new(ScimType::InvalidPath, msg)
}

fn no_target(msg: impl Into<String>) -> PatchError {
    PatchError::new(ScimType::NoTarget, msg)
}

fn require_value(op: &PatchOperation) -> Result<Value, PatchError> {
    let mut v = op
        .value
        .clone()
        .ok_or_else(|| invalid_value(format!("`{}` needs a `value`", op.op)))?;
    coerce_bools(None, &mut v);
    Ok(v)
}

fn require_object(op: &PatchOperation) -> Result<Map<String, Value>, PatchError> {
    match require_value(op)? {
        Value::Object(o) => Ok(o),
        _ => Err(invalid_value(format!(
            "`{}` without a path needs an object `value`",
            op.op
        ))),
    }
}

/// Stores `"True"`/`"false"` strings of `active` and `primary` as booleans.
fn coerce_bools(name: Option<&str>, v: &mut Value) {
    match v {
        Value::String(s)
            if name.is_some_and(|n| {
                n.eq_ignore_ascii_case("active") || n.eq_ignore_ascii_case("primary")
            }) =>
        {
            if s.eq_ignore_ascii_case("true") {
                *v = Value::Bool(true);
            } else if s.eq_ignore_ascii_case("false") {
                *v = Value::Bool(false);
            }
        }
        Value::Object(o) => o.iter_mut().for_each(|(k, v)| coerce_bools(Some(k), v)),
        Value::Array(items) => items.iter_mut().for_each(|i| coerce_bools(None, i)),
        _ => {}
    }
}

fn check_mutable(path: &AttrPath) -> Result<(), PatchError> {
    if path.extension_urn().is_none() {
        for name in ["id", "meta", "schemas"] {
            if path.attr.eq_ignore_ascii_case(name) {
                return Err(PatchError::new(
                    ScimType::Mutability,
                    format!("attribute `{name}` is read-only and cannot be patched"),
                ));
            }
        }
    }
    Ok(())
}

fn ensure_schema(obj: &mut Object, urn: &str) {
    if let Some(Value::Array(list)) = get_ci_mut(obj, "schemas") {
        if !list
            .iter()
            .any(|s| s.as_str().is_some_and(|s| schemas::urn_eq(s, urn)))
        {
            list.push(Value::String(urn.to_owned()));
        }
    }
}

fn drop_schema(obj: &mut Object, urn: &str) {
    if let Some(Value::Array(list)) = get_ci_mut(obj, "schemas") {
        list.retain(|s| !s.as_str().is_some_and(|s| schemas::urn_eq(s, urn)));
    }
}

/// The object holding the attributes of `urn`; created when `create` is set.
fn container_mut<'a>(
    obj: &'a mut Object,
    urn: Option<&str>,
    create: bool,
) -> Result<Option<&'a mut Object>, PatchError> {
    let Some(urn) = urn.filter(|u| !schemas::is_core(u)) else {
        return Ok(Some(obj));
    };
    let exists = get_ci(obj, urn).is_some_and(|v| !v.is_null());
    if !exists {
        if !create {
            return Ok(None);
        }
        set_ci(obj, urn, Value::Object(Map::new()));
        ensure_schema(obj, urn);
    }
    match get_ci_mut(obj, urn) {
        Some(Value::Object(o)) => Ok(Some(o)),
        _ => Err(invalid_path(format!(
            "extension `{urn}` is not an object in the resource"
        ))),
    }
}

/// Removes an extension object that became empty, with its schema URN.
fn tidy_extension(obj: &mut Object, urn: Option<&str>) {
    let Some(urn) = urn.filter(|u| !schemas::is_core(u)) else {
        return;
    };
    if get_ci(obj, urn)
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        remove_ci(obj, urn);
        drop_schema(obj, urn);
    }
}

fn apply_without_path(obj: &mut Object, op: &PatchOperation) -> Result<(), PatchError> {
    if op.op == PatchOpKind::Remove {
        return Err(no_target("`remove` needs a path"));
    }
    for (key, value) in require_object(op)? {
        apply_member(obj, &key, value, op.op)?;
    }
    Ok(())
}

/// One member of a path-less `add`/`replace` value.
fn apply_member(
    obj: &mut Object,
    key: &str,
    value: Value,
    kind: PatchOpKind,
) -> Result<(), PatchError> {
    if key.eq_ignore_ascii_case("schemas") || key.eq_ignore_ascii_case("meta") {
        return Ok(());
    }
    if key.eq_ignore_ascii_case("id") {
        if get_ci(obj, "id") == Some(&value) {
            return Ok(());
        }
        return Err(PatchError::new(
            ScimType::Mutability,
            "attribute `id` is read-only and cannot be patched",
        ));
    }
    if schemas::is_schema_urn(key) {
        return set_schema(obj, key, value, kind);
    }
    let path = AttrPath::parse(key)
        .map_err(|e| invalid_path(format!("invalid attribute name `{key}` in value: {e}")))?;
    set_attr(obj, &path, value, kind)
}

/// `add`/`replace` of a whole schema's attributes (path-less value member or path = schema URN).
fn set_schema(
    obj: &mut Object,
    urn: &str,
    value: Value,
    kind: PatchOpKind,
) -> Result<(), PatchError> {
    match value {
        Value::Null if !schemas::is_core(urn) => {
            remove_ci(obj, urn);
            drop_schema(obj, urn);
            Ok(())
        }
        Value::Object(members) => {
            for (k, v) in members {
                if schemas::is_core(urn) {
                    apply_member(obj, &k, v, kind)?;
                } else {
                    let mut path = AttrPath::parse(&k).map_err(|e| {
                        invalid_path(format!("invalid attribute name `{k}` in `{urn}`: {e}"))
                    })?;
                    if path.urn.is_some() {
                        return Err(invalid_path(format!(
                            "attribute `{k}` inside `{urn}` must not carry a urn"
                        )));
                    }
                    path.urn = Some(urn.to_owned());
                    set_attr(obj, &path, v, kind)?;
                }
            }
            Ok(())
        }
        _ => Err(invalid_value(format!(
            "the value of `{urn}` must be an object"
        ))),
    }
}

fn apply_to_schema(obj: &mut Object, urn: &str, op: &PatchOperation) -> Result<(), PatchError> {
    if op.op == PatchOpKind::Remove {
        if schemas::is_core(urn) {
            return Err(invalid_path(format!(
                "the core schema `{urn}` cannot be removed"
            )));
        }
        remove_ci(obj, urn);
        drop_schema(obj, urn);
        return Ok(());
    }
    set_schema(obj, urn, require_value(op)?, op.op)
}

fn apply_at_path(
    obj: &mut Object,
    path: &PatchPath,
    op: &PatchOperation,
) -> Result<(), PatchError> {
    match &path.filter {
        None => match op.op {
            PatchOpKind::Remove => match &op.value {
                Some(v) if path.attr.sub_attr.is_none() && !v.is_null() => {
                    remove_values(obj, &path.attr, v)
                }
                _ => remove_attr(obj, &path.attr),
            },
            kind => set_attr(obj, &path.attr, require_value(op)?, kind),
        },
        Some(filter) => apply_filtered(obj, &path.attr, filter, path.sub_attr.as_deref(), op),
    }
}

fn is_duplicate(existing: &Value, new: &Value) -> bool {
    if existing == new {
        return true;
    }
    let (Some(e), Some(n)) = (existing.as_object(), new.as_object()) else {
        return false;
    };
    let same_value =
        matches!((get_ci(e, "value"), get_ci(n, "value")), (Some(a), Some(b)) if a == b);
    let type_ok = match get_ci(n, "type") {
        None => true,
        Some(t) => match (get_ci(e, "type").and_then(Value::as_str), t.as_str()) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        },
    };
    same_value && type_ok
}

fn is_primary(v: &Value) -> bool {
    v.as_object()
        .and_then(|o| get_ci(o, "primary"))
        .is_some_and(|p| p == &Value::Bool(true))
}

/// After writing the values at `changed`, clears `primary` on the others if one of them is primary.
fn normalize_primary(items: &mut [Value], changed: &[usize]) {
    if !changed
        .iter()
        .any(|&i| items.get(i).is_some_and(is_primary))
    {
        return;
    }
    for (i, item) in items.iter_mut().enumerate() {
        if !changed.contains(&i) && is_primary(item) {
            if let Some(p) = item.as_object_mut().and_then(|o| get_ci_mut(o, "primary")) {
                *p = Value::Bool(false);
            }
        }
    }
}

/// Removes nulls inside objects and arrays, recursively: a null member means "absent", so none is
/// ever stored.
pub(super) fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|v| !v.is_null())
                .map(strip_nulls)
                .collect(),
        ),
        v => v,
    }
}

fn set_sub(target: &mut Object, sub: &str, value: Value) {
    if value.is_null() {
        remove_ci(target, sub);
    } else {
        set_ci(target, sub, strip_nulls(value));
    }
}

/// `add`/`replace` at an attribute path without filter.
fn set_attr(
    obj: &mut Object,
    path: &AttrPath,
    mut value: Value,
    kind: PatchOpKind,
) -> Result<(), PatchError> {
    check_mutable(path)?;
    coerce_bools(
        Some(path.sub_attr.as_deref().unwrap_or(&path.attr)),
        &mut value,
    );
    // An empty multi-valued attribute is unassigned (RFC 7643 §2.4).
    if value.is_null() || value.as_array().is_some_and(Vec::is_empty) {
        return remove_attr(obj, path);
    }
    let urn = path.urn.as_deref();
    let Some(c) = container_mut(obj, urn, true)? else {
        return Ok(());
    };
    let attr = path.attr.as_str();
    match &path.sub_attr {
        None => match get_ci_mut(c, attr) {
            None | Some(Value::Null) => set_ci(c, attr, strip_nulls(value)),
            Some(Value::Array(items)) => match (kind, value) {
                (PatchOpKind::Add, value) if !items.is_empty() => {
                    let new = match strip_nulls(value) {
                        Value::Array(v) => v,
                        other => vec![other],
                    };
                    let mut changed = Vec::new();
                    for n in new {
                        if !n.is_null() && !items.iter().any(|e| is_duplicate(e, &n)) {
                            items.push(n);
                            changed.push(items.len() - 1);
                        }
                    }
                    normalize_primary(items, &changed);
                }
                (_, value) => set_ci(c, attr, strip_nulls(value)),
            },
            Some(Value::Object(existing)) if value.is_object() => {
                if let Value::Object(members) = value {
                    for (k, v) in members {
                        set_sub(existing, &k, v);
                    }
                }
            }
            Some(slot) => *slot = strip_nulls(value),
        },
        Some(sub) => match get_ci_mut(c, attr) {
            None | Some(Value::Null) => {
                let mut o = Map::new();
                o.insert(sub.clone(), strip_nulls(value));
                set_ci(c, attr, Value::Object(o));
            }
            Some(Value::Object(o)) => set_sub(o, sub, value),
            Some(Value::Array(items)) => {
                for item in items.iter_mut() {
                    if let Value::Object(o) = item {
                        set_sub(o, sub, value.clone());
                    }
                }
            }
            Some(_) => {
                return Err(invalid_path(format!(
                    "attribute `{attr}` is not complex, so it has no sub-attribute `{sub}`"
                )))
            }
        },
    }
    Ok(())
}

/// `remove` at an attribute path without filter; absent targets are a no-op.
fn remove_attr(obj: &mut Object, path: &AttrPath) -> Result<(), PatchError> {
    check_mutable(path)?;
    let urn = path.urn.as_deref();
    let Some(c) = container_mut(obj, urn, false)? else {
        return Ok(());
    };
    match &path.sub_attr {
        None => {
            remove_ci(c, &path.attr);
        }
        Some(sub) => match get_ci_mut(c, &path.attr) {
            Some(Value::Object(o)) => {
                remove_ci(o, sub);
            }
            Some(Value::Array(items)) => {
                for item in items.iter_mut() {
                    if let Value::Object(o) = item {
                        remove_ci(o, sub);
                    }
                }
            }
            None | Some(Value::Null) => {}
            Some(_) => {
                return Err(invalid_path(format!(
                    "attribute `{}` is not complex, so it has no sub-attribute `{sub}`",
                    path.attr
                )))
            }
        },
    }
    tidy_extension(obj, urn);
    Ok(())
}

/// `remove` of a multi-valued attribute with a `value`: removes just the listed values.
fn remove_values(obj: &mut Object, path: &AttrPath, values: &Value) -> Result<(), PatchError> {
    check_mutable(path)?;
    let urn = path.urn.as_deref();
    let Some(c) = container_mut(obj, urn, false)? else {
        return Ok(());
    };
    let listed: Vec<&Value> = match values {
        Value::Array(v) => v.iter().collect(),
        other => vec![other],
    };
    let attr = path.attr.as_str();
    let now_empty = match get_ci_mut(c, attr) {
        Some(Value::Array(items)) => {
            items.retain(|e| !listed.iter().any(|l| is_duplicate(e, l)));
            items.is_empty()
        }
        None | Some(Value::Null) => false,
        Some(_) => {
            return Err(invalid_path(format!(
                "`remove` with a value needs a multi-valued attribute, and `{attr}` is not one"
            )))
        }
    };
    if now_empty {
        remove_ci(c, attr);
    }
    tidy_extension(obj, urn);
    Ok(())
}

/// The element a filter like `type eq "work" and primary eq true` describes, if it is a
/// conjunction of `eq` comparisons on plain sub-attributes.
fn filter_template(f: &Filter) -> Option<Map<String, Value>> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.urn.is_none() && path.sub_attr.is_none() => {
            let mut m = Map::new();
            m.insert(path.attr.clone(), value.to_json());
            Some(m)
        }
        Filter::And(l, r) => {
            let mut m = filter_template(l)?;
            m.extend(filter_template(r)?);
            Some(m)
        }
        _ => None,
    }
}

fn new_element(
    filter: &Filter,
    sub: Option<&str>,
    value: Value,
    attr: &str,
) -> Result<Value, PatchError> {
    let mut element = filter_template(filter).ok_or_else(|| {
        no_target(format!(
            "no value of `{attr}` matches the filter, and the filter does not describe a new value"
        ))
    })?;
    match (sub, value) {
        (Some(sub), v) => {
            element.insert(sub.to_owned(), v);
        }
        (None, Value::Object(members)) => element.extend(members),
        (None, _) => {
            return Err(invalid_value(format!(
                "the value for a filtered `{attr}` must be an object"
            )))
        }
    }
    Ok(strip_nulls(Value::Object(element)))
}

fn apply_filtered(
    obj: &mut Object,
    attr: &AttrPath,
    filter: &Filter,
    sub: Option<&str>,
    op: &PatchOperation,
) -> Result<(), PatchError> {
    check_mutable(attr)?;
    let value = match op.op {
        PatchOpKind::Remove => None,
        _ => {
            let mut v = require_value(op)?;
            coerce_bools(sub, &mut v);
            Some(v)
        }
    };
    let urn = attr.urn.as_deref();
    let name = attr.attr.as_str();
    let Some(c) = container_mut(obj, urn, op.op == PatchOpKind::Add)? else {
        return match op.op {
            PatchOpKind::Remove => Ok(()),
            _ => Err(no_target(format!(
                "no value of `{name}` matches the filter"
            ))),
        };
    };
    let key = key_ci(c, name).cloned();
    let items = match key.as_deref().and_then(|k| c.get_mut(k)) {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return match (op.op, value) {
                (PatchOpKind::Add, Some(v)) => {
                    let element = new_element(filter, sub, v, name)?;
                    set_ci(c, name, Value::Array(vec![element]));
                    Ok(())
                }
                (PatchOpKind::Remove, _) => Ok(()),
                _ => Err(no_target(format!(
                    "no value of `{name}` matches the filter"
                ))),
            };
        }
        Some(_) => {
            return Err(invalid_path(format!(
                "a value filter needs a multi-valued attribute, and `{name}` is not one"
            )))
        }
    };
    let parent = AttrPath {
        urn: attr.urn.clone(),
        attr: attr.attr.clone(),
        sub_attr: None,
    };
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, e)| filter.matches_element(e, &parent))
        .map(|(i, _)| i)
        .collect();
    match (op.op, value) {
        (PatchOpKind::Remove, _) => {
            match sub {
                Some(sub) => {
                    for &i in &matched {
                        if let Some(o) = items[i].as_object_mut() {
                            remove_ci(o, sub);
                        }
                    }
                }
                None => {
                    let mut i = 0;
                    items.retain(|_| {
                        i += 1;
                        !matched.contains(&(i - 1))
                    });
                }
            }
            if items.is_empty() {
                remove_ci(c, name);
                tidy_extension(obj, urn);
            }
        }
        (kind, Some(value)) => {
            if matched.is_empty() {
                if kind == PatchOpKind::Replace {
                    return Err(no_target(format!(
                        "no value of `{name}` matches the filter"
                    )));
                }
                let element = new_element(filter, sub, value, name)?;
                items.push(element);
                let last = items.len() - 1;
                normalize_primary(items, &[last]);
                return Ok(());
            }
            for &i in &matched {
                match (sub, &value, &mut items[i]) {
                    (Some(sub), v, Value::Object(o)) => set_sub(o, sub, v.clone()),
                    (Some(_), _, _) => {}
                    (None, Value::Object(_), slot) if kind == PatchOpKind::Replace => {
                        *slot = strip_nulls(value.clone());
                    }
                    (None, Value::Object(members), Value::Object(o)) => {
                        for (k, v) in members {
                            set_sub(o, k, v.clone());
                        }
                    }
                    (None, Value::Object(_), slot) => *slot = strip_nulls(value.clone()),
                    (None, _, _) => {
                        return Err(invalid_value(format!(
                            "the value for a filtered `{name}` must be an object"
                        )))
                    }
                }
            }
            normalize_primary(items, &matched);
        }
        (_, None) => {}
    }
    Ok(())
}
