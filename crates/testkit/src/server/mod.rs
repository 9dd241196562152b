//! An in-process SCIM 2.0 test server with scripted faults.
//!
//! [`TestServer`] serves `Users`, `Groups` and `ServiceProviderConfig` under `/scim/v2` from
//! memory, on a loopback listener, with its own hyper accept loop (HTTP/1.1, keep-alive) so that a
//! scripted [`Fault::Reset`] can drop a connection without answering. It is self-contained on
//! purpose (no dependency on `scimflow-scim`): a small filter parser (`filter.rs`), PATCH
//! (`patch.rs`) and uniqueness indexes (`store.rs`).
//!
//! Order of processing for each request:
//! 1. count it, take the first matching scripted [`FaultRule`] (consuming one of its uses);
//! 2. sleep [`ServerOptions::latency`]; a `Delay` fault sleeps too and then carries on;
//!    `Status` answers at once without touching data; `Reset` drops the connection;
//! 3. bearer-token check (401 with a SCIM error body; `ServiceProviderConfig` is open): the static
//!    [`ServerOptions::token`], or [`ServerOptions::token_check`] (e.g. the tokens a
//!    [`crate::oauth::TokenEndpoint`] issued and that have not expired);
//! 4. [`ServerOptions::rate_limit`]: at most N admitted requests in any sliding second, 429 above;
//! 5. the real SCIM handler; then `TruncatedJson` / `InvalidJson` / `CommitThen500` mangle the
//!    answer of a request that *was* carried out;
//! 6. record a [`RecordedRequest`] (status 0 for a reset).
//!
//! Behaviour that real targets show and tests need is a knob in [`ServerOptions`]; everything
//! observable for assertions is a method on [`TestServer`]. [`TestServer::start_tls`] serves
//! HTTPS instead, optionally requiring a client certificate ([`TlsOptions`], [`crate::pki`]).

mod filter;
mod handlers;
mod patch;
mod store;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
pub use axum::http::Method;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use store::{Collection, Kind};

/// The SCIM media type every answer carries.
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// How PATCH succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatchAnswer {
    /// 200 with the updated resource (default).
    #[default]
    Resource,
    /// 204 without a body (what scim2-server and some vendors do).
    NoContent,
}

/// The form of the `Retry-After` header on 429 answers from [`ServerOptions::rate_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryAfterStyle {
    /// No `Retry-After` header.
    None,
    /// Delay in whole seconds (`Retry-After: 1`).
    #[default]
    Seconds,
    /// An HTTP date (`Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`).
    HttpDate,
}

/// A `Retry-After` value for a scripted [`Fault::Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: N`.
    Seconds(u64),
    /// `Retry-After: <HTTP-date>`.
    HttpDate(SystemTime),
}

impl RetryAfter {
    /// The header value.
    pub fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::HttpDate(t) => httpdate::fmt_http_date(*t),
        }
    }
}

/// Behaviour knobs. Build with struct update syntax:
/// `ServerOptions { ignore_filters: true, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Expected bearer token; empty disables the check. Default `"test-token"`.
    pub token: String,
    /// 200 with the resource (default) or 204 on a successful PATCH.
    pub patch_answer: PatchAnswer,
    /// Compare every string in filters case-exactly (default: `userName`, `displayName`, emails
    /// case-insensitive; `id`, `externalId`, `members.value` case-exact).
    pub case_sensitive_filters: bool,
    /// Ignore `filter` on list requests and return everything (a hostile target).
    pub ignore_filters: bool,
    /// Status for a uniqueness violation on create/replace/patch (409 `uniqueness` by default;
    /// some targets answer 500).
    pub duplicate_status: u16,
    /// Silently drop `externalId` from stored resources.
    pub drop_external_id: bool,
    /// Added to every request before it is handled.
    pub latency: Duration,
    /// Admit at most this many requests per sliding second; answer 429 above it.
    pub rate_limit: Option<(u32, RetryAfterStyle)>,
    /// Largest page a list request gets (also the default `count`). Default 100.
    pub max_page_size: usize,
    /// Send a `Location` header on 201. Default true.
    pub send_location: bool,
    /// Offer cursor pagination (RFC 9865) in `/ServiceProviderConfig` and answer `cursor=` lists
    /// with `nextCursor` (default false: a `cursor` parameter is refused with 400).
    pub cursor_pagination: bool,
    /// Accept a group whose `displayName` another group has (default false: 409 `uniqueness`).
    pub allow_duplicate_group_names: bool,
    /// Serve `POST /Bulk` (RFC 7644 §3.7) with at most this many operations per request (more:
    /// 413). `None` (default): 501, like a server without bulk. Scripted faults apply to each
    /// operation by its method and path, and turn into that operation's result.
    pub bulk_max_operations: Option<usize>,
    /// Decides which bearer tokens are accepted, instead of [`token`](Self::token).
    pub token_check: Option<TokenCheck>,
}

