//! The engine against the in-process SCIM test server and a real (sled) store: every drift class,
//! pagination, the rate limit, and the corrective operations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use scimflow_core::store::Mutation;
use scimflow_core::SubjectState;
use scimflow_testkit::server::{RetryAfterStyle, ServerOptions, TestServer};

use super::*;

fn config(base_url: &str, extra: &str) -> scimflow_config::Config {
    let yaml = format!(
        r#"version: 1
targets:
  app:
    base_url: {base_url}
    allow_http: true
    scope: event.data.country == "DE"
    lifecycle:
      hr.worker.hired: upsert
      hr.worker.terminated: deactivate
    matching: [externalId, userName]
    user:
      externalId: event.subject
      userName: lower(event.data.email)
      title: event.data.title
    groups:
      - name: '"dept-" + event.data.dept'
{extra}"#
    );
    scimflow_config::load_str(&yaml, "c.yaml", &|_| None).unwrap()
}

fn state(subject: &str, kind: &str, title: &str, dept: &str, country: &str) -> SubjectState {
    SubjectState {
        subject: subject.into(),
        last_event_id: format!("ev-{subject}"),
        last_time: None,
        last_kind: kind.into(),
        data: json!({"email": format!("{subject}@example.com"), "title": title, "dept": dept, "country": country}),
        recent_event_ids: vec![format!("ev-{subject}")],
        mapping_version: String::new(),
        position: None,
    }
}

fn user(subject: &str, title: &str, active: bool) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": format!("id-{subject}"),
        "externalId": subject,
        "userName": format!("{subject}@example.com"),
        "title": title,
        "active": active,
    })
}

fn group(name: &str, members: &[&str]) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
        "members": members.iter().map(|s| json!({"value": format!("id-{s}")})).collect::<Vec<_>>(),
    })
}

/// The scenario: one subject per drift class, plus one in sync and one unmanaged account.
async fn seed(server: &TestServer, store: &dyn Store) {
    let hired = "hr.worker.hired";
    let states = [
        state("S1", hired, "Engineer", "x", "DE"), // in sync
        state("S2", hired, "Engineer", "y", "DE"), // title edited; not in y, in x
        state("S3", hired, "Engineer", "x", "DE"), // account deleted
        state("S4", "hr.worker.terminated", "Engineer", "x", "DE"), // re-activated by hand
        state("S5", hired, "Engineer", "x", "DE"), // deactivated by hand
        state("S6", hired, "Engineer", "x", "US"), // out of scope, still active
        state("S7", hired, "Engineer", "x", "DE"), // never provisioned, unbound
    ];
    let mut batch: Vec<Mutation> = states.into_iter().map(Mutation::PutSubject).collect();
    for s in ["S1", "S2", "S3", "S4", "S5"] {
        batch.push(Mutation::Bind {
            target: "app".into(),
            subject: s.into(),
            id: format!("id-{s}"),
        });
    }
    store.commit(batch).await.unwrap();
    server.insert_user(user("S1", "Engineer", true));
    server.insert_user(user("S2", "Manager", true));
    server.insert_user(user("S4", "Engineer", true));
    server.insert_user(user("S5", "Engineer", false));
    // Unbound, found by its externalId.
    server.insert_user(user("S6", "Engineer", true));
    server.insert_user(
        json!({"id": "id-stranger", "userName": "stranger@example.com", "active": true}),
    );
    server.insert_group(group("dept-x", &["S1", "S2", "S5", "stranger"]));
    server.insert_group(group("unrelated", &["S1"]));
}

async fn run(server: &TestServer, store: &dyn Store, extra: &str) -> (Outcome, Vec<Progress>) {
    let cfg = config(server.base_url(), extra);
    let mapping = scimflow_mapping::compile(&cfg).unwrap();
    let target = &cfg.targets[0];
    let client = ScimClient::new(target).unwrap();
    let mut seen = Vec::new();
    let opts = Options::new("r1", "2026-12-01T00:00:00Z".parse().unwrap());
    let out = reconcile(store, &mapping, target, &client, &opts, &mut |p| {
        seen.push(p)
    })
    .await
    .unwrap();
    (out, seen)
}

/// No bearer token required (the client's auth is the delivery crate's, tested there).
fn open_server() -> ServerOptions {
    ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    }
}

fn open_store(dir: &std::path::Path) -> Arc<dyn scimflow_store::ManagedStore> {
    scimflow_store::open(
        scimflow_store::Engine::Sled,
        dir,
        scimflow_store::StoreOptions::default(),
    )
    .unwrap()
}

