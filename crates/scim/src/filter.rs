//! The SCIM filter language (RFC 7644 §3.4.2.2): parsing, canonical printing and evaluation.
//!
//! Invariants:
//! - [`parse_filter`] never panics; every error carries the byte position of the offending token and
//!   reads `expected <what> at position <n>, found <token>`.
//! - Precedence is `not` > `and` > `or`; `and`/`or` associate to the left; parentheses group.
//!   Operators, `and`/`or`/`not` and `true`/`false`/`null` are case-insensitive.
//! - `Display` prints a canonical form (lowercase keywords, single spaces, JSON-escaped strings, the
//!   fewest parentheses that keep the tree) and `parse_filter(&f.to_string()) == Ok(f)` for every
//!   filter the parser can produce (property-tested).
//! - [`Filter::matches`] evaluates against a JSON resource. String comparisons honour `caseExact` from
//!   the core User, Group and Enterprise User schemas (see [`crate::discovery::is_case_exact`]): `id`,
//!   `externalId`, `meta.*` and a few reference/binary attributes compare exactly, everything else
//!   (and every unknown attribute) case-insensitively. A multi-valued attribute matches when any of
//!   its values matches. `ne` is the negation of `eq`, so an absent attribute is `ne` anything;
//!   `attr eq null` matches when the attribute is absent or null.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use serde_json::{Number, Value};

use crate::{resource, schemas};

/// An attribute path: optional schema URN, attribute name, optional sub-attribute
/// (`urn:...:User:name.givenName`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// Schema URN prefix, without the trailing `:`.
    pub urn: Option<String>,
    /// Attribute name.
    pub attr: String,
    /// Sub-attribute name.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A plain attribute path, without URN or sub-attribute.
    pub fn new(attr: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            attr: attr.into(),
            sub_attr: None,
        }
    }

    /// Sets the URN prefix.
    pub fn with_urn(mut self, urn: impl Into<String>) -> Self {
        self.urn = Some(urn.into());
        self
    }

    /// Sets the sub-attribute.
    pub fn with_sub(mut self, sub: impl Into<String>) -> Self {
        self.sub_attr = Some(sub.into());
        self
    }

    /// Parses a whole string as an attribute path.
    pub fn parse(s: &str) -> Result<AttrPath, FilterError> {
        let mut p = Parser::new(s);
        let path = p.attr_path()?;
        p.expect_end("end of attribute path")?;
        Ok(path)
    }

    /// The URN when it names an extension schema (a non-core schema whose attributes live under a
    /// URN key of the resource).
    pub fn extension_urn(&self) -> Option<&str> {
        self.urn.as_deref().filter(|u| !schemas::is_core(u))
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl FromStr for AttrPath {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttrPath::parse(s)
    }
}

