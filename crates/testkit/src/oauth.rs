//! An OAuth2 token endpoint for the client credentials grant (RFC 6749 §4.4), on loopback.
//!
//! It checks the client id and secret (HTTP Basic with form-encoded values, RFC 6749 §2.3.1, or
//! `client_id`/`client_secret` in the body), issues unique short-lived bearer tokens, records every
//! request (never the secret), and can be scripted to fail. [`TokenEndpoint::check`] is a
//! [`TokenCheck`] for the SCIM test server that accepts exactly the tokens issued here that have
//! not expired and were not revoked — so a client that keeps using an old token is refused.
//! Lifetimes run on tokio's clock, so a test on a paused clock can expire tokens with `advance`.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::TokenCheck;

/// The path the endpoint answers on.
pub const TOKEN_PATH: &str = "/oauth2/token";

/// What `expires_in` says about an issued token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiresIn {
    /// The real lifetime, in whole seconds.
    #[default]
    Truthful,
    /// A claim that differs from the real lifetime (e.g. longer: the client learns of expiry
    /// only from a 401).
    Claim(u64),
    /// No `expires_in` in the response.
    Omitted,
}

/// How the endpoint behaves.
#[derive(Debug, Clone)]
pub struct TokenEndpointOptions {
    pub client_id: String,
    pub client_secret: String,
    /// How long an issued token is accepted by [`TokenEndpoint::check`].
    pub lifetime: Duration,
    pub expires_in: ExpiresIn,
}

impl Default for TokenEndpointOptions {
    fn default() -> Self {
        TokenEndpointOptions {
            client_id: "scimflow-test".into(),
            client_secret: "test-client-secret".into(),
            lifetime: Duration::from_secs(3600),
            expires_in: ExpiresIn::Truthful,
        }
    }
}

/// One token request as the endpoint saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    pub at: Instant,
    /// The status answered.
    pub status: u16,
    /// `basic`, `body`, or `none` (no client credentials at all).
    pub client_auth: &'static str,
    /// The form fields, except `client_secret`.
    pub form: BTreeMap<String, String>,
}

struct Issued {
    token: String,
    expires: Instant,
    revoked: bool,
}

struct Shared {
    opts: TokenEndpointOptions,
    issued: Mutex<Vec<Issued>>,
    requests: Mutex<Vec<TokenRequest>>,
    /// Scripted answers for the next requests: (status, `error` code).
    faults: Mutex<VecDeque<(u16, String)>>,
}

/// A running token endpoint. Stops when dropped.
pub struct TokenEndpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl TokenEndpoint {
    /// Starts on `127.0.0.1:0`. Needs a tokio runtime.
    pub async fn start(opts: TokenEndpointOptions) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the token endpoint");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            opts,
            issued: Mutex::default(),
            requests: Mutex::default(),
            faults: Mutex::default(),
        });
        let app = Router::new().route(
            TOKEN_PATH,
            post({
                let shared = shared.clone();
                move |headers: HeaderMap, body: Bytes| {
                    let shared = shared.clone();
                    async move { shared.token(&headers, &body) }
                }
            }),
        );
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        TokenEndpoint {
            addr,
            shared,
            cancel,
        }
    }

    /// `http://127.0.0.1:PORT/oauth2/token`.
    pub fn url(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.addr)
    }

    /// The options it runs with.
    pub fn options(&self) -> &TokenEndpointOptions {
        &self.shared.opts
    }

    /// Every token request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// How many token requests were answered with a token.
    pub fn tokens_issued(&self) -> usize {
        self.shared.issued.lock().expect("issued lock").len()
    }

    /// Every access token issued so far (to check that none leaked into logs).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared
            .issued
            .lock()
            .expect("issued lock")
            .iter()
            .map(|i| i.token.clone())
            .collect()
    }

    /// Whether `token` was issued here, has not expired and was not revoked.
    pub fn is_valid(&self, token: &str) -> bool {
        self.shared.is_valid(token)
    }

    /// A check for [`crate::ServerOptions::token_check`]: [`is_valid`](Self::is_valid).
    pub fn check(&self) -> TokenCheck {
        let shared = self.shared.clone();
        TokenCheck(Arc::new(move |t: &str| shared.is_valid(t)))
    }

    /// Revokes every token issued so far (they stop passing [`check`](Self::check)).
    pub fn revoke_all(&self) {
        for i in self.shared.issued.lock().expect("issued lock").iter_mut() {
            i.revoked = true;
        }
    }

    /// The next `n` requests are answered `status` with the RFC 6749 §5.2 `error` code.
    pub fn fail_next(&self, n: usize, status: u16, error: &str) {
        let mut f = self.shared.faults.lock().expect("faults lock");
        for _ in 0..n {
            f.push_back((status, error.to_owned()));
        }
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl Shared {
    fn is_valid(&self, token: &str) -> bool {
        let now = Instant::now();
        self.issued
            .lock()
            .expect("issued lock")
            .iter()
            .any(|i| i.token == token && !i.revoked && now < i.expires)
    }

    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let mut form: BTreeMap<String, String> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (id, secret) = s.split_once(':')?;
                let dec = |x: &str| {
                    url::form_urlencoded::parse(format!("v={x}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                };
                Some((dec(id)?, dec(secret)?))
            });
        let body_secret = form.remove("client_secret");
        let (client_auth, creds) = match (basic, form.get("client_id"), body_secret) {
            (Some(c), _, None) => ("basic", Some(c)),
            (None, Some(id), Some(secret)) => ("body", Some((id.clone(), secret))),
            (None, _, None) => ("none", None),
            // RFC 6749 §2.3: at most one method per request.
            _ => ("both", None),
        };
        let record = |status: StatusCode| {
            self.requests
                .lock()
                .expect("requests lock")
                .push(TokenRequest {
                    at: Instant::now(),
                    status: status.as_u16(),
                    client_auth,
                    form: form.clone(),
                });
        };
        let scripted = self.faults.lock().expect("faults lock").pop_front();
        if let Some((status, error)) = scripted {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            record(status);
            return oauth_error(status, &error, "scripted failure");
        }
        let ok = creds.as_ref().is_some_and(|(id, secret)| {
            *id == self.opts.client_id && *secret == self.opts.client_secret
        });
        if !ok {
            record(StatusCode::UNAUTHORIZED);
            let mut r = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token\""),
            );
            return r;
        }
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            record(StatusCode::BAD_REQUEST);
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials",
            );
        }
        let mut issued = self.issued.lock().expect("issued lock");
        let token = format!("at-{}-{}", issued.len() + 1, uuid::Uuid::new_v4().simple());
        issued.push(Issued {
            token: token.clone(),
            expires: Instant::now() + self.opts.lifetime,
            revoked: false,
        });
        drop(issued);
        record(StatusCode::OK);
        let mut body = json!({"access_token": token, "token_type": "Bearer"});
        match self.opts.expires_in {
            ExpiresIn::Truthful => body["expires_in"] = json!(self.opts.lifetime.as_secs()),
            ExpiresIn::Claim(s) => body["expires_in"] = json!(s),
            ExpiresIn::Omitted => {}
        }
        if let Some(s) = form.get("scope") {
            body["scope"] = json!(s);
        }
        let mut r = axum::Json(body).into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}
