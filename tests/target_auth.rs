//! Target authentication on the real binary: OAuth2 client credentials against a real token
//! endpoint issuing short-lived tokens (they expire many times during the run; the SCIM server
//! accepts only tokens that are currently valid), and mTLS against an HTTPS SCIM server that
//! requires a client certificate signed by a private CA.
//!
//! What is proved: every event is delivered, the token endpoint is asked about once per token
//! lifetime (not once per request or per worker), a token the endpoint revoked early is replaced
//! on the first 401 and the request replayed, neither the client secret nor any access token
//! appears in the daemon's log, audit trail or dead letters; without the client certificate or
//! with a CA that did not sign the server's certificate nothing is delivered, the reason is in the
//! log and the queue, nothing is lost, and the right configuration then delivers everything.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use scimflow_e2e::{
    diff_users, json_lines, repo_root, scimflow_bin, scimflow_offline, tail, Daemon, Scenario,
};
use scimflow_testkit::oauth::{ExpiresIn, TokenEndpoint, TokenEndpointOptions};
use scimflow_testkit::pki::TestPki;
use scimflow_testkit::{ServerOptions, TestServer};

const INGEST: &str = "ingest-token-target-auth";
const CLIENT_SECRET: &str = "e2e-client-secret-Zq9xK";
const AUTH_LINE: &str = "    auth: { type: bearer, token: { env: SCIM_TOKEN } }\n";

/// The quickstart with `edits` applied (each must change it), written to `dir/name`.
fn config(dir: &Path, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut c = std::fs::read_to_string(repo_root().join("examples/quickstart.yaml")).unwrap();
    for (from, to) in edits {
        let changed = c.replace(from, to);
        assert_ne!(changed, c, "the quickstart no longer holds {from:?}");
        c = changed;
    }
    let p = dir.join(name);
    std::fs::write(&p, c).unwrap();
    p
}

