//! The expression language of the mappings: a subset of [CEL] plus the identity team's string and
//! date functions (`lower`, `coalesce`, `format_date`, `normalize_diacritics`, `lookup`, …).
//!
//! Expressions are parsed by the maintained `cel` crate (cel-rust), so the syntax, the operator
//! precedence, string escapes and the macros (`has`, `all`, `exists`, `exists_one`, `map`,
//! `filter`) are CEL's own. The parsed tree is then checked and compiled into a small evaluator
//! of our own that reads the event's JSON in place: cel-rust's interpreter measured about twice
//! the planning budget (see `docs/mapping-expressions.md` for the numbers and the reasoning).
//!
//! Invariants:
//! - [`compile`] reports unknown functions, wrong arities, unknown variables, unknown tables,
//!   invalid regular expressions and date formats, and literal arguments of the wrong type, each
//!   with the character offset of the offending token and a hint; it never panics.
//! - [`Program::eval`] is pure: the same [`Activation`] gives the same value. It never panics;
//!   a failure is an [`EvalError`] for that event only, flagged `missing_field` when the cause is
//!   an absent key (which `coalesce` and `default` treat as null).
//! - An [`Activation`] borrows the event and the prior state: building it copies nothing, and
//!   every expression of every target reads the same borrowed JSON.

mod eval;
mod funcs;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::parser::Expression;

use eval::{Node, Root};
use funcs::Func;

/// Static lookup tables declared in the mapping YAML: `tables.NAME` and `lookup("NAME", key)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Env {
    /// Table name → key → value.
    pub tables: BTreeMap<String, BTreeMap<String, Json>>,
}

/// A compile-time error: where in the source, what is wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 0-based character (not byte) offset into the source of the offending token.
    pub offset: usize,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// What to do instead, when there is something useful to say.
    pub hint: Option<String>,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExprError {}

/// An evaluation error: affects one event on one target.
///
/// The message of an absent field is only formatted when asked for: `default` and `coalesce`
/// swallow most of them, and planning must not pay for text nobody reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    detail: Detail,
    /// The expression read a key that the event (or prior state, or table) does not have.
    pub missing_field: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Detail {
    Text(String),
    /// `no such field `{path}``.
    NoSuchField(Arc<str>),
    /// `no such field `{path}`: its parent is null`.
    NullParent(Arc<str>),
}

impl EvalError {
    pub(crate) fn missing(message: impl Into<String>) -> Self {
        EvalError {
            detail: Detail::Text(message.into()),
            missing_field: true,
        }
    }

    /// `no such field `path``, formatted only when read.
    pub(crate) fn no_such_field(path: &Arc<str>) -> Self {
        EvalError {
            detail: Detail::NoSuchField(path.clone()),
            missing_field: true,
        }
    }

    /// `no such field `path`: its parent is null`, formatted only when read.
    pub(crate) fn null_parent(path: &Arc<str>) -> Self {
        EvalError {
            detail: Detail::NullParent(path.clone()),
            missing_field: true,
        }
    }

    pub(crate) fn type_error(message: impl Into<String>) -> Self {
        EvalError {
            detail: Detail::Text(message.into()),
            missing_field: false,
        }
    }

    /// What failed, lowercase, no trailing period.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// What failed, without copying a message that is already text.
    pub fn into_message(self) -> String {
        match self.detail {
            Detail::Text(s) => s,
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Detail::Text(s) => f.write_str(s),
            Detail::NoSuchField(path) => write!(f, "no such field `{path}`"),
            Detail::NullParent(path) => write!(f, "no such field `{path}`: its parent is null"),
        }
    }
}

impl std::error::Error for EvalError {}

/// The variables of one event: built once, shared by every expression of every target.
///
/// Building it copies nothing; expressions read the event's JSON in place.
#[derive(Debug, Clone, Copy)]
pub struct Activation<'a> {
    pub(crate) id: &'a str,
    pub(crate) source: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) time: Option<DateTime<Utc>>,
    pub(crate) data: &'a Json,
    pub(crate) prior: Option<&'a Json>,
    pub(crate) now: DateTime<Utc>,
}

