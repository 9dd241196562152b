//! The functions: CEL's standard ones we support and the identity team's string and date helpers.

use std::borrow::Cow;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use super::eval::{equals, Ctx, Node, V};
use super::{EvalError, Ty};

macro_rules! funcs {
    ($( $variant:ident = $name:literal, $min:expr, $max:expr, $usage:literal; )*) => {
        /// A function an expression may call.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Func { $($variant),* }

        impl Func {
            pub(crate) fn by_name(name: &str) -> Option<Func> {
                match name { $($name => Some(Func::$variant),)* _ => None }
            }
            pub(crate) fn names() -> Vec<&'static str> { vec![$($name),*] }
            pub(crate) fn name(self) -> &'static str { match self { $(Func::$variant => $name),* } }
            pub(crate) fn arity(self) -> (usize, usize) { match self { $(Func::$variant => ($min, $max)),* } }
            pub(crate) fn usage(self) -> &'static str { match self { $(Func::$variant => $usage),* } }
        }
    };
}

const MANY: usize = usize::MAX;

funcs! {
    Lower = "lower", 1, 1, "lower(s)";
    Upper = "upper", 1, 1, "upper(s)";
    Trim = "trim", 1, 1, "trim(s)";
    Join = "join", 1, 2, "join(list[, separator])";
    Split = "split", 2, 2, "split(s, separator)";
    Coalesce = "coalesce", 1, MANY, "coalesce(a, b, …)";
    Default = "default", 2, 2, "default(value, fallback)";
    Replace = "replace", 3, 3, "replace(s, old, new)";
    RegexReplace = "regex_replace", 3, 3, "regex_replace(s, pattern, replacement)";
    Substring = "substring", 2, 3, "substring(s, start[, end])";
    StartsWith = "startsWith", 2, 2, "s.startsWith(prefix)";
    EndsWith = "endsWith", 2, 2, "s.endsWith(suffix)";
    Contains = "contains", 2, 2, "s.contains(part)";
    Matches = "matches", 2, 2, "s.matches(pattern)";
    Size = "size", 1, 1, "size(string, list or map)";
    FormatDate = "format_date", 2, 2, "format_date(timestamp or date string, \"%Y-%m-%d\")";
    ParseDate = "parse_date", 1, 2, "parse_date(s[, \"%d.%m.%Y\"])";
    AddDays = "add_days", 2, 2, "add_days(timestamp or date string, n)";
    NormalizeDiacritics = "normalize_diacritics", 1, 1, "normalize_diacritics(s)";
    Lookup = "lookup", 2, 3, "lookup(\"table\", key[, default])";
    Timestamp = "timestamp", 1, 1, "timestamp(\"2024-03-01T00:00:00Z\")";
    Duration = "duration", 1, 1, "duration(\"24h\")";
    String = "string", 1, 1, "string(x)";
    Int = "int", 1, 1, "int(x)";
    Double = "double", 1, 1, "double(x)";
}

/// What a parameter accepts, for the compile-time checks.
#[derive(Clone, Copy)]
enum P {
    Str,
    Int,
    List,
    Date,
    Any,
}

