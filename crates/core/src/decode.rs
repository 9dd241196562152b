//! Decoding raw input into [`Event`]s: CloudEvents 1.0 in structured mode (a JSON object), in
//! binary mode (context attributes in `ce_*` headers, data in the body), and plain JSON described by
//! an [`Envelope`] (where in the document the id, type, subject, time and data are).
//!
//! Decoding never panics on any input (fuzzed), and every error names what is wrong.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::Event;

/// Default size limit for one event: 256 KiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;

/// Why an input is not an acceptable event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("event is not valid JSON: {0}")]
    NotJson(String),
    #[error("event is not a JSON object (found {0})")]
    NotAnObject(&'static str),
    #[error("event has no `{0}` attribute")]
    Missing(&'static str),
    #[error("event attribute `{attr}` is invalid: {reason}")]
    Invalid { attr: &'static str, reason: String },
    #[error("event type `{0}` is not one the mapping handles")]
    UnknownType(String),
    #[error("event has nothing at `{path}` (the envelope's `{attr}`)")]
    MissingPath { attr: &'static str, path: String },
    #[error("event value at `{path}` (the envelope's `{attr}`) is invalid: {reason}")]
    InvalidPath {
        attr: &'static str,
        path: String,
        reason: String,
    },
}

/// What the decoder accepts.
pub struct DecodeOptions<'a> {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Whether an event type is known.
    pub accepts_type: &'a (dyn Fn(&str) -> bool + Sync),
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses JSON text, checking the size limit first.
pub fn parse_json(bytes: &[u8], max_bytes: usize) -> Result<Value, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: max_bytes,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(e.to_string()))
}

/// Decodes one structured-mode CloudEvent from bytes.
///
/// `fallback_subject` (the Kafka key) is used when the event has no `subject` attribute.
pub fn decode_structured(
    bytes: &[u8],
    opts: &DecodeOptions<'_>,
    fallback_subject: Option<&str>,
) -> Result<Event, DecodeError> {
    let v = parse_json(bytes, opts.max_bytes)?;
    decode_value(v, opts, fallback_subject)
}

/// The `id` of a JSON value that looks like an event, for naming it in errors.
pub fn event_id_of(v: &Value) -> Option<String> {
    v.get("id").and_then(Value::as_str).map(str::to_owned)
}

/// Decodes one structured-mode CloudEvent from an already parsed JSON value.
pub fn decode_value(
    v: Value,
    opts: &DecodeOptions<'_>,
    fallback_subject: Option<&str>,
) -> Result<Event, DecodeError> {
    let Value::Object(mut obj) = v else {
        return Err(DecodeError::NotAnObject(kind_of(&v)));
    };
    let specversion = take_str(&mut obj, "specversion")?;
    if specversion != "1.0" {
        return Err(DecodeError::Invalid {
            attr: "specversion",
            reason: format!("`{specversion}` is not supported (expected `1.0`)"),
        });
    }
    if let Some(ct) = obj.get("datacontenttype").and_then(Value::as_str) {
        if !is_json_content_type(ct) {
            return Err(DecodeError::Invalid {
                attr: "datacontenttype",
                reason: format!("`{ct}` is not JSON"),
            });
        }
    }
    if obj.contains_key("data_base64") {
        return Err(DecodeError::Invalid {
            attr: "data_base64",
            reason: "binary data is not supported; send `data` as a JSON object".into(),
        });
    }
    let id = take_str(&mut obj, "id")?;
    let source = take_str(&mut obj, "source")?;
    let kind = take_str(&mut obj, "type")?;
    let subject = match take_opt_str(&mut obj, "subject")? {
        Some(s) => s,
        None => match fallback_subject {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => return Err(DecodeError::Missing("subject")),
        },
    };
    let time = take_opt_str(&mut obj, "time")?
        .map(|t| parse_time(&t))
        .transpose()?;
    let traceparent = take_opt_str(&mut obj, "traceparent")?;
    let data = obj.remove("data").unwrap_or(Value::Null);
    finish(id, source, kind, subject, time, data, traceparent, opts)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    id: String,
    source: String,
    kind: String,
    subject: String,
    time: Option<DateTime<Utc>>,
    data: Value,
    traceparent: Option<String>,
    opts: &DecodeOptions<'_>,
) -> Result<Event, DecodeError> {
    for (attr, val) in [
        ("id", &id),
        ("source", &source),
        ("type", &kind),
        ("subject", &subject),
    ] {
        if val.trim().is_empty() {
            return Err(DecodeError::Invalid {
                attr,
                reason: "must not be empty".into(),
            });
        }
        if val.len() > 1024 {
            return Err(DecodeError::Invalid {
                attr,
                reason: format!("is {} bytes long (limit 1024)", val.len()),
            });
        }
    }
    if !matches!(data, Value::Object(_) | Value::Null) {
        return Err(DecodeError::Invalid {
            attr: "data",
            reason: format!("must be a JSON object, found {}", kind_of(&data)),
        });
    }
    if !(opts.accepts_type)(&kind) {
        return Err(DecodeError::UnknownType(kind));
    }
    Ok(Event {
        id,
        source,
        kind,
        subject,
        time,
        data: if data.is_null() {
            Value::Object(Map::new())
        } else {
            data
        },
        traceparent,
    })
}

/// Decodes a binary-mode CloudEvent: context attributes from `ce_*` headers, data from the body.
pub fn decode_binary<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    body: &[u8],
    opts: &DecodeOptions<'_>,
    fallback_subject: Option<&str>,
) -> Result<Event, DecodeError> {
    let mut obj = Map::new();
    let mut content_type = None;
    for (name, value) in headers {
        let value = std::str::from_utf8(value).map_err(|_| DecodeError::Invalid {
            attr: "headers",
            reason: format!("header `{name}` is not UTF-8"),
        })?;
        if let Some(attr) = name.strip_prefix("ce_") {
            obj.insert(attr.to_owned(), Value::String(value.to_owned()));
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name == "traceparent" && !obj.contains_key("traceparent") {
            obj.insert("traceparent".into(), Value::String(value.to_owned()));
        }
    }
    if let Some(ct) = content_type {
        obj.insert("datacontenttype".into(), Value::String(ct));
    }
    let data = if body.is_empty() {
        Value::Null
    } else {
        parse_json(body, opts.max_bytes)?
    };
    obj.insert("data".into(), data);
    decode_value(Value::Object(obj), opts, fallback_subject)
}

/// A simple JSONPath-like location in a JSON document: `$` (the whole document) or dotted member
/// names after it (`$.worker.id`; a leading `$.` is optional; a numeric segment indexes an array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    segments: Vec<String>,
}

