//! The compiled tree and its evaluator: values borrow the event's JSON, the tables and the
//! program's literals, and are copied only when a function builds a new one.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value as Json};

use super::funcs::Func;
use super::{Activation, EvalError, Ty};

pub(crate) type Table = BTreeMap<String, Json>;

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Const {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    Event,
    Prior,
    Now,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Index,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    Not,
    Neg,
    NotStrictlyFalse,
}

/// A compiled expression node.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Lit(Const),
    Var(Root),
    Local(usize),
    Table(Arc<Table>, Arc<str>),
    AllTables(Arc<BTreeMap<String, Arc<Table>>>),
    Select {
        operand: Box<Node>,
        field: String,
        path: Arc<str>,
        hint: Hint,
    },
    Has {
        operand: Box<Node>,
        field: String,
    },
    Index(Box<Node>, Box<Node>, Arc<str>),
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Bin(BinOp, Box<Node>, Box<Node>),
    Un(UnOp, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<[Node; 3]>),
    Call(Func, Vec<Node>, Option<Arc<regex::Regex>>),
    Comprehension(Box<Comprehension>),
}

/// Where a field was found in the last object it was read from. Events of one source list their
/// keys in the same order, so looking there first usually finds the key without hashing it.
#[derive(Default)]
pub(crate) struct Hint(AtomicUsize);

impl Clone for Hint {
    fn clone(&self) -> Self {
        Hint(AtomicUsize::new(self.0.load(Relaxed)))
    }
}

impl std::fmt::Debug for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hint({})", self.0.load(Relaxed))
    }
}

/// Objects up to this size are searched by position instead of by hash.
const SCAN_LIMIT: usize = 32;

impl Hint {
    /// `m[key]`: at the hinted position, else by a scan (small objects) or a hash lookup.
    fn get<'e>(&self, m: &'e Map<String, Json>, key: &str) -> Option<&'e Json> {
        let at = self.0.load(Relaxed);
        if let Some((k, v)) = m.iter().nth(at) {
            if k == key {
                return Some(v);
            }
        }
        if m.len() > SCAN_LIMIT {
            return m.get(key);
        }
        let (i, v) = m
            .iter()
            .enumerate()
            .find_map(|(i, (k, v))| (k == key).then_some((i, v)))?;
        // Only a changed position is written, so steady state shares the cache line read-only.
        self.0.store(i, Relaxed);
        Some(v)
    }
}

/// A macro (`all`, `exists`, `map`, `filter`, …) as the parser expands it.
#[derive(Debug, Clone)]
pub(crate) struct Comprehension {
    pub range: Node,
    pub var: usize,
    pub var2: Option<usize>,
    pub accu: usize,
    pub init: Node,
    pub cond: Node,
    pub step: Node,
    pub result: Node,
}

impl Node {
    /// The type of the node when it is known without evaluating it.
    pub(crate) fn static_type(&self) -> Option<Ty> {
        match self {
            Node::Lit(c) => Some(match c {
                Const::Null => Ty::Null,
                Const::Bool(_) => Ty::Bool,
                Const::Int(_) | Const::UInt(_) => Ty::Int,
                Const::Double(_) => Ty::Double,
                Const::Str(_) => Ty::String,
            }),
            Node::Var(Root::Now) => Some(Ty::Timestamp),
            Node::List(_) => Some(Ty::List),
            Node::Map(_) | Node::Table(..) => Some(Ty::Map),
            Node::Has { .. } => Some(Ty::Bool),
            Node::Bin(op, a, b) => match op {
                BinOp::Eq
                | BinOp::Ne
                | BinOp::Lt
                | BinOp::Le
                | BinOp::Gt
                | BinOp::Ge
                | BinOp::In => Some(Ty::Bool),
                BinOp::Add => match (a.static_type(), b.static_type()) {
                    (Some(Ty::String), Some(Ty::String)) => Some(Ty::String),
                    _ => None,
                },
                _ => None,
            },
            Node::Un(UnOp::Not | UnOp::NotStrictlyFalse, _) => Some(Ty::Bool),
            Node::Call(f, ..) => f.returns(),
            _ => None,
        }
    }
}

