//! SCIM error responses (RFC 7644 §3.12).
//!
//! [`ScimError`] is the wire error: an HTTP status, an optional `scimType` keyword and an optional
//! human-readable `detail`. [`ScimError::to_body`] renders the RFC body (status as a *string*, as the
//! RFC requires); [`ScimError::parse_lenient`] reads what real servers send, which is often not what
//! the RFC says (numeric status, missing fields, SCIM 1.1 `Errors` arrays).

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Map, Value};

use crate::schemas;

/// The `scimType` keywords of RFC 7644 §3.12, table 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    /// The filter syntax was invalid or the filter was not supported.
    InvalidFilter,
    /// The filter yields more results than the server is willing to return.
    TooMany,
    /// One or more attribute values are already in use or reserved.
    Uniqueness,
    /// The attempted modification is not compatible with the attribute's mutability.
    Mutability,
    /// The request body structure was invalid.
    InvalidSyntax,
    /// The `path` attribute was invalid or malformed.
    InvalidPath,
    /// The path did not yield an attribute that could be operated on.
    NoTarget,
    /// A required value was missing or the value was not compatible.
    InvalidValue,
    /// The specified SCIM protocol version is not supported.
    InvalidVers,
    /// The request cannot be completed because of sensitive information in the URI.
    Sensitive,
}

impl ScimType {
    /// Every keyword, in RFC order.
    pub const ALL: [ScimType; 10] = [
        ScimType::InvalidFilter,
        ScimType::TooMany,
        ScimType::Uniqueness,
        ScimType::Mutability,
        ScimType::InvalidSyntax,
        ScimType::InvalidPath,
        ScimType::NoTarget,
        ScimType::InvalidValue,
        ScimType::InvalidVers,
        ScimType::Sensitive,
    ];

    /// The keyword as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

impl fmt::Display for ScimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `s` is not one of the RFC `scimType` keywords.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a scimType keyword of rfc 7644")]
pub struct UnknownScimType(pub String);

impl FromStr for ScimType {
    type Err = UnknownScimType;

    /// Case-insensitive, since servers are not consistent.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScimType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownScimType(s.to_owned()))
    }
}

/// A SCIM error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    /// The HTTP status code; `0` when a leniently parsed body carried none (use the HTTP status).
    pub status: u16,
    /// The `scimType` keyword, kept as text because servers invent their own.
    pub scim_type: Option<String>,
    /// Human-readable detail.
    pub detail: Option<String>,
}

impl ScimError {
    /// An error with a status and optional keyword and detail.
    pub fn new(
        status: u16,
        scim_type: Option<ScimType>,
        detail: impl Into<Option<String>>,
    ) -> Self {
        ScimError {
            status,
            scim_type: scim_type.map(|t| t.as_str().to_owned()),
            detail: detail.into(),
        }
    }