impl<'a> Activation<'a> {
    /// The variables `event`, `prior` (the previous state's data, or null) and `now`.
    pub fn new(
        event: &'a scimflow_core::Event,
        prior: Option<&'a scimflow_core::SubjectState>,
        now: DateTime<Utc>,
    ) -> Self {
        Activation {
            id: &event.id,
            source: &event.source,
            kind: &event.kind,
            subject: &event.subject,
            time: event.time,
            data: &event.data,
            prior: prior.map(|p| &p.data),
            now,
        }
    }

    /// The variables as they were for the event a stored state stands for: `event` is the
    /// state's last event (its data, id, type, subject and time; an empty source), `prior` null.
    /// Borrows the state; copies nothing.
    pub fn of_state(state: &'a scimflow_core::SubjectState, now: DateTime<Utc>) -> Self {
        Activation {
            id: &state.last_event_id,
            source: "",
            kind: &state.last_kind,
            subject: &state.subject,
            time: state.last_time,
            data: &state.data,
            prior: None,
            now,
        }
    }
}

/// [`Reads`] as a bit mask over a fixed list of data keys (at most 64), for cheap checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadMask {
    keys: u64,
    fields: u8,
    whole_data: bool,
    prior: bool,
}

impl ReadMask {
    /// The mask of `reads` over `keys`; `None` when it reads a data key not in the list.
    pub fn new(reads: &Reads, keys: &[String]) -> Option<ReadMask> {
        let mut mask = 0u64;
        for k in &reads.data_keys {
            let i = keys.iter().position(|x| x == k)?;
            mask |= 1u64.checked_shl(u32::try_from(i).ok()?)?;
        }
        Some(ReadMask {
            keys: mask,
            fields: reads.fields,
            whole_data: reads.whole_data,
            prior: reads.prior,
        })
    }

    /// What either reads.
    pub fn union(self, other: ReadMask) -> ReadMask {
        ReadMask {
            keys: self.keys | other.keys,
            fields: self.fields | other.fields,
            whole_data: self.whole_data | other.whole_data,
            prior: self.prior | other.prior,
        }
    }

    /// Whether an expression with this mask evaluates the same under both activations `changes`
    /// was computed from. `prior` always counts as changed.
    pub fn unchanged(self, changes: &Changes) -> bool {
        !self.prior
            && self.keys & changes.keys == 0
            && self.fields & changes.fields == 0
            && !(self.whole_data && changes.data)
    }
}

/// Where two activations differ, over a fixed list of data keys (at most 64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    keys: u64,
    fields: u8,
    data: bool,
}

impl Changes {
    /// Compares `a` and `b` on the event attributes, `now`, and the data keys in `keys`. Values are
    /// compared strictly (object keys in order, `1` unlike `1.0`), so that an expression reading
    /// only unchanged parts cannot tell the two apart.
    pub fn between(keys: &[String], a: &Activation<'_>, b: &Activation<'_>) -> Changes {
        let mut fields = 0;
        for (bit, same) in [
            (Reads::EVENT_ID, a.id == b.id),
            (Reads::EVENT_SOURCE, a.source == b.source),
            (Reads::EVENT_TYPE, a.kind == b.kind),
            (Reads::EVENT_SUBJECT, a.subject == b.subject),
            (Reads::EVENT_TIME, a.time == b.time),
            (Reads::NOW, a.now == b.now),
        ] {
            if !same {
                fields |= bit;
            }
        }
        let all = if keys.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << keys.len()) - 1
        };
        fn object(d: &Json) -> Option<Option<&Map<String, Json>>> {
            match d {
                Json::Object(m) => Some(Some(m)),
                Json::Null => Some(None),
                _ => None,
            }
        }
        let (ma, mb) = match (object(a.data), object(b.data)) {
            (Some(ma), Some(mb)) => (ma, mb),
            // A data that is not an object reads differently (as a list, a string…): only an
            // identical one is unchanged.
            _ => {
                let same = same_json(a.data, b.data);
                return Changes {
                    keys: if same { 0 } else { all },
                    fields,
                    data: !same,
                };
            }
        };
        let empty = Map::new();
        let (ma, mb) = (ma.unwrap_or(&empty), mb.unwrap_or(&empty));
        let mut changed = 0u64;
        let mut data = false;
        // Events of one source list their keys in the same order: walk both without hashing.
        let aligned = ma.len() == mb.len() && ma.keys().zip(mb.keys()).all(|(x, y)| x == y);
        if aligned {
            for ((k, va), vb) in ma.iter().zip(mb.values()) {
                if !same_json(va, vb) {
                    data = true;
                    if let Some(i) = keys.iter().position(|x| x == k) {
                        changed |= 1u64 << i.min(63);
                    }
                }
            }
        } else {
            data = true;
            for (i, k) in keys.iter().enumerate().take(64) {
                let same = match (ma.get(k), mb.get(k)) {
                    (Some(x), Some(y)) => same_json(x, y),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    changed |= 1u64 << i;
                }
            }
        }
        Changes {
            keys: changed,
            fields,
            data,
        }
    }
}

