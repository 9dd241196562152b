//! The mapping stage: compiles the targets' `lifecycle` and `user` mappings from the config into a
//! [`Mapping`], a pure [`Planner`] — `plan(event, prior state) -> operations` with no I/O.
//!
//! Invariants: planning is deterministic (the same event yields the same operation ids, so a replay
//! is recognised downstream); an evaluation error affects only that event on that target.

pub mod cel;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use scimflow_config::{
    AttributeValue, AttributeWhen, Config, Diagnostic, Diagnostics, ExprSource, Lifecycle,
};
use scimflow_core::op::MatchKey;
use scimflow_core::plan::{Cancel, Plan, PlanError, Planner, SLOT_DEPROVISION, SLOT_PROVISION};
use scimflow_core::{Event, OpKind, Operation, ScheduledOp, SubjectState};

/// The expression language the mapping is compiled with.
use crate::cel as lang;

/// URN of the core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

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
                if let Some(o) = typed_item(arr_entry(resource, attr), type_value) {
                    o.insert(sub.clone(), value);
                }
            }
        }
    }
}

/// The element of `items` with `type` `type_value`, added (`primary` when first) if absent.
fn typed_item<'a>(
    items: &'a mut Vec<Value>,
    type_value: &str,
) -> Option<&'a mut Map<String, Value>> {
    let pos = items
        .iter()
        .position(|i| i.get("type").and_then(Value::as_str) == Some(type_value));
    let item = match pos {
        Some(p) => &mut items[p],
        None => {
            let primary = items.is_empty();
            let mut m = Map::new();
            m.insert("type".into(), Value::String(type_value.to_owned()));
            if primary {
                m.insert("primary".into(), Value::Bool(true));
            }
            items.push(Value::Object(m));
            items.last_mut().expect("pushed")
        }
    };
    item.as_object_mut()
}

/// Writes `attr[.sub]` into an extension object.
fn extension_set(m: &mut Map<String, Value>, attr: &str, sub: Option<&str>, v: Value) {
    match sub {
        None => {
            m.insert(attr.to_owned(), v);
        }
        Some(s) => {
            obj_entry(m, attr).insert(s.to_owned(), v);
        }
    }
}

fn obj_entry<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    // Look up by reference first: the key is only copied when the object is new.
    if !m.get(key).is_some_and(Value::is_object) {
        m.insert(key.to_owned(), Value::Object(Map::new()));
    }
    m.get_mut(key)
        .and_then(Value::as_object_mut)
        .expect("object")
}

fn arr_entry<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    if !m.get(key).is_some_and(Value::is_array) {
        m.insert(key.to_owned(), Value::Array(Vec::new()));
    }
    m.get_mut(key).and_then(Value::as_array_mut).expect("array")
}

fn add_schema(resource: &mut Map<String, Value>, urn: &str) {
    if let Some(Value::Array(s)) = resource.get_mut("schemas") {
        if !s.iter().any(|x| x == urn) {
            s.push(Value::String(urn.to_owned()));
        }
    }
}

/// A compiled mapping for every target.
pub struct Mapping {
    version: String,
    known_types: BTreeSet<String>,
    targets: Vec<CompiledTarget>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("version", &self.version)
            .field("targets", &self.targets.len())
            .finish()
    }
}

enum Val {
    Expr(lang::Program),
    Literal(Value),
}

struct CompiledAttr {
    path: AttrPath,
    /// The mapping key as written (for errors).
    key: String,
    value: Val,
    candidates: Vec<lang::Program>,
    default: Option<Val>,
    create_only: bool,
    /// The top-level key of the resource it writes to, as an index into [`CompiledTarget::keys`].
    top: usize,
}

struct CompiledTarget {
    name: String,
    scope: Option<lang::Program>,
    out_of_scope: Option<OpKind>,
    lifecycle: BTreeMap<String, (Lifecycle, Option<lang::Program>)>,
    matching: Vec<String>,
    /// The target's connector profile: its case rules decide [`MatchKey::case_exact`].
    profile: std::sync::Arc<scimflow_config::ConnectorProfile>,
    attrs: Vec<CompiledAttr>,
    manager: Option<lang::Program>,
    groups: Vec<(lang::Program, Option<lang::Program>)>,
    /// The top-level keys of the resource the attributes write to, in order of first writer.
    keys: Vec<String>,
    /// How the attributes assemble into a resource; `None` to write them one by one.
    layout: Option<Layout>,
    /// How to plan against a prior state without evaluating again what did not change.
    reuse: Option<Reuse>,
}

/// What one top-level key of the resource holds, when all its attributes agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `attr`: the value of its (last) attribute.
    Value,
    /// `attr.sub`: an object of sub-attributes.
    Object,
    /// `attr[type eq "x"].sub`: a list of typed elements.
    Typed,
    /// `urn:…:attr[.sub]`: an extension object.
    Extension,
}

/// How a target's attributes assemble into a resource one top-level key at a time, which looks
/// each key up once instead of once per attribute. Builds exactly what writing the attributes one
/// by one with [`AttrPath::set`] builds: keys in the order of their first attribute with a value,
/// extension URNs added to `schemas` in that order.
struct Layout {
    /// Per top-level key (indexed like [`CompiledTarget::keys`]).
    shapes: Vec<Shape>,
    /// Per top-level key: its attributes, in mapping order.
    members: Vec<Vec<usize>>,
}

