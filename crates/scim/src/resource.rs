//! SCIM resources (RFC 7643 §4): typed [`User`], [`Group`] and [`EnterpriseUser`], and helpers for
//! resources held as `serde_json::Value`, which is how the engine mostly handles them.
//!
//! Invariants:
//! - Round trips lose nothing: unknown attributes and extension schemas land in each type's `extra`
//!   map (serde `flatten`) and are written back unchanged.
//! - Attribute names are case-insensitive (RFC 7643 §2.1). The JSON helpers here look names up
//!   exactly first and then case-insensitively; [`User::from_json`] and [`Group::from_json`]
//!   normalise the case of known attribute names before typed deserialisation.
//! - A path with a core-schema URN (`urn:...:core:2.0:User:userName`) addresses a top-level
//!   attribute; any other URN (`urn:...:enterprise:2.0:User:department`) addresses an attribute
//!   inside the object stored under that URN key.
//! - Booleans (`active`, `primary`) are read leniently: `"True"`/`"false"` strings are accepted,
//!   because some identity providers send them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::filter::AttrPath;
use crate::schemas;

/// A JSON object.
pub type Object = Map<String, Value>;

/// Looks up `name` in `obj`: exactly, then case-insensitively.
pub fn get_ci<'a>(obj: &'a Object, name: &str) -> Option<&'a Value> {
    key_ci(obj, name).and_then(|k| obj.get(k))
}

/// The actual key under which `name` is stored in `obj`, compared case-insensitively.
pub fn key_ci<'a>(obj: &'a Object, name: &str) -> Option<&'a String> {
    if let Some((k, _)) = obj.get_key_value(name) {
        return Some(k);
    }
    obj.keys().find(|k| k.eq_ignore_ascii_case(name))
}

/// Mutable lookup of `name` in `obj`, case-insensitively.
pub fn get_ci_mut<'a>(obj: &'a mut Object, name: &str) -> Option<&'a mut Value> {
    let key = key_ci(obj, name)?.clone();
    obj.get_mut(&key)
}

/// Removes `name` from `obj`, case-insensitively, returning the removed value.
pub fn remove_ci(obj: &mut Object, name: &str) -> Option<Value> {
    let key = key_ci(obj, name)?.clone();
    obj.shift_remove(&key)
}

/// Sets `name` in `obj`, replacing an existing attribute of any case (and keeping its key).
pub fn set_ci(obj: &mut Object, name: &str, value: Value) {
    match get_ci_mut(obj, name) {
        Some(slot) => *slot = value,
        None => {
            obj.insert(name.to_owned(), value);
        }
    }
}

/// The object holding the attributes of schema `urn` (the resource itself for core schemas).
pub fn container<'a>(resource: &'a Value, urn: Option<&str>) -> Option<&'a Object> {
    let obj = resource.as_object()?;
    match urn {
        Some(u) if !schemas::is_core(u) => get_ci(obj, u)?.as_object(),
        _ => Some(obj),
    }
}

/// The value at `path`: the attribute, or the sub-attribute of a complex single-valued attribute.
///
/// Returns `None` when absent, and for a sub-attribute of a multi-valued attribute (which has many
/// values; use [`get_all`]).
pub fn get_path<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    let value = get_ci(container(resource, path.urn.as_deref())?, &path.attr)?;
    match &path.sub_attr {
        None => Some(value),
        Some(sub) => get_ci(value.as_object()?, sub),
    }
}

/// Every non-null value at `path`, with multi-valued attributes flattened: `emails.value` yields the
/// `value` of every email.
pub fn get_all<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let Some(value) = container(resource, path.urn.as_deref()).and_then(|c| get_ci(c, &path.attr))
    else {
        return out;
    };
    match &path.sub_attr {
        None => push_flat(&mut out, value),
        Some(sub) => match value {
            Value::Array(items) => {
                for item in items {
                    if let Some(v) = item.as_object().and_then(|o| get_ci(o, sub)) {
                        push_flat(&mut out, v);
                    }
                }
            }
            Value::Object(o) => {
                if let Some(v) = get_ci(o, sub) {
                    push_flat(&mut out, v);
                }
            }
            _ => {}
        },
    }
    out
}