/// JSON equality that also compares the order of object keys (which evaluation can observe).
fn same_json(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same_json(p, q))
        }
        _ => a == b,
    }
}

/// A compiled expression: `Send + Sync`, evaluated many times without re-parsing.
#[derive(Debug, Clone)]
pub struct Program {
    source: String,
    root: Node,
    /// How many comprehension variables evaluation needs room for.
    locals: usize,
    /// What evaluation reads from the activation.
    reads: Reads,
}

/// What an expression reads from its [`Activation`]: two activations that agree on all of it give
/// the expression the same result (value or error), so a planner can reuse one evaluation for the
/// other instead of evaluating again. Found once, at compile time, from the compiled tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// Top-level keys of `event.data` read by name: `event.data.key…`, `has(event.data.key)`.
    pub data_keys: BTreeSet<String>,
    /// `event.data` as a whole: returned, iterated, or indexed with a computed key.
    pub whole_data: bool,
    /// The other event attributes read, a set of the `EVENT_*` bits.
    pub fields: u8,
    /// `prior`, the previous state's data (it differs between an event and the state it replaces).
    pub prior: bool,
}

impl Reads {
    /// `event.id`.
    pub const EVENT_ID: u8 = 1;
    /// `event.source`.
    pub const EVENT_SOURCE: u8 = 2;
    /// `event.type`.
    pub const EVENT_TYPE: u8 = 4;
    /// `event.subject`.
    pub const EVENT_SUBJECT: u8 = 8;
    /// `event.time`.
    pub const EVENT_TIME: u8 = 16;
    /// `now`.
    pub const NOW: u8 = 32;

    /// Adds what `other` reads.
    pub fn merge(&mut self, other: &Reads) {
        self.data_keys.extend(other.data_keys.iter().cloned());
        self.whole_data |= other.whole_data;
        self.fields |= other.fields;
        self.prior |= other.prior;
    }

    fn event_field(&mut self, field: &str) {
        match field {
            "data" => self.whole_data = true,
            "id" => self.fields |= Self::EVENT_ID,
            "source" => self.fields |= Self::EVENT_SOURCE,
            "type" => self.fields |= Self::EVENT_TYPE,
            "subject" => self.fields |= Self::EVENT_SUBJECT,
            "time" => self.fields |= Self::EVENT_TIME,
            // any other field is absent from every event: the same error every time
            _ => {}
        }
    }

    fn collect(&mut self, n: &Node) {
        let is_event = |n: &Node| matches!(n, Node::Var(Root::Event));
        let is_data = |n: &Node| matches!(n, Node::Select { operand, field, .. } if is_event(operand) && field == "data");
        match n {
            Node::Select { operand, field, .. } | Node::Has { operand, field } => {
                if is_event(operand) {
                    self.event_field(field);
                } else if is_data(operand) {
                    self.data_keys.insert(field.clone());
                } else {
                    self.collect(operand);
                }
            }
            Node::Var(Root::Event) => {
                self.whole_data = true;
                self.fields |= Self::EVENT_ID
                    | Self::EVENT_SOURCE
                    | Self::EVENT_TYPE
                    | Self::EVENT_SUBJECT
                    | Self::EVENT_TIME;
            }
            Node::Var(Root::Prior) => self.prior = true,
            Node::Var(Root::Now) => self.fields |= Self::NOW,
            Node::Lit(_) | Node::Local(_) | Node::Table(..) | Node::AllTables(_) => {}
            Node::Index(a, b, _) | Node::Bin(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
                self.collect(a);
                self.collect(b);
            }
            Node::Un(_, a) => self.collect(a),
            Node::List(items) | Node::Call(_, items, _) => {
                items.iter().for_each(|i| self.collect(i))
            }
            Node::Map(entries) => entries.iter().for_each(|(k, v)| {
                self.collect(k);
                self.collect(v);
            }),
            Node::Cond(parts) => parts.iter().for_each(|p| self.collect(p)),
            Node::Comprehension(c) => {
                for p in [&c.range, &c.init, &c.cond, &c.step, &c.result] {
                    self.collect(p);
                }
            }
        }
    }
}