/// A predicate on the bearer token of a request (see [`ServerOptions::token_check`]).
#[derive(Clone)]
pub struct TokenCheck(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCheck(..)")
    }
}

/// HTTPS for [`TestServer::start_tls`]: the server's certificate chain and key (PEM), and the CA
/// that client certificates must chain to (`None`: no client certificate asked for).
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
}

impl TlsOptions {
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("server certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("server key PEM");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match &self.client_ca_pem {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.expect("client CA PEM")).expect("client CA");
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .expect("server certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            token: "test-token".to_string(),
            patch_answer: PatchAnswer::Resource,
            case_sensitive_filters: false,
            ignore_filters: false,
            duplicate_status: 409,
            drop_external_id: false,
            latency: Duration::ZERO,
            rate_limit: None,
            max_page_size: 100,
            send_location: true,
            cursor_pagination: false,
            allow_duplicate_group_names: false,
            bulk_max_operations: None,
            token_check: None,
        }
    }
}

/// What a scripted rule does to a matching request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer `status` at once without carrying the request out. `body` defaults to a SCIM error.
    Status {
        status: u16,
        retry_after: Option<RetryAfter>,
        body: Option<String>,
    },
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Close the connection without any response (the client sees a connection error).
    Reset,
    /// Carry the request out, then answer its status (200 for 204) with the body cut in half.
    TruncatedJson,
    /// Carry the request out, then answer its status (200 for 204) with a body that is not JSON.
    InvalidJson,
    /// Carry the request out, then answer 500.
    CommitThen500,
}

/// A scripted fault: which requests it hits and how many times.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Only requests with this method (any when `None`).
    pub method: Option<Method>,
    /// Only paths starting with this, either the full path (`/scim/v2/Users`) or relative to the
    /// base (`/Users`). Any when `None`.
    pub path_prefix: Option<String>,
    /// Applies to this many matching requests; `None` = forever.
    pub times: Option<u32>,
    /// What it does.
    pub fault: Fault,
}

impl FaultRule {
    /// A rule for the next matching request (use [`times`](Self::times)/[`forever`](Self::forever)).
    pub fn new(fault: Fault) -> Self {
        FaultRule {
            method: None,
            path_prefix: None,
            times: Some(1),
            fault,
        }
    }
    /// Answer `status` with a SCIM error body.
    pub fn status(status: u16) -> Self {
        Self::new(Fault::Status {
            status,
            retry_after: None,
            body: None,
        })
    }
    /// Answer `status` (typically 429 or 503) with a `Retry-After` header.
    pub fn status_retry_after(status: u16, retry_after: RetryAfter) -> Self {
        Self::new(Fault::Status {
            status,
            retry_after: Some(retry_after),
            body: None,
        })
    }
    /// Delay, then handle normally.
    pub fn delay(d: Duration) -> Self {
        Self::new(Fault::Delay(d))
    }
    /// Drop the connection without answering.
    pub fn reset() -> Self {
        Self::new(Fault::Reset)
    }
    /// Only for this method.
    pub fn method(mut self, m: Method) -> Self {
        self.method = Some(m);
        self
    }
    /// Only for paths with this prefix (`/Users` or `/scim/v2/Users`).
    pub fn path(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }
    /// For the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
    /// For every matching request until cleared.
    pub fn forever(mut self) -> Self {
        self.times = None;
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        match &self.path_prefix {
            None => true,
            Some(p) => {
                path.starts_with(p.as_str())
                    || path
                        .strip_prefix(BASE_PATH)
                        .is_some_and(|rel| rel.starts_with(p.as_str()))
            }
        }
    }
}

/// Method, path, query and `traceparent` of a request, as recorded.
type Seen = (Method, String, Option<String>, Option<String>);

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// The status answered; 0 when the connection was reset instead.
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
    /// The W3C `traceparent` header, if the request had one.
    pub traceparent: Option<String>,
}

const BASE_PATH: &str = "/scim/v2";

#[derive(Debug, Clone)]
pub(crate) struct ScimError {
    pub(crate) status: u16,
    pub(crate) scim_type: Option<&'static str>,
    pub(crate) detail: String,
}