async fn post(daemon: &Daemon, events: &[Value]) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", daemon.url))
        .bearer_auth(INGEST)
        .json(&Value::Array(events.to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
}

async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    daemon: &Daemon,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}; daemon log tail:\n{}",
            tail(&daemon.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn queue_depth(daemon: &Daemon) -> u64 {
    daemon.targets().await.unwrap()["demo"]["queue_depth"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// Runs the HR scenario through a daemon whose target uses OAuth2 against `endpoint`, posting it in
/// waves over about `spread`; returns (seconds from start to the end state, daemon log, audit
/// export, dead letters).
async fn run_oauth2(
    endpoint: &TokenEndpoint,
    scim: &TestServer,
    spread: Duration,
) -> (f64, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let auth = format!(
        "    auth:\n      type: oauth2\n      token_url: {}\n      client_id: {}\n      client_secret: {{ file: {} }}\n      scope: scim.provision\n",
        endpoint.url(),
        endpoint.options().client_id,
        secret.display()
    );
    let config_path = config(dir.path(), "config.yaml", &[(AUTH_LINE, &auth)]);
    let data = dir.path().join("data");
    let env = [
        ("SCIM_BASE_URL", scim.base_url().to_owned()),
        ("SCIMFLOW_INGEST_TOKEN", INGEST.to_owned()),
    ];
    // `scimflow check` goes through the real client: it requests a token and uses it.
    let check = std::process::Command::new(scimflow_bin())
        .args(["check", "--config"])
        .arg(&config_path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("SCIMFLOW_CONFIG")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && out.contains("answers (200, oauth2 token obtained)"),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!out.contains(CLIENT_SECRET));
    let started = Instant::now();
    let daemon = Daemon::start(&config_path, &data, &env).unwrap();
    let scenario = Scenario::hr(40, 120, 4711);
    let waves = 12;
    for chunk in scenario
        .events
        .chunks(scenario.events.len().div_ceil(waves))
    {
        post(&daemon, chunk).await;
        tokio::time::sleep(spread / waves as u32).await;
    }
    until(
        "every event delivered",
        Duration::from_secs(90),
        &daemon,
        || async {
            diff_users(&scim.users(), &scenario.expected).is_empty()
                && queue_depth(&daemon).await == 0
        },
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let t = daemon.targets().await.unwrap()["demo"].clone();
    assert_eq!(t["failed"], 0, "{t}");
    let log = daemon.log();
    daemon.stop().unwrap();
    let audit = scimflow_offline(&["audit", "export"], &data).unwrap();
    let dead = scimflow_offline(&["dlq"], &data).unwrap();
    assert!(dead.trim().is_empty(), "dead letters: {dead}");
    (elapsed, log, audit, dead)
}

/// Neither the client secret nor any issued token appears in `texts`.
fn assert_no_secrets(endpoint: &TokenEndpoint, texts: &[(&str, &str)]) {
    let tokens = endpoint.issued_tokens();
    assert!(!tokens.is_empty());
    for (what, text) in texts {
        assert!(
            !text.contains(CLIENT_SECRET),
            "the client secret is in the {what}"
        );
        for t in &tokens {
            assert!(
                !text.contains(t.as_str()),
                "access token {t} is in the {what}"
            );
            // Nor a recognisable part of one.
            assert!(
                !text.contains(&t[t.len() - 16..]),
                "part of an access token is in the {what}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_expire_mid_run_are_refreshed_before_expiry_and_every_event_arrives() {
    // 4 s tokens: refreshed 2 s after issue (half the lifetime), so a run of ~15 s needs ~8.
    let endpoint = TokenEndpoint::start(TokenEndpointOptions {
        client_secret: CLIENT_SECRET.into(),
        lifetime: Duration::from_secs(4),
        expires_in: ExpiresIn::Truthful,
        ..Default::default()
    })
    .await;
    let scim = TestServer::start(ServerOptions {
        token_check: Some(endpoint.check()),
        ..ServerOptions::default()
    })
    .await;
    let (elapsed, log, audit, dead) = run_oauth2(&endpoint, &scim, Duration::from_secs(12)).await;

    let issued = endpoint.tokens_issued();
    let requests = endpoint.requests();
    eprintln!(
        "{issued} tokens in {elapsed:.1} s; {} SCIM requests",
        scim.requests().len()
    );
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
    assert!(requests.iter().all(|r| r.client_auth == "basic"
        && r.form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && r.form.get("scope").map(String::as_str) == Some("scim.provision")));
    // Tokens expired several times during the run...
    assert!(issued >= 4, "only {issued} tokens in {elapsed:.1} s");
    // ...and were asked for about once per 2 s of traffic, not per request or per worker.
    assert!(
        (issued as f64) <= elapsed / 2.0 + 3.0,
        "{issued} token requests in {elapsed:.1} s"
    );
    // Refreshed before expiry: the target never saw an expired token.
    let refused = scim.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 0, "{refused} requests answered 401");
    assert!(
        log.contains("oauth2 access token obtained"),
        "{}",
        tail(&log, 20)
    );
    assert_no_secrets(
        &endpoint,
        &[
            ("daemon log", &log),
            ("audit trail", &audit),
            ("dead letters", &dead),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_dies_early_is_replaced_on_the_first_401_and_the_request_replayed() {
    // The endpoint claims an hour but its tokens die after 3 s: the daemon learns it from 401s.
    let endpoint = TokenEndpoint::start(TokenEndpointOptions {
        client_secret: CLIENT_SECRET.into(),
        lifetime: Duration::from_secs(3),
        expires_in: ExpiresIn::Claim(3600),
        ..Default::default()
    })
    .await;
    let scim = TestServer::start(ServerOptions {
        token_check: Some(endpoint.check()),
        ..ServerOptions::default()
    })
    .await;
    let (elapsed, log, audit, dead) = run_oauth2(&endpoint, &scim, Duration::from_secs(12)).await;

    let issued = endpoint.tokens_issued();
    let refused = scim.requests().iter().filter(|r| r.status == 401).count();
    eprintln!("{issued} tokens, {refused} 401s in {elapsed:.1} s");
    assert!(issued >= 3, "only {issued} tokens in {elapsed:.1} s");
    assert!(
        refused >= 2,
        "the tokens never died in use ({refused} 401s)"
    );
    // One refresh per dead token, not one per request that saw the 401.
    assert!(
        (issued as f64) <= elapsed / 3.0 + 3.0,
        "{issued} token requests in {elapsed:.1} s"
    );
    assert!(issued <= refused + 1, "{issued} tokens for {refused} 401s");
    assert_no_secrets(
        &endpoint,
        &[
            ("daemon log", &log),
            ("audit trail", &audit),
            ("dead letters", &dead),
        ],
    );
}

// ----- mTLS ---------------------------------------------------------------------------------

/// `scimflow queue` of a stopped daemon: (operations, last errors). The queue keeps the error
/// class only (no target text); the detail is in the log.
fn queued(data: &Path) -> (usize, Vec<String>) {
    let q = json_lines(&scimflow_offline(&["queue", "--target", "demo"], data).unwrap());
    let errors = q
        .iter()
        .filter_map(|o| o["last_error"].as_str().map(str::to_owned))
        .collect();
    (q.len(), errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_delivers_with_the_client_certificate_and_keeps_everything_queued_without_it() {
    let pki = TestPki::generate("scimflow");
    let other = TestPki::generate("other");
    let dir = tempfile::tempdir().unwrap();
    let good = pki.write(&dir.path().join("good").tap_mkdir());
    let bad = other.write(&dir.path().join("other").tap_mkdir());
    let scim = TestServer::start_tls(ServerOptions::default(), pki.server_tls(true)).await;
    assert!(scim.base_url().starts_with("https://"));

    let tls = |ca: &Path, client: bool| {
        let mut s = format!(
            "    concurrency: 4\n    max_attempts: 2\n    \
             retry: {{ park_after_seconds: 1, park_delay_seconds: 1, max_park_delay_seconds: 2 }}\n    \
             tls:\n      ca: {{ file: {} }}\n",
            ca.display()
        );
        if client {
            s.push_str(&format!(
                "      client_cert: {{ file: {} }}\n      client_key: {{ file: {} }}\n",
                good.client_cert.display(),
                good.client_key.display()
            ));
        }
        s
    };
    let wrong_ca = config(
        dir.path(),
        "wrong-ca.yaml",
        &[("    concurrency: 4\n", &tls(&bad.ca, true))],
    );
    let no_cert = config(
        dir.path(),
        "no-cert.yaml",
        &[("    concurrency: 4\n", &tls(&good.ca, false))],
    );
    let right = config(
        dir.path(),
        "right.yaml",
        &[("    concurrency: 4\n", &tls(&good.ca, true))],
    );
    let data = dir.path().join("data");
    let env = [
        ("SCIM_BASE_URL", scim.base_url().to_owned()),
        ("SCIM_TOKEN", scim.token().to_owned()),
        ("SCIMFLOW_INGEST_TOKEN", INGEST.to_owned()),
    ];
    let scenario = Scenario::hr(6, 14, 99);

    // 1. A CA that did not sign the server's certificate: verification fails, with the reason.
    let daemon = Daemon::start(&wrong_ca, &data, &env).unwrap();
    post(&daemon, &scenario.events).await;
    until(
        "a TLS verification error",
        Duration::from_secs(30),
        &daemon,
        || async { daemon.log().contains("UnknownIssuer") },
    )
    .await;
    assert!(
        daemon
            .log()
            .contains("not signed by a trusted CA: set tls.ca"),
        "{}",
        tail(&daemon.log(), 20)
    );
    assert!(scim.users().is_empty());
    assert!(scim.requests().is_empty());
    daemon.stop().unwrap();
    let (n, errors) = queued(&data);
    assert_eq!(n, scenario.events.len(), "every operation stays queued");
    assert!(errors.iter().any(|e| e == "retryable"), "{errors:?}");

    // 2. The right CA but no client certificate: the server refuses the handshake.
    let daemon = Daemon::start(&no_cert, &data, &env).unwrap();
    until(
        "a refused handshake",
        Duration::from_secs(30),
        &daemon,
        || async {
            daemon.log().contains(
                "target requires a client certificate: set tls.client_cert and tls.client_key",
            )
        },
    )
    .await;
    assert!(!scim.tls_failures().is_empty());
    assert!(scim.users().is_empty());
    assert!(scim.requests().is_empty(), "no request reached the server");
    assert_eq!(queue_depth(&daemon).await, scenario.events.len() as u64);
    daemon.stop().unwrap();
    let (n, errors) = queued(&data);
    assert_eq!(n, scenario.events.len(), "every operation stays queued");
    assert!(errors.iter().any(|e| e == "retryable"), "{errors:?}");
    let dead = scimflow_offline(&["dlq"], &data).unwrap();
    assert!(dead.trim().is_empty(), "no dead letter: {dead}");

    // 3. With the client certificate: everything queued is delivered, exactly once.
    let daemon = Daemon::start(&right, &data, &env).unwrap();
    until(
        "every event delivered",
        Duration::from_secs(60),
        &daemon,
        || async {
            diff_users(&scim.users(), &scenario.expected).is_empty()
                && queue_depth(&daemon).await == 0
        },
    )
    .await;
    assert_eq!(daemon.targets().await.unwrap()["demo"]["failed"], 0);
    daemon.stop().unwrap();
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
