//! A small, self-contained SCIM filter parser and evaluator (RFC 7644 §3.4.2.2 subset).
//!
//! Supported: `attr[.sub] OP value` with `eq ne co sw ew gt ge lt le`, `attr pr`, `and`, `or`
//! (and binds tighter) and parentheses. Values: JSON strings, numbers, `true`, `false`, `null`.
//! Not supported (answered with 400 `invalidFilter`): `not`, value paths (`emails[type eq "work"]`
//! inside a filter). Attribute names are matched case-insensitively; string comparisons are
//! case-insensitive except for `id`, `externalId`, `members.value` and `$ref` (caseExact in RFC 7643),
//! unless the server runs with `case_sensitive_filters`.

use serde_json::Value;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    Cmp {
        path: AttrPath,
        op: Op,
        value: Value,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

/// `attr` or `attr.sub`, with any core schema URN prefix stripped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttrPath {
    pub attr: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '"' => {
                let start = i;
                i += 1;
                let mut escaped = false;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unterminated string".into());
                    };
                    i += 1;
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                let raw: String = chars[start..i].iter().collect();
                let v: String =
                    serde_json::from_str(&raw).map_err(|e| format!("bad string {raw}: {e}"))?;
                out.push(Tok::Str(v));
            }
            '[' | ']' => return Err("value paths ([...]) are not supported in filters".into()),
            _ => {
                let start = i;
                while i < chars.len()
                    && !matches!(chars[i], ' ' | '\t' | '(' | ')' | '"' | '[' | ']')
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

/// Parse a filter; the error explains what was not understood.
pub(crate) fn parse(s: &str) -> Result<Filter, String> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err("empty filter".into());
    }
    let mut p = Parser { toks, pos: 0 };
    let f = p.or_expr()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    Ok(f)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn or_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.and_expr()?;
        while self.peek_word("or") {
            self.pos += 1;
            let right = self.and_expr()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.atom()?;
        while self.peek_word("and") {
            self.pos += 1;
            let right = self.atom()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Filter, String> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let f = self.or_expr()?;
                if self.toks.get(self.pos) != Some(&Tok::RParen) {
                    return Err("missing )".into());
                }
                self.pos += 1;
                Ok(f)
            }
            Some(Tok::Word(w)) => {
                if w.eq_ignore_ascii_case("not") {
                    return Err("'not' is not supported".into());
                }
                let path = parse_attr_path(&w)?;
                self.pos += 1;
                let Some(Tok::Word(op)) = self.toks.get(self.pos).cloned() else {
                    return Err(format!("expected an operator after {w}"));
                };
                self.pos += 1;
                let op = match op.to_ascii_lowercase().as_str() {
                    "pr" => return Ok(Filter::Present(path)),
                    "eq" => Op::Eq,
                    "ne" => Op::Ne,
                    "co" => Op::Co,
                    "sw" => Op::Sw,
                    "ew" => Op::Ew,
                    "gt" => Op::Gt,
                    "ge" => Op::Ge,
                    "lt" => Op::Lt,
                    "le" => Op::Le,
                    other => return Err(format!("unknown operator {other}")),
                };
                let value = match self.toks.get(self.pos).cloned() {
                    Some(Tok::Str(s)) => Value::String(s),
                    Some(Tok::Word(w)) => match w.as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        n => match serde_json::from_str::<serde_json::Number>(n) {
                            Ok(n) => Value::Number(n),
                            Err(_) => return Err(format!("bad comparison value {n}")),
                        },
                    },
                    other => return Err(format!("expected a comparison value, got {other:?}")),
                };
                self.pos += 1;
                Ok(Filter::Cmp { path, op, value })
            }
            other => Err(format!("expected an attribute, got {other:?}")),
        }
    }
}

const CORE_PREFIXES: [&str; 2] = [
    "urn:ietf:params:scim:schemas:core:2.0:User:",
    "urn:ietf:params:scim:schemas:core:2.0:Group:",
];