/// A comparison operator (RFC 7644 §3.4.2.2, table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Contains.
    Co,
    /// Starts with.
    Sw,
    /// Ends with.
    Ew,
    /// Present (has a value). The parser produces [`Filter::Present`] for `pr`, never a
    /// [`Filter::Compare`] with this operator; such a comparison ignores its value.
    Pr,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl CompareOp {
    /// Every operator.
    pub const ALL: [CompareOp; 10] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Pr,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The lowercase keyword.
    pub const fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Pr => "pr",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn from_keyword(s: &str) -> Option<CompareOp> {
        CompareOp::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison value: `compValue = false / null / true / number / string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompValue {
    /// A JSON string.
    String(String),
    /// A JSON number.
    Number(Number),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl CompValue {
    /// The value as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            CompValue::String(s) => Value::String(s.clone()),
            CompValue::Number(n) => Value::Number(n.clone()),
            CompValue::Bool(b) => Value::Bool(*b),
            CompValue::Null => Value::Null,
        }
    }

    /// A comparison value from a JSON scalar; `None` for arrays and objects.
    pub fn from_json(v: &Value) -> Option<CompValue> {
        Some(match v {
            Value::String(s) => CompValue::String(s.clone()),
            Value::Number(n) => CompValue::Number(n.clone()),
            Value::Bool(b) => CompValue::Bool(*b),
            Value::Null => CompValue::Null,
            _ => return None,
        })
    }
}

impl From<&str> for CompValue {
    fn from(s: &str) -> Self {
        CompValue::String(s.to_owned())
    }
}

impl From<String> for CompValue {
    fn from(s: String) -> Self {
        CompValue::String(s)
    }
}

impl From<bool> for CompValue {
    fn from(b: bool) -> Self {
        CompValue::Bool(b)
    }
}

impl From<i64> for CompValue {
    fn from(n: i64) -> Self {
        CompValue::Number(n.into())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // serde_json escapes quotes, backslashes and control characters: injection-safe.
            CompValue::String(s) => f.write_str(&Value::String(s.clone()).to_string()),
            CompValue::Number(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

/// A parsed SCIM filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `path op value`.
    Compare {
        /// The attribute compared.
        path: AttrPath,
        /// The operator.
        op: CompareOp,
        /// The value compared with.
        value: CompValue,
    },
    /// `path pr`.
    Present(AttrPath),
    /// `left and right`.
    And(Box<Filter>, Box<Filter>),
    /// `left or right`.
    Or(Box<Filter>, Box<Filter>),
    /// `not (inner)`.
    Not(Box<Filter>),
    /// `attr[filter]`: the inner filter's paths are relative to the elements of `attr`.
    ValuePath {
        /// The (multi-valued or complex) attribute whose values are filtered.
        attr: AttrPath,
        /// The filter on the values, whose paths name sub-attributes.
        filter: Box<Filter>,
    },
}

impl Filter {
    /// `attr eq "value"`, with the value escaped so that any string is safe to embed.
    ///
    /// # Panics
    ///
    /// If `attr` is not a valid attribute path; attribute names are programmer-supplied. Use
    /// [`Filter::try_eq`] for untrusted names.
    pub fn eq(attr: &str, value: impl Into<String>) -> Filter {
        match Filter::try_eq(attr, value) {
            Ok(f) => f,
            Err(e) => panic!("Filter::eq called with an invalid attribute path: {e}"),
        }
    }

    /// `attr eq "value"`, failing when `attr` is not a valid attribute path.
    pub fn try_eq(attr: &str, value: impl Into<String>) -> Result<Filter, FilterError> {
        Ok(Filter::Compare {
            path: AttrPath::parse(attr)?,
            op: CompareOp::Eq,
            value: CompValue::String(value.into()),
        })
    }

    /// `left and right`.
    pub fn and(self, right: Filter) -> Filter {
        Filter::And(Box::new(self), Box::new(right))
    }

    /// `left or right`.
    pub fn or(self, right: Filter) -> Filter {
        Filter::Or(Box::new(self), Box::new(right))
    }

    /// `not (self)`.
    pub fn negate(self) -> Filter {
        Filter::Not(Box::new(self))
    }

    /// Whether `resource` (a SCIM resource as JSON) satisfies the filter.
    pub fn matches(&self, resource: &Value) -> bool {
        eval(self, resource, None)
    }

    /// Whether an element of the multi-valued attribute `parent` satisfies the filter, whose paths
    /// are then sub-attribute names; `parent` decides case-exactness.
    pub fn matches_element(&self, element: &Value, parent: &AttrPath) -> bool {
        eval(self, element, Some(parent))
    }

    fn precedence(&self) -> u8 {
        match self {
            Filter::Or(..) => 1,
            Filter::And(..) => 2,
            _ => 3,
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare {
                path,
                op: CompareOp::Pr,
                ..
            }
            | Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::And(l, r) | Filter::Or(l, r) => {
                let p = self.precedence();
                let kw = if p == 1 { "or" } else { "and" };
                write_operand(f, l, l.precedence() < p)?;
                write!(f, " {kw} ")?;
                write_operand(f, r, r.precedence() <= p)
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, x: &Filter, paren: bool) -> fmt::Result {
    if paren {
        write!(f, "({x})")
    } else {
        write!(f, "{x}")
    }
}

impl FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_filter(s)
    }
}

/// A filter or path that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FilterError {
    /// Byte offset into the input of the offending token.
    pub position: usize,
    /// The full message, including the position.
    pub message: String,
}

/// Parses a filter expression.
pub fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input);
    let f = p.or_expr(false)?;
    p.expect_end("`and`, `or` or the end of the filter")?;
    Ok(f)
}

/// A recursive-descent parser over a string, positions in bytes.
pub(crate) struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

/// Deepest nesting of parentheses and brackets accepted, so hostile input cannot blow the stack.
const MAX_DEPTH: usize = 64;

fn is_delim(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'[' | b']' | b'(' | b')' | b'"')
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'$'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'$')
}

/// Whether `s` is a valid attribute name (`ATTRNAME`, plus `$ref`-style names).
pub fn is_attr_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && is_name_start(b[0]) && b[1..].iter().all(|&c| is_name_char(c))
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Parser {
            src,
            pos: 0,
            depth: 0,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    pub(crate) fn bump(&mut self) {
        self.pos += 1;
    }

    pub(crate) fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Describes the token at `pos` for an error message.
    fn found_at(&self, pos: usize) -> String {
        let rest = &self.src[pos.min(self.src.len())..];
        let Some(&first) = rest.as_bytes().first() else {
            return "end of input".to_owned();
        };
        let len = if is_delim(first) {
            rest.chars().next().map_or(1, char::len_utf8)
        } else {
            rest.bytes().position(is_delim).unwrap_or(rest.len())
        };
        let token: String = rest[..len].chars().take(32).collect();
        format!("`{token}`")
    }

    pub(crate) fn error_at(&self, pos: usize, expected: &str) -> FilterError {
        FilterError {
            position: pos,
            message: format!(
                "expected {expected} at position {pos}, found {}",
                self.found_at(pos)
            ),
        }
    }

    pub(crate) fn expected(&self, what: &str) -> FilterError {
        self.error_at(self.pos, what)
    }

    pub(crate) fn expect_end(&mut self, what: &str) -> Result<(), FilterError> {
        self.skip_ws();
        if self.pos < self.src.len() {
            return Err(self.expected(what));
        }
        Ok(())
    }

    pub(crate) fn expect_byte(&mut self, b: u8, what: &str) -> Result<(), FilterError> {
        if self.peek() == Some(b) {
            self.bump();
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// The alphabetic word at `pos`, not consumed.
    fn peek_word(&self) -> &'a str {
        let rest = &self.src[self.pos..];
        let len = rest
            .bytes()
            .position(|b| !b.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        &rest[..len]
    }

    /// An attribute name at `pos`.
    pub(crate) fn attr_name(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        if !self.peek().is_some_and(is_name_start) {
            return Err(self.expected("an attribute name"));
        }
        while self.peek().is_some_and(is_name_char) {
            self.bump();
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    /// `attrPath = [URI ":"] ATTRNAME *1subAttr`.
    pub(crate) fn attr_path(&mut self) -> Result<AttrPath, FilterError> {
        let start = self.pos;
        let rest = &self.src[start..];
        let len = rest.bytes().position(is_delim).unwrap_or(rest.len());
        let token = &rest[..len];
        if token.is_empty() {
            return Err(self.expected("an attribute path"));
        }
        let (urn, name_start) = if token.len() > 4
            && token.is_char_boundary(4)
            && token[..4].eq_ignore_ascii_case("urn:")
        {
            // The URN itself may contain dots (`2.0`), so the attribute starts after the last colon.
            let colon = token.rfind(':').unwrap_or(0);
            if colon <= 4 {
                return Err(self.error_at(start, "a schema urn followed by `:` and an attribute"));
            }
            (Some(token[..colon].to_owned()), start + colon + 1)
        } else {
            (None, start)
        };
        self.pos = name_start;
        let attr = self.attr_name()?;
        let sub_attr = if self.peek() == Some(b'.') {
            self.bump();
            Some(self.attr_name()?)
        } else {
            None
        };
        if self.peek().is_some_and(|b| !is_delim(b)) {
            return Err(self.expected("the end of the attribute path"));
        }
        Ok(AttrPath {
            urn,
            attr,
            sub_attr,
        })
    }

    /// `or`-expression: the loosest binding level.
    pub(crate) fn or_expr(&mut self, in_value: bool) -> Result<Filter, FilterError> {
        let mut left = self.and_expr(in_value)?;
        while self.keyword("or") {
            let right = self.and_expr(in_value)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self, in_value: bool) -> Result<Filter, FilterError> {
        let mut left = self.unary(in_value)?;
        while self.keyword("and") {
            let right = self.unary(in_value)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// Consumes `kw` (case-insensitive, preceded by optional whitespace, followed by whitespace or
    /// `(`) if it is next.
    fn keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        self.skip_ws();
        let word = self.peek_word();
        if word.eq_ignore_ascii_case(kw) {
            let after = self.bytes().get(self.pos + word.len()).copied();
            if after.is_none_or(|b| b.is_ascii_whitespace() || b == b'(') {
                self.pos += word.len();
                return true;
            }
        }
        self.pos = save;
        false
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError {
                position: self.pos,
                message: format!(
                    "expected at most {MAX_DEPTH} levels of nesting at position {}, found deeper nesting",
                    self.pos
                ),
            });
        }
        Ok(())
    }

    fn group(&mut self, in_value: bool) -> Result<Filter, FilterError> {
        self.enter()?;
        self.bump(); // `(`
        let f = self.or_expr(in_value)?;
        self.skip_ws();
        self.expect_byte(b')', "`)`, `and` or `or`")?;
        self.depth -= 1;
        Ok(f)
    }

    fn unary(&mut self, in_value: bool) -> Result<Filter, FilterError> {
        self.skip_ws();
        if self.peek() == Some(b'(') {
            return self.group(in_value);
        }
        let word = self.peek_word();
        if word.eq_ignore_ascii_case("not") {
            let save = self.pos;
            self.pos += word.len();
            self.skip_ws();
            if self.peek() == Some(b'(') {
                return Ok(Filter::Not(Box::new(self.group(in_value)?)));
            }
            self.pos = save; // an attribute that happens to be called `not`
        }
        let path_pos = self.pos;
        let path = self.attr_path()?;
        if self.peek() == Some(b'[') {
            if in_value {
                return Err(self.expected("a comparison, not a nested value filter"));
            }
            if path.sub_attr.is_some() {
                return Err(
                    self.error_at(path_pos, "an attribute without sub-attribute before `[`")
                );
            }
            self.enter()?;
            self.bump();
            let inner = self.or_expr(true)?;
            self.skip_ws();
            self.expect_byte(b']', "`]`, `and` or `or`")?;
            self.depth -= 1;
            return Ok(Filter::ValuePath {
                attr: path,
                filter: Box::new(inner),
            });
        }
        if !self.skip_ws() {
            return Err(self.expected("a space and a comparison operator"));
        }
        let op_pos = self.pos;
        let word = self.peek_word();
        let after_ok = self
            .bytes()
            .get(self.pos + word.len())
            .is_none_or(|&b| is_delim(b));
        let op = match CompareOp::from_keyword(word) {
            Some(op) if after_ok => op,
            _ => return Err(self.error_at(op_pos, "a comparison operator")),
        };
        self.pos += word.len();
        if op == CompareOp::Pr {
            return Ok(Filter::Present(path));
        }
        // RFC 7644's own examples write `value eq\"x\"`, so a string may follow without a space.
        if !self.skip_ws() && self.peek() != Some(b'"') {
            return Err(self.expected("a space and a comparison value"));
        }
        let value = self.comp_value()?;
        Ok(Filter::Compare { path, op, value })
    }

    /// `compValue = false / null / true / number / string`.
    pub(crate) fn comp_value(&mut self) -> Result<CompValue, FilterError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                let bytes = self.bytes();
                let mut i = start + 1;
                loop {
                    match bytes.get(i) {
                        None => {
                            return Err(self.error_at(start, "a string closed by `\"`"));
                        }
                        Some(b'"') => break,
                        Some(b'\\') => i += 2,
                        Some(_) => i += 1,
                    }
                }
                let literal = &self.src[start..=i];
                let s: String = serde_json::from_str(literal)
                    .map_err(|_| self.error_at(start, "a valid JSON string"))?;
                self.pos = i + 1;
                Ok(CompValue::String(s))
            }
            Some(b) if b == b'-' || b.is_ascii_digit() => {
                let rest = &self.src[start..];
                let len = rest
                    .bytes()
                    .position(|b| {
                        !(b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
                    })
                    .unwrap_or(rest.len());
                let literal = &rest[..len];
                let n: Number = serde_json::from_str(literal)
                    .map_err(|_| self.error_at(start, "a valid number"))?;
                // serde_json's default float parser can be off by one ulp; std's is exact, which
                // keeps printing and re-parsing lossless.
                let n = match n.as_f64() {
                    Some(_) if !(n.is_i64() || n.is_u64()) => literal
                        .parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64)
                        .ok_or_else(|| self.error_at(start, "a finite number"))?,
                    _ => n,
                };
                self.pos += len;
                Ok(CompValue::Number(n))
            }
            _ => {
                let word = self.peek_word();
                let value = if word.eq_ignore_ascii_case("true") {
                    CompValue::Bool(true)
                } else if word.eq_ignore_ascii_case("false") {
                    CompValue::Bool(false)
                } else if word.eq_ignore_ascii_case("null") {
                    CompValue::Null
                } else {
                    return Err(
                        self.expected("a comparison value (a string, number, true, false or null)")
                    );
                };
                self.pos += word.len();
                Ok(value)
            }
        }
    }
}

