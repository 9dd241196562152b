//! A small, safe, side-effect-free expression language for attribute mappings.
//!
//! Grammar (whitespace-insensitive):
//!
//! ```text
//! expr    := sum (("==" | "!=") sum)?
//! sum     := atom ("+" atom)*                  string concatenation
//! atom    := literal | path | call | "(" expr ")"
//! literal := "…" | '…' | number | true | false | null
//! path    := "event" ("." ident)*              event.data.email, event.subject, event.time …
//! call    := ident "(" expr ("," expr)* ")"    lower upper trim coalesce
//! ```
//!
//! Evaluation never panics and never loops: an expression is a tree evaluated once per event.
//! A missing field evaluates to `null`; `null` attributes are left out of the resource.

use serde_json::Value;

use scimflow_core::Event;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    /// `event.a.b.c` → `["a", "b", "c"]`.
    Path(Vec<String>),
    Call(Func, Vec<Expr>),
    Concat(Vec<Expr>),
    Eq(Box<Expr>, Box<Expr>, bool),
}

/// The built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    Trim,
    Coalesce,
}

impl Func {
    fn by_name(name: &str) -> Option<Func> {
        Some(match name {
            "lower" => Func::Lower,
            "upper" => Func::Upper,
            "trim" => Func::Trim,
            "coalesce" => Func::Coalesce,
            _ => return None,
        })
    }
}

/// A syntax or name error, with the 0-based character offset into the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at offset {offset}")]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

/// An evaluation error for one event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// Parses `src`.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut p = Parser { s: &chars, i: 0 };
    let e = p.expr()?;
    p.ws();
    if p.i < p.s.len() {
        return Err(p.err(format!("unexpected `{}`", p.s[p.i])));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> ExprError {
        ExprError {
            offset: self.i,
            message: message.into(),
        }
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        let t: Vec<char> = tok.chars().collect();
        if self.s[self.i..].starts_with(&t) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn expr(&mut self) -> Result<Expr, ExprError> {
        let left = self.sum()?;
        if self.eat("==") {
            let right = self.sum()?;
            return Ok(Expr::Eq(Box::new(left), Box::new(right), true));
        }
        if self.eat("!=") {
            let right = self.sum()?;
            return Ok(Expr::Eq(Box::new(left), Box::new(right), false));
        }
        Ok(left)
    }
    fn sum(&mut self) -> Result<Expr, ExprError> {
        let mut parts = vec![self.atom()?];
        while self.eat("+") {
            parts.push(self.atom()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Expr::Concat(parts)
        })
    }
    fn ident(&mut self) -> Option<String> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == '_')
        {
            self.i += 1;
        }
        (self.i > start).then(|| self.s[start..self.i].iter().collect())
    }
    fn atom(&mut self) -> Result<Expr, ExprError> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return Err(self.err("expected a value, found the end of the expression"));
        };
        if c == '(' {
            self.i += 1;
            let e = self.expr()?;
            if !self.eat(")") {
                return Err(self.err("expected `)`"));
            }
            return Ok(e);
        }
        if c == '"' || c == '\'' {
            return self.string(c);
        }
        if c.is_ascii_digit() || c == '-' {
            let start = self.i;
            self.i += 1;
            while self.i < self.s.len()
                && (self.s[self.i].is_ascii_digit() || self.s[self.i] == '.')
            {
                self.i += 1;
            }
            let text: String = self.s[start..self.i].iter().collect();
            return serde_json::from_str::<serde_json::Number>(&text)
                .map(|n| Expr::Lit(Value::Number(n)))
                .map_err(|_| ExprError {
                    offset: start,
                    message: format!("`{text}` is not a number"),
                });
        }
        let start = self.i;
        let Some(name) = self.ident() else {
            return Err(self.err(format!("unexpected `{c}`")));
        };
        match name.as_str() {
            "true" => return Ok(Expr::Lit(Value::Bool(true))),
            "false" => return Ok(Expr::Lit(Value::Bool(false))),
            "null" => return Ok(Expr::Lit(Value::Null)),
            _ => {}
        }
        if self.eat("(") {
            let Some(f) = Func::by_name(&name) else {
                return Err(ExprError {
                    offset: start,
                    message: format!(
                        "unknown function `{name}` (known: lower, upper, trim, coalesce)"
                    ),
                });
            };
            let mut args = vec![self.expr()?];
            while self.eat(",") {
                args.push(self.expr()?);
            }
            if !self.eat(")") {
                return Err(self.err("expected `,` or `)`"));
            }
            let arity_ok = match f {
                Func::Coalesce => !args.is_empty(),
                _ => args.len() == 1,
            };
            if !arity_ok {
                return Err(ExprError {
                    offset: start,
                    message: format!("`{name}` takes one argument"),
                });
            }
            return Ok(Expr::Call(f, args));
        }
        if name != "event" {
            return Err(ExprError {
                offset: start,
                message: format!(
                    "unknown name `{name}`; paths start with `event.` (e.g. event.data.email)"
                ),
            });
        }
        let mut segs = Vec::new();
        while self.i < self.s.len() && self.s[self.i] == '.' {
            self.i += 1;
            match self.ident() {
                Some(seg) => segs.push(seg),
                None => return Err(self.err("expected a field name after `.`")),
            }
        }
        match segs.first().map(String::as_str) {
            Some("data" | "subject" | "id" | "type" | "source" | "time") => Ok(Expr::Path(segs)),
            Some(other) => Err(ExprError {
                offset: start,
                message: format!(
                    "`event.{other}` does not exist (use event.data.…, event.subject, event.id, event.type, event.source or event.time)"
                ),
            }),
            None => Err(ExprError {
                offset: start,
                message: "`event` alone is not a value; name a field, e.g. event.data.email".into(),
            }),
        }
    }
    fn string(&mut self, quote: char) -> Result<Expr, ExprError> {
        let start = self.i;
        self.i += 1;
        let mut out = String::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            if c == quote {
                return Ok(Expr::Lit(Value::String(out)));
            }
            if c == '\\' {
                match self.s.get(self.i) {
                    Some(&e) => {
                        self.i += 1;
                        out.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                    None => break,
                }
            } else {
                out.push(c);
            }
        }
        Err(ExprError {
            offset: start,
            message: "unterminated string".into(),
        })
    }
}