impl Layout {
    /// `None` when a key is written in different shapes, or is `schemas`.
    fn new(attrs: &[CompiledAttr], keys: &[String]) -> Option<Layout> {
        let mut shapes: Vec<Option<Shape>> = vec![None; keys.len()];
        let mut members = vec![Vec::new(); keys.len()];
        for (i, a) in attrs.iter().enumerate() {
            let shape = match &a.path {
                AttrPath::Plain {
                    schema: Some(urn), ..
                } if urn != USER_SCHEMA => Shape::Extension,
                AttrPath::Plain { sub: None, .. } => Shape::Value,
                AttrPath::Plain { sub: Some(_), .. } => Shape::Object,
                AttrPath::Typed { .. } => Shape::Typed,
            };
            if keys[a.top] == "schemas" || shapes[a.top].is_some_and(|s| s != shape) {
                return None;
            }
            shapes[a.top] = Some(shape);
            members[a.top].push(i);
        }
        Some(Layout {
            shapes: shapes
                .into_iter()
                .map(|s| s.unwrap_or(Shape::Value))
                .collect(),
            members,
        })
    }
}

/// What each expression of a target reads, so that planning an update against the prior state
/// evaluates on that state only the expressions whose inputs changed: an expression whose inputs
/// are equal in the event and in the prior state has the same result for both.
struct Reuse {
    /// Every top-level `event.data` key the target's expressions read (at most 64).
    data_keys: Vec<String>,
    /// Per attribute: what its value, default and candidates read.
    attrs: Vec<lang::ReadMask>,
    scope: lang::ReadMask,
    /// Per group rule: what its name and condition read.
    groups: Vec<lang::ReadMask>,
}

impl Reuse {
    fn new(
        attrs: &[CompiledAttr],
        keys: &[String],
        scope: Option<&lang::Program>,
        groups: &[(lang::Program, Option<lang::Program>)],
    ) -> Option<Reuse> {
        // The restricted diff (see `minimal_patch`) looks keys up exactly; the full diff looks them
        // up case-insensitively and descends into a core-schema URN key.
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|x| x.eq_ignore_ascii_case(k))
                || scimflow_scim::schemas::is_core(k)
            {
                return None;
            }
        }
        fn attr_programs(a: &CompiledAttr) -> Vec<&lang::Program> {
            let mut ps: Vec<&lang::Program> = Vec::new();
            for v in [Some(&a.value), a.default.as_ref()].into_iter().flatten() {
                if let Val::Expr(p) = v {
                    ps.push(p);
                }
            }
            ps.extend(a.candidates.iter());
            ps
        }
        fn group_programs((n, w): &(lang::Program, Option<lang::Program>)) -> Vec<&lang::Program> {
            std::iter::once(n).chain(w.as_ref()).collect()
        }
        let mut all = lang::Reads::default();
        let every = attrs
            .iter()
            .flat_map(attr_programs)
            .chain(scope)
            .chain(groups.iter().flat_map(group_programs));
        for p in every {
            all.merge(p.reads());
        }
        let data_keys: Vec<String> = all.data_keys.into_iter().collect();
        if data_keys.len() > 64 {
            return None;
        }
        let mask = |ps: Vec<&lang::Program>| {
            ps.into_iter().try_fold(lang::ReadMask::default(), |m, p| {
                Some(m.union(lang::ReadMask::new(p.reads(), &data_keys)?))
            })
        };
        let attrs = attrs
            .iter()
            .map(|a| mask(attr_programs(a)))
            .collect::<Option<Vec<_>>>()?;
        let scope = mask(scope.into_iter().collect())?;
        let groups = groups
            .iter()
            .map(|g| mask(group_programs(g)))
            .collect::<Option<Vec<_>>>()?;
        Some(Reuse {
            data_keys,
            attrs,
            scope,
            groups,
        })
    }
}

