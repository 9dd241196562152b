//! A target that ignores filters, or compares case-sensitively, must never make the executor bind
//! a person to someone else's account (testkit server knobs `ignore_filters` and
//! `case_sensitive_filters`).

use reqwest::Method;
use serde_json::json;

use scimflow_core::op::MatchKey;
use scimflow_core::{ErrorClass, OpKind, Operation, Outcome};
use scimflow_delivery::Executor;
use scimflow_testkit::{ServerOptions, TestServer};

fn executor(server: &TestServer, matching: &str) -> Executor {
    let yaml = format!(
        "version: 1\ntargets:\n  app:\n    base_url: {}\n    allow_http: true\n    \
         lifecycle:\n      hr.worker.hired: upsert\n    matching: {matching}\n    user:\n      \
         externalId: event.subject\n      userName: event.subject\n",
        server.base_url()
    );
    let cfg = scimflow_config::load_str(&yaml, "c.yaml", &|_| None).expect("valid config");
    Executor::new(&cfg.targets[0]).expect("client builds")
}

fn hire(external_id: &str, user_name: &str) -> Operation {
    Operation {
        id: format!("{external_id}-hire@app"),
        target: "app".into(),
        subject: external_id.into(),
        event_id: format!("{external_id}-hire"),
        event_kind: "hr.worker.hired".into(),
        event_time: None,
        planned_at: chrono::Utc::now(),
        kind: OpKind::Upsert,
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": external_id,
            "userName": user_name,
        }),
        matching: vec![
            MatchKey {
                attribute: "externalId".into(),
                value: external_id.into(),
                case_exact: true,
            },
            MatchKey {
                attribute: "userName".into(),
                value: user_name.into(),
                case_exact: false,
            },
        ],
        mapping_version: "v1".into(),
        traceparent: None,
        group: None,
        create_only: Vec::new(),
        patch: None,
        manager_subject: None,
        alternatives: Default::default(),
        origin: None,
        retry: None,
    }
}

fn user(server: &TestServer, external_id: &str, user_name: &str) -> String {
    server.insert_user(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "externalId": external_id, "userName": user_name,
    }))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_target_that_ignores_filters_binds_only_the_account_that_really_matches() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        ignore_filters: true,
        ..ServerOptions::default()
    })
    .await;
    // Others, including one whose externalId differs only in case (externalId is case-exact).
    let others: Vec<String> = [("e1", "someone"), ("E2", "bob"), ("E3", "carol")]
        .iter()
        .map(|(e, u)| user(&server, e, u))
        .collect();
    for matching in ["[externalId, userName]", "[externalId]"] {
        let exec = executor(&server, matching);
        let r = exec.execute(&hire("E1", "ada"), None, None).await;
        assert_eq!(r.outcome, Outcome::Applied, "{matching}: {r:?}");
        let id = r.bound_id.clone().expect("bound");
        assert!(
            !others.contains(&id),
            "{matching}: bound to someone else's account"
        );
        let created = server.user(&id).unwrap();
        assert_eq!(created["externalId"], "E1");
        // The next run finds the account it created (among everything the target returns).
        let again = exec.execute(&hire("E1", "ada"), None, None).await;
        assert_eq!(again.bound_id.as_deref(), Some(id.as_str()), "{matching}");
        // Reset for the other matching order.
        server.clear();
        for (e, u) in [("e1", "someone"), ("E2", "bob"), ("E3", "carol")] {
            user(&server, e, u);
        }
    }
    // When the account is there, it is found among all the others and nothing is created.
    server.clear();
    user(&server, "E2", "bob");
    let ada = user(&server, "E1", "ada");
    let exec = executor(&server, "[externalId, userName]");
    let r = exec.execute(&hire("E1", "ada"), None, None).await;
    assert_eq!(r.bound_id.as_deref(), Some(ada.as_str()));
    assert!(server.requests().iter().all(|q| q.method != Method::POST));
}

#[tokio::test]
async fn a_case_sensitive_target_never_leads_to_a_wrong_binding_or_a_duplicate() {
    let server = TestServer::start(ServerOptions {
        token: String::new(),
        case_sensitive_filters: true,
        ..ServerOptions::default()
    })
    .await;
    // Someone else holds "Ada@Example.com"; our person is ada@example.com with another externalId.
    let other = user(&server, "X9", "Ada@Example.com");
    let exec = executor(&server, "[externalId, userName]");
    let r = exec
        .execute(&hire("E1", "ada@example.com"), None, None)
        .await;
    // Either the target accepts the create (a new account) or refuses it as taken; never a bind
    // to X9's account.
    assert_ne!(r.bound_id.as_deref(), Some(other.as_str()), "{r:?}");
    let ours: Vec<_> = server
        .users()
        .into_iter()
        .filter(|u| u["externalId"] == "E1")
        .collect();
    assert!(ours.len() <= 1, "{ours:#?}");
    if ours.is_empty() {
        assert_eq!(r.outcome, Outcome::Failed(ErrorClass::Permanent), "{r:?}");
    }
    // Our own account with a differently cased userName is still found by externalId.
    server.clear();
    let ada = user(&server, "E1", "ADA@example.com");
    let r = exec
        .execute(&hire("E1", "ada@example.com"), None, None)
        .await;
    assert_eq!(r.bound_id.as_deref(), Some(ada.as_str()), "{r:?}");
}
