//! `Mapping::desired`: a stored subject state through the mapping, as reconciliation sees it.

use super::*;

const CFG: &str = r#"version: 1
targets:
  app:
    base_url: https://app.example/scim/v2
    scope: event.data.country == "DE"
    lifecycle:
      hr.worker.hired: upsert
      hr.worker.terminated: deactivate
      hr.worker.purged: delete
      hr.worker.leave_started: ignore
    matching: [externalId, userName]
    user:
      externalId: event.subject
      userName: { value: lower(event.data.email), on: create }
      title: event.data.title
      name.givenName: event.data.firstName
    groups:
      - name: '"dept-" + lower(event.data.department)'
      - name: '"oncall"'
        when: event.data.oncall
  other:
    base_url: https://other.example/scim/v2
    out_of_scope: ignore
    scope: event.data.country == "FR"
    lifecycle:
      hr.worker.hired: upsert
    matching: [externalId]
    user:
      externalId: event.subject
"#;

fn mapping() -> Mapping {
    compile(&scimflow_config::load_str(CFG, "c.yaml", &|_| None).unwrap()).unwrap()
}

fn state(kind: &str, data: Value) -> SubjectState {
    SubjectState {
        subject: "E7".into(),
        last_event_id: "ev9".into(),
        last_time: None,
        last_kind: kind.into(),
        data,
        recent_event_ids: vec!["ev9".into()],
        mapping_version: String::new(),
        position: None,
    }
}

fn data(country: &str, oncall: bool) -> Value {
    serde_json::json!({"email": "Ada@Example.com", "title": "Engineer", "firstName": "Ada",
        "department": "RnD", "country": country, "oncall": oncall})
}

fn now() -> DateTime<Utc> {
    "2026-12-01T00:00:00Z".parse().unwrap()
}

#[test]
fn an_active_subject_wants_its_resource_groups_and_matching_keys() {
    let d = mapping()
        .desired(&state("hr.worker.hired", data("DE", true)), "app", now())
        .unwrap()
        .unwrap();
    assert_eq!(d.presence, Presence::Active);
    assert_eq!(
        Value::Object(d.resource.clone()),
        serde_json::json!({
            "schemas": [USER_SCHEMA],
            "externalId": "E7",
            "userName": "ada@example.com",
            "title": "Engineer",
            "name": {"givenName": "Ada"},
            "active": true
        })
    );
    assert_eq!(d.create_only, vec!["userName".to_owned()]);
    let keys: Vec<_> = d
        .matching
        .iter()
        .map(|m| (m.attribute.as_str(), m.value.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![("externalId", "E7"), ("userName", "ada@example.com")]
    );
    assert_eq!(
        d.groups.iter().map(String::as_str).collect::<Vec<_>>(),
        vec!["dept-rnd", "oncall"]
    );
    // The same state without the on-call flag: one group fewer.
    let d = mapping()
        .desired(&state("hr.worker.hired", data("DE", false)), "app", now())
        .unwrap()
        .unwrap();
    assert_eq!(d.groups.len(), 1);
}

#[test]
fn the_last_lifecycle_action_decides_the_presence() {
    let m = mapping();
    let p = |kind: &str| {
        m.desired(&state(kind, data("DE", false)), "app", now())
            .unwrap()
            .unwrap()
    };
    let off = p("hr.worker.terminated");
    assert_eq!(off.presence, Presence::Inactive);
    assert_eq!(off.resource["active"], false);
    assert!(
        off.groups.is_empty(),
        "deactivation leaves memberships alone"
    );
    assert_eq!(p("hr.worker.purged").presence, Presence::Absent);
    assert_eq!(p("hr.worker.leave_started").presence, Presence::Unknown);
    assert_eq!(p("hr.worker.unheard_of").presence, Presence::Unknown);
}

#[test]
fn out_of_scope_carries_the_targets_out_of_scope_action() {
    let m = mapping();
    let s = state("hr.worker.hired", data("US", false));
    assert_eq!(
        m.desired(&s, "app", now()).unwrap().unwrap().presence,
        Presence::OutOfScope {
            action: Some(OpKind::Deactivate)
        }
    );
    assert_eq!(
        m.desired(&s, "other", now()).unwrap().unwrap().presence,
        Presence::OutOfScope { action: None }
    );
    assert!(m.desired(&s, "nowhere", now()).unwrap().is_none());
}

#[test]
fn desired_agrees_with_planning_the_last_event_without_a_prior_state() {
    let m = mapping();
    let s = state("hr.worker.hired", data("DE", true));
    let event = Event {
        id: s.last_event_id.clone(),
        source: "hr".into(),
        kind: s.last_kind.clone(),
        subject: s.subject.clone(),
        time: None,
        data: s.data.clone(),
        traceparent: None,
    };
    let plan = m.plan_at(&event, None, now());
    let main = plan.ops.iter().find(|o| o.target == "app").unwrap();
    let d = m.desired(&s, "app", now()).unwrap().unwrap();
    assert_eq!(main.resource, Value::Object(d.resource));
    assert_eq!(main.matching, d.matching);
    let planned_groups: BTreeSet<String> = plan
        .ops
        .iter()
        .filter(|o| o.target == "app" && o.kind == OpKind::GroupAdd)
        .filter_map(|o| o.group.clone())
        .collect();
    assert_eq!(planned_groups, d.groups);
}

#[test]
fn an_unevaluable_attribute_fails_an_active_subject_only() {
    let m = mapping();
    let mut d = data("DE", false);
    d.as_object_mut().unwrap().remove("title");
    let e = m
        .desired(&state("hr.worker.hired", d.clone()), "app", now())
        .unwrap_err();
    assert!(e.expression.contains("title"), "{e}");
    let off = m
        .desired(&state("hr.worker.terminated", d), "app", now())
        .unwrap()
        .unwrap();
    assert_eq!(off.presence, Presence::Inactive);
    assert!(!off.resource.contains_key("title"));
}

#[test]
fn owned_attributes_name_the_top_level_keys_and_active() {
    let m = mapping();
    assert_eq!(
        m.owned_attributes("app"),
        // `user:` keys in path order, then `active`.
        vec!["externalId", "name", "title", "userName", "active"]
    );
    assert!(m.has_group_rules("app"));
    assert!(!m.has_group_rules("other"));
}