/// Compiles every expression of every target in `config`, reporting every problem with its location.
pub fn compile(config: &Config) -> Result<Mapping, Diagnostics> {
    let env = lang::Env {
        tables: config.tables.clone(),
    };
    let mut diags = Vec::new();
    let expr =
        |src: &ExprSource, what: &str, diags: &mut Vec<Diagnostic>| -> Option<lang::Program> {
            match lang::compile(&src.text, &env) {
                Ok(p) => Some(p),
                Err(e) => {
                    diags.push(Diagnostic {
                        file: src.file.clone(),
                        line: src.line,
                        column: src.column + e.offset as u64 + quote_offset(config, src),
                        message: format!("{what}: {}", e.message),
                        hint: e.hint.clone(),
                    });
                    None
                }
            }
        };
    let mut targets = Vec::new();
    for t in &config.targets {
        let name = &t.name;
        let scope = t
            .scope
            .as_ref()
            .and_then(|s| expr(s, &format!("target `{name}`, scope"), &mut diags));
        let mut lifecycle = BTreeMap::new();
        for (kind, rule) in &t.lifecycle {
            let at = rule.at.as_ref().and_then(|a| {
                expr(
                    a,
                    &format!("target `{name}`, lifecycle `{kind}`, at"),
                    &mut diags,
                )
            });
            lifecycle.insert(kind.clone(), (rule.action, at));
        }
        let mut attrs = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for m in &t.user {
            let path = match AttrPath::parse(&m.path) {
                Ok(p) => p,
                Err(e) => {
                    let (file, line, column) = match &m.value {
                        AttributeValue::Expr(s) => (s.file.clone(), s.line, s.column),
                        AttributeValue::Literal(_) => (config.file.clone(), 0, 0),
                    };
                    diags.push(Diagnostic {
                        file,
                        line,
                        column,
                        message: format!("target `{name}`: mapping key `{}`: {e}", m.path),
                        hint: Some(
                            "e.g. userName, name.givenName, emails[type eq \"work\"].value".into(),
                        ),
                    });
                    continue;
                }
            };
            let what = format!("target `{name}`, `{}`", m.path);
            let val = |v: &AttributeValue, diags: &mut Vec<Diagnostic>| match v {
                AttributeValue::Literal(l) => Some(Val::Literal(l.clone())),
                AttributeValue::Expr(s) => expr(s, &what, diags).map(Val::Expr),
            };
            let value = val(&m.value, &mut diags);
            let default = m.default.as_ref().map(|d| val(d, &mut diags));
            let candidates: Vec<_> = m
                .candidates
                .iter()
                .filter_map(|c| expr(c, &what, &mut diags))
                .collect();
            if !m.candidates.is_empty()
                && !matches!(
                    path,
                    AttrPath::Plain {
                        schema: None,
                        sub: None,
                        ..
                    }
                )
            {
                diags.push(Diagnostic::file_level(
                    &config.file,
                    format!("{what}: candidates are supported for top-level attributes only"),
                ));
            }
            if let (Some(value), Some(default)) =
                (value, default.unwrap_or(Some(Val::Literal(Value::Null))))
            {
                let default = match default {
                    Val::Literal(Value::Null) if m.default.is_none() => None,
                    d => Some(d),
                };
                let key = resource_key(&path);
                let top = match keys.iter().position(|k| k == key) {
                    Some(i) => i,
                    None => {
                        keys.push(key.to_owned());
                        keys.len() - 1
                    }
                };
                attrs.push(CompiledAttr {
                    path,
                    key: m.path.clone(),
                    value,
                    candidates,
                    default,
                    create_only: m.when == AttributeWhen::Create,
                    top,
                });
            }
        }
        let manager = t
            .manager
            .as_ref()
            .and_then(|m| expr(m, &format!("target `{name}`, manager"), &mut diags));
        let groups: Vec<_> = t
            .groups
            .iter()
            .filter_map(|g| {
                let n = expr(&g.name, &format!("target `{name}`, group name"), &mut diags);
                let w = g
                    .when
                    .as_ref()
                    .map(|w| expr(w, &format!("target `{name}`, group condition"), &mut diags));
                match (n, w) {
                    (Some(n), None) => Some((n, None)),
                    (Some(n), Some(Some(w))) => Some((n, Some(w))),
                    _ => None,
                }
            })
            .collect();
        let reuse = Reuse::new(&attrs, &keys, scope.as_ref(), &groups);
        let layout = Layout::new(&attrs, &keys);
        targets.push(CompiledTarget {
            name: name.clone(),
            scope,
            out_of_scope: t.out_of_scope,
            lifecycle,
            matching: t.matching.clone(),
            profile: t.profile.clone(),
            attrs,
            manager,
            groups,
            keys,
            layout,
            reuse,
        });
    }
    if !diags.is_empty() {
        diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        return Err(Diagnostics(diags));
    }
    Ok(Mapping {
        version: config.version.clone(),
        known_types: config.known_event_types(),
        targets,
    })
}

/// 1 when the expression is written as a quoted YAML scalar (its location points at the quote).
fn quote_offset(config: &Config, src: &ExprSource) -> u64 {
    let _ = config;
    let text = std::fs::read_to_string(&src.file).unwrap_or_default();
    let line = text
        .lines()
        .nth(src.line.saturating_sub(1) as usize)
        .unwrap_or("");
    match line.chars().nth(src.column.saturating_sub(1) as usize) {
        Some('"') | Some('\'') => 1,
        _ => 0,
    }
}

fn err(t: &CompiledTarget, expression: &str, reason: impl Into<String>) -> PlanError {
    PlanError {
        target: t.name.clone(),
        expression: expression.to_owned(),
        reason: reason.into(),
    }
}

fn eval_bool(
    t: &CompiledTarget,
    p: &lang::Program,
    act: &lang::Activation<'_>,
) -> Result<bool, PlanError> {
    match p.eval_cond(act) {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(Value::Null)) => Ok(false),
        Ok(Err(other)) => Err(err(
            t,
            p.source(),
            format!("expected true or false, got {other}"),
        )),
        Err(e) => Err(err(t, p.source(), e.into_message())),
    }
}

/// Parses an effective date: RFC 3339, or `YYYY-MM-DD` (midnight UTC).
fn parse_due(v: &Value) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
            })
            .map(Some)
            .map_err(|_| format!("`{s}` is not a date (expected YYYY-MM-DD or RFC 3339)")),
        other => Err(format!("expected a date, got {other}")),
    }
}

