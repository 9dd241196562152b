//! Target credentials: what goes into the `Authorization` header of a SCIM request.
//!
//! * `none` — nothing.
//! * `bearer` — a static token, read from its reference on every request (a rotated file takes
//!   effect without a restart).
//! * `oauth2` — the client credentials grant (RFC 6749 §4.4). A [`TokenSource`] caches the access
//!   token and refreshes it before it expires ([`refresh_lead`]); **one** refresh runs at a time
//!   however many workers ask, and the workers that wait for it share its result (success or
//!   failure). A token the target refused (401) is forgotten, so the client refreshes and replays
//!   the request once ([`Credentials::refused`]); a second 401 is an auth failure as with bearer.
//!
//! The token request is a [`FetchToken`] (the real one: [`HttpTokenFetcher`]) and time is tokio's
//! clock, so the cache, single flight and refresh timing are tested on a paused clock with a
//! scripted fetcher.
//!
//! Invariants: the client secret and access tokens never appear in an error, a log line or `Debug`
//! output (tokens live in [`Secret`]s and sensitive [`HeaderValue`]s; token endpoint error text is
//! scrubbed of the secret); the client secret is re-read from its reference on every token request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, ACCEPT, RETRY_AFTER};
use serde_json::Value;
use tokio::time::Instant;

use scimflow_config::{ClientAuthStyle, OAuth2Config, Secret, SecretRef, TargetAuth};
use scimflow_core::ErrorClass;

use crate::classify::parse_retry_after;
use crate::client::{describe, CallError};

/// Assumed lifetime of an access token whose response has no (usable) `expires_in`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Longest lifetime believed: a token is refreshed at least about once a day.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// After a failed token request, callers get its error (without a new request) for this long, or
/// for the endpoint's `Retry-After` (at most [`MAX_FAILURE_HOLD`]).
pub const FAILURE_HOLD: Duration = Duration::from_secs(1);
pub const MAX_FAILURE_HOLD: Duration = Duration::from_secs(60);
/// Largest token endpoint response read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// How long before expiry a token of `lifetime` is refreshed: 10% of its lifetime or 60 s,
/// whichever is earlier — but never more than half of it (a 10 s token is refreshed after 5 s,
/// not on every request). 3600 s → 360 s before; 300 s → 60 s before; 10 s → 5 s before.
pub fn refresh_lead(lifetime: Duration) -> Duration {
    (lifetime / 10).max(Duration::from_secs(60).min(lifetime / 2))
}

/// What the token endpoint issued.
#[derive(Clone)]
pub struct IssuedToken {
    pub access_token: Secret,
    /// `expires_in`; `None` when the response did not say.
    pub expires_in: Option<Duration>,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &self.access_token)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The future of one token request.
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<IssuedToken, CallError>> + Send + 'a>>;

/// One token request. Errors carry the class that drives retries (`retryable` / `rate_limited`
/// for a token endpoint that is down or throttling, `auth` for refused credentials) and must not
/// contain the secret.
pub trait FetchToken: Send + Sync + 'static {
    fn fetch(&self) -> FetchFuture<'_>;
}

/// Any `Fn() -> impl Future<Output = Result<IssuedToken, CallError>>` is a fetcher (tests).
impl<F, Fut> FetchToken for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<IssuedToken, CallError>> + Send + 'static,
{
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self())
    }
}

/// A token in hand, ready for the `Authorization` header.
#[derive(Clone)]
pub struct Lease {
    /// Which issued token this is (0 for a static bearer token).
    id: u64,
    header: HeaderValue,
}