impl JsonPath {
    /// Parses `$`, `$.a.b` or `a.b`. Empty segments (`$.a..b`, a trailing dot) are errors.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let t = text.trim();
        let rest = if t == "$" {
            ""
        } else if let Some(r) = t.strip_prefix("$.") {
            r
        } else if t.starts_with('$') {
            return Err(format!("`{t}` is not a path: write `$` or `$.name.name`"));
        } else {
            t
        };
        if t.is_empty() {
            return Err("the path is empty: write `$` or `$.name.name`".into());
        }
        let segments: Vec<String> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('.').map(str::to_owned).collect()
        };
        if segments.iter().any(String::is_empty) {
            return Err(format!("`{t}` has an empty segment"));
        }
        Ok(JsonPath {
            text: if t.starts_with('$') {
                t.to_owned()
            } else {
                format!("$.{t}")
            },
            segments,
        })
    }

    /// The path as written (normalised to start with `$`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path, if any (`null` counts as absent).
    pub fn get<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        let mut cur = v;
        for seg in &self.segments {
            cur = match cur {
                Value::Object(o) => o.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        (!cur.is_null()).then_some(cur)
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where the event attributes live in a plain JSON message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The event id (a string or a number). Required.
    pub id: JsonPath,
    /// The event type (a string). Required.
    pub kind: JsonPath,
    /// The subject (a string or a number); when absent, or absent in a message, the fallback subject
    /// (the Kafka key) is used.
    pub subject: Option<JsonPath>,
    /// The event time (RFC 3339); optional.
    pub time: Option<JsonPath>,
    /// The event data (a JSON object); `$` means the whole message.
    pub data: JsonPath,
    /// The CloudEvents `source` to record for these events (e.g. `kafka:TOPIC`).
    pub source: String,
}

impl Envelope {
    /// The default envelope: `$.id`, `$.type`, `$.subject`, `$.time`, data = the whole message.
    pub fn with_source(source: impl Into<String>) -> Envelope {
        let p = |s: &str| JsonPath::parse(s).expect("valid built-in path");
        Envelope {
            id: p("$.id"),
            kind: p("$.type"),
            subject: Some(p("$.subject")),
            time: Some(p("$.time")),
            data: p("$"),
            source: source.into(),
        }
    }
}

/// Decodes one plain JSON message described by `envelope`.
///
/// `fallback_subject` (the Kafka key) is used when the envelope names no subject or the message has
/// nothing at its path. Every error names the missing or invalid path.
pub fn decode_enveloped(
    bytes: &[u8],
    envelope: &Envelope,
    opts: &DecodeOptions<'_>,
    fallback_subject: Option<&str>,
) -> Result<Event, DecodeError> {
    let v = parse_json(bytes, opts.max_bytes)?;
    if !v.is_object() {
        return Err(DecodeError::NotAnObject(kind_of(&v)));
    }
    let scalar = |attr: &'static str,
                  path: &JsonPath,
                  numbers: bool|
     -> Result<Option<String>, DecodeError> {
        match path.get(&v) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if numbers => Ok(Some(n.to_string())),
            Some(other) => Err(DecodeError::InvalidPath {
                attr,
                path: path.to_string(),
                reason: format!(
                    "must be a string{}, found {}",
                    if numbers { " or a number" } else { "" },
                    kind_of(other)
                ),
            }),
        }
    };
    let required = |attr: &'static str, path: &JsonPath, numbers: bool| {
        scalar(attr, path, numbers)?.ok_or_else(|| DecodeError::MissingPath {
            attr,
            path: path.to_string(),
        })
    };
    let id = required("id", &envelope.id, true)?;
    let kind = required("type", &envelope.kind, false)?;
    let subject = match &envelope.subject {
        Some(p) => scalar("subject", p, true)?,
        None => None,
    };
    let subject = match (subject, fallback_subject) {
        (Some(s), _) => s,
        (None, Some(k)) if !k.is_empty() => k.to_owned(),
        (None, _) => {
            return Err(match &envelope.subject {
                Some(p) => DecodeError::MissingPath {
                    attr: "subject",
                    path: p.to_string(),
                },
                None => DecodeError::Missing("subject"),
            })
        }
    };
    let time = match &envelope.time {
        Some(p) => scalar("time", p, false)?
            .map(|t| {
                parse_time(&t).map_err(|e| DecodeError::InvalidPath {
                    attr: "time",
                    path: p.to_string(),
                    reason: match e {
                        DecodeError::Invalid { reason, .. } => reason,
                        other => other.to_string(),
                    },
                })
            })
            .transpose()?,
        None => None,
    };
    let data = match envelope.data.get(&v) {
        Some(d @ Value::Object(_)) => d.clone(),
        Some(other) => {
            return Err(DecodeError::InvalidPath {
                attr: "data",
                path: envelope.data.to_string(),
                reason: format!("must be a JSON object, found {}", kind_of(other)),
            })
        }
        None => {
            return Err(DecodeError::MissingPath {
                attr: "data",
                path: envelope.data.to_string(),
            })
        }
    };
    finish(
        id,
        envelope.source.clone(),
        kind,
        subject,
        time,
        data,
        None,
        opts,
    )
}