impl CompiledTarget {
    /// Whether the subject counted as provisioned here after the event `kind` with activation `act`.
    ///
    /// `scope`, when known, is the scope's result for `act` (computed for an activation that reads
    /// the same).
    fn provisioned(&self, kind: &str, act: &lang::Activation<'_>, scope: Option<bool>) -> bool {
        let active_action = matches!(
            self.lifecycle.get(kind),
            Some((Lifecycle::Action(k), _)) if !k.is_deprovision() && !matches!(k, OpKind::GroupAdd | OpKind::GroupRemove)
        );
        active_action
            && self
                .scope
                .as_ref()
                .is_none_or(|s| scope.unwrap_or_else(|| matches!(s.eval_cond(act), Ok(Ok(true)))))
    }

    /// Builds the desired resource; `Err` names the failing expression.
    fn resource(&self, act: &lang::Activation<'_>) -> Result<Built, PlanError> {
        self.build(act, false, None)
    }

    /// The minimal PATCH from the resource `prior` maps to, to `new` (whose create-only attributes
    /// are `create_only`); `None` when the prior resource cannot be built.
    ///
    /// Same result as diffing the whole prior resource, for less work: only the attributes whose
    /// inputs differ between the event and `prior` are evaluated on `prior`, with the attributes
    /// sharing their top-level keys. Every other top-level key holds the same value in both
    /// resources, for which the diff emits nothing (and, the new resource having been built,
    /// evaluating them on `prior` cannot fail either).
    fn minimal_patch(
        &self,
        r: &Reuse,
        changes: &lang::Changes,
        prior: &lang::Activation<'_>,
        new: &mut Map<String, Value>,
        create_only: &[String],
    ) -> Option<Value> {
        let mut dirty = vec![false; self.keys.len()];
        for (a, m) in self.attrs.iter().zip(&r.attrs) {
            if !m.unchanged(changes) {
                dirty[a.top] = true;
            }
        }
        let mut prev = if dirty.contains(&true) {
            self.build(prior, false, Some(&dirty)).ok()?.resource
        } else {
            Map::new()
        };
        prev.entry("active").or_insert(Value::Bool(true));
        // The new resource's entries in the order the full diff sees them: create-only keys
        // removed the way `Map::remove` does (swap_remove with `preserve_order`).
        let mut entries: Vec<(&String, &mut Value)> = new.iter_mut().collect();
        for k in create_only {
            prev.remove(k);
            if let Some(i) = entries.iter().position(|(x, _)| *x == k) {
                entries.swap_remove(i);
            }
        }
        // The changed keys are lent to the diff and given back after.
        let mut part = Map::new();
        for (k, v) in entries {
            if self
                .keys
                .iter()
                .position(|x| x == k)
                .is_some_and(|i| dirty[i])
            {
                part.insert(k.clone(), std::mem::take(v));
            }
        }
        let part = Value::Object(part);
        let patch = scimflow_scim::patch::diff(&Value::Object(prev), &part);
        if let Value::Object(part) = part {
            for (k, v) in part {
                if let Some(slot) = new.get_mut(&k) {
                    *slot = v;
                }
            }
        }
        Some(patch_value(patch))
    }

    /// Builds the desired resource. With `lenient` (deactivation and deletion, which only need to
    /// find the account), an attribute that cannot be evaluated is left out instead of failing: a
    /// mapping problem must never block removing access. The matching attributes are still required.
    ///
    /// With `only`, builds only the top-level keys it flags (indexed like [`CompiledTarget::keys`]).
    fn build(
        &self,
        act: &lang::Activation<'_>,
        lenient: bool,
        only: Option<&[bool]>,
    ) -> Result<Built, PlanError> {
        let mut resource = Map::with_capacity(self.keys.len() + 2);
        resource.insert(
            "schemas".into(),
            Value::Array(vec![Value::String(USER_SCHEMA.into())]),
        );
        // Where each top-level key sits in `resource` once written (with a layout).
        let mut at = vec![
            usize::MAX;
            if self.layout.is_some() {
                self.keys.len()
            } else {
                0
            }
        ];
        let mut create_only = Vec::new();
        let mut alternatives = BTreeMap::new();
        for a in &self.attrs {
            if only.is_some_and(|o| !o[a.top]) {
                continue;
            }
            let Some(v) = self.attr_value(a, act, lenient, &mut alternatives)? else {
                continue;
            };
            if a.create_only {
                create_only.push(top_level(&a.path));
            }
            match &self.layout {
                Some(layout) => self.write(layout, a, v, &mut resource, &mut at),
                None => a.path.set(&mut resource, v),
            }
        }
        Ok(Built {
            resource,
            create_only,
            alternatives,
        })
    }

