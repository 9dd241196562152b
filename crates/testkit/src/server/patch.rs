//! A small, self-contained SCIM PATCH implementation (RFC 7644 §3.5.2 subset).
//!
//! Paths: `attr`, `attr.sub`, `attr[filter]`, `attr[filter].sub`, optionally prefixed with a core
//! schema URN; extension attributes as `urn:...:ExtName:attr` live in an object under the URN key.
//! Without a path, `value` is an object whose keys are paths (Entra ID sends `"name.givenName"`).
//! `op` is case-insensitive. Multi-valued `add` appends (skipping duplicates); `remove` of a
//! multi-valued attribute with a `value` array removes the listed elements (matched by `value`).

use serde_json::{Map, Value};

use super::filter::{self, Filter};
use super::ScimError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Add,
    Replace,
    Remove,
}

struct Path {
    /// Extension schema URN whose object holds the attribute.
    ext: Option<String>,
    attr: String,
    filter: Option<Filter>,
    sub: Option<String>,
}

fn invalid_path(p: &str, why: &str) -> ScimError {
    ScimError::new(
        400,
        Some("invalidPath"),
        format!("invalid PATCH path {p:?}: {why}"),
    )
}

fn parse_path(p: &str) -> Result<Path, ScimError> {
    let mut rest = p.trim();
    let mut ext = None;
    for core in [
        "urn:ietf:params:scim:schemas:core:2.0:User:",
        "urn:ietf:params:scim:schemas:core:2.0:Group:",
    ] {
        if rest.len() > core.len() && rest[..core.len()].eq_ignore_ascii_case(core) {
            rest = &rest[core.len()..];
        }
    }
    if rest.to_ascii_lowercase().starts_with("urn:") {
        // The extension URN itself contains dots ("2.0"): split at the last ':' before any '['.
        let head_end = rest.find('[').unwrap_or(rest.len());
        let colon = rest[..head_end]
            .rfind(':')
            .ok_or_else(|| invalid_path(p, "URN without attribute"))?;
        ext = Some(rest[..colon].to_string());
        rest = &rest[colon + 1..];
    }
    let (attr, filter, sub) = if let Some(open) = rest.find('[') {
        let close = rest
            .rfind(']')
            .ok_or_else(|| invalid_path(p, "missing ]"))?;
        if close < open {
            return Err(invalid_path(p, "misplaced ]"));
        }
        let f = filter::parse(&rest[open + 1..close]).map_err(|e| invalid_path(p, &e))?;
        let after = &rest[close + 1..];
        let sub = match after.strip_prefix('.') {
            Some(s) => Some(s.to_string()),
            None if after.is_empty() => None,
            None => return Err(invalid_path(p, "junk after ]")),
        };
        (rest[..open].to_string(), Some(f), sub)
    } else {
        let ap = filter::parse_attr_path(rest).map_err(|e| invalid_path(p, &e))?;
        (ap.attr, None, ap.sub)
    };
    if attr.is_empty() || sub.as_deref() == Some("") {
        return Err(invalid_path(p, "empty attribute"));
    }
    Ok(Path {
        ext,
        attr,
        filter,
        sub,
    })
}