fn eval(f: &Filter, ctx: &Value, parent: Option<&AttrPath>) -> bool {
    match f {
        Filter::And(l, r) => eval(l, ctx, parent) && eval(r, ctx, parent),
        Filter::Or(l, r) => eval(l, ctx, parent) || eval(r, ctx, parent),
        Filter::Not(inner) => !eval(inner, ctx, parent),
        Filter::Present(path)
        | Filter::Compare {
            path,
            op: CompareOp::Pr,
            ..
        } => resource::get_all(ctx, path).into_iter().any(is_present),
        Filter::Compare { path, op, value } => {
            // A complex value compared as a whole is compared by its `value` sub-attribute
            // (`emails co "example.com"`).
            let values: Vec<&Value> = resource::get_all(ctx, path)
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(o) => resource::get_ci(o, "value"),
                    v => Some(v),
                })
                .collect();
            let exact = case_exact(path, parent);
            match (op, value) {
                (CompareOp::Eq, CompValue::Null) => values.iter().all(|v| v.is_null()),
                (CompareOp::Ne, CompValue::Null) => values.iter().any(|v| !v.is_null()),
                (CompareOp::Ne, _) => !values
                    .iter()
                    .any(|v| compare(v, CompareOp::Eq, value, exact)),
                _ => values.iter().any(|v| compare(v, *op, value, exact)),
            }
        }
        Filter::ValuePath { attr, filter } => {
            let parent_path = AttrPath {
                urn: attr.urn.clone(),
                attr: attr.attr.clone(),
                sub_attr: None,
            };
            match resource::get_path(ctx, &parent_path) {
                Some(Value::Array(items)) => items.iter().any(|e| eval(filter, e, Some(attr))),
                Some(v @ Value::Object(_)) => eval(filter, v, Some(attr)),
                _ => false,
            }
        }
    }
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn case_exact(path: &AttrPath, parent: Option<&AttrPath>) -> bool {
    match parent {
        Some(p) => crate::discovery::is_case_exact(p.urn.as_deref(), &p.attr, Some(&path.attr)),
        None => crate::discovery::is_case_exact(
            path.urn.as_deref(),
            &path.attr,
            path.sub_attr.as_deref(),
        ),
    }
}

