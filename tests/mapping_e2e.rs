//! The mapping language end to end against the real scim2-server: group membership follows the
//! department, the enterprise department is updated, termination deactivates, rehire reactivates the
//! same account, leaving scope deactivates, a future-dated hire is held and released; and
//! `scimflow check` reports every error of a bad config with its position.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use scimflow_e2e::*;

const INGEST_TOKEN: &str = "ingest-mapping";

fn event(id: &str, kind: &str, subject: &str, time: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "urn:example:hr", "type": kind,
        "subject": subject, "time": time, "data": data,
    })
}

fn person(dept: &str, kind: &str, extra: Value) -> Value {
    let mut d = json!({
        "email": "Ada.Lovelace@Example.com", "firstName": "Ada", "lastName": "Lovelace",
        "department": dept, "employmentType": kind, "jobCode": "eng", "roles": ["oncall"],
    });
    if let (Some(o), Some(e)) = (d.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    d
}

async fn post(daemon: &Daemon, ev: &Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", daemon.url))
        .bearer_auth(INGEST_TOKEN)
        .json(ev)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

/// Polls until `check` accepts the server state, returning (users, groups).
async fn until<F: Fn(&[Value], &[Value]) -> Result<(), String>>(
    scim: &Scim2Server,
    daemon: &Daemon,
    what: &str,
    check: F,
) -> (Vec<Value>, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let users = scim.list_users().await.unwrap();
        let groups = scim.list_groups().await.unwrap();
        let idle = daemon
            .targets()
            .await
            .unwrap()
            .values()
            .all(|t| t["queue_depth"] == 0);
        match check(&users, &groups) {
            Ok(()) if idle => return (users, groups),
            r => {
                if Instant::now() > deadline {
                    panic!(
                        "{what}: {r:?}\nusers: {users:#?}\ngroups: {groups:#?}\nlog:\n{}",
                        tail(&daemon.log(), 40)
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn members(groups: &[Value], name: &str) -> Vec<String> {
    groups
        .iter()
        .find(|g| g["displayName"] == name)
        .and_then(|g| g["members"].as_array())
        .map(|m| {
            m.iter()
                .filter_map(|x| x["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

const DEPT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_groups_scope_and_effective_dating_against_scim2_server() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let config = repo_root().join("tests/fixtures/mapping.yaml");
    let daemon = Daemon::start(
        &config,
        &dir.path().join("data"),
        &example_env(&scim, INGEST_TOKEN),
    )
    .unwrap();

    // Hire in Engineering: created, active, in dept-engineering and oncall; title from the table.
    post(
        &daemon,
        &event(
            "e1",
            "hr.worker.hired",
            "E1",
            "2026-12-01T09:00:00Z",
            person("Engineering", "Employee", json!({})),
        ),
    )
    .await;
    let (users, _) = until(&scim, &daemon, "hire", |u, g| {
        let ok = u.len() == 1
            && u[0]["active"] == true
            && u[0]["title"] == "Engineer"
            && u[0]["userName"] == "ada.lovelace@example.com"
            && members(g, "dept-engineering").len() == 1
            && members(g, "oncall").len() == 1;
        ok.then_some(()).ok_or_else(|| "not yet".into())
    })
    .await;
    let id = users[0]["id"].as_str().unwrap().to_owned();

    // Department change: moved between groups, enterprise department updated, same account.
    post(
        &daemon,
        &event(
            "e2",
            "hr.worker.updated",
            "E1",
            "2026-12-02T09:00:00Z",
            person("Sales", "Employee", json!({"jobCode": "sales"})),
        ),
    )
    .await;
    until(&scim, &daemon, "department change", |u, g| {
        let ok = u.len() == 1
            && u[0]["id"] == id.as_str()
            && u[0][DEPT]["department"] == "Sales"
            && u[0]["title"] == "Account Executive"
            && members(g, "dept-sales") == vec![id.clone()]
            && members(g, "dept-engineering").is_empty();
        ok.then_some(()).ok_or_else(|| "not yet".into())
    })
    .await;

    // Termination deactivates; rehire reactivates the same account.
    post(
        &daemon,
        &event(
            "e3",
            "hr.worker.terminated",
            "E1",
            "2026-12-03T09:00:00Z",
            person("Sales", "Employee", json!({})),
        ),
    )
    .await;
    until(&scim, &daemon, "termination", |u, _| {
        (u.len() == 1 && u[0]["active"] == false)
            .then_some(())
            .ok_or_else(|| "not yet".into())
    })
    .await;
    post(
        &daemon,
        &event(
            "e4",
            "hr.worker.rehired",
            "E1",
            "2026-12-04T09:00:00Z",
            person("Sales", "Employee", json!({})),
        ),
    )
    .await;
    until(&scim, &daemon, "rehire", |u, _| {
        (u.len() == 1 && u[0]["active"] == true && u[0]["id"] == id.as_str())
            .then_some(())
            .ok_or_else(|| "not yet".into())
    })
    .await;

    // A second person leaves scope (becomes a contractor): deactivated, not silently forgotten.
    let bob = |dept: &str, kind: &str| {
        let mut p = person(dept, kind, json!({"roles": []}));
        p["email"] = json!("bob@example.com");
        p["firstName"] = json!("Bob");
        p
    };
    post(
        &daemon,
        &event(
            "b1",
            "hr.worker.hired",
            "E2",
            "2026-12-01T09:00:00Z",
            bob("Engineering", "Employee"),
        ),
    )
    .await;
    until(&scim, &daemon, "second hire", |u, _| {
        (u.iter()
            .any(|x| x["externalId"] == "E2" && x["active"] == true))
        .then_some(())
        .ok_or_else(|| "not yet".into())
    })
    .await;
    post(
        &daemon,
        &event(
            "b2",
            "hr.worker.updated",
            "E2",
            "2026-12-02T09:00:00Z",
            bob("Engineering", "Contractor"),
        ),
    )
    .await;
    until(&scim, &daemon, "leaving scope", |u, _| {
        (u.iter()
            .any(|x| x["externalId"] == "E2" && x["active"] == false))
        .then_some(())
        .ok_or_else(|| "not yet".into())
    })
    .await;
    // A contractor who was never in scope gets no account at all.
    let mut carl = bob("Engineering", "Contractor");
    carl["email"] = json!("carl@example.com");
    post(
        &daemon,
        &event("c1", "hr.worker.hired", "E3", "2026-12-01T09:00:00Z", carl),
    )
    .await;

    // A future-dated hire is held, then released when due.
    let start = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let mut dana = bob("Research", "Employee");
    dana["email"] = json!("dana@example.com");
    dana["startDate"] = json!(start);
    post(
        &daemon,
        &event("d1", "hr.worker.hired", "E4", "2026-12-01T09:00:00Z", dana),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let early = scim.list_users().await.unwrap();
    assert!(
        !early.iter().any(|u| u["externalId"] == "E4"),
        "a future-dated hire was provisioned early"
    );
    until(&scim, &daemon, "future-dated hire", |u, g| {
        let ok = u
            .iter()
            .any(|x| x["externalId"] == "E4" && x["active"] == true)
            && members(g, "dept-research").len() == 1;
        ok.then_some(()).ok_or_else(|| "not yet".into())
    })
    .await;
    let users = scim.list_users().await.unwrap();
    assert!(
        !users.iter().any(|u| u["externalId"] == "E3"),
        "an out-of-scope contractor was provisioned"
    );
    assert_eq!(users.len(), 3, "{users:#?}");
    daemon.stop().unwrap();
}

#[test]
fn check_reports_every_error_with_its_position_and_never_the_secret() {
    let out = std::process::Command::new(scimflow_bin())
        .args(["check", "--no-environment", "--config"])
        .arg(repo_root().join("tests/fixtures/five-errors.yaml"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let text = String::from_utf8_lossy(&out.stderr).replace(&repo_root().display().to_string(), "");
    assert!(!text.contains("s3cr3t-do-not-print"), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(lines.len(), 5, "{text}");
    let expect = [
        ("five-errors.yaml:5:34: error: `auth.token` holds a literal secret", "literal secret"),
        ("five-errors.yaml:6:5: error: unknown key `concurency`", "unknown key"),
        ("five-errors.yaml:11:17: error: target `demo`, `userName`: unknown function `lowr`", "unknown function"),
        ("five-errors.yaml:12:42: error: target `demo`, `displayName`: syntax error", "bad expression"),
        ("five-errors.yaml:13:20: error: target `demo`, `title`: argument 1 of `upper` must be a string, got int", "type error"),
    ];
    for (needle, what) in expect {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "{what}: `{needle}` not in:\n{text}"
        );
    }
    assert!(
        text.contains("did you mean `concurrency`?") && text.contains("did you mean `lower`?"),
        "{text}"
    );
}

/// Reload: a changed mapping takes effect on file change (and reaches existing accounts); a bad
/// config is rejected with a metric while the running mapping keeps working; scheduled operations are
/// listed by the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_good_configs_rejects_bad_ones_and_schedules_are_listed() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let original =
        std::fs::read_to_string(repo_root().join("tests/fixtures/mapping.yaml")).unwrap();
    std::fs::write(&config, &original).unwrap();
    let daemon = Daemon::start(
        &config,
        &dir.path().join("data"),
        &example_env(&scim, INGEST_TOKEN),
    )
    .unwrap();
    post(
        &daemon,
        &event(
            "r1",
            "hr.worker.hired",
            "R1",
            "2026-12-01T09:00:00Z",
            person("Engineering", "Employee", json!({})),
        ),
    )
    .await;
    until(&scim, &daemon, "hire", |u, _| {
        (u.len() == 1 && u[0]["title"] == "Engineer")
            .then_some(())
            .ok_or_else(|| "not yet".into())
    })
    .await;

    let metric = |text: &str, result: &str| -> u64 {
        let key = format!("scimflow_config_reloads_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let metrics = || async {
        reqwest::get(format!("{}/metrics", daemon.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    // A good change (the title table) is picked up on file change and reaches the existing account.
    std::fs::write(
        &config,
        original.replace("eng: Engineer", "eng: Software Engineer"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&metrics().await, "success") < 1 {
        assert!(
            Instant::now() < deadline,
            "reload not applied:\n{}",
            tail(&daemon.log(), 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    post(
        &daemon,
        &event(
            "r2",
            "hr.worker.updated",
            "R1",
            "2026-12-02T09:00:00Z",
            person("Engineering", "Employee", json!({})),
        ),
    )
    .await;
    until(&scim, &daemon, "reloaded mapping", |u, _| {
        (u[0]["title"] == "Software Engineer")
            .then_some(())
            .ok_or_else(|| format!("title {}", u[0]["title"]))
    })
    .await;

    // A bad config is rejected; the previous mapping keeps running.
    std::fs::write(
        &config,
        original
            .replace("eng: Engineer", "eng: Software Engineer")
            .replace("lower(event.data.email)", "lowr(event.data.email)"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&metrics().await, "failure") < 1 {
        assert!(
            Instant::now() < deadline,
            "bad config not noticed:\n{}",
            tail(&daemon.log(), 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        daemon.log().contains("configuration rejected"),
        "{}",
        tail(&daemon.log(), 20)
    );
    let mut later = person("Research", "Employee", json!({}));
    later["startDate"] = json!((chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339());
    later["email"] = json!("future@example.com");
    post(
        &daemon,
        &event("r3", "hr.worker.hired", "R2", "2026-12-03T09:00:00Z", later),
    )
    .await;
    post(
        &daemon,
        &event(
            "r4",
            "hr.worker.updated",
            "R1",
            "2026-12-03T09:00:00Z",
            person("Research", "Employee", json!({})),
        ),
    )
    .await;
    until(&scim, &daemon, "old mapping still running", |u, _| {
        (u.len() == 1 && u[0][DEPT]["department"] == "Research")
            .then_some(())
            .ok_or_else(|| "not yet".into())
    })
    .await;

    // The future-dated hire is listed as scheduled.
    let listed: Value = reqwest::get(format!("{}/api/v1/scheduled", daemon.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = listed["scheduled"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["subject"] == "R2" && i["operation"] == "upsert" && i["target"] == "demo"),
        "{listed}"
    );
    daemon.stop().unwrap();
}