/// Whether a content type is JSON (`application/json`, `application/cloudevents+json`, `…+json`).
pub fn is_json_content_type(ct: &str) -> bool {
    let base = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    base == "application/json" || base.ends_with("+json") || base == "text/json"
}

fn parse_time(t: &str) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| DecodeError::Invalid {
            attr: "time",
            reason: format!("`{}` is not an RFC 3339 timestamp ({e})", truncate(t, 64)),
        })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn take_opt_str(
    obj: &mut Map<String, Value>,
    attr: &'static str,
) -> Result<Option<String>, DecodeError> {
    match obj.remove(attr) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(DecodeError::Invalid {
            attr,
            reason: format!("must be a string, found {}", kind_of(&other)),
        }),
    }
}

fn take_str(obj: &mut Map<String, Value>, attr: &'static str) -> Result<String, DecodeError> {
    take_opt_str(obj, attr)?.ok_or(DecodeError::Missing(attr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> DecodeOptions<'static> {
        DecodeOptions {
            max_bytes: 1024,
            accepts_type: &|t: &str| t.starts_with("hr.worker."),
        }
    }

    const GOOD: &str = r#"{"specversion":"1.0","id":"e1","source":"hr","type":"hr.worker.hired",
        "subject":"E1","time":"2026-01-01T10:00:00Z","data":{"email":"a@b.c"}}"#;

    #[test]
    fn decodes_structured() {
        let e = decode_structured(GOOD.as_bytes(), &opts(), None).unwrap();
        assert_eq!(e.subject, "E1");
        assert_eq!(e.kind, "hr.worker.hired");
        assert_eq!(e.data["email"], "a@b.c");
        assert!(e.time.is_some());
    }

    #[test]
    fn errors_name_the_problem() {
        let o = opts();
        assert!(matches!(
            decode_structured(b"nope", &o, None),
            Err(DecodeError::NotJson(_))
        ));
        assert_eq!(
            decode_structured(b"[1]", &o, None),
            Err(DecodeError::NotAnObject("an array"))
        );
        let no_subject = GOOD.replace(r#""subject":"E1","#, "");
        assert_eq!(
            decode_structured(no_subject.as_bytes(), &o, None),
            Err(DecodeError::Missing("subject"))
        );
        assert_eq!(
            decode_structured(no_subject.as_bytes(), &o, Some("K1"))
                .unwrap()
                .subject,
            "K1"
        );
        let unknown = GOOD.replace("hr.worker.hired", "hr.other.teleported");
        assert_eq!(
            decode_structured(unknown.as_bytes(), &o, None),
            Err(DecodeError::UnknownType("hr.other.teleported".into()))
        );
        let big = vec![b' '; 2000];
        assert!(matches!(
            decode_structured(&big, &o, None),
            Err(DecodeError::TooLarge {
                size: 2000,
                max: 1024
            })
        ));
        let bad_time = GOOD.replace("2026-01-01T10:00:00Z", "yesterday");
        assert!(matches!(
            decode_structured(bad_time.as_bytes(), &o, None),
            Err(DecodeError::Invalid { attr: "time", .. })
        ));
    }

    #[test]
    fn decodes_binary_mode() {
        let headers: Vec<(&str, &[u8])> = vec![
            ("ce_specversion", b"1.0"),
            ("ce_id", b"e2"),
            ("ce_source", b"hr"),
            ("ce_type", b"hr.worker.updated"),
            ("content-type", b"application/json"),
            (
                "traceparent",
                b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ];
        let e = decode_binary(headers, br#"{"x":1}"#, &opts(), Some("E9")).unwrap();
        assert_eq!(e.subject, "E9");
        assert_eq!(e.data["x"], 1);
        assert!(e.traceparent.is_some());
    }
    fn envelope() -> Envelope {
        let p = |s: &str| JsonPath::parse(s).unwrap();
        Envelope {
            id: p("$.eventId"),
            kind: p("$.eventType"),
            subject: Some(p("$.worker.id")),
            time: Some(p("$.occurredAt")),
            data: p("$.worker"),
            source: "kafka:hr".into(),
        }
    }

    #[test]
    fn decodes_enveloped_json() {
        let msg =
            br#"{"eventId":42,"eventType":"hr.worker.hired","occurredAt":"2026-01-01T10:00:00Z",
            "worker":{"id":"W7","email":"a@b.c"}}"#;
        let e = decode_enveloped(msg, &envelope(), &opts(), Some("K")).unwrap();
        assert_eq!(e.id, "42");
        assert_eq!(e.kind, "hr.worker.hired");
        assert_eq!(e.subject, "W7");
        assert_eq!(e.source, "kafka:hr");
        assert_eq!(e.data["email"], "a@b.c");
        assert!(e.time.is_some());
        // No subject at the path: the key.
        let msg = br#"{"eventId":"e1","eventType":"hr.worker.updated","worker":{"email":"x"}}"#;
        let e = decode_enveloped(msg, &envelope(), &opts(), Some("K")).unwrap();
        assert_eq!(e.subject, "K");
        assert!(e.time.is_none());
        // Whole message as data.
        let mut whole = envelope();
        whole.data = JsonPath::parse("$").unwrap();
        let e = decode_enveloped(msg, &whole, &opts(), Some("K")).unwrap();
        assert_eq!(e.data["eventId"], "e1");
    }

    #[test]
    fn envelope_errors_name_the_path() {
        let o = opts();
        let env = envelope();
        let e = decode_enveloped(
            br#"{"eventType":"hr.worker.hired","worker":{}}"#,
            &env,
            &o,
            Some("K"),
        )
        .unwrap_err();
        assert_eq!(
            e,
            DecodeError::MissingPath {
                attr: "id",
                path: "$.eventId".into()
            }
        );
        assert!(e.to_string().contains("`$.eventId`"), "{e}");
        let e = decode_enveloped(br#"{"eventId":"1","worker":{}}"#, &env, &o, None).unwrap_err();
        assert!(e.to_string().contains("`$.eventType`"), "{e}");
        let e = decode_enveloped(
            br#"{"eventId":"1","eventType":"hr.worker.hired","worker":{}}"#,
            &env,
            &o,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("`$.worker.id`"), "{e}");
        let e = decode_enveloped(
            br#"{"eventId":"1","eventType":"hr.worker.hired"}"#,
            &env,
            &o,
            Some("K"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`$.worker`"), "{e}");
        let e = decode_enveloped(
            br#"{"eventId":"1","eventType":"hr.worker.hired","worker":[1]}"#,
            &env,
            &o,
            Some("K"),
        )
        .unwrap_err();
        assert!(
            matches!(e, DecodeError::InvalidPath { attr: "data", .. }),
            "{e}"
        );
        let e = decode_enveloped(
            br#"{"eventId":"1","eventType":"hr.worker.hired","occurredAt":"soon","worker":{}}"#,
            &env,
            &o,
            Some("K"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`$.occurredAt`"), "{e}");
        let e = decode_enveloped(
            br#"{"eventId":"1","eventType":"x.y","worker":{}}"#,
            &env,
            &o,
            Some("K"),
        )
        .unwrap_err();
        assert_eq!(e, DecodeError::UnknownType("x.y".into()));
        assert!(matches!(
            decode_enveloped(&[b' '; 2000], &env, &o, None),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_enveloped(b"[]", &env, &o, None),
            Err(DecodeError::NotAnObject(_))
        ));
    }

    #[test]
    fn parses_paths() {
        assert_eq!(
            JsonPath::parse("worker.id").unwrap().as_str(),
            "$.worker.id"
        );
        assert_eq!(JsonPath::parse("$").unwrap().as_str(), "$");
        assert!(JsonPath::parse("").is_err());
        assert!(JsonPath::parse("$.a..b").is_err());
        assert!(JsonPath::parse("$a").is_err());
        let v: Value = serde_json::json!({"a":[{"b":1}]});
        assert_eq!(
            JsonPath::parse("$.a.0.b").unwrap().get(&v),
            Some(&serde_json::json!(1))
        );
        assert_eq!(JsonPath::parse("$.a.1.b").unwrap().get(&v), None);
    }
}