    /// The value of one attribute (`None`: left out), recording its alternatives.
    fn attr_value(
        &self,
        a: &CompiledAttr,
        act: &lang::Activation<'_>,
        lenient: bool,
        alternatives: &mut BTreeMap<String, Vec<Value>>,
    ) -> Result<Option<Value>, PlanError> {
        let v = match &a.value {
            Val::Literal(l) => l.clone(),
            Val::Expr(p) => match p.eval(act) {
                Ok(v) => v,
                Err(e) if e.missing_field && a.default.is_some() => {
                    match a.default.as_ref().expect("checked") {
                        Val::Literal(l) => l.clone(),
                        Val::Expr(d) => d
                            .eval(act)
                            .map_err(|e| err(self, d.source(), e.into_message()))?,
                    }
                }
                Err(_) if lenient && !self.matching.contains(&a.key) => return Ok(None),
                Err(e) => {
                    return Err(err(
                        self,
                        &format!("{}: {}", a.key, p.source()),
                        e.into_message(),
                    ))
                }
            },
        };
        if v.is_null() {
            return Ok(None);
        }
        if !a.candidates.is_empty() {
            let mut alts = Vec::new();
            for c in &a.candidates {
                match c.eval(act) {
                    Ok(x) if !x.is_null() && x != v && !alts.contains(&x) => alts.push(x),
                    Ok(_) => {}
                    Err(e) if e.missing_field => {}
                    Err(e) => return Err(err(self, c.source(), e.into_message())),
                }
            }
            if !alts.is_empty() {
                alternatives.insert(a.key.clone(), alts);
            }
        }
        Ok(Some(v))
    }

    /// Writes the value of `a` into `resource` as [`AttrPath::set`] does, finding its top-level key
    /// by position (`at`, per key) instead of by hash: a key is added, last, by its first attribute
    /// with a value.
    fn write(
        &self,
        layout: &Layout,
        a: &CompiledAttr,
        v: Value,
        resource: &mut Map<String, Value>,
        at: &mut [usize],
    ) {
        let top = a.top;
        if at[top] == usize::MAX {
            let key = &self.keys[top];
            let value = match (layout.shapes[top], &a.path) {
                (Shape::Object, AttrPath::Plain { sub: Some(s), .. }) => {
                    let mut m = Map::with_capacity(layout.members[top].len());
                    m.insert(s.clone(), v);
                    Value::Object(m)
                }
                (
                    Shape::Typed,
                    AttrPath::Typed {
                        type_value, sub, ..
                    },
                ) => {
                    let mut items = Vec::new();
                    if let Some(o) = typed_item(&mut items, type_value) {
                        o.insert(sub.clone(), v);
                    }
                    Value::Array(items)
                }
                (Shape::Extension, AttrPath::Plain { attr, sub, .. }) => {
                    add_schema(resource, key);
                    let mut m = Map::with_capacity(layout.members[top].len());
                    extension_set(&mut m, attr, sub.as_deref(), v);
                    Value::Object(m)
                }
                _ => v,
            };
            at[top] = resource.len();
            resource.insert(key.clone(), value);
            return;
        }
        let Some(slot) = resource.values_mut().nth(at[top]) else {
            return;
        };
        match (slot, &a.path) {
            (Value::Object(m), AttrPath::Plain { sub: Some(s), .. })
                if layout.shapes[top] == Shape::Object =>
            {
                m.insert(s.clone(), v);
            }
            (
                Value::Array(items),
                AttrPath::Typed {
                    type_value, sub, ..
                },
            ) => {
                if let Some(o) = typed_item(items, type_value) {
                    o.insert(sub.clone(), v);
                }
            }
            (Value::Object(m), AttrPath::Plain { attr, sub, .. })
                if layout.shapes[top] == Shape::Extension =>
            {
                extension_set(m, attr, sub.as_deref(), v);
            }
            (slot, _) => *slot = v,
        }
    }

    /// The group each rule puts the subject in (`None` for none), in rule order.
    fn groups(&self, act: &lang::Activation<'_>) -> Result<Vec<Option<String>>, PlanError> {
        (0..self.groups.len()).map(|i| self.group(i, act)).collect()
    }

    /// The group rule `i` puts the subject in, if any.
    fn group(&self, i: usize, act: &lang::Activation<'_>) -> Result<Option<String>, PlanError> {
        let (name, when) = &self.groups[i];
        if let Some(w) = when {
            if !eval_bool(self, w, act)? {
                return Ok(None);
            }
        }
        match name.eval(act) {
            Ok(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Ok(Value::Null) => Ok(None),
            Ok(other) => Err(err(
                self,
                name.source(),
                format!("a group name must be a string, got {other}"),
            )),
            Err(e) => Err(err(self, name.source(), e.into_message())),
        }
    }

    /// The groups of the prior state: `want` (the event's, per rule) for the rules whose inputs
    /// did not change, evaluated on `prior` for the others; none when one fails.
    fn prior_groups(
        &self,
        prior: &lang::Activation<'_>,
        reuse: Option<(&Reuse, &lang::Changes)>,
        want: &[Option<String>],
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (i, w) in want.iter().enumerate() {
            let g = match reuse {
                Some((r, c)) if r.groups[i].unchanged(c) => w.clone(),
                _ => match self.group(i, prior) {
                    Ok(g) => g,
                    Err(_) => return BTreeSet::new(),
                },
            };
            out.extend(g);
        }
        out
    }
}

struct Built {
    resource: Map<String, Value>,
    create_only: Vec<String>,
    alternatives: BTreeMap<String, Vec<Value>>,
}

/// The top-level key of the resource a path writes to: the attribute, or the extension's URN.
fn resource_key(p: &AttrPath) -> &str {
    match p {
        AttrPath::Plain {
            schema: Some(urn), ..
        } if urn != USER_SCHEMA => urn,
        AttrPath::Plain { attr, .. } | AttrPath::Typed { attr, .. } => attr,
    }
}

/// The top-level attribute (or extension URN) a path writes to.
fn top_level(p: &AttrPath) -> String {
    match p {
        AttrPath::Plain {
            schema: Some(urn),
            attr,
            ..
        } if urn != USER_SCHEMA => format!("{urn}:{attr}"),
        AttrPath::Plain { attr, .. } | AttrPath::Typed { attr, .. } => attr.clone(),
    }
}

/// Whether and how a subject's account should exist on a target, by the subject's latest state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Provisioned: the account exists and is active.
    Active,
    /// Deprovisioned by its lifecycle (`deactivate`): the account, if any, is inactive.
    Inactive,
    /// Deleted by its lifecycle (`delete`): no account.
    Absent,
    /// Outside the target's scope; `action` is the target's `out_of_scope` (`None`: leave it alone).
    OutOfScope { action: Option<OpKind> },
    /// The last event's type does nothing here (no lifecycle rule, `ignore`, a group action), so the
    /// state does not say what the account should be.
    Unknown,
}

