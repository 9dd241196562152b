//! The mapping stage: compiles the targets' `lifecycle` and `user` mappings from the config into a
//! [`Mapping`], a pure [`Planner`] — `plan(event, prior state) -> operations` with no I/O.
//!
//! Invariants: planning is deterministic (the same event yields the same operation ids, so a replay
//! is recognised downstream); an evaluation error affects only that event on that target.

pub mod expr;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use serde_json::{Map, Value};

use scimflow_config::{Config, Diagnostic, Diagnostics, Lifecycle};
use scimflow_core::op::MatchKey;
use scimflow_core::plan::{Plan, PlanError, Planner};
use scimflow_core::{Event, OpKind, Operation, SubjectState};

/// URN of the core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// A compiled mapping for every target.
#[derive(Debug, Clone)]
pub struct Mapping {
    version: String,
    known_types: BTreeSet<String>,
    targets: Vec<CompiledTarget>,
}

#[derive(Debug, Clone)]
struct CompiledTarget {
    name: String,
    lifecycle: BTreeMap<String, Lifecycle>,
    matching: Vec<String>,
    attributes: Vec<(AttrPath, expr::Expr, String)>,
}

/// Where in a SCIM resource an attribute mapping writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrPath {
    /// `attr` or `attr.sub`, optionally inside an extension schema (`urn:…:User:attr`).
    Plain {
        schema: Option<String>,
        attr: String,
        sub: Option<String>,
    },
    /// `attr[type eq "work"].sub`: the element of a multi-valued attribute with that `type`.
    Typed {
        attr: String,
        type_value: String,
        sub: String,
    },
}

impl AttrPath {
    /// Parses a mapping key. Supports `a`, `a.b`, `urn:…:Schema:a[.b]` and `a[type eq "x"].b`.
    pub fn parse(path: &str) -> Result<AttrPath, String> {
        let ident = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        if let Some(open) = path.find('[') {
            let attr = &path[..open];
            let rest = &path[open + 1..];
            let close = rest.find(']').ok_or("missing `]`")?;
            let filter = rest[..close].trim();
            let after = &rest[close + 1..];
            let sub = after
                .strip_prefix('.')
                .ok_or("expected `.sub` after `]`, e.g. emails[type eq \"work\"].value")?;
            let mut words = filter.splitn(3, ' ');
            let (Some(a), Some(op), Some(v)) = (words.next(), words.next(), words.next()) else {
                return Err("the filter must be `type eq \"value\"`".into());
            };
            let v = v.trim();
            if !a.eq_ignore_ascii_case("type")
                || !op.eq_ignore_ascii_case("eq")
                || v.len() < 2
                || !v.starts_with('"')
                || !v.ends_with('"')
            {
                return Err("the filter must be `type eq \"value\"`".into());
            }
            if !ident(attr) || !ident(sub) {
                return Err("attribute names are letters, digits and `_`".into());
            }
            return Ok(AttrPath::Typed {
                attr: attr.into(),
                type_value: v[1..v.len() - 1].into(),
                sub: sub.into(),
            });
        }
        let (schema, local) = if path.starts_with("urn:") {
            let i = path.rfind(':').ok_or("bad URN")?;
            (Some(path[..i].to_owned()), &path[i + 1..])
        } else {
            (None, path)
        };
        let (attr, sub) = match local.split_once('.') {
            Some((a, s)) => (a, Some(s.to_owned())),
            None => (local, None),
        };
        if !ident(attr) || sub.as_deref().is_some_and(|s| !ident(s)) {
            return Err(format!("`{path}` is not a SCIM attribute path"));
        }
        if schema.is_none() && matches!(attr, "id" | "meta" | "schemas") {
            return Err(format!(
                "`{attr}` is assigned by the target and cannot be mapped"
            ));
        }
        Ok(AttrPath::Plain {
            schema,
            attr: attr.into(),
            sub,
        })
    }

