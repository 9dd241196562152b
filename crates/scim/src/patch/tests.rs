use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::resource::get_ci;

fn req(v: Value) -> PatchRequest {
    serde_json::from_value(v).unwrap()
}

fn apply(mut resource: Value, ops: Value) -> Result<Value, PatchError> {
    apply_patch(
        &mut resource,
        &req(json!({"schemas": [schemas::PATCH_OP], "Operations": ops})),
    )?;
    Ok(resource)
}

fn group() -> Value {
    json!({
        "schemas": [schemas::GROUP],
        "id": "acbf3ae7-8463-4692-b4fd-9b4da3f908ce",
        "displayName": "Tour Guides",
        "members": [
            {"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen"},
            {"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"}
        ]
    })
}

fn user() -> Value {
    json!({
        "schemas": [schemas::USER],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"}],
        "meta": {"resourceType": "User", "version": "W/\"1\""}
    })
}

#[test]
fn message_shape_is_exact_and_lenient() {
    let r = PatchRequest::new(vec![PatchOperation::replace(
        Some("active".into()),
        json!(false),
    )]);
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#
    );
    // Azure AD style.
    let azure = req(json!({
        "schemas": [schemas::PATCH_OP],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"},
                       {"op": "ADD", "value": {"nickName": "b"}},
                       {"op": "remove", "path": "title"}]
    }));
    assert_eq!(azure.operations[0].op, PatchOpKind::Replace);
    assert_eq!(azure.operations[1].op, PatchOpKind::Add);
    assert_eq!(azure.operations[2].value, None);
    let lower = req(json!({"operations": [{"op": "remove", "path": "x"}]}));
    assert_eq!(lower.schemas, vec![schemas::PATCH_OP.to_owned()]);
    assert!(
        serde_json::from_value::<PatchRequest>(json!({"Operations": [{"op": "move"}]})).is_err()
    );
    // Azure's string booleans are stored as booleans.
    let u = apply(
        user(),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .unwrap();
    assert_eq!(u["active"], false);
}