/// What a target should hold for one subject: [`Mapping::desired`].
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub presence: Presence,
    /// The resource the mapping builds from the state, with `active` (for [`Presence::Active`] the
    /// full resource; otherwise built leniently, as for a deactivation: attributes that cannot be
    /// evaluated are left out).
    pub resource: Map<String, Value>,
    /// Top-level attributes of `resource` that are sent only on create.
    pub create_only: Vec<String>,
    /// How to find the account, in precedence order.
    pub matching: Vec<MatchKey>,
    /// The groups the subject belongs to (empty unless [`Presence::Active`]).
    pub groups: BTreeSet<String>,
    pub manager_subject: Option<String>,
    pub alternatives: BTreeMap<String, Vec<Value>>,
}

impl Mapping {
    /// What `target` should hold for the subject whose latest state is `state`, as of `now`: the
    /// state passed through the mapping the way planning its last event would (same scope, lifecycle
    /// rule, attributes, matching keys and groups). `Ok(None)` when the mapping has no such target.
    /// Pure: no I/O.
    pub fn desired(
        &self,
        state: &SubjectState,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Desired>, PlanError> {
        let Some(t) = self.targets.iter().find(|t| t.name == target) else {
            return Ok(None);
        };
        let act = lang::Activation::of_state(state, now);
        let action = match t.lifecycle.get(&state.last_kind) {
            Some((Lifecycle::Action(k), _))
                if !matches!(k, OpKind::GroupAdd | OpKind::GroupRemove) =>
            {
                Some(*k)
            }
            _ => None,
        };
        let in_scope = match &t.scope {
            None => true,
            Some(s) => eval_bool(t, s, &act)?,
        };
        let presence = match action {
            None => Presence::Unknown,
            Some(_) if !in_scope => Presence::OutOfScope {
                action: t.out_of_scope,
            },
            Some(OpKind::Deactivate) => Presence::Inactive,
            Some(OpKind::Delete) => Presence::Absent,
            Some(_) => Presence::Active,
        };
        let active = presence == Presence::Active;
        let built = t.build(&act, !active, None)?;
        let mut resource = built.resource;
        if active {
            resource.entry("active").or_insert(Value::Bool(true));
        } else if presence == Presence::Inactive {
            resource.insert("active".into(), Value::Bool(false));
        }
        let matching = matching_keys(t, &resource);
        if matching.is_empty() {
            return Err(err(
                t,
                &t.matching.join(", "),
                "no matching attribute has a value for this subject",
            ));
        }
        let groups = if active {
            t.groups(&act)?.into_iter().flatten().collect()
        } else {
            BTreeSet::new()
        };
        let manager_subject = match &t.manager {
            Some(m) if active => match m.eval(&act) {
                Ok(Value::String(s)) if !s.is_empty() => Some(s),
                _ => None,
            },
            _ => None,
        };
        Ok(Some(Desired {
            presence,
            resource,
            create_only: built.create_only,
            matching,
            groups,
            manager_subject,
            alternatives: built.alternatives,
        }))
    }

    /// The top-level attributes the mapping writes on `target` (extension URNs for extension
    /// attributes), plus `active`: what a scan of the target needs to read (`attributes=`).
    pub fn owned_attributes(&self, target: &str) -> Vec<String> {
        let Some(t) = self.targets.iter().find(|t| t.name == target) else {
            return Vec::new();
        };
        let mut out = t.keys.clone();
        if !out.iter().any(|k| k == "active") {
            out.push("active".into());
        }
        out
    }

    /// Whether `target` has group membership rules.
    pub fn has_group_rules(&self, target: &str) -> bool {
        self.targets
            .iter()
            .any(|t| t.name == target && !t.groups.is_empty())
    }

    /// Names of the targets this mapping plans for.
    pub fn target_names(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.name.as_str())
    }

    /// Plans for `event` at time `now` (injectable for tests and `scimflow map`).
    pub fn plan_at(&self, event: &Event, prior: Option<&SubjectState>, now: DateTime<Utc>) -> Plan {
        let act = lang::Activation::new(event, prior, now);
        let prior_act = prior.map(|p| lang::Activation::of_state(p, now));
        let mut plan = Plan::default();
        for t in &self.targets {
            let prior_kind = prior.map(|p| p.last_kind.as_str());
            if let Err(e) = self.plan_target(
                t,
                event,
                &act,
                prior_act.as_ref(),
                prior_kind,
                now,
                &mut plan,
            ) {
                plan.errors.push(e);
            }
        }
        plan
    }