impl Program {
    /// Evaluates the expression against one event and converts the result to JSON:
    /// timestamps become RFC 3339 strings, durations seconds, maps and lists recurse.
    pub fn eval(&self, act: &Activation<'_>) -> Result<Json, EvalError> {
        // A plain `event.data.a.b` (most attribute mappings) copies the JSON found there.
        if let Some(found) = eval::data_path(&self.root, act) {
            return found.cloned();
        }
        let mut locals = Vec::with_capacity(self.locals);
        let ctx = eval::Ctx { act };
        let value = self.root.eval(&ctx, &mut locals)?;
        Ok(value.into_json())
    }

    /// Evaluates the expression as a condition (`scope`, `when`): true only for boolean `true`.
    ///
    /// A non-boolean result is an error, so a typo such as `event.data.department` (a string)
    /// used as a condition is reported instead of silently treated as true or false.
    pub fn eval_bool(&self, act: &Activation<'_>) -> Result<bool, EvalError> {
        let mut locals = Vec::with_capacity(self.locals);
        let ctx = eval::Ctx { act };
        match self.root.eval(&ctx, &mut locals)? {
            eval::V::Bool(b) => Ok(b),
            other => Err(EvalError::type_error(format!(
                "condition must be a bool, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates the expression as a condition without converting a boolean result to JSON:
    /// `Ok(Ok(b))` for a boolean, `Ok(Err(json))` for any other value (null included).
    pub(crate) fn eval_cond(&self, act: &Activation<'_>) -> Result<Result<bool, Json>, EvalError> {
        let mut locals = Vec::with_capacity(self.locals);
        let ctx = eval::Ctx { act };
        match self.root.eval(&ctx, &mut locals)? {
            eval::V::Bool(b) => Ok(Ok(b)),
            other => Ok(Err(other.into_json())),
        }
    }

    /// The source text the program was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What evaluation reads from the activation.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }
}

/// The root variables an expression may use.
pub const VARIABLES: [&str; 4] = ["event", "prior", "now", "tables"];

/// Parses, checks and compiles `src`.
pub fn compile(src: &str, env: &Env) -> Result<Program, ExprError> {
    let owned = src.to_owned();
    // The parser is generated code; a panic in it must not take the daemon down with it.
    let parsed = std::panic::catch_unwind(move || cel::Program::compile(&owned));
    let parsed = match parsed {
        Ok(Ok(p)) => p,
        Ok(Err(errors)) => return Err(parse_error(src, &errors)),
        Err(_) => {
            return Err(ExprError {
                offset: 0,
                message: "expression could not be parsed".into(),
                hint: None,
            })
        }
    };
    let mut c = Compiler {
        src,
        info: parsed.source_info(),
        env,
        scopes: Vec::new(),
        max_locals: 0,
        all_tables: None,
    };
    let root = c.node(parsed.expression())?;
    let mut reads = Reads::default();
    reads.collect(&root);
    Ok(Program {
        source: src.to_owned(),
        root,
        locals: c.max_locals,
        reads,
    })
}

fn parse_error(src: &str, errors: &cel::ParseErrors) -> ExprError {
    let Some(first) = errors.errors.first() else {
        return ExprError {
            offset: 0,
            message: "syntax error".into(),
            hint: None,
        };
    };
    let (line, col) = first.pos;
    // Lines are 1-based, columns 0-based character positions within the line.
    let mut offset = 0usize;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if (i as isize) + 1 >= line {
            break;
        }
        offset += l.chars().count();
    }
    offset += col.max(0) as usize;
    let offset = offset.min(src.chars().count());
    let msg = first.msg.trim();
    let hint = if src[..].trim().is_empty() {
        Some("write an expression, e.g. event.data.email".to_owned())
    } else if msg.contains("token recognition error") || msg.contains("'") && src.contains('\'') {
        Some("string literals use \"double\" or 'single' quotes; quote the whole expression in YAML, e.g. '\"dept-\" + lower(event.data.department)'".to_owned())
    } else {
        Some(
            "CEL syntax: event.data.field, f(x, y), a == b, cond ? a : b, \"x\" in list".to_owned(),
        )
    };
    ExprError {
        offset,
        message: format!("syntax error: {msg}"),
        hint,
    }
}

/// Every table, for an expression that uses `tables` as a whole.
type AllTables = Arc<BTreeMap<String, Arc<BTreeMap<String, Json>>>>;

struct Compiler<'s> {
    src: &'s str,
    info: &'s cel::common::ast::SourceInfo,
    env: &'s Env,
    /// Comprehension variables in scope, innermost last: (name, slot).
    scopes: Vec<(String, usize)>,
    max_locals: usize,
    all_tables: Option<AllTables>,
}

/// Static knowledge of an expression's type, for the compile-time checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Null,
    Bool,
    Int,
    Double,
    String,
    List,
    Map,
    Timestamp,
    Duration,
}

impl Ty {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Null => "null",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::List => "list",
            Ty::Map => "map",
            Ty::Timestamp => "timestamp",
            Ty::Duration => "duration",
        }
    }
}

