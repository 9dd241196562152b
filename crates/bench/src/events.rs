//! Synthetic HR hire events: one new person per event, so every event is exactly one operation
//! (lookup + create) on the target.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// The employee id of person `i` in run `run` (runs keep their people apart on one server).
pub fn employee_id(run: &str, i: usize) -> String {
    format!("{run}{i:07}")
}

fn email(run: &str, i: usize) -> String {
    format!("p{i}.{}@example.com", run.to_lowercase())
}

const DEPTS: [&str; 5] = ["Engineering", "Research", "Sales", "Finance", "Support"];

/// A structured CloudEvent `hr.worker.hired` for person `i` with `time` = `at`.
/// Returns the Kafka key and the payload.
pub fn hire(run: &str, i: usize, at: DateTime<Utc>) -> (String, Vec<u8>) {
    let id = employee_id(run, i);
    let ev = json!({
        "specversion": "1.0",
        "id": format!("evt-{id}"),
        "source": "urn:example:loadgen",
        "type": "hr.worker.hired",
        "subject": id,
        "time": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "data": {
            "employeeId": id, "email": email(run, i), "firstName": format!("First{i}"),
            "lastName": format!("Last{i}"), "department": DEPTS[i % DEPTS.len()],
            "title": "Engineer", "status": "active"
        }
    });
    (id, ev.to_string().into_bytes())
}

/// The SCIM User the mapping in [`crate::harness::config_yaml`] produces for person `i`: what the
/// bare client creates, so both sides send the same bodies.
pub fn scim_user(run: &str, i: usize) -> Value {
    let e = email(run, i);
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "externalId": employee_id(run, i),
        "userName": e,
        "displayName": format!("First{i} Last{i}"),
        "name": {"givenName": format!("First{i}"), "familyName": format!("Last{i}")},
        "emails": [{"type": "work", "value": e}],
        "title": "Engineer",
        "active": true,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": DEPTS[i % DEPTS.len()]
        }
    })
}