impl Lease {
    /// The `Authorization` header value (`Bearer …`, marked sensitive).
    pub fn header(&self) -> &HeaderValue {
        &self.header
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lease(#{}, ***)", self.id)
    }
}

fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn auth_error(detail: String) -> CallError {
    CallError {
        class: ErrorClass::Auth,
        status: None,
        scim_type: None,
        detail,
        retry_after: None,
    }
}

struct Cached {
    lease: Lease,
    /// From here on a caller refreshes it.
    refresh_at: Instant,
    /// Until here it may still be sent while a refresh runs or after a refresh failed.
    expires_at: Instant,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// Ids of issued tokens.
    issued: u64,
    /// Token requests finished (either way).
    flights: u64,
    /// The last request's error, and until when it is answered without a new request.
    failure: Option<(CallError, Instant)>,
}

impl State {
    /// The current token if it has not expired at `now`.
    fn unexpired(&self, now: Instant) -> Option<Lease> {
        self.current
            .as_ref()
            .filter(|c| now < c.expires_at)
            .map(|c| c.lease.clone())
    }
}

/// Access tokens for one target: cached, refreshed before expiry, one request at a time.
pub struct TokenSource {
    fetcher: Box<dyn FetchToken>,
    state: Mutex<State>,
    /// Held by the one caller whose token request is in flight; the others wait on it.
    flight: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
    /// For log lines: the target's name.
    target: String,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("target", &self.target)
            .field("fetches", &self.fetches())
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(target: impl Into<String>, fetcher: impl FetchToken) -> Self {
        TokenSource {
            fetcher: Box::new(fetcher),
            state: Mutex::default(),
            flight: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            target: target.into(),
        }
    }

    /// Token requests made so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A token to send now: the cached one while it is fresh, else the result of a refresh
    /// (started by this caller, or the one in flight).
    pub async fn token(&self) -> Result<Lease, CallError> {
        let now = Instant::now();
        let seen = {
            let st = self.state();
            if let Some(c) = st.current.as_ref().filter(|c| now < c.refresh_at) {
                return Ok(c.lease.clone());
            }
            if let Some((e, until)) = &st.failure {
                if now < *until {
                    return st.unexpired(now).ok_or_else(|| e.clone());
                }
            }
            st.flights
        };
        let _flight = match self.flight.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // A refresh is running: a token that has not expired serves meanwhile.
                if let Some(l) = self.state().unexpired(now) {
                    return Ok(l);
                }
                self.flight.lock().await
            }
        };
        if self.state().flights != seen {
            // A request finished while this caller waited: its result is this caller's too.
            let st = self.state();
            let now = Instant::now();
            if let Some(c) = st.current.as_ref().filter(|c| now < c.refresh_at) {
                return Ok(c.lease.clone());
            }
            if let Some((e, _)) = &st.failure {
                return st.unexpired(now).ok_or_else(|| e.clone());
            }
        }
        let started = Instant::now();
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetcher.fetch().await.and_then(|t| {
            let header = bearer_header(t.access_token.expose()).ok_or_else(|| {
                auth_error(
                    "the oauth2 token endpoint issued an access token that is not a valid header value"
                        .into(),
                )
            })?;
            Ok((header, t.expires_in))
        });
        let mut st = self.state();
        st.flights += 1;
        match result {
            Ok((header, expires_in)) => {
                let lifetime = expires_in
                    .filter(|d| !d.is_zero())
                    .unwrap_or(DEFAULT_TOKEN_LIFETIME)
                    .min(MAX_TOKEN_LIFETIME);
                st.issued += 1;
                let lease = Lease {
                    id: st.issued,
                    header,
                };
                // Lifetimes count from when the request was sent: the endpoint's clock started no
                // earlier.
                st.current = Some(Cached {
                    lease: lease.clone(),
                    refresh_at: started + lifetime - refresh_lead(lifetime),
                    expires_at: started + lifetime,
                });
                st.failure = None;
                tracing::info!(
                    target_name = %self.target,
                    expires_in_s = expires_in.map(|d| d.as_secs()),
                    refresh_in_s = (lifetime - refresh_lead(lifetime)).as_secs(),
                    "oauth2 access token obtained"
                );
                Ok(lease)
            }
            Err(e) => {
                let hold = e
                    .retry_after
                    .unwrap_or(FAILURE_HOLD)
                    .clamp(FAILURE_HOLD, MAX_FAILURE_HOLD);
                st.failure = Some((e.clone(), Instant::now() + hold));
                match st.unexpired(Instant::now()) {
                    Some(l) => {
                        tracing::warn!(target_name = %self.target, class = e.class.as_str(), error = %e, "oauth2 token refresh failed; the current token is used until it expires");
                        Ok(l)
                    }
                    None => {
                        tracing::warn!(target_name = %self.target, class = e.class.as_str(), error = %e, "oauth2 token request failed");
                        Err(e)
                    }
                }
            }
        }
    }

    /// The target refused `lease` (401): forget it unless it was already replaced, so that the
    /// next [`token`](Self::token) call refreshes — once, however many requests saw the 401.
    pub fn invalidate(&self, lease: &Lease) {
        let mut st = self.state();
        if st.current.as_ref().is_some_and(|c| c.lease.id == lease.id) {
            st.current = None;
            // A refused token is no reason to keep answering an older failure.
            st.failure = None;
            tracing::info!(target_name = %self.target, "the target refused the access token (401); refreshing it");
        }
    }
}