#[test]
fn rfc_3_5_2_1_add() {
    // Add a member.
    let g = apply(
        group(),
        json!([{
            "op": "add", "path": "members",
            "value": [{"display": "Babs Jensen",
                       "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
                       "value": "2819c223-7f76-453a-919d-413861904646"},
                      {"value": "new-member"}]
        }]),
    )
    .unwrap();
    let members = g["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "the existing member is not duplicated");
    assert_eq!(members[2]["value"], "new-member");
    // Add without path.
    let u = apply(
        user(),
        json!([{
            "op": "add",
            "value": {"emails": [{"value": "babs@jensen.org", "type": "home"},
                                 {"value": "b@other.org", "type": "other"}],
                      "nickname": "Babs"}
        }]),
    )
    .unwrap();
    assert_eq!(u["emails"].as_array().unwrap().len(), 3);
    assert_eq!(u["nickname"], "Babs");
    // Add to a complex attribute merges sub-attributes.
    let u = apply(
        user(),
        json!([{"op": "add", "path": "name", "value": {"middleName": "Jane"}}]),
    )
    .unwrap();
    assert_eq!(
        u["name"],
        json!({"givenName": "Barbara", "familyName": "Jensen", "middleName": "Jane"})
    );
    // Add to an absent attribute creates it; case-insensitive names hit the existing attribute.
    let u = apply(
        user(),
        json!([{"op": "add", "path": "USERNAME", "value": "babs"},
                                 {"op": "add", "path": "title", "value": "Tour Guide"}]),
    )
    .unwrap();
    assert_eq!(
        (u["userName"].as_str(), u["title"].as_str()),
        (Some("babs"), Some("Tour Guide"))
    );
    // Add with a filter that matches nothing creates the described value (Azure AD).
    let u = apply(user(), json!([{"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "555"},
                                 {"op": "add", "path": "emails[type eq \"other\"].value", "value": "o@x"}])).unwrap();
    assert_eq!(u["phoneNumbers"], json!([{"type": "work", "value": "555"}]));
    assert_eq!(u["emails"][2], json!({"type": "other", "value": "o@x"}));
    // Add with a filter that matches sets the sub-attribute.
    let u = apply(
        user(),
        json!([{"op": "add", "path": "emails[type eq \"work\"].display", "value": "Work"}]),
    )
    .unwrap();
    assert_eq!(u["emails"][0]["display"], "Work");
}

#[test]
fn rfc_3_5_2_2_remove() {
    let g = apply(
        group(),
        json!([{"op": "remove",
        "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"}]),
    )
    .unwrap();
    assert_eq!(
        g["members"],
        json!([{"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"}])
    );
    let g = apply(group(), json!([{"op": "remove", "path": "members"}])).unwrap();
    assert!(g.get("members").is_none());
    // Remove then add (RFC example of replacing members with two operations).
    let g = apply(group(), json!([
        {"op": "remove", "path": "members[value eq\"2819c223-7f76-453a-919d-413861904646\"]"},
        {"op": "add", "path": "members", "value": [{"display": "James Smith", "value": "08e1d05d"}]}
    ])).unwrap();
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
    assert_eq!(g["members"][1]["value"], "08e1d05d");
    // Removing every matching value unassigns the attribute.
    let g = apply(
        group(),
        json!([{"op": "remove", "path": "members[value pr]"}]),
    )
    .unwrap();
    assert!(g.get("members").is_none());
    // Sub-attribute of filtered values.
    let u = apply(
        user(),
        json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
    )
    .unwrap();
    assert!(u["emails"][0].get("primary").is_none());
    // Azure AD: remove with a value list.
    let g = apply(
        group(),
        json!([{"op": "Remove", "path": "members",
        "value": [{"value": "902c246b-6245-4190-8e05-00816be7344a"}]}]),
    )
    .unwrap();
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    // Absent targets are a no-op; no path is an error.
    assert_eq!(
        apply(user(), json!([{"op": "remove", "path": "nickName"}])).unwrap(),
        user()
    );
    let e = apply(user(), json!([{"op": "remove"}])).unwrap_err();
    assert_eq!((e.scim_type, e.operation), (ScimType::NoTarget, Some(0)));
}

#[test]
fn rfc_3_5_2_3_replace() {
    let g = apply(group(), json!([{"op": "replace", "path": "members",
        "value": [{"display": "Babs Jensen", "value": "2819c223"}, {"display": "James Smith", "value": "08e1d05d"}]}])).unwrap();
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
    assert_eq!(g["members"][1]["value"], "08e1d05d");
    let u = apply(user(), json!([{"op": "replace", "path": "addresses[type eq \"work\"]",
        "value": {"type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood",
                  "region": "CA", "postalCode": "91608", "country": "US", "primary": true}}])).unwrap();
    assert_eq!(
        u["addresses"][0]["streetAddress"],
        "911 Universal City Plaza"
    );
    assert_eq!(u["addresses"][0]["primary"], true);
    let u = apply(
        user(),
        json!([{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress",
        "value": "1010 Broadway Ave"}]),
    )
    .unwrap();
    assert_eq!(u["addresses"][0]["streetAddress"], "1010 Broadway Ave");
    assert_eq!(u["addresses"][0]["locality"], "Hollywood");
    // Replace without a path: attributes are replaced, complex ones merged.
    let u = apply(
        user(),
        json!([{"op": "replace", "value": {
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                       {"value": "babs@jensen.org", "type": "home"}],
            "nickname": "Babs",
            "name": {"givenName": "Babs"},
            "id": "2819c223-7f76-453a-919d-413861904646",
            "meta": {"version": "ignored"}
        }}]),
    )
    .unwrap();
    assert_eq!(u["nickname"], "Babs");
    assert_eq!(
        u["name"],
        json!({"givenName": "Babs", "familyName": "Jensen"})
    );
    assert_eq!(u["meta"]["version"], "W/\"1\"");
    // Replace with a filter that matches nothing is noTarget.
    let e = apply(
        user(),
        json!([{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x"}]),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, ScimType::NoTarget);
    // A new primary value demotes the others.
    let u = apply(
        user(),
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
    )
    .unwrap();
    assert_eq!(
        (
            u["emails"][0]["primary"].clone(),
            u["emails"][1]["primary"].clone()
        ),
        (json!(false), json!(true))
    );
}

#[test]
fn extensions_are_addressed_by_urn() {
    let ent = schemas::ENTERPRISE_USER;
    let u = apply(
        user(),
        json!([
            {"op": "add", "path": format!("{ent}:department"), "value": "Tour Operations"},
            {"op": "replace", "path": format!("{ent}:manager.value"), "value": "26118915"}
        ]),
    )
    .unwrap();
    assert_eq!(
        u[ent],
        json!({"department": "Tour Operations", "manager": {"value": "26118915"}})
    );
    assert_eq!(u["schemas"], json!([schemas::USER, ent]));
    // Path-less value with an extension object merges into it.
    let u2 = apply(
        u.clone(),
        json!([{"op": "replace", "value": {ent: {"costCenter": "4130"}}}]),
    )
    .unwrap();
    assert_eq!(u2[ent]["costCenter"], "4130");
    assert_eq!(u2[ent]["department"], "Tour Operations");
    // Path = the extension URN.
    let u3 = apply(
        u.clone(),
        json!([{"op": "add", "path": ent, "value": {"division": "Parks"}}]),
    )
    .unwrap();
    assert_eq!(u3[ent]["division"], "Parks");
    let u4 = apply(u.clone(), json!([{"op": "remove", "path": ent}])).unwrap();
    assert!(u4.get(ent).is_none());
    assert_eq!(u4["schemas"], json!([schemas::USER]));
    // Removing the last extension attribute removes the extension.
    let u5 = apply(
        u,
        json!([{"op": "remove", "path": format!("{ent}:department")},
                             {"op": "remove", "path": format!("{ent}:manager")}]),
    )
    .unwrap();
    assert!(u5.get(ent).is_none());
    // A core-schema URN prefix addresses top-level attributes.
    let u6 = apply(
        user(),
        json!([{"op": "replace", "path": format!("{}:userName", schemas::USER), "value": "b"}]),
    )
    .unwrap();
    assert_eq!(u6["userName"], "b");
}

#[test]
fn errors_carry_scim_types_and_leave_resource_unchanged() {
    let cases = [
        (
            json!([{"op": "replace", "path": "id", "value": "x"}]),
            ScimType::Mutability,
        ),
        (
            json!([{"op": "remove", "path": "meta.version"}]),
            ScimType::Mutability,
        ),
        (
            json!([{"op": "replace", "value": {"id": "other"}}]),
            ScimType::Mutability,
        ),
        (
            json!([{"op": "add", "path": "emails[type eq", "value": "x"}]),
            ScimType::InvalidPath,
        ),
        (
            json!([{"op": "add", "path": "userName.x", "value": "x"}]),
            ScimType::InvalidPath,
        ),
        (
            json!([{"op": "add", "path": "userName[value eq \"x\"]", "value": {}}]),
            ScimType::InvalidPath,
        ),
        (
            json!([{"op": "add", "path": "title"}]),
            ScimType::InvalidValue,
        ),
        (
            json!([{"op": "replace", "value": "x"}]),
            ScimType::InvalidValue,
        ),
        (
            json!([{"op": "add", "path": "emails[type eq \"x\" or type eq \"y\"]", "value": {}}]),
            ScimType::NoTarget,
        ),
    ];
    for (ops, expected) in cases {
        let mut u = user();
        let full = json!({"Operations": [{"op": "replace", "path": "title", "value": "changed"}, ops[0].clone()]});
        let e = apply_patch(&mut u, &req(full)).unwrap_err();
        assert_eq!(e.scim_type, expected, "{ops}: {e}");
        assert_eq!(e.operation, Some(1));
        assert_eq!(u, user(), "a failed patch changes nothing");
        let body = e.to_scim_error().to_body();
        assert_eq!(body["status"], "400");
        assert_eq!(body["scimType"], expected.as_str());
    }
    let e = apply(user(), json!([{"op": "add", "path": "a b", "value": 1}])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "patch operation 0: invalid path: expected `[` or the end of the path at position 2, found `b` (invalidPath)"
    );
}

#[test]
fn diff_examples() {
    let old = user();
    let new = json!({
        "id": "ignored", "meta": {"version": "ignored"},
        "userName": "bjensen",
        "displayName": "Babs",
        "name": {"givenName": "Barb"},
        "active": null,
        "emails": [
            {"value": "barbara@example.com", "type": "work", "primary": true},
            {"value": "b@other.org", "type": "other"}
        ],
        schemas::ENTERPRISE_USER: {"department": "Tours"}
    });
    let patch = diff(&old, &new);
    let ops: Vec<(String, Option<String>, Option<Value>)> = patch
        .operations
        .iter()
        .map(|o| (o.op.to_string(), o.path.clone(), o.value.clone()))
        .collect();
    let ent = schemas::ENTERPRISE_USER;
    assert_eq!(
        ops,
        vec![
            (
                "add".into(),
                Some("displayName".into()),
                Some(json!("Babs"))
            ),
            (
                "replace".into(),
                Some("name.givenName".into()),
                Some(json!("Barb"))
            ),
            ("remove".into(), Some("active".into()), None),
            (
                "remove".into(),
                Some("emails[type eq \"home\"]".into()),
                None
            ),
            (
                "replace".into(),
                Some("emails[type eq \"work\"].value".into()),
                Some(json!("barbara@example.com"))
            ),
            (
                "add".into(),
                Some("emails".into()),
                Some(json!([{"value": "b@other.org", "type": "other"}]))
            ),
            (
                "add".into(),
                Some(format!("{ent}:department")),
                Some(json!("Tours"))
            ),
        ]
    );
    let mut applied = old.clone();
    apply_patch(&mut applied, &patch).unwrap();
    assert!(agrees(&applied, &new));
    assert_eq!(applied["id"], old["id"]);
    assert_eq!(
        applied["addresses"], old["addresses"],
        "attributes absent from new are left alone"
    );
    assert!(diff(&applied, &new).is_empty());

    // Group membership: add and remove by value.
    let new_group = json!({"members": [{"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"},
                                       {"value": "08e1d05d"}]});
    let patch = diff(&group(), &new_group);
    assert_eq!(
        serde_json::to_value(&patch).unwrap()["Operations"],
        json!([
            {"op": "remove", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"},
            {"op": "add", "path": "members", "value": [{"value": "08e1d05d"}]}
        ])
    );
    // Untyped multi-valued attributes are replaced whole; empty means remove.
    let patch = diff(&json!({"roles": ["a", "b"]}), &json!({"roles": ["b", "c"]}));
    assert_eq!(
        patch.operations,
        vec![PatchOperation::replace(
            Some("roles".into()),
            json!(["b", "c"])
        )]
    );
    let patch = diff(&json!({"roles": ["a"]}), &json!({"roles": []}));
    assert_eq!(patch.operations, vec![PatchOperation::remove("roles")]);
    assert!(diff(&json!({"roles": ["a", "b"]}), &json!({"roles": ["b", "a"]})).is_empty());
}

/// Removes nulls and empty arrays (both mean "absent").
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().filter(|v| !v.is_null()).map(normalize).collect()),
        v => v.clone(),
    }
}

fn value_agrees(r: Option<&Value>, n: &Value) -> bool {
    let absent = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    let r = r.filter(|v| !absent(v));
    match (r, n) {
        (None, n) if absent(n) => true,
        (None, Value::Object(o)) => o.values().all(|v| value_agrees(None, v)),
        (Some(Value::Object(r)), Value::Object(n)) => {
            n.iter().all(|(k, v)| value_agrees(get_ci(r, k), v))
        }
        (Some(Value::Array(r)), Value::Array(n)) => {
            let mut r: Vec<String> = r.iter().map(|v| normalize(v).to_string()).collect();
            let mut n: Vec<String> = n
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| normalize(v).to_string())
                .collect();
            r.sort();
            n.sort();
            r == n
        }
        (Some(r), n) => normalize(r) == normalize(n),
        (None, _) => false,
    }
}

/// Whether `result` agrees with `new` on every attribute of `new` except id/meta/schemas.
fn agrees(result: &Value, new: &Value) -> bool {
    let r = result.as_object().unwrap();
    new.as_object().unwrap().iter().all(|(k, v)| {
        ["id", "meta", "schemas"].contains(&k.as_str()) || value_agrees(get_ci(r, k), v)
    })
}

fn small_string() -> impl Strategy<Value = Value> {
    prop::sample::select(vec!["a", "b", "B", "c", "Zoë", "quote\"s", "back\\slash"])
        .prop_map(|s| json!(s))
}

fn maybe_null(
    s: impl Strategy<Value = Value> + 'static,
    with_null: bool,
) -> BoxedStrategy<Option<Value>> {
    if with_null {
        prop::option::of(prop_oneof![1 => Just(Value::Null), 4 => s]).boxed()
    } else {
        prop::option::of(s).boxed()
    }
}

fn email() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["work", "home", "other", "Work"]),
        prop::sample::select(vec!["a@x", "b@x", "c@x"]),
        prop::option::of(small_string()),
    )
        .prop_map(|(t, v, d)| {
            let mut e = json!({"type": t, "value": v});
            if let Some(d) = d {
                e["display"] = d;
            }
            e
        })
}