fn push_flat<'a>(out: &mut Vec<&'a Value>, v: &'a Value) {
    match v {
        Value::Array(items) => out.extend(items.iter().filter(|v| !v.is_null())),
        Value::Null => {}
        v => out.push(v),
    }
}

/// Renames keys of `obj` that equal one of `canonical` case-insensitively to the canonical
/// spelling (the first spelling wins if a resource carries two).
pub fn canonicalize_keys(obj: &mut Object, canonical: &[&str]) {
    for name in canonical {
        if obj.contains_key(*name) {
            continue;
        }
        if let Some(k) = obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned() {
            if let Some(v) = obj.shift_remove(&k) {
                obj.insert((*name).to_owned(), v);
            }
        }
    }
}

/// Deserialises an optional boolean leniently: `true`, `"True"`, `"false"`.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        Some(Value::Null) | None => None,
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a boolean, found {other}"
            )))
        }
    })
}

/// Resource metadata (RFC 7643 §3.1). Timestamps are kept as sent; parse with
/// [`Meta::created_at`] / [`Meta::last_modified_at`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// `User`, `Group`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Creation time (xsd:dateTime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Last modification time (xsd:dateTime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// The resource's URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The resource version (an ETag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Anything else.
    #[serde(flatten)]
    pub extra: Object,
}

impl Meta {
    /// `created` as a timestamp, if it is RFC 3339.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        parse_time(self.created.as_deref()?)
    }

    /// `lastModified` as a timestamp, if it is RFC 3339.
    pub fn last_modified_at(&self) -> Option<DateTime<Utc>> {
        parse_time(self.last_modified.as_deref()?)
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A user's name (RFC 7643 §4.1.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    /// The full name, formatted for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Middle name(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Honorific prefix (`Ms.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_prefix: Option<String>,
    /// Honorific suffix (`III`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_suffix: Option<String>,
    /// Anything else.
    #[serde(flatten)]
    pub extra: Object,
}

/// One value of a multi-valued attribute (emails, phoneNumbers, ims, photos, groups, entitlements,
/// roles, x509Certificates): RFC 7643 §2.4.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MultiValued {
    /// The value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Label (`work`, `home`, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether this is the preferred value.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub primary: Option<bool>,
    /// URI of the referenced resource.
    #[serde(default, rename = "$ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Other sub-attributes.
    #[serde(flatten)]
    pub extra: Object,
}

impl MultiValued {
    /// A value with a type label.
    pub fn typed(kind: impl Into<String>, value: impl Into<String>) -> Self {
        MultiValued {
            value: Some(value.into()),
            kind: Some(kind.into()),
            ..MultiValued::default()
        }
    }
}

/// A physical mailing address (RFC 7643 §4.1.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Full address, formatted for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    /// Street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    /// City or locality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// State or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// Country (ISO 3166-1 alpha-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Label (`work`, `home`, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether this is the preferred address.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub primary: Option<bool>,
    /// Other sub-attributes.
    #[serde(flatten)]
    pub extra: Object,
}

/// The manager of an enterprise user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manager {
    /// The manager's `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// URI of the manager's resource.
    #[serde(default, rename = "$ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The manager's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Other sub-attributes.
    #[serde(flatten)]
    pub extra: Object,
}

/// The Enterprise User extension (RFC 7643 §4.3), stored under [`schemas::ENTERPRISE_USER`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnterpriseUser {
    /// Employee number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    /// Cost center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    /// Organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Division.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<Manager>,
    /// Other attributes.
    #[serde(flatten)]
    pub extra: Object,
}

/// A User resource (RFC 7643 §4.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Schema URNs of the resource; core User plus extensions.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Service-provider id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Client-side id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Unique login name.
    #[serde(default)]
    pub user_name: String,
    /// Name components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Casual name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick_name: Option<String>,
    /// Profile URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_url: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Employee, Contractor, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    /// Preferred language (`en-US`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<String>,
    /// Locale (`en-US`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Time zone (`America/Los_Angeles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Administrative status.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub active: Option<bool>,
    /// Write-only password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Email addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<MultiValued>,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phone_numbers: Vec<MultiValued>,
    /// Instant messaging addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ims: Vec<MultiValued>,
    /// Photo URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<MultiValued>,
    /// Postal addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Groups (read-only, maintained through Group membership).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<MultiValued>,
    /// Entitlements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<MultiValued>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<MultiValued>,
    /// Certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x509_certificates: Vec<MultiValued>,
    /// Enterprise extension.
    #[serde(
        default,
        rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        skip_serializing_if = "Option::is_none"
    )]
    pub enterprise: Option<EnterpriseUser>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// Unknown attributes and other extension schemas (by URN), preserved.
    #[serde(flatten)]
    pub extra: Object,
}

