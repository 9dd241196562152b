//! Queued updates of one person coalesce into one request; other people and other kinds do not.
//! A real store (sled), a real pool, the testkit SCIM server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use scimflow_core::op::MatchKey;
use scimflow_core::store::Mutation;
use scimflow_core::{OpKind, Operation};
use scimflow_delivery::{Executor, TargetPool};
use scimflow_testkit::{ServerOptions, TestServer};

mod common;

fn op(subject: &str, n: u32, kind: OpKind, title: &str, patch: Option<Value>) -> Operation {
    Operation {
        id: format!("{subject}-{n}@app"),
        target: "app".into(),
        subject: subject.into(),
        event_id: format!("{subject}-ev{n}"),
        event_kind: "hr.worker.updated".into(),
        event_time: None,
        planned_at: chrono::Utc::now(),
        kind,
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": subject,
            "userName": subject.to_lowercase(),
            "title": title,
        }),
        matching: vec![MatchKey {
            attribute: "externalId".into(),
            value: subject.into(),
            case_exact: true,
        }],
        mapping_version: "v1".into(),
        traceparent: None,
        group: None,
        create_only: Vec::new(),
        patch,
        manager_subject: None,
        alternatives: Default::default(),
        origin: None,
        retry: None,
    }
}

fn title_patch(title: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": title}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_updates_of_one_person_go_out_as_one_request_in_order() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = common::sled_store(dir.path());
    // An existing, bound account for E1; nothing yet for E2.
    let existing = server.insert_user(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "externalId": "E1", "userName": "e1", "title": "t0",
    }));
    let id = existing["id"].as_str().unwrap().to_owned();
    let mut batch = vec![Mutation::Bind {
        target: "app".into(),
        subject: "E1".into(),
        id: id.clone(),
    }];
    // E1: five updates, each a minimal PATCH from the one before; then a deactivation (never
    // merged) and one more update. E2: a hire and two updates.
    for n in 1..=5 {
        let t = format!("t{n}");
        batch.push(Mutation::Enqueue(op(
            "E1",
            n,
            OpKind::Update,
            &t,
            Some(title_patch(&t)),
        )));
    }
    batch.push(Mutation::Enqueue(op(
        "E1",
        6,
        OpKind::Deactivate,
        "t5",
        None,
    )));
    batch.push(Mutation::Enqueue(op(
        "E1",
        7,
        OpKind::Update,
        "t7",
        Some(title_patch("t7")),
    )));
    batch.push(Mutation::Enqueue(op("E2", 1, OpKind::Upsert, "a", None)));
    for (n, t) in [(2, "b"), (3, "c")] {
        batch.push(Mutation::Enqueue(op(
            "E2",
            n,
            OpKind::Update,
            t,
            Some(title_patch(t)),
        )));
    }
    store.commit(batch).await.unwrap();

    let pool = TargetPool::new(
        "app",
        store.clone(),
        Executor::new(&common::target(&server, "")).unwrap(),
        4,
    );
    let stats = pool.handle().stats;
    common::run_until_drained(pool, &store, Duration::from_secs(30)).await;

    let users = server.users();
    assert_eq!(users.len(), 2, "{users:#?}");
    let e1 = server.user(&id).unwrap();
    assert_eq!(e1["title"], "t7", "{e1}");
    assert_eq!(e1["active"], false, "{e1}");
    let e2 = users.iter().find(|u| u["externalId"] == "E2").unwrap();
    assert_eq!(e2["title"], "c", "created with the last state: {e2}");

    let log = server.requests();
    let to_e1: Vec<_> = log.iter().filter(|r| r.path.ends_with(&id)).collect();
    // One PATCH for updates 1-5, one for the deactivation, one for update 7.
    assert_eq!(
        to_e1.len(),
        3,
        "{:#?}",
        to_e1
            .iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    );
    // E2: one lookup and one create for the hire and its two updates.
    let posts = log.iter().filter(|r| r.method == Method::POST).count();
    assert_eq!(posts, 1);
    assert_eq!(log.len(), 5, "3 PATCHes + lookup + create");
    // Every operation has its own terminal audit record.
    assert_eq!(
        stats.applied.load(std::sync::atomic::Ordering::Relaxed)
            + stats.noop.load(std::sync::atomic::Ordering::Relaxed),
        10
    );
    let audit = store.audit_scan(None, 100).unwrap();
    assert_eq!(audit.len(), 10);
    let coalesced = audit
        .iter()
        .filter(|r| {
            r.entry
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("coalesced"))
        })
        .count();
    assert_eq!(coalesced, 5 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_of_many_people_share_patches_of_at_most_the_profile_limit() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = common::sled_store(dir.path());
    // 30 existing, bound accounts, each with one queued "join dept-x".
    let mut batch = Vec::new();
    let mut ids = Vec::new();
    for i in 0..30 {
        let subject = format!("E{i}");
        let u = server.insert_user(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": subject, "userName": format!("e{i}"),
        }));
        let id = u["id"].as_str().unwrap().to_owned();
        batch.push(Mutation::Bind {
            target: "app".into(),
            subject: subject.clone(),
            id: id.clone(),
        });
        ids.push(id);
        let mut join = op(&subject, 1, OpKind::GroupAdd, "", None);
        join.group = Some("dept-x".into());
        batch.push(Mutation::Enqueue(join));
    }
    store.commit(batch).await.unwrap();

    let yaml = format!(
        "version: 1\ntargets:\n  app:\n    base_url: {}\n    allow_http: true\n    concurrency: 4\n    \
         lifecycle:\n      hr.worker.hired: upsert\n    matching: [externalId]\n    user:\n      \
         externalId: event.subject\n      userName: event.subject\n",
        server.base_url()
    );
    let cfg = scimflow_config::load_str(&yaml, "c.yaml", &|_| None).unwrap();
    let mut target = cfg.targets[0].clone();
    let mut profile = (*target.profile).clone();
    profile.groups.member_changes_per_request = Some(10);
    target.profile = Arc::new(profile);
    let exec = Executor::new(&target).unwrap();
    assert_eq!(exec.member_changes_per_request(), 10);
    let pool = TargetPool::new("app", store.clone(), exec, 4);
    common::run_until_drained(pool, &store, Duration::from_secs(30)).await;

    let groups = server.groups();
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let mut members: Vec<String> = groups[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    members.sort();
    ids.sort();
    assert_eq!(members, ids, "every account joined, once");
    // 30 changes at most 10 per request: the group's creation carries the first 10, two PATCHes
    // the rest (plus one lookup of the group), instead of 30 PATCHes.
    let log = server.requests();
    let writes = log
        .iter()
        .filter(|r| r.path.contains("/Groups") && r.method != Method::GET)
        .count();
    assert_eq!(
        writes,
        3,
        "{:#?}",
        log.iter().map(|r| (&r.method, &r.path)).collect::<Vec<_>>()
    );
    let audit = store.audit_scan(None, 100).unwrap();
    assert_eq!(audit.len(), 30);
    assert!(
        audit.iter().all(|r| r
            .entry
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("shared: 10 membership changes"))),
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_operations_are_tried_at_once_when_the_target_answers_again() {
    use scimflow_testkit::{FaultRule, RetryAfter};
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    // E1's create is answered 429 with a ten-minute Retry-After: it parks until then.
    server.script(
        FaultRule::status_retry_after(429, RetryAfter::Seconds(600))
            .method(Method::POST)
            .path("/Users"),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = common::sled_store(dir.path());
    store
        .commit(vec![Mutation::Enqueue(op(
            "E1",
            1,
            OpKind::Upsert,
            "a",
            None,
        ))])
        .await
        .unwrap();
    let pool = TargetPool::new(
        "app",
        store.clone(),
        Executor::new(&common::target(&server, "")).unwrap(),
        4,
    );
    let handle = pool.handle();
    let stop = CancellationToken::new();
    let run = tokio::spawn(pool.run(stop.clone(), Duration::from_secs(5)));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = store.queue_scan("app", None, 1).unwrap();
        if q.first().is_some_and(|q| q.op.retry.is_some()) {
            let next = q[0].op.retry.as_ref().unwrap().next_try;
            assert!(next > chrono::Utc::now() + chrono::Duration::seconds(500));
            break;
        }
        assert!(Instant::now() < deadline, "E1 parked within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another person's hire succeeds: the target is back, and E1 does not wait ten minutes.
    store
        .commit(vec![Mutation::Enqueue(op(
            "E2",
            1,
            OpKind::Upsert,
            "b",
            None,
        ))])
        .await
        .unwrap();
    handle.wake();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.queue_len("app").unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "E1 delivered after the recovery, not at its next try"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    run.await.unwrap();
    assert_eq!(server.users().len(), 2);
}
