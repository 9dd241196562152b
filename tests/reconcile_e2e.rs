//! Reconciliation end to end: the real binary provisions 20 people (the quickstart mapping plus a
//! department group rule) into the real scim2-server; out-of-band changes are then made directly on
//! the server; `scimflow reconcile` reports each once with the right class, `--repair` queues the
//! fixes, the next `scimflow run` delivers them, and a second reconcile finds no drift except the
//! unmanaged account, which is reported (as configured) and never touched.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use scimflow_e2e::*;

const INGEST_TOKEN: &str = "ingest-test-token";

/// The departments `Scenario::hr` assigns.
const DEPARTMENTS: [&str; 5] = ["Engineering", "Research", "Sales", "Finance", "Support"];

/// examples/quickstart.yaml plus a group per department and the `reconcile:` section.
fn write_config(dir: &Path, reconcile: &str) -> std::path::PathBuf {
    let base = std::fs::read_to_string(repo_root().join("examples/quickstart.yaml")).unwrap();
    let text = format!(
        "{base}    groups:\n      - name: '\"dept-\" + lower(event.data.department)'\n{reconcile}"
    );
    let path = dir.join(format!("config-{}.yaml", reconcile.len()));
    std::fs::write(&path, text).unwrap();
    path
}

/// `scimflow reconcile …` with the config's environment; stdout, or the failure with stderr.
fn reconcile(env: &[(&str, String)], config: &Path, data: &Path, extra: &[&str]) -> String {
    let out = Command::new(scimflow_bin())
        .arg("reconcile")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--target", "demo"])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scimflow reconcile {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn counts(report: &Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = report["summary"]["counts"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, n)| n.as_u64() != Some(0))
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect();
    v.sort();
    v
}