const USER_ATTRS: &[&str] = &[
    "schemas",
    "id",
    "externalId",
    "userName",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "password",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
    schemas::ENTERPRISE_USER,
    "meta",
];

const GROUP_ATTRS: &[&str] = &[
    "schemas",
    "id",
    "externalId",
    "displayName",
    "members",
    "meta",
];

impl User {
    /// A user with the core schema and a `userName`.
    pub fn new(user_name: impl Into<String>) -> Self {
        User {
            schemas: vec![schemas::USER.to_owned()],
            user_name: user_name.into(),
            ..User::default()
        }
    }

    /// Reads a user from JSON, accepting top-level attribute names in any case.
    pub fn from_json(mut value: Value) -> Result<User, serde_json::Error> {
        if let Value::Object(obj) = &mut value {
            canonicalize_keys(obj, USER_ATTRS);
        }
        serde_json::from_value(value)
    }

    /// The user as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The primary email, or the first one.
    pub fn primary_email(&self) -> Option<&str> {
        self.emails
            .iter()
            .find(|e| e.primary == Some(true))
            .or_else(|| self.emails.first())
            .and_then(|e| e.value.as_deref())
    }
}

/// A member of a group (RFC 7643 §4.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The member's `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// URI of the member resource.
    #[serde(default, rename = "$ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Display name of the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// `User` or `Group`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Other sub-attributes.
    #[serde(flatten)]
    pub extra: Object,
}

impl GroupMember {
    /// A member by id.
    pub fn new(value: impl Into<String>) -> Self {
        GroupMember {
            value: Some(value.into()),
            ..GroupMember::default()
        }
    }
}

/// A Group resource (RFC 7643 §4.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Schema URNs of the resource.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Service-provider id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Client-side id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Display name (required).
    #[serde(default)]
    pub display_name: String,
    /// Members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<GroupMember>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// Unknown attributes and extension schemas (by URN), preserved.
    #[serde(flatten)]
    pub extra: Object,
}

impl Group {
    /// A group with the core schema and a display name.
    pub fn new(display_name: impl Into<String>) -> Self {
        Group {
            schemas: vec![schemas::GROUP.to_owned()],
            display_name: display_name.into(),
            ..Group::default()
        }
    }

    /// Reads a group from JSON, accepting top-level attribute names in any case.
    pub fn from_json(mut value: Value) -> Result<Group, serde_json::Error> {
        if let Value::Object(obj) = &mut value {
            canonicalize_keys(obj, GROUP_ATTRS);
        }
        serde_json::from_value(value)
    }