    /// Writes `value` into `resource` at this path.
    pub fn set(&self, resource: &mut Map<String, Value>, value: Value) {
        match self {
            AttrPath::Plain { schema, attr, sub } => {
                let container = match schema {
                    Some(urn) if urn != USER_SCHEMA => {
                        add_schema(resource, urn);
                        obj_entry(resource, urn)
                    }
                    _ => resource,
                };
                match sub {
                    None => {
                        container.insert(attr.clone(), value);
                    }
                    Some(s) => {
                        obj_entry(container, attr).insert(s.clone(), value);
                    }
                }
            }
            AttrPath::Typed {
                attr,
                type_value,
                sub,
            } => {
                let arr = resource
                    .entry(attr.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !arr.is_array() {
                    *arr = Value::Array(Vec::new());
                }
                let items = arr.as_array_mut().expect("array");
                let pos = items
                    .iter()
                    .position(|i| i.get("type").and_then(Value::as_str) == Some(type_value));
                let item = match pos {
                    Some(p) => &mut items[p],
                    None => {
                        let primary = items.is_empty();
                        let mut m = Map::new();
                        m.insert("type".into(), Value::String(type_value.clone()));
                        if primary {
                            m.insert("primary".into(), Value::Bool(true));
                        }
                        items.push(Value::Object(m));
                        items.last_mut().expect("pushed")
                    }
                };
                if let Some(o) = item.as_object_mut() {
                    o.insert(sub.clone(), value);
                }
            }
        }
    }
}

fn obj_entry<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("object")
}

fn add_schema(resource: &mut Map<String, Value>, urn: &str) {
    if let Some(Value::Array(s)) = resource.get_mut("schemas") {
        if !s.iter().any(|x| x == urn) {
            s.push(Value::String(urn.to_owned()));
        }
    }
}

/// Compiles the mappings of every target in `config`, reporting every problem.
pub fn compile(config: &Config) -> Result<Mapping, Diagnostics> {
    let mut diags = Vec::new();
    let mut targets = Vec::new();
    for t in &config.targets {
        let mut attributes = Vec::new();
        for m in &t.user {
            let path = match AttrPath::parse(&m.path) {
                Ok(p) => p,
                Err(e) => {
                    diags.push(Diagnostic {
                        file: config.file.clone(),
                        line: m.line,
                        column: m.column,
                        message: format!("target `{}`: mapping key `{}`: {e}", t.name, m.path),
                        hint: Some(
                            "e.g. userName, name.givenName, emails[type eq \"work\"].value".into(),
                        ),
                    });
                    continue;
                }
            };
            let parsed = match &m.literal {
                Some(v) => Ok(expr::Expr::Lit(v.clone())),
                None => expr::parse(&m.expr),
            };
            match parsed {
                Ok(e) => attributes.push((path, e, m.path.clone())),
                Err(e) => diags.push(Diagnostic {
                    file: config.file.clone(),
                    line: m.line,
                    // The column of the offending character, assuming a plain (unquoted) scalar.
                    column: m.column + e.offset as u64,
                    message: format!("target `{}`, `{}`: {}", t.name, m.path, e.message),
                    hint: None,
                }),
            }
        }
        targets.push(CompiledTarget {
            name: t.name.clone(),
            lifecycle: t.lifecycle.clone(),
            matching: t.matching.clone(),
            attributes,
        });
    }
    if !diags.is_empty() {
        diags.sort_by_key(|d| (d.line, d.column));
        return Err(Diagnostics(diags));
    }
    Ok(Mapping {
        version: config.version.clone(),
        known_types: config.known_event_types(),
        targets,
    })
}

impl Mapping {
    /// Names of the targets this mapping plans for.
    pub fn target_names(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.name.as_str())
    }

    fn plan_target(
        &self,
        t: &CompiledTarget,
        kind: OpKind,
        event: &Event,
    ) -> Result<Operation, PlanError> {
        let mut resource = Map::new();
        resource.insert(
            "schemas".into(),
            Value::Array(vec![Value::String(USER_SCHEMA.into())]),
        );
        for (path, e, text) in &t.attributes {
            let v = e.eval(event).map_err(|err| PlanError {
                target: t.name.clone(),
                expression: text.clone(),
                reason: err.0,
            })?;
            if !v.is_null() {
                path.set(&mut resource, v);
            }
        }
        match kind {
            OpKind::Upsert | OpKind::Reactivate => {
                resource.entry("active").or_insert(Value::Bool(true));
            }
            OpKind::Deactivate => {
                resource.insert("active".into(), Value::Bool(false));
            }
            OpKind::Update | OpKind::Delete | OpKind::GroupAdd | OpKind::GroupRemove => {}
        }
        let matching: Vec<MatchKey> = t
            .matching
            .iter()
            .filter_map(|attr| {
                let v = resource.get(attr)?;
                let value = match v {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some(MatchKey {
                    attribute: attr.clone(),
                    value,
                    case_exact: attr != "userName",
                })
            })
            .collect();
        if matching.is_empty() {
            return Err(PlanError {
                target: t.name.clone(),
                expression: t.matching.join(", "),
                reason: "no matching attribute has a value for this event".into(),
            });
        }
        Ok(Operation {
            id: format!("{}@{}", event.id, t.name),
            target: t.name.clone(),
            subject: event.subject.clone(),
            event_id: event.id.clone(),
            event_kind: event.kind.clone(),
            event_time: event.time,
            planned_at: Utc::now(),
            kind,
            resource: Value::Object(resource),
            matching,
            mapping_version: self.version.clone(),
            traceparent: event.traceparent.clone(),
            group: None,
            create_only: Vec::new(),
            patch: None,
            manager_subject: None,
            alternatives: Default::default(),
        alternatives: Default::default(),
        })
    }
}