/// The key in `map` that equals `name` case-insensitively, or `name` itself.
fn key_ci(map: &Map<String, Value>, name: &str) -> String {
    if map.contains_key(name) {
        return name.to_string();
    }
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn same_element(a: &Value, b: &Value) -> bool {
    match (filter::get_ci(a, "value"), filter::get_ci(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Merge `value` (an object) into `target` (made an object if it is not).
fn merge(target: &mut Value, value: &Map<String, Value>) {
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in value {
            let key = key_ci(t, k);
            t.insert(key, v.clone());
        }
    }
}

/// Apply a PATCH request body to `resource`.
pub(crate) fn apply(resource: &mut Value, body: &Value) -> Result<(), ScimError> {
    let ops = filter::get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ScimError::new(
                400,
                Some("invalidSyntax"),
                "PATCH body has no Operations array",
            )
        })?;
    for op in ops {
        let kind = match filter::get_ci(op, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("add") => OpKind::Add,
            Some("replace") => OpKind::Replace,
            Some("remove") => OpKind::Remove,
            other => {
                return Err(ScimError::new(
                    400,
                    Some("invalidSyntax"),
                    format!("unknown PATCH op {other:?}"),
                ))
            }
        };
        let value = filter::get_ci(op, "value");
        match filter::get_ci(op, "path").and_then(Value::as_str) {
            Some(p) => apply_path(resource, kind, &parse_path(p)?, value, p)?,
            None => {
                if kind == OpKind::Remove {
                    return Err(ScimError::new(400, Some("noTarget"), "remove needs a path"));
                }
                let Some(Value::Object(map)) = value else {
                    return Err(ScimError::new(
                        400,
                        Some("invalidValue"),
                        "PATCH without path needs an object value",
                    ));
                };
                for (k, v) in map {
                    if k.to_ascii_lowercase().starts_with("urn:")
                        && v.is_object()
                        && !k.contains('[')
                    {
                        // A whole extension object: merge its attributes.
                        let obj = resource.as_object_mut().expect("resources are objects");
                        let key = key_ci(obj, k);
                        let slot = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
                        merge(slot, v.as_object().expect("checked"));
                        continue;
                    }
                    apply_path(resource, kind, &parse_path(k)?, Some(v), k)?;
                }
            }
        }
    }
    Ok(())
}

fn apply_path(
    resource: &mut Value,
    kind: OpKind,
    path: &Path,
    value: Option<&Value>,
    raw: &str,
) -> Result<(), ScimError> {
    let root = resource.as_object_mut().expect("resources are objects");
    let container: &mut Map<String, Value> = match &path.ext {
        Some(urn) => {
            let key = key_ci(root, urn);
            if kind == OpKind::Remove && !root.contains_key(&key) {
                return Ok(());
            }
            let slot = root.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            slot.as_object_mut().expect("made an object")
        }
        None => root,
    };
    let need_value = || {
        value.ok_or_else(|| {
            ScimError::new(400, Some("invalidValue"), format!("{raw}: missing value"))
        })
    };
    let key = key_ci(container, &path.attr);

    if let Some(f) = &path.filter {
        let Some(Value::Array(items)) = container.get_mut(&key) else {
            return match kind {
                OpKind::Remove => Ok(()),
                _ => Err(ScimError::new(
                    400,
                    Some("noTarget"),
                    format!("{raw}: nothing matches"),
                )),
            };
        };
        let hits: Vec<usize> = (0..items.len())
            .filter(|&i| filter::matches(&items[i], f, false))
            .collect();
        if hits.is_empty() && kind != OpKind::Remove {
            return Err(ScimError::new(
                400,
                Some("noTarget"),
                format!("{raw}: nothing matches"),
            ));
        }
        match kind {
            OpKind::Remove => {
                if let Some(sub) = &path.sub {
                    for &i in &hits {
                        if let Some(o) = items[i].as_object_mut() {
                            let k = key_ci(o, sub);
                            o.remove(&k);
                        }
                    }
                } else {
                    for &i in hits.iter().rev() {
                        items.remove(i);
                    }
                    if items.is_empty() {
                        container.remove(&key);
                    }
                }
            }
            OpKind::Add | OpKind::Replace => {
                let v = need_value()?;
                for &i in &hits {
                    match (&path.sub, v) {
                        (Some(sub), v) => {
                            let mut m = Map::new();
                            m.insert(sub.clone(), v.clone());
                            merge(&mut items[i], &m);
                        }
                        (None, Value::Object(m)) => merge(&mut items[i], m),
                        (None, v) => items[i] = v.clone(),
                    }
                }
            }
        }
        return Ok(());
    }

    if let Some(sub) = &path.sub {
        match kind {
            OpKind::Remove => match container.get_mut(&key) {
                Some(Value::Object(o)) => {
                    let k = key_ci(o, sub);
                    o.remove(&k);
                }
                Some(Value::Array(items)) => {
                    for it in items.iter_mut().filter_map(Value::as_object_mut) {
                        let k = key_ci(it, sub);
                        it.remove(&k);
                    }
                }
                _ => {}
            },
            OpKind::Add | OpKind::Replace => {
                let v = need_value()?;
                let slot = container
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if slot.is_array() {
                    return Err(invalid_path(
                        raw,
                        "sub-attribute of a multi-valued attribute needs a filter",
                    ));
                }
                let mut m = Map::new();
                m.insert(sub.clone(), v.clone());
                merge(slot, &m);
            }
        }
        return Ok(());
    }

    match kind {
        OpKind::Remove => match (container.get_mut(&key), value) {
            (Some(Value::Array(items)), Some(Value::Array(remove))) => {
                items.retain(|it| !remove.iter().any(|r| same_element(it, r)));
                if items.is_empty() {
                    container.remove(&key);
                }
            }
            _ => {
                container.remove(&key);
            }
        },
        OpKind::Add => {
            let v = need_value()?;
            match (container.get_mut(&key), v) {
                (Some(Value::Array(items)), Value::Array(new)) => {
                    for n in new {
                        if !items.iter().any(|it| same_element(it, n)) {
                            items.push(n.clone());
                        }
                    }
                }
                (Some(Value::Array(items)), n) => {
                    if !items.iter().any(|it| same_element(it, n)) {
                        items.push(n.clone());
                    }
                }
                (Some(existing @ Value::Object(_)), Value::Object(m)) => merge(existing, m),
                (_, v) => {
                    container.insert(key, v.clone());
                }
            }
        }
        OpKind::Replace => {
            let v = need_value()?;
            match (container.get_mut(&key), v) {
                (Some(existing @ Value::Object(_)), Value::Object(m)) => merge(existing, m),
                (_, v) => {
                    container.insert(key, v.clone());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(mut r: Value, ops: Value) -> Result<Value, ScimError> {
        apply(
            &mut r,
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}),
        )?;
        Ok(r)
    }

    #[test]
    fn simple_paths() {
        let u = json!({"userName": "a", "name": {"givenName": "A"}, "emails": [{"value": "a@x", "type": "work"}]});
        let r = patch(
            u.clone(),
            json!([
                {"op": "Replace", "path": "userName", "value": "b"},
                {"op": "add", "path": "name.familyName", "value": "F"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x"},
                {"op": "add", "path": "emails", "value": [{"value": "c@x", "type": "home"}]},
                {"op": "replace", "value": {"active": false, "name.givenName": "B"}},
                {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "7"},
            ]),
        )
        .unwrap();
        assert_eq!(r["userName"], "b");
        assert_eq!(r["name"], json!({"givenName": "B", "familyName": "F"}));
        assert_eq!(
            r["emails"],
            json!([{"value": "b@x", "type": "work"}, {"value": "c@x", "type": "home"}])
        );
        assert_eq!(r["active"], false);
        assert_eq!(
            r["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
            "7"
        );
        let r = patch(r, json!([{"op": "remove", "path": "emails[type eq \"home\"]"}, {"op": "remove", "path": "name.familyName"}])).unwrap();
        assert_eq!(r["emails"], json!([{"value": "b@x", "type": "work"}]));
        assert_eq!(r["name"], json!({"givenName": "B"}));
    }

    #[test]
    fn members() {
        let g = json!({"displayName": "g"});
        let g = patch(g, json!([{"op": "add", "path": "members", "value": [{"value": "1"}, {"value": "2"}, {"value": "3"}]}])).unwrap();
        let g = patch(
            g,
            json!([{"op": "add", "path": "members", "value": [{"value": "2"}]}]),
        )
        .unwrap();
        assert_eq!(g["members"].as_array().unwrap().len(), 3);
        let g = patch(
            g,
            json!([{"op": "remove", "path": "members[value eq \"2\"]"}]),
        )
        .unwrap();
        let g = patch(
            g,
            json!([{"op": "remove", "path": "members", "value": [{"value": "3"}]}]),
        )
        .unwrap();
        assert_eq!(g["members"], json!([{"value": "1"}]));
        let g = patch(g, json!([{"op": "remove", "path": "members"}])).unwrap();
        assert!(g.get("members").is_none());
    }

    #[test]
    fn errors() {
        let u = json!({"userName": "a"});
        let e = patch(u.clone(), json!([{"op": "remove"}])).unwrap_err();
        assert_eq!(e.scim_type, Some("noTarget"));
        let e = patch(u.clone(), json!([{"op": "frob", "path": "x"}])).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidSyntax"));
        let e = patch(u.clone(), json!([{"op": "add", "path": "a b", "value": 1}])).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidPath"));
        let e = patch(
            u,
            json!([{"op": "replace", "path": "emails[type eq \"x\"].value", "value": 1}]),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some("noTarget"));
    }
}