fn subjects_of(report: &Value, class: &str) -> Vec<String> {
    report["findings"][class]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["subject"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn post(daemon: &Daemon, events: &[Value]) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", daemon.url))
        .bearer_auth(INGEST_TOKEN)
        .json(&Value::Array(events.to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
}

/// Waits until the daemon's queue for `demo` is empty.
async fn wait_idle(daemon: &Daemon, deadline: Duration) {
    let until = Instant::now() + deadline;
    loop {
        let t = daemon.targets().await.unwrap();
        if t["demo"]["queue_depth"] == 0 {
            return;
        }
        assert!(
            Instant::now() < until,
            "the queue did not drain: {t:?}\n{}",
            tail(&daemon.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn user_by_external_id(scim: &Scim2Server, ext: &str) -> Option<Value> {
    let mut found = scim
        .find_users(&format!("externalId eq \"{ext}\""))
        .await
        .unwrap();
    assert!(found.len() <= 1, "{ext}: {found:?}");
    found.pop()
}

async fn patch_group(scim: &Scim2Server, group_id: &str, member: &str) {
    let resp = reqwest::Client::new()
        .patch(format!("{}/Groups/{group_id}", scim.base_url))
        .bearer_auth(&scim.token)
        .header("content-type", "application/scim+json")
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]
        }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_changes_are_reported_once_and_repaired_except_the_unmanaged_account() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = example_env(&scim, INGEST_TOKEN);
    let config = write_config(
        dir.path(),
        "    reconcile: { page_size: 7, report_unmanaged: true }\n",
    );
    let quiet_config = write_config(dir.path(), "");

    // The department groups exist up front: the executor's find-or-create of a group is not
    // atomic, and concurrent first members can create two groups of one name (see the report's
    // `duplicate_groups`), which is not what this test is about.
    for dept in DEPARTMENTS {
        scim.create_group(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": format!("dept-{}", dept.to_lowercase()),
            "members": []
        }))
        .await
        .unwrap();
    }

    // 1. Provision 20 people (every fifth is terminated by their last event).
    let scenario = Scenario::hr(20, 50, 11);
    let daemon = Daemon::start(&config, &data, &env).unwrap();
    post(&daemon, &scenario.events).await;
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(120))
        .await
        .unwrap();
    daemon.stop().unwrap();

    // In sync right after provisioning.
    let first = reconcile(&env, &config, &data, &["--json"]);
    let report: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(counts(&report), vec![], "{first}");
    assert_eq!(report["summary"]["subjects"], 20);
    assert_eq!(report["summary"]["accounts_scanned"], 20);

    // 2. Out-of-band changes, directly on the server.
    let people: Vec<&Person> = scenario.expected.values().collect();
    let active: Vec<&Person> = people.iter().copied().filter(|p| p.active).collect();
    let terminated = people.iter().copied().find(|p| !p.active).unwrap();
    let (edited, deleted, unjoined) = (active[0], active[1], active[2]);
    let id_of = |u: Option<Value>| u.unwrap()["id"].as_str().unwrap().to_owned();
    let edited_id = id_of(user_by_external_id(&scim, &edited.id).await);
    scim.patch_user(
        &edited_id,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "title", "value": "Edited By Hand"}]}),
    )
    .await
    .unwrap();
    let deleted_id = id_of(user_by_external_id(&scim, &deleted.id).await);
    scim.delete_user(&deleted_id).await.unwrap();
    let terminated_id = id_of(user_by_external_id(&scim, &terminated.id).await);
    scim.patch_user(
        &terminated_id,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "active", "value": true}]}),
    )
    .await
    .unwrap();
    let unjoined_id = id_of(user_by_external_id(&scim, &unjoined.id).await);
    let group_name = format!("dept-{}", unjoined.department.to_lowercase());
    let groups = scim.list_groups().await.unwrap();
    let group = groups
        .iter()
        .find(|g| g["displayName"] == group_name.as_str())
        .unwrap_or_else(|| panic!("no group {group_name} in {groups:?}"));
    patch_group(&scim, group["id"].as_str().unwrap(), &unjoined_id).await;
    // A second, empty group with an existing department's name (one no repair below touches):
    // groups are compared by name, as the executor finds them, so it adds no drift (and is listed
    // as a duplicate).
    let twin_dept = DEPARTMENTS
        .iter()
        .find(|d| **d != unjoined.department && **d != deleted.department)
        .unwrap();
    let twin = format!("dept-{}", twin_dept.to_lowercase());
    scim.create_group(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": twin,
        "members": []
    }))
    .await
    .unwrap();
    let stranger = scim
        .create_user(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "stranger@example.com",
            "externalId": "NOT-AN-EMPLOYEE",
            "title": "Contractor",
            "active": true
        }))
        .await
        .unwrap();
    let stranger_id = stranger["id"].as_str().unwrap().to_owned();

    // 3. Each change is reported once, with the right class.
    let report_file = dir.path().join("drift.json");
    let out = reconcile(
        &env,
        &config,
        &data,
        &["--json", "--report", report_file.to_str().unwrap()],
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    let from_file: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(report, from_file, "the report file holds what was printed");
    let one = |c: &str| (c.to_owned(), 1u64);
    assert_eq!(
        counts(&report),
        vec![
            one("attribute_mismatch"),
            one("group_membership_missing"),
            one("missing"),
            one("unmanaged"),
            one("wrongly_active"),
        ],
        "{out}"
    );
    assert_eq!(
        subjects_of(&report, "attribute_mismatch"),
        vec![edited.id.clone()]
    );
    let diffs = &report["findings"]["attribute_mismatch"][0]["attributes"];
    assert_eq!(
        diffs,
        &json!([{"attribute": "title", "desired": edited.title, "actual": "Edited By Hand"}])
    );
    assert_eq!(subjects_of(&report, "missing"), vec![deleted.id.clone()]);
    assert_eq!(
        subjects_of(&report, "wrongly_active"),
        vec![terminated.id.clone()]
    );
    assert_eq!(
        subjects_of(&report, "group_membership_missing"),
        vec![unjoined.id.clone()]
    );
    assert_eq!(
        report["findings"]["group_membership_missing"][0]["group"],
        group_name.as_str()
    );
    assert!(
        report["duplicate_groups"]
            .as_array()
            .unwrap()
            .contains(&json!(twin)),
        "{out}"
    );
    let unmanaged = &report["findings"]["unmanaged"][0];
    assert_eq!(unmanaged["resource_id"], stranger_id.as_str());
    assert_eq!(unmanaged["repairable"], false);
    // Not configured to list unmanaged accounts: not reported at all.
    let quiet: Value =
        serde_json::from_str(&reconcile(&env, &quiet_config, &data, &["--json"])).unwrap();
    assert_eq!(quiet["summary"]["counts"]["unmanaged"], 0);
    assert_eq!(quiet["summary"]["counts"]["missing"], 1);

    // The human summary and a dry run queue nothing.
    let human = reconcile(&env, &config, &data, &["--dry-run"]);
    assert!(human.contains("wrongly_active             1"), "{human}");
    assert!(
        human.contains("dry run: 5 corrective operation(s), none queued"),
        "{human}"
    );
    let audit = json_lines(&scimflow_offline(&["audit", "export"], &data).unwrap());
    assert!(audit.iter().all(|r| r["outcome"] != "reconcile_queued"));

    // 4. Repair: the fixes go to the durable queue with an audit record each…
    reconcile(&env, &config, &data, &["--repair"]);
    let audit = json_lines(&scimflow_offline(&["audit", "export"], &data).unwrap());
    let queued: Vec<&Value> = audit
        .iter()
        .filter(|r| r["outcome"] == "reconcile_queued")
        .collect();
    // upsert + group_add for the deleted person, upsert, deactivate, group_add.
    assert_eq!(queued.len(), 5, "{queued:?}");
    assert!(queued
        .iter()
        .all(|r| r["op_id"].as_str().unwrap().starts_with("reconcile:")));

    // …and the next run delivers them.
    let daemon = Daemon::start(&config, &data, &env).unwrap();
    wait_idle(&daemon, Duration::from_secs(60)).await;
    daemon.stop().unwrap();

    // 5. No drift left but the unmanaged account, which is untouched.
    let after: Value = serde_json::from_str(&reconcile(&env, &config, &data, &["--json"])).unwrap();
    assert_eq!(counts(&after), vec![one("unmanaged")], "{after}");
    assert_eq!(
        after["findings"]["unmanaged"][0]["resource_id"],
        stranger_id.as_str()
    );
    let stranger_now = scim.get_user(&stranger_id).await.unwrap().unwrap();
    assert_eq!(stranger_now["title"], "Contractor");
    assert_eq!(stranger_now["active"], true);
    assert_eq!(stranger_now["meta"], stranger["meta"], "never written to");
    // The end state matches the HR data again (the stranger aside).
    let users: Vec<Value> = scim
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u["id"] != stranger_id.as_str())
        .collect();
    let problems = diff_users(&users, &scenario.expected);
    assert!(problems.is_empty(), "{problems:?}");
    // Every corrective operation ended with one terminal audit record.
    let per_op = audit_records_per_op(&data).unwrap();
    for r in &queued {
        let id = r["op_id"].as_str().unwrap();
        assert_eq!(
            per_op.get(id),
            Some(&2),
            "{id}: queued + one terminal record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_that_would_deactivate_more_than_the_deletion_guard_allows_is_staged_not_sent() {
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = example_env(&scim, INGEST_TOKEN);
    let config = write_config(dir.path(), "");
    let guarded = write_config(
        dir.path(),
        "    deletion_guard: { max_count: 1, max_percent: 100, window_seconds: 3600 }\n",
    );
    for dept in DEPARTMENTS {
        scim.create_group(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": format!("dept-{}", dept.to_lowercase()),
            "members": []
        }))
        .await
        .unwrap();
    }
    // Provisioning (four of the twenty are terminated) runs without the guard.
    let scenario = Scenario::hr(20, 50, 23);
    let daemon = Daemon::start(&config, &data, &env).unwrap();
    post(&daemon, &scenario.events).await;
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(120))
        .await
        .unwrap();
    daemon.stop().unwrap();

    // Every terminated person's account is re-activated by hand.
    let terminated: Vec<&Person> = scenario.expected.values().filter(|p| !p.active).collect();
    assert_eq!(terminated.len(), 4);
    for p in &terminated {
        let u = user_by_external_id(&scim, &p.id).await.unwrap();
        scim.patch_user(
            u["id"].as_str().unwrap(),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "active", "value": true}]}),
        )
        .await
        .unwrap();
    }
    let before: Value =
        serde_json::from_str(&reconcile(&env, &guarded, &data, &["--json"])).unwrap();
    assert_eq!(counts(&before), vec![("wrongly_active".to_owned(), 4)]);

    // The repair queues four deactivations; the guarded daemon sends one and stages three.
    reconcile(&env, &guarded, &data, &["--repair"]);
    let daemon = Daemon::start(&guarded, &data, &env).unwrap();
    wait_idle(&daemon, Duration::from_secs(60)).await;
    daemon.stop().unwrap();
    let audit = json_lines(&scimflow_offline(&["audit", "export"], &data).unwrap());
    let of = |outcome: &str| {
        audit
            .iter()
            .filter(|r| {
                r["outcome"] == outcome
                    && r["event_id"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("reconcile:")
            })
            .count()
    };
    assert_eq!(of("reconcile_queued"), 4);
    assert_eq!(of("staged"), 3, "three deactivations held for an operator");
    assert_eq!(of("applied"), 1);
    let mut still_active = 0;
    for p in &terminated {
        let u = user_by_external_id(&scim, &p.id).await.unwrap();
        if u["active"] == true {
            still_active += 1;
        }
    }
    assert_eq!(still_active, 3, "staged deactivations were not sent");
    let after: Value =
        serde_json::from_str(&reconcile(&env, &guarded, &data, &["--json"])).unwrap();
    assert_eq!(counts(&after), vec![("wrongly_active".to_owned(), 3)]);
}