impl ScimError {
    pub(crate) fn new(
        status: u16,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    fn body(&self) -> Value {
        let mut v = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = Value::String(t.to_string());
        }
        v
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        scim_json(status, &self.body())
    }
}

pub(crate) fn scim_json(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).expect("json values serialize");
    raw_response(status, body)
}

fn raw_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    r
}

struct ActiveRule {
    rule: FaultRule,
    remaining: Option<u32>,
}

pub(crate) struct Data {
    users: Collection,
    groups: Collection,
    version: u64,
}

impl Data {
    pub(crate) fn coll(&mut self, kind: Kind) -> &mut Collection {
        match kind {
            Kind::User => &mut self.users,
            Kind::Group => &mut self.groups,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) opts: ServerOptions,
    pub(crate) base_url: String,
    pub(crate) data: Mutex<Data>,
    faults: Mutex<Vec<ActiveRule>>,
    requests: Mutex<Vec<RecordedRequest>>,
    count: AtomicU64,
    admitted: Mutex<VecDeque<Instant>>,
    /// Why TLS handshakes failed (HTTPS servers only).
    tls_failures: Mutex<Vec<String>>,
    /// Per bulk request, the `(method, path, status)` of each of its operations.
    bulk_log: Mutex<Vec<Vec<(String, String, u16)>>>,
}

impl Shared {
    fn take_fault(&self, method: &Method, path: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().expect("faults lock");
        let i = faults.iter().position(|r| r.rule.matches(method, path))?;
        let fault = faults[i].rule.fault.clone();
        if let Some(n) = &mut faults[i].remaining {
            *n = n.saturating_sub(1);
            if *n == 0 {
                faults.remove(i);
            }
        }
        Some(fault)
    }

    /// `Some(429 response)` when the request exceeds the rate limit; otherwise admits it.
    fn rate_check(&self, now: Instant) -> Option<Response> {
        let (limit, style) = self.opts.rate_limit?;
        let mut admitted = self.admitted.lock().expect("limiter lock");
        while admitted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            admitted.pop_front();
        }
        if (admitted.len() as u64) < u64::from(limit) {
            admitted.push_back(now);
            return None;
        }
        let free_at = admitted
            .front()
            .map_or(now, |t| *t + Duration::from_secs(1));
        let wait = free_at.saturating_duration_since(now);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        let mut r = ScimError::new(
            429,
            None,
            format!("rate limit of {limit} requests per second exceeded"),
        )
        .into_response();
        let value = match style {
            RetryAfterStyle::None => None,
            RetryAfterStyle::Seconds => Some(RetryAfter::Seconds(secs)),
            RetryAfterStyle::HttpDate => Some(RetryAfter::HttpDate(
                SystemTime::now() + Duration::from_secs(secs + 1),
            )),
        };
        if let Some(v) = value {
            if let Ok(h) = HeaderValue::from_str(&v.header_value()) {
                r.headers_mut().insert(header::RETRY_AFTER, h);
            }
        }
        Some(r)
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        if (self.opts.token.is_empty() && self.opts.token_check.is_none())
            || req.uri().path() == "/scim/v2/ServiceProviderConfig"
        {
            return true;
        }
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .is_some_and(|(scheme, tok)| {
                scheme.eq_ignore_ascii_case("bearer")
                    && match &self.opts.token_check {
                        Some(check) => (check.0)(tok.trim()),
                        None => tok.trim() == self.opts.token,
                    }
            })
    }

    fn record(&self, (method, path, query, traceparent): Seen, status: u16, at: Instant) {
        self.requests
            .lock()
            .expect("requests lock")
            .push(RecordedRequest {
                method,
                path,
                query,
                status,
                at,
                traceparent,
            });
    }