    /// A 400 error with a keyword and detail, the shape of every PATCH and filter error.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError::new(400, Some(scim_type), Some(detail.into()))
    }

    /// The `scimType` as an RFC keyword, if it is one.
    pub fn kind(&self) -> Option<ScimType> {
        self.scim_type.as_deref().and_then(|s| s.parse().ok())
    }

    /// The RFC 7644 §3.12 JSON body: `schemas`, `status` (a string), and `scimType` / `detail` when set.
    pub fn to_body(&self) -> Value {
        let mut body = json!({
            "schemas": [schemas::ERROR],
            "status": self.status.to_string(),
        });
        if let Some(t) = &self.scim_type {
            body["scimType"] = Value::String(t.clone());
        }
        if let Some(d) = &self.detail {
            body["detail"] = Value::String(d.clone());
        }
        body
    }

    /// Reads an error body as real servers send it.
    ///
    /// Accepts `status` as a string or a number, any attribute missing, attribute names in any case,
    /// and the SCIM 1.1 shape `{"Errors":[{"code":..,"description":..}]}`. Returns `None` when the body
    /// is not a JSON object carrying at least one of status, scimType or detail. A missing status is
    /// reported as `0`; use [`ScimError::with_http_status`] to fill it in.
    pub fn parse_lenient(bytes: &[u8]) -> Option<ScimError> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let obj = value.as_object()?;
        if let Some(first) = field(obj, "Errors")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_object)
        {
            return Self::from_fields(first, &["code", "status"], &["description", "detail"]);
        }
        Self::from_fields(obj, &["status"], &["detail", "message"])
    }

    fn from_fields(
        obj: &Map<String, Value>,
        status_keys: &[&str],
        detail_keys: &[&str],
    ) -> Option<ScimError> {
        let status = status_keys.iter().find_map(|k| field(obj, k));
        let status_code = status.and_then(|s| match s {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        let scim_type = field(obj, "scimType")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let detail = detail_keys
            .iter()
            .find_map(|k| field(obj, k))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if status_code.is_none() && scim_type.is_none() && detail.is_none() {
            return None;
        }
        Some(ScimError {
            status: status_code.unwrap_or(0),
            scim_type,
            detail,
        })
    }

    /// Fills a missing (`0`) status with the HTTP status of the response.
    pub fn with_http_status(mut self, http_status: u16) -> Self {
        if self.status == 0 {
            self.status = http_status;
        }
        self
    }
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scim error status {}", self.status)?;
        if let Some(t) = &self.scim_type {
            write!(f, " ({t})")?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScimError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_matches_rfc_example() {
        // RFC 7644 §3.12
        let e = ScimError::new(
            400,
            Some(ScimType::InvalidSyntax),
            Some("Request is unparsable, syntactically incorrect, or violates schema.".to_owned()),
        );
        assert_eq!(
            e.to_body(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "400",
                "scimType": "invalidSyntax",
                "detail": "Request is unparsable, syntactically incorrect, or violates schema."
            })
        );
        let minimal = ScimError::new(404, None, None);
        assert_eq!(
            minimal.to_body(),
            json!({"schemas": [schemas::ERROR], "status": "404"})
        );
    }

    #[test]
    fn round_trips_through_lenient_parse() {
        let e = ScimError::bad_request(ScimType::NoTarget, "no such member");
        let bytes = serde_json::to_vec(&e.to_body()).unwrap();
        assert_eq!(ScimError::parse_lenient(&bytes), Some(e));
    }

    #[test]
    fn lenient_parse_accepts_sloppy_servers() {
        let e = ScimError::parse_lenient(br#"{"status": 409, "detail": "exists"}"#).unwrap();
        assert_eq!((e.status, e.detail.as_deref()), (409, Some("exists")));
        let e = ScimError::parse_lenient(br#"{"Status": " 429 ", "ScimType": "tooMany"}"#).unwrap();
        assert_eq!(e.status, 429);
        assert_eq!(e.kind(), Some(ScimType::TooMany));
        let e = ScimError::parse_lenient(br#"{"detail": "boom"}"#)
            .unwrap()
            .with_http_status(500);
        assert_eq!(e.status, 500);
        let e = ScimError::parse_lenient(br#"{"Errors":[{"code":"404","description":"gone"}]}"#)
            .unwrap();
        assert_eq!((e.status, e.detail.as_deref()), (404, Some("gone")));
        assert_eq!(ScimError::parse_lenient(b"not json"), None);
        assert_eq!(ScimError::parse_lenient(b"[]"), None);
        assert_eq!(ScimError::parse_lenient(br#"{"id": "x"}"#), None);
        assert_eq!(ScimError::parse_lenient(br#"{"status": 70000}"#), None);
    }

    #[test]
    fn scim_type_parses_case_insensitively() {
        for t in ScimType::ALL {
            assert_eq!(t.as_str().to_uppercase().parse::<ScimType>(), Ok(t));
        }
        assert!("bogus".parse::<ScimType>().is_err());
    }
}
