//! The target's connector profile decides how matching values compare: `MatchKey::case_exact`
//! comes from the profile's `case_rules`, not from a built-in rule.

use scimflow_core::plan::Planner;
use scimflow_core::Event;

use super::compile;

fn config(connector: &str) -> String {
    format!(
        r#"version: 1
targets:
  app:
    base_url: https://app.example.com/scim/v2
{connector}    lifecycle:
      hr.worker.hired: upsert
    user:
      externalId: event.subject
      userName: lower(event.data.email)
"#
    )
}

fn matching(connector: &str) -> Vec<(String, bool)> {
    let cfg = scimflow_config::load_str(&config(connector), "c.yaml", &|_| None).unwrap();
    let m = compile(&cfg).unwrap();
    let event = Event {
        id: "ev1".into(),
        source: "hr".into(),
        kind: "hr.worker.hired".into(),
        subject: "E7".into(),
        time: None,
        data: serde_json::json!({"email": "Ada@Example.com"}),
        traceparent: None,
    };
    let plan = m.plan(&event, None);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    plan.ops[0]
        .matching
        .iter()
        .map(|k| (k.attribute.clone(), k.case_exact))
        .collect()
}

#[test]
fn case_rules_come_from_the_connector_profile() {
    // generic: userName case-insensitive (RFC 7643 §4.1.1), externalId case-exact (§3.1).
    assert_eq!(
        matching(""),
        vec![("externalId".into(), true), ("userName".into(), false)]
    );
    // Canva: "All parameters and values in the Canva SCIM API are case-sensitive".
    assert_eq!(
        matching("    connector: canva\n"),
        vec![("externalId".into(), true), ("userName".into(), true)]
    );
}