fn fold(s: &str, exact: bool) -> std::borrow::Cow<'_, str> {
    if exact {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}

fn parse_date(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

fn compare(v: &Value, op: CompareOp, cv: &CompValue, exact: bool) -> bool {
    match (v, cv) {
        (Value::String(a), CompValue::String(b)) => {
            let (fa, fb) = (fold(a, exact), fold(b, exact));
            match op {
                CompareOp::Eq => fa == fb,
                CompareOp::Ne => fa != fb,
                CompareOp::Co => fa.contains(fb.as_ref()),
                CompareOp::Sw => fa.starts_with(fb.as_ref()),
                CompareOp::Ew => fa.ends_with(fb.as_ref()),
                CompareOp::Pr => is_present(v),
                _ => {
                    let ord = match (parse_date(a), parse_date(b)) {
                        (Some(da), Some(db)) => da.cmp(&db),
                        _ => fa.cmp(&fb),
                    };
                    ordered(op, ord)
                }
            }
        }
        (Value::Number(a), CompValue::Number(b)) => {
            let ord = match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => a
                    .as_f64()
                    .zip(b.as_f64())
                    .and_then(|(x, y)| x.partial_cmp(&y)),
            };
            match (op, ord) {
                (CompareOp::Eq, Some(o)) => o == Ordering::Equal,
                (CompareOp::Ne, Some(o)) => o != Ordering::Equal,
                (CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le, Some(o)) => {
                    ordered(op, o)
                }
                _ => false,
            }
        }
        (Value::Bool(a), CompValue::Bool(b)) => match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            _ => false,
        },
        (Value::Null, CompValue::Null) => op == CompareOp::Eq,
        _ => op == CompareOp::Ne,
    }
}