impl Planner for Mapping {
    fn version(&self) -> &str {
        &self.version
    }

    fn accepts_type(&self, kind: &str) -> bool {
        self.known_types.contains(kind)
    }

    fn plan(&self, event: &Event, _prior: Option<&SubjectState>) -> Plan {
        let mut plan = Plan::default();
        for t in &self.targets {
            let kind = match t.lifecycle.get(&event.kind) {
                Some(Lifecycle::Action(k)) => *k,
                Some(Lifecycle::Ignore) | None => continue,
            };
            match self.plan_target(t, kind, event) {
                Ok(op) => plan.ops.push(op),
                Err(e) => plan.errors.push(e),
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"version: 1
targets:
  app:
    base_url: https://app.example/scim/v2
    lifecycle:
      hr.worker.hired: upsert
      hr.worker.terminated: deactivate
      hr.worker.leave_started: ignore
    user:
      externalId: event.subject
      userName: lower(event.data.email)
      name.givenName: event.data.firstName
      emails[type eq "work"].value: lower(event.data.email)
      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department: event.data.department
"#;

    fn mapping() -> Mapping {
        compile(&scimflow_config::load_str(CFG, "c.yaml", &|_| None).unwrap()).unwrap()
    }

    fn event(kind: &str) -> Event {
        Event {
            id: "ev1".into(),
            source: "hr".into(),
            kind: kind.into(),
            subject: "E7".into(),
            time: None,
            data: serde_json::json!({"email": "Ada@Example.com", "firstName": "Ada", "department": "R&D"}),
            traceparent: None,
        }
    }

    #[test]
    fn plans_an_upsert_with_extension_and_typed_paths() {
        let m = mapping();
        let p = m.plan(&event("hr.worker.hired"), None);
        assert!(p.errors.is_empty());
        let op = &p.ops[0];
        assert_eq!(op.id, "ev1@app");
        assert_eq!(op.kind, OpKind::Upsert);
        assert_eq!(
            op.resource,
            serde_json::json!({
                "schemas": [USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "externalId": "E7",
                "userName": "ada@example.com",
                "name": {"givenName": "Ada"},
                "emails": [{"type": "work", "primary": true, "value": "ada@example.com"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
                "active": true
            })
        );
        assert_eq!(op.matching[0].attribute, "externalId");
        assert_eq!(op.matching[1].value, "ada@example.com");
        assert!(!op.matching[1].case_exact);
    }

    #[test]
    fn lifecycle_decides() {
        let m = mapping();
        let p = m.plan(&event("hr.worker.terminated"), None);
        assert_eq!(p.ops[0].kind, OpKind::Deactivate);
        assert_eq!(p.ops[0].resource["active"], false);
        assert!(m
            .plan(&event("hr.worker.leave_started"), None)
            .ops
            .is_empty());
        assert!(m.accepts_type("hr.worker.leave_started"));
        assert!(!m.accepts_type("hr.worker.promoted"));
    }

    #[test]
    fn bad_expressions_are_located() {
        let bad = CFG.replace(
            "lower(event.data.email)\n      name",
            "lowr(event.data.email)\n      name",
        );
        let cfg = scimflow_config::load_str(&bad, "c.yaml", &|_| None).unwrap();
        let e = compile(&cfg).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!((e.0[0].line, e.0[0].column), (11, 17));
        assert!(e.0[0].message.contains("unknown function `lowr`"));
    }
}