/// A target's credentials, as the client uses them.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    Bearer(SecretRef),
    OAuth2(Arc<TokenSource>),
}

impl Credentials {
    /// The credentials of `auth`; `http` is the client for the token endpoint.
    pub fn new(target: &str, auth: &TargetAuth, http: reqwest::Client, timeout: Duration) -> Self {
        match auth {
            TargetAuth::None => Credentials::None,
            TargetAuth::Bearer(r) => Credentials::Bearer(r.clone()),
            TargetAuth::OAuth2(c) => Credentials::OAuth2(Arc::new(TokenSource::new(
                target,
                HttpTokenFetcher {
                    http,
                    config: c.clone(),
                    timeout,
                },
            ))),
        }
    }

    /// The token source, for `oauth2` credentials.
    pub fn token_source(&self) -> Option<&Arc<TokenSource>> {
        match self {
            Credentials::OAuth2(s) => Some(s),
            _ => None,
        }
    }

    /// The `Authorization` value for the next request (`None`: send none).
    pub async fn authorize(&self) -> Result<Option<Lease>, CallError> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Bearer(r) => {
                let token = r.resolve().map_err(|e| auth_error(e.to_string()))?;
                let header = bearer_header(token.expose()).ok_or_else(|| {
                    auth_error(format!(
                        "the bearer token from {r} contains characters not allowed in a header"
                    ))
                })?;
                Ok(Some(Lease { id: 0, header }))
            }
            Credentials::OAuth2(s) => s.token().await.map(Some),
        }
    }

    /// The target answered 401 to a request sent with `lease`. Returns whether to replay it with
    /// a new token (`oauth2`: yes, once — the caller keeps count); a static token is not retried.
    pub fn refused(&self, lease: &Lease) -> bool {
        match self {
            Credentials::OAuth2(s) => {
                s.invalidate(lease);
                true
            }
            _ => false,
        }
    }
}

/// The real token request: `POST token_url` with `grant_type=client_credentials` (RFC 6749 §4.4.2).
pub struct HttpTokenFetcher {
    pub http: reqwest::Client,
    pub config: OAuth2Config,
    pub timeout: Duration,
}

impl FetchToken for HttpTokenFetcher {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.request())
    }
}

