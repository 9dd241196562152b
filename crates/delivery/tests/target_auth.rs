//! Target authentication through the real `ScimClient`, against the testkit SCIM server and the
//! testkit OAuth2 token endpoint (both in the test's runtime, on loopback): OAuth2 client
//! credentials (both client authentication styles, refresh before expiry on a paused clock, one
//! token request for many concurrent requests, refresh-and-replay once on a 401, token endpoint
//! failures classified without the secret), and mTLS with a private CA.

use std::path::Path;
use std::time::Duration;

use futures::future::join_all;
use reqwest::Method;

use scimflow_config::TargetConfig;
use scimflow_core::ErrorClass;
use scimflow_delivery::client::ScimClient;
use scimflow_testkit::oauth::{ExpiresIn, TokenEndpoint, TokenEndpointOptions};
use scimflow_testkit::pki::TestPki;
use scimflow_testkit::{FaultRule, ServerOptions, TestServer};

const SECRET: &str = "s3cret:with/special&chars";

/// A target on `base_url` with `extra` YAML lines (indented as target keys).
fn target(base_url: &str, extra: &str) -> TargetConfig {
    let yaml = format!(
        "version: 1\ntargets:\n  app:\n    base_url: {base_url}\n    allow_http: true\n    max_attempts: 1\n{extra}    lifecycle:\n      hr.worker.hired: upsert\n    user:\n      externalId: event.subject\n      userName: event.subject\n"
    );
    scimflow_config::load_str(&yaml, "c.yaml", &|_| None)
        .expect("valid config")
        .targets
        .remove(0)
}

fn secret_file(dir: &Path, value: &str) -> std::path::PathBuf {
    let p = dir.join("client-secret");
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p
}

fn oauth2(endpoint: &TokenEndpoint, secret: &Path, style: &str) -> String {
    format!(
        "    auth:\n      type: oauth2\n      token_url: {}\n      client_id: {}\n      client_secret: {{ file: {} }}\n      scope: \"scim.read scim.write\"\n      audience: https://scim.example.com\n      auth_style: {style}\n",
        endpoint.url(),
        endpoint.options().client_id,
        secret.display()
    )
}

struct Setup {
    endpoint: TokenEndpoint,
    scim: TestServer,
    client: ScimClient,
    _dir: tempfile::TempDir,
}

async fn setup(opts: TokenEndpointOptions, style: &str) -> Setup {
    let endpoint = TokenEndpoint::start(TokenEndpointOptions {
        client_secret: SECRET.into(),
        ..opts
    })
    .await;
    let scim = TestServer::start(ServerOptions {
        token_check: Some(endpoint.check()),
        ..ServerOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), SECRET);
    let client =
        ScimClient::new(&target(scim.base_url(), &oauth2(&endpoint, &secret, style))).unwrap();
    Setup {
        endpoint,
        scim,
        client,
        _dir: dir,
    }
}

async fn list_users(c: &ScimClient) -> Result<u16, scimflow_delivery::client::CallError> {
    c.send(Method::GET, "/Users", &[], None, None)
        .await
        .map(|r| r.status)
}

fn statuses(s: &TestServer) -> Vec<u16> {
    s.requests().iter().map(|r| r.status).collect()
}