    // The arguments are the planning context of one target; bundling them in a struct would only
    // move the same eight names one level down.
    #[allow(clippy::too_many_arguments)]
    fn plan_target(
        &self,
        t: &CompiledTarget,
        event: &Event,
        act: &lang::Activation<'_>,
        prior_act: Option<&lang::Activation<'_>>,
        prior_kind: Option<&str>,
        now: DateTime<Utc>,
        plan: &mut Plan,
    ) -> Result<(), PlanError> {
        let Some((rule, at)) = t.lifecycle.get(&event.kind) else {
            return Ok(());
        };
        let Lifecycle::Action(action) = *rule else {
            return Ok(());
        };
        let in_scope = match &t.scope {
            None => true,
            Some(s) => eval_bool(t, s, act)?,
        };
        // Where the prior state differs from the event, for expressions that read neither.
        let changes = match (&t.reuse, prior_act) {
            (Some(r), Some(pa)) => Some((r, lang::Changes::between(&r.data_keys, act, pa))),
            _ => None,
        };
        let reuse = changes.as_ref().map(|(r, c)| (*r, c));
        let was_provisioned = match (prior_act, prior_kind) {
            (Some(pa), Some(k)) => {
                let scope = reuse
                    .filter(|(r, c)| r.scope.unchanged(c))
                    .map(|_| in_scope);
                t.provisioned(k, pa, scope)
            }
            _ => false,
        };
        let kind = if in_scope {
            action
        } else if was_provisioned {
            match t.out_of_scope {
                Some(k) => k,
                None => return Ok(()),
            }
        } else {
            return Ok(());
        };
        let built = t.build(act, kind.is_deprovision(), None)?;
        let mut resource = built.resource;
        match kind {
            OpKind::Upsert | OpKind::Reactivate => {
                resource.entry("active").or_insert(Value::Bool(true));
            }
            OpKind::Deactivate => {
                resource.insert("active".into(), Value::Bool(false));
            }
            _ => {}
        }
        let matching = matching_keys(t, &resource);
        if matching.is_empty() {
            return Err(err(
                t,
                &t.matching.join(", "),
                "no matching attribute has a value for this event",
            ));
        }
        let manager_subject = match &t.manager {
            None => None,
            Some(m) => match m.eval(act) {
                Ok(Value::String(s)) if !s.is_empty() => Some(s),
                Ok(Value::Null) => None,
                Ok(Value::String(_)) => None,
                Ok(other) => {
                    return Err(err(
                        t,
                        m.source(),
                        format!("the manager must be a subject id string, got {other}"),
                    ))
                }
                Err(e) if e.missing_field => None,
                Err(e) => return Err(err(t, m.source(), e.into_message())),
            },
        };
        // A minimal PATCH when the account is known to hold the previous state's attributes.
        let patch = match (kind, prior_act) {
            (OpKind::Upsert | OpKind::Update, Some(pa)) if was_provisioned && in_scope => {
                match reuse {
                    Some((r, c)) => t.minimal_patch(r, c, pa, &mut resource, &built.create_only),
                    None => t.resource(pa).ok().map(|prev| {
                        let mut prev = prev.resource;
                        prev.entry("active").or_insert(Value::Bool(true));
                        let patch = if built.create_only.is_empty() {
                            // Compare against the resource itself: no copy needed.
                            let new = Value::Object(std::mem::take(&mut resource));
                            let patch = scimflow_scim::patch::diff(&Value::Object(prev), &new);
                            if let Value::Object(m) = new {
                                resource = m;
                            }
                            patch
                        } else {
                            let mut new = resource.clone();
                            for k in &built.create_only {
                                prev.remove(k);
                                new.remove(k);
                            }
                            scimflow_scim::patch::diff(&Value::Object(prev), &Value::Object(new))
                        };
                        serde_json::to_value(patch).expect("patch serializes")
                    }),
                }
            }
            _ => None,
        };
        // Group memberships follow the person's attributes while provisioned.
        let (want, had) = if kind.is_deprovision() {
            (BTreeSet::new(), BTreeSet::new())
        } else {
            let per_rule = t.groups(act)?;
            let had = match prior_act {
                Some(pa) if was_provisioned => t.prior_groups(pa, reuse, &per_rule),
                _ => BTreeSet::new(),
            };
            let want: BTreeSet<String> = per_rule.into_iter().flatten().collect();
            (want, had)
        };
        // Effective dating.
        let due = match at {
            None => None,
            Some(p) => match p.eval(act) {
                Ok(v) => parse_due(&v).map_err(|e| err(t, p.source(), e))?,
                Err(e) if e.missing_field => None,
                Err(e) => return Err(err(t, p.source(), e.into_message())),
            },
        };
        let op = |id: String, kind: OpKind, matching: Vec<MatchKey>| Operation {
            id,
            target: t.name.clone(),
            subject: event.subject.clone(),
            event_id: event.id.clone(),
            event_kind: event.kind.clone(),
            event_time: event.time,
            planned_at: now,
            kind,
            resource: Value::Null,
            matching,
            mapping_version: self.version.clone(),
            traceparent: event.traceparent.clone(),
            group: None,
            create_only: Vec::new(),
            patch: None,
            manager_subject: None,
            alternatives: BTreeMap::new(),
            origin: None,
            retry: None,
        };
        let mut main = op(op_id(&event.id, &t.name, None), kind, Vec::new());
        main.resource = Value::Object(resource);
        main.create_only = built.create_only;
        main.patch = patch;
        main.manager_subject = manager_subject;
        main.alternatives = built.alternatives;
        // Membership needs only the account's matching keys, not its attributes.
        let group_ops = want
            .difference(&had)
            .map(|g| (g, OpKind::GroupAdd, '+'))
            .chain(had.difference(&want).map(|g| (g, OpKind::GroupRemove, '-')))
            .map(|(g, gk, sign)| Operation {
                group: Some(g.clone()),
                ..op(
                    op_id(&event.id, &t.name, Some((sign, g))),
                    gk,
                    matching.clone(),
                )
            });
        let slot = if kind.is_deprovision() {
            SLOT_DEPROVISION
        } else {
            SLOT_PROVISION
        };
        let other = if kind.is_deprovision() {
            SLOT_PROVISION
        } else {
            SLOT_DEPROVISION
        };
        // The main operation comes first; it takes the matching keys once its group operations
        // have copied them.
        match due {
            Some(due) if due > now => {
                let first = plan.scheduled.len();
                plan.scheduled.push(ScheduledOp {
                    due,
                    slot: slot.into(),
                    op: main,
                });
                for (i, g) in group_ops.enumerate() {
                    plan.scheduled.push(ScheduledOp {
                        due,
                        slot: format!("{slot}:group:{i}"),
                        op: g,
                    });
                }
                plan.scheduled[first].op.matching = matching;
            }
            _ => {
                // Acting now makes a pending opposite action obsolete (a rescinded hire or
                // termination) and replaces a pending one of the same kind.
                if kind.is_deprovision() || kind == OpKind::Reactivate {
                    plan.cancel.push(Cancel {
                        target: t.name.clone(),
                        subject: event.subject.clone(),
                        slot: other.into(),
                    });
                }
                if due.is_some() || at.is_some() {
                    plan.cancel.push(Cancel {
                        target: t.name.clone(),
                        subject: event.subject.clone(),
                        slot: slot.into(),
                    });
                }
                let first = plan.ops.len();
                plan.ops.push(main);
                plan.ops.extend(group_ops);
                plan.ops[first].matching = matching;
            }
        }
        Ok(())
    }
}

