//! The SCIM HTTP client for one target: auth, limits, and turning every response into either a
//! [`Reply`] or a classified [`CallError`].
//!
//! Safety rails: redirects are never followed (a SCIM endpoint that redirects is misconfigured, and
//! following could leak the bearer token to another host); response bodies are capped; error text
//! never contains the URL's query string (filters hold user data) or a secret.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value;

use scimflow_config::{TargetAuth, TargetConfig};
use scimflow_core::ErrorClass;

use crate::classify::{parse_retry_after, StatusRules};

/// Largest response body read from a target.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

const SCIM_JSON: &str = "application/scim+json";

/// A successful (2xx) response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The parsed body; `None` when empty (e.g. 204) or not JSON.
    pub body: Option<Value>,
    /// The `Location` header, if any.
    pub location: Option<String>,
}

/// A failed request, classified.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct CallError {
    pub class: ErrorClass,
    pub status: Option<u16>,
    pub scim_type: Option<String>,
    pub detail: String,
    /// Delay the target asked for.
    pub retry_after: Option<Duration>,
}

impl CallError {
    fn transport(detail: String) -> Self {
        CallError {
            class: ErrorClass::Retryable,
            status: None,
            scim_type: None,
            detail,
            retry_after: None,
        }
    }
}

/// HTTP access to one target's SCIM endpoint.
#[derive(Debug, Clone)]
pub struct ScimClient {
    http: reqwest::Client,
    base: String,
    auth: TargetAuth,
    timeout: Duration,
    /// The target's throttle and duplicate statuses (from its connector profile).
    statuses: StatusRules,
}

impl ScimClient {
    /// Builds the client for `target`. TLS server verification is always on.
    pub fn new(target: &TargetConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(target.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(target.concurrency.max(1) * 2)
            .user_agent(concat!("scimflow/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ScimClient {
            http,
            base: target.base_url.clone(),
            auth: target.auth.clone(),
            timeout: target.timeout,
            statuses: StatusRules::new(&target.profile),
        })
    }

    /// The target's credentials (e.g. to count OAuth2 token requests).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// What this target's statuses mean (from its connector profile).
    pub fn statuses(&self) -> &StatusRules {
        &self.statuses
    }

    /// Sends one request to `{base}{path}`.
    /// `traceparent` is sent as the W3C `traceparent` header.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        traceparent: Option<&str>,
    ) -> Result<Reply, CallError> {
        // A POST to a resource endpoint creates (not a `/.search` or `/Bulk` POST).
        let creates = method == Method::POST && !path.ends_with("/.search") && path != "/Bulk";
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .timeout(self.timeout)
            .header(ACCEPT, HeaderValue::from_static(SCIM_JSON));
        if let Some(v) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
            req = req.header("traceparent", v);
        }
        if !query.is_empty() {
            req = req.query(query);
        }
        if let TargetAuth::Bearer(r) = &self.auth {
            let token = r.resolve().map_err(|e| CallError {
                class: ErrorClass::Auth,
                status: None,
                scim_type: None,
                detail: e.to_string(),
                retry_after: None,
            })?;
            let mut v =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    CallError {
                        class: ErrorClass::Auth,
                        status: None,
                        scim_type: None,
                        detail: format!(
                            "the bearer token from {r} contains characters not allowed in a header"
                        ),
                        retry_after: None,
                    }
                })?;
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))
                .body(serde_json::to_vec(b).expect("json values serialize"));
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| CallError::transport(describe(&e)))?;
        let status = resp.status().as_u16();
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header(LOCATION);
        let retry_after =
            header(RETRY_AFTER).and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(CallError {
                            class: ErrorClass::Permanent,
                            status: Some(status),
                            scim_type: None,
                            detail: format!(
                                "response body exceeds the {MAX_RESPONSE_BYTES}-byte limit"
                            ),
                            retry_after: None,
                        });
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(CallError::transport(format!(
                        "reading the response failed: {}",
                        describe(&e)
                    )))
                }
            }
        }
        let body: Option<Value> = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if (200..300).contains(&status) {
            return Ok(Reply {
                status,
                body,
                location,
            });
        }
        if (300..400).contains(&status) {
            return Err(CallError {
                class: ErrorClass::Permanent,
                status: Some(status),
                scim_type: None,
                detail: format!("target answered a redirect ({status}); redirects are not followed — check base_url"),
                retry_after: None,
            });
        }
        let (scim_type, detail) = scimflow_scim::error::ScimError::parse_lenient(&bytes)
            .map(|e| (e.scim_type, e.detail))
            .unwrap_or_default();
        let mut class = self.statuses.classify(status, creates);
        if status == 400 && scim_type.as_deref() == Some("uniqueness") {
            class = ErrorClass::Conflict;
        }
        Err(CallError {
            class,
            status: Some(status),
            detail: match detail {
                Some(d) => format!("{status}: {}", truncate(&d, 512)),
                None => format!(
                    "{status}: {}",
                    reqwest::StatusCode::from_u16(status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("error")
                ),
            },
            scim_type,
            retry_after,
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A transport error without the URL (its query string may hold user data).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body error"
    } else if e.is_request() {
        "request failed"
    } else {
        "http error"
    };
    let mut msg = kind.to_owned();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