impl Func {
    fn params(self) -> &'static [P] {
        use P::*;
        match self {
            Func::Lower | Func::Upper | Func::Trim | Func::NormalizeDiacritics => &[Str],
            Func::Join => &[List, Str],
            Func::Split | Func::StartsWith | Func::EndsWith | Func::Contains | Func::Matches => {
                &[Str, Str]
            }
            Func::Replace | Func::RegexReplace => &[Str, Str, Str],
            Func::Substring => &[Str, Int, Int],
            Func::FormatDate => &[Date, Str],
            Func::ParseDate => &[Str, Str],
            Func::AddDays => &[Date, Int],
            Func::Lookup => &[Str, Any, Any],
            Func::Timestamp | Func::Duration => &[Str],
            _ => &[],
        }
    }

    /// `Err(expected)` when a statically known argument type cannot be right.
    pub(crate) fn accepts(self, i: usize, ty: Ty) -> Result<(), &'static str> {
        let Some(p) = self.params().get(i) else {
            return Ok(());
        };
        let ok = match p {
            P::Str => matches!(ty, Ty::String),
            P::Int => matches!(ty, Ty::Int),
            P::List => matches!(ty, Ty::List),
            P::Date => matches!(ty, Ty::String | Ty::Timestamp),
            P::Any => true,
        };
        // null may be a deliberate "no value"; string functions pass it through
        if ok || (ty == Ty::Null && matches!(p, P::Str | P::Date)) {
            Ok(())
        } else {
            Err(match p {
                P::Str => "a string",
                P::Int => "an int",
                P::List => "a list",
                P::Date => "a timestamp or a date string",
                P::Any => "a value",
            })
        }
    }

    pub(crate) fn returns(self) -> Option<Ty> {
        Some(match self {
            Func::Lower
            | Func::Upper
            | Func::Trim
            | Func::Join
            | Func::Replace
            | Func::RegexReplace
            | Func::Substring
            | Func::FormatDate
            | Func::NormalizeDiacritics
            | Func::String => Ty::String,
            Func::Split => Ty::List,
            Func::StartsWith | Func::EndsWith | Func::Contains | Func::Matches => Ty::Bool,
            Func::Size | Func::Int => Ty::Int,
            Func::Double => Ty::Double,
            Func::ParseDate | Func::AddDays | Func::Timestamp => Ty::Timestamp,
            Func::Duration => Ty::Duration,
            Func::Coalesce | Func::Default | Func::Lookup => return None,
        })
    }

    /// The argument that is a regular expression.
    pub(crate) fn pattern_arg(self) -> Option<usize> {
        match self {
            Func::RegexReplace | Func::Matches => Some(1),
            _ => None,
        }
    }

    /// The argument that is a strftime format.
    pub(crate) fn format_arg(self) -> Option<usize> {
        match self {
            Func::FormatDate | Func::ParseDate => Some(1),
            _ => None,
        }
    }

    fn type_err(self, i: usize, expected: &str, got: &V<'_>) -> EvalError {
        EvalError::type_error(format!(
            "{}: argument {} must be {expected}, got {}",
            self.name(),
            i + 1,
            got.type_name()
        ))
    }

    pub(crate) fn call<'e>(
        self,
        args: &'e [Node],
        regex: Option<&regex::Regex>,
        ctx: &Ctx<'e, '_>,
        locals: &mut Vec<V<'e>>,
    ) -> Result<V<'e>, EvalError> {
        // The lazy ones: a missing field counts as null.
        match self {
            Func::Coalesce => {
                for a in args {
                    match a.eval(ctx, locals) {
                        Ok(V::Null) => {}
                        Ok(V::Str(s)) if s.is_empty() => {}
                        Ok(v) => return Ok(v),
                        Err(e) if e.missing_field => {}
                        Err(e) => return Err(e),
                    }
                }
                return Ok(V::Null);
            }
            Func::Default => {
                return match args[0].eval(ctx, locals) {
                    Ok(V::Null) => args[1].eval(ctx, locals),
                    Err(e) if e.missing_field => args[1].eval(ctx, locals),
                    other => other,
                };
            }
            Func::Lookup => {
                let table = args[0].eval(ctx, locals)?;
                let key = args[1].eval(ctx, locals)?;
                let t = match table {
                    V::Table(t) => t,
                    // a table name computed at run time
                    V::Str(ref name) => {
                        return Err(EvalError::type_error(format!(
                            "lookup: the table name must be a literal, got the computed {name:?}"
                        )))
                    }
                    other => return Err(self.type_err(0, "a table name", &other)),
                };
                let key: Cow<'_, str> = match &key {
                    V::Str(s) => Cow::Borrowed(s),
                    V::Int(i) => Cow::Owned(i.to_string()),
                    V::UInt(u) => Cow::Owned(u.to_string()),
                    V::Bool(b) => Cow::Owned(b.to_string()),
                    V::Null => Cow::Borrowed(""),
                    other => return Err(self.type_err(1, "a string", other)),
                };
                return match t.get(key.as_ref()) {
                    Some(v) => Ok(V::from_json(v)),
                    None => match args.get(2) {
                        Some(d) => d.eval(ctx, locals),
                        None => Err(EvalError::missing(format!(
                            "lookup: no key {key:?} in the table"
                        ))),
                    },
                };
            }
            _ => {}
        }
        // Up to three arguments (every function but `coalesce`) are evaluated on the stack.
        if args.len() <= 3 {
            let mut vals: [V<'e>; 3] = [V::Null, V::Null, V::Null];
            for (slot, a) in vals.iter_mut().zip(args) {
                *slot = a.eval(ctx, locals)?;
            }
            return self.apply(&mut vals[..args.len()], regex);
        }
        let mut vals: Vec<V<'e>> = Vec::with_capacity(args.len());
        for a in args {
            vals.push(a.eval(ctx, locals)?);
        }
        self.apply(&mut vals, regex)
    }

    fn apply<'e>(self, v: &mut [V<'e>], regex: Option<&regex::Regex>) -> Result<V<'e>, EvalError> {
        let f = self;
        let str_at = |v: &[V<'e>], i: usize| -> Result<Option<Cow<'e, str>>, EvalError> {
            match &v[i] {
                V::Str(s) => Ok(Some(s.clone())),
                V::Null => Ok(None),
                other => Err(f.type_err(i, "a string", other)),
            }
        };
        let int_at = |v: &[V<'e>], i: usize| -> Result<i64, EvalError> {
            match &v[i] {
                V::Int(n) => Ok(*n),
                V::UInt(u) => Ok(i64::try_from(*u).unwrap_or(i64::MAX)),
                V::Double(d) if d.fract() == 0.0 && d.is_finite() => Ok(*d as i64),
                other => Err(f.type_err(i, "an int", other)),
            }
        };
        // String functions map null to null, so an optional attribute stays absent.
        macro_rules! s {
            ($i:expr) => {
                match str_at(&v, $i)? {
                    Some(s) => s,
                    None => return Ok(V::Null),
                }
            };
        }
        let owned = |s: String| V::Str(Cow::Owned(s));
        Ok(match self {
            Func::Lower => {
                let s = s!(0);
                if s.chars().any(char::is_uppercase) {
                    owned(s.to_lowercase())
                } else {
                    V::Str(s)
                }
            }
            Func::Upper => owned(s!(0).to_uppercase()),
            Func::Trim => {
                let s = s!(0);
                match s {
                    Cow::Borrowed(b) => V::Str(Cow::Borrowed(b.trim())),
                    Cow::Owned(o) => owned(o.trim().to_owned()),
                }
            }
            Func::NormalizeDiacritics => owned(normalize_diacritics(&s!(0))),
            Func::Join => {
                let sep = if v.len() > 1 {
                    s!(1)
                } else {
                    Cow::Borrowed("")
                };
                let items = match v[0].list_items() {
                    Some(items) => items,
                    None if matches!(v[0], V::Null) => return Ok(V::Null),
                    None => return Err(f.type_err(0, "a list", &v[0])),
                };
                let mut out = String::new();
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&sep);
                    }
                    match item {
                        V::Str(s) => out.push_str(s),
                        V::Int(n) => out.push_str(&n.to_string()),
                        V::UInt(n) => out.push_str(&n.to_string()),
                        V::Double(n) => out.push_str(&n.to_string()),
                        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                        V::Null => {}
                        other => {
                            return Err(EvalError::type_error(format!(
                                "join: list elements must be strings or numbers, got {}",
                                other.type_name()
                            )))
                        }
                    }
                }
                owned(out)
            }
            Func::Split => {
                let s = s!(0);
                let sep = s!(1);
                if s.is_empty() {
                    return Ok(V::List(Vec::new()));
                }
                let parts: Vec<V<'e>> = if sep.is_empty() {
                    s.chars().map(|c| owned(c.to_string())).collect()
                } else {
                    s.split(sep.as_ref()).map(|p| owned(p.to_owned())).collect()
                };
                V::List(parts)
            }
            Func::Replace => {
                let s = s!(0);
                let old = s!(1);
                let new = s!(2);
                if old.is_empty() {
                    V::Str(s)
                } else {
                    owned(s.replace(old.as_ref(), &new))
                }
            }
            Func::RegexReplace | Func::Matches => {
                let s = s!(0);
                let compiled;
                let re = match regex {
                    Some(re) => re,
                    None => {
                        let p = s!(1);
                        compiled = compile_regex(&p).map_err(|m| {
                            EvalError::type_error(format!(
                                "{}: invalid regular expression: {m}",
                                f.name()
                            ))
                        })?;
                        &compiled
                    }
                };
                if self == Func::Matches {
                    V::Bool(re.is_match(&s))
                } else {
                    let repl = s!(2);
                    owned(re.replace_all(&s, repl.as_ref()).into_owned())
                }
            }
            Func::Substring => {
                let s = s!(0);
                let len = s.chars().count() as i64;
                let start = int_at(v, 1)?.clamp(0, len);
                let end = if v.len() > 2 {
                    int_at(v, 2)?.clamp(0, len)
                } else {
                    len
                };
                if end <= start {
                    owned(String::new())
                } else {
                    owned(
                        s.chars()
                            .skip(start as usize)
                            .take((end - start) as usize)
                            .collect(),
                    )
                }
            }
            Func::StartsWith => V::Bool(s!(0).starts_with(s!(1).as_ref())),
            Func::EndsWith => V::Bool(s!(0).ends_with(s!(1).as_ref())),
            Func::Contains => {
                if let Some(items) = v[0].list_items() {
                    V::Bool(items.iter().any(|x| equals(x, &v[1])))
                } else {
                    V::Bool(s!(0).contains(s!(1).as_ref()))
                }
            }
            Func::Size => match &v[0] {
                V::Str(s) => V::Int(s.chars().count() as i64),
                V::Null => V::Int(0),
                other => match other.list_len().or_else(|| other.map_len()) {
                    Some(n) => V::Int(n as i64),
                    None => return Err(f.type_err(0, "a string, list or map", other)),
                },
            },
            Func::FormatDate => {
                let t = match date_arg(f, &v[0], 0)? {
                    Some(t) => t,
                    None => return Ok(V::Null),
                };
                let fmt = s!(1);
                owned(format_date(&t, &fmt).map_err(|m| {
                    EvalError::type_error(format!("format_date: invalid date format: {m}"))
                })?)
            }
            Func::ParseDate => {
                let s = s!(0);
                let parsed = if v.len() > 1 {
                    let fmt = s!(1);
                    parse_with_format(&s, &fmt)
                } else {
                    parse_timestamp(&s)
                };
                match parsed {
                    Some(t) => V::Timestamp(t),
                    None => {
                        return Err(EvalError::type_error(format!(
                            "parse_date: cannot parse {s:?} as a date{}",
                            if v.len() > 1 {
                                " with the given format"
                            } else {
                                " (RFC 3339 or YYYY-MM-DD)"
                            }
                        )))
                    }
                }
            }
            Func::AddDays => {
                let t = match date_arg(f, &v[0], 0)? {
                    Some(t) => t,
                    None => return Ok(V::Null),
                };
                let n = int_at(v, 1)?;
                let d = Duration::try_days(n)
                    .ok_or_else(|| EvalError::type_error("add_days: too many days"))?;
                V::Timestamp(
                    t.checked_add_signed(d)
                        .ok_or_else(|| EvalError::type_error("add_days: date out of range"))?,
                )
            }
            Func::Timestamp => match &v[0] {
                V::Timestamp(t) => V::Timestamp(*t),
                V::Int(secs) => V::Timestamp(
                    DateTime::from_timestamp(*secs, 0)
                        .ok_or_else(|| EvalError::type_error("timestamp: out of range"))?,
                ),
                _ => {
                    let s = s!(0);
                    V::Timestamp(parse_timestamp(&s).ok_or_else(|| {
                        EvalError::type_error(format!("timestamp: cannot parse {s:?} as RFC 3339"))
                    })?)
                }
            },
            Func::Duration => match &v[0] {
                V::Duration(d) => V::Duration(*d),
                _ => {
                    let s = s!(0);
                    V::Duration(parse_duration(&s).ok_or_else(|| {
                        EvalError::type_error(format!("duration: cannot parse {s:?}, e.g. \"24h\""))
                    })?)
                }
            },
            Func::String => match std::mem::replace(&mut v[0], V::Null) {
                V::Str(s) => V::Str(s),
                V::Int(n) => owned(n.to_string()),
                V::UInt(n) => owned(n.to_string()),
                V::Double(n) => owned(n.to_string()),
                V::Bool(b) => owned(b.to_string()),
                V::Null => V::Null,
                V::Timestamp(t) => owned(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                V::Duration(d) => owned(format!("{}s", d.num_seconds())),
                other => return Err(f.type_err(0, "a scalar", &other)),
            },
            Func::Int => match &v[0] {
                V::Int(n) => V::Int(*n),
                V::UInt(u) => V::Int(
                    i64::try_from(*u).map_err(|_| EvalError::type_error("int: out of range"))?,
                ),
                V::Double(d) if d.is_finite() && d.abs() < 9.2e18 => V::Int(d.trunc() as i64),
                V::Str(s) => V::Int(s.trim().parse().map_err(|_| {
                    EvalError::type_error(format!("int: cannot parse {s:?} as an integer"))
                })?),
                V::Bool(b) => V::Int(i64::from(*b)),
                V::Timestamp(t) => V::Int(t.timestamp()),
                V::Null => V::Null,
                other => return Err(f.type_err(0, "a number or a numeric string", other)),
            },
            Func::Double => match &v[0] {
                V::Int(n) => V::Double(*n as f64),
                V::UInt(u) => V::Double(*u as f64),
                V::Double(d) => V::Double(*d),
                V::Str(s) => V::Double(s.trim().parse().map_err(|_| {
                    EvalError::type_error(format!("double: cannot parse {s:?} as a number"))
                })?),
                V::Null => V::Null,
                other => return Err(f.type_err(0, "a number or a numeric string", other)),
            },
            Func::Coalesce | Func::Default | Func::Lookup => V::Null,
        })
    }
}