    async fn handle(
        self: Arc<Self>,
        router: Router,
        kill: Arc<Notify>,
        req: Request<Incoming>,
    ) -> Response {
        let at = Instant::now();
        self.count.fetch_add(1, Ordering::Relaxed);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        let traceparent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let seen = || {
            (
                method.clone(),
                path.clone(),
                query.clone(),
                traceparent.clone(),
            )
        };
        let fault = self.take_fault(&method, &path);
        if !self.opts.latency.is_zero() {
            tokio::time::sleep(self.opts.latency).await;
        }
        let after = match fault {
            None => None,
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                None
            }
            Some(Fault::Reset) => {
                self.record(seen(), 0, at);
                kill.notify_one();
                // The connection task drops the connection (and this future) now.
                return std::future::pending().await;
            }
            Some(Fault::Status {
                status,
                retry_after,
                body,
            }) => {
                let code =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut r = match body {
                    Some(b) => raw_response(code, b),
                    None => {
                        ScimError::new(status, None, format!("scripted fault: status {status}"))
                            .into_response()
                    }
                };
                if let Some(ra) = retry_after {
                    if let Ok(h) = HeaderValue::from_str(&ra.header_value()) {
                        r.headers_mut().insert(header::RETRY_AFTER, h);
                    }
                }
                self.record(seen(), status, at);
                return r;
            }
            Some(f) => Some(f),
        };
        if !self.authorized(&req) {
            self.record(seen(), 401, at);
            let mut r = ScimError::new(401, None, "missing or wrong bearer token").into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        if let Some(r) = self.rate_check(Instant::now()) {
            self.record(seen(), 429, at);
            return r;
        }
        if method == Method::POST && path == format!("{BASE_PATH}/Bulk") {
            let resp = self.bulk(router, req.map(Body::new)).await;
            self.record(seen(), resp.status().as_u16(), at);
            return resp;
        }
        let resp = match router.oneshot(req.map(Body::new)).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let resp = match after {
            Some(Fault::TruncatedJson) => mangle(resp, true).await,
            Some(Fault::InvalidJson) => mangle(resp, false).await,
            Some(Fault::CommitThen500) => {
                ScimError::new(500, None, "scripted fault: committed, then failed").into_response()
            }
            _ => resp,
        };
        self.record(seen(), resp.status().as_u16(), at);
        resp
    }
}

impl Shared {
    /// `POST /Bulk`: each operation through the router (and the scripted faults), in order.
    async fn bulk(&self, router: Router, req: Request<Body>) -> Response {
        let Some(max) = self.opts.bulk_max_operations else {
            return ScimError::new(501, None, "bulk is not supported").into_response();
        };
        let auth = req.headers().get(header::AUTHORIZATION).cloned();
        let Ok(bytes) = axum::body::to_bytes(req.into_body(), 16 << 20).await else {
            return ScimError::new(413, None, "bulk body too large").into_response();
        };
        let Ok(request) = serde_json::from_slice::<Value>(&bytes) else {
            return ScimError::new(400, Some("invalidSyntax"), "bulk body is not JSON")
                .into_response();
        };
        let ops = request["Operations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if ops.len() > max {
            return ScimError::new(413, None, format!("more than {max} operations"))
                .into_response();
        }
        let mut results = Vec::with_capacity(ops.len());
        let mut log = Vec::with_capacity(ops.len());
        for op in ops {
            let method_name = op["method"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let path = op["path"].as_str().unwrap_or_default().to_owned();
            let full = format!("{BASE_PATH}{path}");
            let Ok(method) = Method::from_bytes(method_name.as_bytes()) else {
                results
                    .push(json!({"method": method_name, "bulkId": op["bulkId"], "status": "400"}));
                continue;
            };
            let fault = self.take_fault(&method, &full);
            let (status, body, location) = match fault {
                Some(Fault::Status { status, .. }) => (
                    status,
                    Some(
                        ScimError::new(status, None, format!("scripted fault: status {status}"))
                            .body(),
                    ),
                    None,
                ),
                other => {
                    let mut inner = Request::builder().method(method.clone()).uri(&full);
                    if let Some(a) = &auth {
                        inner = inner.header(header::AUTHORIZATION, a.clone());
                    }
                    let data = op.get("data").map(|d| serde_json::to_vec(d).expect("json"));
                    let inner = inner
                        .header(header::CONTENT_TYPE, SCIM_CONTENT_TYPE)
                        .body(Body::from(data.unwrap_or_default()))
                        .expect("valid request");
                    let resp = match router.clone().oneshot(inner).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    let status = resp.status().as_u16();
                    let location = resp
                        .headers()
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                        .await
                        .unwrap_or_default();
                    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
                    if matches!(other, Some(Fault::CommitThen500)) {
                        (
                            500,
                            Some(
                                ScimError::new(500, None, "scripted fault: committed, then failed")
                                    .body(),
                            ),
                            None,
                        )
                    } else {
                        (status, body, location)
                    }
                }
            };
            log.push((method_name.clone(), path.clone(), status));
            let mut result = json!({"method": method_name, "bulkId": op["bulkId"], "status": status.to_string()});
            if let Some(l) = location {
                result["location"] = Value::String(l);
            }
            if status >= 400 {
                if let Some(b) = body {
                    result["response"] = b;
                }
            }
            results.push(result);
        }
        self.bulk_log.lock().expect("bulk log lock").push(log);
        scim_json(
            StatusCode::OK,
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"], "Operations": results}),
        )
    }
}

/// Replace the body of a carried-out request with truncated or invalid JSON.
async fn mangle(resp: Response, truncate: bool) -> Response {
    let status = match resp.status() {
        StatusCode::NO_CONTENT => StatusCode::OK,
        s => s,
    };
    let location = resp.headers().get(header::LOCATION).cloned();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let new_body: Vec<u8> = if truncate {
        if body.len() > 2 {
            body[..body.len() / 2].to_vec()
        } else {
            br#"{"id": ""#.to_vec()
        }
    } else {
        b"<html><body>upstream error</body></html> {\"id\": }".to_vec()
    };
    let mut r = raw_response(status, new_body);
    if let Some(l) = location {
        r.headers_mut().insert(header::LOCATION, l);
    }
    r
}

/// A running in-process SCIM test server. Stops when dropped or on [`shutdown`](Self::shutdown).
pub struct TestServer {
    addr: SocketAddr,
    base_url: String,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl TestServer {
    /// Start on `127.0.0.1:0`. Needs a tokio runtime.
    pub async fn start(opts: ServerOptions) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the SCIM test server");
        Self::start_on(listener, opts).await
    }