/// `application/x-www-form-urlencoded` of one value (RFC 6749 §2.3.1 applies it to the client id
/// and secret before HTTP Basic).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl HttpTokenFetcher {
    async fn request(&self) -> Result<IssuedToken, CallError> {
        let c = &self.config;
        let secret = c
            .client_secret
            .resolve()
            .map_err(|e| auth_error(format!("oauth2 client secret: {e}")))?;
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(s) = &c.scope {
            form.push(("scope", s));
        }
        if let Some(a) = &c.audience {
            form.push(("audience", a));
        }
        let mut req = self
            .http
            .post(&c.token_url)
            .timeout(self.timeout)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        match c.auth_style {
            // reqwest marks the header sensitive.
            ClientAuthStyle::Basic => {
                req = req.basic_auth(
                    form_encode(&c.client_id),
                    Some(form_encode(secret.expose())),
                )
            }
            ClientAuthStyle::Body => {
                form.push(("client_id", &c.client_id));
                form.push(("client_secret", secret.expose()));
            }
        }
        let mut resp = req.form(&form).send().await.map_err(|e| CallError {
            class: ErrorClass::Retryable,
            status: None,
            scim_type: None,
            detail: format!("oauth2 token request failed: {}", describe(&e)),
            retry_after: None,
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_TOKEN_RESPONSE_BYTES => {
                    bytes.extend_from_slice(&chunk)
                }
                Ok(Some(_)) => {
                    return Err(CallError {
                        class: ErrorClass::Retryable,
                        status: None,
                        scim_type: None,
                        detail: format!(
                            "oauth2 token endpoint answered {status} with more than {MAX_TOKEN_RESPONSE_BYTES} bytes"
                        ),
                        retry_after: None,
                    })
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(CallError {
                        class: ErrorClass::Retryable,
                        status: None,
                        scim_type: None,
                        detail: format!(
                            "reading the oauth2 token response failed: {}",
                            describe(&e)
                        ),
                        retry_after: None,
                    })
                }
            }
        }
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            return token_response(body.as_ref());
        }
        let (class, why) = match status {
            429 => (ErrorClass::RateLimited, "is throttling token requests"),
            408 | 500..=599 => (ErrorClass::Retryable, "is failing"),
            300..=399 => (
                ErrorClass::Auth,
                "answered a redirect, which is not followed — check token_url",
            ),
            _ => (ErrorClass::Auth, "refused the client credentials"),
        };
        let mut detail = format!("oauth2 token endpoint answered {status}: it {why}");
        if let Some(b) = &body {
            if let Some(code) = b.get("error").and_then(Value::as_str) {
                detail.push_str(&format!(" (error {})", printable(code, 64)));
            }
            if let Some(desc) = b.get("error_description").and_then(Value::as_str) {
                detail.push_str(&format!(": {}", printable(desc, 256)));
            }
        }
        // The endpoint's own words could repeat what it was sent.
        let detail = detail.replace(secret.expose(), "***");
        Err(CallError {
            class,
            status: None,
            scim_type: None,
            detail,
            retry_after,
        })
    }
}

/// A successful token response (RFC 6749 §5.1).
fn token_response(body: Option<&Value>) -> Result<IssuedToken, CallError> {
    let malformed = |what: &str| CallError {
        class: ErrorClass::Retryable,
        status: None,
        scim_type: None,
        detail: format!("oauth2 token endpoint answered 200 {what}"),
        retry_after: None,
    };
    let body = body.ok_or_else(|| malformed("without a JSON body"))?;
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| malformed("without an access_token"))?;
    if let Some(kind) = body.get("token_type").and_then(Value::as_str) {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(auth_error(format!(
                "the oauth2 token endpoint issued a `{}` token; only bearer tokens are supported",
                printable(kind, 32)
            )));
        }
    }
    // A number, or (some servers) a numeric string; anything else counts as absent.
    let expires_in = match body.get("expires_in") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s > 0.0)
    .map(|s| Duration::from_secs_f64(s.min(MAX_TOKEN_LIFETIME.as_secs_f64())));
    Ok(IssuedToken {
        access_token: Secret::new(token),
        expires_in,
    })
}

