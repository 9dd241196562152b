//! The shortcuts give exactly the plans of the straightforward way: planning against a prior
//! state with [`Reuse`](super::Reuse) (evaluating on the prior state only what changed) and
//! building resources with a [`Layout`](super::Layout) (one top-level key at a time), compared
//! with evaluating the prior state in full and writing attributes one by one. Plans are compared
//! including the order of object keys, which decides the order of PATCH operations.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use scimflow_core::plan::Plan;
use scimflow_core::{Event, SubjectState};

use super::{compile, Mapping};

const CFG: &str = r#"version: 1
tables:
  tz: { London: Europe/London, Paris: Europe/Paris }
targets:
  app:
    base_url: https://app.example.com/scim/v2
    scope: event.data.employmentType != "Contractor"
    lifecycle:
      hr.worker.hired: upsert
      hr.worker.updated: upsert
      hr.worker.changed: update
      hr.worker.terminated: deactivate
    user:
      externalId: event.subject
      userName: { value: lower(event.data.email), candidates: ['lower(event.data.first + "." + event.data.last + "@example.com")'] }
      displayName: default(event.data.preferred, event.data.first) + " " + event.data.last
      name.givenName: event.data.first
      name.familyName: { value: event.data.last, default: '"?"' }
      nickName: coalesce(event.data.nick, event.data.preferred)
      emails[type eq "work"].value: lower(event.data.email)
      emails[type eq "home"].value: event.data.nick
      emails[type eq "home"].display: event.data.preferred
      phoneNumbers[type eq "work"].value: event.data.phone
      title: { value: event.data.title, default: null }
      userType: { value: event.data.employmentType, on: create }
      active: 'has(event.data.status) ? event.data.status == "active" : null'
      timezone: lookup("tz", event.data.location, "UTC")
      locale: 'event.type == "hr.worker.hired" ? "en" : "de"'
      profileUrl: '"https://example.com/" + string(size(event.data))'
      preferredLanguage: 'prior == null ? "new" : "seen"'
      addresses[type eq "work"].locality: event.data.location
      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department: event.data.org.dept
      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter: { value: event.data.org.cc, on: create }
      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value: event.data.manager
      urn:example:params:scim:schemas:extension:acme:2.0:User:badge: event.data.nick
    manager: event.data.manager
    groups:
      - name: '"dept-" + lower(event.data.org.dept)'
      - name: '"loc-" + lower(event.data.location)'
        when: has(event.data.location)
      - name: '"oncall"'
        when: '"oncall" in event.data.roles'
      - name: event.data.title
"#;

const KEYS: [&str; 13] = [
    "email",
    "first",
    "last",
    "preferred",
    "nick",
    "phone",
    "title",
    "employmentType",
    "status",
    "location",
    "org",
    "roles",
    "manager",
];

/// The mapping with its shortcuts, and without (`reuse`, `layout`).
fn mappings(reuse: bool, layout: bool) -> (Mapping, Mapping) {
    let cfg = scimflow_config::load_str(CFG, "reuse.yaml", &|_| None).expect("config");
    let with = compile(&cfg).expect("mapping");
    let mut without = compile(&cfg).expect("mapping");
    assert!(with
        .targets
        .iter()
        .all(|t| t.reuse.is_some() && t.layout.is_some()));
    for t in &mut without.targets {
        if reuse {
            t.reuse = None;
        }
        if layout {
            t.layout = None;
        }
    }
    (with, without)
}

fn assert_same(fast: &Plan, full: &Plan) -> Result<(), TestCaseError> {
    prop_assert_eq!(fast, full);
    let text = |p: &Plan| serde_json::to_string(&(&p.ops, &p.scheduled)).expect("serializes");
    prop_assert_eq!(text(fast), text(full));
    Ok(())
}