/// A runtime value. `'e` is the evaluation's borrow of the event, the tables and the program.
#[derive(Debug, Clone)]
pub(crate) enum V<'e> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Cow<'e, str>),
    Timestamp(DateTime<Utc>),
    Duration(Duration),
    /// A JSON array of the event, the prior state or a table, read in place.
    JList(&'e [Json]),
    /// A JSON object of the event, the prior state or a table, read in place.
    JMap(&'e Map<String, Json>),
    Table(&'e Table),
    List(Vec<V<'e>>),
    Map(Vec<(V<'e>, V<'e>)>),
}

impl<'e> V<'e> {
    pub(crate) fn from_json(j: &'e Json) -> V<'e> {
        match j {
            Json::Null => V::Null,
            Json::Bool(b) => V::Bool(*b),
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    V::Int(i)
                } else if let Some(u) = n.as_u64() {
                    V::UInt(u)
                } else {
                    V::Double(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Json::String(s) => V::Str(Cow::Borrowed(s)),
            Json::Array(a) => V::JList(a),
            Json::Object(o) => V::JMap(o),
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            V::Null => "null",
            V::Bool(_) => "bool",
            V::Int(_) => "int",
            V::UInt(_) => "uint",
            V::Double(_) => "double",
            V::Str(_) => "string",
            V::Timestamp(_) => "timestamp",
            V::Duration(_) => "duration",
            V::JList(_) | V::List(_) => "list",
            V::JMap(_) | V::Table(_) | V::Map(_) => "map",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of a list value.
    pub(crate) fn list_items(&self) -> Option<Vec<V<'e>>> {
        match self {
            V::JList(l) => Some(l.iter().map(V::from_json).collect()),
            V::List(l) => Some(l.clone()),
            _ => None,
        }
    }

    pub(crate) fn list_len(&self) -> Option<usize> {
        match self {
            V::JList(l) => Some(l.len()),
            V::List(l) => Some(l.len()),
            _ => None,
        }
    }

    /// The entry of a map value under a string key.
    fn get(&self, key: &str) -> Option<Option<V<'e>>> {
        match self {
            V::JMap(m) => Some(m.get(key).map(V::from_json)),
            V::Table(t) => Some(t.get(key).map(V::from_json)),
            V::Map(m) => Some(
                m.iter()
                    .find(|(k, _)| k.as_str() == Some(key))
                    .map(|(_, v)| v.clone()),
            ),
            _ => None,
        }
    }

    /// The entries of a map value, for iteration and equality.
    fn map_entries(&self) -> Option<Vec<(V<'e>, V<'e>)>> {
        match self {
            V::JMap(m) => Some(
                m.iter()
                    .map(|(k, v)| (V::Str(Cow::Borrowed(k.as_str())), V::from_json(v)))
                    .collect(),
            ),
            V::Table(t) => Some(
                t.iter()
                    .map(|(k, v)| (V::Str(Cow::Borrowed(k.as_str())), V::from_json(v)))
                    .collect(),
            ),
            V::Map(m) => Some(m.clone()),
            _ => None,
        }
    }

    pub(crate) fn map_len(&self) -> Option<usize> {
        match self {
            V::JMap(m) => Some(m.len()),
            V::Table(t) => Some(t.len()),
            V::Map(m) => Some(m.len()),
            _ => None,
        }
    }

    /// Converts to JSON: timestamps as RFC 3339, durations as seconds.
    pub(crate) fn into_json(self) -> Json {
        match self {
            V::Null => Json::Null,
            V::Bool(b) => Json::Bool(b),
            V::Int(i) => Json::from(i),
            V::UInt(u) => Json::from(u),
            V::Double(d) => serde_json::Number::from_f64(d)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            V::Str(s) => Json::String(s.into_owned()),
            V::Timestamp(t) => Json::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            V::Duration(d) => {
                if d.subsec_nanos() == 0 {
                    Json::from(d.num_seconds())
                } else {
                    let secs = d.num_seconds() as f64 + f64::from(d.subsec_nanos()) / 1e9;
                    serde_json::Number::from_f64(secs)
                        .map(Json::Number)
                        .unwrap_or(Json::Null)
                }
            }
            V::JList(l) => Json::Array(l.to_vec()),
            V::JMap(m) => Json::Object(m.clone()),
            V::Table(t) => Json::Object(t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            V::List(l) => Json::Array(l.into_iter().map(V::into_json).collect()),
            V::Map(m) => Json::Object(
                m.into_iter()
                    .map(|(k, v)| (key_string(&k), v.into_json()))
                    .collect(),
            ),
        }
    }
}

fn key_string(k: &V<'_>) -> String {
    match k {
        V::Str(s) => s.to_string(),
        V::Int(i) => i.to_string(),
        V::UInt(u) => u.to_string(),
        V::Bool(b) => b.to_string(),
        other => other.type_name().to_owned(),
    }
}

/// CEL equality: numbers compare across int, uint and double; lists and maps element-wise.
pub(crate) fn equals(a: &V<'_>, b: &V<'_>) -> bool {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return x.partial_cmp(&y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (V::Null, V::Null) => true,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Str(x), V::Str(y)) => x == y,
        (V::Timestamp(x), V::Timestamp(y)) => x == y,
        (V::Duration(x), V::Duration(y)) => x == y,
        _ => {
            if let (Some(x), Some(y)) = (a.list_len(), b.list_len()) {
                if x != y {
                    return false;
                }
                let (Some(xs), Some(ys)) = (a.list_items(), b.list_items()) else {
                    return false;
                };
                return xs.iter().zip(ys.iter()).all(|(x, y)| equals(x, y));
            }
            if let (Some(x), Some(y)) = (a.map_len(), b.map_len()) {
                if x != y {
                    return false;
                }
                let Some(xs) = a.map_entries() else {
                    return false;
                };
                return xs.iter().all(|(k, v)| match k.as_str() {
                    Some(k) => matches!(b.get(k), Some(Some(w)) if equals(v, &w)),
                    None => b
                        .map_entries()
                        .is_some_and(|ys| ys.iter().any(|(k2, w)| equals(k, k2) && equals(v, w))),
                });
            }
            false
        }
    }
}

/// A number as a comparable value: exact for ints, then doubles.
#[derive(PartialEq, PartialOrd)]
enum Num {
    I(i128),
    F(f64),
}

fn num(v: &V<'_>) -> Option<NumCmp> {
    match v {
        V::Int(i) => Some(NumCmp(Num::I(i128::from(*i)))),
        V::UInt(u) => Some(NumCmp(Num::I(i128::from(*u)))),
        V::Double(d) => Some(NumCmp(Num::F(*d))),
        _ => None,
    }
}

struct NumCmp(Num);

impl PartialEq for NumCmp {
    fn eq(&self, other: &Self) -> bool {
        self.partial_cmp(other) == Some(Ordering::Equal)
    }
}

impl PartialOrd for NumCmp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (&self.0, &other.0) {
            (Num::I(a), Num::I(b)) => a.partial_cmp(b),
            (Num::I(a), Num::F(b)) => (*a as f64).partial_cmp(b),
            (Num::F(a), Num::I(b)) => a.partial_cmp(&(*b as f64)),
            (Num::F(a), Num::F(b)) => a.partial_cmp(b),
        }
    }
}

fn compare(op: &str, a: &V<'_>, b: &V<'_>) -> Result<Ordering, EvalError> {
    let ord = if let (Some(x), Some(y)) = (num(a), num(b)) {
        x.partial_cmp(&y)
    } else {
        match (a, b) {
            (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
            (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
            (V::Timestamp(x), V::Timestamp(y)) => Some(x.cmp(y)),
            (V::Duration(x), V::Duration(y)) => Some(x.cmp(y)),
            _ => {
                return Err(EvalError::type_error(format!(
                    "cannot compare {} {op} {}",
                    a.type_name(),
                    b.type_name()
                )))
            }
        }
    };
    ord.ok_or_else(|| EvalError::type_error(format!("cannot compare NaN with `{op}`")))
}

/// What evaluation reads: the activation.
pub(crate) struct Ctx<'a, 'b> {
    pub act: &'b Activation<'a>,
}

fn overflow(op: &str) -> EvalError {
    EvalError::type_error(format!("integer overflow in `{op}`"))
}

impl Node {
    pub(crate) fn eval<'e>(
        &'e self,
        ctx: &Ctx<'e, '_>,
        locals: &mut Vec<V<'e>>,
    ) -> Result<V<'e>, EvalError> {
        match self {
            Node::Lit(c) => Ok(match c {
                Const::Null => V::Null,
                Const::Bool(b) => V::Bool(*b),
                Const::Int(i) => V::Int(*i),
                Const::UInt(u) => V::UInt(*u),
                Const::Double(d) => V::Double(*d),
                Const::Str(s) => V::Str(Cow::Borrowed(s)),
            }),
            Node::Var(Root::Now) => Ok(V::Timestamp(ctx.act.now)),
            Node::Var(Root::Prior) => Ok(match ctx.act.prior {
                Some(p) => V::from_json(p),
                None => V::Null,
            }),
            Node::Var(Root::Event) => Ok(event_value(ctx.act)),
            Node::Local(slot) => locals
                .get(*slot)
                .cloned()
                .ok_or_else(|| EvalError::type_error("comprehension variable out of scope")),
            Node::Table(t, _) => Ok(V::Table(t.as_ref())),
            Node::AllTables(all) => Ok(V::Map(
                all.iter()
                    .map(|(k, t)| (V::Str(Cow::Borrowed(k.as_str())), V::Table(t.as_ref())))
                    .collect(),
            )),
            Node::Select {
                operand,
                field,
                path,
                hint,
            } => {
                // `event.<attribute>` reads the event without building a map for it.
                if let Node::Var(Root::Event) = **operand {
                    return event_field(ctx.act, field)
                        .ok_or_else(|| EvalError::no_such_field(path));
                }
                let base = operand.eval(ctx, locals)?;
                if let V::JMap(m) = base {
                    return match hint.get(m, field) {
                        Some(v) => Ok(V::from_json(v)),
                        None => Err(EvalError::no_such_field(path)),
                    };
                }
                select(base, field, path)
            }
            Node::Has { operand, field } => {
                let base = match operand.eval(ctx, locals) {
                    Ok(b) => b,
                    Err(e) if e.missing_field => return Ok(V::Bool(false)),
                    Err(e) => return Err(e),
                };
                if let V::Null = base {
                    return Ok(V::Bool(false));
                }
                match base.get(field) {
                    Some(found) => Ok(V::Bool(found.is_some())),
                    None => Err(EvalError::type_error(format!(
                        "has() needs a map, got {}",
                        base.type_name()
                    ))),
                }
            }
            Node::Index(a, i, path) => {
                let base = a.eval(ctx, locals)?;
                let index = i.eval(ctx, locals)?;
                index_value(base, &index, path)
            }
            Node::List(items) => Ok(V::List(
                items
                    .iter()
                    .map(|n| n.eval(ctx, locals))
                    .collect::<Result<_, _>>()?,
            )),
            Node::Map(entries) => {
                let mut out: Vec<(V<'e>, V<'e>)> = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let k = k.eval(ctx, locals)?;
                    if !matches!(k, V::Str(_) | V::Int(_) | V::UInt(_) | V::Bool(_)) {
                        return Err(EvalError::type_error(format!(
                            "a map key must be a string, int or bool, got {}",
                            k.type_name()
                        )));
                    }
                    if out.iter().any(|(k2, _)| equals(&k, k2)) {
                        return Err(EvalError::type_error("map literal has a repeated key"));
                    }
                    let v = v.eval(ctx, locals)?;
                    out.push((k, v));
                }
                Ok(V::Map(out))
            }
            Node::And(a, b) => {
                // CEL's commutative `&&`: false wins over an error on either side.
                let left = a.eval(ctx, locals).and_then(|v| boolean("&&", v));
                if let Ok(false) = left {
                    return Ok(V::Bool(false));
                }
                let right = b.eval(ctx, locals).and_then(|v| boolean("&&", v));
                match (left, right) {
                    (_, Ok(false)) => Ok(V::Bool(false)),
                    (Ok(true), Ok(true)) => Ok(V::Bool(true)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    _ => Ok(V::Bool(false)),
                }
            }
            Node::Or(a, b) => {
                let left = a.eval(ctx, locals).and_then(|v| boolean("||", v));
                if let Ok(true) = left {
                    return Ok(V::Bool(true));
                }
                let right = b.eval(ctx, locals).and_then(|v| boolean("||", v));
                match (left, right) {
                    (_, Ok(true)) => Ok(V::Bool(true)),
                    (Ok(false), Ok(false)) => Ok(V::Bool(false)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    _ => Ok(V::Bool(true)),
                }
            }
            Node::Cond(parts) => {
                let [c, t, f] = &**parts;
                if boolean("?:", c.eval(ctx, locals)?)? {
                    t.eval(ctx, locals)
                } else {
                    f.eval(ctx, locals)
                }
            }
            Node::Un(op, a) => {
                if *op == UnOp::NotStrictlyFalse {
                    return Ok(V::Bool(!matches!(a.eval(ctx, locals), Ok(V::Bool(false)))));
                }
                let v = a.eval(ctx, locals)?;
                match (op, v) {
                    (UnOp::Not, V::Bool(b)) => Ok(V::Bool(!b)),
                    (UnOp::Neg, V::Int(i)) => {
                        i.checked_neg().map(V::Int).ok_or_else(|| overflow("-"))
                    }
                    (UnOp::Neg, V::Double(d)) => Ok(V::Double(-d)),
                    (UnOp::Neg, V::Duration(d)) => Ok(V::Duration(-d)),
                    (op, v) => Err(EvalError::type_error(format!(
                        "`{}` does not apply to {}",
                        if *op == UnOp::Not { "!" } else { "-" },
                        v.type_name()
                    ))),
                }
            }
            Node::Bin(op, a, b) => {
                let x = a.eval(ctx, locals)?;
                let y = b.eval(ctx, locals)?;
                binary(*op, x, y)
            }
            Node::Call(f, args, regex) => f.call(args, regex.as_deref(), ctx, locals),
            Node::Comprehension(c) => comprehension(c, ctx, locals),
        }
    }
}

fn boolean(op: &str, v: V<'_>) -> Result<bool, EvalError> {
    match v {
        V::Bool(b) => Ok(b),
        other => Err(EvalError::type_error(format!(
            "`{op}` needs bool operands, got {}",
            other.type_name()
        ))),
    }
}

/// The JSON a plain path `event.data.a.b…` reads, with the same errors as evaluating it (which
/// converts it to a value and back into an equal copy); `None` when `node` is not such a path or
/// meets something other than an object or null, left to the evaluator.
pub(crate) fn data_path<'e>(
    node: &'e Node,
    act: &Activation<'e>,
) -> Option<Result<&'e Json, EvalError>> {
    let Node::Select {
        operand,
        field,
        path,
        hint,
    } = node
    else {
        return None;
    };
    let base = match &**operand {
        Node::Select {
            operand: root,
            field: data,
            ..
        } if matches!(**root, Node::Var(Root::Event)) && data == "data" => match act.data {
            Json::Null => return Some(Err(EvalError::no_such_field(path))),
            d => d,
        },
        inner => match data_path(inner, act)? {
            Ok(j) => j,
            Err(e) => return Some(Err(e)),
        },
    };
    match base {
        Json::Object(m) => Some(
            hint.get(m, field)
                .ok_or_else(|| EvalError::no_such_field(path)),
        ),
        // (only below `event.data`, which is never null here)
        Json::Null => Some(Err(EvalError::null_parent(path))),
        _ => None,
    }
}

/// `event` as a whole, a map; built only when an expression uses `event` itself.
fn event_value<'e>(act: &Activation<'e>) -> V<'e> {
    let mut m: Vec<(V<'e>, V<'e>)> = Vec::with_capacity(6);
    for k in ["id", "source", "type", "subject", "time", "data"] {
        if let Some(v) = event_field(act, k) {
            m.push((V::Str(Cow::Borrowed(k)), v));
        }
    }
    V::Map(m)
}

