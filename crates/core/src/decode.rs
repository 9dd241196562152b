//! Decoding raw input into [`Event`]s: CloudEvents 1.0 in structured mode (a JSON object) and in
//! binary mode (context attributes in `ce_*` headers, data in the body).
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
}