impl Compiler<'_> {
    /// Character offset of an AST node.
    fn offset(&self, e: &Expression) -> usize {
        let byte = self
            .info
            .offset_for(e.id)
            .map(|(start, _)| start as usize)
            .unwrap_or(0);
        // cel-rust reports byte offsets; ours are in characters.
        let mut byte = byte.min(self.src.len());
        while !self.src.is_char_boundary(byte) {
            byte -= 1;
        }
        self.src[..byte].chars().count()
    }

    /// Offset of a call's function name: the parser places a call at its `(`.
    fn name_offset(&self, e: &Expression, name: &str) -> usize {
        let paren = self.offset(e);
        let chars: Vec<char> = self.src.chars().collect();
        let mut end = paren.min(chars.len());
        while end > 0 && chars[end - 1].is_whitespace() {
            end -= 1;
        }
        let len = name.chars().count();
        if end >= len && chars[end - len..end].iter().copied().eq(name.chars()) {
            end - len
        } else {
            paren
        }
    }

    fn err(&self, e: &Expression, message: String, hint: Option<String>) -> ExprError {
        ExprError {
            offset: self.offset(e),
            message,
            hint,
        }
    }

    fn node(&mut self, e: &Expression) -> Result<Node, ExprError> {
        match &e.expr {
            Expr::Unspecified => Err(self.err(e, "empty expression".into(), None)),
            Expr::Literal(lit) => Ok(Node::Lit(literal(lit))),
            Expr::Ident(name) => self.ident(e, name),
            Expr::Select(sel) => {
                if !sel.test {
                    if let Expr::Ident(root) = &sel.operand.expr {
                        if root == "tables" && !self.is_local("tables") {
                            return self.table(e, &sel.field);
                        }
                    }
                }
                let operand = self.node(&sel.operand)?;
                if sel.test {
                    Ok(Node::Has {
                        operand: Box::new(operand),
                        field: sel.field.clone(),
                    })
                } else {
                    let path = format!("{}.{}", path_of(&operand), sel.field);
                    Ok(Node::Select {
                        operand: Box::new(operand),
                        field: sel.field.clone(),
                        path: path.into(),
                        hint: eval::Hint::default(),
                    })
                }
            }
            Expr::List(list) => {
                if !list.optional_indices.is_empty() {
                    return Err(self.err(
                        e,
                        "optional list elements are not supported".into(),
                        None,
                    ));
                }
                let items = list
                    .elements
                    .iter()
                    .map(|x| self.node(x))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Node::List(items))
            }
            Expr::Map(map) => {
                let mut entries = Vec::with_capacity(map.entries.len());
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(m) if !m.optional => {
                            entries.push((self.node(&m.key)?, self.node(&m.value)?));
                        }
                        _ => {
                            return Err(ExprError {
                                offset: self.offset(&m_key(entry)),
                                message: "optional map entries are not supported".into(),
                                hint: None,
                            })
                        }
                    }
                }
                Ok(Node::Map(entries))
            }
            Expr::Struct(s) => Err(self.err(
                e,
                format!(
                    "message construction `{} {{…}}` is not supported",
                    s.type_name
                ),
                Some("build a map instead: {\"key\": value}".into()),
            )),
            Expr::Comprehension(c) => {
                let range = self.node(&c.iter_range)?;
                let init = self.node(&c.accu_init)?;
                let accu = self.push_local(&c.accu_var);
                let var = self.push_local(&c.iter_var);
                let var2 = c.iter_var2.as_ref().map(|v| self.push_local(v));
                let cond = self.node(&c.loop_cond)?;
                let step = self.node(&c.loop_step)?;
                if var2.is_some() {
                    self.scopes.pop();
                }
                self.scopes.pop();
                let result = self.node(&c.result)?;
                self.scopes.pop();
                Ok(Node::Comprehension(Box::new(eval::Comprehension {
                    range,
                    var,
                    var2,
                    accu,
                    init,
                    cond,
                    step,
                    result,
                })))
            }
            Expr::Call(call) => self.call(e, call),
        }
    }

    fn is_local(&self, name: &str) -> bool {
        self.scopes.iter().any(|(n, _)| n == name)
    }

    fn push_local(&mut self, name: &str) -> usize {
        let slot = self.scopes.len();
        self.scopes.push((name.to_owned(), slot));
        self.max_locals = self.max_locals.max(slot + 1);
        slot
    }

    fn ident(&mut self, e: &Expression, name: &str) -> Result<Node, ExprError> {
        if let Some((_, slot)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
            return Ok(Node::Local(*slot));
        }
        match name {
            "event" => Ok(Node::Var(Root::Event)),
            "prior" => Ok(Node::Var(Root::Prior)),
            "now" => Ok(Node::Var(Root::Now)),
            "tables" => {
                let all = self.all_tables();
                Ok(Node::AllTables(all))
            }
            _ => {
                let mut hint = format!("the variables are {}", VARIABLES.join(", "));
                if let Some(close) = closest(name, VARIABLES.iter().copied()) {
                    hint = format!("did you mean `{close}`? {hint}");
                } else if !name.contains('.') {
                    hint.push_str("; event fields are under event.data, e.g. event.data.");
                    hint.push_str(name);
                }
                Err(self.err(e, format!("unknown variable `{name}`"), Some(hint)))
            }
        }
    }

    fn all_tables(&mut self) -> AllTables {
        if let Some(all) = &self.all_tables {
            return all.clone();
        }
        let all: BTreeMap<_, _> = self
            .env
            .tables
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
            .collect();
        let all = Arc::new(all);
        self.all_tables = Some(all.clone());
        all
    }

    fn table(&mut self, e: &Expression, name: &str) -> Result<Node, ExprError> {
        match self.env.tables.get(name) {
            Some(t) => Ok(Node::Table(Arc::new(t.clone()), name.into())),
            None => Err(self.unknown_table(e, name)),
        }
    }

    fn unknown_table(&self, e: &Expression, name: &str) -> ExprError {
        let names: Vec<&str> = self.env.tables.keys().map(String::as_str).collect();
        let hint = if names.is_empty() {
            "no tables are declared in the mapping; add one under `tables:`".to_owned()
        } else {
            let mut h = format!("declared tables: {}", names.join(", "));
            if let Some(close) = closest(name, names.iter().copied()) {
                h = format!("did you mean `{close}`? {h}");
            }
            h
        };
        self.err(e, format!("unknown table `{name}`"), Some(hint))
    }

    fn call(
        &mut self,
        e: &Expression,
        call: &cel::common::ast::CallExpr,
    ) -> Result<Node, ExprError> {
        use eval::{BinOp, UnOp};
        let name = call.func_name.as_str();
        let args = &call.args;
        let bin = |op| -> Option<BinOp> { Some(op) };
        let op = match (name, args.len(), call.target.is_none()) {
            ("_+_", 2, true) => bin(BinOp::Add),
            ("_-_", 2, true) => bin(BinOp::Sub),
            ("_*_", 2, true) => bin(BinOp::Mul),
            ("_/_", 2, true) => bin(BinOp::Div),
            ("_%_", 2, true) => bin(BinOp::Rem),
            ("_==_", 2, true) => bin(BinOp::Eq),
            ("_!=_", 2, true) => bin(BinOp::Ne),
            ("_<_", 2, true) => bin(BinOp::Lt),
            ("_<=_", 2, true) => bin(BinOp::Le),
            ("_>_", 2, true) => bin(BinOp::Gt),
            ("_>=_", 2, true) => bin(BinOp::Ge),
            ("@in", 2, true) => bin(BinOp::In),
            ("_[_]", 2, true) => bin(BinOp::Index),
            _ => None,
        };
        if let Some(op) = op {
            let a = self.node(&args[0])?;
            let b = self.node(&args[1])?;
            if op == BinOp::Index {
                let path = format!("{}[…]", path_of(&a));
                return Ok(Node::Index(Box::new(a), Box::new(b), path.into()));
            }
            return Ok(Node::Bin(op, Box::new(a), Box::new(b)));
        }
        match (name, args.len(), call.target.is_none()) {
            ("_&&_", 2, true) => {
                return Ok(Node::And(
                    Box::new(self.node(&args[0])?),
                    Box::new(self.node(&args[1])?),
                ))
            }
            ("_||_", 2, true) => {
                return Ok(Node::Or(
                    Box::new(self.node(&args[0])?),
                    Box::new(self.node(&args[1])?),
                ))
            }
            ("_?_:_", 3, true) => {
                return Ok(Node::Cond(Box::new([
                    self.node(&args[0])?,
                    self.node(&args[1])?,
                    self.node(&args[2])?,
                ])))
            }
            ("!_", 1, true) => return Ok(Node::Un(UnOp::Not, Box::new(self.node(&args[0])?))),
            ("-_", 1, true) => return Ok(Node::Un(UnOp::Neg, Box::new(self.node(&args[0])?))),
            ("@not_strictly_false", 1, true) => {
                return Ok(Node::Un(
                    UnOp::NotStrictlyFalse,
                    Box::new(self.node(&args[0])?),
                ))
            }
            _ => {}
        }
        if name.starts_with('_') || name.starts_with('@') || name.starts_with('-') {
            return Err(self.err(e, format!("operator `{name}` is not supported"), None));
        }
        // A function: free (`f(x)`) or receiver-style (`x.f()`, same as `f(x)`).
        let Some(func) = Func::by_name(name) else {
            let known = Func::names();
            let mut hint = format!("known functions: {}", known.join(", "));
            if let Some(close) = closest(name, known.iter().copied()) {
                hint = format!("did you mean `{close}`? {hint}");
            }
            return Err(ExprError {
                offset: self.name_offset(e, name),
                message: format!("unknown function `{name}`"),
                hint: Some(hint),
            });
        };
        let mut all: Vec<&Expression> = Vec::with_capacity(args.len() + 1);
        if let Some(t) = &call.target {
            all.push(t);
        }
        all.extend(args.iter());
        let (min, max) = func.arity();
        if all.len() < min || all.len() > max {
            let want = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(ExprError {
                offset: self.name_offset(e, name),
                message: format!(
                    "`{name}` takes {want} argument{}, got {}",
                    if want == "1" { "" } else { "s" },
                    all.len()
                ),
                hint: Some(format!("usage: {}", func.usage())),
            });
        }
        // `lookup("name", …)` with a literal table name is resolved now.
        if func == Func::Lookup {
            if let Expr::Literal(LiteralValue::String(s)) = &all[0].expr {
                let table = s.inner().to_owned();
                let Some(t) = self.env.tables.get(&table) else {
                    return Err(self.unknown_table(all[0], &table));
                };
                let t = Arc::new(t.clone());
                let rest = all[1..]
                    .iter()
                    .map(|a| self.node(a))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Node::Call(
                    func,
                    std::iter::once(Node::Table(t, table.into()))
                        .chain(rest)
                        .collect(),
                    None,
                ));
            }
        }
        let mut nodes = Vec::with_capacity(all.len());
        for (i, a) in all.iter().enumerate() {
            let n = self.node(a)?;
            if let Some(ty) = n.static_type() {
                if let Err(expected) = func.accepts(i, ty) {
                    return Err(self.err(
                        a,
                        format!(
                            "argument {} of `{name}` must be {expected}, got {}",
                            i + 1,
                            ty.name()
                        ),
                        Some(format!("usage: {}", func.usage())),
                    ));
                }
            }
            nodes.push(n);
        }
        // Literal patterns and formats are checked, and compiled, once.
        let mut regex = None;
        if let Some(i) = func.pattern_arg() {
            if let Some(Node::Lit(eval::Const::Str(p))) = nodes.get(i) {
                match funcs::compile_regex(p) {
                    Ok(r) => regex = Some(Arc::new(r)),
                    Err(msg) => {
                        return Err(self.err(
                            all[i],
                            format!("invalid regular expression: {msg}"),
                            Some("the syntax is that of the Rust regex crate (RE2-like)".into()),
                        ))
                    }
                }
            }
        }
        if let Some(i) = func.format_arg() {
            if let Some(Node::Lit(eval::Const::Str(f))) = nodes.get(i) {
                if let Err(msg) = funcs::check_format(f) {
                    return Err(self.err(
                        all[i],
                        format!("invalid date format: {msg}"),
                        Some("use strftime specifiers such as %Y-%m-%d or %d.%m.%Y %H:%M".into()),
                    ));
                }
            }
        }
        if func == Func::Duration || func == Func::Timestamp {
            if let Some(Node::Lit(eval::Const::Str(s))) = nodes.first() {
                let ok = if func == Func::Duration {
                    funcs::parse_duration(s).is_some()
                } else {
                    funcs::parse_timestamp(s).is_some()
                };
                if !ok {
                    return Err(self.err(
                        all[0],
                        format!("invalid {name} literal {s:?}"),
                        Some(if func == Func::Duration {
                            "durations look like \"24h\", \"90m\", \"1h30m\", \"3600s\"".into()
                        } else {
                            "timestamps are RFC 3339, e.g. \"2024-03-01T00:00:00Z\"".into()
                        }),
                    ));
                }
            }
        }
        Ok(Node::Call(func, nodes, regex))
    }
}