/// The benchmark: reconcile a 20,000-account target. The target is the in-process testkit
/// SCIM server (seeded directly; scim2-server takes minutes to accept 20,000 creates), the store
/// is seeded directly with matching subject states and bindings, and the real binary runs
/// `scimflow reconcile` under `/usr/bin/time -v`; prints its wall time and peak resident memory.
/// Run with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: 20,000 accounts"]
async fn benchmark_reconcile_20k_accounts() {
    use scimflow_testkit::server::{ServerOptions, TestServer};
    // RECONCILE_BENCH_ACCOUNTS overrides the size (e.g. 100000).
    let n: usize = std::env::var("RECONCILE_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    const EXT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let server = TestServer::start(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [
        ("SCIM_BASE_URL", server.base_url().to_owned()),
        ("SCIM_TOKEN", server.token().to_owned()),
        ("SCIMFLOW_INGEST_TOKEN", INGEST_TOKEN.to_owned()),
    ];
    let config = repo_root().join("examples/quickstart.yaml");
    // redb: sled keeps its directory locked until this process exits.
    let store = scimflow_store::open(
        scimflow_store::Engine::Redb,
        &data,
        scimflow_store::StoreOptions::default(),
    )
    .unwrap();
    let mut batch = Vec::new();
    for i in 0..n {
        let id = format!("B{i:06}");
        let email = format!("p{i}@example.com");
        let d = json!({"employeeId": id, "email": email, "firstName": format!("F{i}"),
            "lastName": format!("L{i}"), "title": "Engineer", "department": DEPARTMENTS[i % 5]});
        server.insert_user(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
            "id": format!("acct-{i}"),
            "externalId": id, "userName": email, "displayName": format!("F{i} L{i}"),
            "name": {"givenName": d["firstName"], "familyName": d["lastName"]},
            "emails": [{"type": "work", "primary": true, "value": email}],
            "title": "Engineer", EXT: {"department": d["department"]}, "active": true
        }));
        batch.push(scimflow_core::store::Mutation::PutSubject(
            scimflow_core::SubjectState {
                subject: id.clone(),
                last_event_id: format!("ev-{id}"),
                last_time: None,
                last_kind: "hr.worker.hired".into(),
                data: d,
                recent_event_ids: vec![format!("ev-{id}")],
                mapping_version: String::new(),
                position: None,
            },
        ));
        batch.push(scimflow_core::store::Mutation::Bind {
            target: "demo".into(),
            subject: id,
            id: format!("acct-{i}"),
        });
        if batch.len() >= 2000 {
            store.commit(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    store.commit(batch).await.unwrap();
    store.close();
    drop(store);
    // A child process must reach the server while this runtime keeps serving it.
    let mut cmd = tokio::process::Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg(scimflow_bin())
        .args(["reconcile", "--target", "demo", "--json", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["accounts_scanned"], n);
    assert_eq!(report["summary"]["subjects"], n);
    assert_eq!(counts(&report), vec![], "an exact copy has no drift");
    let line = |k: &str| {
        stderr
            .lines()
            .find(|l| l.contains(k))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    eprintln!(
        "reconcile of {n} accounts: run {} ms; {}; {}",
        report["summary"]["duration_ms"],
        line("Elapsed (wall clock)"),
        line("Maximum resident set size")
    );
}