/// A value for data key `key`: mostly a plausible one, sometimes an odd one.
fn value(key: &str) -> BoxedStrategy<Option<Value>> {
    let plausible = match key {
        "org" => prop_oneof![
            Just(json!({"dept": "R&D", "cc": "C1"})),
            Just(json!({"cc": "C1", "dept": "R&D"})),
            Just(json!({"dept": "Sales", "cc": "C2"})),
            Just(json!({"dept": "Sales"})),
        ]
        .boxed(),
        "roles" => prop_oneof![
            Just(json!(["oncall", "dev"])),
            Just(json!(["dev"])),
            Just(json!([])),
        ]
        .boxed(),
        "employmentType" => {
            prop_oneof![3 => Just(json!("Employee")), 1 => Just(json!("Contractor"))].boxed()
        }
        "status" => prop_oneof![Just(json!("active")), Just(json!("leave"))].boxed(),
        "location" => prop_oneof![
            Just(json!("London")),
            Just(json!("Paris")),
            Just(json!("Oslo"))
        ]
        .boxed(),
        _ => prop_oneof![
            Just(json!("Ada")),
            Just(json!("Bo")),
            Just(json!("Zoë.Ortiz@Example.com")),
        ]
        .boxed(),
    };
    prop_oneof![
        12 => plausible.prop_map(Some),
        2 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!(""))),
        1 => Just(Some(json!(7))),
        1 => Just(Some(json!(7.0))),
        1 => Just(Some(json!({"dept": 7}))),
    ]
    .boxed()
}

fn fields() -> impl Strategy<Value = Vec<Option<Value>>> {
    KEYS.iter().map(|k| value(k)).collect::<Vec<_>>()
}

fn data(fields: &[Option<Value>], reverse: bool) -> Value {
    let mut m = Map::new();
    let mut pairs: Vec<_> = KEYS.iter().zip(fields).collect();
    if reverse {
        pairs.reverse();
    }
    for (k, v) in pairs {
        if let Some(v) = v {
            m.insert((*k).to_owned(), v.clone());
        }
    }
    Value::Object(m)
}

const KINDS: [&str; 4] = [
    "hr.worker.hired",
    "hr.worker.updated",
    "hr.worker.changed",
    "hr.worker.terminated",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn shortcuts_plan_exactly_like_the_straightforward_way(
        new in fields(),
        changed in prop::collection::vec(prop::bool::weighted(0.2), KEYS.len()),
        other in fields(),
        reverse in prop::bool::weighted(0.1),
        odd_data in prop::bool::weighted(0.05),
        kind in 0..KINDS.len(),
        prior_kind in 0..KINDS.len(),
        same_time in any::<bool>(),
        has_prior in prop::bool::weighted(0.9),
        which in 0..3usize,
    ) {
        // 0: without reuse, 1: without layout, 2: without either
        let (with, without) = mappings(which != 1, which != 0);
        let old: Vec<Option<Value>> = new
            .iter()
            .zip(&other)
            .zip(&changed)
            .map(|((n, o), c)| if *c { o.clone() } else { n.clone() })
            .collect();
        let t = |h| Some(Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap());
        let event = Event {
            id: "e2".into(),
            source: "urn:example:hr".into(),
            kind: KINDS[kind].into(),
            subject: "E1".into(),
            time: t(10),
            data: if odd_data { json!("not an object") } else { data(&new, false) },
            traceparent: None,
        };
        let prior = SubjectState {
            subject: "E1".into(),
            last_event_id: "e1".into(),
            last_time: if same_time { t(10) } else { t(9) },
            last_kind: KINDS[prior_kind].into(),
            data: data(&old, reverse),
            recent_event_ids: vec!["e1".into()],
            mapping_version: String::new(),
            position: None,
        };
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap();
        let prior = has_prior.then_some(&prior);
        let fast = with.plan_at(&event, prior, now);
        let full = without.plan_at(&event, prior, now);
        assert_same(&fast, &full)?;
    }
}