#[tokio::test(start_paused = true)]
async fn basic_and_body_client_authentication_obtain_a_token_the_target_accepts() {
    for style in ["basic", "body"] {
        let s = setup(TokenEndpointOptions::default(), style).await;
        assert_eq!(list_users(&s.client).await.unwrap(), 200, "{style}");
        let reqs = s.endpoint.requests();
        assert_eq!(reqs.len(), 1, "{style}: {reqs:?}");
        assert_eq!(reqs[0].client_auth, style);
        assert_eq!(reqs[0].status, 200);
        let form = &reqs[0].form;
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["scope"], "scim.read scim.write");
        assert_eq!(form["audience"], "https://scim.example.com");
        assert_eq!(statuses(&s.scim), vec![200]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_is_reused_until_its_refresh_point_then_refreshed_before_it_expires() {
    // 100 s tokens: fresh for 50 s (the lead is min(60 s, half the lifetime) here).
    let s = setup(
        TokenEndpointOptions {
            lifetime: Duration::from_secs(100),
            ..Default::default()
        },
        "basic",
    )
    .await;
    for _ in 0..5 {
        assert_eq!(list_users(&s.client).await.unwrap(), 200);
    }
    tokio::time::advance(Duration::from_secs(49)).await;
    assert_eq!(list_users(&s.client).await.unwrap(), 200);
    assert_eq!(s.endpoint.tokens_issued(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(list_users(&s.client).await.unwrap(), 200);
    assert_eq!(s.endpoint.tokens_issued(), 2);
    // Ten token lifetimes later (requests every 10 s): about one token per 50 s, and the target
    // never saw an expired token.
    for _ in 0..100 {
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(list_users(&s.client).await.unwrap(), 200);
    }
    assert_eq!(s.endpoint.tokens_issued(), 22);
    assert!(statuses(&s.scim).iter().all(|&x| x == 200));
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_requests_cause_one_token_request() {
    let s = setup(TokenEndpointOptions::default(), "basic").await;
    let results = join_all((0..50).map(|_| list_users(&s.client))).await;
    assert!(results.iter().all(|r| matches!(r, Ok(200))), "{results:?}");
    assert_eq!(s.endpoint.requests().len(), 1);
    assert_eq!(s.scim.requests().len(), 50);
}

#[tokio::test(start_paused = true)]
async fn a_401_refreshes_the_token_and_replays_the_request_once() {
    // The endpoint claims an hour, but revokes: the client learns of it from the target's 401.
    let s = setup(
        TokenEndpointOptions {
            expires_in: ExpiresIn::Claim(3600),
            ..Default::default()
        },
        "basic",
    )
    .await;
    assert_eq!(list_users(&s.client).await.unwrap(), 200);
    s.endpoint.revoke_all();
    let results = join_all((0..10).map(|_| list_users(&s.client))).await;
    assert!(results.iter().all(|r| matches!(r, Ok(200))), "{results:?}");
    // One refresh for all ten 401s; each request replayed once.
    assert_eq!(s.endpoint.tokens_issued(), 2);
    let st = statuses(&s.scim);
    assert_eq!(st.iter().filter(|&&x| x == 401).count(), 10, "{st:?}");
    assert_eq!(st.iter().filter(|&&x| x == 200).count(), 11, "{st:?}");
}

#[tokio::test(start_paused = true)]
async fn a_second_401_is_an_auth_failure_without_a_third_request() {
    let s = setup(TokenEndpointOptions::default(), "body").await;
    s.scim.script(FaultRule::status(401).times(2));
    let e = list_users(&s.client).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Auth);
    assert_eq!(e.status, Some(401));
    assert_eq!(statuses(&s.scim), vec![401, 401]);
    assert_eq!(s.endpoint.tokens_issued(), 2);
    // The token from the refresh is kept: the next request needs no new one.
    assert_eq!(list_users(&s.client).await.unwrap(), 200);
    assert_eq!(s.endpoint.tokens_issued(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_static_bearer_token_gets_no_replay() {
    let scim = TestServer::start(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("t");
    std::fs::write(&tok, "test-token").unwrap();
    let auth = format!(
        "    auth: {{ type: bearer, token: {{ file: {} }} }}\n",
        tok.display()
    );
    let c = ScimClient::new(&target(scim.base_url(), &auth)).unwrap();
    assert_eq!(list_users(&c).await.unwrap(), 200);
    scim.script(FaultRule::status(401));
    let e = list_users(&c).await.unwrap_err();
    assert_eq!((e.class, e.status), (ErrorClass::Auth, Some(401)));
    assert_eq!(statuses(&scim), vec![200, 401]);
}

#[tokio::test(start_paused = true)]
async fn token_endpoint_failures_are_classified_and_never_show_the_secret() {
    let s = setup(TokenEndpointOptions::default(), "basic").await;
    for (status, error, class) in [
        (503, "temporarily_unavailable", ErrorClass::Retryable),
        (429, "slow_down", ErrorClass::RateLimited),
        (400, "invalid_client", ErrorClass::Auth),
        (401, "invalid_client", ErrorClass::Auth),
        (400, "invalid_scope", ErrorClass::Auth),
    ] {
        s.endpoint.fail_next(1, status, error);
        let e = list_users(&s.client).await.unwrap_err();
        assert_eq!(e.class, class, "{status}: {e}");
        assert_eq!(e.status, None, "the target was not asked: {e}");
        assert!(e.detail.contains(&format!("answered {status}")), "{e}");
        assert!(e.detail.contains(error), "{e}");
        assert!(!format!("{e} {e:?}").contains("s3cret"), "{e:?}");
        // The failure is held for a second (no request storm), then asked again.
        assert!(list_users(&s.client).await.is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(s.endpoint.requests().len(), 5);
    assert!(s.scim.requests().is_empty());
    // Recovery.
    assert_eq!(list_users(&s.client).await.unwrap(), 200);
    let leaked: Vec<String> = s.endpoint.issued_tokens();
    assert_eq!(leaked.len(), 1);
    assert!(!format!("{:?}", s.client).contains(&leaked[0]));
    assert!(!format!("{:?}", s.client).contains("s3cret"));
}

#[tokio::test(start_paused = true)]
async fn a_wrong_client_secret_is_an_auth_error_naming_no_secret() {
    let endpoint = TokenEndpoint::start(TokenEndpointOptions::default()).await;
    let scim = TestServer::start(ServerOptions {
        token_check: Some(endpoint.check()),
        ..ServerOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "wrong-secret-value");
    let c = ScimClient::new(&target(
        scim.base_url(),
        &oauth2(&endpoint, &secret, "basic"),
    ))
    .unwrap();
    let e = list_users(&c).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Auth);
    assert!(e.detail.contains("invalid_client"), "{e}");
    assert!(!e.detail.contains("wrong-secret-value"), "{e}");
    // An unreadable secret is an auth error naming the reference.
    std::fs::remove_file(&secret).unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    let e = list_users(&c).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Auth);
    assert!(e.detail.contains("client-secret"), "{e}");
    assert!(scim.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_token_endpoint_is_retryable() {
    let scim = TestServer::start(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), SECRET);
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let auth = format!(
        "    auth: {{ type: oauth2, token_url: \"http://127.0.0.1:{port}/token\", client_id: c, client_secret: {{ file: {} }} }}\n",
        secret.display()
    );
    let c = ScimClient::new(&target(scim.base_url(), &auth)).unwrap();
    let e = list_users(&c).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Retryable, "{e}");
    assert!(e.detail.contains("oauth2 token request failed"), "{e}");
}

// ----- mTLS ---------------------------------------------------------------------------------

fn tls_yaml(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> String {
    let mut s = String::from("    tls:\n");
    if let Some(ca) = ca {
        s.push_str(&format!("      ca: {{ file: {} }}\n", ca.display()));
    }
    if let Some((cert, key)) = client {
        s.push_str(&format!(
            "      client_cert: {{ file: {} }}\n      client_key: {{ file: {} }}\n",
            cert.display(),
            key.display()
        ));
    }
    s
}

#[tokio::test]
async fn mtls_with_a_private_ca_delivers_and_every_misconfiguration_is_named() {
    let pki = TestPki::generate("scimflow");
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write(dir.path());
    let scim = TestServer::start_tls(
        ServerOptions {
            token: String::new(),
            ..Default::default()
        },
        pki.server_tls(true),
    )
    .await;
    assert!(scim.base_url().starts_with("https://127.0.0.1:"));
    let client_pair = Some((files.client_cert.as_path(), files.client_key.as_path()));

    // Client certificate and the CA: delivered.
    let c = ScimClient::new(&target(
        scim.base_url(),
        &tls_yaml(Some(&files.ca), client_pair),
    ))
    .unwrap();
    assert_eq!(list_users(&c).await.unwrap(), 200);
    assert_eq!(scim.requests().len(), 1);

    // No client certificate: the handshake is refused; a retryable transport error that says so.
    let c = ScimClient::new(&target(scim.base_url(), &tls_yaml(Some(&files.ca), None))).unwrap();
    let e = list_users(&c).await.unwrap_err();
    eprintln!("without a client certificate: {e}");
    assert_eq!((e.class, e.status), (ErrorClass::Retryable, None), "{e}");
    assert!(
        e.detail.contains("requires a client certificate"),
        "{}",
        e.detail
    );
    assert_eq!(scim.requests().len(), 1, "nothing reached the handler");
    assert!(!scim.tls_failures().is_empty());

    // A CA that did not sign the server's certificate: verification fails.
    let other = TestPki::generate("other");
    let other_dir = tempfile::tempdir().unwrap();
    let other_files = other.write(other_dir.path());
    let c = ScimClient::new(&target(
        scim.base_url(),
        &tls_yaml(Some(&other_files.ca), client_pair),
    ))
    .unwrap();
    let e = list_users(&c).await.unwrap_err();
    eprintln!("with another CA: {e}");
    assert!(e.detail.contains("UnknownIssuer"), "{}", e.detail);
    assert!(e.detail.contains("set tls.ca"), "{}", e.detail);

    // No `ca`: the built-in web roots do not know the private CA either.
    let c = ScimClient::new(&target(scim.base_url(), &tls_yaml(None, client_pair))).unwrap();
    let e = list_users(&c).await.unwrap_err();
    assert!(e.detail.contains("UnknownIssuer"), "{}", e.detail);

    // A client certificate from another CA: the server refuses it.
    let c = ScimClient::new(&target(
        scim.base_url(),
        &tls_yaml(
            Some(&files.ca),
            Some((&other_files.client_cert, &other_files.client_key)),
        ),
    ))
    .unwrap();
    let e = list_users(&c).await.unwrap_err();
    eprintln!("with a client certificate of another CA: {e}");
    assert!(
        e.detail.contains("refused the client certificate"),
        "{}",
        e.detail
    );
    assert_eq!(scim.requests().len(), 1);
}

#[test]
fn unusable_tls_files_are_build_errors_that_name_the_setting_and_file() {
    let pki = TestPki::generate("scimflow");
    let other = TestPki::generate("other");
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write(dir.path());
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let missing = dir.path().join("missing.pem");
    let not_pem = write("junk.pem", "hello\n");
    let other_key = write("other.key", &other.client_key_pem);
    let two_keys = write(
        "two.key",
        &format!("{}{}", pki.client_key_pem, other.client_key_pem),
    );
    let combined = write(
        "combined.pem",
        &format!("{}{}", pki.client_cert_pem, pki.client_key_pem),
    );
    let build = |tls: String| {
        ScimClient::new(&target("https://scim.example.com/v2", &tls))
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            tls_yaml(Some(&missing), None),
            vec!["tls.ca", "missing.pem", "cannot be read"],
        ),
        (
            tls_yaml(Some(&not_pem), None),
            vec!["tls.ca", "junk.pem", "no CERTIFICATE"],
        ),
        (
            tls_yaml(None, Some((&files.client_key, &files.client_key))),
            vec!["tls.client_cert", "client.key", "no CERTIFICATE"],
        ),
        (
            tls_yaml(None, Some((&files.client_cert, &files.client_cert))),
            vec!["tls.client_key", "client.pem", "no private key"],
        ),
        (
            tls_yaml(None, Some((&files.client_cert, &two_keys))),
            vec!["tls.client_key", "2 private keys"],
        ),
        (
            tls_yaml(None, Some((&combined, &files.client_key))),
            vec!["tls.client_cert", "holds a private key"],
        ),
        (
            tls_yaml(None, Some((&files.client_cert, &other_key))),
            vec!["tls.client_cert"],
        ),
    ];
    for (yaml, wants) in cases {
        let e = build(yaml.clone());
        eprintln!("{e}");
        for w in wants {
            assert!(e.contains(w), "{w:?} missing in {e:?} for\n{yaml}");
        }
        assert!(!e.contains("BEGIN"), "{e}");
    }
}
