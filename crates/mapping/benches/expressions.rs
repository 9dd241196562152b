//! Planning throughput of the expression language: 20 attribute expressions and 3 group
//! conditions against a realistic HR event, Activation included. Reported as events/s.

use chrono::{TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;

use scimflow_mapping::cel::{compile, Activation, Env};

const ATTRIBUTES: [&str; 20] = [
    "event.data.employeeId",
    "lower(event.data.email)",
    "event.data.firstName",
    "event.data.lastName",
    "event.data.firstName + \" \" + event.data.lastName",
    "coalesce(event.data.preferredName, event.data.firstName)",
    "event.data.status == \"active\"",
    "event.data.department",
    "event.data.title",
    "event.data.costCenter",
    "lookup(\"countries\", event.data.country, \"Unknown\")",
    "event.data.phone",
    "event.data.manager.employeeId",
    "lower(event.data.manager.email)",
    "event.data.employmentType",
    "lower(normalize_diacritics(event.data.firstName)) + \".\" + lower(normalize_diacritics(event.data.lastName))",
    "format_date(event.data.startDate, \"%Y-%m-%d\")",
    "join(event.data.roles, \",\")",
    "upper(event.data.location)",
    "trim(event.data.title)",
];

const GROUPS: [&str; 3] = [
    "event.data.department != \"Contractors\"",
    "\"dept-\" + lower(event.data.department)",
    "\"oncall\" in event.data.roles",
];

fn bench(c: &mut Criterion) {
    let mut env = Env::default();
    env.tables.insert(
        "countries".into(),
        [
            ("DE".to_owned(), json!("Germany")),
            ("FR".to_owned(), json!("France")),
        ]
        .into_iter()
        .collect(),
    );
    let programs: Vec<_> = ATTRIBUTES
        .iter()
        .chain(GROUPS.iter())
        .map(|s| compile(s, &env).expect(s))
        .collect();
    let event = scimflow_core::Event {
        id: "9f1c2e".into(),
        source: "workday".into(),
        kind: "hr.worker.updated".into(),
        subject: "E12345".into(),
        time: Some(Utc.with_ymd_and_hms(2024, 3, 1, 8, 0, 0).unwrap()),
        data: json!({
            "employeeId": "E12345", "email": "Zoe.Orsted@Example.com", "firstName": "Zoë",
            "lastName": "Ørsted", "preferredName": null, "department": "Engineering",
            "title": " Staff Engineer ", "status": "active", "costCenter": "CC-100",
            "country": "DE", "location": "Berlin", "phone": "+49 30 1234567",
            "startDate": "2024-03-01", "employmentType": "FTE",
            "roles": ["oncall", "admin", "dev"],
            "manager": {"employeeId": "E1", "email": "Boss@Example.com", "name": "Boss"}
        }),
        traceparent: None,
    };
    let now = Utc::now();
    let mut group = c.benchmark_group("mapping_expressions");
    group.throughput(Throughput::Elements(1));
    group.bench_function("event_20_attributes_3_groups", |b| {
        b.iter(|| {
            let act = Activation::new(black_box(&event), None, now);
            for p in &programs {
                black_box(p.eval(&act).expect("evaluates"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