/// Parse `attr`, `attr.sub` or `urn:...:User:attr`.
pub(crate) fn parse_attr_path(s: &str) -> Result<AttrPath, String> {
    let mut s = s;
    for p in CORE_PREFIXES {
        if s.len() > p.len() && s[..p.len()].eq_ignore_ascii_case(p) {
            s = &s[p.len()..];
        }
    }
    let valid = |x: &str| {
        !x.is_empty()
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    };
    let (attr, sub) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    if !valid(attr) || sub.is_some_and(|b| !valid(b)) {
        return Err(format!("invalid attribute path {s}"));
    }
    Ok(AttrPath {
        attr: attr.to_string(),
        sub: sub.map(str::to_string),
    })
}

/// Look a key up in an object case-insensitively.
pub(crate) fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn candidates<'a>(res: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(v) = get_ci(res, &path.attr) else {
        return Vec::new();
    };
    let sub_of = |x: &'a Value| -> Option<&'a Value> {
        match &path.sub {
            Some(sub) => get_ci(x, sub),
            // A multi-valued complex attribute without sub-attribute compares its `value`.
            None if x.is_object() => get_ci(x, "value"),
            None => Some(x),
        }
    };
    match v {
        Value::Array(items) => items.iter().filter_map(sub_of).collect(),
        Value::Object(_) => path
            .sub
            .as_ref()
            .and_then(|s| get_ci(v, s))
            .into_iter()
            .collect(),
        other if path.sub.is_none() => vec![other],
        _ => Vec::new(),
    }
}

fn case_exact_attr(path: &AttrPath) -> bool {
    let a = path.attr.as_str();
    a.eq_ignore_ascii_case("id")
        || a.eq_ignore_ascii_case("externalId")
        || (a.eq_ignore_ascii_case("members")
            && path
                .sub
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("value")))
        || path.sub.as_deref().is_some_and(|s| s == "$ref")
}

fn cmp_one(actual: &Value, op: Op, expected: &Value, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (actual, expected) {
        (Value::String(a), Value::String(b)) => {
            let (a, b) = if exact {
                (a.clone(), b.clone())
            } else {
                (a.to_lowercase(), b.to_lowercase())
            };
            match op {
                Op::Co => return a.contains(&b),
                Op::Sw => return a.starts_with(&b),
                Op::Ew => return a.ends_with(&b),
                _ => Some(a.cmp(&b)),
            }
        }
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ord) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

/// Does `res` match `f`? `all_exact` forces case-exact string comparison everywhere.
pub(crate) fn matches(res: &Value, f: &Filter, all_exact: bool) -> bool {
    match f {
        Filter::And(a, b) => matches(res, a, all_exact) && matches(res, b, all_exact),
        Filter::Or(a, b) => matches(res, a, all_exact) || matches(res, b, all_exact),
        Filter::Present(p) => candidates(res, p).iter().any(|v| {
            !v.is_null() && v.as_str() != Some("") && v.as_array().is_none_or(|a| !a.is_empty())
        }),
        Filter::Cmp { path, op, value } => {
            let exact = all_exact || case_exact_attr(path);
            let cands = candidates(res, path);
            if *op == Op::Ne {
                return !cands.iter().any(|v| cmp_one(v, Op::Eq, value, exact));
            }
            if *op == Op::Eq && value.is_null() && cands.is_empty() {
                return true;
            }
            cands.iter().any(|v| cmp_one(v, *op, value, exact))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_matches() {
        let u = json!({"userName": "Alice", "externalId": "E1", "emails": [{"value": "a@x.org", "type": "work"}],
                       "name": {"familyName": "Smith"}, "active": true});
        let m = |s: &str| matches(&u, &parse(s).unwrap(), false);
        assert!(m(r#"userName eq "alice""#));
        assert!(m(r#"USERNAME Eq "ALICE""#));
        assert!(!m(r#"externalId eq "e1""#));
        assert!(m(r#"externalId eq "E1""#));
        assert!(m(r#"emails.value co "@x.org""#));
        assert!(m(r#"emails eq "a@x.org""#));
        assert!(m(r#"name.familyName sw "sm" and active eq true"#));
        assert!(m(
            r#"userName eq "bob" or (externalId pr and userName ew "ce")"#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "Alice""#
        ));
        assert!(!matches(
            &u,
            &parse(r#"userName eq "alice""#).unwrap(),
            true
        ));
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName eq "x"#,
            r#"userName xx "x""#,
            r#"emails[type eq "work"]"#,
            r#"not (userName eq "x")"#,
            r#"userName eq "x" and"#,
            r#"(userName eq "x""#,
            "userName eq bareword",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