fn ordered(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn p(s: &str) -> Filter {
        parse_filter(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn cmp(attr: &str, op: CompareOp, v: impl Into<CompValue>) -> Filter {
        Filter::Compare {
            path: AttrPath::parse(attr).unwrap(),
            op,
            value: v.into(),
        }
    }

    #[test]
    fn parses_rfc_examples() {
        // RFC 7644 §3.4.2.2: every example filter parses and prints back to itself.
        let examples = [
            r#"userName Eq "john""#,
            r#"name.familyName co "O'Malley""#,
            r#"userName sw "J""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            "title pr",
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        ];
        for ex in examples {
            let f = p(ex);
            assert_eq!(p(&f.to_string()), f, "{ex} -> {f}");
        }
        assert_eq!(
            p(r#"userName Eq "john""#),
            cmp("userName", CompareOp::Eq, "john")
        );
        assert_eq!(
            p(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x""#),
            Filter::Compare {
                path: AttrPath::new("manager")
                    .with_urn(schemas::ENTERPRISE_USER)
                    .with_sub("value"),
                op: CompareOp::Eq,
                value: "x".into()
            }
        );
    }

    #[test]
    fn precedence_and_grouping() {
        let a = || Filter::Present(AttrPath::new("a"));
        let b = || Filter::Present(AttrPath::new("b"));
        let c = || Filter::Present(AttrPath::new("c"));
        assert_eq!(p("a pr or b pr and c pr"), a().or(b().and(c())));
        assert_eq!(p("a pr and b pr or c pr"), a().and(b()).or(c()));
        assert_eq!(p("(a pr or b pr) and c pr"), a().or(b()).and(c()));
        assert_eq!(p("a pr OR b pr Or c pr"), a().or(b()).or(c()));
        assert_eq!(p("not (a pr) and b pr"), a().negate().and(b()));
        assert_eq!(p("NOT(a pr or b pr)"), a().or(b()).negate());
        assert_eq!(p("((a pr))"), a());
        assert_eq!(a().or(b().or(c())).to_string(), "a pr or (b pr or c pr)");
        assert_eq!(a().or(b()).and(c()).to_string(), "(a pr or b pr) and c pr");
        assert_eq!(a().and(b()).or(c()).to_string(), "a pr and b pr or c pr");
    }

    #[test]
    fn values_and_escapes() {
        assert_eq!(p("age gt 42"), cmp("age", CompareOp::Gt, 42));
        assert_eq!(p("active eq TRUE"), cmp("active", CompareOp::Eq, true));
        assert_eq!(p("x eq null"), cmp("x", CompareOp::Eq, CompValue::Null));
        assert_eq!(
            p(r#"displayName eq "a \"quoted\" \\ \u00e9 \n""#),
            cmp("displayName", CompareOp::Eq, "a \"quoted\" \\ é \n")
        );
        assert_eq!(
            p(r#"members.$ref pr"#),
            Filter::Present(AttrPath::new("members").with_sub("$ref"))
        );
    }

    #[test]
    fn eq_constructor_is_injection_safe() {
        let f = Filter::eq("userName", r#"x" or userName pr or "\"#);
        assert_eq!(f.to_string(), r#"userName eq "x\" or userName pr or \"\\""#);
        assert_eq!(p(&f.to_string()), f);
        assert!(Filter::try_eq("user name", "x").is_err());
    }

    #[test]
    fn errors_have_positions() {
        let e = parse_filter(r#"emails.value foo "x""#).unwrap_err();
        assert_eq!(e.position, 13);
        assert_eq!(
            e.to_string(),
            "expected a comparison operator at position 13, found `foo`"
        );
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("userName", 8),
            ("userName eq", 11),
            (r#"userName eq "x"#, 12),
            (r#"userName eq "x" and"#, 19),
            (r#"userName eq "x" xor a pr"#, 16),
            ("(a pr", 5),
            ("a pr)", 4),
            ("emails[type eq \"w\"", 18),
            ("emails[a[b pr]]", 8),
            ("a eq bogus", 5),
            ("1abc pr", 0),
            ("a.b.c pr", 3),
            ("urn:x pr", 0),
            ("a eq 1.2.3", 5),
            ("a eq \"\\q\"", 5),
        ];
        for (input, pos) in cases {
            let e = parse_filter(input).unwrap_err();
            assert_eq!(e.position, *pos, "{input}: {e}");
            assert!(e.to_string().starts_with("expected "), "{e}");
        }
        assert_eq!(
            parse_filter("").unwrap_err().to_string(),
            "expected an attribute path at position 0, found end of input"
        );
        let deep = format!("{}a pr{}", "(".repeat(500), ")".repeat(500));
        assert!(parse_filter(&deep).is_err());
    }

    #[test]
    fn evaluates_against_resources() {
        let user = json!({
            "schemas": [schemas::USER, schemas::ENTERPRISE_USER],
            "id": "2819c223",
            "userName": "Bjensen",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "active": true,
            "title": "",
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "meta": {"lastModified": "2011-05-13T04:42:34Z", "resourceType": "User"},
            "loginCount": 7,
            schemas::ENTERPRISE_USER: {"department": "Tour Operations", "manager": {"value": "26118915"}}
        });
        let yes = [
            r#"userName eq "bjensen""#,
            r#"USERNAME eq "BJENSEN""#,
            r#"id eq "2819c223""#,
            r#"name.familyName sw "jen""#,
            r#"emails co "example.com""#,
            r#"emails.value ew ".org""#,
            r#"emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "home"] and active eq true"#,
            r#"meta.lastModified gt "2011-05-13T04:42:33+00:00""#,
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            "loginCount ge 7 and loginCount lt 7.5",
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen""#,
            "nickName eq null",
            r#"nickName ne "x""#,
            "not (title pr)",
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"name[givenName eq "barbara"]"#,
        ];
        for f in yes {
            assert!(p(f).matches(&user), "{f} should match");
        }
        let no = [
            r#"id eq "2819C223""#,
            r#"userName ne "bjensen""#,
            r#"emails[type eq "work" and value co "jensen.org"]"#,
            "title pr",
            "nickName pr",
            "active eq false",
            "active gt true",
            r#"loginCount eq "7""#,
            r#"meta.resourceType eq "user""#,
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            r#"phoneNumbers[type eq "work"]"#,
        ];
        for f in no {
            assert!(!p(f).matches(&user), "{f} should not match");
        }
    }

    const URNS: [&str; 3] = [
        schemas::USER,
        schemas::ENTERPRISE_USER,
        "urn:example:params:scim:schemas:extension:acme:1.0:User",
    ];

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "userName", "emails", "value", "type", "not", "and", "or", "pr", "$ref", "x-y_z"
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z][a-zA-Z0-9_-]{0,6}",
        ]
    }

    fn attr_path() -> impl Strategy<Value = AttrPath> {
        (
            prop::option::of(prop::sample::select(URNS.to_vec())),
            name(),
            prop::option::of(name()),
        )
            .prop_map(|(urn, attr, sub_attr)| AttrPath {
                urn: urn.map(str::to_owned),
                attr,
                sub_attr,
            })
    }

    fn comp_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            any::<String>().prop_map(CompValue::String),
            any::<i64>().prop_map(CompValue::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| CompValue::Number(Number::from_f64(f).unwrap())),
            any::<bool>().prop_map(CompValue::Bool),
            Just(CompValue::Null),
        ]
    }

    fn leaf() -> impl Strategy<Value = Filter> {
        let ops: Vec<CompareOp> = CompareOp::ALL
            .into_iter()
            .filter(|o| *o != CompareOp::Pr)
            .collect();
        prop_oneof![
            (attr_path(), prop::sample::select(ops), comp_value())
                .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
            attr_path().prop_map(Filter::Present),
        ]
    }

    fn logic(inner: impl Strategy<Value = Filter> + Clone) -> impl Strategy<Value = Filter> {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| l.and(r)),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| l.or(r)),
            inner.prop_map(Filter::negate),
        ]
    }

    /// Any filter the parser can produce: value paths hold no value paths, and their attribute has
    /// no sub-attribute.
    pub(crate) fn arb_filter() -> impl Strategy<Value = Filter> {
        let value_filter = leaf().prop_recursive(3, 8, 2, logic);
        let value_path = (attr_path(), value_filter).prop_map(|(mut attr, f)| {
            attr.sub_attr = None;
            Filter::ValuePath {
                attr,
                filter: Box::new(f),
            }
        });
        prop_oneof![3 => leaf(), 1 => value_path].prop_recursive(4, 24, 2, logic)
    }

    proptest! {
        #[test]
        fn display_round_trips(f in arb_filter()) {
            let printed = f.to_string();
            let reparsed = parse_filter(&printed);
            prop_assert_eq!(reparsed, Ok(f), "printed: {}", printed);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse_filter(&s);
        }

        #[test]
        fn parse_never_panics_on_filterish_input(
            parts in prop::collection::vec(
                prop::sample::select(vec!["a", "b.c", " ", "eq", "pr", "and", "or", "not", "(", ")",
                    "[", "]", "\"x\"", "\"", "\\", "1", "-", "1e", "true", "urn:a:b", ":", "é"]),
                0..16)
        ) {
            let s = parts.concat();
            if let Ok(f) = parse_filter(&s) {
                prop_assert_eq!(parse_filter(&f.to_string()), Ok(f));
            }
        }

        #[test]
        fn eq_is_injection_safe(attr in attr_path(), v in any::<String>()) {
            let f = Filter::Compare { path: attr, op: CompareOp::Eq, value: CompValue::String(v) };
            prop_assert_eq!(parse_filter(&f.to_string()), Ok(f));
        }
    }
}