/// A stand-in expression carrying a map entry's id, for its offset.
fn m_key(entry: &cel::common::ast::IdedEntryExpr) -> Expression {
    Expression {
        id: entry.id,
        expr: Expr::Unspecified,
    }
}

fn literal(lit: &LiteralValue) -> eval::Const {
    use eval::Const;
    match lit {
        LiteralValue::Boolean(b) => Const::Bool(*b.inner()),
        LiteralValue::Bytes(b) => Const::Str(String::from_utf8_lossy(b.inner()).into_owned()),
        LiteralValue::Double(d) => Const::Double(*d.inner()),
        LiteralValue::Int(i) => Const::Int(*i.inner()),
        LiteralValue::Null => Const::Null,
        LiteralValue::String(s) => Const::Str(s.inner().to_owned()),
        LiteralValue::UInt(u) => Const::UInt(*u.inner()),
    }
}

/// A readable path for error messages: `event.data.manager`.
fn path_of(n: &Node) -> String {
    match n {
        Node::Var(Root::Event) => "event".into(),
        Node::Var(Root::Prior) => "prior".into(),
        Node::Var(Root::Now) => "now".into(),
        Node::Select { path, .. } | Node::Index(_, _, path) => path.to_string(),
        Node::Table(_, name) => format!("tables.{name}"),
        Node::AllTables(_) => "tables".into(),
        Node::Local(_) => "(variable)".into(),
        _ => "(value)".into(),
    }
}

/// The candidate closest to `name` by edit distance, if close enough to be a likely typo.
pub(crate) fn closest<'c>(
    name: &str,
    candidates: impl Iterator<Item = &'c str>,
) -> Option<&'c str> {
    let lower = name.to_lowercase();
    candidates
        .map(|c| (levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1) + usize::from(c.len() > 6))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