fn subjects(r: &Report, class: DriftClass) -> Vec<String> {
    r.of(class)
        .iter()
        .map(|f| f.subject.clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drift_class_is_found_once_and_repaired_by_planner_shaped_operations() {
    let server = TestServer::start(open_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    seed(&server, store.as_ref()).await;
    let (out, progress) = run(
        &server,
        store.as_ref(),
        "    reconcile: { page_size: 2, report_unmanaged: true }\n",
    )
    .await;
    let r = &out.report;
    use DriftClass::*;
    assert_eq!(subjects(r, Missing), vec!["S3", "S7"]);
    assert_eq!(
        r.of(Missing)[0].detail.as_deref(),
        Some("the bound account id-S3 is gone")
    );
    assert_eq!(subjects(r, AttributeMismatch), vec!["S2"]);
    assert_eq!(
        r.of(AttributeMismatch)[0].attributes,
        vec![AttributeDiff {
            attribute: "title".into(),
            desired: json!("Engineer"),
            actual: json!("Manager"),
        }]
    );
    assert_eq!(subjects(r, WronglyActive), vec!["S4"]);
    assert_eq!(subjects(r, WronglyInactive), vec!["S5"]);
    assert_eq!(subjects(r, Orphaned), vec!["S6"]);
    assert_eq!(r.of(Unmanaged).len(), 1);
    assert_eq!(
        r.of(Unmanaged)[0].resource_id.as_deref(),
        Some("id-stranger")
    );
    assert!(!r.of(Unmanaged)[0].repairable);
    // S2 should be in dept-y (absent from the target) and not in dept-x; the stranger's
    // membership and the unrelated group are not judged.
    let groups = |c| {
        r.of(c)
            .iter()
            .map(|f| {
                format!(
                    "{}:{}",
                    f.subject.as_deref().unwrap(),
                    f.group.as_deref().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(groups(GroupMembershipMissing), vec!["S2:dept-y"]);
    assert_eq!(groups(GroupMembershipExtra), vec!["S2:dept-x"]);
    let s = &r.summary;
    assert_eq!(
        (s.subjects, s.accounts_scanned, s.groups_scanned),
        (7, 6, 2)
    );
    assert!(r.duplicate_groups.is_empty());
    assert_eq!(
        s.total(),
        8,
        "every class once (S3 and S7 both missing), unmanaged aside"
    );
    assert!(progress.contains(&Progress::Users {
        read: 6,
        total: Some(6)
    }));

    // Operations: deterministic ids, planner kinds, a subject's account operation first.
    let ops: Vec<(&str, OpKind)> = out
        .operations
        .iter()
        .map(|o| (o.id.as_str(), o.kind))
        .collect();
    assert_eq!(
        ops,
        vec![
            ("reconcile:r1:app:S2:upsert", OpKind::Upsert),
            ("reconcile:r1:app:S4:deactivate", OpKind::Deactivate),
            ("reconcile:r1:app:S5:reactivate", OpKind::Reactivate),
            ("reconcile:r1:app:S6:deactivate", OpKind::Deactivate),
            ("reconcile:r1:app:S3:upsert", OpKind::Upsert),
            ("reconcile:r1:app:S3:group_add:dept-x", OpKind::GroupAdd),
            ("reconcile:r1:app:S7:upsert", OpKind::Upsert),
            ("reconcile:r1:app:S7:group_add:dept-x", OpKind::GroupAdd),
            ("reconcile:r1:app:S2:group_add:dept-y", OpKind::GroupAdd),
            (
                "reconcile:r1:app:S2:group_remove:dept-x",
                OpKind::GroupRemove
            ),
        ]
    );
    let s4 = &out.operations[1];
    assert_eq!(s4.resource["active"], false);
    assert_eq!(s4.matching[0].value, "S4");
    let s3 = &out.operations[4];
    assert_eq!(s3.resource["title"], "Engineer");
    assert_eq!(s3.resource["active"], true);
    assert_eq!(s3.event_kind, REPAIR_EVENT_KIND);
    assert_eq!(r.repair_operations.len(), out.operations.len());

    // Paged: 6 users at 2 per page, asking only for the owned attributes.
    let user_pages: Vec<String> = server
        .requests()
        .iter()
        .filter(|q| q.path.ends_with("/Users"))
        .map(|q| q.query.clone().unwrap_or_default())
        .collect();
    assert_eq!(user_pages.len(), 3, "{user_pages:?}");
    assert!(user_pages[1].contains("startIndex=3") && user_pages[1].contains("count=2"));
    assert!(user_pages[0].contains("attributes=externalId%2Ctitle%2CuserName%2Cactive"));
    // Nothing was written.
    assert!(server
        .requests()
        .iter()
        .all(|q| q.method == reqwest::Method::GET));
    // The report round-trips as JSON, classes by name.
    let text = serde_json::to_string(r).unwrap();
    assert!(text.contains("\"wrongly_active\""));
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, r);
    assert!(r.human_summary().contains("group_membership_extra     1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_accounts_are_not_reported_unless_asked_and_a_target_in_sync_has_no_drift() {
    let server = TestServer::start(open_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    store
        .commit(vec![
            Mutation::PutSubject(state("S1", "hr.worker.hired", "Engineer", "x", "DE")),
            Mutation::Bind {
                target: "app".into(),
                subject: "S1".into(),
                id: "id-S1".into(),
            },
        ])
        .await
        .unwrap();
    server.insert_user(user("S1", "Engineer", true));
    server.insert_user(json!({"id": "id-stranger", "userName": "stranger@example.com"}));
    server.insert_group(group("dept-x", &["S1"]));
    let (out, _) = run(&server, store.as_ref(), "").await;
    assert_eq!(out.report.summary.total(), 0, "{:?}", out.report.findings);
    assert_eq!(out.report.summary.count(DriftClass::Unmanaged), 0);
    assert!(out.operations.is_empty());
    assert_eq!(out.report.summary.accounts_scanned, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_keeps_to_the_targets_rate_limit_and_rides_out_429s() {
    // The server admits 6 requests per second; the target's limit is 4 per second.
    let server = TestServer::start(ServerOptions {
        rate_limit: Some((6, RetryAfterStyle::Seconds)),
        ..open_server()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    seed(&server, store.as_ref()).await;
    let started = Instant::now();
    let (out, _) = run(
        &server,
        store.as_ref(),
        "    rate_limit: { per_second: 4, burst: 1 }\n    reconcile: { page_size: 1 }\n",
    )
    .await;
    let elapsed = started.elapsed();
    let n = server.requests().len();
    // The discovery of `/ServiceProviderConfig` (no cursors offered) + 6 user pages (totalResults
    // says when to stop) + 2 group pages, all paced by the limit.
    assert_eq!(n, 9, "{:?}", server.requests());
    assert!(server.requests().iter().all(|q| q.status == 200));
    assert!(
        elapsed >= Duration::from_millis(250 * (n as u64 - 1)),
        "{n} requests in {elapsed:?} at 4/s"
    );
    assert_eq!(out.report.summary.accounts_scanned, 6);
    assert_eq!(out.report.summary.total(), 8);

    // Without a client-side limit the server's 429s (Retry-After: 1) are waited out.
    server.clear_requests();
    let (out, _) = run(&server, store.as_ref(), "    reconcile: { page_size: 1 }\n").await;
    assert!(
        server.requests().iter().any(|q| q.status == 429),
        "the server's limit should have been hit"
    );
    assert_eq!(out.report.summary.accounts_scanned, 6);
    assert_eq!(out.report.summary.total(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_account_matching_a_subject_is_reported_never_repaired() {
    let server = TestServer::start(open_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    store
        .commit(vec![
            Mutation::PutSubject(state("S1", "hr.worker.hired", "Engineer", "x", "DE")),
            Mutation::Bind {
                target: "app".into(),
                subject: "S1".into(),
                id: "id-S1".into(),
            },
        ])
        .await
        .unwrap();
    // The bound account lost its externalId to a copy someone made (the target keeps externalId
    // unique): the copy carries the subject's matching key too.
    let mut bound = user("S1", "Engineer", true);
    bound["externalId"] = json!("S1-old");
    server.insert_user(bound);
    let mut copy = user("S1", "Engineer", true);
    copy["id"] = json!("id-copy");
    copy["userName"] = json!("copy@example.com");
    server.insert_user(copy);
    server.insert_group(group("dept-x", &["S1"]));
    let (out, _) = run(&server, store.as_ref(), "").await;
    let r = &out.report;
    assert_eq!(r.summary.total(), 2, "{:?}", r.findings);
    // The bound account is the subject's (its externalId is drift); the copy is reported only.
    assert_eq!(
        r.of(DriftClass::AttributeMismatch)[0]
            .resource_id
            .as_deref(),
        Some("id-S1")
    );
    let f = &r.of(DriftClass::Orphaned)[0];
    assert_eq!(f.subject.as_deref(), Some("S1"));
    assert_eq!(f.resource_id.as_deref(), Some("id-copy"));
    assert!(!f.repairable);
    let ops: Vec<&str> = out.operations.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ops, vec!["reconcile:r1:app:S1:upsert"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_refusing_the_attributes_parameter_is_read_whole() {
    use scimflow_testkit::server::FaultRule;
    let server = TestServer::start(open_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    seed(&server, store.as_ref()).await;
    server.script(FaultRule::status(400).path("/scim/v2/Users").times(1));
    let (out, _) = run(&server, store.as_ref(), "").await;
    assert_eq!(out.report.summary.accounts_scanned, 6);
    assert_eq!(out.report.summary.total(), 8);
    let users: Vec<(u16, String)> = server
        .requests()
        .iter()
        .filter(|q| q.path.ends_with("/Users"))
        .map(|q| (q.status, q.query.clone().unwrap_or_default()))
        .collect();
    assert_eq!(users[0].0, 400);
    assert!(users[0].1.contains("attributes="));
    assert!(
        users[1..]
            .iter()
            .all(|(s, q)| *s == 200 && !q.contains("attributes=")),
        "{users:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_account_met_twice_is_not_a_second_account() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    store
        .commit(vec![Mutation::PutSubject(state(
            "S1",
            "hr.worker.hired",
            "Engineer",
            "x",
            "DE",
        ))])
        .await
        .unwrap();
    let cfg = config("http://127.0.0.1:9", "");
    let mapping = scimflow_mapping::compile(&cfg).unwrap();
    let opts = Options::new("r1", "2026-12-01T00:00:00Z".parse().unwrap());
    let mut run = Run {
        store: store.as_ref(),
        mapping: &mapping,
        target: &cfg.targets[0],
        opts: &opts,
        index: Index::default(),
        report: Report {
            run_id: "r1".into(),
            target: "app".into(),
            mapping_version: String::new(),
            summary: Drift::new("app", opts.now),
            findings: BTreeMap::new(),
            truncated: Vec::new(),
            desired_errors: Vec::new(),
            duplicate_groups: Vec::new(),
            queued_operations: 0,
            repair_operations: Vec::new(),
        },
        operations: Vec::new(),
        cursor: false,
    };
    run.index_subjects(&mut |_| {}).unwrap();
    // Found by its externalId (unbound), then met again on a shifted page.
    let account = user("S1", "Engineer", true);
    run.account(&account).unwrap();
    run.account(&account).unwrap();
    assert_eq!(run.report.summary.total(), 0, "{:?}", run.report.findings);
    let mut other = user("S1", "Engineer", true);
    other["id"] = json!("id-other");
    run.account(&other).unwrap();
    assert_eq!(run.report.summary.count(DriftClass::Orphaned), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_offering_cursors_is_paged_by_cursor_and_finds_the_same_drift() {
    let server = TestServer::start(ServerOptions {
        cursor_pagination: true,
        ..open_server()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    seed(&server, store.as_ref()).await;
    // Pages of 2: several cursors to follow.
    let (out, _) = run(&server, store.as_ref(), "    reconcile: { page_size: 2 }\n").await;
    assert_eq!(out.report.summary.accounts_scanned, 6);
    assert_eq!(
        out.report.summary.total(),
        8,
        "the same findings as by index"
    );
    let queries: Vec<String> = server
        .requests()
        .iter()
        .filter(|q| q.path.ends_with("/Users"))
        .map(|q| q.query.clone().unwrap_or_default())
        .collect();
    assert_eq!(queries.len(), 3, "6 accounts, 2 per page: {queries:?}");
    assert!(
        queries[0].contains("cursor=&") || queries[0].starts_with("cursor=&"),
        "{queries:?}"
    );
    assert!(
        queries[1].contains("cursor=c2") && queries[2].contains("cursor=c4"),
        "{queries:?}"
    );
    assert!(
        queries.iter().all(|q| !q.contains("startIndex")),
        "{queries:?}"
    );

    // Told to page by index, the same target is read by index.
    server.clear_requests();
    let (out, _) = run(
        &server,
        store.as_ref(),
        "    reconcile: { page_size: 2, pagination: index }\n",
    )
    .await;
    assert_eq!(out.report.summary.total(), 8);
    assert!(server
        .requests()
        .iter()
        .filter(|q| q.path.ends_with("/Users"))
        .all(|q| q.query.as_deref().unwrap_or("").contains("startIndex=")));
}