fn event_field<'e>(act: &Activation<'e>, field: &str) -> Option<V<'e>> {
    Some(match field {
        "id" => V::Str(Cow::Borrowed(act.id)),
        "source" => V::Str(Cow::Borrowed(act.source)),
        "type" => V::Str(Cow::Borrowed(act.kind)),
        "subject" => V::Str(Cow::Borrowed(act.subject)),
        "time" => act.time.map(V::Timestamp).unwrap_or(V::Null),
        "data" => match act.data {
            Json::Null => V::JMap(empty_map()),
            d => V::from_json(d),
        },
        _ => return None,
    })
}

fn empty_map() -> &'static Map<String, Json> {
    static EMPTY: std::sync::OnceLock<Map<String, Json>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

fn select<'e>(base: V<'e>, field: &str, path: &Arc<str>) -> Result<V<'e>, EvalError> {
    if let V::Null = base {
        return Err(EvalError::null_parent(path));
    }
    match base.get(field) {
        Some(Some(v)) => Ok(v),
        Some(None) => Err(EvalError::no_such_field(path)),
        None => Err(EvalError::type_error(format!(
            "cannot read field `{field}` of a {} (`{path}`)",
            base.type_name()
        ))),
    }
}

fn index_value<'e>(base: V<'e>, index: &V<'_>, path: &str) -> Result<V<'e>, EvalError> {
    if base.list_len().is_some() {
        let len = base.list_len().unwrap_or(0);
        let i = match index {
            V::Int(i) => *i,
            V::UInt(u) => i64::try_from(*u).unwrap_or(i64::MAX),
            V::Double(d) if d.fract() == 0.0 => *d as i64,
            other => {
                return Err(EvalError::type_error(format!(
                    "a list index must be an int, got {} (`{path}`)",
                    other.type_name()
                )))
            }
        };
        if i < 0 || i as u64 >= len as u64 {
            return Err(EvalError::missing(format!(
                "index {i} out of range for a list of {len} (`{path}`)"
            )));
        }
        let i = i as usize;
        return Ok(match base {
            V::JList(l) => V::from_json(&l[i]),
            V::List(mut l) => l.swap_remove(i),
            _ => V::Null,
        });
    }
    if let V::Null = base {
        return Err(EvalError::missing(format!("cannot index null (`{path}`)")));
    }
    if base.map_len().is_some() {
        let key: Cow<'_, str> = match index {
            V::Str(s) => Cow::Borrowed(s),
            V::Int(i) => Cow::Owned(i.to_string()),
            V::UInt(u) => Cow::Owned(u.to_string()),
            V::Bool(b) => Cow::Owned(b.to_string()),
            other => {
                return Err(EvalError::type_error(format!(
                    "a map key must be a string, got {} (`{path}`)",
                    other.type_name()
                )))
            }
        };
        if let V::Map(m) = &base {
            return m
                .iter()
                .find(|(k, _)| equals(k, index))
                .map(|(_, v)| v.clone())
                .ok_or_else(|| EvalError::missing(format!("no such key {key:?} (`{path}`)")));
        }
        return match base.get(&key) {
            Some(Some(v)) => Ok(v),
            _ => Err(EvalError::missing(format!(
                "no such key {key:?} (`{path}`)"
            ))),
        };
    }
    Err(EvalError::type_error(format!(
        "cannot index a {} (`{path}`)",
        base.type_name()
    )))
}