    /// Start on a listener the caller bound.
    pub async fn start_on(listener: TcpListener, opts: ServerOptions) -> TestServer {
        Self::start_with(listener, opts, None).await
    }

    /// Start an HTTPS server on `127.0.0.1:0` (`https://127.0.0.1:PORT/scim/v2`); with
    /// [`TlsOptions::client_ca_pem`] the handshake requires a client certificate signed by it.
    pub async fn start_tls(opts: ServerOptions, tls: TlsOptions) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the SCIM test server");
        Self::start_with(listener, opts, Some(tls.acceptor())).await
    }

    async fn start_with(
        listener: TcpListener,
        opts: ServerOptions,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> TestServer {
        let addr = listener.local_addr().expect("listener has a local address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{addr}{BASE_PATH}");
        let shared = Arc::new(Shared {
            opts,
            base_url: base_url.clone(),
            data: Mutex::new(Data {
                users: Collection::new(Kind::User),
                groups: Collection::new(Kind::Group),
                version: 0,
            }),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            admitted: Mutex::new(VecDeque::new()),
            tls_failures: Mutex::new(Vec::new()),
            bulk_log: Mutex::new(Vec::new()),
        });
        let router = handlers::router(shared.clone());
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            shared.clone(),
            router,
            cancel.clone(),
            tracker.clone(),
            tls,
        ));
        TestServer {
            addr,
            base_url,
            shared,
            cancel,
            tracker,
        }
    }

    /// `http://127.0.0.1:PORT/scim/v2`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bearer token it expects (empty: none).
    pub fn token(&self) -> &str {
        &self.shared.opts.token
    }

    /// The options it runs with.
    pub fn options(&self) -> &ServerOptions {
        &self.shared.opts
    }

    /// Stop accepting, drop all connections and wait for the tasks to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Add a scripted fault. Rules are tried in the order added; the first match applies.
    pub fn script(&self, rule: FaultRule) {
        let remaining = rule.times;
        if remaining == Some(0) {
            return;
        }
        self.shared
            .faults
            .lock()
            .expect("faults lock")
            .push(ActiveRule { rule, remaining });
    }

    /// Remove all scripted faults.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().expect("faults lock").clear();
    }

    /// How many scripted faults still have uses left (forever rules count as one).
    pub fn pending_faults(&self) -> usize {
        self.shared.faults.lock().expect("faults lock").len()
    }

    /// Every request so far, in completion order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Forget recorded requests and reset the counter.
    pub fn clear_requests(&self) {
        self.shared.requests.lock().expect("requests lock").clear();
        self.shared.count.store(0, Ordering::Relaxed);
    }

    /// Why TLS handshakes failed so far, in order (HTTPS servers; e.g. a client that sent no
    /// certificate).
    pub fn tls_failures(&self) -> Vec<String> {
        self.shared.tls_failures.lock().expect("tls lock").clone()
    }

    /// Per bulk request served, the `(method, path, status)` of each of its operations.
    pub fn bulk_log(&self) -> Vec<Vec<(String, String, u16)>> {
        self.shared.bulk_log.lock().expect("bulk log lock").clone()
    }

    /// Requests received so far (including faulted and rejected ones).
    pub fn request_count(&self) -> u64 {
        self.shared.count.load(Ordering::Relaxed)
    }

    /// All users, in creation order.
    pub fn users(&self) -> Vec<Value> {
        self.shared.data.lock().expect("data lock").users.all()
    }

    /// All groups, in creation order.
    pub fn groups(&self) -> Vec<Value> {
        self.shared.data.lock().expect("data lock").groups.all()
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Option<Value> {
        self.shared
            .data
            .lock()
            .expect("data lock")
            .users
            .get(id)
            .cloned()
    }

    /// A group by id.
    pub fn group(&self, id: &str) -> Option<Value> {
        self.shared
            .data
            .lock()
            .expect("data lock")
            .groups
            .get(id)
            .cloned()
    }

    /// Seed a user (keeps a given `id`, else assigns one; replaces a user with the same id).
    /// Panics on a uniqueness conflict. Returns the stored resource.
    pub fn insert_user(&self, v: Value) -> Value {
        self.insert(Kind::User, v)
    }

    /// Seed a group; see [`insert_user`](Self::insert_user).
    pub fn insert_group(&self, v: Value) -> Value {
        self.insert(Kind::Group, v)
    }

    fn insert(&self, kind: Kind, v: Value) -> Value {
        let Value::Object(mut m) = v else {
            panic!(
                "insert_{}: resource must be a JSON object",
                kind.resource_type().to_lowercase()
            );
        };
        let id = match m.get("id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let mut data = self.shared.data.lock().expect("data lock");
        data.version += 1;
        let version = data.version;
        let created = m.get("meta").and_then(|x| x.get("created")).cloned();
        m.remove("meta");
        let stored = self
            .shared
            .prepare(kind, m, &id, created, version)
            .unwrap_or_else(|e| panic!("insert: {}", e.detail));
        let coll = data.coll(kind);
        if let Some(c) = coll.conflict(&stored, Some(&id)) {
            panic!("insert: {c}");
        }
        coll.put(stored.clone());
        stored
    }

    /// Delete all users and groups, recorded requests and scripted faults.
    pub fn clear(&self) {
        {
            let mut d = self.shared.data.lock().expect("data lock");
            d.users.clear();
            d.groups.clear();
        }
        self.clear_requests();
        self.clear_faults();
        self.shared.admitted.lock().expect("limiter lock").clear();
    }

    /// The highest rate (requests per second) seen in any `window`-long interval of arrivals.
    pub fn max_observed_rate(&self, window: Duration) -> f64 {
        self.max_observed_rate_where(window, |_| true)
    }

    /// Like [`max_observed_rate`](Self::max_observed_rate), counting only requests for which
    /// `pred` holds (e.g. `|r| r.status != 429`).
    pub fn max_observed_rate_where(
        &self,
        window: Duration,
        pred: impl Fn(&RecordedRequest) -> bool,
    ) -> f64 {
        let mut ats: Vec<Instant> = self
            .shared
            .requests
            .lock()
            .expect("requests lock")
            .iter()
            .filter(|r| pred(r))
            .map(|r| r.at)
            .collect();
        if ats.is_empty() || window.is_zero() {
            return 0.0;
        }
        ats.sort_unstable();
        let mut best = 0usize;
        let mut lo = 0usize;
        for hi in 0..ats.len() {
            while ats[hi].duration_since(ats[lo]) >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best as f64 / window.as_secs_f64()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    router: Router,
    cancel: CancellationToken,
    tracker: TaskTracker,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "scim test server: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let router = router.clone();
        let cancel = cancel.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            match tls {
                None => serve(stream, shared, router, cancel).await,
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        _ = cancel.cancelled() => return,
                        h = acceptor.accept(stream) => h,
                    };
                    match handshake {
                        Ok(stream) => serve(stream, shared, router, cancel).await,
                        Err(e) => shared
                            .tls_failures
                            .lock()
                            .expect("tls lock")
                            .push(e.to_string()),
                    }
                }
            }
        });
    }
}

/// HTTP/1.1 on one connection (plain or TLS).
async fn serve<S>(stream: S, shared: Arc<Shared>, router: Router, cancel: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let kill = Arc::new(Notify::new());
    let k = kill.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let fut = shared.clone().handle(router.clone(), k.clone(), req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {}
        _ = cancel.cancelled() => {}
    }
}