impl Expr {
    /// Evaluates against `event`.
    pub fn eval(&self, event: &Event) -> Result<Value, EvalError> {
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Path(segs) => {
                let root = match segs[0].as_str() {
                    "subject" => Value::String(event.subject.clone()),
                    "id" => Value::String(event.id.clone()),
                    "type" => Value::String(event.kind.clone()),
                    "source" => Value::String(event.source.clone()),
                    "time" => event
                        .time
                        .map(|t| {
                            Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        })
                        .unwrap_or(Value::Null),
                    _ => event.data.clone(),
                };
                let mut cur = &root;
                for seg in &segs[1..] {
                    match cur.get(seg) {
                        Some(v) => cur = v,
                        None => return Ok(Value::Null),
                    }
                }
                cur.clone()
            }
            Expr::Call(f, args) => {
                if *f == Func::Coalesce {
                    for a in args {
                        let v = a.eval(event)?;
                        if !v.is_null() && v != Value::String(String::new()) {
                            return Ok(v);
                        }
                    }
                    return Ok(Value::Null);
                }
                let v = args[0].eval(event)?;
                let s = match &v {
                    Value::Null => return Ok(Value::Null),
                    Value::String(s) => s,
                    other => {
                        return Err(EvalError(
                            format!("{f:?} expects a string, found {other}").to_lowercase(),
                        ))
                    }
                };
                Value::String(match f {
                    Func::Lower => s.to_lowercase(),
                    Func::Upper => s.to_uppercase(),
                    Func::Trim => s.trim().to_owned(),
                    Func::Coalesce => unreachable!("handled above"),
                })
            }
            Expr::Concat(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p.eval(event)? {
                        Value::Null => return Ok(Value::Null),
                        Value::String(s) => out.push_str(&s),
                        Value::Number(n) => out.push_str(&n.to_string()),
                        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                        other => return Err(EvalError(format!("cannot concatenate {other}"))),
                    }
                }
                Value::String(out)
            }
            Expr::Eq(a, b, want) => Value::Bool((a.eval(event)? == b.eval(event)?) == *want),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Event {
        Event {
            id: "e1".into(),
            source: "hr".into(),
            kind: "hr.worker.hired".into(),
            subject: "E1".into(),
            time: None,
            data: serde_json::json!({"email": " Ada@Example.COM ", "status": "active", "name": {"first": "Ada"}}),
            traceparent: None,
        }
    }

    #[test]
    fn evaluates() {
        let e = ev();
        let v = |s: &str| parse(s).unwrap().eval(&e).unwrap();
        assert_eq!(v("lower(trim(event.data.email))"), "ada@example.com");
        assert_eq!(v("event.data.status == \"active\""), true);
        assert_eq!(v("event.data.status != 'active'"), false);
        assert_eq!(v("event.data.name.first + ' ' + event.subject"), "Ada E1");
        assert_eq!(v("event.data.missing"), Value::Null);
        assert_eq!(v("coalesce(event.data.missing, 'x')"), "x");
        assert_eq!(v("42"), 42);
    }

    #[test]
    fn errors_have_offsets() {
        assert_eq!(parse("lowr(event.data.x)").unwrap_err().offset, 0);
        assert_eq!(parse("event.dta.x").unwrap_err().offset, 0);
        assert_eq!(parse("lower(event.data.x").unwrap_err().offset, 18);
        assert!(parse("'abc").unwrap_err().message.contains("unterminated"));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,64}") {
            let _ = parse(&s);
        }
    }
}