/// The matching keys `resource` has values for, in the target's precedence order.
fn matching_keys(t: &CompiledTarget, resource: &Map<String, Value>) -> Vec<MatchKey> {
    t.matching
        .iter()
        .filter_map(|attr| {
            let value = match resource.get(attr)? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some(MatchKey {
                attribute: attr.clone(),
                value,
                case_exact: t.profile.case_exact(attr),
            })
        })
        .collect()
}

/// `event@target`, or `event@target#±group` for a group operation.
fn op_id(event_id: &str, target: &str, group: Option<(char, &str)>) -> String {
    let extra = group.map_or(0, |(_, g)| g.len() + 2);
    let mut id = String::with_capacity(event_id.len() + target.len() + 1 + extra);
    id.push_str(event_id);
    id.push('@');
    id.push_str(target);
    if let Some((sign, g)) = group {
        id.push('#');
        id.push(sign);
        id.push_str(g);
    }
    id
}

/// `serde_json::to_value(patch)`, moving the values instead of copying them.
fn patch_value(patch: scimflow_scim::patch::PatchRequest) -> Value {
    let ops = patch
        .operations
        .into_iter()
        .map(|o| {
            let mut m = Map::with_capacity(3);
            m.insert("op".into(), Value::String(o.op.as_str().into()));
            if let Some(path) = o.path {
                m.insert("path".into(), Value::String(path));
            }
            if let Some(v) = o.value {
                m.insert("value".into(), v);
            }
            Value::Object(m)
        })
        .collect();
    let mut m = Map::with_capacity(2);
    m.insert(
        "schemas".into(),
        Value::Array(patch.schemas.into_iter().map(Value::String).collect()),
    );
    m.insert("Operations".into(), Value::Array(ops));
    Value::Object(m)
}

impl Planner for Mapping {
    fn version(&self) -> &str {
        &self.version
    }

    fn accepts_type(&self, kind: &str) -> bool {
        self.known_types.contains(kind)
    }

    fn plan(&self, event: &Event, prior: Option<&SubjectState>) -> Plan {
        self.plan_at(event, prior, Utc::now())
    }
}

#[cfg(test)]
mod desired_tests;
#[cfg(test)]
mod profile_tests;
#[cfg(test)]
mod reuse_tests;

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
    fn patch_value_is_the_serialized_patch() {
        use scimflow_scim::patch::{PatchOperation, PatchRequest};
        let patch = PatchRequest::new(vec![
            PatchOperation::replace(Some("title".into()), serde_json::json!("Boss")),
            PatchOperation::add(None, serde_json::json!({"b": 1, "a": [null, 2.5]})),
            PatchOperation::remove("nickName"),
            PatchOperation::replace(Some("x".into()), Value::Null),
        ]);
        let expected = serde_json::to_value(&patch).unwrap();
        let got = patch_value(patch);
        assert_eq!(got, expected);
        assert_eq!(got.to_string(), expected.to_string());
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
pub mod testcase;