/// A timestamp argument: a timestamp, an RFC 3339 string, or `YYYY-MM-DD` (midnight UTC).
fn date_arg(f: Func, v: &V<'_>, i: usize) -> Result<Option<DateTime<Utc>>, EvalError> {
    match v {
        V::Timestamp(t) => Ok(Some(*t)),
        V::Null => Ok(None),
        V::Str(s) => parse_timestamp(s).map(Some).ok_or_else(|| {
            EvalError::type_error(format!(
                "{}: cannot parse {s:?} as a date (RFC 3339 or YYYY-MM-DD)",
                f.name()
            ))
        }),
        other => Err(f.type_err(i, "a timestamp or a date string", other)),
    }
}

/// RFC 3339, or a plain `YYYY-MM-DD` date at midnight UTC.
pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| Utc.from_utc_datetime(&dt))
}

fn parse_with_format(s: &str, fmt: &str) -> Option<DateTime<Utc>> {
    check_format(fmt).ok()?;
    if let Ok(t) = DateTime::parse_from_str(s, fmt) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
        return Some(Utc.from_utc_datetime(&dt));
    }
    NaiveDate::parse_from_str(s, fmt)
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| Utc.from_utc_datetime(&dt))
}

/// Rejects strftime formats chrono cannot render (it would fail, or panic, at format time).
pub(crate) fn check_format(fmt: &str) -> Result<(), String> {
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        return Err(format!("{fmt:?} has an unknown % specifier"));
    }
    Ok(())
}