fn member() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["1", "2", "3", "4", "x"]),
        prop::option::of(small_string()),
    )
        .prop_map(|(v, d)| {
            let mut m = json!({"value": v});
            if let Some(d) = d {
                m["display"] = d;
            }
            m
        })
}

fn name_obj(with_null: bool) -> impl Strategy<Value = Value> {
    (
        maybe_null(small_string(), with_null),
        maybe_null(small_string(), with_null),
    )
        .prop_map(|(g, f)| {
            let mut n = json!({});
            if let Some(g) = g {
                n["givenName"] = g;
            }
            if let Some(f) = f {
                n["familyName"] = f;
            }
            n
        })
}

/// A user-like resource; with `with_null`, attributes may be explicit nulls (a desired state).
fn resource(with_null: bool) -> impl Strategy<Value = Value> {
    let ent = (
        maybe_null(small_string(), with_null),
        maybe_null(small_string(), with_null),
    )
        .prop_map(|(d, m)| {
            let mut e = json!({});
            if let Some(d) = d {
                e["department"] = d;
            }
            if let Some(m) = m {
                e["manager"] = json!({"value": m});
            }
            e
        });
    (
        (
            maybe_null(small_string(), with_null),
            maybe_null(small_string(), with_null),
            maybe_null(any::<bool>().prop_map(Value::Bool), with_null),
            maybe_null(name_obj(with_null), with_null),
        ),
        (
            maybe_null(
                prop::collection::vec(email(), 0..4).prop_map(Value::Array),
                with_null,
            ),
            maybe_null(
                prop::collection::vec(member(), 0..4).prop_map(Value::Array),
                with_null,
            ),
            maybe_null(
                prop::collection::vec(small_string(), 0..3).prop_map(Value::Array),
                with_null,
            ),
            maybe_null(ent, with_null),
        ),
    )
        .prop_map(
            |((user_name, display, active, name), (emails, members, roles, ent))| {
                let mut r =
                    json!({"schemas": [schemas::USER], "id": "fixed-id", "meta": {"version": "1"}});
                for (k, v) in [
                    ("userName", user_name),
                    ("displayName", display),
                    ("active", active),
                    ("name", name),
                    ("emails", emails),
                    ("members", members),
                    ("roles", roles),
                    (schemas::ENTERPRISE_USER, ent),
                ] {
                    if let Some(v) = v {
                        r[k] = v;
                    }
                }
                r
            },
        )
}

