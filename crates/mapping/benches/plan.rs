//! Planning throughput on a realistic mapping: 20 attributes, 3 group rules, a scope, lifecycle
//! rules — `plan(event, prior state) -> operations` end to end (activation, every expression,
//! resource building, group diff, and the minimal PATCH against the prior state).
//!
//! Run: `cargo bench -p scimflow-mapping --bench plan`. Target: ≥ 100,000 events/s per core.

/// The daemon's allocator (`crates/daemon/src/main.rs`), so the figure is what the daemon runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scimflow_core::plan::Planner;
use scimflow_core::{Event, SubjectState};
use serde_json::json;

const CONFIG: &str = r#"version: 1
tables:
  tz: { London: Europe/London, Paris: Europe/Paris, Berlin: Europe/Berlin }
targets:
  app:
    base_url: https://app.example.com/scim/v2
    scope: event.data.employmentType != "Contractor"
    lifecycle:
      hr.worker.hired: { action: upsert, at: event.data.hireDate }
      hr.worker.updated: upsert
      hr.worker.terminated: deactivate
    user:
      externalId: event.data.employeeId
      userName: { value: lower(event.data.workEmail), candidates: ['lower(event.data.legalName.first + "." + event.data.legalName.last + "2@example.com")'] }
      displayName: event.data.preferredName + " " + event.data.legalName.last
      name.givenName: event.data.legalName.first
      name.familyName: event.data.legalName.last
      name.formatted: event.data.legalName.first + " " + event.data.legalName.last
      nickName: default(event.data.nickname, event.data.preferredName)
      emails[type eq "work"].value: lower(event.data.workEmail)
      phoneNumbers[type eq "work"].value: event.data.phone
      title: event.data.jobTitle
      userType: event.data.employmentType
      preferredLanguage: default(event.data.language, "en")
      locale: '"en-" + upper(event.data.country)'
      timezone: lookup("tz", event.data.location, "UTC")
      addresses[type eq "work"].locality: event.data.location
      addresses[type eq "work"].country: upper(event.data.country)
      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber: event.data.employeeId
      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department: event.data.department
      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter: event.data.costCenter
      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization: '"Example Corp"'
    manager: event.data.managerId
    groups:
      - name: '"dept-" + lower(event.data.department)'
      - name: '"loc-" + lower(event.data.location)'
      - name: '"oncall"'
        when: '"oncall" in event.data.roles'
"#;

fn event(id: &str, kind: &str, dept: &str, title: &str) -> Event {
    Event {
        id: id.into(),
        source: "urn:example:hr".into(),
        kind: kind.into(),
        subject: "E100234".into(),
        time: Some("2026-12-01T09:00:00Z".parse().unwrap()),
        data: json!({
            "employeeId": "E100234", "workEmail": "Zoe.Ortiz@Example.com",
            "legalName": {"first": "Zoë", "last": "Ortiz"}, "preferredName": "Zoe",
            "phone": "+44 20 7946 0000", "jobTitle": title, "employmentType": "Employee",
            "country": "gb", "location": "London", "department": dept, "costCenter": "CC-4410",
            "managerId": "E100001", "hireDate": "2026-11-01", "roles": ["oncall", "reviewer"],
        }),
        traceparent: None,
    }
}

fn bench(c: &mut Criterion) {
    let cfg = scimflow_config::load_str(CONFIG, "bench.yaml", &|_| None).expect("config");
    let mapping = scimflow_mapping::compile(&cfg).expect("mapping");
    let hire = event("e1", "hr.worker.hired", "Engineering", "Engineer");
    let prior = SubjectState::from_event(&hire);
    let update = event("e2", "hr.worker.updated", "Sales", "Account Executive");
    assert_eq!(
        mapping.plan(&hire, None).ops.len(),
        4,
        "upsert + 3 group adds"
    );
    let p = mapping.plan(&update, Some(&prior));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.ops.len(), 3, "upsert + group move (add + remove)");

    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hire (no prior state)", |b| {
        b.iter(|| mapping.plan(&hire, None))
    });
    g.bench_function("update with prior state (minimal PATCH, group diff)", |b| {
        b.iter(|| mapping.plan(&update, Some(&prior)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
