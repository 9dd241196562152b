//! Any PATCH body applied to a sample user: never panics; a failed patch leaves the user unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scimflow_scim::patch::{apply_patch, diff, PatchRequest};
use serde_json::{json, Value};

fn sample_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223",
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": true,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                   {"value": "babs@jensen.org", "type": "home"}],
        "members": [{"value": "1"}, {"value": "2", "display": "Two"}],
        "roles": ["a", "b"],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": "Tours", "manager": {"value": "26118915"}
        },
        "meta": {"resourceType": "User", "version": "W/\"1\""}
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<PatchRequest>(data) else {
        return;
    };
    let original = sample_user();
    let mut user = original.clone();
    match apply_patch(&mut user, &req) {
        Ok(()) => {
            // The diff back to the original must apply cleanly too.
            let back = diff(&user, &original);
            let mut restored = user.clone();
            apply_patch(&mut restored, &back).expect("a computed diff applies");
        }
        Err(_) => assert_eq!(user, original, "a failed patch must change nothing"),
    }
});
