//! Connector profile fields applied at delivery time, against the testkit SCIM server: updates by
//! PUT, PATCH operations a target does not take, a PATCH status that means failure, deactivation
//! by PUT and by another attribute, member lists replaced wholesale, endpoint paths.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use scimflow_config::profile::{DeactivateMethod, PatchOperation, ReplaceMembers, UpdateMethod};
use scimflow_config::ConnectorProfile;
use scimflow_core::op::MatchKey;
use scimflow_core::{ErrorClass, OpKind, Operation, Outcome};
use scimflow_delivery::Executor;
use scimflow_testkit::{PatchAnswer, ServerOptions, TestServer};

mod common;

fn executor(server: &TestServer, change: impl FnOnce(&mut ConnectorProfile)) -> Executor {
    let mut target = common::target(server, "    max_attempts: 2\n");
    let mut profile = (*target.profile).clone();
    change(&mut profile);
    target.profile = Arc::new(profile);
    Executor::new(&target).expect("client builds")
}

fn op(kind: OpKind, resource: Value, patch: Option<Value>) -> Operation {
    Operation {
        id: format!("E1-{}@app", kind.as_str()),
        target: "app".into(),
        subject: "E1".into(),
        event_id: "E1-ev".into(),
        event_kind: "hr.worker.updated".into(),
        event_time: None,
        planned_at: chrono::Utc::now(),
        kind,
        resource,
        matching: vec![MatchKey {
            attribute: "externalId".into(),
            value: "E1".into(),
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

fn desired(title: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "externalId": "E1", "userName": "e1", "title": title,
    })
}

fn seed(server: &TestServer) -> String {
    server.insert_user(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "externalId": "E1", "userName": "e1", "title": "old", "nickName": "not ours",
    }))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn methods(server: &TestServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| r.method.to_string())
        .collect()
}

#[tokio::test]
async fn a_put_profile_updates_by_reading_and_writing_back_the_whole_account() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    let id = seed(&server);
    let exec = executor(&server, |p| p.update = UpdateMethod::Put);
    let r = exec
        .execute(
            &op(OpKind::Update, desired("new"), None),
            Some(id.clone()),
            None,
        )
        .await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(methods(&server), ["GET", "PUT"]);
    let u = server.user(&id).unwrap();
    assert_eq!(u["title"], "new");
    assert_eq!(
        u["nickName"], "not ours",
        "attributes it does not own are kept: {u}"
    );
}

#[tokio::test]
async fn operations_a_target_does_not_take_become_replaces_and_its_failure_status_counts() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        patch_answer: PatchAnswer::NoContent,
        ..ServerOptions::default()
    })
    .await;
    let id = seed(&server);
    // A minimal PATCH with an `add`, for a target that takes only `replace` and confirms with 200
    // (like Snowflake, whose 204 means the PATCH failed).
    let minimal = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "title", "value": "new"}],
    });
    let exec = executor(&server, |p| {
        p.patch_operations = vec![PatchOperation::Replace];
        p.patch_response = vec![200];
    });
    let r = exec
        .execute(
            &op(OpKind::Update, desired("new"), Some(minimal)),
            Some(id.clone()),
            None,
        )
        .await;
    // Every attempt answered 204: never taken for a success.
    assert_ne!(r.outcome, Outcome::Applied, "{r:?}");
    let e = r.error.expect("error");
    assert_eq!(e.class, ErrorClass::Retryable);
    assert!(e.detail.contains("204"), "{}", e.detail);
    // What was sent: replaces only.
    assert_eq!(
        server.user(&id).unwrap()["title"],
        "new",
        "the replace went through"
    );
    assert!(methods(&server).iter().all(|m| m == "PATCH"));
    // The same with a 200-answering target succeeds at once.
    let ok = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    let id = seed(&ok);
    let exec = executor(&ok, |p| {
        p.patch_operations = vec![PatchOperation::Replace];
        p.patch_response = vec![200];
    });
    let r = exec
        .execute(&op(OpKind::Update, desired("new"), None), Some(id), None)
        .await;
    assert_eq!((r.outcome, r.attempts), (Outcome::Applied, 1));
}

#[tokio::test]
async fn deactivation_follows_the_profile_method_and_attribute() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    let id = seed(&server);
    let exec = executor(&server, |p| p.deactivate.method = DeactivateMethod::Put);
    let r = exec
        .execute(
            &op(OpKind::Deactivate, desired("old"), None),
            Some(id.clone()),
            None,
        )
        .await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(methods(&server), ["GET", "PUT"]);
    let u = server.user(&id).unwrap();
    assert_eq!(u["active"], false, "{u}");
    assert_eq!(u["nickName"], "not ours");
    // Another attribute and value (a vendor that suspends through its own field).
    server.clear_requests();
    let exec = executor(&server, |p| {
        p.deactivate.path = "nickName".into();
        p.deactivate.value = json!("suspended");
    });
    let r = exec
        .execute(
            &op(OpKind::Deactivate, desired("old"), None),
            Some(id.clone()),
            None,
        )
        .await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(methods(&server), ["PATCH"]);
    assert_eq!(server.user(&id).unwrap()["nickName"], "suspended");
}

#[tokio::test]
async fn members_are_replaced_wholesale_where_add_and_remove_are_not_taken() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    let id = seed(&server);
    let other = server.insert_user(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "other",
    }))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = server.insert_group(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "dept-x", "members": [{"value": other}],
    }))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut join = op(OpKind::GroupAdd, json!({}), None);
    join.group = Some("dept-x".into());
    let exec = executor(&server, |p| {
        p.patch_operations = vec![PatchOperation::Replace];
        p.groups.replace_members = ReplaceMembers::Allowed;
    });
    let r = exec.execute(&join, Some(id.clone()), None).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    let members = |g: &Value| -> Vec<String> {
        let mut m: Vec<String> = g["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap().to_owned())
            .collect();
        m.sort();
        m
    };
    let mut both = vec![id.clone(), other.clone()];
    both.sort();
    assert_eq!(
        members(&server.group(&group).unwrap()),
        both,
        "the member already there stays"
    );
    let mut leave = op(OpKind::GroupRemove, json!({}), None);
    leave.group = Some("dept-x".into());
    let r = exec.execute(&leave, Some(id.clone()), None).await;
    assert_eq!(r.outcome, Outcome::Applied, "{r:?}");
    assert_eq!(members(&server.group(&group).unwrap()), vec![other.clone()]);
    // Neither add/remove nor a replace of members: refused for good, nothing sent.
    let exec = executor(&server, |p| {
        p.patch_operations = vec![PatchOperation::Replace];
        p.groups.replace_members = ReplaceMembers::Forbidden;
    });
    server.clear_requests();
    let r = exec.execute(&join, Some(id), None).await;
    assert_eq!(r.outcome, Outcome::Failed(ErrorClass::Permanent), "{r:?}");
    assert!(server.requests().iter().all(|q| q.method == Method::GET));
}

#[tokio::test]
async fn endpoint_paths_come_from_the_profile() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ..ServerOptions::default()
    })
    .await;
    // The profile names another users endpoint: the requests go there (and this server has none).
    let exec = executor(&server, |p| p.resources.users = "/Accounts".into());
    let r = exec
        .execute(&op(OpKind::Upsert, desired("t"), None), None, None)
        .await;
    assert_eq!(r.status, Some(404), "{r:?}");
    assert!(
        server
            .requests()
            .iter()
            .all(|q| q.path == "/scim/v2/Accounts"),
        "{:?}",
        server.requests()
    );
}
