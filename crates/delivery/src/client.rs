//! The SCIM HTTP client for one target: auth, limits, and turning every response into either a
//! [`Reply`] or a classified [`CallError`].
//!
//! Auth ([`crate::auth`]): a static bearer token, or OAuth2 client credentials — on a 401 the
//! client invalidates the access token it sent and replays the request once with a fresh one (a
//! second 401 is returned as an auth failure). The replay is part of the same attempt: it holds
//! the attempt's concurrency permit and does not pay a second rate-limit token.
//! TLS ([`crate::tls`]): optional client certificate and private CA; server verification is
//! always on.
//!
//! Safety rails: redirects are never followed (a SCIM endpoint that redirects is misconfigured, and
//! following could leak the bearer token to another host); response bodies are capped; error text
//! never contains the URL's query string (filters hold user data) or a secret.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value;

use scimflow_config::TargetConfig;
use scimflow_core::ErrorClass;

use crate::auth::Credentials;
use crate::classify::{parse_retry_after, StatusRules};
use crate::tls::{BuildError, TlsMaterial};

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
    credentials: Credentials,
    timeout: Duration,
    /// The target's throttle and duplicate statuses (from its connector profile).
    statuses: StatusRules,
}

impl ScimClient {
    /// Builds the client for `target`, reading its TLS files. TLS server verification is always
    /// on.
    pub fn new(target: &TargetConfig) -> Result<Self, BuildError> {
        let tls = TlsMaterial::load(&target.tls)?;
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(target.timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("scimflow/", env!("CARGO_PKG_VERSION")))
        };
        let failed = |e: reqwest::Error| {
            BuildError::Http(format!("building the HTTP client failed: {}", describe(&e)))
        };
        let http = tls
            .scim(builder().pool_max_idle_per_host(target.concurrency.max(1) * 2))
            .build()
            .map_err(failed)?;
        let credentials = match &target.auth {
            scimflow_config::TargetAuth::OAuth2(_) => {
                let token_http = tls.token(builder()).build().map_err(failed)?;
                Credentials::new(&target.name, &target.auth, token_http, target.timeout)
            }
            other => Credentials::new(&target.name, other, http.clone(), target.timeout),
        };
        Ok(ScimClient {
            http,
            base: target.base_url.clone(),
            credentials,
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
        let url = format!("{}{}", self.base, path);
        let body = body.map(|b| serde_json::to_vec(b).expect("json values serialize"));
        // At most two rounds: the second only after a 401 to an OAuth2 token (refresh, replay).
        let mut replayed = false;
        let mut resp = loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .timeout(self.timeout)
                .header(ACCEPT, HeaderValue::from_static(SCIM_JSON));
            if let Some(v) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
                req = req.header("traceparent", v);
            }
            if !query.is_empty() {
                req = req.query(query);
            }
            let lease = self.credentials.authorize().await?;
            if let Some(l) = &lease {
                req = req.header(AUTHORIZATION, l.header().clone());
            }
            if let Some(b) = &body {
                req = req
                    .header(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))
                    .body(b.clone());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| CallError::transport(describe(&e)))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !replayed {
                if let Some(l) = &lease {
                    if self.credentials.refused(l) {
                        replayed = true;
                        tracing::debug!(
                            path,
                            "401 with an oauth2 access token: replaying once with a new one"
                        );
                        continue;
                    }
                }
            }
            break resp;
        };
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
        // A POST to a resource endpoint creates (not a `/.search` or `/Bulk` POST).
        let creates = method == Method::POST && !path.ends_with("/.search") && path != "/Bulk";
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

/// A transport error without the URL (its query string may hold user data), with a hint when it
/// is a TLS failure.
pub(crate) fn describe(e: &reqwest::Error) -> String {
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
    if let Some(h) = crate::tls::hint(&msg) {
        msg.push_str(" (");
        msg.push_str(h);
        msg.push(')');
    }
    msg
}