fn binary<'e>(op: BinOp, x: V<'e>, y: V<'e>) -> Result<V<'e>, EvalError> {
    let sym = match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Rem => "%",
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::In => "in",
        BinOp::Index => "[]",
    };
    let mismatch = |x: &V<'_>, y: &V<'_>| {
        EvalError::type_error(format!(
            "`{sym}` does not apply to {} and {}",
            x.type_name(),
            y.type_name()
        ))
    };
    match op {
        BinOp::Eq => return Ok(V::Bool(equals(&x, &y))),
        BinOp::Ne => return Ok(V::Bool(!equals(&x, &y))),
        BinOp::Lt => return Ok(V::Bool(compare(sym, &x, &y)? == Ordering::Less)),
        BinOp::Le => return Ok(V::Bool(compare(sym, &x, &y)? != Ordering::Greater)),
        BinOp::Gt => return Ok(V::Bool(compare(sym, &x, &y)? == Ordering::Greater)),
        BinOp::Ge => return Ok(V::Bool(compare(sym, &x, &y)? != Ordering::Less)),
        BinOp::In => {
            if let V::JList(l) = &y {
                return Ok(V::Bool(l.iter().any(|e| equals(&x, &V::from_json(e)))));
            }
            if let V::List(l) = &y {
                return Ok(V::Bool(l.iter().any(|e| equals(&x, e))));
            }
            if let V::Str(hay) = &y {
                if let V::Str(needle) = &x {
                    // Not CEL, but what a mapping author means by `"x" in "a,x,b"` is substring.
                    return Ok(V::Bool(hay.contains(needle.as_ref())));
                }
            }
            if y.map_len().is_some() {
                return Ok(V::Bool(match x.as_str() {
                    Some(k) => matches!(y.get(k), Some(Some(_))),
                    None => y
                        .map_entries()
                        .is_some_and(|es| es.iter().any(|(k, _)| equals(k, &x))),
                }));
            }
            if let V::Null = y {
                return Err(EvalError::missing(
                    "`in` needs a list or map on the right, got null",
                ));
            }
            return Err(mismatch(&x, &y));
        }
        _ => {}
    }
    Ok(match (op, x, y) {
        (BinOp::Add, V::Str(a), V::Str(b)) => {
            // `a + b + c` grows the left operand's buffer instead of copying it again.
            let s = match a {
                Cow::Owned(mut s) => {
                    s.push_str(&b);
                    s
                }
                Cow::Borrowed(a) => {
                    let mut s = String::with_capacity(a.len() + b.len() + 16);
                    s.push_str(a);
                    s.push_str(&b);
                    s
                }
            };
            V::Str(Cow::Owned(s))
        }
        (BinOp::Add, V::Int(a), V::Int(b)) => {
            V::Int(a.checked_add(b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Sub, V::Int(a), V::Int(b)) => {
            V::Int(a.checked_sub(b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Mul, V::Int(a), V::Int(b)) => {
            V::Int(a.checked_mul(b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Div, V::Int(a), V::Int(b)) => {
            if b == 0 {
                return Err(EvalError::type_error("division by zero"));
            }
            V::Int(a.checked_div(b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Rem, V::Int(a), V::Int(b)) => {
            if b == 0 {
                return Err(EvalError::type_error("modulus by zero"));
            }
            V::Int(a.checked_rem(b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Add, V::UInt(a), V::UInt(b)) => {
            V::UInt(a.checked_add(b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Sub, V::UInt(a), V::UInt(b)) => {
            V::UInt(a.checked_sub(b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Mul, V::UInt(a), V::UInt(b)) => {
            V::UInt(a.checked_mul(b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Div | BinOp::Rem, V::UInt(_), V::UInt(0)) => {
            return Err(EvalError::type_error("division by zero"))
        }
        (BinOp::Div, V::UInt(a), V::UInt(b)) => V::UInt(a / b),
        (BinOp::Rem, V::UInt(a), V::UInt(b)) => V::UInt(a % b),
        (BinOp::Add, V::Double(a), V::Double(b)) => V::Double(a + b),
        (BinOp::Sub, V::Double(a), V::Double(b)) => V::Double(a - b),
        (BinOp::Mul, V::Double(a), V::Double(b)) => V::Double(a * b),
        (BinOp::Div, V::Double(a), V::Double(b)) => V::Double(a / b),
        (BinOp::Add, V::Timestamp(t), V::Duration(d))
        | (BinOp::Add, V::Duration(d), V::Timestamp(t)) => {
            V::Timestamp(t.checked_add_signed(d).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Sub, V::Timestamp(t), V::Duration(d)) => {
            V::Timestamp(t.checked_sub_signed(d).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Sub, V::Timestamp(a), V::Timestamp(b)) => V::Duration(a.signed_duration_since(b)),
        (BinOp::Add, V::Duration(a), V::Duration(b)) => {
            V::Duration(a.checked_add(&b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Sub, V::Duration(a), V::Duration(b)) => {
            V::Duration(a.checked_sub(&b).ok_or_else(|| overflow(sym))?)
        }
        (BinOp::Add, a, b) if a.list_len().is_some() && b.list_len().is_some() => {
            let mut items = a.list_items().unwrap_or_default();
            items.extend(b.list_items().unwrap_or_default());
            V::List(items)
        }
        (_, x, y) => return Err(mismatch(&x, &y)),
    })
}

fn comprehension<'e>(
    c: &'e Comprehension,
    ctx: &Ctx<'e, '_>,
    locals: &mut Vec<V<'e>>,
) -> Result<V<'e>, EvalError> {
    let range = c.range.eval(ctx, locals)?;
    let items: Vec<(V<'e>, V<'e>)> = if let Some(items) = range.list_items() {
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (V::Int(i as i64), v))
            .collect()
    } else if let Some(entries) = range.map_entries() {
        entries
    } else {
        return Err(EvalError::type_error(format!(
            "cannot iterate over a {}",
            range.type_name()
        )));
    };
    let init = c.init.eval(ctx, locals)?;
    let need = c.accu.max(c.var).max(c.var2.unwrap_or(0)) + 1;
    if locals.len() < need {
        locals.resize(need, V::Null);
    }
    locals[c.accu] = init;
    for (k, v) in items {
        match c.var2 {
            // two-variable form: (index or key, value)
            Some(v2) => {
                locals[c.var] = k;
                locals[v2] = v;
            }
            // one-variable form: the element of a list, the key of a map
            None => locals[c.var] = if range.list_len().is_some() { v } else { k },
        }
        if !boolean("comprehension", c.cond.eval(ctx, locals)?)? {
            break;
        }
        let next = c.step.eval(ctx, locals)?;
        locals[c.accu] = next;
    }
    c.result.eval(ctx, locals)
}