/// At most `max` characters of `s`, control characters dropped.
fn printable(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().filter(|c| !c.is_control()).count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// A scripted token endpoint: each call takes the next answer (after `delay`), counting calls.
    #[derive(Clone, Default)]
    struct Script {
        answers: Arc<Mutex<VecDeque<Result<IssuedToken, CallError>>>>,
        calls: Arc<AtomicU32>,
        delay: Duration,
    }

    impl Script {
        fn new(delay: Duration) -> Self {
            Script {
                delay,
                ..Default::default()
            }
        }
        fn ok(&self, token: &str, expires_in: Option<u64>) -> &Self {
            self.answers.lock().unwrap().push_back(Ok(IssuedToken {
                access_token: Secret::new(token),
                expires_in: expires_in.map(Duration::from_secs),
            }));
            self
        }
        fn fail(&self, class: ErrorClass) -> &Self {
            self.answers.lock().unwrap().push_back(Err(CallError {
                class,
                status: None,
                scim_type: None,
                detail: "oauth2 token endpoint answered 503: it is failing".into(),
                retry_after: None,
            }));
            self
        }
        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
        fn source(&self) -> Arc<TokenSource> {
            let s = self.clone();
            Arc::new(TokenSource::new("t", move || {
                let s = s.clone();
                async move {
                    s.calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(s.delay).await;
                    s.answers
                        .lock()
                        .unwrap()
                        .pop_front()
                        .expect("an unscripted token request")
                }
            }))
        }
    }

    fn value(l: &Lease) -> String {
        l.header().to_str().unwrap().to_owned()
    }

    #[test]
    fn the_refresh_lead_is_the_earlier_of_ten_percent_and_a_minute_but_at_most_half() {
        assert_eq!(
            refresh_lead(Duration::from_secs(3600)),
            Duration::from_secs(360)
        );
        assert_eq!(
            refresh_lead(Duration::from_secs(300)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_lead(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_lead(Duration::from_secs(10)),
            Duration::from_secs(5)
        );
        assert_eq!(
            refresh_lead(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_reused_while_fresh_and_refreshed_before_it_expires() {
        let script = Script::new(Duration::ZERO);
        script.ok("tok-1", Some(300)).ok("tok-2", Some(300));
        let src = script.source();
        assert_eq!(value(&src.token().await.unwrap()), "Bearer tok-1");
        // Fresh for 240 s (300 s minus the 60 s lead): no new request.
        tokio::time::advance(Duration::from_secs(239)).await;
        for _ in 0..10 {
            assert_eq!(value(&src.token().await.unwrap()), "Bearer tok-1");
        }
        assert_eq!(script.calls(), 1);
        // Past the refresh point but before expiry: refreshed.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(value(&src.token().await.unwrap()), "Bearer tok-2");
        assert_eq!(script.calls(), 2);
        assert_eq!(src.fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn without_expires_in_a_token_lives_the_default_lifetime() {
        let script = Script::new(Duration::ZERO);
        script.ok("a", None).ok("b", None);
        let src = script.source();
        src.token().await.unwrap();
        let fresh = DEFAULT_TOKEN_LIFETIME - refresh_lead(DEFAULT_TOKEN_LIFETIME);
        tokio::time::advance(fresh - Duration::from_secs(1)).await;
        assert_eq!(value(&src.token().await.unwrap()), "Bearer a");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(value(&src.token().await.unwrap()), "Bearer b");
        assert_eq!(script.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn fifty_concurrent_callers_share_one_token_request() {
        let script = Script::new(Duration::from_millis(200));
        script.ok("shared", Some(3600));
        let src = script.source();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let src = src.clone();
                tokio::spawn(async move { src.token().await.map(|l| value(&l)) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "Bearer shared");
        }
        assert_eq!(script.calls(), 1);
        assert_eq!(src.fetches(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn while_a_refresh_runs_the_unexpired_token_serves_the_other_callers() {
        let script = Script::new(Duration::from_secs(2));
        script.ok("old", Some(100)).ok("new", Some(100));
        let src = script.source();
        src.token().await.unwrap();
        // 100 s token: refreshed 50 s before expiry.
        tokio::time::advance(Duration::from_secs(60)).await;
        let refresher = tokio::spawn({
            let src = src.clone();
            async move { value(&src.token().await.unwrap()) }
        });
        tokio::task::yield_now().await;
        // The refresh is in flight (its request takes 2 s): others get the old token at once.
        assert_eq!(value(&src.token().await.unwrap()), "Bearer old");
        assert_eq!(refresher.await.unwrap(), "Bearer new");
        assert_eq!(value(&src.token().await.unwrap()), "Bearer new");
        assert_eq!(script.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_request_is_shared_held_briefly_and_then_retried() {
        let script = Script::new(Duration::from_millis(100));
        script
            .fail(ErrorClass::Retryable)
            .ok("recovered", Some(3600));
        let src = script.source();
        // Ten callers wait for the one failing request and all get its error.
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let src = src.clone();
                tokio::spawn(async move { src.token().await })
            })
            .collect();
        for t in tasks {
            let e = t.await.unwrap().unwrap_err();
            assert_eq!(e.class, ErrorClass::Retryable);
            assert!(e.detail.contains("503"), "{e}");
        }
        assert_eq!(script.calls(), 1);
        // Within the hold, no new request: the same error.
        assert!(src.token().await.is_err());
        assert_eq!(script.calls(), 1);
        // After it, the next caller asks again and the endpoint has recovered.
        tokio::time::advance(FAILURE_HOLD).await;
        assert_eq!(value(&src.token().await.unwrap()), "Bearer recovered");
        assert_eq!(script.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_unexpired_token_in_use() {
        let script = Script::new(Duration::ZERO);
        script
            .ok("first", Some(100))
            .fail(ErrorClass::Retryable)
            .ok("second", Some(100));
        let src = script.source();
        src.token().await.unwrap();
        tokio::time::advance(Duration::from_secs(60)).await;
        // The refresh fails, but the token is valid for 40 s more: it is still used.
        assert_eq!(value(&src.token().await.unwrap()), "Bearer first");
        assert_eq!(script.calls(), 2);
        tokio::time::advance(FAILURE_HOLD).await;
        assert_eq!(value(&src.token().await.unwrap()), "Bearer second");
        assert_eq!(script.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_token_is_refreshed_once_however_many_requests_saw_the_401() {
        let script = Script::new(Duration::from_millis(50));
        script.ok("revoked", Some(3600)).ok("fresh", Some(3600));
        let src = script.source();
        let creds = Credentials::OAuth2(src.clone());
        let leases: Vec<Lease> = futures::future::join_all((0..20).map(|_| creds.authorize()))
            .await
            .into_iter()
            .map(|l| l.unwrap().unwrap())
            .collect();
        assert_eq!(script.calls(), 1);
        // Twenty requests with the same token are all answered 401.
        let replays = futures::future::join_all(leases.iter().map(|l| {
            let creds = creds.clone();
            async move {
                assert!(creds.refused(l), "oauth2 replays after a 401");
                creds.authorize().await.unwrap().unwrap()
            }
        }))
        .await;
        assert!(replays.iter().all(|l| value(l) == "Bearer fresh"));
        assert_eq!(script.calls(), 2);
        // A late 401 for the old token does not throw the new one away.
        creds.refused(&leases[0]);
        assert_eq!(
            value(&creds.authorize().await.unwrap().unwrap()),
            "Bearer fresh"
        );
        assert_eq!(script.calls(), 2);
    }

    #[tokio::test]
    async fn a_static_bearer_token_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "static\n").unwrap();
        let creds = Credentials::Bearer(SecretRef::File(f));
        let l = creds.authorize().await.unwrap().unwrap();
        assert_eq!(value(&l), "Bearer static");
        assert!(l.header().is_sensitive());
        assert!(!creds.refused(&l));
        assert!(Credentials::None.authorize().await.unwrap().is_none());
    }

    #[test]
    fn token_responses_are_parsed_leniently_and_checked() {
        let t = token_response(Some(&serde_json::json!({
            "access_token": "abc", "token_type": "bearer", "expires_in": "3600"
        })))
        .unwrap();
        assert_eq!(t.access_token.expose(), "abc");
        assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
        let t = token_response(Some(
            &serde_json::json!({"access_token": "abc", "expires_in": 0}),
        ))
        .unwrap();
        assert_eq!(t.expires_in, None);
        let e = token_response(Some(&serde_json::json!({"token_type": "Bearer"}))).unwrap_err();
        assert_eq!(e.class, ErrorClass::Retryable);
        let e = token_response(Some(
            &serde_json::json!({"access_token": "abc", "token_type": "DPoP"}),
        ))
        .unwrap_err();
        assert_eq!(e.class, ErrorClass::Auth);
        assert!(!e.detail.contains("abc"), "{e}");
        assert!(!format!("{t:?}").contains("abc"));
    }
}