fn arb_op() -> impl Strategy<Value = PatchOperation> {
    let paths = prop::option::of(prop::sample::select(vec![
        "userName",
        "USERNAME",
        "name",
        "name.givenName",
        "emails",
        "emails.value",
        "emails[type eq \"work\"]",
        "emails[type eq \"work\"].value",
        "emails[value co \"@\" or type pr].display",
        "members",
        "members[value eq \"1\"]",
        "members[not (value eq \"2\")]",
        "roles",
        "roles[value eq \"a\"]",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "id",
        "meta.version",
        "schemas",
        "active",
        "bad[",
        "a.b.c",
        "",
        "emails[type eq \"work\"].value.x",
        "userName.sub",
    ]));
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        small_string(),
        any::<i32>().prop_map(|i| json!(i)),
        Just(json!("True")),
    ];
    let values = leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "value",
                    "type",
                    "primary",
                    "givenName",
                    "department",
                    "emails",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                    "id",
                    "a b"
                ])
                .prop_map(str::to_owned),
                inner,
                0..3
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (
        prop::sample::select(vec![
            PatchOpKind::Add,
            PatchOpKind::Remove,
            PatchOpKind::Replace,
        ]),
        paths,
        prop::option::of(values),
    )
        .prop_map(|(op, path, value)| PatchOperation {
            op,
            path: path.map(str::to_owned),
            value,
        })
}

