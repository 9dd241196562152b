//! The admin API and the CLI that mirrors it, on the real binary provisioning into the real
//! scim2-server: tokens and roles, pause/resume (work queues while paused, is delivered after),
//! dead letters listed / redriven (exactly once) / discarded after a token rotation, provision one
//! subject now (an account deleted out of band comes back), every mutating call audited with the
//! token's name and never its value, and the body size limit.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use scimflow_e2e::*;

const INGEST: &str = "ingest-token";
const OPERATOR: &str = "operator-secret-value";
const READER: &str = "reader-secret-value";

/// `scimflow ARGS` against the admin API at `url` with the token in `token_file`.
fn cli(url: &str, token_file: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(scimflow_bin())
        .args(args)
        .env("SCIMFLOW_ADMIN_URL", url)
        .env("SCIMFLOW_ADMIN_TOKEN_FILE", token_file)
        .env_remove("SCIMFLOW_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn call(method: &str, url: String, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut req = match method {
        "GET" => c.get(url),
        _ => c.post(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Writes `dir/config.yaml`: the quickstart with `edits` applied (each must change it) and an
/// `admin:` section on 127.0.0.1:0 with `admin_extra` lines and one token per `(name, role, file)`.
fn admin_config(
    dir: &Path,
    edits: &[(&str, &str)],
    admin_extra: &str,
    tokens: &[(&str, &str, &Path)],
) -> std::path::PathBuf {
    let mut config = std::fs::read_to_string(repo_root().join("examples/quickstart.yaml")).unwrap();
    for (from, to) in edits {
        let changed = config.replace(from, to);
        assert_ne!(changed, config, "the quickstart no longer holds {from:?}");
        config = changed;
    }
    config.push_str(&format!(
        "\nadmin:\n  listen: 127.0.0.1:0\n{admin_extra}  tokens:\n"
    ));
    for (name, role, file) in tokens {
        config.push_str(&format!(
            "    - {{ name: {name}, role: {role}, token: {{ file: {} }} }}\n",
            file.display()
        ));
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A file holding `token`.
fn token_file(dir: &Path, name: &str, token: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, token).unwrap();
    p
}

async fn post_events(daemon: &Daemon, events: &[Value]) {
    let (status, body) = call(
        "POST",
        format!("{}/api/v1/events", daemon.url),
        Some(INGEST),
        Some(Value::Array(events.to_vec())),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "{what} within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_pause_redrive_discard_and_provision_through_the_admin_api() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let scim_token = token_file(dir.path(), "scim.token", "scim-token");
    let operator_file = token_file(dir.path(), "operator.token", OPERATOR);
    let reader_file = token_file(dir.path(), "reader.token", READER);
    let auth = format!(
        "auth: {{ type: bearer, token: {{ file: {} }} }}",
        scim_token.display()
    );
    let config_path = admin_config(
        dir.path(),
        &[
            ("auth: { type: bearer, token: { env: SCIM_TOKEN } }", &auth),
            // The revoked token below opens the circuit breaker (three 401s); keep it short.
            (
                "    concurrency: 4\n",
                "    concurrency: 4\n    circuit_breaker: { open_seconds: 1 }\n",
            ),
        ],
        "  max_body_bytes: 1024\n",
        &[
            ("ops", "operator", &operator_file),
            ("viewer", "read", &reader_file),
        ],
    );
    let daemon = Daemon::start(
        &config_path,
        &dir.path().join("data"),
        &example_env(&scim, INGEST),
    )
    .unwrap();
    let admin = daemon.admin_url.clone().expect("the admin listener's URL");

    // Tokens and roles.
    let targets_url = format!("{admin}/api/v1/targets");
    assert_eq!(call("GET", targets_url.clone(), None, None).await.0, 401);
    assert_eq!(
        call("GET", targets_url.clone(), Some("wrong"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        call("GET", targets_url.clone(), Some(READER), None).await.0,
        200
    );
    let (s, body) = call(
        "POST",
        format!("{admin}/api/v1/targets/demo/pause"),
        Some(READER),
        None,
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("role read"),
        "{body}"
    );
    assert_eq!(
        call("GET", format!("{admin}/readyz"), None, None).await.0,
        200
    );

    // Pause: hires queue up, nothing reaches the target; the table says so; resume delivers.
    let (ok, out, err) = cli(&admin, &operator_file, &["targets", "pause", "demo"]);
    assert!(ok && out.contains("demo paused"), "{out}{err}");
    let scenario = Scenario::hr(12, 24, 41);
    let hires: Vec<Value> = scenario
        .events
        .iter()
        .filter(|e| e["type"] == "hr.worker.hired")
        .cloned()
        .collect();
    assert_eq!(hires.len(), 12);
    post_events(&daemon, &hires[..8]).await;
    until("8 operations queued", || async {
        daemon.targets().await.unwrap()["demo"]["queue_depth"] == 8
    })
    .await;
    assert!(
        scim.list_users().await.unwrap().is_empty(),
        "paused, yet delivered"
    );
    let (ok, out, _) = cli(&admin, &reader_file, &["targets"]);
    assert!(ok && out.starts_with("TARGET"), "{out}");
    let row = out.lines().find(|l| l.starts_with("demo")).unwrap();
    assert!(row.split_whitespace().nth(3) == Some("true"), "{out}");
    let (ok, out, _) = cli(&admin, &reader_file, &["targets", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        ok && v["targets"][0]["paused"] == true && v["targets"][0]["queue_depth"] == 8,
        "{v}"
    );
    let (ok, out, err) = cli(&admin, &operator_file, &["targets", "resume", "demo"]);
    assert!(ok && out.contains("demo resumed"), "{out}{err}");
    until("8 accounts", || async {
        scim.list_users().await.unwrap().len() == 8
    })
    .await;

    // A rotated-away SCIM token: the next hires fail with 401 and become dead letters.
    std::fs::write(&scim_token, "revoked-token").unwrap();
    post_events(&daemon, &hires[8..]).await;
    until("4 dead letters", || async {
        let (_, v) = call(
            "GET",
            format!("{admin}/api/v1/dead-letters?target=demo"),
            Some(READER),
            None,
        )
        .await;
        v["dead_letters"].as_array().is_some_and(|d| d.len() == 4)
    })
    .await;
    let (ok, out, _) = cli(
        &admin,
        &reader_file,
        &["dlq", "list", "--class", "auth", "--json"],
    );
    let listed = json_lines(&out);
    assert!(ok && listed.len() == 4, "{out}");
    assert!(
        listed
            .iter()
            .all(|d| d["status"] == 401 && d["class"] == "auth"),
        "{out}"
    );
    let (ok, out, _) = cli(&admin, &reader_file, &["dlq", "list"]);
    assert!(
        ok && out.starts_with("SEQ") && out.contains("4 dead letters"),
        "{out}"
    );
    // Readers cannot redrive; an empty selector is refused; an oversized body is refused.
    let (ok, _, err) = cli(&admin, &reader_file, &["dlq", "redrive", "--all"]);
    assert!(!ok && err.contains("403"), "{err}");
    let (s, _) = call(
        "POST",
        format!("{admin}/api/v1/dead-letters/redrive"),
        Some(OPERATOR),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 400);
    let big = json!({"subject": "x".repeat(2000)});
    let (s, _) = call(
        "POST",
        format!("{admin}/api/v1/dead-letters/redrive"),
        Some(OPERATOR),
        Some(big),
    )
    .await;
    assert_eq!(s, 413);

    // The token is fixed; one dead letter is discarded, the other three redriven (once).
    std::fs::write(&scim_token, "scim-token").unwrap();
    let discard_seq = listed[0]["seq"].as_u64().unwrap();
    let discarded_subject = listed[0]["subject"].as_str().unwrap().to_owned();
    let (ok, out, err) = cli(
        &admin,
        &operator_file,
        &["dlq", "discard", "--seq", &discard_seq.to_string()],
    );
    assert!(ok && out.contains("discarded: 1"), "{out}{err}");
    let (ok, out, err) = cli(
        &admin,
        &operator_file,
        &["dlq", "redrive", "--target", "demo"],
    );
    assert!(
        ok && out.contains("redriven: 3 dead letter(s), 3 operation(s)"),
        "{out}{err}"
    );
    let (ok, out, _) = cli(&admin, &operator_file, &["dlq", "redrive", "--all"]);
    assert!(ok && out.contains("redriven: 0"), "{out}");
    until("11 accounts", || async {
        scim.list_users().await.unwrap().len() == 11
    })
    .await;
    let users = scim.list_users().await.unwrap();
    assert!(
        !users
            .iter()
            .any(|u| u["externalId"] == discarded_subject.as_str()),
        "the discarded dead letter was delivered"
    );

    // Provision now: an account deleted out of band comes back; the discarded person is created.
    let victim = users
        .iter()
        .find(|u| u["externalId"] == hires[0]["subject"])
        .unwrap();
    let resp = scim
        .client()
        .delete(scim.url(&format!("/Users/{}", victim["id"].as_str().unwrap())))
        .header("Authorization", scim.auth())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let victim_subject = hires[0]["subject"].as_str().unwrap();
    // Its binding is stale now: the update finds no account (404), looks up, and creates it.
    let (ok, out, err) = cli(&admin, &operator_file, &["provision", victim_subject]);
    assert!(
        ok && out.contains("1 operation(s) queued for demo"),
        "{out}{err}"
    );
    let (ok, out, err) = cli(
        &admin,
        &operator_file,
        &["provision", &discarded_subject, "--target", "demo"],
    );
    assert!(ok, "{out}{err}");
    until("12 accounts", || async {
        scim.list_users().await.unwrap().len() == 12
    })
    .await;
    let (s, _) = call(
        "POST",
        format!("{admin}/api/v1/subjects/nobody/provision"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let per_person = |users: &[Value]| {
        let mut m = std::collections::BTreeMap::<String, usize>::new();
        for u in users {
            *m.entry(u["externalId"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        m
    };
    let counts = per_person(&scim.list_users().await.unwrap());
    assert!(counts.values().all(|&n| n == 1), "duplicates: {counts:?}");

    // Every mutating call is audited with the token's name, never a token value.
    let (s, v) = call(
        "GET",
        format!("{admin}/api/v1/audit?outcome=admin"),
        Some(READER),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let records = v["records"].as_array().unwrap();
    let details: Vec<&str> = records
        .iter()
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    for want in [
        "delivery to `demo` paused",
        "delivery to `demo` resumed",
        "discarded",
        "redriven",
        "provision now",
    ] {
        assert!(
            details
                .iter()
                .any(|d| d.contains(want) && d.contains("token `ops`")),
            "{want}: {details:?}"
        );
    }
    assert_eq!(
        details.iter().filter(|d| d.contains("redriven")).count(),
        3,
        "{details:?}"
    );
    let all = v.to_string();
    assert!(!all.contains(OPERATOR) && !all.contains(READER) && !all.contains("scim-token"));
    // The CLI mirror: `audit query --live` reads the same records from the running daemon.
    let (ok, out, err) = cli(
        &admin,
        &reader_file,
        &["audit", "query", "--live", "--outcome", "admin", "--json"],
    );
    assert!(ok, "{err}");
    let live = json_lines(&out);
    assert_eq!(live.len(), records.len(), "{out}");
    assert!(live
        .iter()
        .zip(records)
        .all(|(a, b)| a["seq"] == b["seq"] && a["hash"] == b["hash"]));
    let (ok, out, _) = cli(
        &admin,
        &reader_file,
        &["audit", "query", "--live", "--subject", victim_subject],
    );
    assert!(
        ok && out.starts_with("SEQ") && out.contains(victim_subject),
        "{out}"
    );
    daemon.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_guard_stages_mass_deprovisioning_until_an_operator_decides() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let operator_file = token_file(dir.path(), "operator.token", OPERATOR);
    // At most 3 deprovisionings per hour on `demo` (10 people: the percentage rule, from its
    // default min_count of 10 on, does not come into play before the count rule).
    let config_path = admin_config(
        dir.path(),
        &[(
            "    concurrency: 4\n",
            "    concurrency: 4\n    deletion_guard: { max_count: 3, window_seconds: 3600 }\n",
        )],
        "",
        &[("ops", "operator", &operator_file)],
    );
    let daemon = Daemon::start(
        &config_path,
        &dir.path().join("data"),
        &example_env(&scim, INGEST),
    )
    .unwrap();
    let admin = daemon.admin_url.clone().unwrap();

    let people: Vec<Person> = Scenario::hr(10, 20, 5).expected.into_values().collect();
    let mut n = 0;
    let hires: Vec<Value> = people
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut p = p.clone();
            p.active = true;
            hr_event(&mut n, "hr.worker.hired", &p, 0, i)
        })
        .collect();
    post_events(&daemon, &hires).await;
    until("10 accounts", || async {
        scim.list_users().await.unwrap().len() == 10
    })
    .await;

    let terminate = |n: &mut usize, range: std::ops::Range<usize>| -> Vec<Value> {
        range
            .map(|i| {
                let mut p = people[i].clone();
                p.active = false;
                hr_event(n, "hr.worker.terminated", &p, 1, i)
            })
            .collect()
    };
    let inactive = || async {
        scim.list_users()
            .await
            .unwrap()
            .iter()
            .filter(|u| u["active"] == false)
            .map(|u| u["externalId"].as_str().unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let staged = || async {
        let (_, v) = call(
            "GET",
            format!("{admin}/api/v1/deletions"),
            Some(OPERATOR),
            None,
        )
        .await;
        v["staged"].as_array().cloned().unwrap_or_default()
    };
    // Six terminations: three are sent, three are staged.
    post_events(&daemon, &terminate(&mut n, 0..6)).await;
    until("3 sent and 3 staged", || async {
        inactive().await.len() == 3 && staged().await.len() == 3
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("scimflow_staged_deletions{target=\"demo\"} 3"),
        "{metrics}"
    );
    let (ok, out, err) = cli(&admin, &operator_file, &["deletions"]);
    assert!(
        ok && out.starts_with("TARGET") && out.contains("3 staged deletions"),
        "{out}{err}"
    );
    let held: Vec<String> = staged()
        .await
        .iter()
        .map(|s| s["subject"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        held.iter().all(|s| !inactive_contains(&scim, s)),
        "a staged one was sent"
    );

    // Two approved (sent, past the guard), one rejected (the account stays active).
    for s in &held[..2] {
        let (ok, out, err) = cli(
            &admin,
            &operator_file,
            &["deletions", "approve", "--subject", s],
        );
        assert!(ok && out.contains("approved: 1"), "{out}{err}");
    }
    let (ok, out, err) = cli(
        &admin,
        &operator_file,
        &["deletions", "reject", "--subject", &held[2]],
    );
    assert!(ok && out.contains("rejected: 1"), "{out}{err}");
    until("5 inactive", || async { inactive().await.len() == 5 }).await;
    assert!(
        !inactive().await.contains(&held[2]),
        "the rejected deprovisioning was sent"
    );
    assert!(staged().await.is_empty());
    let (s, _) = call(
        "POST",
        format!("{admin}/api/v1/deletions/approve"),
        Some(OPERATOR),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 400, "an empty selector is refused");

    // The window is still full: the next termination is staged again.
    post_events(&daemon, &terminate(&mut n, 6..7)).await;
    until("the 7th staged", || async { staged().await.len() == 1 }).await;
    assert_eq!(inactive().await.len(), 5);

    // Audited: staged (4 times), approved (2), rejected (1).
    let (_, v) = call(
        "GET",
        format!("{admin}/api/v1/audit?target=demo"),
        Some(OPERATOR),
        None,
    )
    .await;
    let records = v["records"].as_array().unwrap();
    let count = |outcome: &str, needle: &str| {
        records
            .iter()
            .filter(|r| {
                r["outcome"] == outcome && r["detail"].as_str().unwrap_or("").contains(needle)
            })
            .count()
    };
    assert_eq!(count("staged", "deletion guard"), 4);
    assert_eq!(count("admin", "approved"), 2);
    assert_eq!(count("admin", "rejected"), 1);
    daemon.stop().unwrap();
}

/// Whether `subject`'s account on the server is inactive (blocking helper for assertions).
fn inactive_contains(scim: &Scim2Server, subject: &str) -> bool {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        rt.block_on(async {
            scim.list_users()
                .await
                .unwrap()
                .iter()
                .any(|u| u["externalId"] == subject && u["active"] == false)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_now_reports_drift_as_metrics_and_repairs_through_delivery() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let operator_file = token_file(dir.path(), "operator.token", OPERATOR);
    let config_path = admin_config(dir.path(), &[], "", &[("ops", "operator", &operator_file)]);
    let daemon = Daemon::start(
        &config_path,
        &dir.path().join("data"),
        &example_env(&scim, INGEST),
    )
    .unwrap();
    let admin = daemon.admin_url.clone().unwrap();
    let scenario = Scenario::hr(10, 20, 23);
    let hires: Vec<Value> = scenario
        .events
        .iter()
        .filter(|e| e["type"] == "hr.worker.hired")
        .cloned()
        .collect();
    post_events(&daemon, &hires).await;
    until("10 accounts", || async {
        scim.list_users().await.unwrap().len() == 10
    })
    .await;

    // Out of band: one title edited, one account deleted.
    let users = scim.list_users().await.unwrap();
    let id = |i: usize| users[i]["id"].as_str().unwrap().to_owned();
    scim.patch_user(
        &id(0),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "title", "value": "Edited By Hand"}]}),
    )
    .await
    .unwrap();
    scim.delete_user(&id(1)).await.unwrap();

    let run = |args: &[&str]| {
        let (ok, out, err) = cli(&admin, &operator_file, args);
        assert!(ok, "{args:?}: {out}{err}");
        out
    };
    let last: Value =
        serde_json::from_str(run(&["targets", "reconcile", "demo", "--json"]).trim()).unwrap();
    let counts = &last["drift"]["counts"];
    assert_eq!(counts["attribute_mismatch"], 1, "{last}");
    assert_eq!(counts["missing"], 1, "{last}");
    assert_eq!(last["queued_operations"], 0, "no repair asked: {last}");
    let metrics = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "scimflow_drift{target=\"demo\",class=\"missing\"} 1",
        "scimflow_drift{target=\"demo\",class=\"attribute_mismatch\"} 1",
        "scimflow_drift{target=\"demo\",class=\"orphaned\"} 0",
        "scimflow_reconcile_failed{target=\"demo\"} 0",
    ] {
        assert!(metrics.contains(want), "missing `{want}`:\n{metrics}");
    }
    assert!(metrics.contains("scimflow_reconcile_last_run_timestamp_seconds{target=\"demo\"}"));

    // Repair: the fixes go through the queue; afterwards a run finds nothing.
    let out = run(&["targets", "reconcile", "demo", "--repair"]);
    assert!(out.contains("queued 2 corrective operation(s)"), "{out}");
    until("the deleted account back", || async {
        scim.list_users().await.unwrap().len() == 10
    })
    .await;
    until("no drift left", || async {
        let (ok, out, _) = cli(
            &admin,
            &operator_file,
            &["targets", "reconcile", "demo", "--json"],
        );
        let v: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
        ok && v["drift"]["counts"]
            .as_object()
            .is_some_and(|c| c.iter().all(|(_, n)| n == 0))
    })
    .await;
    let (s, _) = call(
        "POST",
        format!("{admin}/api/v1/targets/nope/reconcile"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(s, 404);
    daemon.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_stops_sending_to_a_failing_target_probes_and_recovers() {
    use scimflow_testkit::{FaultRule, ServerOptions, TestServer};
    let server = TestServer::start(ServerOptions::default()).await;
    // Six 503s in a row, then a healthy target.
    server.script(FaultRule::status(503).times(6));
    let dir = tempfile::tempdir().unwrap();
    let operator_file = token_file(dir.path(), "operator.token", OPERATOR);
    let config_path = admin_config(
        dir.path(),
        &[(
            "    concurrency: 4\n",
            "    concurrency: 1\n    circuit_breaker: { failures: 3, open_seconds: 1, max_open_seconds: 2 }\n",
        )],
        "",
        &[("ops", "operator", &operator_file)],
    );
    let env = [
        ("SCIM_BASE_URL", server.base_url().to_owned()),
        ("SCIM_TOKEN", server.token().to_owned()),
        ("SCIMFLOW_INGEST_TOKEN", INGEST.to_owned()),
    ];
    let daemon = Daemon::start(&config_path, &dir.path().join("data"), &env).unwrap();
    let admin = daemon.admin_url.clone().unwrap();
    let scenario = Scenario::hr(5, 10, 31);
    let hires: Vec<Value> = scenario
        .events
        .iter()
        .filter(|e| e["type"] == "hr.worker.hired")
        .cloned()
        .collect();
    post_events(&daemon, &hires).await;
    until("5 accounts", || async { server.users().len() == 5 }).await;

    // After the third consecutive 503 the breaker opened: only requests that had already passed it
    // (at most one per other lane: 4 lanes for concurrency 1) went out within its open time (1 s);
    // then one probe at a time, failing twice (open 1 s, then 2 s), and the third probe succeeded.
    let log = server.requests();
    let third = log
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == 503)
        .nth(2)
        .map(|(i, _)| i)
        .expect("three 503s");
    let opened_at = log[third].at;
    let early = log[third + 1..]
        .iter()
        .take_while(|r| r.at.duration_since(opened_at) < Duration::from_millis(950))
        .count();
    assert!(
        early <= 3,
        "{early} requests went out while the breaker was open"
    );
    let first_ok = log.iter().find(|r| r.status != 503).expect("a success");
    let outage = first_ok.at.duration_since(log[0].at);
    assert!(
        outage >= Duration::from_millis(2900),
        "probes should have waited 1 s + 2 s: recovered after {outage:?}"
    );
    let metrics = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let opens: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("scimflow_breaker_opens_total{target=\"demo\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no breaker_opens_total:\n{metrics}"));
    assert!(
        opens >= 2,
        "opened by the failures and again by a failed probe: {opens}"
    );
    assert!(
        metrics.contains("scimflow_breaker_state{target=\"demo\"} 0"),
        "{metrics}"
    );
    let (ok, out, _) = cli(&admin, &operator_file, &["targets", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(ok && v["targets"][0]["breaker"] == "closed", "{v}");
    // Exactly one account per person.
    let mut ext: Vec<String> = server
        .users()
        .iter()
        .map(|u| u["externalId"].as_str().unwrap().to_owned())
        .collect();
    ext.sort();
    ext.dedup();
    assert_eq!(ext.len(), 5);
    daemon.stop().unwrap();
}