    /// The group as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7643 §8.3, the full enterprise user, trimmed of nothing.
    fn rfc_enterprise_user() -> Value {
        json!({
          "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                      "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
          "id": "2819c223-7f76-453a-919d-413861904646",
          "externalId": "701984",
          "userName": "bjensen@example.com",
          "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen",
                   "givenName": "Barbara", "middleName": "Jane", "honorificPrefix": "Ms.",
                   "honorificSuffix": "III"},
          "displayName": "Babs Jensen",
          "nickName": "Babs",
          "profileUrl": "https://login.example.com/bjensen",
          "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                     {"value": "babs@jensen.org", "type": "home"}],
          "addresses": [{"streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
                         "region": "CA", "postalCode": "91608", "country": "USA",
                         "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA",
                         "type": "work", "primary": true}],
          "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
          "ims": [{"value": "someaimhandle", "type": "aim"}],
          "photos": [{"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"}],
          "userType": "Employee",
          "title": "Tour Guide",
          "preferredLanguage": "en-US",
          "locale": "en-US",
          "timezone": "America/Los_Angeles",
          "active": true,
          "password": "t1meMa$heen",
          "groups": [{"value": "e9e30dba-f08f-4109-8486-d5c6a331660a",
                      "$ref": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
                      "display": "Tour Guides"}],
          "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx"}],
          "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
            "division": "Theme Park", "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d",
                        "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
                        "displayName": "John Smith"}
          },
          "urn:example:schemas:extension:acme:1.0:User": {"badge": 42},
          "favouriteColour": "teal",
          "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z",
                   "lastModified": "2011-05-13T04:42:34Z", "version": "W/\"3694e05e9dff591\"",
                   "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"}
        })
    }

    #[test]
    fn user_round_trips_without_loss() {
        let v = rfc_enterprise_user();
        let user: User = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(user.user_name, "bjensen@example.com");
        assert_eq!(user.primary_email(), Some("bjensen@example.com"));
        let ent = user.enterprise.as_ref().unwrap();
        assert_eq!(ent.department.as_deref(), Some("Tour Operations"));
        assert_eq!(
            ent.manager.as_ref().unwrap().display_name.as_deref(),
            Some("John Smith")
        );
        assert_eq!(user.extra["favouriteColour"], "teal");
        assert_eq!(
            user.meta
                .as_ref()
                .unwrap()
                .created_at()
                .unwrap()
                .to_rfc3339(),
            "2010-01-23T04:56:22+00:00"
        );
        let back = user.to_json();
        assert_eq!(back, v);
    }

    #[test]
    fn user_reads_sloppy_json() {
        let user = User::from_json(json!({
            "UserName": "a", "ACTIVE": "False",
            "emails": [{"value": "a@x", "primary": "True"}]
        }))
        .unwrap();
        assert_eq!(user.user_name, "a");
        assert_eq!(user.active, Some(false));
        assert_eq!(user.emails[0].primary, Some(true));
        assert!(User::from_json(json!({"active": 3})).is_err());
    }

    #[test]
    fn group_round_trips() {
        // RFC 7643 §8.4
        let v = json!({
          "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
          "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
          "displayName": "Tour Guides",
          "members": [{"value": "2819c223-7f76-453a-919d-413861904646",
                       "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
                       "display": "Babs Jensen"}],
          "meta": {"resourceType": "Group", "created": "2010-01-23T04:56:22Z",
                   "lastModified": "2011-05-13T04:42:34Z", "version": "W/\"3694e05e9dff592\"",
                   "location": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a"}
        });
        let g = Group::from_json(v.clone()).unwrap();
        assert_eq!(g.members[0].display.as_deref(), Some("Babs Jensen"));
        assert_eq!(g.to_json(), v);
        let mut g = Group::new("Admins");
        g.members.push(GroupMember::new("u1"));
        assert_eq!(
            g.to_json(),
            json!({"schemas": [schemas::GROUP], "displayName": "Admins", "members": [{"value": "u1"}]})
        );
    }

    #[test]
    fn json_paths_are_case_insensitive_and_urn_aware() {
        let v = rfc_enterprise_user();
        let p = |s: &str| AttrPath::parse(s).unwrap();
        assert_eq!(
            get_path(&v, &p("USERNAME")),
            Some(&json!("bjensen@example.com"))
        );
        assert_eq!(get_path(&v, &p("name.GIVENNAME")), Some(&json!("Barbara")));
        assert_eq!(
            get_path(
                &v,
                &p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
            ),
            Some(&json!("Tour Operations"))
        );
        assert_eq!(
            get_path(
                &v,
                &p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:manager.value")
            ),
            Some(&json!("26118915-6090-4610-87e4-49d8ca9f808d"))
        );
        assert_eq!(
            get_path(&v, &p("urn:ietf:params:scim:schemas:core:2.0:User:title")),
            Some(&json!("Tour Guide"))
        );
        assert_eq!(get_path(&v, &p("emails.value")), None);
        assert_eq!(
            get_all(&v, &p("emails.value")),
            vec![&json!("bjensen@example.com"), &json!("babs@jensen.org")]
        );
        assert_eq!(get_path(&v, &p("nickname.x")), None);
        assert!(get_all(&v, &p("missing")).is_empty());
    }
}