fn format_date(t: &DateTime<Utc>, fmt: &str) -> Result<String, String> {
    use std::fmt::Write;
    check_format(fmt)?;
    let mut out = String::new();
    write!(out, "{}", t.format(fmt)).map_err(|_| format!("{fmt:?} cannot format this date"))?;
    Ok(out)
}

/// A CEL duration: `-`? then number+unit pairs, units h, m, s, ms, us, ns (`1h30m`, `1.5h`).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let (neg, mut rest) = match s.trim().strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.trim()),
    };
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let (unit, scale) = [
            ("ms", 1e6),
            ("us", 1e3),
            ("ns", 1.0),
            ("h", 3.6e12),
            ("m", 6e10),
            ("s", 1e9),
            ("d", 8.64e13),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        nanos += n * scale;
    }
    if !nanos.is_finite() || nanos.abs() > 9.0e18 {
        return None;
    }
    let d = Duration::nanoseconds(nanos.round() as i64);
    Some(if neg { -d } else { d })
}

/// Regexes are size-limited so a hostile pattern cannot blow up memory.
pub(crate) fn compile_regex(p: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            e.to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_owned()
        })
}

/// "Zoë Łukasz Ørsted" → "Zoe Lukasz Orsted": NFKD, drop combining marks, then the letters that
/// do not decompose.
pub(crate) fn normalize_diacritics(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        match c {
            'ł' => out.push('l'),
            'Ł' => out.push('L'),
            'ø' => out.push('o'),
            'Ø' => out.push('O'),
            'đ' => out.push('d'),
            'Đ' => out.push('D'),
            'ß' => out.push_str("ss"),
            'ẞ' => out.push_str("SS"),
            'æ' => out.push_str("ae"),
            'Æ' => out.push_str("AE"),
            'œ' => out.push_str("oe"),
            'Œ' => out.push_str("OE"),
            'þ' => out.push_str("th"),
            'Þ' => out.push_str("TH"),
            'ı' => out.push('i'),
            c => out.push(c),
        }
    }
    out
}