proptest! {
    #[test]
    fn diff_then_apply_agrees_with_new(old in resource(false), new in resource(true)) {
        let patch = diff(&old, &new);
        let mut applied = old.clone();
        apply_patch(&mut applied, &patch).map_err(|e| TestCaseError::fail(format!("{e}\npatch: {}", serde_json::to_string(&patch).unwrap())))?;
        prop_assert!(agrees(&applied, &new), "applied {applied}\nnew {new}\npatch {}", serde_json::to_string(&patch).unwrap());
        prop_assert_eq!(&applied["id"], &old["id"]);
        prop_assert_eq!(&applied["meta"], &old["meta"]);
        // Attributes absent from new are untouched.
        for (k, v) in old.as_object().unwrap() {
            if new.get(k).is_none() {
                prop_assert_eq!(applied.get(k), Some(v));
            }
        }
        // The patch is idempotent and nothing is left to do.
        let mut twice = applied.clone();
        apply_patch(&mut twice, &patch).map_err(|e| TestCaseError::fail(format!("second application: {e}")))?;
        prop_assert_eq!(&twice, &applied);
        prop_assert!(diff(&applied, &new).is_empty(), "rediff: {}", serde_json::to_string(&diff(&applied, &new)).unwrap());
        // The patch survives serialisation.
        let round: PatchRequest = serde_json::from_str(&serde_json::to_string(&patch).unwrap()).unwrap();
        prop_assert_eq!(round, patch);
    }

    #[test]
    fn replace_and_remove_are_idempotent(r in resource(false), ops in prop::collection::vec(arb_op(), 1..5)) {
        let ops: Vec<PatchOperation> = ops.into_iter().filter(|o| o.op != PatchOpKind::Add).collect();
        let patch = PatchRequest::new(ops);
        let mut once = r.clone();
        if apply_patch(&mut once, &patch).is_ok() {
            let mut twice = once.clone();
            // A filter can stop matching after a replace changed the filtered attribute, in which
            // case the second application fails atomically; otherwise the result is the same.
            if apply_patch(&mut twice, &patch).is_ok() {
                prop_assert_eq!(twice, once);
            }
        }
    }

    #[test]
    fn random_operations_never_panic(r in resource(false), ops in prop::collection::vec(arb_op(), 0..6)) {
        let mut v = r.clone();
        for op in &ops {
            let _ = apply_operation(&mut v, op);
        }
        let mut w = r;
        let _ = apply_patch(&mut w, &PatchRequest::new(ops));
    }
}
